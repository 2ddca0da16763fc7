"""What a valid catalog record looks like: one set of rules for every way an item enters (a file read by
``streamrec catalog load``, ``catalog set``, a record read from the items topic).

:func:`check_item` returns ``None`` for a valid :class:`Item`, else a one-line reason. Ids are non-blank text of
at most ``max_id_bytes`` UTF-8 bytes (the events' limit); title, description, brand, category levels and tags
are bounded in size and count; a price is a finite number within ``[0, max_price]``; created/updated times lie
between 1800-01-01 (MovieLens release dates go back to the 1920s) and a day after now; the attribute map is
bounded like an event's context.

>>> check_item(Item("sku-1", "Shoe", price=10.0)) is None
True
>>> check_item(Item("sku-1", price=-1.0))
'price -1.0 is negative'
>>> check_item(Item(" "))
'item_id is blank'
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from streamrec.models.catalog.item import Item
from streamrec.models.events import MAX_ID_BYTES

__all__ = ["ItemLimits", "check_item"]

_YEAR_1800_MS = -5_364_662_400_000
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ItemLimits:
    max_id_bytes: int = MAX_ID_BYTES
    max_title_bytes: int = 1024
    max_description_bytes: int = 16_384
    max_text_bytes: int = 256            # a brand, one category level, one tag
    max_category_depth: int = 16
    max_tags: int = 64
    max_price: float = 1e12
    max_attributes: int = 64
    max_attribute_bytes: int = 1024      # one key or one value
    min_time_ms: int = _YEAR_1800_MS
    max_future_ms: int = _DAY_MS


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _text(name: str, value: object, cap: int, blank_ok: bool = True) -> str | None:
    if not isinstance(value, str):
        return f"{name} is {type(value).__name__}, not text"
    if not blank_ok and not value.strip():
        return f"{name} is blank"
    if _size(value) > cap:
        return f"{name} is {_size(value)} bytes, over the limit of {cap}"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{name} is not valid UTF-8 text"
    return None


def check_item(item: Item, limits: ItemLimits = ItemLimits(), now_ms: int | None = None) -> str | None:
    """``None`` when ``item`` is valid, else why not (one line)."""
    lim = limits
    reason = _text("item_id", item.item_id, lim.max_id_bytes, blank_ok=False) \
        or _text("title", item.title, lim.max_title_bytes)
    if reason:
        return reason
    if item.description is not None and (reason := _text("description", item.description,
                                                         lim.max_description_bytes)):
        return reason
    if item.brand is not None and (reason := _text("brand", item.brand, lim.max_text_bytes)):
        return reason
    if not isinstance(item.category, tuple) or len(item.category) > lim.max_category_depth:
        return f"category has more than {lim.max_category_depth} levels"
    for level in item.category:
        if reason := _text("a category level", level, lim.max_text_bytes, blank_ok=False):
            return reason
    if not isinstance(item.tags, tuple) or len(item.tags) > lim.max_tags:
        return f"tags: more than {lim.max_tags}"
    for tag in item.tags:
        if reason := _text("a tag", tag, lim.max_text_bytes, blank_ok=False):
            return reason
    if item.price is not None:
        p = item.price
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p):
            return f"price {p!r} is not a finite number"
        if p < 0:
            return f"price {p!r} is negative"
        if p > lim.max_price:
            return f"price {p!r} is over the limit of {lim.max_price:g}"
    for flag in ("available", "hidden"):
        if not isinstance(getattr(item, flag), bool):
            return f"{flag} is not true or false"
    now = int(time.time() * 1000) if now_ms is None else now_ms
    for name, ts in (("created_at", item.created_at_ms), ("updated_at", item.updated_at_ms)):
        if ts is None:
            continue
        if isinstance(ts, bool) or not isinstance(ts, int):
            return f"{name} {ts!r} is not a time in ms"
        if ts < lim.min_time_ms:
            return f"{name} {ts} is before 1800-01-01 (wrong unit?)"
        if ts > now + lim.max_future_ms:
            return f"{name} {ts} is more than a day in the future (wrong unit?)"
    if len(item.attributes) > lim.max_attributes:
        return f"attributes: {len(item.attributes)} entries, over the limit of {lim.max_attributes}"
    for key, value in item.attributes.items():
        if reason := (_text("an attribute key", key, lim.max_attribute_bytes, blank_ok=False)
                      or _text(f"attribute {str(key)[:40]!r}", value, lim.max_attribute_bytes)):
            return reason
    return None
