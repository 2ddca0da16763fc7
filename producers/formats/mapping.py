"""Column mappings for the generic ``csv`` and ``jsonl`` readers, the CLI spelling of one, and presets.

The default :class:`ColumnMapping` names the fields of streamrec's own logs (the Avro field names of
``stream/schemas/event.avsc``), so ``--format jsonl`` reads what ``producers.synthetic.write_log`` writes
without any mapping.

>>> m = parse_mapping("user=visitorid,item=itemid,timestamp=timestamp,event_type=event,unit=ms")
>>> (m.user, m.item, m.event_type, m.timestamp_unit)
('visitorid', 'itemid', 'event', 'ms')
>>> parse_mapping("delimiter=tab,context=brand+price").context
('brand', 'price')
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, cast

from streamrec.models.errors import InputError
from streamrec.models.events import EventType
from streamrec.producers.formats.base import TIMESTAMP_UNITS, TimestampUnit


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which column (CSV header name, or JSON key) holds which event field.

    ``user``, ``item`` and ``timestamp`` are required in every row; the others are optional (None: not
    in the log). An optional column left at its default name may be absent from the file; one you set
    must be there.

    * ``event_type``: mapped through ``type_map`` (raw value -> EventType) first, else ``EventType.parse``;
      an unknown value becomes ``OTHER`` with the raw value in ``context["raw_event_type"]``. Without the
      column, or when a row leaves it empty, the type is ``default_type``.
    * ``event_id``: without it, ids are ``"<file name>:<line>"`` (deterministic, so a replay is idempotent).
    * ``category`` goes to ``context["category"]``; ``context`` lists more columns copied into the context
      under their own names; ``context_object`` (JSON lines only) is an object whose entries are merged
      into the context.
    * ``timestamp_unit``: ``"ms"``, ``"s"`` or ``"iso"``; None detects per value (see ``formats.base``).
      ``timestamp_offset`` names a column of milliseconds added to the timestamp (DIGINETICA's timeframe).
    * ``fieldnames``: the column names of a CSV file that has no header line (YOOCHOOSE).
    * ``user_fallback``: a column used when the user is missing (empty or NA); such users are written
      ``"<column>:<value>"`` so they cannot collide with real user ids.

    In CSV files the cells ``""``, ``NA``, ``N/A``, ``NaN``, ``null`` and ``NULL`` count as missing; in JSON
    lines only ``null`` (and an absent key) does.
    """

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    event_type: str | None = "event_type"
    event_id: str | None = "event_id"
    session: str | None = "session_id"
    value: str | None = "value"
    category: str | None = None
    context: tuple[str, ...] = ()
    context_object: str | None = "context"
    timestamp_unit: TimestampUnit | None = None
    timestamp_offset: str | None = None
    delimiter: str = ","
    fieldnames: tuple[str, ...] | None = None
    default_type: EventType = EventType.VIEW
    type_map: tuple[tuple[str, EventType], ...] = ()
    user_fallback: str | None = None

    def __post_init__(self) -> None:
        if self.timestamp_unit is not None and self.timestamp_unit not in TIMESTAMP_UNITS:
            raise InputError(f"timestamp unit {self.timestamp_unit!r} is unknown; use one of ms, s, iso")
        if len(self.delimiter) != 1:
            raise InputError(f"CSV delimiter {self.delimiter!r} must be one character (or tab, comma, "
                             "semicolon, pipe, space)")
        for name in ("user", "item", "timestamp"):
            if not getattr(self, name):
                raise InputError(f"the column mapping needs a {name} column: pass {name}=<column name>")

    def optional_columns(self) -> dict[str, str]:
        """{field: column} of the optional columns that are set."""
        names = ("event_type", "event_id", "session", "value", "category", "timestamp_offset",
                 "user_fallback")
        out = {n: getattr(self, n) for n in names if getattr(self, n)}
        out.update({f"context:{c}": c for c in self.context})
        return out

    def is_default(self, name: str) -> bool:
        return bool(getattr(self, name) == getattr(_DEFAULT, name))


_DEFAULT = ColumnMapping()

_ALIASES = {
    "ts": "timestamp", "time": "timestamp", "type": "event_type", "event": "event_type", "id": "event_id",
    "session_id": "session", "user_id": "user", "item_id": "item", "unit": "timestamp_unit",
    "offset": "timestamp_offset", "columns": "fieldnames", "types": "type_map", "sep": "delimiter",
}
_DELIMITERS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
_FIELDS = tuple(f.name for f in fields(ColumnMapping))


