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
