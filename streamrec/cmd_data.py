"""``streamrec tail`` (subscribe and print), ``streamrec replay`` and ``streamrec generate``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from streamrec.models.errors import InputError
from streamrec.stream.serde import to_json
from streamrec.stream.settings import Settings
from streamrec.stream.tail import Message, read

if TYPE_CHECKING:
    from streamrec.producers.replay import NotSent

console = Console(stderr=True)


def check_count(option: str, value: int | None, minimum: int = 1) -> None:
    """A count given on the command line: an :class:`InputError` (one line, exit 2) below ``minimum``."""
    if value is not None and value < minimum:
        raise InputError(f"{option} must be at least {minimum}, got {value}")


def check_positive(option: str, value: float | None, hint: str = "", allow_zero: bool = False) -> None:
    """A finite number above zero (or at least zero with ``allow_zero``) given on the command line."""
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        what = "0 or more" if allow_zero else "a positive number"
        raise InputError(f"{option} must be {what}, got {value}{hint}")


def _render(msg: Message, fmt: str) -> str:
    rec = msg.record
    if msg.value is None:
        headers = {k: v.decode(errors="replace") for k, v in rec.headers}
        body = {"key": (rec.key or b"").decode(errors="replace"), "headers": headers,
                "value_hex": (rec.value or b"").hex(), "error": msg.error}
    else:
        body = msg.value
    if fmt == "json":
        return to_json({"partition": rec.partition, "offset": rec.offset, "value": body})
    if "items" in body and isinstance(body["items"], list):  # a recommendation: item(reason), compact
        items = " ".join(f"{i['item_id']}({i.get('reason') or i['source']})" for i in body["items"][:10])
        return f"[p{rec.partition}@{rec.offset}] user={body['user_id']} model={body.get('model_version')} {items}"
    return f"[p{rec.partition}@{rec.offset}] {body}"


def register(app: typer.Typer) -> None:
    @app.command("tail")
    def tail(ctx: typer.Context,
             topic: str = typer.Argument(..., help="events, recommendations, events.dlq, model-updates, ..."),
             user: str = typer.Option(None, "--user", help="Only messages keyed by this user id."),
             fmt: str = typer.Option("text", "--format", help="text | json (one JSON object per line)."),
             from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest message."),
             max_messages: int = typer.Option(None, "--max-messages", "-n", help="Stop after N messages."),
             timeout: float = typer.Option(None, "--timeout", help="Stop after this many idle seconds."),
             ) -> None:
        """Decode and print messages from a topic (read_committed)."""
        if fmt not in ("text", "json"):
            raise InputError(f"--format must be text or json, not {fmt!r}")
        check_count("--max-messages", max_messages)
        check_positive("--timeout", timeout, allow_zero=True)
        s: Settings = ctx.obj
        for msg in read(s, topic, from_beginning=from_beginning, user=user, max_messages=max_messages,
                        timeout_s=timeout):
            print(_render(msg, fmt), flush=True)


def register_replay(app: typer.Typer) -> None:
    from streamrec.producers.readers import FORMATS, PRESETS, parse_mapping, read_events, stream_events
    from streamrec.producers.replay import Pacing, RecordRefused, describe_topic, replay

    @app.command("replay")
    def replay_cmd(
        ctx: typer.Context,
        path: str = typer.Argument(..., help="The event log to replay."),
        fmt: str = typer.Option(..., "--format", "-f", help=f"{' | '.join(FORMATS)}, or a preset name."),
        preset: str = typer.Option(None, help=f"Column preset for csv/jsonl: {', '.join(PRESETS)}."),
        mapping: str = typer.Option(None, "--map",
                                    help="Column mapping for csv/jsonl, e.g. 'user=visitorid,item=itemid,"
                                         "timestamp=ts,event_type=event,timestamp_unit=ms'."),
        max_speed: bool = typer.Option(False, "--max", help="As fast as possible (the default)."),
        rate: float = typer.Option(None, "--rate", help="Events per second."),
        speedup: float = typer.Option(None, "--speedup", help="Follow the log's own timeline, X times faster."),
        limit: int = typer.Option(None, "--limit", help="Replay only the first N events (after sorting)."),
        no_sort: bool = typer.Option(False, "--no-sort", help="Stream in file order with constant memory "
                                                              "(for large logs already in time order)."),
        strict: bool = typer.Option(False, "--strict", help="Stop at the first bad row (in the file, or a record "
                                                            "the topic refuses)."),
        topic: str = typer.Option(None, "--topic", help="Target topic (default: the events topic)."),
    ) -> None:
        """Replay an event log into Kafka in event-time order, keyed by user, with pacing and a summary."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if sum((max_speed, rate is not None, speedup is not None)) > 1:
            raise InputError("choose one of --max, --rate, --speedup")
        full_speed = "; omit it to replay as fast as possible"
        check_positive("--rate", rate, full_speed)
        check_positive("--speedup", speedup, full_speed)
        check_count("--limit", limit)
        pacing = (Pacing("rate", rate) if rate is not None else Pacing("speedup", speedup)
                  if speedup is not None else Pacing())
        cmap = parse_mapping(mapping) if mapping else None
        s: Settings = ctx.obj
        target = topic or s.events_topic
        describe_topic(s, target)  # a missing topic is a one-line error before the log is read
        total: int | None
        if no_sort:
            stream = stream_events(path, fmt, cmap, preset, strict)
            events, total, bad = iter(stream), limit, stream
        else:
            with console.status(f"reading {path}..."):
                result = read_events(path, fmt, cmap, preset, strict)
            events, total, bad = iter(result.events), len(result.events), result  # type: ignore[assignment]
            if limit is not None:
                total = min(total, limit)
        if limit is not None:
            import itertools
            events = itertools.islice(events, limit)
        with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=not console.is_terminal) as progress:
            task = progress.add_task("replay", total=total)
            try:
                stats = replay(events, s, pacing, topic=topic, progress=lambda n: progress.advance(task, n),
                               strict=strict)
            except RecordRefused as exc:
                raise InputError(f"{path}, {_where(exc.record, path, fmt)}: {exc.record.reason}; the replay "
                                 f"stopped there, {exc.landed:,} events were sent (drop --strict to skip "
                                 "refused records and report them)") from None
        handed = stats.events + stats.refused_count + stats.failed_count
        bad_total = bad.bad_count + stats.refused_count
        detail = f" ({bad.bad_count} in the file, {stats.refused_count} refused by the topic)" \
            if stats.refused_count else ""
        console.print(f"replayed {stats.events:,} of {handed:,} events to {target} in {stats.seconds:.2f}s "
                      f"({stats.rate:,.0f} events/s); bad rows: {bad_total}{detail}", soft_wrap=True)
        for row in bad.bad_rows[:10]:
            console.print(f"  bad row {row}", soft_wrap=True)
        for rec in stats.refused[:10]:
            console.print(f"  bad row {_where(rec, path, fmt)}: {rec.reason}; not sent", soft_wrap=True)
        if stats.failed_count:
            first = stats.failed[0]
            console.print(f"error: {stats.failed_count:,} events did not reach {target}; the first: "
                          f"{_where(first, path, fmt)}: {first.reason}", soft_wrap=True)
            raise typer.Exit(1)
        if stats.interrupted:
            console.print(f"interrupted: everything up to event {stats.last_event_id} was sent and flushed")
            raise typer.Exit(130)

    @app.command("generate")
    def generate_cmd(
        users: int = typer.Option(1000, help="Number of users."),
        items: int = typer.Option(5000, help="Number of items."),
        events: int = typer.Option(100_000, help="Number of events."),
        seed: int = typer.Option(7, help="Random seed: the same seed writes the same file."),
        out: str = typer.Option(..., "--out", "-o", help="Output path (.jsonl, or .avro for an Avro file)."),
        catalog: str = typer.Option(None, "--catalog", help="Also write a catalog of the items here (JSON lines "
                                                            "for `streamrec catalog load --format jsonl`)."),
    ) -> None:
        """Write a synthetic event log: Zipf popularity, taste clusters, sessions, a funnel, drifting tastes."""
        from streamrec.producers.synthetic import generate, write_log

        for option, value in (("--users", users), ("--items", items), ("--events", events)):
            check_count(option, value)
        check_count("--seed", seed, 0)

        with console.status(f"generating {events:,} events..."):
            log = generate(users=users, items=items, events=events, seed=seed)
            write_log(log, out)
        console.print(f"wrote {events:,} events for {users:,} users and {items:,} items to {out}")
        if catalog:
            from streamrec.producers.synthetic import SyntheticConfig
            from streamrec.producers.synthetic_catalog import synthetic_catalog, write_catalog

            n = write_catalog(synthetic_catalog(SyntheticConfig(users, items, events, seed)), catalog)
            console.print(f"wrote a catalog of {n:,} items to {catalog}")


