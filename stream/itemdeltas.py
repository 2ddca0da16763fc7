"""The item plane on the wire (docs/item-plane.md): deltas (``item_delta.avsc``) and results / owner state
(``item_result.avsc``), single-object encoded like every streamrec record.

Everything read back is validated before use (:func:`decode_delta`, :func:`decode_result`): ids non-empty and at
most ``max_id_bytes``, the key equal to the item id (compaction keeps one record per key), weights and trending
finite and not negative, times and offsets in range, at most :data:`MAX_NEIGHBOURS` entries. A record that
fails raises :class:`InvalidRecordError` (or :class:`DecodeError` for bad bytes) with the reason.

>>> from streamrec.models.serving.itemplane import ItemDelta
>>> d = ItemDelta("i-1", 1_700_000_000_000, (("i-2", 0.5),), 1.0, 3, 10, 42)
>>> decode_delta(encode_delta(d), b"i-1") == d
True
>>> decode_delta(encode_delta(ItemDelta("i-1", 0, (("i-2", -1.0),), 0.0, 0, 0, 0)))
Traceback (most recent call last):
...
streamrec.stream.errors.InvalidRecordError: neighbour weight -1.0 of 'i-1' is not a finite, non-negative number
"""

from __future__ import annotations

import math
from typing import Any

from streamrec.models.serving.itemplane import ItemDelta
from streamrec.stream.errors import InvalidRecordError
from streamrec.stream.serde import codec_for

__all__ = ["MAX_NEIGHBOURS", "decode_delta", "decode_result", "delta_to_record", "encode_delta", "encode_result"]

#: the most neighbours (or sources) one record may carry; a worker's delta has at most 2 * window per event
MAX_NEIGHBOURS = 10_000
_MAX_TS = 1 << 50


def delta_to_record(d: ItemDelta) -> dict[str, Any]:
    return {"item_id": d.item_id, "ts": d.ts_ms, "trending": d.trending,
            "neighbours": [j for j, _ in d.neighbours], "weights": [w for _, w in d.neighbours],
            "source_partition": d.source_partition, "source_first": d.source_first, "source_last": d.source_last}


def encode_delta(d: ItemDelta) -> bytes:
    return codec_for("item_delta").encode(delta_to_record(d))


def encode_result(record: dict[str, Any]) -> bytes:
    return codec_for("item_result").encode(record)


def _id(value: Any, what: str, max_id_bytes: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRecordError(f"{what} is empty")
    if len(value.encode("utf-8", "surrogatepass")) > max_id_bytes:
        raise InvalidRecordError(f"{what} is longer than {max_id_bytes} bytes")
    return value


def _weight(value: Any, what: str, item: str) -> float:
    if not isinstance(value, float | int) or not 0.0 <= value < math.inf:
        raise InvalidRecordError(f"{what} {value!r} of {item!r} is not a finite, non-negative number")
    return float(value)


def decode_delta(value: bytes, key: bytes | None = None, max_id_bytes: int = 256) -> ItemDelta:
    rec = codec_for("item_delta").decode(value)
    item = _check(rec, key, max_id_bytes)
    if rec["source_partition"] < 0 or not 0 <= rec["source_first"] <= rec["source_last"]:
        raise InvalidRecordError(f"source {rec['source_partition']}:{rec['source_first']}..{rec['source_last']} "
                                 f"of {item!r} is not a partition and an offset range")
    return ItemDelta(item, rec["ts"], tuple(zip(rec["neighbours"], map(float, rec["weights"]), strict=True)),
                     float(rec["trending"]), rec["source_partition"], rec["source_first"], rec["source_last"])


def decode_result(value: bytes, key: bytes | None = None, max_id_bytes: int = 256) -> dict[str, Any]:
    """An item-results or owner changelog record, validated (plain data, as ``ItemStats.record`` writes it)."""
    rec = codec_for("item_result").decode(value)
    _check(rec, key, max_id_bytes)
    if len(rec["sources"]) > MAX_NEIGHBOURS or any(s["partition"] < 0 or s["offset"] < 0 for s in rec["sources"]):
        raise InvalidRecordError(f"the sources of {rec['item_id']!r} are not partitions and offsets")
    return rec


def _check(rec: dict[str, Any], key: bytes | None, max_id_bytes: int) -> str:
    item = _id(rec["item_id"], "item_id", max_id_bytes)
    if key is not None and key != item.encode("utf-8", "surrogatepass"):
        raise InvalidRecordError(f"key {key[:64]!r} is not the item id {item[:64]!r}")
    if not 0 <= rec["ts"] < _MAX_TS:
        raise InvalidRecordError(f"ts {rec['ts']} of {item!r} is out of range")
    nb, weights = rec["neighbours"], rec["weights"]
    if len(nb) > MAX_NEIGHBOURS or len(weights) != len(nb):
        raise InvalidRecordError(f"{item!r} has {len(nb)} neighbours and {len(weights)} weights (one weight per "
                                 f"neighbour, at most {MAX_NEIGHBOURS})")
    for j in nb:
        _id(j, f"a neighbour of {item!r}", max_id_bytes)
    for w in weights:
        if not 0.0 <= w < math.inf:
            _weight(w, "neighbour weight", item)
    _weight(rec["trending"], "trending", item)
    return item
