"""Avro object container files of ``Event`` records (``stream/schemas/event.avsc``): read and write.

Reading resolves the file's writer schema against ``event.avsc`` (so files written with an older,
compatible event schema read too, and unknown event types become ``OTHER``). The record number (from 1)
stands in for the line number of a bad row. Timestamps come back from fastavro as ``datetime``; they are
turned into milliseconds exactly (integer arithmetic, no float rounding).

Writing uses a fixed sync marker and the deflate codec, so the same events give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import fastavro
import fastavro.schema

from streamrec.models.errors import InputError
from streamrec.models.events import Event, EventType
from streamrec.producers.formats.base import BadRow, RowError, TimeBounds, clip, datetime_to_ms

SCHEMA_FILE = "schemas/event.avsc"
# Container files separate blocks with a 16-byte marker that fastavro draws at random unless given one;
# a fixed marker makes a written log byte-for-byte reproducible.
SYNC_MARKER = hashlib.blake2b(b"streamrec event log", digest_size=16).digest()


@lru_cache(maxsize=1)
def event_schema() -> Any:
    """The parsed ``Event`` schema, loaded from ``stream/schemas/event.avsc``."""
    text = resources.files("streamrec.stream").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return fastavro.parse_schema(json.loads(text))


@lru_cache(maxsize=1)
def _canonical() -> str:
    return str(fastavro.schema.to_parsing_canonical_form(event_schema()))


def _open(fh: BinaryIO, path: Path) -> Iterator[Any]:
    """Records of the file; resolved against ``event.avsc`` only when written with another schema (the
    resolving reader is about twice as slow)."""
    try:
        records = fastavro.reader(fh)
        if fastavro.schema.to_parsing_canonical_form(records.writer_schema) == _canonical():
            return records
        fh.seek(0)
        return fastavro.reader(fh, reader_schema=event_schema())
    except Exception as exc:  # noqa: BLE001 - fastavro raises ValueError, SchemaResolutionError, ...
        raise InputError(f"{path} is not an Avro container file of Event records ({exc}); "
                         "write one with streamrec.producers.synthetic.write_log(events, 'x.avro')") from None


def parse(path: Path, bounds: TimeBounds) -> Iterator[Event | BadRow]:
    with path.open("rb") as fh:
        records = _open(fh, path)
        number = 0
        while True:
            number += 1
            try:
                rec = next(records)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt file
                raise InputError(f"{path}: record {number} cannot be decoded ({exc}); the file is "
                                 "truncated or corrupt, and records after it cannot be read") from None
            try:
                if not isinstance(rec, dict):
                    raise RowError(f"not an Event record: {type(rec).__name__}")
                yield _event(rec, bounds)
            except RowError as exc:
                yield BadRow(number, str(exc), clip(repr(rec)))


_TYPES = {t.value: t for t in EventType}


def _event(rec: dict[str, Any], bounds: TimeBounds) -> Event:
    ts = rec["timestamp"]
    ts_ms = datetime_to_ms(ts) if isinstance(ts, datetime) else int(ts)
    bounds.check(ts_ms, ts_ms)
    return bounds.event(Event(rec["event_id"], rec["user_id"], rec["item_id"],
                              _TYPES.get(rec["event_type"], EventType.OTHER), ts_ms, rec.get("session_id"),
                              rec.get("value"), dict(rec.get("context") or {})))


def write(events: Iterable[Event], path: Path) -> int:
    """Write an Avro container file; returns the number of events."""
    count = 0

    def records() -> Iterator[dict[str, Any]]:
        nonlocal count
        for event in events:
            count += 1
            yield event.to_record()

    with path.open("wb") as fh:
        fastavro.writer(fh, event_schema(), records(), codec="deflate", sync_marker=SYNC_MARKER)
    return count
