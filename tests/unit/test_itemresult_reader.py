"""The item-result direct reader (``stream.itemdeltas.read_result``) gives exactly what the codec gives.

For records of the current ``item_result`` schema it returns the dict ``codec_for("item_result").decode``
returns; for anything else (corrupt, truncated, trailing bytes, blocks it leaves to the codec, an older writer)
it returns ``None`` and :func:`decode_result` hands the bytes to the codec, so what ``decode_result`` accepts
(the record) and refuses (the error type and message) is what the codec path and the same validation give.
"""

from __future__ import annotations

import random
import re
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.stream import itemdeltas
from streamrec.stream.avro_writer import varint
from streamrec.stream.errors import DecodeError
from streamrec.stream.itemdeltas import decode_result, encode_result, read_result
from streamrec.stream.serde import HEADER_LEN, codec_for

CODEC = codec_for("item_result")
LONG = st.integers(-(2 ** 63), 2 ** 63 - 1)
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
ids = st.sampled_from(["i-1", "i-2", " ", "", "x" * 300, "ï-7", "i-9"]) | text
doubles = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.5, -1.0, 1e308])
records = st.fixed_dictionaries({
    "item_id": ids, "ts": LONG | st.integers(0, 1 << 45),
    "neighbours": st.lists(ids, max_size=25), "weights": st.lists(doubles, max_size=25),
    "trending": doubles,
    "sources": st.lists(st.fixed_dictionaries({"partition": st.integers(-(2 ** 31), 2 ** 31 - 1), "offset": LONG}),
                        max_size=4),
    "first_seen": LONG | st.just(-1), "category": ids,
})


def _plain(rec: dict[str, Any] | None) -> Any:
    """The record with every double as its bytes (NaN equals NaN, -0.0 differs from 0.0)."""
    if rec is None:
        return None
    return {**rec, "weights": [struct.pack("<d", w) for w in rec["weights"]],
            "trending": struct.pack("<d", rec["trending"])}


def _outcome(value: bytes, key: bytes | None) -> tuple[str, Any]:
    try:
        return "ok", _plain(decode_result(value, key, 256))
    except DecodeError as exc:       # InvalidRecordError, CorruptRecordError, ...
        return type(exc).__name__, re.sub(r" at 0x[0-9a-f]+", "", str(exc))


def _codec_outcome(value: bytes, key: bytes | None, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    with monkeypatch.context() as m:
        m.setattr(itemdeltas, "read_result", lambda data: None)
        return _outcome(value, key)


@settings(max_examples=500, deadline=None)
@given(records)
def test_a_record_reads_as_the_codec_reads_it(rec: dict[str, Any]) -> None:
    data = CODEC.encode_with_fastavro(rec)
    got = read_result(data)
    assert got is not None
    assert _plain(got) == _plain(CODEC.decode(data)) == _plain(rec)
    assert [type(v) for v in got.values()] == [type(v) for v in CODEC.decode(data).values()]


@settings(max_examples=300, deadline=None)
@given(records, st.booleans())
def test_decode_result_accepts_and_refuses_as_fastavro_and_the_rules_do(rec: dict[str, Any], keyed: bool) -> None:
    data = CODEC.encode_with_fastavro(rec)
    key = rec["item_id"].encode("utf-8", "surrogatepass") if keyed else None
    with pytest.MonkeyPatch.context() as mp:
        assert _outcome(data, key) == _codec_outcome(data, key, mp)


def _good(k: int) -> dict[str, Any]:
    return {"item_id": f"ï{k}" if k % 5 == 0 else f"i{k}", "ts": 1_700_000_000_000 + k,
            "neighbours": [f"n{k}-{j}" for j in range(k % 9)], "weights": [1.0 + j for j in range(k % 9)],
            "trending": float(k % 4), "sources": [{"partition": 1, "offset": k}] if k % 3 == 0 else [],
            "first_seen": -1 if k % 2 else 1_699_000_000_000, "category": "hats" if k % 4 == 0 else ""}


def test_corrupt_records_are_refused_as_the_codec_refuses_them(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(13)
    base = [encode_result(_good(k)) for k in range(80)]
    values = [b"", b"\xc3\x01", b"\x00\x01" + base[1][2:], base[1] + b"\x00", base[2][:2] + bytes(8) + base[2][10:]]
    for data in base * 4:
        b = bytearray(data)
        what = rng.randrange(4)
        if what == 0:
            values.append(bytes(b[:rng.randrange(len(b))]))            # truncated
        elif what == 1:
            b[rng.randrange(HEADER_LEN, len(b))] = rng.randrange(256)  # one byte changed
            values.append(bytes(b))
        elif what == 2:
            values.append(bytes(b) + bytes([rng.randrange(256)]))      # a trailing byte
        else:
            values.append(bytes(b))
    outcomes = [(_outcome(v, None), _codec_outcome(v, None, monkeypatch)) for v in values]
    assert all(a == b for a, b in outcomes), [(v, a, b) for v, (a, b) in zip(values, outcomes, strict=True) if a != b]
    kinds = {a[0] for a, _ in outcomes}
    assert "ok" in kinds and len(kinds) >= 3, kinds


def _body(parts: list[bytes]) -> bytes:
    return CODEC._header + b"".join(parts)


def _s(text: str) -> bytes:
    data = text.encode()
    return varint(len(data)) + data


def test_blocks_it_reads_and_blocks_it_leaves_to_the_codec() -> None:
    head = [_s("i-1"), varint(5)]
    tail = [struct.pack("<d", 1.0), b"\x00", varint(-1), _s("")]
    # neighbours in two blocks, weights in two blocks: read directly, as the codec reads them
    two = _body([*head, varint(1), _s("a"), varint(1), _s("b"), b"\x00",
                 varint(1), struct.pack("<d", 0.5), varint(1), struct.pack("<d", 0.25), b"\x00", *tail])
    assert read_result(two) == CODEC.decode(two)
    assert read_result(two)["neighbours"] == ["a", "b"]                     # type: ignore[index]
    # a block with its byte size (a negative count): the codec's
    sized = _body([*head, varint(-2), varint(4), _s("a"), _s("b"), b"\x00",
                   varint(2), struct.pack("<2d", 0.5, 0.25), b"\x00", *tail])
    assert read_result(sized) is None
    assert decode_result(sized)["neighbours"] == ["a", "b"] == CODEC.decode(sized)["neighbours"]
    # a long string (a two-byte length) and bad UTF-8
    long_id = _body([_s("i" * 100), varint(5), b"\x00", b"\x00", *tail])
    assert read_result(long_id) == CODEC.decode(long_id)
    bad = _body([varint(2), b"\xff\xfe", varint(5), b"\x00", b"\x00", *tail])
    assert read_result(bad) is None
    with pytest.raises(DecodeError):
        decode_result(bad)
    # an older writer schema (history/item_result.v1.avsc) is the codec's
    old = next(iter(CODEC._writers))
    assert read_result(CODEC._header[:2] + old + two[HEADER_LEN:]) is None
