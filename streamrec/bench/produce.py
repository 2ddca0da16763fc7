"""``streamrec bench produce``: the worker's send pattern through one producer, per producer setting, in one
run on one broker: what batch size, linger and compression buy for the worker.

The worker's pattern, per batch: ``lists`` recommendation records (about 700 bytes each, keyed by user, the
default partitioner) and, at the commit, one changelog record per user (explicit partition), then a flush
(at-least-once; an exactly-once commit flushes the same way). The records are encoded with the worker's
codecs from a generated workload (Zipf items, sessions of recent items), so they compress as the worker's
do. Per variant: microseconds per list of the send loop (``send_us_per_list``: the worker's produce stage),
of the flush (``flush_us_per_list``: its commit stage), their sum, and the bytes the broker stored per list
on each topic. Variants run in turn on fresh topics, ``rounds`` times over (the figures are the mean of the
rounds, and ``spread`` the largest relative difference between two rounds of one variant: the machine's
drift within the run).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from streamrec.bench.common import broker_session, machine
from streamrec.consumers.reconnect import RECONNECT
from streamrec.stream import clients
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from streamrec.stream.topics import TopicSpec, ensure_topics

#: (name, producer overrides); the first is the worker's own configuration (stream/clients.py)
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("worker", {}),
    ("linger_0", {"linger_ms": 0}),
    ("linger_50", {"linger_ms": 50}),
    ("linger_200", {"linger_ms": 200}),
    ("batch_64k", {"batch_size": 64 * 1024}),
    ("batch_1m", {"batch_size": 1024 * 1024}),
    ("compression_none", {"compression_type": None}),
    ("compression_gzip", {"compression_type": "gzip"}),
]


def worker_records(users: int, items: int, n: int, seed: int = 0) -> tuple[list[tuple[bytes, bytes]],
                                                                            list[tuple[bytes, bytes]]]:
    """``n`` (key, value) recommendation records and ``n`` changelog records, as the worker encodes them."""
    rng = np.random.default_rng(seed)
    rec, state = codec_for("recommendation"), codec_for("user_state")
    sources = ("ann", "covisit", "trending", "recent", "session_knn")
    lists, states = [], []
    now = int(time.time() * 1000)
    for k in range(n):
        user = f"u{int(rng.integers(users))}"
        picks = rng.integers(0, items, 20)     # lists spread over the catalogue
        lists.append((user.encode(), rec.encode({
            "user_id": user, "trigger_event_id": f"e{k}-{user}", "trigger_timestamp": now, "trigger_partition": 0,
            "trigger_offset": k, "emitted_at": now, "model_version": "bench-v1", "index_version": "bench-v1",
            "items": [{"item_id": f"i{int(i)}", "score": float(rng.random()), "source": sources[int(i) % 5],
                       "reason": f"covisit:i{int(picks[0])}" if int(i) % 5 == 1 else sources[int(i) % 5]}
                      for i in picks]})))
        m = int(rng.integers(1, 30))
        recent = [f"i{int(i)}" for i in np.minimum(rng.zipf(1.3, m) - 1, items - 1)]
        states.append((user.encode(), state.encode({
            "user_id": user, "recent_items": recent, "recent_types": [int(t) for t in rng.integers(0, 4, m)],
            "recent_ts": [now - 1000 * j for j in range(m)], "recent_strength": [1.0] * m, "seen": recent,
            "purchased": [], "counts": {"VIEW": m}, "last_offset": k, "last_ts": now, "last_event_id": f"e{k}",
            "shown": [f"i{int(i)}" for i in picks]})))
    return lists, states


def _topic_bytes(settings: Settings, topic: str) -> int | None:
    from streamrec.bench.worker import topic_bytes

    return topic_bytes(settings, topic)


def run(settings: Settings, batches: int = 40, lists: int = 350, users: int = 20_000,
        items: int = 100_000, rounds: int = 4) -> dict[str, Any]:
    rec_records, state_records = worker_records(users, items, batches * lists)
    per_round: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in VARIANTS}
    with broker_session(settings) as s:
        partitions = s.events_partitions
        # each round starts one variant later, so no variant always runs first (or after the same one)
        plan = [(r, *VARIANTS[(r + k) % len(VARIANTS)]) for r in range(rounds) for k in range(len(VARIANTS))]
        for run_no, (_round, name, overrides) in enumerate(plan):
            recs_topic, state_topic = f"{s.recommendations_topic}-{run_no}", f"{s.state_topic()}-{run_no}"
            ensure_topics(s, [TopicSpec(recs_topic, s.recommendations_partitions, {"cleanup.policy": "delete"}),
                              TopicSpec(state_topic, partitions, {"cleanup.policy": "delete"})])
            producer = clients.producer(s, **{**RECONNECT, **overrides})
            try:
                for key, value in rec_records[:lists]:   # warm-up: connections and metadata
                    producer.send(recs_topic, key=key, value=value)
                producer.send(state_topic, key=b"warm", value=b"", partition=0)
                producer.flush()
                send_s = flush_s = 0.0
                for b in range(batches):
                    chunk = slice(b * lists, (b + 1) * lists)
                    t0 = time.perf_counter()
                    for key, value in rec_records[chunk]:
                        producer.send(recs_topic, key=key, value=value)
                    for key, value in state_records[chunk]:
                        producer.send(state_topic, key=key, value=value, partition=key[-1] % partitions)
                    t1 = time.perf_counter()
                    producer.flush()
                    send_s, flush_s = send_s + t1 - t0, flush_s + time.perf_counter() - t1
            finally:
                producer.close(timeout=10)
            n = batches * lists
            stored = {"recommendations": _topic_bytes(s, recs_topic), "changelog": _topic_bytes(s, state_topic)}
            per_round[name].append({"send": send_s / n * 1e6, "flush": flush_s / n * 1e6, "stored": {
                k: (v / n if v is not None else None) for k, v in stored.items()}})
    out: list[dict[str, Any]] = []
    for name, overrides in VARIANTS:
        got = per_round[name]
        totals = [g["send"] + g["flush"] for g in got]
        out.append({"variant": name, "overrides": dict(overrides),
                    "send_us_per_list": round(float(np.mean([g["send"] for g in got])), 1),
                    "flush_us_per_list": round(float(np.mean([g["flush"] for g in got])), 1),
                    "total_us_per_list": round(float(np.mean(totals)), 1),
                    "total_us_per_list_rounds": [round(x, 1) for x in totals],
                    "spread": round((max(totals) - min(totals)) / max(min(totals), 1e-9), 3),
                    "stored_bytes_per_list": {k: (round(got[0]["stored"][k], 1) if got[0]["stored"][k] is not None
                                                  else None) for k in got[0]["stored"]}})
    payload = {"recommendations": round(sum(len(k) + len(v) for k, v in rec_records) / len(rec_records), 1),
               "changelog": round(sum(len(k) + len(v) for k, v in state_records) / len(state_records), 1)}
    base = dict(clients.producer_defaults(settings))
    return {"benchmark": "produce", "batches": batches, "lists_per_batch": lists, "rounds": rounds,
            "payload_bytes_per_list": payload, "worker_producer": base, "variants": out, "machine": machine()}
