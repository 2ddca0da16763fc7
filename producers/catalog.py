"""Catalog readers: MovieLens ``u.item`` (preset ``movielens``) and generic CSV / JSON lines mapped by a
:class:`CatalogMapping` (``--map`` on the command line, like replay's). Pure file I/O, no Kafka.

:func:`read_items` reads a whole file and returns a :class:`CatalogRead` (items in file order, bad rows);
:func:`iter_items` yields items lazily and tallies bad rows on a :class:`ItemStream`. A bad row (no item id,
a price that is not a number or negative, a flag that is not true/false, a time that does not parse, a field
over the limits of :func:`models.catalog.checks.check_item`, a malformed line) is counted, kept as an example
(line number and reason, up to ``max_examples``) and skipped; with ``strict=True`` the first one raises
:class:`InputError`. A missing or empty file, an unknown format, a column named in the mapping that the CSV
header lacks, or a file with no usable row raise :class:`InputError` saying what to do.

MovieLens ``u.item`` (``id|title|release date|video release date|IMDb URL|19 genre flags``): the item id is
the movie id (as in ``u.data``), the title is kept as written (with its year), the release date becomes
``created_at``, the first flagged genre (in ``u.genre`` order) is the one-level ``category`` and every
flagged genre is a tag (a movie has several genres; a category is a path, so only one of them can be it);
the release date and the IMDb URL are kept in ``attributes``.

Generic mapping: the default :class:`CatalogMapping` names the fields of ``stream/schemas/item.avsc``
(``item_id, title, description, category, brand, price, tags, available, hidden, created_at, updated_at,
attributes``), so a JSON-lines file in streamrec's own shape needs no mapping. In CSV, the category is one
cell split on ``category_sep`` (default ``>``: ``shoes>running``) and the tags one cell split on ``tag_sep``
(default ``|``); in JSON lines either may also be a list. ``attributes`` names more columns copied into the
attribute map under their own names.

>>> m = parse_catalog_mapping("item=sku,title=name,category=cat,category_sep=/,attributes=color+size")
>>> (m.item, m.title, m.category, m.category_sep, m.attributes)
('sku', 'name', 'cat', '/', ('color', 'size'))
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from streamrec.models.catalog.checks import ItemLimits, check_item
from streamrec.models.catalog.item import Item
from streamrec.models.errors import InputError
from streamrec.producers.formats.base import (
    TIMESTAMP_UNITS,
    BadRow,
    BadRowTally,
    RowError,
    TimestampUnit,
    check_utf8,
    clip,
    datetime_to_ms,
    json_line,
    numbered_lines,
    open_text,
    parse_id,
    parse_timestamp,
    skipped_summary,
)
from streamrec.producers.formats.tabular import CSV_MISSING

__all__ = ["CATALOG_FORMATS", "MOVIELENS_GENRES", "CatalogMapping", "CatalogRead", "ItemStream", "iter_items",
           "parse_bool", "parse_catalog_mapping", "read_items"]

MAX_EXAMPLES = 20

CATALOG_FORMATS: dict[str, str] = {
    "movielens": "MovieLens u.item (id|title|release date|video date|IMDb URL|19 genre flags)",
    "csv": "CSV with a header, mapped by --map (default: the item schema's field names)",
    "jsonl": "JSON lines, mapped by --map (default: the item schema's field names)",
}

#: u.genre's order (used when no ``u.genre`` lies beside ``u.item``)
MOVIELENS_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")

_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


@dataclass(frozen=True, slots=True)
class CatalogMapping:
    """Which column (CSV header name, or JSON key) holds which item field. Only ``item`` is required in
    every row; an optional column left at its default name may be absent from the file, one you name must
    be in the CSV header. An empty cell (or ``NA``, ``null``...) leaves the field at its default
    (available, not hidden, no price)."""

    item: str = "item_id"
    title: str | None = "title"
    description: str | None = "description"
    category: str | None = "category"
    brand: str | None = "brand"
    price: str | None = "price"
    tags: str | None = "tags"
    available: str | None = "available"
    hidden: str | None = "hidden"
    created_at: str | None = "created_at"
    updated_at: str | None = "updated_at"
    attributes: tuple[str, ...] = ()            # more columns copied into the attribute map
    attributes_object: str | None = "attributes"  # JSON lines: an object merged into the attribute map
    category_sep: str = ">"
    tag_sep: str = "|"
    delimiter: str = ","
    timestamp_unit: TimestampUnit | None = None

    def __post_init__(self) -> None:
        if not self.item:
            raise InputError("the catalog mapping needs an item column: pass item=<column name>")
        if self.timestamp_unit is not None and self.timestamp_unit not in TIMESTAMP_UNITS:
            raise InputError(f"timestamp unit {self.timestamp_unit!r} is unknown; use one of ms, s, iso")
        if len(self.delimiter) != 1:
            raise InputError(f"CSV delimiter {self.delimiter!r} must be one character (or tab, comma, "
                             "semicolon, pipe, space)")
        if not self.category_sep or not self.tag_sep:
            raise InputError("category_sep and tag_sep must not be empty")

    def named_columns(self) -> dict[str, str]:
        """{field: column} of the columns set away from their default name (they must be in the file)."""
        out = {f: getattr(self, f) for f in _COLUMN_FIELDS
               if getattr(self, f) and getattr(self, f) != getattr(_DEFAULT, f)}
        out.update({f"attributes:{c}": c for c in self.attributes})
        return out


_COLUMN_FIELDS = ("item", "title", "description", "category", "brand", "price", "tags", "available", "hidden",
                  "created_at", "updated_at")
_DEFAULT = CatalogMapping()
_FIELDS = tuple(f.name for f in fields(CatalogMapping))
_ALIASES = {"id": "item", "item_id": "item", "sku": "item", "name": "title", "cat": "category",
            "attrs": "attributes", "unit": "timestamp_unit", "sep": "delimiter", "created": "created_at",
            "updated": "updated_at"}
_DELIMITERS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


def parse_catalog_mapping(spec: str, base: CatalogMapping | None = None) -> CatalogMapping:
    """Parse ``"item=sku,title=name,category=cat,..."`` into a :class:`CatalogMapping`.

    Keys are the field names of ``CatalogMapping`` (aliases: id, sku, name, cat, attrs, unit, sep, created,
    updated); ``attributes`` joins column names with ``+``; separators and the delimiter may be named (tab,
    comma, semicolon, pipe, space); an empty value unsets an optional column (``description=``).
    """
    changes: dict[str, Any] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = _ALIASES.get(key.strip().lower(), key.strip().lower())
        if not sep or key not in _FIELDS:
            raise InputError(f"bad catalog mapping item {part!r}: write key=value with keys among "
                             f"{', '.join(_FIELDS)}")
        raw = raw.strip()
        if key == "attributes":
            changes[key] = tuple(n.strip() for n in raw.split("+") if n.strip())
        elif key in ("delimiter", "category_sep", "tag_sep"):
            changes[key] = _DELIMITERS.get(raw.lower(), raw)
        elif key == "timestamp_unit":
            changes[key] = cast(TimestampUnit, raw.lower()) if raw else None
        elif key == "item" and not raw:
            raise InputError("item needs a column name")
        else:
            changes[key] = raw or None
    try:
        return replace(base or _DEFAULT, **changes)
    except InputError as exc:
        raise InputError(f"bad catalog mapping {spec!r}: {exc}") from None


def parse_bool(raw: object, what: str) -> bool | None:
    """true/false, 1/0, yes/no (any case); missing is None; anything else is a bad row."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        s = raw.strip().lower()
        if not s:
            return None
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise RowError(f"{what} {raw!r} is not true or false")


