"""Decoding at the edge: every record becomes either an event or a dead letter, never an exception.

Errors are data (bytewax style): a record that fails to decode or validate becomes a :class:`DeadLetter`
with the reason, to be produced to ``events.dlq`` with the original bytes. Validation is the shared event
rules of ``models.events`` (:class:`~streamrec.models.events.EventLimits`), the same the file readers apply:
every field read from the topic is checked (ids and their lengths, type, time, a finite value in range,
context size).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from functools import lru_cache

from streamrec.models.events import Event, EventLimits, EventType, check_event
from streamrec.stream.avro_reader import read_long as _varint
from streamrec.stream.errors import DecodeError, InvalidRecordError
from streamrec.stream.records import Record
from streamrec.stream.serde import HEADER_LEN, MARKER, AvroCodec, codec_for

DEFAULT_LIMITS = EventLimits()
#: the current event schema's enum symbols, in order (``stream/schemas/event.avsc``); checked in :func:`fast_reader`
SYMBOLS = ("VIEW", "CLICK", "ADD_TO_CART", "PURCHASE", "RATING", "OTHER")
_TYPES = tuple(EventType(s) for s in SYMBOLS)
_DOUBLE = struct.Struct("<d").unpack_from


@lru_cache(maxsize=8)
def event_limits(max_id_bytes: int) -> EventLimits:
    """The event rules with the id limit of the settings (``STREAMREC_MAX_ID_BYTES``); one object per value."""
    return EventLimits(max_id_bytes=max_id_bytes)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    error_type: str
    message: str

    def headers(self) -> list[tuple[str, bytes]]:
        rec = self.record
        return [
            ("error.type", self.error_type.encode()),
            ("error.message", self.message[:1000].encode()),
            ("source.topic", rec.topic.encode()),
            ("source.partition", str(rec.partition).encode()),
            ("source.offset", str(rec.offset).encode()),
        ]


@dataclass(frozen=True, slots=True)
class Decoded:
    event: Event
    record: Record


def validate(event: Event, now_ms: int, limits: EventLimits = DEFAULT_LIMITS) -> None:
    """Raise :class:`InvalidRecordError` with the reason when ``event`` breaks the shared event rules
    (``models.events.check_event``: ids, lengths, type, time, value, context)."""
    reason = check_event(event, limits, now_ms)
    if reason is not None:
        raise InvalidRecordError(reason)


def _string(data: bytes, pos: int) -> tuple[str, int]:
    b = data[pos]
    if b < 0x80 and not b & 1:          # a length under 64: one byte
        n, pos = b >> 1, pos + 1
    else:
        n, pos = _varint(data, pos)
    end = pos + n
    if n < 0 or end > len(data):
        raise ValueError("string runs past the end")
    return data[pos:end].decode(), end


def read_event(data: bytes, fingerprint: bytes) -> Event | None:
    """The event of one record written with the current event schema, read straight into an :class:`Event`
    (no dict in between); ``None`` for anything else (another writer schema, a body it does not read
    exactly: negative map block counts, trailing bytes, bad UTF-8, an enum or union index out of range), which
    the caller then hands to the codec (fastavro) to decode or to reject with its reason. Gives exactly what
    ``Event.from_record(codec.decode(data))`` gives for every record it reads (unit-tested against it)."""
    if data[:2] != MARKER or data[2:HEADER_LEN] != fingerprint:
        return None
    try:
        size = len(data)
        strings: list[str] = []
        pos = HEADER_LEN
        for _ in range(3):                   # event_id, user_id, item_id: short strings, one-byte lengths
            b = data[pos]
            if b < 0x80:
                n, pos = b >> 1, pos + 1
                if b & 1:
                    return None
            else:
                n, pos = _varint(data, pos)
            if n < 0 or pos + n > size:
                return None
            strings.append(data[pos:pos + n].decode())
            pos += n
        t = data[pos]
        if t & 1 or t >> 1 >= len(_TYPES):   # the enum index: 0 .. 5, one byte
            return None
        ts, pos = _varint(data, pos + 1)
        u = data[pos]
        session_id: str | None = None
        if u == 2:                            # union index 1: a string
            session_id, pos = _string(data, pos + 1)
        elif u == 0:
            pos += 1
        else:
            return None
        u = data[pos]
        value: float | None = None
        if u == 2:                            # union index 1: a double
            if pos + 9 > size:
                return None
            value, pos = _DOUBLE(data, pos + 1)[0], pos + 9
        elif u == 0:
            pos += 1
        else:
            return None
        context: dict[str, str] = {}
        while True:
            if data[pos] == 0:                # the map's end (or an empty map)
                pos += 1
                break
            count, pos = _varint(data, pos)
            if count <= 0:                    # a block byte size, or a zero in more than one byte
                return None
            for _ in range(count):
                key, pos = _string(data, pos)
                context[key], pos = _string(data, pos)
        if pos != size:
            return None
    except (IndexError, ValueError):     # UnicodeDecodeError is a ValueError
        return None
    event_id, user_id, item_id = strings
    return Event(event_id, user_id, item_id, _TYPES[t >> 1], ts, session_id, value, context)


@lru_cache(maxsize=8)
def fast_reader(codec: AvroCodec) -> bytes | None:
    """The fingerprint :func:`read_event` reads for ``codec``: the event codec's current schema, if its
    fields are the ones :func:`read_event` knows (else ``None``: every record goes through the codec)."""
    fields = codec.schema.get("fields") if isinstance(codec.schema, dict) else None
    if not fields or codec.name != "event":
        return None
    shape = [(f["name"], f["type"] if isinstance(f["type"], str) else
              f["type"].get("symbols") if isinstance(f["type"], dict) and f["type"].get("type") == "enum" else
              f["type"].get("type") if isinstance(f["type"], dict) else tuple(f["type"])) for f in fields]
    want = [("event_id", "string"), ("user_id", "string"), ("item_id", "string"), ("event_type", list(SYMBOLS)),
            ("timestamp", "long"), ("session_id", ("null", "string")), ("value", ("null", "double")),
            ("context", "map")]
    if shape != want or fields[7]["type"].get("values") != "string":
        return None
    return codec.fingerprint


def decode_batch(records: list[Record], codec: AvroCodec | None = None, now_ms: int | None = None,
                 limits: EventLimits = DEFAULT_LIMITS) -> tuple[list[Decoded], list[DeadLetter]]:
    """Every record as a :class:`Decoded` event or a :class:`DeadLetter`. Records of the current event
    schema are read by :func:`read_event`; any other goes through the codec (older writer schemas, and
    every record :func:`read_event` does not read, which the codec decodes or rejects with its reason)."""
    codec = codec or codec_for("event")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    fingerprint = fast_reader(codec)
    good: list[Decoded] = []
    bad: list[DeadLetter] = []
    for rec in records:
        try:
            if rec.value is None:
                raise InvalidRecordError("null value (tombstone) on the events topic")
            event = read_event(rec.value, fingerprint) if fingerprint is not None else None
            if event is None:
                event = Event.from_record(codec.decode(rec.value))
            validate(event, now_ms, limits)
        except DecodeError as exc:
            bad.append(DeadLetter(rec, exc.error_type, str(exc)))
            continue
        except (KeyError, ValueError, TypeError) as exc:
            bad.append(DeadLetter(rec, "invalid_record", f"{type(exc).__name__}: {exc}"))
            continue
        good.append(Decoded(event, rec))
    return good, bad
