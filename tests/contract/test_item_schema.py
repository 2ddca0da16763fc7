"""Contract tests of the catalog record (stream/schemas/item.avsc): golden bytes, round trips, evolution
(a record written without the optional fields reads with their defaults), and validation on decode."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.models.catalog.item import Item
from streamrec.stream.errors import CorruptRecordError, InvalidRecordError, UnknownSchemaError
from streamrec.stream.items import decode_item, encode_item, item_from_record, item_to_record
from streamrec.stream.serde import MARKER, SCHEMA_DIR, AvroCodec, codec_for, fingerprint, load_schema_json

GOLDEN = Path(__file__).parent / "golden"
SAMPLE = {"item_id": "sku-1", "title": "Blue running shoe", "description": "Light, for the road.",
          "category": ["shoes", "running"], "brand": "acme", "price": 59.5, "tags": ["sale", "blue"],
          "available": True, "hidden": False, "created_at": 1700000000000, "updated_at": 1700000000123,
          "attributes": {"color": "blue"}}


def test_golden_bytes() -> None:
    data = codec_for("item").encode(SAMPLE)
    assert data.hex() == (GOLDEN / "item.hex").read_text().strip()
    assert codec_for("item").decode(data) == SAMPLE
    assert data[:2] == MARKER and data[2:10] == fingerprint(load_schema_json(SCHEMA_DIR / "item.avsc"))


def test_every_optional_field_has_a_default() -> None:
    schema = load_schema_json(SCHEMA_DIR / "item.avsc")
    assert [f["name"] for f in schema["fields"] if "default" not in f] == ["item_id"]


def test_a_minimal_writer_reads_with_defaults(tmp_path: Path) -> None:
    """A producer that knows only item_id and title (an older or a smaller schema) is read by today's
    schema with every other field at its default: the schema can grow."""
    small = {"type": "record", "name": "Item", "namespace": "io.streamrec",
             "fields": [{"name": "item_id", "type": "string"}, {"name": "title", "type": "string"}]}
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "item.v0.avsc").write_text(json.dumps(small))
    (tmp_path / "item.avsc").write_text((SCHEMA_DIR / "item.avsc").read_text())
    buf = io.BytesIO()
    buf.write(MARKER + fingerprint(small))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(small), {"item_id": "x", "title": "T"})
    rec = AvroCodec("item", tmp_path).decode(buf.getvalue())
    assert item_from_record(rec) == Item("x", "T")
    with pytest.raises(UnknownSchemaError):       # today's codec knows no such writer until it is in history/
        codec_for("item").decode(buf.getvalue())


texts = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
items = st.builds(
    Item, item_id=texts, title=st.text(max_size=30), description=st.none() | st.text(max_size=30),
    category=st.lists(texts, max_size=3).map(tuple), brand=st.none() | texts,
    price=st.none() | st.floats(min_value=0, max_value=1e9, allow_nan=False),
    tags=st.lists(texts, max_size=4).map(tuple), available=st.booleans(), hidden=st.booleans(),
    created_at_ms=st.none() | st.integers(0, 1_700_000_000_000),
    updated_at_ms=st.none() | st.integers(0, 1_700_000_000_000),
    attributes=st.dictionaries(texts, st.text(max_size=10), max_size=3))


@given(items)
@settings(max_examples=200, deadline=None)
def test_round_trip(item: Item) -> None:
    assert decode_item(encode_item(item), item.item_id.encode()) == item
    assert item_from_record(item_to_record(item)) == item


def test_decode_validates_every_field() -> None:
    def bad(**fields: object) -> bytes:
        return codec_for("item").encode({**SAMPLE, **fields})
    for fields, reason in (({"item_id": " "}, "blank"), ({"price": -1.0}, "negative"),
                           ({"price": float("inf")}, "finite"), ({"category": ["shoes", ""]}, "blank"),
                           ({"item_id": "x" * 300}, "over the limit"), ({"updated_at": 10**15}, "future"),
                           ({"tags": ["t"] * 100}, "tags")):
        with pytest.raises(InvalidRecordError, match=reason):
            decode_item(bad(**fields))
    with pytest.raises(InvalidRecordError, match="key"):
        decode_item(codec_for("item").encode(SAMPLE), b"other")
    with pytest.raises(CorruptRecordError):
        decode_item(codec_for("item").encode(SAMPLE)[:-2])
