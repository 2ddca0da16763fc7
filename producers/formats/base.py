"""Shared pieces of the log readers: bad rows, row-level parsing of ids, timestamps and values, file opening.

A parser yields :class:`~models.events.Event` objects and :class:`BadRow` records in file order; the
caller (``producers.readers``) counts the bad rows, keeps a few examples, and raises in strict mode.
Row-level problems are raised inside a parser as :class:`RowError` and turned into a ``BadRow`` there.

Timestamps (``parse_timestamp``):

* unit ``"ms"`` or ``"s"``: a number (int, float or numeric string);
* unit ``"iso"``: ISO 8601 text (``2019-10-01 00:00:00 UTC``, ``2014-04-07T10:51:09.277Z``, ``2016-05-09``);
  text without an offset is taken as UTC;
* no unit: numbers are detected by magnitude (at least 1e11 means milliseconds, below means seconds:
  1e11 ms is 1973 and 1e11 s is the year 5138, and anything before 1990 is rejected anyway), other text
  is parsed as ISO 8601.

A timestamp before 1990-01-01 or more than a day after the time of reading is a bad row: it almost
always means a wrong unit or a broken export. Every event a parser builds then passes the shared event
rules (``models.events.check_event`` through :meth:`TimeBounds.event`, the same rules the stream's decoder
applies): an id over 256 bytes, a value that is not finite or out of range, an oversized context is a bad
row with its line number.

>>> parse_timestamp("881250949", None)
881250949000
>>> parse_timestamp(1659304800025, None)
1659304800025
>>> parse_timestamp("2019-10-01 00:00:00 UTC", None)
1569888000000
"""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

from streamrec.models.errors import InputError
from streamrec.models.events import MIN_TIMESTAMP_MS as MIN_TIMESTAMP_MS  # re-exported for the generators
from streamrec.models.events import Event, EventLimits, check_event

TimestampUnit = Literal["ms", "s", "iso"]
TIMESTAMP_UNITS: tuple[str, ...] = ("ms", "s", "iso")
_MS_THRESHOLD = 100_000_000_000  # 1e11: numbers at or above are milliseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_TEXT_CAP = 200


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not be turned into an event: 1-based line (record number for Avro), why, what."""

    line: int
    reason: str
    text: str = ""

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class BadRowTally:
    """The bad rows of one pass over a file: every one counted, the first ``max_examples`` kept; with
    ``strict`` the first one stops the pass instead (one clear error naming its line)."""

    path: Any
    strict: bool = False
    max_examples: int = 20
    count: int = 0
    examples: list[BadRow] = field(default_factory=list)

    def add(self, row: BadRow) -> None:
        if self.strict:
            raise InputError(f"{self.path}, line {row.line}: {row.reason} (fix the row, or drop --strict "
                             "to skip bad rows and report them)")
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(row)

    def check_some_usable(self, usable: int, what: str, hint: str, empty: str) -> None:
        """After a pass: an error when no row was usable (``what``: "usable as csv events"), naming the first
        bad row and ``hint``, or ``empty`` when the file had no rows at all."""
        if usable:
            return
        if self.count:
            raise InputError(f"{self.path}: none of its {self.count} rows is {what} (first: {self.examples[0]}); "
                             f"{hint}")
        raise InputError(f"{self.path} {empty}")


def skipped_summary(n: int, noun: str, path: Any, fmt: str, bad_count: int, bad_rows: Sequence[BadRow]) -> str:
    """"12 events from log.csv (csv), 2 bad rows skipped; first: line 3: ...": a read's one-line summary."""
    text = f"{n} {noun} from {path} ({fmt}), {bad_count} bad rows skipped"
    if bad_rows:
        text += "; first: " + "; ".join(str(b) for b in bad_rows[:3])
    return text


class RowError(ValueError):
    """Raised by the row helpers; the parser turns it into a :class:`BadRow`."""


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """The rules a row must pass, as of the time of reading: the shared :class:`EventLimits` (event
    time from 1990-01-01 to a day after ``now_ms``, ids, value, context). ``check`` explains a bad
    timestamp in terms of units; ``event`` applies every other rule to a built event."""

    min_ms: int
    max_ms: int
    limits: EventLimits = EventLimits()
    now_ms: int | None = None

    @classmethod
    def now(cls, limits: EventLimits | None = None) -> TimeBounds:
        lim = limits or EventLimits()
        now = int(time.time() * 1000)
        return cls(lim.min_timestamp_ms, lim.max_timestamp_ms(now), lim, now)

    def check(self, ts_ms: int, raw: object) -> int:
        if ts_ms < self.min_ms:
            raise RowError(f"timestamp {raw!r} is {_iso(ts_ms)}, before 1990-01-01 "
                           "(wrong unit? set unit=s|ms|iso)")
        if ts_ms > self.max_ms:
            raise RowError(f"timestamp {raw!r} is {_iso(ts_ms)}, more than a day in the future "
                           "(wrong unit? set unit=s|ms|iso)")
        return ts_ms

    def event(self, event: Event) -> Event:
        """``event`` itself when it passes the shared event rules; otherwise :class:`RowError` with the reason."""
        now = self.now_ms if self.now_ms is not None else self.max_ms - self.limits.max_future_ms
        reason = check_event(event, self.limits, now)
        if reason is not None:
            raise RowError(reason)
        return event


