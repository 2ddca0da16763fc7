"""Contract tests of the item plane's records: golden bytes, round trips, and refusal of what breaks the rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.models.serving.itemplane import ItemDelta
from streamrec.stream.errors import InvalidRecordError
from streamrec.stream.itemdeltas import decode_delta, decode_result, encode_delta, encode_result
from streamrec.stream.serde import codec_for

GOLDEN = Path(__file__).parent / "golden"
SAMPLES = {
    "item_delta": {"item_id": "i-7", "ts": 1_700_000_000_000, "neighbours": ["i-1", "i-2"], "weights": [1.0, 0.5],
                   "trending": 3.0, "source_partition": 4, "source_first": 100, "source_last": 180},
    "item_result": {"item_id": "i-7", "ts": 1_700_000_000_000, "neighbours": ["i-1", "i-2"], "weights": [2.5, 0.25],
                    "trending": 12.0, "sources": [{"partition": 0, "offset": 41}, {"partition": 4, "offset": 180}]},
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
