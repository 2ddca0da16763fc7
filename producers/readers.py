"""Event-log readers: MovieLens, OTTO, generic CSV / JSON lines (with a column mapping or a preset), and
Avro container files of ``Event`` records. Pure file I/O, no Kafka.

Two ways to read:

* :func:`read_events` reads the whole log into memory and returns a :class:`ReadResult` with the events
  sorted by event time (ties keep file order; MovieLens ties go by user, then item). It holds every event
  in memory (roughly 0.5 KB an event: about 0.5 GB for a million), which sorting needs.
* :func:`stream_events` yields events in file order with constant memory.

Which one replay should use: ``read_events`` by default (event-time order is what the workers and the
evaluation expect), and ``stream_events`` for logs too large to hold that are already in time order: our
own generated logs (``producers.synthetic.write_log`` writes them sorted) and exports sorted by time
(REES46's monthly files). MovieLens files are in no time order, and OTTO and YOOCHOOSE files are grouped
by session (time order only inside a session), so those need ``read_events``. While streaming,
``EventStream.out_of_order`` counts events older than an event before them, so a caller can warn that
the log was not sorted.

A bad row (missing user or item, a timestamp that does not parse, is before 1990-01-01 or more than a day
in the future, a non-numeric value, a malformed line) is counted, kept as an example (up to
``max_examples``) and skipped; with ``strict=True`` the first one raises :class:`InputError` naming the
file, line and reason. A missing file, an unknown format, an empty file, or a file in which no row at all
is usable raise :class:`InputError` saying what to do.

Formats: ``movielens``, ``otto``, ``csv``, ``jsonl``, ``avro``; ``csv`` and ``jsonl`` take a
:class:`ColumnMapping` or a preset name from :data:`PRESETS`; a preset name also works as the format.
Files ending in ``.gz`` are decompressed on the fly (text formats).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamrec.models.errors import InputError
from streamrec.models.events import Event
from streamrec.producers.formats import avro, movielens, otto
from streamrec.producers.formats.base import BadRow, BadRowTally, TimeBounds, skipped_summary
from streamrec.producers.formats.mapping import PRESETS, ColumnMapping, Preset, parse_mapping
from streamrec.producers.formats.tabular import parse_csv, parse_jsonl

__all__ = [
    "FORMATS", "PRESETS", "BadRow", "ColumnMapping", "EventStream", "Preset", "ReadResult", "parse_mapping",
    "read_events", "stream_events",
]

MAX_EXAMPLES = 20

Parser = Callable[[Path, TimeBounds], Iterator[Event | BadRow]]
TieBreak = Callable[[Event], tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class _Format:
    name: str
    mapped: bool  # takes a ColumnMapping
    tie_break: TieBreak | None = None


FORMATS: dict[str, str] = {
    "movielens": "MovieLens ratings (u.data, ratings.dat or ratings.csv; layout detected)",
    "otto": "OTTO session JSON lines (session, events: aid, ts, type)",
    "csv": "CSV with a header (or mapping.fieldnames), mapped by a ColumnMapping or a preset",
    "jsonl": "JSON lines mapped by a ColumnMapping (default: streamrec's own field names)",
    "avro": "Avro container file of Event records (stream/schemas/event.avsc)",
}
_SPECS = {
    "movielens": _Format("movielens", False, movielens.tie_break),
    "otto": _Format("otto", False),
    "csv": _Format("csv", True),
    "jsonl": _Format("jsonl", True),
    "avro": _Format("avro", False),
}


@dataclass(frozen=True, slots=True)
class ReadResult:
    """The events of a log in time order, and the rows that were skipped."""

    path: Path
    fmt: str
    events: tuple[Event, ...]
    bad_rows: tuple[BadRow, ...]  # the first few examples, in file order
    bad_count: int  # every bad row, including those not kept as examples

    def summary(self) -> str:
        return skipped_summary(len(self.events), "events", self.path, self.fmt, self.bad_count, self.bad_rows)


class EventStream:
    """Events of a log in file order, read lazily; bad rows are tallied while iterating.

    Each ``iter()`` reads the file again from the start and resets the tally. After a full pass,
    ``count`` is the number of events, ``bad_count`` the number of bad rows and ``bad_rows`` the first
    ``max_examples`` of them, and ``out_of_order`` the number of events with a timestamp before that
    of an earlier event (0 when the file is in time order).
    """

    def __init__(self, path: str | Path, fmt: str, mapping: ColumnMapping | None = None,
                 preset: str | None = None, strict: bool = False, max_examples: int = MAX_EXAMPLES) -> None:
        self.path, self.fmt, self._parser, self._tie_break = _resolve(path, fmt, mapping, preset)
        self.strict = strict
        self.max_examples = max_examples
        self.count = 0
        self.bad_count = 0
        self.bad_rows: list[BadRow] = []
        self.out_of_order = 0

    def __iter__(self) -> Iterator[Event]:
        self.count, self.bad_count, self.bad_rows, self.out_of_order = 0, 0, [], 0
        tally = BadRowTally(self.path, self.strict, self.max_examples, examples=self.bad_rows)
        latest = -(2**63)
        for row in self._parser(self.path, TimeBounds.now()):
            if isinstance(row, Event):
                self.count += 1
                if row.timestamp_ms < latest:
                    self.out_of_order += 1
                else:
                    latest = row.timestamp_ms
                yield row
                continue
            tally.add(row)
            self.bad_count = tally.count
        tally.check_some_usable(self.count, f"usable as {self.fmt}", "check --format and the column mapping",
                                "holds no events (only a header or blank lines); point to a log with data")

    def sort_key(self, event: Event) -> tuple[Any, ...]:
        if self._tie_break is None:
            return (event.timestamp_ms,)
        return (event.timestamp_ms, *self._tie_break(event))


def stream_events(path: str | Path, fmt: str, mapping: ColumnMapping | None = None, preset: str | None = None,
                  strict: bool = False, max_examples: int = MAX_EXAMPLES) -> EventStream:
    """Events in file order without holding the log in memory (what replay of a large log should use).

    The arguments are checked at once (missing file, unknown format, mapping); rows are read on iteration.
    """
    return EventStream(path, fmt, mapping, preset, strict, max_examples)


def read_events(path: str | Path, fmt: str, mapping: ColumnMapping | None = None, preset: str | None = None,
                strict: bool = False, max_examples: int = MAX_EXAMPLES) -> ReadResult:
    """Read a whole log and sort it by event time (stable: equal times keep file order, MovieLens equal
    times go by numeric user then item). Needs memory for every event; see :func:`stream_events`."""
    stream = EventStream(path, fmt, mapping, preset, strict, max_examples)
    with _gc_paused():
        events = sorted(stream, key=stream.sort_key)
    return ReadResult(stream.path, stream.fmt, tuple(events), tuple(stream.bad_rows), stream.bad_count)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Building a million events would trigger many full garbage collections that free nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _resolve(path: str | Path, fmt: str, mapping: ColumnMapping | None,
             preset: str | None) -> tuple[Path, str, Parser, TieBreak | None]:
    name = fmt.strip().lower()
    if name in PRESETS and preset is None:
        name, preset = "csv", name
    spec = _SPECS.get(name)
    if spec is None:
        raise InputError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)} "
                         f"(or a preset: {', '.join(PRESETS)})")
    if preset is not None:
        if preset not in PRESETS:
            raise InputError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}, or pass a column "
                             "mapping (user=...,item=...,timestamp=...)")
        if mapping is not None:
            raise InputError("give a preset or a column mapping, not both; to change a preset, build the "
                             "mapping with parse_mapping(spec, base=PRESETS[name].mapping)")
        if not spec.mapped:
            raise InputError(f"preset {preset!r} describes a CSV log; read it with format csv")
        mapping = PRESETS[preset].mapping
    elif mapping is not None and not spec.mapped:
        raise InputError(f"format {name!r} has a fixed layout and takes no column mapping; "
                         "use csv or jsonl with a mapping for other layouts")
    file = _check_file(Path(path))
    if name == "csv" or name == "jsonl":
        use = mapping or ColumnMapping()
        reader = parse_csv if name == "csv" else parse_jsonl

        def parser(p: Path, bounds: TimeBounds) -> Iterator[Event | BadRow]:
            return reader(p, use, bounds)

        return file, name, parser, spec.tie_break
    module = {"movielens": movielens, "otto": otto, "avro": avro}[name]
    return file, name, module.parse, spec.tie_break


def _check_file(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"event log {path} not found (looked in {path.resolve().parent}); check the path")
    if not path.is_file():
        raise InputError(f"event log {path} is not a file; point to the log file itself")
    if path.stat().st_size == 0:
        raise InputError(f"event log {path} is empty; point to a log with data")
    return path
