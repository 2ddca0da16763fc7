"""First-seen times and categories of new items on the item plane: a worker's first sighting goes out with its
deltas (once), the owner keeps the earliest time over workers and the first category (from any delivery:
both are idempotent), results carry them, the cache exposes them, and the engine's newest items (cold start,
exploration) come from the global view when the plane is on."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.models.catalog.item import Item
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.events import Event, EventType
from streamrec.models.serving.itemmeta import NO_TIME
from streamrec.models.serving.itemplane import ItemDelta, ItemStats
from streamrec.stream.errors import InvalidRecordError
from streamrec.stream.itemdeltas import decode_delta, decode_result, encode_delta, encode_result

GOLDEN = Path(__file__).resolve().parents[1] / "contract" / "golden"


def _engine() -> Recommender:
    return Recommender(EngineConfig(sources=("covisit_global", "recent", "trending_global", "cold_start")))


def _apply(eng: Recommender, events: list[Event], partition: int, first: int) -> None:
    eng.item_plane.collector.enter(partition, first, first + len(events) - 1)      # as the loop does
    eng.apply(events, partition=partition, offsets=list(range(first, first + len(events))))


def _click(k: int, user: str, item: str, ts: int, category: str | None = None) -> Event:
    return Event(f"e{k}-{user}", user, item, EventType.CLICK, ts, context={"category": category} if category else {})


def test_a_first_sighting_goes_out_once_with_its_category() -> None:
    eng = _engine()
    eng.update_catalog([Item("b", "B", category=("shoes", "running"))])
    _apply(eng, [_click(1, "u", "a", 5_000, "hats"), _click(2, "u", "b", 4_000), _click(3, "v", "a", 3_000)], 2, 10)
    deltas = {d.item_id: d for d in eng.item_plane.collector.take()}
    assert (deltas["a"].first_seen, deltas["a"].category) == (3_000, "hats")     # the earliest event time
    assert (deltas["b"].first_seen, deltas["b"].category) == (4_000, "running")  # the catalog's leaf category
    assert all(d.source_partition == 2 for d in deltas.values())
    _apply(eng, [_click(4, "w", "a", 9_000, "other"), _click(5, "w", "c", 9_500)], 2, 13)
    again = {d.item_id: d for d in eng.item_plane.collector.take()}
    assert (again["a"].first_seen, again["a"].category) == (NO_TIME, "")          # sent before: not again
    assert (again["c"].first_seen, again["c"].category) == (9_500, "")


def test_an_aborted_batch_sends_its_first_sightings_again() -> None:
    eng = _engine()
    _apply(eng, [_click(1, "u", "a", 5_000)], 0, 0)
    eng.item_plane.collector.clear()                  # the loop's recover(): the batch is redone
    eng.drop_partition(0)
    eng.forget_event_ids()
    _apply(eng, [_click(1, "u", "a", 5_000)], 0, 0)
    [d] = [d for d in eng.item_plane.collector.take() if d.item_id == "a"]
    assert d.first_seen == 5_000


def test_an_item_the_cache_knows_is_not_sent_again() -> None:
    eng = _engine()
    eng.item_plane.cache.put("a", 1_000, [], 0.0, 1_000, "hats")
    _apply(eng, [_click(1, "u", "a", 5_000, "hats")], 0, 0)
    assert all(d.first_seen == NO_TIME for d in eng.item_plane.collector.take())


def test_the_owner_keeps_the_earliest_time_and_the_first_category_from_any_delivery() -> None:
    st = ItemStats()
    assert st.apply(ItemDelta("a", 5_000, (("b", 1.0),), 1.0, 0, 10, 20, 5_000, "hats")) == "applied"
    assert st.apply(ItemDelta("a", 7_000, (), 1.0, 1, 0, 5, 7_000, "shoes")) == "applied"       # later, elsewhere
    assert (st.first_seen("a"), st.category("a")) == (5_000, "hats")
    # a redone range is skipped, but an earlier first-seen time in it still counts (a minimum is idempotent)
    assert st.apply(ItemDelta("a", 4_000, (("b", 1.0),), 1.0, 0, 10, 20, 4_000, "")) == "facts"
    assert st.apply(ItemDelta("a", 4_000, (("b", 1.0),), 1.0, 0, 10, 20, 4_000, "")) == "redone"
    assert st.first_seen("a") == 4_000 and st.n["applied"] == 2 and st.n["facts"] == 1
    rec = st.record("a")
    assert rec is not None and (rec["first_seen"], rec["category"]) == (4_000, "hats")
    back = ItemStats()
    back.load(decode_result(encode_result(rec), b"a"))          # the changelog round trip
    assert (back.first_seen("a"), back.category("a")) == (4_000, "hats")


def test_the_wire_carries_them_and_older_records_still_read() -> None:
    d = ItemDelta("a", 5_000, (("b", 1.0),), 1.0, 0, 10, 20, 4_000, "hats")
    assert decode_delta(encode_delta(d), b"a") == d
    # the records written before first-seen times travelled (tests/contract/golden/*.v1.hex) read with defaults
    old = decode_delta(bytes.fromhex((GOLDEN / "item_delta.v1.hex").read_text().strip()), b"i-7")
    assert (old.first_seen, old.category, old.source_last) == (NO_TIME, "", 180)
    rec = decode_result(bytes.fromhex((GOLDEN / "item_result.v1.hex").read_text().strip()), b"i-7")
    assert (rec["first_seen"], rec["category"], rec["trending"]) == (NO_TIME, "", 12.0)
    with pytest.raises(InvalidRecordError, match="first_seen"):
        decode_delta(encode_delta(ItemDelta("a", 5, (), 0.0, 0, 1, 2, -7, "")))
    with pytest.raises(InvalidRecordError, match="category"):
        decode_delta(encode_delta(ItemDelta("a", 5, (), 0.0, 0, 1, 2, 5, " ")))


def test_the_engines_newest_items_come_from_the_global_view() -> None:
    eng = _engine()
    _apply(eng, [_click(1, "u", "old", 1_000), _click(2, "u", "local-new", 2_000)], 0, 0)
    cache = eng.item_plane.cache
    cache.put("old", 1_000, [], 1.0, 100, "")           # another worker saw "old" long ago
    cache.put("elsewhere", 1_000, [], 1.0, 900, "")     # first seen on another worker, never here
    newest = eng.newest(5)
    assert newest[:1] == ["local-new"]                  # not known to the plane yet: this worker's own first
    assert newest.index("elsewhere") < newest.index("old")
    assert "elsewhere" not in eng.trending.newest(5)    # the local counts never saw it
    assert Recommender(EngineConfig(sources=("covisit", "trending"))).newest(3) == []
