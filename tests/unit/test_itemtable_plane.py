"""The reranker's item table reads the item plane's global first-seen times and categories when the plane is
on (``item_age`` and ``category_affinity`` of items first seen on another worker), its own otherwise."""

from __future__ import annotations

import numpy as np

from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType
from streamrec.models.serving.itemplane import ItemStats
from streamrec.stream.itemdeltas import decode_result, encode_result

PLANE = ("covisit_global", "recent", "trending_global", "cold_start")


def _engine(sources: tuple[str, ...] = PLANE) -> Recommender:
    return Recommender(EngineConfig(sources=sources, reranker=True))


def _click(k: int, user: str, item: str, ts: int, category: str | None = None) -> Event:
    return Event(f"e{k}-{user}", user, item, EventType.CLICK, ts, context={"category": category} if category else {})


def _apply(eng: Recommender, events: list[Event], partition: int) -> None:
    if eng.item_plane is not None:
        eng.item_plane.collector.enter(partition, 0, len(events) - 1)      # as the worker's loop does
    eng.apply(events, partition=partition, offsets=list(range(len(events))))


def _round_trip(owner: ItemStats, senders: list[Recommender], readers: list[Recommender]) -> None:
    """The plane: the senders' deltas to the item owner, its results (over the wire format) to every cache."""
    for eng in senders:
        assert eng.item_plane is not None
        for d in eng.item_plane.collector.take():
            owner.apply(d)
    results = [(i, decode_result(encode_result(owner.record(i)), i.encode())) for i in owner.items()]
    for eng in readers:
        assert eng.item_plane is not None
        eng.item_plane.cache.put_results(results)


def test_an_item_first_seen_by_the_other_worker_gets_its_true_age_and_category() -> None:
    a, b = _engine(), _engine()
    owner = ItemStats()
    _apply(a, [_click(1, "ua", "x", 1_000), _click(2, "ua", "y", 2_000, "hats")], partition=0)
    _round_trip(owner, [a], [a, b])
    _apply(b, [_click(3, "ub", "x", 50_000)], partition=1)        # b's own first sighting of x is much later
    assert b.online is not None and a.online is not None
    table = b.online.items
    assert table.first_seen(["x", "y", "never"]).tolist() == [1_000, 2_000, -1]
    first, cat = table.facts(np.array([-1, -1]), ["x", "y"])       # what build_features reads
    assert first.tolist() == [1_000, 2_000]
    hats = a.online.items.categories(["y"])[0]
    assert hats >= 0 and cat[1] >= 0 and table.categories(["y", "x"]).tolist() == [cat[1], -1]
    # a restored checkpoint keeps reading the plane
    assert b.online.restore(b.online.checkpoint())["items"] == "restored"
    assert b.online.items.first_seen(["x", "y"]).tolist() == [1_000, 2_000]


def test_model_items_bound_by_code_get_the_global_facts_too() -> None:
    a, b = _engine(), _engine()
    _apply(a, [_click(1, "ua", "m1", 1_000, "hats")], partition=0)
    _round_trip(ItemStats(), [a], [b])
    assert b.online is not None
    table = b.online.items
    table.bind(("m0", "m1"), {"m0": 0, "m1": 1}, np.array([3, -1]))
    first, cat = table.facts(np.array([0, 1]), ["m0", "m1"])
    assert first.tolist() == [-1, 1_000] and cat[0] == (1 << 32) + 3 and 0 <= cat[1] < 1 << 32
    # an item the plane learns of after a first look-up is found at the next one
    _apply(a, [_click(2, "va", "m0", 3_000)], partition=0)
    _round_trip(ItemStats(), [a], [b])
    assert table.facts(np.array([0, 1]), ["m0", "m1"])[0].tolist() == [3_000, 1_000]


def test_without_the_plane_the_table_keeps_its_own_sightings() -> None:
    eng = _engine(("covisit", "recent", "trending", "cold_start"))
    _apply(eng, [_click(1, "u", "x", 50_000)], partition=0)
    assert eng.online is not None and eng.online.items.global_facts is None
    assert eng.online.items.first_seen(["x", "y"]).tolist() == [50_000, -1]


def test_cached_plane_facts_of_model_items_equal_a_fresh_read_at_every_call() -> None:
    """Disjoint calls, a plane whose size does not change (at capacity: one item out, one in), an earlier
    first-seen time published later, a category that arrives after the time, removals; a random walk of all
    of these, each answer compared with reading the plane afresh."""
    from streamrec.models.online.itemtable import ItemTable
    from streamrec.models.serving.itemmeta import NO_TIME, ItemFacts

    ids = tuple(f"m{k}" for k in range(40))
    facts = ItemFacts(keep=5)
    table = ItemTable()
    table.bind(ids, {m: k for k, m in enumerate(ids)}, None)
    table.global_facts = facts

    def fresh(codes: np.ndarray) -> tuple[list[int], list[int]]:
        twin = ItemTable()
        twin._codes = table._codes          # the same category codes
        twin.bind(ids, {m: k for k, m in enumerate(ids)}, None)
        twin.global_facts = {i: facts.get(i) for i in set(facts._first) | set(facts._cat)}   # no change log
        f, c = twin.facts(codes, list(ids))
        return f.tolist(), c.tolist()

    facts.put("m0", 1_000, "")
    facts.put("m1", 2_000, "")
    assert table.facts(np.array([0]), ids)[0].tolist() == [1_000]
    assert table.facts(np.array([1]), ids)[0].tolist() == [2_000]          # a disjoint second call
    facts.remove("m0")
    facts.put("m2", 3_000, "")                                             # same size, another item
    assert table.facts(np.array([0, 2]), ids)[0].tolist() == [-1, 3_000]
    facts.put("m1", 1_500, "")                                             # an earlier time, published later
    facts.put("m1", NO_TIME, "hats")                                       # the category after the time
    first, cat = table.facts(np.array([1]), ids)
    assert first.tolist() == [1_500] and cat.tolist() == [table.categories(["m1"]).tolist()[0]] and cat[0] >= 0

    rng = np.random.default_rng(7)
    for step in range(400):
        item = ids[int(rng.integers(len(ids)))]
        roll = rng.random()
        if roll < 0.4:
            facts.put(item, int(rng.integers(1, 10_000)), "")
        elif roll < 0.6:
            facts.put(item, NO_TIME, str(rng.choice(["hats", "socks", "shoes"])))
        elif roll < 0.7:
            facts.remove(item)
        codes = rng.integers(len(ids), size=int(rng.integers(1, 12)))
        got = table.facts(codes, ids)
        assert (got[0].tolist(), got[1].tolist()) == fresh(codes), step
    # a reader further behind than the change log keeps reads everything again
    behind = table._g_changes
    facts.LOG_KEEP = 3
    for k in range(10):
        facts.put(ids[k], 50_000 + k, "")
    assert facts.changed_since(behind) is None
    assert table.facts(np.arange(10), ids)[0].tolist() == [50_000 + k for k in range(10)]
