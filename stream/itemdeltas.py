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

import functools
import math
import struct
from collections.abc import Iterable
from typing import Any

import fastavro
from kafka.partitioner.default import murmur2

from streamrec.models.serving.itemplane import ItemDelta
from streamrec.stream.avro_reader import read_long as _long_at
from streamrec.stream.avro_writer import compile_writer, varint
from streamrec.stream.errors import DecodeError, InvalidRecordError
from streamrec.stream.serde import (
    HEADER_LEN,
    MARKER,
    SCHEMA_DIR,
    AvroCodec,
    _plain_longs,
    codec_for,
    fingerprint,
    load_schema_json,
)

__all__ = ["BATCH_ENTRIES", "MAX_NEIGHBOURS", "batch_records", "batch_schema", "decode_delta", "decode_deltas",
           "decode_result", "delta_to_record", "encode_delta", "encode_delta_batch", "encode_result", "partition_of",
           "read_result"]

#: the most neighbours (or sources) one record may carry; a worker's delta has at most 2 * window per event
MAX_NEIGHBOURS = 10_000
_MAX_TS = 1 << 50
#: the most entries (anchors plus neighbours) one batch record carries (about 15 bytes each: ~120 KB, well under
#: the producer's and the broker's 1 MB message limit)
BATCH_ENTRIES = 8_000
_INF = math.inf


def partition_of(item: str, partitions: int, _memo: dict[tuple[str, int], int] = {}) -> int:  # noqa: B006 - the memo
    """The item-deltas partition of ``item``: Kafka's default partitioner of the item id as key (murmur2), so
    a batch lands where a per-item record keyed by the item would (and the owners' changelog, co-partitioned,
    keeps its items where they were); memoised, the memo cleared past a million entries."""
    got = _memo.get((item, partitions))
    if got is None:
        if len(_memo) > 1_000_000:
            _memo.clear()
        got = _memo[(item, partitions)] = (murmur2(item.encode("utf-8", "surrogatepass")) & 0x7FFFFFFF) % partitions
    return got


BATCH_DOC = ("The item deltas one worker sends to one item-deltas partition at one commit (docs/item-plane.md): one "
             "Kafka record for many anchors, so the per-record costs of the clients and the broker are paid once per "
             "partition and commit instead of once per anchor. Sent with an explicit partition (every anchor's item "
             "hashes there, by Kafka's default partitioner of the item id as key) and no key. The items are ItemDelta "
             "records (item_delta.avsc): this schema is generated from it (stream/itemdeltas.batch_schema).")


