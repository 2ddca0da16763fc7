"""The container entry point tested as processes: three workers over six partitions, one stopped with
SIGTERM and one killed with SIGKILL mid-stream, both restarted; nothing lost, health endpoints right."""

from __future__ import annotations

import random
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from streamrec.e2e import Subscriber, free_port, start_worker, stop_process
from streamrec.producers.replay import Pacing, replay
from streamrec.stream.settings import Settings
from streamrec.stream.topics import ensure_topics, topic_specs
from tests.integration.workers import ev, latest_states, wait_until


def _status(port: int, path: str) -> int:
    """HTTP status of a worker endpoint; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_three_worker_processes_survive_sigterm_and_sigkill(settings: Settings, tmp_path: Path) -> None:
    s = settings.replace(events_topic=settings.events_topic + "-p6", group=settings.group + "-p6",
                         events_partitions=6)
    ensure_topics(s, topic_specs(s))
    rng = random.Random(7)
    users = [f"u{k}" for k in range(90)]
    events = [ev(k, rng.choice(users), f"i{rng.randrange(400)}") for k in range(6000)]
    sent = Counter(e.user_id for e in events)
    last_of = {e.user_id: e.event_id for e in events}
    ports = {name: free_port() for name in ("w1", "w2", "w3")}
    log = tmp_path / "workers.log"

    def start(name: str):  # type: ignore[no-untyped-def]
        return start_worker(s, "--worker-id", name, "--metrics-port", str(ports[name]), "--no-model-sync",
                            log_path=log)

    procs = {name: start(name) for name in ports}
    sub = Subscriber(s)
    sub.start()
    sub.ready.wait(10)
    producer = threading.Thread(target=replay, args=(events, s, Pacing("rate", 1500)))
    try:
        assert wait_until(lambda: all(_status(p, "/readyz") == 200 for p in ports.values()), 60), \
            log.read_text()[-3000:]
        assert all(_status(p, "/healthz") == 200 for p in ports.values())
        producer.start()
        assert sub.wait_for(lambda a: len(a) >= 300, 60)
        assert stop_process(procs["w1"]) == 0                    # SIGTERM: finish, commit, close
        stop_process(procs["w2"], kill=True)                      # SIGKILL: no goodbye
        assert procs["w2"].returncode == -9
        assert _status(ports["w1"], "/healthz") == 0 and _status(ports["w2"], "/healthz") == 0
        assert _status(ports["w3"], "/healthz") == 200
        procs["w1"], procs["w2"] = start("w1"), start("w2")       # restarted with the same slot ids
        assert wait_until(lambda: all(_status(p, "/readyz") == 200 for p in ports.values()), 60), \
            log.read_text()[-3000:]
        producer.join(60)
        assert sub.wait_for(lambda a: {x.trigger_event_id for x in a} >= set(last_of.values()), 90), \
            log.read_text()[-3000:]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports['w3']}/metrics", timeout=2).read().decode()
        assert "streamrec_events_total" in metrics and "streamrec_consumer_lag" in metrics
    finally:
        codes = [stop_process(p) for p in procs.values()]
        sub.stop()
    assert codes == [0, 0, 0]
    states = latest_states(s)
    assert {u: sum(st["counts"].values()) for u, st in states.items()} == dict(sent)
