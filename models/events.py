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
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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
