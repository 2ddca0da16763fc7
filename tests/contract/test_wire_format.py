"""Contract tests: golden bytes for each schema, round trips, and typed errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.stream.errors import BadMarkerError, CorruptRecordError, UnknownSchemaError
from streamrec.stream.serde import MARKER, codec_for, fingerprint, load_schema_json
from tests.contract.samples import SAMPLES

GOLDEN = Path(__file__).parent / "golden"
SCHEMAS = sorted(SAMPLES)


@pytest.mark.parametrize("name", SCHEMAS)
def test_golden_bytes(name: str) -> None:
    """The encoding of a fixed record never changes without a deliberate schema change."""
    data = codec_for(name).encode(SAMPLES[name])
    assert data.hex() == (GOLDEN / f"{name}.hex").read_text().strip()
    assert codec_for(name).decode(data) == SAMPLES[name]


@pytest.mark.parametrize("name", SCHEMAS)
def test_header_is_marker_plus_little_endian_crc64(name: str) -> None:
    codec = codec_for(name)
    data = codec.encode(SAMPLES[name])
    assert data[:2] == MARKER
    assert data[2:10] == fingerprint(load_schema_json(codec.path))


def test_fingerprint_matches_avro_spec_vector() -> None:
    # Avro's reference: CRC-64-AVRO of the canonical form "null" is 7195948357588979594.
    assert int.from_bytes(fingerprint("null"), "little") == 7195948357588979594  # type: ignore[arg-type]


@pytest.mark.parametrize("name", SCHEMAS)
def test_wrong_fingerprint_raises_unknown_schema(name: str) -> None:
    data = bytearray(codec_for(name).encode(SAMPLES[name]))
    data[2] ^= 0xFF
    with pytest.raises(UnknownSchemaError):
        codec_for(name).decode(bytes(data))


@pytest.mark.parametrize("name", SCHEMAS)
def test_truncated_body_raises_corrupt_record(name: str) -> None:
    data = codec_for(name).encode(SAMPLES[name])
    with pytest.raises(CorruptRecordError):
        codec_for(name).decode(data[:-3])


def test_trailing_garbage_and_bad_marker() -> None:
    data = codec_for("event").encode(SAMPLES["event"])
    with pytest.raises(CorruptRecordError):
        codec_for("event").decode(data + b"\x00")
    with pytest.raises(BadMarkerError):
        codec_for("event").decode(b"\x00\x01" + data[2:])
    with pytest.raises(BadMarkerError):
        codec_for("event").decode(b"")


texts = st.text(max_size=30)
millis = st.integers(min_value=0, max_value=2**53)
events = st.fixed_dictionaries({
    "event_id": texts, "user_id": texts, "item_id": texts,
    "event_type": st.sampled_from(["VIEW", "CLICK", "ADD_TO_CART", "PURCHASE", "RATING", "OTHER"]),
    "timestamp": millis, "session_id": st.none() | texts,
    "value": st.none() | st.floats(allow_nan=False), "context": st.dictionaries(texts, texts, max_size=4),
})
floats32 = st.floats(width=32, allow_nan=False)
rec_items = st.lists(st.fixed_dictionaries({"item_id": texts, "score": floats32, "source": texts, "reason": texts}),
                     max_size=25)
recommendations = st.fixed_dictionaries({
    "user_id": texts, "items": rec_items, "trigger_event_id": texts, "trigger_timestamp": millis,
    "trigger_partition": st.integers(-1, 2**31 - 1), "trigger_offset": st.integers(-1, 2**62),
    "emitted_at": millis, "model_version": st.none() | texts, "index_version": st.none() | texts,
})
user_states = st.fixed_dictionaries({
    "user_id": texts, "recent_items": st.lists(texts, max_size=8), "recent_types": st.lists(st.integers(0, 5)),
    "recent_ts": st.lists(millis), "recent_strength": st.lists(floats32), "seen": st.lists(texts),
    "purchased": st.lists(texts), "counts": st.dictionaries(texts, st.integers(0, 2**40)),
    "last_offset": st.integers(-1, 2**62), "last_ts": millis, "last_event_id": texts,
    "shown": st.lists(texts, max_size=20),
})
chunks = st.fixed_dictionaries({
    "version": texts, "kind": st.sampled_from(["MANIFEST", "CHUNK", "ROLLBACK", "RETRAIN_REQUEST"]),
    "file": texts, "index": st.integers(0, 2**31 - 1), "count": st.integers(0, 2**31 - 1),
    "data": st.binary(max_size=200), "sent_at": millis,
})


@settings(max_examples=150, deadline=None)
@given(st.one_of(events.map(lambda r: ("event", r)), recommendations.map(lambda r: ("recommendation", r)),
                 user_states.map(lambda r: ("user_state", r)), chunks.map(lambda r: ("model_chunk", r))))
def test_round_trip(named: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    name, record = named
    codec = codec_for(name)
    assert codec.decode(codec.encode(record)) == record
