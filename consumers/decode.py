"""Decoding at the edge: every record becomes either an event or a dead letter, never an exception.

Errors are data (bytewax style): a record that fails to decode or validate becomes a :class:`DeadLetter`
with the reason, to be produced to ``events.dlq`` with the original bytes. Validation is the shared event
rules of ``models.events`` (:class:`~streamrec.models.events.EventLimits`), the same the file readers apply:
every field read from the topic is checked (ids and their lengths, type, time, a finite value in range,
context size).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from streamrec.models.events import Event, EventLimits, check_event
from streamrec.stream.errors import DecodeError, InvalidRecordError
from streamrec.stream.records import Record
from streamrec.stream.serde import AvroCodec, codec_for

DEFAULT_LIMITS = EventLimits()


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


def decode_batch(records: list[Record], codec: AvroCodec | None = None, now_ms: int | None = None,
                 limits: EventLimits = DEFAULT_LIMITS) -> tuple[list[Decoded], list[DeadLetter]]:
    codec = codec or codec_for("event")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    good: list[Decoded] = []
    bad: list[DeadLetter] = []
    for rec in records:
        try:
            if rec.value is None:
                raise InvalidRecordError("null value (tombstone) on the events topic")
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
