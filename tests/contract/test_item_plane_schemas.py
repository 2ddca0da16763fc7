"""Contract tests of the item plane's records: golden bytes, round trips, and refusal of what breaks the rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from streamrec.models.serving.itemplane import ItemDelta
from streamrec.stream.errors import CorruptRecordError, InvalidRecordError
from streamrec.stream.itemdeltas import (
    BATCH_ENTRIES,
    batch_records,
    batch_schema,
    decode_delta,
    decode_deltas,
    decode_result,
    encode_delta,
    encode_delta_batch,
    encode_result,
    partition_of,
)
from streamrec.stream.serde import SCHEMA_DIR, codec_for

GOLDEN = Path(__file__).parent / "golden"
SAMPLES = {
    "item_delta": {"item_id": "i-7", "ts": 1_700_000_000_000, "neighbours": ["i-1", "i-2"], "weights": [1.0, 0.5],
                   "trending": 3.0, "source_partition": 4, "source_first": 100, "source_last": 180,
                   "first_seen": 1_699_999_000_000, "category": "hats"},
    "item_result": {"item_id": "i-7", "ts": 1_700_000_000_000, "neighbours": ["i-1", "i-2"], "weights": [2.5, 0.25],
                    "trending": 12.0, "sources": [{"partition": 0, "offset": 41}, {"partition": 4, "offset": 180}],
                    "first_seen": 1_699_999_000_000, "category": "hats"},
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_golden_bytes(name: str) -> None:
    data = codec_for(name).encode(SAMPLES[name])
    assert data.hex() == (GOLDEN / f"{name}.hex").read_text().strip()
    assert codec_for(name).decode(data) == SAMPLES[name]


_ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20).filter(str.strip)
_weights = st.floats(min_value=0.0, max_value=1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(item=_ids, nb=st.lists(st.tuples(_ids, _weights), max_size=30), trending=_weights,
       ts=st.integers(0, 1 << 45), partition=st.integers(0, 1 << 20), first=st.integers(0, 1 << 40),
       span=st.integers(0, 1 << 20))
def test_delta_round_trip(item: str, nb: list[tuple[str, float]], trending: float, ts: int, partition: int,
                          first: int, span: int) -> None:
    d = ItemDelta(item, ts, tuple(nb), trending, partition, first, first + span)
    assert decode_delta(encode_delta(d), item.encode()) == d


def test_a_result_with_unequal_arrays_is_refused() -> None:
    rec = dict(SAMPLES["item_result"], weights=[1.0])
    with pytest.raises(InvalidRecordError, match="one weight per neighbour"):
        decode_result(encode_result(rec), b"i-7")
    with pytest.raises(InvalidRecordError, match="not the item id"):
        decode_result(encode_result(SAMPLES["item_result"]), b"i-8")
    rec = dict(SAMPLES["item_result"], sources=[{"partition": -1, "offset": 0}])
    with pytest.raises(InvalidRecordError, match="sources"):
        decode_result(encode_result(rec))


def test_the_batch_schema_file_is_generated_from_item_delta() -> None:
    """item_delta_batch.avsc (for readers outside streamrec) is what the codec builds from item_delta.avsc:
    regenerate it with ``batch_schema()`` when item_delta.avsc changes."""
    assert json.loads((SCHEMA_DIR / "item_delta_batch.avsc").read_text()) == batch_schema()


def _d(item: str, k: int, nb: int = 2) -> ItemDelta:
    return ItemDelta(item, 1_700_000_000_000 + k, tuple((f"n{k}-{j}", 1.0 + j) for j in range(nb)), 0.5, 3, 10, 20)


def test_batches_carry_every_delta_to_the_partition_kafka_would_key_it_to() -> None:
    deltas = [_d(f"i-{k}", k, nb=k % 7) for k in range(3000)]
    records = batch_records(deltas, 6)
    assert len(records) < 20 and sum(n for _, _, n in records) == len(deltas)
    cluster = type("Cluster", (), {"topics": lambda self: {"t"}, "partitions_for_topic": lambda self, t: set(range(6)),
                                   "available_partitions_for_topic": lambda self, t: set(range(6))})()
    back: list[ItemDelta] = []
    for p, value, n in records:
        got, refused = decode_deltas(value, None, p, 6)
        assert not refused and len(got) == n
        key = DefaultPartitioner().partition
        assert all(key("t", d.item_id, d.item_id.encode(), None, None, cluster) == p for d in got)
        assert sum(1 + len(d.neighbours) for d in got) <= BATCH_ENTRIES
        back.extend(got)
    assert sorted(back, key=lambda d: d.item_id) == sorted(deltas, key=lambda d: d.item_id)
    # a per-item record (as workers sent them before batches) reads the same way
    assert decode_deltas(encode_delta(deltas[0]), b"i-0", partition_of("i-0", 6), 6) == ([deltas[0]], [])


def test_a_batch_keeps_its_valid_deltas_and_names_the_refused() -> None:
    good, bad = _d("i-1", 1), ItemDelta("i-2", 0, (("n", -1.0),), 0.0, 0, 0, 0)
    elsewhere = next(f"x{k}" for k in range(100) if partition_of(f"x{k}", 6) != partition_of("i-1", 6))
    value = encode_delta_batch([good, bad, _d(elsewhere, 2)])
    got, refused = decode_deltas(value, None, partition_of("i-1", 6), 6)
    assert got == [good] and len(refused) == 2
    assert "not a finite" in refused[0] and "does not belong to item-deltas partition" in refused[1]
    with pytest.raises(CorruptRecordError):
        decode_deltas(value[:-3], None, 0, 6)


@settings(max_examples=40, deadline=None)
@given(deltas=st.lists(st.builds(
    ItemDelta, _ids, st.integers(0, 1 << 45), st.lists(st.tuples(_ids, _weights), max_size=12).map(tuple), _weights,
    st.integers(0, 1 << 20), st.integers(0, 1 << 40), st.integers(1 << 40, 1 << 41),
    st.one_of(st.just(-1), st.integers(0, 1 << 45)), st.one_of(st.just(""), _ids)), max_size=30))
def test_the_direct_batch_writer_writes_the_compiled_writers_bytes(deltas: list[ItemDelta]) -> None:
    from streamrec.stream import itemdeltas

    general = itemdeltas._batch_codec().encode({"deltas": [itemdeltas.delta_to_record(d) for d in deltas]})
    assert itemdeltas._direct_batch(deltas, itemdeltas._batch_codec()._header) == general
    assert encode_delta_batch(deltas) == general
    assert [dict(r) for r in itemdeltas._batch_codec().decode(general)["deltas"]] == [
        itemdeltas.delta_to_record(d) for d in deltas]
