"""The images built and the compose stack run, with podman, on this machine: nothing mocked, no registry.

The images are built from scratch (Debian bases by debootstrap, a host wheelhouse, every build with
``--network none`` and without podman's layer cache) by docker/offline.py, the project's own setup script.
docker/podman_stack.py brings docker/docker-compose.yml up under its own project name and host port: the
broker (the local Kafka image), the topic initialiser, three workers, the trainer and a replay of a
generated log. From the host it then checks that every generated user gets a list, that every worker's
``/readyz`` turns ready and every healthcheck passes, that the topic initialiser ran before any worker
started, that killing one worker container moves its partitions to the others and loses no event, and
that the trainer publishes a model that every worker swaps in. Everything is removed afterwards.

Skipped, with the reason, only where podman cannot run (not root, no apt-get to install it, or `podman info`
fails). CONTAINER_TEST_REUSE_IMAGES=1 reuses images already built (for working on this test; CI never).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from streamrec.e2e import Subscriber, free_port, wait_until
from streamrec.models.events import Event
from streamrec.producers.replay import replay
from streamrec.producers.synthetic import generate, write_log
from streamrec.stream.modelbus import model_log, send_control
from streamrec.stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(2400)
PARTITIONS = 12
GROUP = "streamrec-worker"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "docker" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


offline = _load("offline")
podman_stack = _load("podman_stack")


def _say(msg: str) -> None:
    print(f"[containers] {msg}", flush=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, float]]:
    """Every image, built fresh for this run; removed at the end."""
    try:
        offline.ensure_tools()
    except offline.SetupError as exc:
        pytest.skip(f"podman cannot be installed here: {exc}")
    if (problem := offline.podman_problem()) is not None:
        pytest.skip(f"podman cannot run containers here: {problem}")
    kafka_tag = f"streamrec/kafka:{Settings().kafka_version}"
    tags = [offline.WORKER_IMAGE, offline.TRAINER_IMAGE, kafka_tag, *(t for _, t in offline.BASES.values())]
    reuse = os.environ.get("CONTAINER_TEST_REUSE_IMAGES") == "1" and all(offline.image_exists(t) for t in tags)
    timings = {} if reuse else offline.build_all(fresh=True, cache=tmp_path_factory.mktemp("image-cache"))
    _say("build timings: " + json.dumps({k: round(v, 1) for k, v in timings.items()}))
    _say(f"worker image: {offline.image_size_mb(offline.WORKER_IMAGE):.0f} MB")
    try:
        yield timings
    finally:
        if not reuse:
            for args in (["rmi", "-f", *tags], ["image", "prune", "-f"]):
                started = time.monotonic()
                subprocess.run([offline.exe("podman"), *args], env=offline.podman_env(), capture_output=True,
                               check=False, timeout=300)
                _say(f"podman {args[0]} {args[1]}: {time.monotonic() - started:.1f} s")


def _http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except OSError:
        return 0, ""


def _group(settings: Settings) -> dict[str, tuple[str, list[int]]]:
    """{member_id: (client host, [events partitions])} of the workers' group once it is stable, else {}."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=5000)
    try:
        desc = admin.describe_groups([GROUP])[GROUP]
    finally:
        admin.close()
    if desc.get("group_state", desc.get("state")) != "Stable":
        return {}
    out: dict[str, tuple[str, list[int]]] = {}
    for member in desc.get("members", []):
        assignment = member.get("member_assignment")
        if assignment is not None and not isinstance(assignment, dict):
            assignment = assignment.to_dict()
        parts = sorted(p for tp in (assignment or {}).get("assigned_partitions", [])
                       if tp["topic"] == settings.events_topic for p in tp["partitions"])
        out[member["member_id"]] = (str(member.get("client_host", "")).lstrip("/"), parts)
    return out


def _owned(group: dict[str, tuple[str, list[int]]]) -> list[int]:
    return sorted(p for _, parts in group.values() for p in parts)


