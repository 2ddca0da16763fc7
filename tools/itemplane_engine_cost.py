"""The item plane's in-process cost in the engine: apply, recommend and delta batching per event, local
covisit/trending against their plane variants (empty cache: the local fallback), on a 30,000-event Pareto
workload over 100,000 items; then the item cache's cost per result as a worker follows item-results: the
results an owner publishes for that workload's deltas (top ``item_neighbours``, as ``consumers/itemplane.py``
writes them), decoded and validated (``decode_result``) and put into an ``ItemCache`` (``put``).
Run: ``flock /tmp/streamrec-bench.lock .venv/bin/python tools/itemplane_engine_cost.py``.
"""

from __future__ import annotations

import random
import time

from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType
from streamrec.models.serving.itemplane import ItemCache, ItemStats
from streamrec.stream.itemdeltas import _check, batch_records, decode_result, encode_result
from streamrec.stream.serde import codec_for

N, BATCH, T0 = 30_000, 1_500, 1_700_000_000_000
SOURCES = {"local": ("covisit", "recent", "trending", "cold_start"),
           "plane": ("covisit_global", "recent", "trending_global", "cold_start")}


def main() -> None:
    rnd = random.Random(1)  # noqa: S311 - a workload, not a secret
    events = [Event(f"e{k}", f"u{rnd.randrange(7500)}", f"i{int(rnd.paretovariate(0.7)) % 100_000}",
                    EventType.CLICK, T0 + k * 10) for k in range(N)]
    deltas: list = []
    for name, sources in SOURCES.items():
        rec = Recommender(EngineConfig(sources=sources))
        seconds = dict.fromkeys(("apply", "recommend", "deltas"), 0.0)
        sent = records = 0
        for b in range(0, N, BATCH):
            batch = events[b:b + BATCH]
            t0 = time.perf_counter()
            if rec.item_plane is not None:
                rec.item_plane.collector.enter(0, b, b + len(batch) - 1)
            touched = rec.apply(batch, partition=0, offsets=list(range(b, b + len(batch))))
            t1 = time.perf_counter()
            rec.recommend(touched, now_ms=0)
            t2 = time.perf_counter()
            if rec.item_plane is not None:   # as the loop's commit sends them: batches per item-deltas partition
                taken = rec.item_plane.collector.take()
                deltas.append(taken)
                for _, value, n in batch_records(taken, 6):
                    sent += len(value)
                    records += n
            seconds["apply"] += t1 - t0
            seconds["recommend"] += t2 - t1
            seconds["deltas"] += time.perf_counter() - t2
        us = ", ".join(f"{k} {1e6 * v / N:.1f} us" for k, v in seconds.items())
        print(f"{name}: {us} per event; {sent / N:.1f} delta bytes and {records / N:.2f} deltas per event")
    cache_cost(deltas)


def cache_cost(batches: list, k: int = 20, repeat: int = 3) -> None:
    """Decode + validate and ``ItemCache.put`` per result: one result per item changed in a commit's deltas."""
    stats, values = ItemStats(max_neighbours=k), []
    for batch in batches:
        changed = dict.fromkeys(d.item_id for d in batch if stats.apply(d) != "redone")
        for item in changed:
            full = stats.record(item)
            if full is None:
                continue
            top = {**full, "sources": [], "neighbours": full["neighbours"][:k], "weights": full["weights"][:k]}
            values.append((item.encode(), encode_result(top)))
    best = {"decode": float("inf"), "fastavro": float("inf"), "put": float("inf")}
    codec = codec_for("item_result")
    for _ in range(repeat):
        cache = ItemCache()
        t0 = time.perf_counter()
        recs = [decode_result(v, key, 256) for key, v in values]
        t1 = time.perf_counter()
        cache.put_results([(r["item_id"], r) for r in recs])     # as the follower's drain does
        t2 = time.perf_counter()
        for key, v in values:       # the codec's path (fastavro), which every record took before the direct reader
            _check(codec.decode(v), key, 256)
        t3 = time.perf_counter()
        for k, v in {"decode": t1 - t0, "put": t2 - t1, "fastavro": t3 - t2}.items():
            best[k] = min(best[k], v)
    nb = sum(len(r["neighbours"]) for r in recs) / len(recs)
    us = {k: f"{1e6 * v / len(values):.1f} us" for k, v in best.items()}
    print(f"results: {len(values)} ({len(values) / N:.2f} per event, {nb:.1f} neighbours each); per result: "
          f"decode + validate {us['decode']} (through fastavro: {us['fastavro']}), put {us['put']} (best of {repeat})")


if __name__ == "__main__":
    main()
