"""The event type every part of streamrec shares, in plain Python (no Kafka, no Avro).

An :class:`Event` mirrors the ``Event`` Avro record in ``stream/schemas/event.avsc`` field for field;
``to_record`` / ``from_record`` convert to and from the dict that fastavro reads and writes.

Unknown event types: the Avro enum declares ``OTHER`` as its default, so a reader resolves any symbol it
does not know to ``OTHER``; the replay tools map unknown strings to ``OTHER`` and keep the original in
``context["raw_event_type"]``. ``OTHER`` counts like a view everywhere (weight, evaluation target policy).

>>> e = Event("e1", "u1", "i9", EventType.CLICK, 1_700_000_000_000)
>>> Event.from_record(e.to_record()) == e
True
>>> EventType.parse("carts")
<EventType.ADD_TO_CART: 'ADD_TO_CART'>
>>> EventType.parse("wishlist")
<EventType.OTHER: 'OTHER'>

Validity (:class:`EventLimits`, :func:`check_event`): one set of rules for every way an event enters
streamrec, the stream (``consumers/decode.py``: a failing record goes to the dead-letter topic with the
reason) and the file readers (``producers/formats``: a bad row with its line number). Ids (event, user,
item, session) are non-blank text of at most ``max_id_bytes`` UTF-8 bytes (``STREAMREC_MAX_ID_BYTES``);
the context holds at most ``max_context_entries`` entries and ``max_context_bytes`` bytes; the time is
from 1990-01-01 to a day after now; the value is a finite number: a rating within ``rating_range``, the
price or quantity of a purchase or cart addition within ``[0, max_abs_value]``, anything else within
``+-max_abs_value``.

>>> check_event(e, EventLimits(), now_ms=1_700_000_000_000) is None
True
>>> check_event(Event("e2", "u1", "i9", EventType.RATING, 1_700_000_000_000, value=float("nan")), EventLimits())
'value nan is not a finite number'
>>> check_event(Event("e3", "u" * 300, "i9", EventType.CLICK, 1_700_000_000_000), EventLimits())
'user_id is 300 bytes, over the limit of 256 (max_id_bytes)'
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from streamrec.models.errors import ConfigError
from streamrec.models.timeunits import DAY_MS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventType(enum.StrEnum):
    VIEW = "VIEW"
    CLICK = "CLICK"
    ADD_TO_CART = "ADD_TO_CART"
    PURCHASE = "PURCHASE"
    RATING = "RATING"
    OTHER = "OTHER"

    @classmethod
    def parse(cls, raw: str) -> EventType:
        """Map the spellings found in real logs to a type; anything unknown is ``OTHER``."""
        key = raw.strip().lower().replace("-", "_").replace(" ", "_")
        return _ALIASES.get(key, cls.OTHER)


_ALIASES: dict[str, EventType] = {
    "view": EventType.VIEW, "views": EventType.VIEW, "pageview": EventType.VIEW, "page_view": EventType.VIEW,
    "impression": EventType.VIEW,
    "click": EventType.CLICK, "clicks": EventType.CLICK,
    "add_to_cart": EventType.ADD_TO_CART, "addtocart": EventType.ADD_TO_CART, "cart": EventType.ADD_TO_CART,
    "carts": EventType.ADD_TO_CART,
    "purchase": EventType.PURCHASE, "purchases": EventType.PURCHASE, "order": EventType.PURCHASE,
    "orders": EventType.PURCHASE, "buy": EventType.PURCHASE, "buys": EventType.PURCHASE,
    "transaction": EventType.PURCHASE,
    "rating": EventType.RATING, "ratings": EventType.RATING, "rate": EventType.RATING,
    "other": EventType.OTHER,
}


@dataclass(frozen=True, slots=True)
class Event:
    """One user interaction. ``timestamp_ms`` is UTC milliseconds since the epoch."""

    event_id: str
    user_id: str
    item_id: str
    event_type: EventType
    timestamp_ms: int
    session_id: str | None = None
    value: float | None = None
    context: dict[str, str] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event_type": self.event_type.value,
            "timestamp": self.timestamp_ms,
            "session_id": self.session_id,
            "value": self.value,
            "context": dict(self.context),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Event:
        ts = rec["timestamp"]
        if not isinstance(ts, int):  # fastavro may hand back a datetime for timestamp-millis: convert exactly
            ts = (ts - _EPOCH) // timedelta(milliseconds=1)
        return cls(
            event_id=rec["event_id"],
            user_id=rec["user_id"],
            item_id=rec["item_id"],
            event_type=EventType(rec["event_type"]),
            timestamp_ms=ts,
            session_id=rec.get("session_id"),
            value=rec.get("value"),
            context=dict(rec.get("context") or {}),
        )


#: Event times before this are absurd (1990-01-01 UTC): almost always a wrong unit or a broken export.
MIN_TIMESTAMP_MS = 631_152_000_000
#: Event times more than this far after now are absurd (a wrong unit, or a producer's clock far off).
MAX_FUTURE_MS = DAY_MS
#: Default longest id (event, user, item, session) in UTF-8 bytes; the setting ``STREAMREC_MAX_ID_BYTES``.
MAX_ID_BYTES = 256


@dataclass(frozen=True, slots=True)
class EventLimits:
    """What a valid event looks like; :func:`check_event` applies it. The defaults suit real logs
    (MovieLens, OTTO, REES46, RetailRocket, YOOCHOOSE) with a wide margin.

    ``rating_range`` is the accepted rating, wide enough for 5- and 10-point scales and the -10..10
    of Jester; the engine weighs a rating ``r`` as ``1 + max(r - 3, 0)`` (``models.base.encoder``), so
    an unbounded rating would let one event outweigh thousands. Purchases and cart additions carry a
    price or a quantity: never negative.
    """

    max_id_bytes: int = MAX_ID_BYTES
    max_context_entries: int = 32
    max_context_key_bytes: int = 128
    max_context_value_bytes: int = 1024
    max_context_bytes: int = 4096       # all keys and values together
    min_timestamp_ms: int = MIN_TIMESTAMP_MS
    max_future_ms: int = MAX_FUTURE_MS
    rating_range: tuple[float, float] = (-10.0, 10.0)
    max_abs_value: float = 1e12

    def __post_init__(self) -> None:
        for name in ("max_id_bytes", "max_context_key_bytes", "max_context_value_bytes", "max_context_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"EventLimits.{name} is {getattr(self, name)}; set it to 1 or more")
        if self.max_context_entries < 0 or self.max_future_ms < 0:
            raise ConfigError("EventLimits.max_context_entries and max_future_ms must be 0 or more")
        lo, hi = self.rating_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ConfigError(f"EventLimits.rating_range {self.rating_range} must be two finite numbers, low first")
        if not (math.isfinite(self.max_abs_value) and self.max_abs_value >= 0):
            raise ConfigError(f"EventLimits.max_abs_value {self.max_abs_value} must be finite and >= 0")

    def max_timestamp_ms(self, now_ms: int) -> int:
        return now_ms + self.max_future_ms


_AMOUNTS = frozenset({EventType.PURCHASE, EventType.ADD_TO_CART})
_EMPTY = {"user_id": "user", "item_id": "item"}  # "empty user", as the file readers have always said


def _text(text: object, what: str, max_bytes: int, required: bool = True) -> str | None:
    """Why ``text`` is not a valid string of at most ``max_bytes`` UTF-8 bytes (None: it is)."""
    if not isinstance(text, str):
        return f"{what} is {type(text).__name__}, not text"
    if required and not text.strip():
        return f"empty {_EMPTY.get(what, what)}"
    if text.isascii():  # the common case, without encoding
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return f"{what} is not valid UTF-8 text"
    if size > max_bytes:
        return f"{what} is {size} bytes, over the limit of {max_bytes} ({_limit_name(what)})"
    return None


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _limit_name(what: str) -> str:
    if what.startswith("context key"):
        return "max_context_key_bytes"
    if what.startswith("context value"):
        return "max_context_value_bytes"
    return "max_id_bytes"


def check_event(event: Event, limits: EventLimits, now_ms: int | None = None) -> str | None:
    """Why ``event`` is not valid under ``limits`` (one line), or None when it is.

    ``now_ms`` (default: the wall clock) bounds the event time from above.
    """
    max_id = limits.max_id_bytes
    for text, what in ((event.event_id, "event_id"), (event.user_id, "user_id"), (event.item_id, "item_id")):
        reason = _text(text, what, max_id)
        if reason is not None:
            return reason
    if event.session_id is not None:
        reason = _text(event.session_id, "session_id", max_id, required=False)
        if reason is not None:
            return reason
    if not isinstance(event.event_type, EventType):
        return f"event_type {event.event_type!r} is not one of {', '.join(t.value for t in EventType)}"
    ts = event.timestamp_ms
    if not isinstance(ts, int) or isinstance(ts, bool):
        return f"timestamp {ts!r} is not an integer (ms since epoch)"
    if ts < limits.min_timestamp_ms:
        return f"absurd event timestamp {ts} (ms since epoch): before 1990-01-01"
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if ts > limits.max_timestamp_ms(now):
        return f"absurd event timestamp {ts} (ms since epoch): more than {limits.max_future_ms} ms after now"
    if event.value is not None:
        reason = _value(event.value, event.event_type, limits)
        if reason is not None:
            return reason
    if event.context:
        return _context(event.context, limits)
    return None


def _value(value: object, etype: EventType, limits: EventLimits) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"value {value!r} is not a number"
    v = float(value)
    if not math.isfinite(v):
        return f"value {v!r} is not a finite number"
    if etype is EventType.RATING:
        lo, hi = limits.rating_range
        if not lo <= v <= hi:
            return f"rating {v!r} is outside the accepted range [{lo:g}, {hi:g}] (rating_range)"
        return None
    top = limits.max_abs_value
    if etype in _AMOUNTS:
        if not 0.0 <= v <= top:
            return f"value {v!r} of a {etype.value} (a price or quantity) is outside [0, {top:g}]"
    elif abs(v) > top:
        return f"value {v!r} is outside [-{top:g}, {top:g}] (max_abs_value)"
    return None


def _context(context: object, limits: EventLimits) -> str | None:
    if not isinstance(context, dict):
        return f"context is {type(context).__name__}, not a map of text to text"
    if len(context) > limits.max_context_entries:
        return f"context has {len(context)} entries, over the limit of {limits.max_context_entries}"
    total = 0
    for key, val in context.items():
        reason = (_text(key, "context key", limits.max_context_key_bytes, required=False)
                  or _text(val, f"context value of {str(key)[:40]!r}", limits.max_context_value_bytes,
                           required=False))
        if reason is not None:
            return reason
        total += _size(key) + _size(val)
    if total > limits.max_context_bytes:
        return f"context is {total} bytes, over the limit of {limits.max_context_bytes} (max_context_bytes)"
    return None
