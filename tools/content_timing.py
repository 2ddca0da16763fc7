"""What the ``content`` source costs (not a test: a measurement to report).

``.venv/bin/python tools/content_timing.py [ITEMS]`` (default 100,000): a synthetic catalog (titles of 3-6
words from 5,000, a two-level category, a brand, 2 tags), then

* the engine: 20,000 clicks of 2,000 users, then one ``recommend`` per 100-user batch for every user, with the
  default sources and with ``content`` added: milliseconds per user, in all and in the content source;
* the index alone: one bulk load, one new record, memory, one search per user alone and in a batch of 100.
"""

from __future__ import annotations

import json
import sys
import time

import faiss
import numpy as np

from streamrec.models.catalog.content import ContentIndex
from streamrec.models.catalog.item import Item
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType

T0 = 1_700_000_000_000


def catalog(n: int, rng: np.random.Generator) -> list[Item]:
    vocab = [f"w{k}x" for k in range(5000)]
    return [Item(f"i{k}", " ".join(vocab[w] for w in rng.choice(5000, rng.integers(3, 7))),
                 category=(f"c{k % 50}", f"s{k % 500}"), brand=f"b{rng.integers(300)}",
                 tags=tuple(f"t{t}" for t in rng.choice(200, 2))) for k in range(n)]


def engine(items: list[Item], rng: np.random.Generator, users: int = 2_000) -> dict[str, object]:
    events = [Event(f"e{j}", f"u{j % users}", f"i{rng.integers(len(items))}", EventType.CLICK, T0 + j * 100)
              for j in range(20_000)]
    out: dict[str, object] = {}
    default = EngineConfig().sources
    for name, sources in (("default", default), ("with_content", (*default[:-2], "content", *default[-2:]))):
        rec = Recommender(EngineConfig(sources=sources))
        t = time.perf_counter()
        rec.update_catalog(items)
        load_s = time.perf_counter() - t
        rec.apply(events)
        for key in rec.timings:
            rec.timings[key] = 0.0
        t = time.perf_counter()
        for b in range(0, users, 100):
            rec.recommend([f"u{u}" for u in range(b, b + 100)], now_ms=T0 + 2_000_000)
        total = time.perf_counter() - t
        out[name] = {"catalog_load_s": round(load_s, 1), "recommend_ms_per_user": round(1e3 * total / users, 3),
                     "content_ms_per_user": round(1e3 * rec.timings.get("content", 0.0) / users, 3),
                     "stages_ms_per_user": round(1e3 * rec.timings["stages"] / users, 3)}
    return out


def index(items: list[Item], rng: np.random.Generator) -> dict[str, object]:
    idx = ContentIndex()
    t = time.perf_counter()
    idx.update(items)
    out: dict[str, object] = {"kind": idx.kind, "bulk_load_s": round(time.perf_counter() - t, 1),
                              "memory_mb": round(idx.memory_bytes() / 2**20, 1)}
    t = time.perf_counter()
    for k in range(100):
        idx.update([Item(f"new{k}", "w1x w2x w3x", tags=("t1",))])
    out["one_new_record_ms"] = round(10 * (time.perf_counter() - t), 2)
    for users in (1, 100):
        seeds = [[f"i{j}" for j in rng.choice(len(items), 5)] for _ in range(users)]
        weights = [[1 / (1 + p) for p in range(5)] for _ in range(users)]
        reps = 20 if users == 1 else 5
        t = time.perf_counter()
        for _ in range(reps):
            idx.search(idx.query(seeds, weights), 105)
        out[f"search_ms_per_user_batch_{users}"] = round(1e3 * (time.perf_counter() - t) / reps / users, 3)
    return out


def main() -> None:
    faiss.omp_set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = np.random.default_rng(0)
    items = catalog(n, rng)
    print(json.dumps({"items": n, "engine": engine(items, rng), "index": index(items, rng)}))


if __name__ == "__main__":
    main()