def _price(raw: object) -> float | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise RowError(f"price {raw!r} is not a number")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            raise RowError(f"price {raw!r} is not a number") from None
    raise RowError(f"price {raw!r} is not a number")


def _text(raw: object, what: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise RowError(f"{what} {raw!r} is not text")
    return str(raw)


def _parts(raw: object, sep: str, what: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, list):
        return tuple(p for p in (_text(x, what) for x in raw) if p is not None and p.strip())
    text = _text(raw, what) or ""
    return tuple(p.strip() for p in text.split(sep) if p.strip())


def _time(raw: object, unit: str | None, what: str) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        return parse_timestamp(raw, unit)
    except RowError as exc:
        raise RowError(f"{what}: {exc}") from None


class _Builder:
    def __init__(self, mapping: CatalogMapping, limits: ItemLimits) -> None:
        self.m, self.limits = mapping, limits

    def build(self, get: Callable[[str | None], object], attributes_object: object = None) -> Item:
        m = self.m
        attrs: dict[str, str] = {}
        if attributes_object is not None:
            if not isinstance(attributes_object, Mapping):
                raise RowError(f"{m.attributes_object!r} must be an object")
            for key, val in attributes_object.items():
                text = _text(val, f"attribute {key!r}")
                if text is not None:
                    attrs[str(key)] = text
        for col in m.attributes:
            text = _text(get(col), f"attribute {col!r}")
            if text is not None:
                attrs[col] = text
        available, hidden = parse_bool(get(m.available), "available"), parse_bool(get(m.hidden), "hidden")
        item = Item(
            item_id=parse_id(get(m.item), "item id"), title=_text(get(m.title), "title") or "",
            description=_text(get(m.description), "description"),
            category=_parts(get(m.category), m.category_sep, "category"), brand=_text(get(m.brand), "brand"),
            price=_price(get(m.price)), tags=_parts(get(m.tags), m.tag_sep, "tags"),
            available=True if available is None else available, hidden=False if hidden is None else hidden,
            created_at_ms=_time(get(m.created_at), m.timestamp_unit, "created_at"),
            updated_at_ms=_time(get(m.updated_at), m.timestamp_unit, "updated_at"), attributes=attrs)
        reason = check_item(item, self.limits)
        if reason is not None:
            raise RowError(reason)
        return item


Parser = Callable[[Path, ItemLimits], Iterator[Item | BadRow]]


def _csv(mapping: CatalogMapping) -> Parser:
    def parse(path: Path, limits: ItemLimits) -> Iterator[Item | BadRow]:
        builder = _Builder(mapping, limits)
        with open_text(path) as fh:
            lines = numbered_lines(fh)
            first = next(lines, None)
            if first is None:
                return
            header = next(csv.reader([first[1]], delimiter=mapping.delimiter))
            header = [h.strip() for h in header]
            missing = [f"{f}={c}" for f, c in mapping.named_columns().items() if c not in header]
            if mapping.item not in header and not missing:
                missing = [f"item={mapping.item}"]
            if missing:
                raise InputError(f"{path}: the header has no column for {', '.join(missing)} (header: "
                                 f"{', '.join(header[:12])}); fix --map")
            index = {name: k for k, name in enumerate(header)}
            for number, line in lines:
                try:
                    check_utf8(line)
                    cells = next(csv.reader([line], delimiter=mapping.delimiter))
                    if len(cells) != len(header):
                        raise RowError(f"{len(cells)} cells, the header has {len(header)}")

                    def get(col: str | None, cells: list[str] = cells) -> object:
                        k = index.get(col) if col else None
                        if k is None:
                            return None
                        v = cells[k]
                        return None if v.strip() in CSV_MISSING else v
                    yield builder.build(get)
                except RowError as exc:
                    yield BadRow(number, str(exc), clip(line))
    return parse


def _jsonl(mapping: CatalogMapping) -> Parser:
    def parse(path: Path, limits: ItemLimits) -> Iterator[Item | BadRow]:
        builder = _Builder(mapping, limits)
        with open_text(path) as fh:
            for number, line in numbered_lines(fh):
                try:
                    obj = json_line(line)
                    if not isinstance(obj, dict):
                        raise RowError("not a JSON object")

                    def get(col: str | None, o: dict[str, Any] = obj) -> object:
                        return o.get(col) if col else None
                    yield builder.build(get, obj.get(mapping.attributes_object) if mapping.attributes_object else None)
                except RowError as exc:
                    yield BadRow(number, str(exc), clip(line))
    return parse


_ML_DATE = re.compile(r"^\d{1,2}-[A-Za-z]{3}-\d{4}$")


def _movielens_genres(path: Path) -> tuple[str, ...]:
    genre_file = path.with_name("u.genre")
    if not genre_file.is_file():
        return MOVIELENS_GENRES
    pairs = []
    for line in genre_file.read_text(encoding="latin-1").splitlines():
        name, _, idx = line.rpartition("|")
        if name and idx.strip().isdigit():
            pairs.append((int(idx), name))
    return tuple(n for _, n in sorted(pairs)) or MOVIELENS_GENRES


def _movielens(path: Path, limits: ItemLimits) -> Iterator[Item | BadRow]:
    genres = _movielens_genres(path)
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("latin-1")            # the 100K files are ISO-8859-1
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                parts = line.split("|")
                if len(parts) != 5 + len(genres):
                    raise RowError(f"{len(parts)} fields, expected {5 + len(genres)} (id, title, release date, "
                                   f"video release date, IMDb URL, {len(genres)} genre flags)")
                item_id = parts[0].strip()
                if not item_id.isdigit():
                    raise RowError(f"movie id {parts[0]!r} is not a number")
                flags = parts[5:]
                if any(f not in ("0", "1") for f in flags):
                    raise RowError("a genre flag is not 0 or 1")
                tags = tuple(g for g, f in zip(genres, flags, strict=True) if f == "1")
                created = None
                date = parts[2].strip()
                attrs = {}
                if date:
                    if not _ML_DATE.match(date):
                        raise RowError(f"release date {date!r} is not DD-Mon-YYYY")
                    try:
                        created = datetime_to_ms(datetime.strptime(date, "%d-%b-%Y").replace(tzinfo=UTC))
                    except ValueError:
                        raise RowError(f"release date {date!r} is not a date") from None
                    attrs["release_date"] = date
                if parts[4].strip():
                    attrs["imdb_url"] = parts[4].strip()
                item = Item(str(int(item_id)), parts[1].strip(), category=tags[:1], tags=tags,
                            created_at_ms=created, attributes=attrs)
                reason = check_item(item, limits)
                if reason is not None:
                    raise RowError(reason)
                yield item
            except RowError as exc:
                yield BadRow(number, str(exc), clip(line))


@dataclass(frozen=True, slots=True)
class CatalogRead:
    """The items of a catalog file in file order, and the rows that were skipped."""

    path: Path
    fmt: str
    items: tuple[Item, ...]
    bad_rows: tuple[BadRow, ...]
    bad_count: int
    duplicates: int = 0     # rows whose item id an earlier row had (every row is kept: the last one wins)

    def summary(self) -> str:
        return skipped_summary(len(self.items), "items", self.path, self.fmt, self.bad_count, self.bad_rows)


@dataclass
class ItemStream:
    """Items of a catalog file in file order, read lazily; bad rows tallied while iterating (each ``iter``
    reads the file again and resets the tally)."""

    path: Path
    fmt: str
    parser: Parser
    strict: bool = False
    max_examples: int = MAX_EXAMPLES
    limits: ItemLimits = ItemLimits()
    count: int = 0
    bad_count: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)

    def __iter__(self) -> Iterator[Item]:
        self.count, self.bad_count, self.bad_rows = 0, 0, []
        tally = BadRowTally(self.path, self.strict, self.max_examples, examples=self.bad_rows)
        for row in self.parser(self.path, self.limits):
            if isinstance(row, Item):
                self.count += 1
                yield row
                continue
            tally.add(row)
            self.bad_count = tally.count
        tally.check_some_usable(self.count, f"a usable {self.fmt} item", "check --format and --map",
                                "holds no items (only a header or blank lines); point to a catalog")


