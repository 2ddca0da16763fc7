"""``POST /v1/events``: JSON in, :class:`~streamrec.models.events.Event` out, under the stream's own rules.

A body is one event object or a list of them (at most ``max_batch``). Each object has the ``Event``
fields (``stream/schemas/event.avsc``): ``user_id``, ``item_id`` and ``event_type`` (``VIEW``, ``CLICK``,
``ADD_TO_CART``, ``PURCHASE``, ``RATING`` or ``OTHER``, any case) are required; ``event_id`` (default: a new
random id; send your own so that a retried request is deduplicated by the worker), ``timestamp`` (ms
since the epoch, default: now), ``session_id``, ``value`` and ``context`` are optional; any other field is
refused. The event is then checked by :func:`~streamrec.models.events.check_event` with the limits the
worker's decoder applies (``STREAMREC_MAX_ID_BYTES``), so an event this endpoint accepts is never a dead
letter. One bad event refuses the whole body: nothing is produced.

>>> events, errors = parse_events(b'{"user_id": "u1", "item_id": "i1", "event_type": "click", "event_id": "e1"}',
...                               EventLimits(), now_ms=1_700_000_000_000)
>>> events[0].event_type, events[0].timestamp_ms, errors
(<EventType.CLICK: 'CLICK'>, 1700000000000, [])
>>> parse_events(b'{"user_id": "u1", "item_id": "i1", "event_type": "RATING", "value": NaN}', EventLimits())[1]
['event 0: value nan is not a finite number']
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from streamrec.models.events import Event, EventLimits, EventType, check_event

REQUIRED = ("user_id", "item_id", "event_type")
OPTIONAL = ("event_id", "timestamp", "session_id", "value", "context")
#: Most events one request may carry, and the largest body (bytes).
MAX_BATCH = 1000
MAX_BODY_BYTES = 1 << 20
_TYPES = {t.value: t for t in EventType}


def _event(obj: Any, limits: EventLimits, now_ms: int) -> Event | str:
    if not isinstance(obj, dict):
        return f"is {type(obj).__name__}, not an object"
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        return "missing field" + ("s " if len(missing) > 1 else " ") + ", ".join(missing)
    unknown = sorted(set(obj) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        return "unknown field" + ("s " if len(unknown) > 1 else " ") + ", ".join(str(k)[:40] for k in unknown[:5])
    raw_type = obj["event_type"]
    etype = _TYPES.get(raw_type.upper()) if isinstance(raw_type, str) else None
    if etype is None:
        return f"event_type {str(raw_type)[:40]!r} is not one of {', '.join(_TYPES)}"
    event_id = obj.get("event_id")
    if event_id is None:
        event_id = uuid.uuid4().hex
    ts = obj.get("timestamp", now_ms)
    if isinstance(ts, float) and ts.is_integer():
        ts = int(ts)
    event = Event(event_id, obj["user_id"], obj["item_id"], etype, ts, obj.get("session_id"), obj.get("value"),
                  obj.get("context") or {})
    try:
        reason = check_event(event, limits, now_ms)
    except (OverflowError, ValueError) as exc:     # float() of a 400-digit integer
        reason = f"value is not a finite number ({type(exc).__name__})"
    return reason if reason is not None else event


def parse_events(body: bytes, limits: EventLimits, now_ms: int | None = None,
                 max_batch: int = MAX_BATCH) -> tuple[list[Event], list[str]]:
    """The events of a request body, or the reasons it is refused (one line each; empty when all are good)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if len(body) > MAX_BODY_BYTES:
        return [], [f"the body is {len(body)} bytes, over the limit of {MAX_BODY_BYTES}"]
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:   # JSONDecodeError, bad UTF-8, a 5,000-digit integer
        return [], [f"the body is not JSON: {str(exc)[:200]}"]
    batch = data if isinstance(data, list) else [data]
    if not batch:
        return [], ["the body is an empty list"]
    if len(batch) > max_batch:
        return [], [f"{len(batch)} events, over the limit of {max_batch} per request"]
    events: list[Event] = []
    errors: list[str] = []
    for i, obj in enumerate(batch):
        parsed = _event(obj, limits, now_ms)
        if isinstance(parsed, str):
            errors.append(f"event {i}: {parsed}")
            if len(errors) >= 20:
                errors.append("(further events not checked)")
                break
        else:
            events.append(parsed)
    return ([], errors) if errors else (events, [])
