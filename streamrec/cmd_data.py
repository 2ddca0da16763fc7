"""``streamrec tail`` (subscribe and print), ``streamrec replay`` and ``streamrec generate``."""

from __future__ import annotations

import typer
from rich.console import Console

from stream.serde import to_json
from stream.settings import Settings
from stream.tail import Message, read

console = Console(stderr=True)


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
    if "items" in body and isinstance(body["items"], list):  # a recommendation: compact one-liner
        items = " ".join(f"{i['item_id']}({i['source']})" for i in body["items"][:10])
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
            raise typer.BadParameter("--format must be text or json")
        s: Settings = ctx.obj
        for msg in read(s, topic, from_beginning=from_beginning, user=user, max_messages=max_messages,
                        timeout_s=timeout):
            print(_render(msg, fmt), flush=True)
