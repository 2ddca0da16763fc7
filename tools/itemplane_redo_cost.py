"""What the item plane's exact redo rule costs where it applies (docs/item-plane.md): deltas per source offset
(the first STREAMREC_ITEM_EXACT_REDO offsets of a partition a worker starts) against deltas aggregated per commit,
on the Pareto workload of tools/itemplane_engine_cost.py over 100,000 items: delta bytes (batch records, as the
worker sends them) and deltas per event, and the engine's apply plus the collector's take per event.
Run: ``flock /tmp/streamrec-bench.lock .venv/bin/python tools/itemplane_redo_cost.py``."""

from __future__ import annotations

import random
import time

from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType
from streamrec.stream.itemdeltas import batch_records

T0 = 1_790_000_000_000
N, BATCH, PER_COMMIT = 20_000, 40, 5       # events; a batch; batches per commit (200 ms at ~1,000 events/s)


def run(exact_redo: int, events: list[Event]) -> tuple[float, float, float]:
    rec = Recommender(EngineConfig(sources=("covisit_global", "recent", "trending_global")))
    col = rec.item_plane.collector
    col.exact_redo = exact_redo
    sent = deltas = 0
    seconds = 0.0
    for b in range(0, N, BATCH):
        batch = events[b:b + BATCH]
        t0 = time.perf_counter()
        col.enter(0, b, b + len(batch) - 1)
        rec.apply(batch, partition=0, offsets=list(range(b, b + len(batch))))
        if (b // BATCH + 1) % PER_COMMIT == 0:
            taken = col.take()
            seconds += time.perf_counter() - t0
            deltas += len(taken)
            sent += sum(len(v) for _, v, _ in batch_records(taken, 6))
        else:
            seconds += time.perf_counter() - t0
    return sent / N, deltas / N, 1e6 * seconds / N


def main() -> None:
    rnd = random.Random(1)  # noqa: S311 - a workload, not a secret
    events = [Event(f"e{k}", f"u{rnd.randrange(7500)}", f"i{int(rnd.paretovariate(0.7)) % 100_000}",
                    EventType.CLICK, T0 + k * 10) for k in range(N)]
    for name, exact in (("aggregated (past the region)", 0), ("per source offset (the region)", N)):
        b, d, us = run(exact, events)
        print(f"{name}: {b:.1f} delta bytes, {d:.2f} deltas, {us:.1f} us apply + take per event")


if __name__ == "__main__":
    main()
