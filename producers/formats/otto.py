"""OTTO session logs (Kaggle "OTTO - Multi-Objective Recommender System", CC BY 4.0): JSON lines
``{"session": int, "events": [{"aid": int, "ts": int, "type": "clicks" | "carts" | "orders"}]}``.

Each event becomes ``Event(f"otto-{session}-{k}", user=session, item=aid, type, ts, session_id=session)``
where ``k`` is the event's position in the session (from 0). OTTO has no user ids, so the session is the
user. Types go through ``EventType.parse`` (clicks -> CLICK, carts -> ADD_TO_CART, orders -> PURCHASE).

``ts``: the original release has milliseconds, several repackaged versions (the "optimized" parquet and
JSON conversions) have seconds. Each value is detected by magnitude: at least 1e11 is milliseconds,
below is seconds (see ``formats.base.parse_timestamp``).

A line that is not JSON, or not a session object, is one bad row; a bad event inside a good session is
a bad row of its own, with the line number of its session and its position in the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from streamrec.models.events import Event, EventType
from streamrec.producers.formats.base import (
    BadRow,
    RowError,
    TimeBounds,
    clip,
    json_line,
    numbered_lines,
    open_text,
    parse_id,
    parse_timestamp,
)


def parse(path: Path, bounds: TimeBounds) -> Iterator[Event | BadRow]:
    with open_text(path) as fh:
        for line, text in numbered_lines(fh):
            try:
                obj = json_line(text)
                if not isinstance(obj, dict) or not isinstance(obj.get("events"), list):
                    raise RowError('not an OTTO session: expected {"session": ..., "events": [...]}')
                session = parse_id(obj.get("session"), "session")
            except RowError as exc:
                yield BadRow(line, str(exc), clip(text))
                continue
            for k, raw in enumerate(obj["events"]):
                try:
                    if not isinstance(raw, dict):
                        raise RowError("not an object")
                    item = parse_id(raw.get("aid"), "aid")
                    ts = bounds.check(parse_timestamp(raw.get("ts"), None), raw.get("ts"))
                    raw_type = raw.get("type")
                    if not isinstance(raw_type, str) or not raw_type.strip():
                        raise RowError(f"type {raw_type!r} is not an event type")
                    etype = EventType.parse(raw_type)
                    context = {"raw_event_type": raw_type} if etype is EventType.OTHER else {}
                    yield bounds.event(Event(f"otto-{session}-{k}", session, item, etype, ts, session, None,
                                             context))
                except RowError as exc:
                    yield BadRow(line, f"event {k}: {exc}", clip(json.dumps(raw)))
