"""``ItemCache.put_results``: the item cache fed in bulk from decoded results (what the follower's drain does)
serves what a reference model of its rules serves: the newest result of each item, least recently put evicted
past ``max_items``, a tombstone removing the item, each row's dict built at its first read (equal on every read)."""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

from streamrec.models.serving.itemplane import ItemCache
from streamrec.stream.itemdeltas import decode_result, encode_result


def _result(rnd: random.Random, item: str, ts: int) -> dict[str, Any]:
    n = rnd.randrange(6)
    return {"item_id": item, "ts": ts, "neighbours": [f"n{rnd.randrange(30)}" for _ in range(n)],
            "weights": [rnd.choice([0.0, 0.5, 2.0, 7.25]) for _ in range(n)], "trending": rnd.choice([0.0, 1.0, 3.5]),
            "sources": [], "first_seen": rnd.choice([-1, ts - 5]), "category": rnd.choice(["", "hats"])}


def test_bulk_results_serve_what_the_rules_say() -> None:
    rnd = random.Random(5)
    cache = ItemCache(covisit_half_life_ms=1000, trending_half_life_ms=1000, max_items=12)
    model: OrderedDict[str, dict[str, Any]] = OrderedDict()
    ts = 10_000
    for _ in range(60):
        chunk: list[tuple[str, dict[str, Any] | None]] = []
        for _ in range(rnd.randrange(1, 8)):
            item = f"i{rnd.randrange(20)}"
            ts += rnd.randrange(0, 300)
            if rnd.random() < 0.15:
                chunk.append((item, None))
                model.pop(item, None)
                continue
            rec = decode_result(encode_result(_result(rnd, item, ts)), item.encode())   # as the follower queues it
            chunk.append((item, rec))
            model.pop(item, None)
            model[item] = rec
            if len(model) > 12:
                model.popitem(last=False)
        cache.put_results(chunk)
        assert list(cache._rows) == list(model)
        now = max(r["ts"] for r in model.values()) if model else 0
        assert cache.now_ms >= now
        for item in rnd.sample(sorted(model), min(3, len(model))):      # some rows read now, some later
            rec = model[item]
            f = 2.0 ** ((rec["ts"] - cache.now_ms) / 1000)
            want = {j: w * f for j, w in dict(zip(rec["neighbours"], rec["weights"], strict=True)).items()}
            assert cache.row(item) == want == cache.row(item)
            assert cache.scores([item], [2.0]) == {j: 2.0 * w for j, w in want.items()}
        trending = {i for i, r in model.items() if r["trending"] > 0}
        assert set(cache.top(100)[0]) == trending
        for item, rec in model.items():
            if rec["first_seen"] != -1:
                assert cache.first_seen(item) == rec["first_seen"]
    assert cache.updates > 100 and cache.evicted > 0
    assert "i999" not in cache and cache.weighted("i999", 1.0) == (0.0, None)


def test_put_and_put_results_agree() -> None:
    one, bulk = ItemCache(), ItemCache()
    one.put("a", 5_000, [("b", 1.0), ("c", 2.0)], 3.0, 4_000, "hats")
    one.put("b", 6_000, [], 0.0)
    bulk.put_results([("a", {"ts": 5_000, "neighbours": ["b", "c"], "weights": [1.0, 2.0], "trending": 3.0,
                             "first_seen": 4_000, "category": "hats"}),
                      ("b", {"ts": 6_000, "neighbours": [], "weights": [], "trending": 0.0, "first_seen": -1,
                             "category": ""}),
                      ("zz", None)])
    assert one.row("a") == bulk.row("a") and one.top(5)[0] == bulk.top(5)[0] == ["a"]
    assert (one.category("a"), one.first_seen("a")) == (bulk.category("a"), bulk.first_seen("a")) == ("hats", 4_000)
    assert one.updates == bulk.updates == 2 and len(one) == len(bulk) == 2
