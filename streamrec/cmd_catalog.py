"""``streamrec catalog load|set|show|remove``: the item catalog on the items topic (README "Catalog").

Every record on the items topic is a whole item, never a patch: the topic is compacted by item id, so a
partial record would replace the full one at the next compaction and the item's title, category and price
would be lost. ``catalog set ITEM --hidden`` therefore reads the item's newest record from the topic (the
whole topic is read, one pass: seconds for a catalog of 100,000 items), changes the fields given, stamps
``updated_at`` (now, and always after the record it replaces, so the newest record is also the last one and
compaction keeps it) and writes the whole record back. Two ``set`` commands on one item at the same moment:
the later write wins whole (no merge). An item with no record yet gets a new record with the fields given.

``catalog load`` stamps ``updated_at`` with the time of the load on the rows that carry none, so a reload
replaces what an earlier ``set`` wrote; rows with their own ``updated_at`` keep it (an older one loses
against a newer record already on the topic, in every worker).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from streamrec.models.catalog.checks import ItemLimits, check_item
from streamrec.models.catalog.item import Item
from streamrec.models.errors import InputError, StreamrecError
from streamrec.stream.settings import Settings

if TYPE_CHECKING:
    from streamrec.producers.catalog import CatalogRead

console = Console(stderr=True)

__all__ = ["current_item", "load_catalog", "produce_items", "register", "remove_item", "set_item"]


@dataclass
class Sent:
    sent: int = 0
    failed: int = 0
    first_error: str = ""
    seconds: float = 0.0


def produce_items(settings: Settings, items: Iterable[Item],
                  progress: Callable[[int], None] | None = None) -> Sent:
    """Write ``items`` to the items topic keyed by item id; waits until every record is acknowledged."""
    from streamrec.stream import clients
    from streamrec.stream.items import encode_item

    started = time.perf_counter()
    out = Sent()
    producer = clients.producer(settings, client_id=f"{settings.client_id}-catalog")
    futures = []
    try:
        for k, item in enumerate(items, start=1):
            futures.append(producer.send(settings.items_topic, key=item.item_id.encode(), value=encode_item(item)))
            if progress is not None and k % 1000 == 0:
                progress(1000)
        producer.flush()
        if progress is not None:
            progress(len(futures) % 1000)
    finally:
        producer.close()
    for f in futures:
        if f.failed():
            out.failed += 1
            out.first_error = out.first_error or str(f.exception)
        else:
            out.sent += 1
    out.seconds = time.perf_counter() - started
    return out


def _topic(settings: Settings) -> None:
    from streamrec.stream.topics import partitions_for

    partitions_for(settings, settings.items_topic)     # a missing topic: one line, before anything is read


def load_catalog(settings: Settings, path: str, fmt: str, mapping: str | None = None, strict: bool = False,
                 now_ms: int | None = None, show_progress: bool = False) -> tuple[Sent, CatalogRead]:
    """Read a catalog file and write its items; returns what was sent and the read (bad rows)."""
    from streamrec.producers.catalog import parse_catalog_mapping, read_items

    _topic(settings)
    cmap = parse_catalog_mapping(mapping) if mapping else None
    with console.status(f"reading {path}..."):
        read = read_items(path, fmt, cmap, strict, limits=ItemLimits(max_id_bytes=settings.max_id_bytes))
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    items = [it if it.updated_at_ms is not None else dataclasses.replace(it, updated_at_ms=stamp)
             for it in read.items]
    if not show_progress:
        return produce_items(settings, items), read
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("catalog"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal) as bar:
        task = bar.add_task("catalog", total=len(items))
        return produce_items(settings, items, lambda n: bar.advance(task, n)), read


def current_item(settings: Settings, item_id: str) -> Item | None:
    """The item's newest record on the items topic (newest ``updated_at``, then the last written), or
    ``None`` when it has none or its last record is a tombstone. Reads the whole topic once."""
    from streamrec.stream.errors import DecodeError
    from streamrec.stream.items import decode_item, read_catalog

    _topic(settings)
    key = item_id.encode()
    best: Item | None = None
    for rec in read_catalog(settings, timeout_s=settings.restore_timeout_s):
        if rec.key != key:
            continue
        if rec.value is None:
            best = None
            continue
        try:
            item = decode_item(rec.value, rec.key, ItemLimits(max_id_bytes=settings.max_id_bytes))
        except DecodeError:
            continue               # a bad record is no item (workers dead-letter it)
        if best is None or (item.updated_at_ms or -1) >= (best.updated_at_ms or -1):
            best = item
    return best


def set_item(settings: Settings, item_id: str, now_ms: int | None = None, **changes: object) -> tuple[Item, bool]:
    """Change some fields of an item: its newest record with ``changes`` applied, written whole. Returns the
    record written and whether the item had one before."""
    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        raise InputError("catalog set changes nothing: give --hidden/--no-hidden, --available/--unavailable, "
                         "--price, --title, --brand or --category")
    old = current_item(settings, item_id)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    stamp = now if old is None or old.updated_at_ms is None else max(now, old.updated_at_ms + 1)
    item = dataclasses.replace(old if old is not None else Item(item_id), **given, updated_at_ms=stamp)  # type: ignore[arg-type]
    reason = check_item(item, ItemLimits(max_id_bytes=settings.max_id_bytes))
    if reason is not None:
        raise InputError(f"item {item_id!r}: {reason}")
    sent = produce_items(settings, [item])
    if sent.failed:
        raise StreamrecError(f"writing item {item_id!r} to {settings.items_topic} failed: {sent.first_error}")
    return item, old is not None


def remove_item(settings: Settings, item_id: str) -> None:
    """A tombstone for the item: compaction deletes it; workers forget it (it is no longer blocked)."""
    from streamrec.stream import clients

    _topic(settings)
    producer = clients.producer(settings, client_id=f"{settings.client_id}-catalog")
    try:
        producer.send(settings.items_topic, key=item_id.encode(), value=None).get(timeout=30)
    finally:
        producer.close()


def _describe(item: Item) -> str:
    flags = ("hidden" if item.hidden else "visible") + ", " + ("available" if item.available else "unavailable")
    bits = [f"{item.item_id}: {item.title!r}" if item.title else item.item_id, flags]
    if item.category:
        bits.append("category " + ">".join(item.category))
    if item.brand:
        bits.append(f"brand {item.brand}")
    if item.price is not None:
        bits.append(f"price {item.price:g}")
    return "; ".join(bits)


def register(app: typer.Typer) -> None:
    catalog_app = typer.Typer(help="The item catalog on the items topic: load, set, show, remove.",
                              no_args_is_help=True)
    app.add_typer(catalog_app, name="catalog")
    topic_opt = typer.Option(None, "--topic", help="The items topic (STREAMREC_ITEMS_TOPIC, default items).")

    def settings_of(ctx: typer.Context, topic: str | None) -> Settings:
        s: Settings = ctx.obj
        return s.replace(items_topic=topic)

    @catalog_app.command("load")
    def load_cmd(
        ctx: typer.Context,
        path: str = typer.Argument(..., help="The catalog file (for movielens: u.item or its folder)."),
        fmt: str = typer.Option(..., "--format", "-f", help="csv | jsonl | movielens"),
        mapping: str = typer.Option(None, "--map", help="Column mapping for csv/jsonl, e.g. 'item=sku,title=name,"
                                                        "category=cat,category_sep=/,available=stock'."),
        strict: bool = typer.Option(False, "--strict", help="Stop at the first bad row."),
        topic: str = topic_opt,
    ) -> None:
        """Write a catalog file's items to the items topic (keyed by item id), with a bad-row report."""
        s = settings_of(ctx, topic)
        sent, read = load_catalog(s, path, fmt, mapping, strict, show_progress=True)
        bad_count, bad_rows, dups = read.bad_count, read.bad_rows, read.duplicates
        console.print(f"loaded {sent.sent:,} items to {s.items_topic} in {sent.seconds:.2f}s; bad rows: "
                      f"{bad_count}" + (f"; {dups} repeated ids (the last row wins)" if dups else ""),
                      soft_wrap=True)
        for row in bad_rows[:10]:
            console.print(f"  bad row {row}", soft_wrap=True)
        if sent.failed:
            console.print(f"error: {sent.failed:,} items did not reach {s.items_topic}; the first: "
                          f"{sent.first_error}", soft_wrap=True)
            raise typer.Exit(1)

    @catalog_app.command("set")
    def set_cmd(
        ctx: typer.Context,
        item_id: str = typer.Argument(..., help="The item id."),
        hidden: bool = typer.Option(None, "--hidden/--no-hidden", help="Never recommend it / recommend it again."),
        available: bool = typer.Option(None, "--available/--unavailable", help="In stock or not."),
        price: float = typer.Option(None, "--price"),
        title: str = typer.Option(None, "--title"),
        brand: str = typer.Option(None, "--brand"),
        category: str = typer.Option(None, "--category", help="A path, most general first: 'shoes>running'."),
        topic: str = topic_opt,
    ) -> None:
        """Change one item: its newest record is read, changed and written whole (workers apply it between two
        batches)."""
        s = settings_of(ctx, topic)
        path = None if category is None else tuple(p.strip() for p in category.split(">") if p.strip())
        item, existed = set_item(s, item_id, hidden=hidden, available=available, price=price, title=title,
                                 brand=brand, category=path)
        console.print(("updated " if existed else "new record (the item had none): ") + _describe(item),
                      soft_wrap=True)

    @catalog_app.command("show")
    def show_cmd(
        ctx: typer.Context,
        item_id: str = typer.Argument(..., help="The item id."),
        fmt: str = typer.Option("text", "--format", help="text | json"),
        topic: str = topic_opt,
    ) -> None:
        """Print the item's newest record on the items topic."""
        from streamrec.stream.items import item_to_record

        if fmt not in ("text", "json"):
            raise InputError(f"--format must be text or json, not {fmt!r}")
        item = current_item(settings_of(ctx, topic), item_id)
        if item is None:
            console.print(f"{item_id}: not in the catalog")
            raise typer.Exit(1)
        print(json.dumps(item_to_record(item), sort_keys=True) if fmt == "json" else _describe(item))

    @catalog_app.command("remove")
    def remove_cmd(ctx: typer.Context, item_id: str = typer.Argument(..., help="The item id."),
                   topic: str = topic_opt) -> None:
        """Delete an item from the catalog (a tombstone; workers forget it)."""
        s = settings_of(ctx, topic)
        remove_item(s, item_id)
        console.print(f"{item_id}: removed from {s.items_topic}")
