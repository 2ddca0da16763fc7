"""The catalog follower's record handling, on in-memory records (the Kafka side is tests/integration/
test_catalog.py): items queued and applied in arrival order between batches, tombstones remove, every bad
record is a dead letter with the worker's headers, nothing raises."""

from __future__ import annotations

import structlog

from streamrec.consumers.catalog import CatalogFollower
from streamrec.consumers.decode import DeadLetter
from streamrec.models.catalog.item import Item
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.stream.items import encode_item, item_to_record
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings


def rec(offset: int, key: bytes | None, value: bytes | None) -> Record:
    return Record("items", 0, offset, 0, key, value)


def test_records_are_validated_queued_and_applied_between_batches() -> None:
    engine = Recommender(EngineConfig())
    dead: list[DeadLetter] = []
    f = CatalogFollower(Settings(), engine, structlog.get_logger("test"), dead_letters=dead.append)
    f.stop_event.set()                        # no follower thread in this test
    f.decode([rec(0, b"a", encode_item(Item("a", hidden=True, updated_at_ms=1))),
              rec(1, b"b", encode_item(Item("b"))),
              rec(2, b"x", b"garbage"),
              rec(3, b"n", codec_for("item").encode({**item_to_record(Item("n")), "price": float("nan")})),
              rec(4, b"a", encode_item(Item("a", hidden=False, updated_at_ms=2))),
              rec(5, b"b", None),
              rec(6, None, None),
              rec(7, "é".encode("latin-1"), None)])
    assert len(engine.catalog) == 0           # nothing applied until the hook runs
    f.between_batches()
    assert engine.catalog.get("a") is not None and not engine.catalog.blocked
    assert engine.catalog.get("b") is None    # removed by its tombstone
    assert [d.record.offset for d in dead] == [2, 3, 6, 7]
    assert [d.error_type for d in dead] == ["bad_marker", "invalid_record", "invalid_record", "invalid_record"]
    headers = dict(dead[1].headers())
    assert headers["source.topic"] == b"items" and headers["source.offset"] == b"3"
    assert b"finite" in headers["error.message"]
    assert f.stats()["catalog_follow_dead_letters"] == 4 and f.stats()["catalog_follow_tombstones"] == 1
