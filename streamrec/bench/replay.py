"""``streamrec bench replay``: events/s produced to, and read back from, a real broker, beside the
yardstick: a plain kafka-python producer of the same records, pre-encoded, on the same broker in the same
run (``streamrec/bench/yardstick.py``). ``ratio_to_ceiling`` is the replay's events/s over the plain
producer's (``ceiling_events_per_s``); the two write to separate topics of the same partition count."""

from __future__ import annotations

import time
from typing import Any

from streamrec.bench.common import broker_session, machine, synthetic_events
from streamrec.bench.yardstick import bare_produce
from streamrec.producers.replay import Pacing, replay
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from streamrec.stream.tail import read
from streamrec.stream.topics import TopicSpec, ensure_topics


def run(settings: Settings, events: int, seed: int = 0, yardstick: bool = True) -> dict[str, Any]:
    log = synthetic_events(events, users=max(1, events // 20), items=max(1, events // 10), seed=seed)
    reference: dict[str, Any] | None = None
    with broker_session(settings) as s:
        if yardstick:   # a warm-up on a topic of its own, then the plain producer, then the replay
            codec = codec_for("event")
            records = [(e.user_id.encode(), codec.encode(e.to_record())) for e in log]
            ref_topic, warm_topic = s.events_topic + "-ref", s.events_topic + "-warm"
            ensure_topics(s, [TopicSpec(t, s.events_partitions, {"cleanup.policy": "delete"})
                              for t in (ref_topic, warm_topic)])
            bare_produce(s, records[:5000], warm_topic)
            reference = bare_produce(s, records, ref_topic)
            del records
        stats = replay(log, s, Pacing())
        started = time.perf_counter()
        n = sum(1 for m in read(s, s.events_topic, from_beginning=True, max_messages=events, timeout_s=10)
                if m.value is not None)
        read_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "benchmark": "replay", "events": events, "read_back": n,
        "produce_events_per_s": round(stats.rate, 1), "produce_seconds": round(stats.seconds, 3),
        "read_events_per_s": round(n / read_s, 1), "read_seconds": round(read_s, 3),
        "compression": settings.compression, "partitions": settings.events_partitions,
        "decode": "fastavro single-object", "machine": machine(),
    }
    if reference is not None:
        ceiling = reference["events_per_s"]
        result.update(reference=reference, ceiling_events_per_s=ceiling,
                      ratio_to_ceiling=round(stats.rate / ceiling, 3) if ceiling > 0 else None)
    return result
