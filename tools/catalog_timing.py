"""Time one ``recommend`` call of 500 users with and without a catalog of 100,000 items (not a test: a
measurement to report; ``.venv/bin/python tools/catalog_timing.py``)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from streamrec.models.base.artifact import load_artifact, random_artifact
from streamrec.models.catalog.item import Item
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType

N_ITEMS, N_USERS, EVENTS, CALLS = 100_000, 500, 20_000, 7


def timed(rec: Recommender, users: list[str]) -> str:
    """Median whole call and median select stage (where the catalog's masks and rules are applied), in ms."""
    total, select = [], []
    for _ in range(CALLS):
        before = rec.timings["select"]
        t = time.perf_counter()
        rec.recommend(users, now_ms=1_700_100_000_000)
        total.append(time.perf_counter() - t)
        select.append(rec.timings["select"] - before)
    return f"{statistics.median(total) * 1000:.1f} ms (select {statistics.median(select) * 1000:.1f} ms)"


def engine(cfg: EngineConfig, artifact: object, events: list[Event]) -> Recommender:
    rec = Recommender(cfg, artifact=artifact)  # type: ignore[arg-type]
    rec.apply(events)
    return rec


def main() -> None:
    rng = np.random.default_rng(0)
    items = [f"i{k}" for k in range(N_ITEMS)]
    zipf = np.minimum(rng.zipf(1.3, EVENTS) - 1, N_ITEMS - 1)
    events = [Event(f"e{n}", f"u{rng.integers(N_USERS)}", items[int(z)], EventType.CLICK, 1_700_000_000_000 + n)
              for n, z in enumerate(zipf)]
    users = [f"u{u}" for u in range(N_USERS)]
    catalog = [Item(i, f"item {k}", category=(f"d{k % 8}", f"c{k % 200}"), brand=f"b{k % 300}",
                    price=float(k % 500), available=k % 20 != 0, hidden=k % 100 == 1) for k, i in enumerate(items)]
    with tempfile.TemporaryDirectory() as tmp:
        random_artifact(Path(tmp) / "m", n_items=N_ITEMS, dim=32, seed=1, clusters=50, version="m")
        art = load_artifact(Path(tmp) / "m")
        for label, model in (("no model", None), ("model of 100,000 items (flat index)", art)):
            base = EngineConfig(trending_refresh_events=1, index_kind="flat")
            rules = EngineConfig(trending_refresh_events=1, index_kind="flat", rule_max_per_category=3,
                                 rule_max_per_brand=2, rule_exclude_categories=("d7",), rule_max_price=400.0)
            plain = timed(engine(base, model, events), users)
            rec = engine(base, model, events)
            t = time.perf_counter()
            rec.update_catalog(catalog)
            load_s = time.perf_counter() - t
            n_blocked = len(rec.catalog.blocked)
            blocked = timed(rec, users)
            rec = engine(rules, model, events)
            rec.update_catalog(catalog)
            ruled = timed(rec, users)
            print(f"{label}: recommend({N_USERS} users), median of {CALLS} calls: no catalog {plain}; catalog of "
                  f"{N_ITEMS:,} items, {n_blocked:,} blocked (update_catalog {load_s:.2f} s): {blocked}; with "
                  f"rules (caps per category and brand, an excluded department, a price cap; "
                  f"{len(rec.catalog.blocked):,} blocked): {ruled}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