def batch_schema(delta_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """``item_delta_batch.avsc``: an array of ``item_delta`` records (today's, or ``delta_schema``)."""
    inner = delta_schema or load_schema_json(SCHEMA_DIR / "item_delta.avsc")
    return {"type": "record", "name": "ItemDeltaBatch", "namespace": "io.streamrec", "doc": BATCH_DOC,
            "fields": [{"name": "deltas", "type": {"type": "array", "items": inner}}]}


class _BatchCodec(AvroCodec):
    """The codec of ``item_delta_batch``, built from ``item_delta.avsc`` (so the two never drift) and from each
    older ``history/item_delta.*.avsc`` (batches written by an older worker still decode); single-object
    encoded like every streamrec record; written by the compiled writer. Encoding and decoding are
    :class:`~streamrec.stream.serde.AvroCodec`'s."""

    def __init__(self) -> None:   # not super().__init__: the schema is generated, not read from a file
        self.name = "item_delta_batch"
        self.path = SCHEMA_DIR / f"{self.name}.avsc"
        current = batch_schema()
        self.schema = fastavro.parse_schema(_plain_longs(current))
        self.fingerprint = fingerprint(current)
        self._header = MARKER + self.fingerprint
        self._compiled = compile_writer(self.schema, self._header)
        self._writers = {}
        for old in sorted((SCHEMA_DIR / "history").glob("item_delta.*.avsc")):
            wrapped = batch_schema(load_schema_json(old))
            self._writers[fingerprint(wrapped)] = fastavro.parse_schema(_plain_longs(wrapped))


@functools.cache
def _batch_codec() -> _BatchCodec:
    return _BatchCodec()


@functools.cache
def _result_codec() -> AvroCodec:
    """``item_result``'s codec written by the compiled writer (``stream/avro_writer.py``, byte-identical to
    fastavro, which still writes a record the compiled writer cannot)."""
    codec = AvroCodec("item_result")
    codec._compiled = compile_writer(codec.schema, codec._header)
    return codec


def delta_to_record(d: ItemDelta) -> dict[str, Any]:
    return {"item_id": d.item_id, "ts": d.ts_ms, "trending": d.trending,
            "neighbours": [j for j, _ in d.neighbours], "weights": [w for _, w in d.neighbours],
            "source_partition": d.source_partition, "source_first": d.source_first, "source_last": d.source_last,
            "first_seen": d.first_seen, "category": d.category}


def encode_delta(d: ItemDelta) -> bytes:
    return codec_for("item_delta").encode(delta_to_record(d))


def encode_delta_batch(deltas: Iterable[ItemDelta]) -> bytes:
    """One ``item_delta_batch`` record carrying ``deltas`` (all of one item-deltas partition): written straight
    from the deltas (:func:`_direct_batch`) while ``item_delta.avsc`` has the fields it knows, else (or for a
    delta it cannot write) through record dicts and the compiled writer; the bytes are the same."""
    deltas = list(deltas)
    if _DIRECT[0] is None:
        fields = tuple(f["name"] for f in load_schema_json(SCHEMA_DIR / "item_delta.avsc")["fields"])
        _DIRECT[0] = fields == _DIRECT_FIELDS
    if _DIRECT[0]:
        try:
            return _direct_batch(deltas, _batch_codec()._header)
        except Exception:  # noqa: BLE001, S110 - e.g. an id that is not UTF-8: the general path writes it or says why
            pass
    return _batch_codec().encode({"deltas": [delta_to_record(d) for d in deltas]})


_DIRECT_FIELDS = ("item_id", "ts", "neighbours", "weights", "trending", "source_partition", "source_first",
                  "source_last", "first_seen", "category")
_DIRECT: list[bool | None] = [None]
_pack_double = struct.Struct("<d").pack


def _direct_batch(deltas: list[ItemDelta], header: bytes) -> bytes:
    """The Avro body of ``{"deltas": [...]}`` for the fields of :data:`_DIRECT_FIELDS`, in that order: one
    block of records, each string as length + UTF-8, each long as a zig-zag varint (memoised: a batch's
    offsets and times repeat), the weights in one ``struct.pack``."""
    parts = [header]
    out = parts.append
    memo: dict[int, bytes] = {}

    def long(n: int) -> bytes:
        got = memo.get(n)
        if got is None:
            got = memo[n] = varint(n)
        return got

    if deltas:
        out(varint(len(deltas)))
        for d in deltas:
            data = d.item_id.encode()
            out(long(len(data)))
            out(data)
            out(long(d.ts_ms))
            nb = d.neighbours
            if nb:
                out(long(len(nb)))
                for j, _ in nb:
                    data = j.encode()
                    out(long(len(data)))
                    out(data)
                out(b"\x00")
                out(long(len(nb)))
                out(struct.pack(f"<{len(nb)}d", *[float(w) for _, w in nb]))
                out(b"\x00")
            else:
                out(b"\x00\x00")
            out(_pack_double(float(d.trending)))
            if not 0 <= d.source_partition < 2**31:
                raise ValueError("source_partition is not an int")
            out(long(d.source_partition))
            out(long(d.source_first))
            out(long(d.source_last))
            out(long(d.first_seen))
            data = d.category.encode()
            out(long(len(data)))
            out(data)
    out(b"\x00")
    return b"".join(parts)


def batch_records(deltas: Iterable[ItemDelta], partitions: int) -> list[tuple[int, bytes, int]]:
    """``(item-deltas partition, batch record, deltas in it)`` for ``deltas``: one record per partition, split
    past :data:`BATCH_ENTRIES` entries (a delta is never split: each anchor is in one record of one range)."""
    by_part: dict[int, list[ItemDelta]] = {}
    for d in deltas:
        by_part.setdefault(partition_of(d.item_id, partitions), []).append(d)
    out: list[tuple[int, bytes, int]] = []
    for p, ds in sorted(by_part.items()):
        chunk: list[ItemDelta] = []
        size = 0
        for d in ds:
            if chunk and size + 1 + len(d.neighbours) > BATCH_ENTRIES:
                out.append((p, encode_delta_batch(chunk), len(chunk)))
                chunk, size = [], 0
            chunk.append(d)
            size += 1 + len(d.neighbours)
        if chunk:
            out.append((p, encode_delta_batch(chunk), len(chunk)))
    return out


def encode_result(record: dict[str, Any]) -> bytes:
    return _result_codec().encode(record)


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
    return _delta(codec_for("item_delta").decode(value), key, max_id_bytes)


def _delta(rec: dict[str, Any], key: bytes | None, max_id_bytes: int) -> ItemDelta:
    item = _check(rec, key, max_id_bytes)
    if rec["source_partition"] < 0 or not 0 <= rec["source_first"] <= rec["source_last"]:
        raise InvalidRecordError(f"source {rec['source_partition']}:{rec['source_first']}..{rec['source_last']} "
                                 f"of {item!r} is not a partition and an offset range")
    return ItemDelta(item, rec["ts"], tuple(zip(rec["neighbours"], map(float, rec["weights"]), strict=True)),
                     float(rec["trending"]), rec["source_partition"], rec["source_first"], rec["source_last"],
                     rec.get("first_seen", -1), rec.get("category") or "")


def decode_deltas(value: bytes, key: bytes | None, partition: int, partitions: int,
                  max_id_bytes: int = 256) -> tuple[list[ItemDelta], list[str]]:
    """The deltas of one item-deltas record: a batch (``item_delta_batch``) or one delta (``item_delta``, keyed
    by its item, as workers sent them before batches), with the reasons of the deltas refused: a delta that
    fails validation, or whose item does not hash to ``partition`` (of ``partitions``), is left out; the
    others are returned. Bytes that do not decode raise :class:`DecodeError`."""
    if len(value) >= HEADER_LEN and value[2:HEADER_LEN] == codec_for("item_delta").fingerprint:
        return [decode_delta(value, key, max_id_bytes)], []
    recs = _batch_codec().decode(value)["deltas"]
    out: list[ItemDelta] = []
    errors: list[str] = []
    for rec in recs:
        try:
            d = _delta(rec, None, max_id_bytes)
        except DecodeError as exc:
            errors.append(str(exc))
            continue
        if partition_of(d.item_id, partitions) != partition:
            errors.append(f"item {d.item_id[:64]!r} does not belong to item-deltas partition {partition}")
            continue
        out.append(d)
    return out, errors


def decode_result(value: bytes, key: bytes | None = None, max_id_bytes: int = 256) -> dict[str, Any]:
    """An item-results or owner changelog record, validated (plain data, as ``ItemStats.record`` writes it): read
    by :func:`read_result` when it reads it exactly, else by the codec (fastavro), which decodes it or refuses
    it with its reason; the same rules after either."""
    rec = read_result(value)
    if rec is None:
        rec = codec_for("item_result").decode(value)
    elif _plainly_valid(rec, key, max_id_bytes):
        return rec
    _check(rec, key, max_id_bytes)
    if len(rec["sources"]) > MAX_NEIGHBOURS or any(s["partition"] < 0 or s["offset"] < 0 for s in rec["sources"]):
        raise InvalidRecordError(f"the sources of {rec['item_id']!r} are not partitions and offsets")
    return rec


def _plainly_valid(rec: dict[str, Any], key: bytes | None, max_id_bytes: int) -> bool:
    """A record of :func:`read_result` (str ids, float weights) that passes every rule of :func:`_check` and
    :func:`decode_result` by their fast paths, in one expression (no id blank, none longer than a quarter of
    ``max_id_bytes`` in characters, the key the item id, every number finite and in range, no sources); false
    for anything else, which :func:`_check` then judges exactly (and refuses with the reason, or accepts)."""
    item, nb, weights, category = rec["item_id"], rec["neighbours"], rec["weights"], rec["category"]
    quarter = max_id_bytes // 4
    return bool(
        item.strip() and len(item) <= quarter and (key is None or key == item.encode())
        and 0 <= rec["ts"] < _MAX_TS and len(nb) == len(weights) <= MAX_NEIGHBOURS
        and (not nb or (all(map(str.strip, nb)) and max(map(len, nb)) <= quarter
                        and min(weights) >= 0.0 and sum(weights) < _INF))
        and 0.0 <= rec["trending"] < _INF and not rec["sources"]
        and (rec["first_seen"] == -1 or 0 <= rec["first_seen"] < _MAX_TS)
        and (not category or (category.strip() and len(category) <= quarter)))


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
    # fast paths (the decoder gives str and float): no id blank, none longer than max_id_bytes / 4 characters
    # (a character is at most 4 bytes of UTF-8), every weight finite and not negative; else the exact checks
    if nb and not (all(map(str.strip, nb)) and 4 * max(map(len, nb)) <= max_id_bytes):
        for j in nb:
            _id(j, f"a neighbour of {item!r}", max_id_bytes)
    # (a NaN or an infinity makes the sum NaN or infinite, so does an overflow: then the exact checks judge)
    if weights and not (min(weights) >= 0.0 and sum(weights) < _INF):
        for w in weights:
            _weight(w, "neighbour weight", item)
    _weight(rec["trending"], "trending", item)
    first, category = rec.get("first_seen", -1), rec.get("category") or ""
    if first != -1 and not 0 <= first < _MAX_TS:
        raise InvalidRecordError(f"first_seen {first} of {item!r} is out of range (-1: unknown)")
    if category:
        _id(category, f"the category of {item!r}", max_id_bytes)
    return item


# -- the direct reader of item results (the worker's item cache follows one per changed item) ----------------

_RESULT_SHAPE = [("item_id", "string"), ("ts", "long"), ("neighbours", ("array", "string")),
                 ("weights", ("array", "double")), ("trending", "double"),
                 ("sources", ("array", (("partition", "int"), ("offset", "long")))), ("first_seen", "long"),
                 ("category", "string")]
_unpack_double = struct.Struct("<d").unpack_from


def _shape(t: Any) -> Any:
    if isinstance(t, dict):
        if t.get("type") == "array":
            return "array", _shape(t["items"])
        if t.get("type") == "record":
            return tuple((f["name"], _shape(f["type"])) for f in t["fields"])
        return t.get("type")
    return t


@functools.cache
def _result_fingerprint() -> bytes | None:
    """The fingerprint :func:`read_result` reads: the current ``item_result`` schema's, if its fields are the ones
    it knows (else ``None``: every record goes through the codec)."""
    codec = codec_for("item_result")
    fields = codec.schema.get("fields") if isinstance(codec.schema, dict) else None
    if not fields or [(f["name"], _shape(f["type"])) for f in fields] != _RESULT_SHAPE:
        return None
    return codec.fingerprint


def _str_at(data: bytes, pos: int, size: int) -> tuple[str, int]:
    b = data[pos]
    if b < 0x80:
        if b & 1:
            raise ValueError("negative string length")
        n, pos = b >> 1, pos + 1
    else:
        n, pos = _long_at(data, pos)
        if n < 0:
            raise ValueError("negative string length")
    end = pos + n
    if end > size:
        raise ValueError("string runs past the end")
    return data[pos:end].decode(), end


def _count_at(data: bytes, pos: int) -> tuple[int, int]:
    """An array block's item count (0: the end); a negative count (a block with its byte size) is the
    codec's to read."""
    b = data[pos]
    if b < 0x80 and not b & 1:                   # a count under 64: one byte, the common case
        return b >> 1, pos + 1
    n, pos = _long_at(data, pos)
    if n < 0 or n > MAX_NEIGHBOURS:
        raise ValueError("an array block the direct reader leaves to the codec")
    return n, pos


def read_result(data: bytes) -> dict[str, Any] | None:
    """The record of one ``item_result`` written with the current schema, read directly (no fastavro call): the
    dict ``codec_for("item_result").decode(data)`` gives, or ``None`` for anything it does not read exactly
    (another writer schema, negative or oversized array blocks, an int out of range, bad UTF-8, a truncated
    body, trailing bytes), which :func:`decode_result` then hands to the codec to decode or refuse with its
    reason (unit-tested against the codec on generated and corrupted records)."""
    fp = _result_fingerprint()
    if fp is None or data[2:HEADER_LEN] != fp or data[:2] != MARKER:
        return None
    size = len(data)
    # the common cases inline (one-byte string lengths and array counts, one block per array), the rest through
    # the helpers: ``b < 0x80 and not b & 1`` is a one-byte varint of a value 0 .. 63
    try:
        b = data[HEADER_LEN]
        if b < 0x80 and not b & 1:
            pos = HEADER_LEN + 1 + (b >> 1)
            item = data[HEADER_LEN + 1:pos].decode()
        else:
            item, pos = _str_at(data, HEADER_LEN, size)
        ts, pos = _long_at(data, pos)
        names: list[str] = []
        n, pos = _count_at(data, pos)
        while n:
            append = names.append
            for _ in range(n):
                b = data[pos]
                if b < 0x80 and not b & 1:       # a length under 64: one byte (an id, as a rule)
                    pos += 1
                    end = pos + (b >> 1)
                    append(data[pos:end].decode())
                    pos = end
                else:
                    s, pos = _str_at(data, pos, size)
                    append(s)
            if pos > size:                       # a slice past the end is short, not an error
                return None
            n, pos = _count_at(data, pos)
        weights: list[float] = []
        n, pos = _count_at(data, pos)
        while n:
            end = pos + 8 * n
            if end > size:
                return None
            weights.extend(struct.unpack_from(f"<{n}d", data, pos))
            pos = end
            n, pos = _count_at(data, pos)
        if pos + 8 > size:
            return None
        trending, pos = _unpack_double(data, pos)[0], pos + 8
        sources: list[dict[str, int]] = []
        if data[pos]:
            n, pos = _count_at(data, pos)
            while n:
                for _ in range(n):
                    p, pos = _long_at(data, pos)
                    if not -(2**31) <= p < 2**31:
                        return None
                    o, pos = _long_at(data, pos)
                    sources.append({"partition": p, "offset": o})
                n, pos = _count_at(data, pos)
        else:
            pos += 1
        if data[pos] == 1:                       # first_seen -1: unknown
            first_seen, pos = -1, pos + 1
        else:
            first_seen, pos = _long_at(data, pos)
        if data[pos] == 0 and pos + 1 == size:   # no category, the record's end
            return {"item_id": item, "ts": ts, "neighbours": names, "weights": weights, "trending": trending,
                    "sources": sources, "first_seen": first_seen, "category": ""}
        category, pos = _str_at(data, pos, size)
    except (IndexError, ValueError):     # UnicodeDecodeError is a ValueError
        return None
    if pos != size:
        return None
    return {"item_id": item, "ts": ts, "neighbours": names, "weights": weights, "trending": trending,
            "sources": sources, "first_seen": first_seen, "category": category}
