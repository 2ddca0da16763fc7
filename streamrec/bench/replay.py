"""``streamrec bench replay``: events/s produced to, and read back from, a real broker."""

from __future__ import annotations

import time
from typing import Any

from streamrec.bench.common import broker_session, machine, synthetic_events
from streamrec.producers.replay import Pacing, replay
from streamrec.stream.settings import Settings
from streamrec.stream.tail import read


def run(settings: Settings, events: int, seed: int = 0) -> dict[str, Any]:
    log = synthetic_events(events, users=max(1, events // 20), items=max(1, events // 10), seed=seed)
    with broker_session(settings) as s:
        stats = replay(log, s, Pacing())
        started = time.perf_counter()
        n = sum(1 for m in read(s, s.events_topic, from_beginning=True, max_messages=events, timeout_s=10)
                if m.value is not None)
        read_s = time.perf_counter() - started
    return {
        "benchmark": "replay", "events": events, "read_back": n,
        "produce_events_per_s": round(stats.rate, 1), "produce_seconds": round(stats.seconds, 3),
        "read_events_per_s": round(n / read_s, 1), "read_seconds": round(read_s, 3),
        "compression": settings.compression, "partitions": settings.events_partitions,
        "decode": "fastavro single-object", "machine": machine(),
    }