def register_demo(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        ctx: typer.Context,
        users: int = typer.Option(500, "--users"),
        items: int = typer.Option(3000, "--items"),
        events: int = typer.Option(60_000, "--events"),
        rate: float = typer.Option(3000.0, "--rate", help="Replay rate of the live half (events/s)."),
        epochs: int = typer.Option(4, "--epochs", help="Base-model training epochs."),
        workdir: str = typer.Option("demo-data", "--workdir", help="Where the log, model and logs go."),
        keep_broker: bool = typer.Option(False, "--keep-broker", help="Leave the broker running afterwards."),
    ) -> None:
        """The whole loop on the embedded broker: generate, train, publish, worker, replay, live lists."""
        from streamrec import demo

        for option, value in (("--users", users), ("--items", items), ("--events", events), ("--epochs", epochs)):
            check_count(option, value)
        check_positive("--rate", rate)

        demo.run(ctx.obj, users, items, events, rate, epochs, Path(workdir), keep_broker)


def _where(record: NotSent, path: str, fmt: str) -> str:
    """Where a refused record came from: its line when the event id says it (ids streamrec made from the
    line: ``<file>:<line>`` for CSV and JSON lines, ``ml-<line>`` for MovieLens), else its position."""
    eid = record.event.event_id
    prefix = f"{Path(path).name}:" if fmt not in ("movielens", "otto", "avro") else \
        "ml-" if fmt == "movielens" else None
    if prefix and eid.startswith(prefix) and eid[len(prefix):].isdigit():
        return f"line {int(eid[len(prefix):])}"
    return f"record {record.number} of the replay (event {eid})"