def iter_items(path: str | Path, fmt: str, mapping: CatalogMapping | None = None, strict: bool = False,
               max_examples: int = MAX_EXAMPLES, limits: ItemLimits | None = None) -> ItemStream:
    """Items of ``path`` in file order with constant memory; arguments are checked at once."""
    name = fmt.strip().lower()
    if name not in CATALOG_FORMATS:
        raise InputError(f"unknown catalog format {fmt!r}; use one of {', '.join(CATALOG_FORMATS)}")
    if name == "movielens" and mapping is not None:
        raise InputError("format movielens has a fixed layout and takes no --map; use csv or jsonl with --map")
    file = Path(path)
    if file.is_dir() and name == "movielens":
        file = file / "u.item"
    if not file.exists():
        raise InputError(f"catalog {file} not found (looked in {file.resolve().parent}); check the path")
    if not file.is_file():
        raise InputError(f"catalog {file} is not a file; point to the file itself")
    if file.stat().st_size == 0:
        raise InputError(f"catalog {file} is empty; point to a catalog with data")
    use = mapping or _DEFAULT
    parser = _movielens if name == "movielens" else _csv(use) if name == "csv" else _jsonl(use)
    return ItemStream(file, name, parser, strict, max_examples, limits or ItemLimits())


def read_items(path: str | Path, fmt: str, mapping: CatalogMapping | None = None, strict: bool = False,
               max_examples: int = MAX_EXAMPLES, limits: ItemLimits | None = None) -> CatalogRead:
    """Read a whole catalog file (items in file order; a repeated id is kept and counted in ``duplicates``)."""
    stream = iter_items(path, fmt, mapping, strict, max_examples, limits)
    seen: set[str] = set()
    items, dups = [], 0
    for item in stream:
        dups += item.item_id in seen
        seen.add(item.item_id)
        items.append(item)
    return CatalogRead(stream.path, stream.fmt, tuple(items), tuple(stream.bad_rows), stream.bad_count, dups)
