"""The item plane's in-process cost in the engine: apply, recommend and delta batching per event, local
covisit/trending against their plane variants (empty cache: the local fallback), on a 30,000-event Pareto
workload over 100,000 items. Run: ``flock /tmp/streamrec-bench.lock .venv/bin/python tools/itemplane_engine_cost.py``.
"""

from __future__ import annotations

import random
import time

from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType
from streamrec.stream.itemdeltas import batch_records

N, BATCH, T0 = 30_000, 1_500, 1_700_000_000_000
SOURCES = {"local": ("covisit", "recent", "trending", "cold_start"),
           "plane": ("covisit_global", "recent", "trending_global", "cold_start")}


def main() -> None:
    rnd = random.Random(1)  # noqa: S311 - a workload, not a secret
    events = [Event(f"e{k}", f"u{rnd.randrange(7500)}", f"i{int(rnd.paretovariate(0.7)) % 100_000}",
                    EventType.CLICK, T0 + k * 10) for k in range(N)]
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
                for _, value, n in batch_records(rec.item_plane.collector.take(), 6):
                    sent += len(value)
                    records += n
            seconds["apply"] += t1 - t0
            seconds["recommend"] += t2 - t1
            seconds["deltas"] += time.perf_counter() - t2
        us = ", ".join(f"{k} {1e6 * v / N:.1f} us" for k, v in seconds.items())
        print(f"{name}: {us} per event; {sent / N:.1f} delta bytes and {records / N:.2f} deltas per event")


if __name__ == "__main__":
    main()
