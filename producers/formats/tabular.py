"""The generic ``csv`` and ``jsonl`` readers, driven by a :class:`ColumnMapping`."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from streamrec.models.errors import InputError
from streamrec.models.events import Event, EventType
from streamrec.producers.formats.base import (
    BadRow,
    RowError,
    TimeBounds,
    check_utf8,
    clip,
    json_line,
    numbered_lines,
    open_text,
    optional_text,
    parse_id,
    parse_timestamp,
    parse_value,
)
from streamrec.producers.formats.mapping import ColumnMapping

CSV_MISSING = frozenset({"", "NA", "N/A", "NaN", "null", "NULL"})

Getter = Callable[[str], object]


class RowBuilder:
    """Turns one row (a getter from column name to raw cell) into an :class:`Event`."""

    def __init__(self, path: Path, mapping: ColumnMapping, bounds: TimeBounds) -> None:
        self.mapping = mapping
        self.bounds = bounds
        self.file_name = path.name.removesuffix(".gz")
        self.type_map: dict[str, EventType] = {}
        for raw, etype in mapping.type_map:
            self.type_map[raw] = etype
            self.type_map.setdefault(raw.strip().lower(), etype)
        self._seen: dict[str, tuple[EventType, bool]] = {}

    def event_type(self, raw: object, context: dict[str, str]) -> EventType:
        if raw is None:
            return self.mapping.default_type
        text = optional_text(raw) or ""
        known = self._seen.get(text)
        if known is None:
            known = self._classify(text)
            if len(self._seen) < 10_000:  # logs spell their types a handful of ways
                self._seen[text] = known
        etype, keep_raw = known
        if keep_raw:
            context["raw_event_type"] = text
        return etype

    def _classify(self, text: str) -> tuple[EventType, bool]:
        """(type, whether the raw spelling goes to the context as raw_event_type)."""
        etype = self.type_map.get(text) or self.type_map.get(text.strip().lower())
        if etype is None:
            if not text.strip():
                return self.mapping.default_type, False
            etype = EventType.parse(text)
        return etype, etype is EventType.OTHER and text.strip().lower() != "other"

    def build(self, get: Getter, line: int, context_object: object = None) -> Event:
        m = self.mapping
        context: dict[str, str] = {}
        if context_object is not None:
            if not isinstance(context_object, Mapping):
                raise RowError(f"{m.context_object!r} must be an object")
            for key, val in context_object.items():
                text = optional_text(val)
                if text is not None:
                    context[str(key)] = text
        raw_user = get(m.user)
        if raw_user is None and m.user_fallback:
            fallback = get(m.user_fallback)
            if fallback is not None:
                raw_user = f"{m.user_fallback}:{parse_id(fallback, m.user_fallback)}"
        user = parse_id(raw_user, f"user ({m.user!r})")
        item = parse_id(get(m.item), f"item ({m.item!r})")
        ts = parse_timestamp(get(m.timestamp), m.timestamp_unit)
        if m.timestamp_offset:
            offset = get(m.timestamp_offset)
            if offset is not None:
                ts += parse_timestamp(offset, "ms")
        self.bounds.check(ts, get(m.timestamp))
        value = parse_value(get(m.value)) if m.value else None
        session = optional_text(get(m.session)) if m.session else None
        for column in m.context:
            text = optional_text(get(column))
            if text is not None:
                context[column] = text
        if m.category:
            category = optional_text(get(m.category))
            if category is not None:
                context["category"] = category
        etype = self.event_type(get(m.event_type) if m.event_type else None, context)
        event_id = optional_text(get(m.event_id)) if m.event_id else None
        if not event_id:
            event_id = f"{self.file_name}:{line}"
        return self.bounds.event(Event(event_id, user, item, etype, ts, session, value, context))


def parse_csv(path: Path, mapping: ColumnMapping, bounds: TimeBounds) -> Iterator[Event | BadRow]:
    builder = RowBuilder(path, mapping, bounds)
    with open_text(path) as fh:
        reader = csv.reader(fh, delimiter=mapping.delimiter)
        if mapping.fieldnames:
            header = list(mapping.fieldnames)
        else:
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                return
        index = _column_index(path, header, mapping)
        width = len(header)
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                if len(row) != width:
                    raise RowError(f"{len(row)} fields, expected {width} (delimiter {mapping.delimiter!r})")
                for cell in row:
                    check_utf8(cell)

                def get(column: str, row: list[str] = row) -> object:
                    pos = index.get(column)
                    if pos is None:
                        return None
                    cell = row[pos].strip()
                    return None if cell in CSV_MISSING else cell

                yield builder.build(get, line)
            except RowError as exc:
                yield BadRow(line, str(exc), clip(mapping.delimiter.join(row)))


def _column_index(path: Path, header: list[str], mapping: ColumnMapping) -> dict[str, int]:
    index = {name: pos for pos, name in enumerate(header)}
    shown = ", ".join(header) if len(header) < 30 else ", ".join(header[:30]) + ", ..."
    for field in ("user", "item", "timestamp"):
        column = getattr(mapping, field)
        if column not in index:
            raise InputError(f"{path}: column {column!r} ({field}) is not in the header [{shown}]; "
                             f"map it with {field}=<column> (or pick a --preset)")
    for field, column in mapping.optional_columns().items():
        if column not in index and not (field in ("event_type", "event_id", "session", "value")
                                        and mapping.is_default(field)):
            raise InputError(f"{path}: column {column!r} ({field}) is not in the header [{shown}]; "
                             f"fix the mapping or unset it with {field.partition(':')[0]}=")
    return index


def parse_jsonl(path: Path, mapping: ColumnMapping, bounds: TimeBounds) -> Iterator[Event | BadRow]:
    builder = RowBuilder(path, mapping, bounds)
    with open_text(path) as fh:
        for line, text in numbered_lines(fh):
            try:
                obj = json_line(text)
                if not isinstance(obj, dict):
                    raise RowError("not a JSON object")
                ctx = obj.get(mapping.context_object) if mapping.context_object else None
                yield builder.build(obj.get, line, ctx)
            except RowError as exc:
                yield BadRow(line, str(exc), clip(text))
