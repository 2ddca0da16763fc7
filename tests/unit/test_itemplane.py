"""The item plane's pure state: the deltas equal the local tables' maths, decay, bounds, idempotence by source
range, the cache, the plane sources, and the wire records (validation)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.errors import ConfigError
from streamrec.models.events import Event, EventType
from streamrec.models.serving.covisit import CoVisitation
from streamrec.models.serving.itemplane import DeltaCollector, ItemCache, ItemDelta, ItemStats
from streamrec.models.serving.trending import Trending
from streamrec.stream.errors import InvalidRecordError
from streamrec.stream.itemdeltas import decode_delta, decode_result, encode_delta, encode_result

HL_C, HL_T = 50_000, 20_000


def _stream(n: int, seed: int = 3) -> list[tuple[str, str, float, int]]:
    rnd = random.Random(seed)
    return [(f"u{rnd.randrange(8)}", f"i{rnd.randrange(30)}", rnd.choice([1.0, 3.0]), 1000 * k + rnd.randrange(900))
            for k in range(n)]


def _through_plane(events: list[tuple[str, str, float, int]], batches: int, window: int = 3) -> ItemStats:
    """Learn ``events`` with a collector cut into ``batches`` ranges, applied by one owner."""
    col = DeltaCollector(window, HL_C, HL_T)
    stats = ItemStats(max_neighbours=1000, covisit_half_life_ms=HL_C, trending_half_life_ms=HL_T)
    recent: dict[str, list[str]] = {}
    cuts = np.array_split(np.arange(len(events)), batches)
    for cut in cuts:
        col.enter(0, int(cut[0]), int(cut[-1]))
        for k in cut.tolist():
            user, item, s, ts = events[k]
            prev = recent.setdefault(user, [])
            col.covisit(tuple(prev), item, s, ts)
            col.trend(item, s, ts)
            if item in prev:
                prev.remove(item)
            prev.insert(0, item)
        for d in col.take():
            assert stats.apply(d) == "applied"
    return stats


def test_deltas_through_an_owner_equal_the_local_tables() -> None:
    """Co-visitation and trending learnt through deltas (any batching) equal what one CoVisitation / Trending
    learns from the whole stream, decayed to the same time."""
    events = _stream(400)
    cv, tr = CoVisitation(window=3, max_neighbors=1000, half_life_ms=HL_C), Trending(half_life_ms=HL_T)
    recent: dict[str, list[str]] = {}
    for user, item, s, ts in events:
        prev = recent.setdefault(user, [])
        cv.update(tuple(prev), item, s, ts)
        tr.update(item, s, ts)
        if item in prev:
            prev.remove(item)
        prev.insert(0, item)
    now = max(ts for *_, ts in events)
    for batches in (1, 7, 400):
        stats = _through_plane(events, batches)
        for item in {e[1] for e in events}:
            rec = stats.record(item)
            assert rec is not None
            f_c, f_t = 2.0 ** ((rec["ts"] - now) / HL_C), 2.0 ** ((rec["ts"] - now) / HL_T)
            got = {j: w * f_c for j, w in zip(rec["neighbours"], rec["weights"], strict=True)}
            want = dict(cv.neighbors(item))
            assert got.keys() == want.keys()
            assert np.allclose([got[j] for j in want], list(want.values()), rtol=1e-9)
            assert rec["trending"] * f_t == pytest.approx(tr.score(item), rel=1e-9)


def test_a_redone_range_is_never_counted_twice() -> None:
    st = ItemStats()
    first = ItemDelta("a", 1000, (("b", 1.0),), 1.0, 2, 100, 199)
    assert st.apply(first) == "applied"
    assert st.apply(first) == "redone"                                           # the same batch again
    assert st.apply(ItemDelta("a", 1000, (("b", 1.0),), 1.0, 2, 100, 150)) == "redone"
    assert st.apply(ItemDelta("a", 1000, (("b", 1.0),), 1.0, 2, 150, 260)) == "overlap"   # a redo cut elsewhere
    assert st.neighbours("a") == [("b", 1.0)] and st.trending("a") == 1.0
    assert st.apply(ItemDelta("a", 1000, (("b", 1.0),), 1.0, 3, 100, 199)) == "applied"   # another partition
    assert st.apply(ItemDelta("a", 1000, (("b", 1.0),), 1.0, 2, 200, 260)) == "applied"   # the next range
    assert st.neighbours("a") == [("b", 3.0)] and st.n == {"applied": 3, "redone": 2, "overlap": 1, "facts": 0,
                                                          "evicted": 0, "pruned": 0}


def test_decay_and_out_of_order_deltas() -> None:
    st = ItemStats(covisit_half_life_ms=1000, trending_half_life_ms=500)
    st.apply(ItemDelta("a", 5000, (("b", 4.0),), 4.0, 0, 0, 0))
    st.apply(ItemDelta("a", 6000, (("c", 1.0),), 0.0, 0, 1, 1))     # a half-life of co-visitation later
    assert dict(st.neighbours("a")) == {"b": 2.0, "c": 1.0} and st.trending("a") == 1.0   # two of trending
    st.apply(ItemDelta("a", 5000, (("c", 2.0),), 0.0, 1, 0, 0))     # an older delta from another partition
    assert dict(st.neighbours("a")) == {"b": 2.0, "c": 2.0}
    assert st.record("a")["ts"] == 6000                             # type: ignore[index]


def test_bounds_prune_and_evict() -> None:
    st = ItemStats(max_neighbours=4, max_items=3)
    st.apply(ItemDelta("a", 0, tuple((f"n{k}", float(k)) for k in range(1, 8)), 0.0, 0, 0, 0))
    assert [j for j, _ in st.neighbours("a")] == ["n7", "n6", "n5", "n4"] and st.n["pruned"] == 1
    for k, item in enumerate(("b", "c", "d")):
        st.apply(ItemDelta(item, 0, (("a", 1.0),), 0.0, 0, k + 1, k + 1))
    assert len(st) == 3 and "a" not in st and st.take_evicted() == ["a"] and st.take_evicted() == []


def test_a_record_restores_the_same_state() -> None:
    st = _through_plane(_stream(200), 5)
    again = ItemStats(max_neighbours=1000, covisit_half_life_ms=HL_C, trending_half_life_ms=HL_T)
    for item in st.items():
        again.load(decode_result(encode_result(st.record(item)), item.encode()))   # type: ignore[arg-type]
    assert all(again.record(i) == st.record(i) for i in st.items())
    d = ItemDelta(st.items()[0], 0, (("x", 1.0),), 0.0, 0, 0, 10)
    assert again.apply(d) == "redone"                        # the source offsets came back with the state


def test_collector_ranges_partitions_and_drop() -> None:
    col = DeltaCollector(window=2)
    col.covisit(("a",), "b", 1.0, 0)                       # no range entered: nothing collected
    assert col.pending() == 0
    col.enter(1, 10, 20)
    col.covisit(("a",), "b", 1.0, 0)
    col.enter(2, 5, 5)
    col.trend("c", 2.0, 0)
    col.enter(1, 21, 30)
    col.trend("b", 1.0, 0)
    deltas = {(d.source_partition, d.item_id): d for d in col.take()}
    assert set(deltas) == {(1, "a"), (1, "b"), (2, "c")}
    assert (deltas[1, "b"].source_first, deltas[1, "b"].source_last, deltas[1, "b"].trending) == (10, 30, 1.0)
    col.enter(1, 31, 31)
    col.trend("b", 1.0, 0)
    col.drop({1})
    assert col.take() == []
    with pytest.raises(ConfigError):
        DeltaCollector(window=0)


def test_cache_decays_to_its_newest_time_and_bounds() -> None:
    c = ItemCache(covisit_half_life_ms=1000, trending_half_life_ms=1000, max_items=2)
    c.put("a", 0, [("x", 8.0)], 8.0)
    c.put("b", 2000, [("x", 1.0)], 1.0)
    assert c.row("a") == {"x": 2.0} and c.scores(["a", "b"], [1.0, 1.0]) == {"x": 3.0}
    assert c.top(5)[0] == ["a", "b"]
    c.put("c", 2000, [], 0.0)
    assert "a" not in c and c.evicted == 1 and c.top(5)[0] == ["b"]
    c.remove("b")
    assert c.top(5)[0] == []


def test_the_plane_sources_serve_the_cache_first() -> None:
    rec = Recommender(EngineConfig(sources=("covisit_global", "recent", "trending_global"), filter_seen="all"))
    assert rec.columns == ("covisit", "recent", "trending") and rec.item_plane is not None
    rec.apply([Event("e1", "u1", "x", EventType.CLICK, 1_000)])
    [lst] = rec.recommend(["u1"], now_ms=2_000)
    assert lst.items == ()                                  # nothing known about x anywhere
    rec.item_plane.cache.put("x", 1_000, [("y", 1.0)], 0.0)  # learnt by another worker
    rec.item_plane.cache.put("t", 1_000, [], 5.0)
    [lst] = rec.recommend(["u1"], now_ms=3_000)
    got = {it.item_id: (it.source, it.reason) for it in lst.items}
    assert got == {"y": ("covisit", "covisit:x"), "t": ("trending", "trending")}
    with pytest.raises(ConfigError, match="twice"):
        Recommender(EngineConfig(sources=("covisit", "covisit_global")))


def test_the_local_table_learns_only_pairs_with_an_item_the_cache_does_not_hold() -> None:
    """A pair of two cached items is served from the cache, so the local table does not learn it again; a pair
    with an uncached item is learnt locally (it is served from there until the cache holds the item), and the
    deltas carry every pair either way."""
    rec = Recommender(EngineConfig(sources=("covisit_global", "recent"), filter_seen="all"))
    plane, local = rec.item_plane, rec.covisit
    assert plane is not None and local is not None
    for item in ("a", "b"):
        plane.cache.put(item, 1_000, [], 0.0)
    plane.collector.enter(0, 0, 2)                                 # as the worker's loop does per partition
    rec.apply([Event("e1", "u1", "a", EventType.CLICK, 1_000), Event("e2", "u1", "b", EventType.CLICK, 2_000)])
    assert local.row("a") == {} and local.row("b") == {}           # both cached: not learnt locally
    rec.apply([Event("e3", "u1", "n", EventType.CLICK, 3_000)])    # n is new: its pairs with b and a are
    assert set(local.row("n")) == {"a", "b"} and "n" in local.row("b")
    sent = {d.item_id: {j for j, _ in d.neighbours} for d in plane.collector.take()}
    assert sent["a"] == {"b", "n"} and sent["b"] == {"a", "n"}     # the deltas still carry every pair


def test_wire_records_are_validated() -> None:
    d = ItemDelta("i-1", 1_700_000_000_000, (("i-2", 0.5),), 1.0, 3, 10, 42)
    assert decode_delta(encode_delta(d), b"i-1") == d
    bad = [(ItemDelta("i-1", 0, (("i-2", float("nan")),), 0.0, 0, 0, 0), b"i-1", "finite"),
           (ItemDelta("i-1", 0, (), float("inf"), 0, 0, 0), b"i-1", "finite"),
           (ItemDelta("i-1", 0, (), 0.0, 0, 5, 4), b"i-1", "offset range"),
           (ItemDelta("", 0, (), 0.0, 0, 0, 0), b"", "empty"),
           (ItemDelta("i-1", 0, (("x" * 300, 1.0),), 0.0, 0, 0, 0), b"i-1", "longer"),
           (d, b"i-9", "key")]
    for delta, key, reason in bad:
        with pytest.raises(InvalidRecordError, match=reason):
            decode_delta(encode_delta(delta), key)
