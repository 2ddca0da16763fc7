"""Decoding at the edge: every record becomes either an event or a dead letter, never an exception.

Errors are data (bytewax style): a record that fails to decode or validate becomes a :class:`DeadLetter`
with the reason, to be produced to ``events.dlq`` with the original bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from streamrec.models.events import Event
from streamrec.stream.errors import DecodeError, InvalidRecordError
from streamrec.stream.records import Record
from streamrec.stream.serde import AvroCodec, codec_for

#: Event times before this are treated as absurd (1990-01-01 UTC).
MIN_TIMESTAMP_MS = 631_152_000_000
#: Event times more than this far in the future are absurd.
MAX_FUTURE_MS = 24 * 3600 * 1000


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


def validate(event: Event, now_ms: int) -> None:
    if not event.user_id or not event.item_id or not event.event_id:
        raise InvalidRecordError("event_id, user_id and item_id must be non-empty")
    if event.timestamp_ms < MIN_TIMESTAMP_MS or event.timestamp_ms > now_ms + MAX_FUTURE_MS:
        raise InvalidRecordError(f"absurd event timestamp {event.timestamp_ms} (ms since epoch)")


def decode_batch(records: list[Record], codec: AvroCodec | None = None,
                 now_ms: int | None = None) -> tuple[list[Decoded], list[DeadLetter]]:
    codec = codec or codec_for("event")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    good: list[Decoded] = []
    bad: list[DeadLetter] = []
    for rec in records:
        try:
            if rec.value is None:
                raise InvalidRecordError("null value (tombstone) on the events topic")
            event = Event.from_record(codec.decode(rec.value))
            validate(event, now_ms)
        except DecodeError as exc:
            bad.append(DeadLetter(rec, exc.error_type, str(exc)))
            continue
        except (KeyError, ValueError, TypeError) as exc:
            bad.append(DeadLetter(rec, "invalid_record", f"{type(exc).__name__}: {exc}"))
            continue
        good.append(Decoded(event, rec))
    return good, bad