def _ts(text: str) -> float:
    """podman's RFC 3339 time (nanoseconds, trailing zeros dropped) as seconds since the epoch."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    assert m, f"unexpected time {text!r}"
    from datetime import datetime

    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + zone).timestamp() + float("0." + (m.group(2) or "0"))


def _lag(settings: Settings) -> int:
    return sum(_lags(settings).values())


def _lags(settings: Settings) -> dict[int, int]:
    """{partition: events not yet committed by the workers' group}, for the partitions behind."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=5000)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None)
    try:
        committed = admin.list_group_offsets({GROUP: None}).get(GROUP, {})
        tps = [TopicPartition(settings.events_topic, p) for p in range(PARTITIONS)]
        ends = consumer.end_offsets(tps)
    finally:
        admin.close()
        consumer.close()

    def offset(tp: Any) -> int:
        meta = committed.get(tp)
        return int(getattr(meta, "offset", meta) or 0) if meta is not None else 0

    return {tp.partition: ends[tp] - offset(tp) for tp in tps if ends[tp] > offset(tp)}


def _why_lag(settings: Settings, stack: Any, ips: dict[str, str]) -> str:
    """What a lag check that timed out prints: the lag per partition, who owns each partition now, and
    each worker's own view (its lag gauges, rebalances and the state of its container)."""
    lines = [f"lag per partition {_lags(settings)}", f"group {_group(settings) or 'not stable'}"]
    for w, ip in ips.items():
        status, text = _http(f"http://{ip}:9108/metrics")
        seen = re.findall(r'^streamrec_(consumer_lag\{[^}]*\}|rebalances_total|events_total) (\S+)', text, re.M)
        lines.append(f"{w} ({ip}, {stack.inspect(w)['State']['Status']}): metrics {status} {seen}")
    return "\n".join(lines)


def _dead_letters(settings: Settings) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None)
    try:
        parts = consumer.partitions_for_topic(settings.dlq_topic) or set()
        ends = consumer.end_offsets([TopicPartition(settings.dlq_topic, p) for p in parts])
    finally:
        consumer.close()
    return sum(ends.values())


def _model_versions(ip: str) -> set[str]:
    status, text = _http(f"http://{ip}:9108/metrics")
    return set(re.findall(r'streamrec_model_info\{[^}]*version="([^"]+)"', text)) if status == 200 else set()


