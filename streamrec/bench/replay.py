"""``streamrec bench replay``: events/s produced to, and read back from, a real broker, beside the
yardstick: a plain kafka-python producer of the same records, pre-encoded, on the same broker in the same
run (``streamrec/bench/yardstick.py``). ``ratio_to_ceiling`` is the median over ``--rounds`` alternated rounds
of the replay's events/s over the plain producer's (``ceiling_events_per_s``, the median); the two write to
separate topics of the same partition count."""

from __future__ import annotations

import statistics
import time
from typing import Any

from streamrec.bench.common import broker_session, machine, synthetic_events
from streamrec.bench.yardstick import bare_produce
from streamrec.models.errors import InputError
from streamrec.producers.replay import Pacing, replay
from streamrec.stream.errors import BrokerError
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from streamrec.stream.tail import read
from streamrec.stream.topics import TopicSpec, ensure_topics


def run(settings: Settings, events: int, seed: int = 0, yardstick: bool = True, rounds: int = 3) -> dict[str, Any]:
    """``rounds`` rounds of (plain producer, replay), alternated so that both see the same machine; the
    figures are the medians, and the ratio the median of the rounds' ratios (each round's pair is listed)."""
    if rounds < 1:
        raise InputError(f"--rounds must be at least 1, got {rounds}")
    log = synthetic_events(events, users=max(1, events // 20), items=max(1, events // 10), seed=seed)
    refs: list[dict[str, Any]] = []
    runs: list[float] = []
    with broker_session(settings) as s:
        codec = codec_for("event")
        records = [(e.user_id.encode(), codec.encode(e.to_record())) for e in log] if yardstick else []
        ref_topic, warm_topic = s.events_topic + "-ref", s.events_topic + "-warm"
        if yardstick:   # a warm-up on a topic of its own first
            ensure_topics(s, [TopicSpec(t, s.events_partitions, {"cleanup.policy": "delete"})
                              for t in (ref_topic, warm_topic)])
            bare_produce(s, records[:5000], warm_topic)
        for _ in range(rounds):
            if yardstick:
                refs.append(bare_produce(s, records, ref_topic))
            stats = replay(log, s, Pacing())
            runs.append(stats.rate)
            if not stats.complete:
                raise BrokerError(f"the benchmark's replay did not land every record: {stats}")
        del records
        started = time.perf_counter()
        n = sum(1 for m in read(s, s.events_topic, from_beginning=True, max_messages=events, timeout_s=10)
                if m.value is not None)
        read_s = time.perf_counter() - started
    rate = statistics.median(runs)
    result: dict[str, Any] = {
        "benchmark": "replay", "events": events, "read_back": n, "rounds": rounds,
        "produce_events_per_s": round(rate, 1), "produce_seconds": round(events / rate, 3),
        "produce_events_per_s_per_round": [round(r, 1) for r in runs],
        "read_events_per_s": round(n / read_s, 1), "read_seconds": round(read_s, 3),
        "compression": settings.compression, "partitions": settings.events_partitions,
        "decode": "fastavro single-object", "machine": machine(),
    }
    if refs:
        ceilings = [r["events_per_s"] for r in refs]
        ceiling = statistics.median(ceilings)
        ratios = [r / c for r, c in zip(runs, ceilings, strict=True) if c > 0]
        result.update(reference={**refs[0], "events_per_s": round(ceiling, 1), "events_per_s_per_round": ceilings},
                      ceiling_events_per_s=round(ceiling, 1),
                      ratio_to_ceiling=round(statistics.median(ratios), 3) if ratios else None,
                      ratio_per_round=[round(r, 3) for r in ratios])
    return result