def _iso(ts_ms: int) -> str:
    try:
        return (_EPOCH + ts_ms * _ONE_MS).strftime("%Y-%m-%d %H:%M:%S UTC")
    except OverflowError:
        return "out of range"


def datetime_to_ms(dt: datetime) -> int:
    """Exact milliseconds since the epoch (no float rounding); naive datetimes are UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _ONE_MS


def _number(raw: object) -> int | float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return raw
    if isinstance(raw, str):
        s = raw.strip()
        try:
            return int(s)
        except ValueError:
            pass
        try:
            return float(s)
        except ValueError:
            return None
    return None


def _parse_iso(raw: str) -> int:
    s = raw.strip()
    if s.endswith(" UTC"):
        s = s[:-4]
    elif s.endswith("UTC"):
        s = s[:-3]
    try:
        return datetime_to_ms(datetime.fromisoformat(s))
    except ValueError:
        raise RowError(f"timestamp {raw!r} is not a number nor ISO 8601 date-time") from None


def parse_timestamp(raw: object, unit: str | None) -> int:
    """Event time in UTC ms from a raw cell; raises :class:`RowError`. Bounds are checked separately."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise RowError("empty timestamp")
    if unit == "iso":
        if not isinstance(raw, str):
            raise RowError(f"timestamp {raw!r} is not ISO 8601 text (unit=iso)")
        return _parse_iso(raw)
    num = _number(raw)
    if num is None:
        if unit is None and isinstance(raw, str):
            return _parse_iso(raw)
        raise RowError(f"timestamp {raw!r} is not a number (unit={unit})")
    if isinstance(num, float) and not math.isfinite(num):
        raise RowError(f"timestamp {raw!r} is not a finite number")
    seconds = unit == "s" or (unit is None and abs(num) < _MS_THRESHOLD)
    if isinstance(num, int):
        return num * 1000 if seconds else num
    return round(num * 1000) if seconds else round(num)


def parse_value(raw: object) -> float | None:
    """The optional numeric value (rating, price); missing is None, anything non-numeric is a bad row."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    num = _number(raw)
    if num is None:
        raise RowError(f"value {raw!r} is not a number")
    value = float(num)
    if not math.isfinite(value):
        raise RowError(f"value {raw!r} is not a finite number")
    return value


def parse_id(raw: object, what: str) -> str:
    """A required id (user, item): text or an integer; empty is a bad row."""
    if raw is None or isinstance(raw, bool):
        raise RowError(f"missing {what}" if raw is None else f"{what} {raw!r} is not an id")
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise RowError(f"{what} {raw!r} is not an id")
        return str(int(raw)) if raw.is_integer() else repr(raw)
    if isinstance(raw, str):
        if not raw.strip():
            raise RowError(f"empty {what}")
        return raw
    raise RowError(f"{what} {raw!r} is not an id (expected text or an integer)")


def optional_text(raw: object) -> str | None:
    """An optional text field (session, category, context): None stays None, numbers become text."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return parse_id(raw, "field")


def check_utf8(text: str) -> None:
    """Lines are decoded with ``surrogateescape``; a surrogate means the bytes were not UTF-8."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RowError("not valid UTF-8 text") from None


def json_line(text: str) -> Any:
    """One line of a JSON-lines file, decoded; :class:`RowError` when it is not valid UTF-8 or not JSON."""
    check_utf8(text)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RowError(f"not JSON: {exc}") from None


def clip(text: str) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= _TEXT_CAP else text[: _TEXT_CAP - 3] + "..."


def open_text(path: Path) -> TextIO:
    """Open a log as text (UTF-8, BOM stripped, undecodable bytes kept for a per-row error); ``.gz`` too."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def numbered_lines(fh: TextIO) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for every non-blank line."""
    for number, line in enumerate(fh, start=1):
        if line.strip():
            yield number, line