def test_the_compose_stack_runs_with_podman(images: dict[str, float], tmp_path: Path) -> None:
    t_start = time.monotonic()
    project = f"streamrec-ct{os.getpid()}"
    port = free_port()
    os.environ["KAFKA_HOST_PORT"] = str(port)
    os.environ["KAFKA_IMAGE"] = f"streamrec/kafka:{Settings().kafka_version}"
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    host = Settings.from_env({}).replace(bootstrap_servers=f"localhost:{port}", events_partitions=PARTITIONS,
                                         recommendations_partitions=PARTITIONS, group=GROUP)
    now = int(time.time() * 1000)
    log = generate(users=150, items=300, events=3000, seed=11, start_ms=now - 3 * 86_400_000, days=2.0)
    write_log(log, data / "events.jsonl")
    (data / "events.jsonl").chmod(0o644)
    stack = podman_stack.Stack(project, profiles=("replay",), scale={"worker": 3}, data_dir=data)
    try:
        started = stack.up(timeout_s=420)
        t_up = time.monotonic() - t_start
        _say(f"services started at (s after up): {json.dumps({k: round(v, 1) for k, v in started.items()})}")
        workers = stack.containers("worker")
        assert len(workers) == 3, workers
        ips = {w: stack.ip(w) for w in workers}

        # The topic initialiser ran, and finished, before any worker started.
        (topics,) = stack.containers("topics")
        topics_state = stack.inspect(topics)["State"]
        assert topics_state["Status"] == "exited" and topics_state["ExitCode"] == 0
        finished = _ts(topics_state["FinishedAt"])
        for w in workers:
            assert _ts(stack.inspect(w)["State"]["StartedAt"]) > finished, f"{w} started before the topics existed"

        # Every worker turns ready; every healthcheck passes (broker, workers, trainer).
        assert wait_until(lambda: all(_http(f"http://{ip}:9108/readyz")[0] == 200 for ip in ips.values()), 240,
                          every_s=1.0), {w: _http(f"http://{ip}:9108/readyz")[0] for w, ip in ips.items()}
        t_ready = time.monotonic() - t_start
        _say(f"stack ready (every /readyz 200) {t_ready:.1f} s after up began (containers started {t_up:.1f} s)")
        assert stack.unhealthy() == []

        # The replay service has replayed the log; every generated user gets a list.
        (replayer,) = stack.containers("replay")
        assert wait_until(lambda: stack.inspect(replayer)["State"]["Status"] == "exited", 180, every_s=1.0)
        assert stack.inspect(replayer)["State"]["ExitCode"] == 0, stack.logs(replayer)
        users = {e.user_id for e in log}
        sub = Subscriber(host, from_beginning=True, keep_values=False)
        sub.start()
        assert sub.ready.wait(30)
        try:
            assert sub.wait_for(lambda a: users <= {x.user_id for x in a}, 180), (
                f"{len(users - {x.user_id for x in sub.snapshot()})} of {len(users)} users got no list")
            assert wait_until(lambda: _lag(host) == 0, 120, every_s=1.0), _why_lag(host, stack, ips)

            # Kill one worker container: its partitions move to the others, and nothing is lost.
            assert wait_until(lambda: len(_group(host)) == 3, 120, every_s=1.0), _group(host)
            before = _group(host)
            assert _owned(before) == list(range(PARTITIONS)), before
            victim = workers[-1]
            (victim_member,) = [m for m, (client, _) in before.items() if client == ips[victim]]
            podman_stack.podman("kill", victim)
            _say(f"killed {victim}; group before: {before}")

            def moved() -> bool:
                group = _group(host)
                return bool(group) and victim_member not in group and _owned(group) == list(range(PARTITIONS))
            assert wait_until(moved, 120, every_s=1.0), _group(host)
            _say(f"group after the kill: {_group(host)}")

            second = [Event(f"{e.event_id}-b", e.user_id, e.item_id, e.event_type, now - 3_600_000 + k)
                      for k, e in enumerate(log[:1200])]
            replay(second, host)
            last = {e.user_id: e.event_id for e in second}
            assert sub.wait_for(lambda a: set(last.items()) <= {(x.user_id, x.trigger_event_id) for x in a}, 180), (
                "some users' last event after the kill got no list")
            assert wait_until(lambda: _lag(host) == 0, 120, every_s=1.0), _why_lag(host, stack, ips)
            assert _dead_letters(host) == 0
        finally:
            sub.stop()

        # The trainer publishes a model; every live worker swaps it in.
        live = {w: ip for w, ip in ips.items() if w != victim}
        send_control(host, "RETRAIN_REQUEST", "", {"reason": "container test"})
        assert wait_until(lambda: model_log(host)[1] is not None, 420, every_s=2.0), (
            "the trainer published no model:\n" + stack.logs(stack.containers("trainer")[0]))
        version = model_log(host)[1]
        assert wait_until(lambda: all(version in _model_versions(ip) for ip in live.values()), 180,
                          every_s=1.0), {w: _model_versions(ip) for w, ip in live.items()}
        assert stack.unhealthy() == []
        _say(f"model {version} in service on {sorted(live)}; test body {time.monotonic() - t_start:.1f} s")
    finally:
        for name in stack.containers():
            state = stack.inspect(name)["State"]
            # streamrec's own warnings and errors first (a rejoin, a failed commit, a rewind); kafka-python's
            # client chatter (coordinator moves, slow event-loop tasks) only counted, it can run to hundreds.
            noisy = [line for line in stack.logs(name, 2000).splitlines()
                     if '"level": "info"' not in line and '"level": "debug"' not in line]
            ours = [line for line in noisy if '"logger": "kafka.' not in line]
            _say(f"{name}: {state['Status']} exit {state.get('ExitCode')}, {len(noisy) - len(ours)} warnings "
                 "from kafka-python\n" + "\n".join(ours[-15:]))
        down_started = time.monotonic()
        stack.down(grace_s=10)
        _say(f"stack removed in {time.monotonic() - down_started:.1f} s")
        os.environ.pop("KAFKA_HOST_PORT", None)
        os.environ.pop("KAFKA_IMAGE", None)
        assert stack.containers() == [], "containers left behind"