def parse_mapping(spec: str, base: ColumnMapping | None = None) -> ColumnMapping:
    """Parse the CLI spelling ``"user=visitorid,item=itemid,..."`` into a :class:`ColumnMapping`.

    Keys are the field names of ``ColumnMapping`` (aliases: ts, type, id, unit, offset, columns, types,
    sep). Lists join with ``+`` (``context=brand+price``, ``columns=session+timestamp+item``), the type
    map is ``types=view:VIEW+addtocart:ADD_TO_CART``, the delimiter may be named (tab, comma, semicolon,
    pipe, space), and an empty value unsets an optional column (``event_id=``). Fields not named keep the
    value of ``base`` (a preset's mapping, say) or the default.
    """
    changes: dict[str, Any] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        key = _ALIASES.get(key, key)
        if not sep or key not in _FIELDS:
            raise InputError(f"bad column mapping item {part!r}: write key=value with keys among "
                             f"{', '.join(_FIELDS)}")
        changes[key] = _convert(key, raw.strip())
    try:
        return replace(base or _DEFAULT, **changes)
    except InputError as exc:
        raise InputError(f"bad column mapping {spec!r}: {exc}") from None


def _convert(key: str, raw: str) -> Any:
    if key in ("context", "fieldnames"):
        names = tuple(n.strip() for n in raw.split("+") if n.strip())
        return names if names or key == "context" else None
    if key == "delimiter":
        return _DELIMITERS.get(raw.lower(), raw)
    if key == "default_type":
        return _event_type(raw)
    if key == "type_map":
        pairs = []
        for item in (p for p in raw.split("+") if p):
            source, colon, target = item.rpartition(":")
            if not colon or not source:
                raise InputError(f"bad type map entry {item!r}: write raw:TYPE, e.g. addtocart:ADD_TO_CART")
            pairs.append((source, _event_type(target)))
        return tuple(pairs)
    if key == "timestamp_unit":
        return cast(TimestampUnit, raw.lower()) if raw else None
    if not raw and key in ("user", "item", "timestamp"):
        raise InputError(f"{key} needs a column name")
    return raw or None


def _event_type(raw: str) -> EventType:
    try:
        return EventType(raw.strip().upper())
    except ValueError:
        known = ", ".join(t.value for t in EventType)
        raise InputError(f"unknown event type {raw!r}; use one of {known}") from None


@dataclass(frozen=True, slots=True)
class Preset:
    """A documented mapping for a public e-commerce log; read with ``--format csv --preset NAME``."""

    name: str
    file: str
    mapping: ColumnMapping
    notes: str


def _preset_mapping(**columns: Any) -> ColumnMapping:
    """A mapping for a foreign log: none of streamrec's own optional field names apply."""
    base = {"event_type": None, "event_id": None, "session": None, "value": None, "context_object": None}
    return ColumnMapping(**{**base, **columns})


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        "rees46", "2019-Oct.csv (REES46 multi-category store)",
        _preset_mapping(
            user="user_id", item="product_id", timestamp="event_time", timestamp_unit="iso",
            event_type="event_type", session="user_session", value="price", category="category_code",
            context=("category_id", "brand"),
            type_map=(("view", EventType.VIEW), ("cart", EventType.ADD_TO_CART),
                      ("purchase", EventType.PURCHASE), ("remove_from_cart", EventType.OTHER))),
        "event_time is ISO text ('2019-10-01 00:00:00 UTC'); remove_from_cart becomes OTHER with "
        "raw_event_type; price is the value of every event; category_code is often empty."),
    Preset(
        "retailrocket", "events.csv (Retailrocket)",
        _preset_mapping(
            user="visitorid", item="itemid", timestamp="timestamp", timestamp_unit="ms", event_type="event",
            context=("transactionid",),
            type_map=(("view", EventType.VIEW), ("addtocart", EventType.ADD_TO_CART),
                      ("transaction", EventType.PURCHASE))),
        "timestamp in ms; no sessions; transactionid goes to the context of purchases."),
    Preset(
        "diginetica", "train-item-views.csv (DIGINETICA, CIKM Cup 2016)",
        _preset_mapping(
            user="userId", item="itemId", timestamp="eventdate", timestamp_unit="iso",
            timestamp_offset="timeframe", session="sessionId", user_fallback="sessionId", delimiter=";",
            default_type=EventType.VIEW),
        "';'-separated; time = eventdate (a day, UTC) + timeframe ms; most rows have userId NA: the user "
        "is then 'sessionId:<session>' (one anonymous user per session); all events are VIEW."),
    Preset(
        "yoochoose-clicks", "yoochoose-clicks.dat (RecSys Challenge 2015)",
        _preset_mapping(
            user="session", item="item", timestamp="timestamp", timestamp_unit="iso", session="session",
            category="category", fieldnames=("session", "timestamp", "item", "category"),
            default_type=EventType.CLICK),
        "no header; no user ids, so the session is the user; category is kept raw ('0' unknown, 'S' offer)."),
    Preset(
        "yoochoose-buys", "yoochoose-buys.dat (RecSys Challenge 2015)",
        _preset_mapping(
            user="session", item="item", timestamp="timestamp", timestamp_unit="iso", session="session",
            value="price", context=("quantity",),
            fieldnames=("session", "timestamp", "item", "price", "quantity"),
            default_type=EventType.PURCHASE),
        "no header; the session is the user; value = price (often 0, meaning unknown), quantity in context."),
)}
