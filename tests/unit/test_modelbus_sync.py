"""The model sync thread on an in-memory model topic (the Kafka side is tests/integration/test_model_sync.py):
jamming records are skipped with their offsets, the thread survives loop errors, and a thread that dies
anyway fails /healthz until the worker's between-batch check restarts it."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from streamrec.consumers.health import WorkerMetrics
from streamrec.consumers.modelsync import ModelSync
from streamrec.stream.modelbus import chunk_records, control_record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from tests.unit.test_modelbus import artifact, chunk, manifest_rec

CODEC = codec_for("model_chunk")


class Topic:
    """An in-memory model topic; ``fail`` (an exception) is raised by the next poll, once."""

    def __init__(self, values: list[bytes | None] | None = None) -> None:
        self.values: list[bytes | None] = list(values or [])
        self.fail: BaseException | None = None
        self.opened_at: list[int] = []
        self.lock = threading.Lock()

    def append(self, *values: bytes | None) -> None:
        with self.lock:
            self.values.extend(values)

    def source(self, offset: int) -> Any:
        self.opened_at.append(offset)
        topic, state = self, {"pos": offset}

        class Source:
            def end_offset(self) -> int:
                return len(topic.values)

            def position(self) -> int:
                return state["pos"]

            def poll(self, timeout_ms: int = 200) -> list[tuple[int, bytes | None]]:
                if topic.fail is not None:
                    exc, topic.fail = topic.fail, None
                    raise exc
                with topic.lock:
                    batch = list(enumerate(topic.values))[state["pos"]:state["pos"] + 5]
                if not batch:
                    time.sleep(0.005)
                state["pos"] += len(batch)
                return batch

            def close(self) -> None:
                pass

        return Source()


class Engine:
    def __init__(self, fail_on: str | None = None) -> None:
        self.model: Any = None
        self.fail_on = fail_on

    def prepare_model(self, art: Any) -> Any:
        if art.version == self.fail_on:
            raise RuntimeError("index build ran out of memory")
        return SimpleNamespace(version=art.version, index_source="built", index_version=None)

    def swap(self, prepared: Any) -> None:
        self.model = prepared


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def bind(self, **_: Any) -> Log:
        return self

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.lines.append((level, event, kw))


def model(version: str, seed: int = 0, corrupt: bool = False) -> list[bytes]:
    manifest, files = artifact(version, seed=seed)
    out = []
    for rec in chunk_records(manifest, files, chunk_bytes=64):
        if corrupt and rec["kind"] == "CHUNK" and rec["index"] == 1:
            rec = {**rec, "data": bytes(b ^ 0x55 for b in rec["data"])}
        out.append(CODEC.encode(rec))
    return out


def jam() -> list[bytes | None]:
    """Every shape of the issue and its neighbours: none may stop the thread."""
    m, files = artifact("vX")
    name = sorted(files)[0]
    return [CODEC.encode(chunk("vX", name, index=1, count=1, data=files[name])),
            CODEC.encode(manifest_rec("vX", m.to_json().encode())),        # its manifest: the KeyError
            b"not avro at all", None, CODEC.encode(chunk("vX", "x", 0, 1))[:-3],
            CODEC.encode(chunk("vY", "item_ids.json", index=5, count=2)),
            CODEC.encode(manifest_rec("vY", b"{broken")),
            CODEC.encode({**control_record("ROLLBACK", "v/../1"), "data": b"[]"}),
            CODEC.encode({**control_record("ROLLBACK", "nope"), "data": b"\xff"}),
            CODEC.encode(control_record("ROLLBACK", "never-published"))]


def wait(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture
def quiet_thread_deaths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading, "excepthook", lambda args: None)


def make(topic: Topic, engine: Engine | None = None, **kw: Any) -> tuple[ModelSync, Log, list[dict[str, Any]]]:
    log, reports = Log(), []
    sync = ModelSync(Settings(), engine or Engine(), log, "w1", source=topic.source, reporter=reports.append,
                     backoff_s=0.01, **kw)
    return sync, log, reports


def serves(sync: ModelSync, version: str) -> Callable[[], bool]:
    def check() -> bool:
        sync.swap_if_ready()   # what the worker does between batches
        sync.ensure_running()
        return sync.engine.model is not None and sync.engine.model.version == version
    return check


def test_jamming_records_are_skipped_with_their_offsets_and_a_later_model_swaps_in() -> None:
    topic = Topic(model("v1") + jam())
    sync, log, reports = make(topic)
    sync.start()
    try:
        assert wait(serves(sync, "v1"))
        topic.append(*model("v2", seed=2))
        assert wait(serves(sync, "v2"))
        assert sync.is_alive() and sync.health_problem() is None
    finally:
        sync.stop()
    first_jam = len(model("v1"))
    skipped = {kw["offset"] - first_jam for _, event, kw in log.lines if event == "model-updates record skipped"}
    assert skipped == {0, 2, 3, 4, 5, 7, 8}
    assert {"vX", "vY", "never-published"} <= set(sync.refused) and sync.failures == 0
    assert not any(event == "model sync failed; resuming" for _, event, _ in log.lines)
    assert any(r["serving"] == "v2" for r in reports) and reports[-1]["state"] == "stopped"


def test_a_fresh_worker_serves_the_newest_good_model_when_the_newest_is_refused() -> None:
    topic = Topic(model("v1") + model("v2", seed=2) + model("v3", seed=3, corrupt=True))
    sync, _, reports = make(topic, Engine(fail_on="v2"))   # v2 fails to prepare, v3 fails its checksum
    sync.start()
    try:
        assert wait(serves(sync, "v1"))
        assert "checksum" in sync.refused["v3"] and "out of memory" in sync.refused["v2"]
        assert wait(lambda: any(r["serving"] == "v1" and "v3" in r["refused"] for r in reports))
    finally:
        sync.stop()


def test_a_loop_error_is_logged_and_the_loop_resumes_at_the_same_offset() -> None:
    topic = Topic(model("v1"))
    sync, log, _ = make(topic)
    sync.start()
    try:
        assert wait(serves(sync, "v1"))
        position = sync.position
        topic.fail = ConnectionError("broker went away")
        topic.append(*model("v2", seed=2))
        assert wait(serves(sync, "v2"))
        assert sync.failures == 1 and topic.opened_at == [0, position]
        assert any(event == "model sync failed; resuming" and "broker went away" in kw["error"]
                   for _, event, kw in log.lines)
    finally:
        sync.stop()


class Die(BaseException):
    """Something no ``except Exception`` catches: the thread dies."""


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_a_dead_sync_thread_fails_healthz_and_is_restarted_between_batches(quiet_thread_deaths: None) -> None:
    topic = Topic(model("v1"))
    sync, log, _ = make(topic)
    metrics = WorkerMetrics(stale_after_s=60.0, ready=lambda: True)
    metrics.add_liveness_check("model sync", sync.health_problem)
    server = metrics.serve(0, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
    sync.start()
    try:
        assert wait(serves(sync, "v1"))
        assert get(url)[0] == 200
        position = sync.position
        topic.fail = Die("injected")
        assert wait(lambda: not sync.is_alive())
        status, body = get(url)
        assert status == 503 and "model sync thread died (Die: injected)" in body
        assert not metrics.is_alive()

        topic.append(*model("v2", seed=2))
        assert wait(serves(sync, "v2"))   # serves() calls ensure_running(), as the worker does
        assert sync.is_alive() and get(url)[0] == 200 and topic.opened_at == [0, position]
        assert any(event == "model sync thread died; restarting it" for _, event, _ in log.lines)
    finally:
        sync.stop()
        metrics.shutdown()


def test_a_crash_loop_keeps_healthz_failing(quiet_thread_deaths: None) -> None:
    topic = Topic(model("v1"))
    sync, _, _ = make(topic)
    sync.start()
    try:
        for _ in range(3):
            assert wait(sync.is_alive)
            topic.fail = Die("again")
            assert wait(lambda: not sync.is_alive())
            sync.ensure_running()   # restarts after the first two deaths, not after the third (10 s pause)
        assert not sync.is_alive() and "died" in str(sync.health_problem())
    finally:
        sync.stop()
    assert sync.health_problem() is None   # stopped on purpose


def test_stopped_on_purpose_is_healthy_and_not_restarted() -> None:
    sync, _, _ = make(Topic())
    sync.start()
    sync.stop()
    sync.join(5)
    sync.ensure_running()
    assert not sync.is_alive() and sync.health_problem() is None
