"""MovieLens ratings: the 100K layout (``u.data``: ``user<TAB>item<TAB>rating<TAB>unix_seconds``), the 1M/10M
layout (``ratings.dat``: ``user::item::rating::unix_seconds``) and the 20M/25M/latest layout
(``ratings.csv`` with the header ``userId,movieId,rating,timestamp``), detected from the first line.

Every rating is an ``EventType.RATING`` event with ``value`` = the rating, ``event_id`` ``ml-<line>``
and the time in ms; :func:`tie_break` orders equal timestamps by (user, item) as numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from streamrec.models.errors import InputError
from streamrec.models.events import Event, EventType
from streamrec.producers.formats.base import (
    BadRow,
    RowError,
    TimeBounds,
    check_utf8,
    clip,
    numbered_lines,
    open_text,
    parse_timestamp,
    parse_value,
)


def _detect(path: Path, first: str) -> tuple[str, bool]:
    """(separator, has header) from the first non-blank line."""
    if "::" in first:
        return "::", False
    if "\t" in first:
        return "\t", False
    if first.lower().startswith("userid,"):
        return ",", True
    raise InputError(f"{path} does not look like MovieLens ratings (expected u.data with tabs, ratings.dat "
                     f"with '::' or ratings.csv with a userId,movieId,rating,timestamp header); first line: "
                     f"{clip(first)!r}. Use --format csv with a mapping for other layouts")


def _int_id(raw: str, what: str) -> str:
    text = raw.strip()
    if not text:
        raise RowError(f"missing {what}")
    if not text.isdigit():
        raise RowError(f"{what} {clip(raw)!r} is not an integer id")
    if text.isascii():  # without int(): a 5,000-digit id is a bad row (too long), not a ValueError
        return text.lstrip("0") or "0"
    return str(int(text))


def parse(path: Path, bounds: TimeBounds) -> Iterator[Event | BadRow]:
    with open_text(path) as fh:
        sep, header = "", False
        for line, text in numbered_lines(fh):
            if not sep:
                sep, header = _detect(path, text)
                if header:
                    continue
            try:
                check_utf8(text)
                parts = text.rstrip("\r\n").split(sep)
                if len(parts) != 4:
                    raise RowError(f"{len(parts)} fields, expected 4 (user, item, rating, timestamp)")
                user = _int_id(parts[0], "user")
                item = _int_id(parts[1], "item")
                rating = parse_value(parts[2])
                if rating is None:
                    raise RowError("missing rating")
                ts = bounds.check(parse_timestamp(parts[3], "s"), parts[3].strip())
                yield bounds.event(Event(f"ml-{line}", user, item, EventType.RATING, ts, None, rating))
            except RowError as exc:
                yield BadRow(line, str(exc), clip(text))


def tie_break(event: Event) -> tuple[int, int]:
    return int(event.user_id), int(event.item_id)
