"""Crash recovery with real processes: kill -9 a worker mid-stream and start it again."""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path

import pytest

from streamrec.e2e import Subscriber, start_worker, stop_process
from streamrec.producers.replay import Pacing, replay
from streamrec.stream.settings import Settings
from tests.integration.workers import ev, latest_states, read_all


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_kill_9_mid_stream_then_restart_loses_nothing(settings: Settings, tmp_path: Path, guarantee: str) -> None:
    s = settings.replace(guarantee=guarantee, worker_id="slot-1", max_batch=200)
    rng = random.Random(11)
    users = [f"u{k}" for k in range(40)]
    events = [ev(k, rng.choice(users), f"i{rng.randrange(300)}") for k in range(4000)]
    sent = Counter(e.user_id for e in events)
    last_of = {e.user_id: e.event_id for e in events}
    sub = Subscriber(s)
    sub.start()
    sub.ready.wait(10)
    proc = start_worker(s, "--no-model-sync", log_path=tmp_path / "worker.log")
    producer = threading.Thread(target=replay, args=(events, s, Pacing("rate", 2000)))
    try:
        producer.start()
        # kill -9 once the worker is visibly mid-stream
        assert sub.wait_for(lambda a: len(a) >= 200, 60), (tmp_path / "worker.log").read_text()[-3000:]
        stop_process(proc, kill=True)
        assert proc.returncode == -9
        before_restart = len(sub.snapshot())
        proc = start_worker(s, "--no-model-sync", log_path=tmp_path / "worker.log")
        producer.join(30)
        done = lambda arr: {a.trigger_event_id for a in arr} >= set(last_of.values())  # noqa: E731
        assert sub.wait_for(done, 90), (tmp_path / "worker.log").read_text()[-3000:]
        assert len(sub.snapshot()) > before_restart
    finally:
        assert stop_process(proc) == 0  # SIGTERM: finish the batch, commit, close, exit 0
        sub.stop()
    states = latest_states(s)
    assert {u: sum(st["counts"].values()) for u, st in states.items()} == dict(sent)
    if guarantee == "exactly-once":
        committed = [(v["user_id"], v["trigger_event_id"]) for _, v in read_all(s, s.recommendations_topic,
                                                                                  "recommendation")]
        dup = [k for k, n in Counter(committed).items() if n > 1]
        assert not dup, f"duplicated lists in exactly-once mode: {dup[:5]}"
