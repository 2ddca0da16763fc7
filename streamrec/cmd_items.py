"""``streamrec items``: an item owner (docs/item-plane.md), a member of ``<group>.items`` on item-deltas."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

import typer

from streamrec.stream.settings import Settings


def register(app: typer.Typer) -> None:
    @app.command("items")
    def items_cmd(
        ctx: typer.Context,
        group: str = typer.Option(None, "--group", help="The workers' group (STREAMREC_GROUP); owners join "
                                                        "<group>.items and read <group>.item-deltas."),
        interval_ms: int = typer.Option(None, "--interval-ms", help="Apply, publish and commit this often "
                                                                    "(STREAMREC_ITEM_INTERVAL_MS)."),
        neighbours: int = typer.Option(None, "--neighbours", help="Neighbours published per item "
                                                                  "(STREAMREC_ITEM_NEIGHBOURS)."),
        idle_timeout: float = typer.Option(None, "--idle-timeout", help="Stop after this many idle seconds."),
    ) -> None:
        """Own <group>.item-deltas partitions: keep the exact item statistics, checkpoint them to
        <group>.items.state, publish each changed item's top neighbours and trending score to
        <group>.item-results. SIGTERM: commit, close."""
        import structlog

        from streamrec.consumers.engine import engine_config
        from streamrec.consumers.itemplane import ItemOwner

        s: Settings = ctx.obj.replace(group=group, item_interval_ms=interval_ms, item_neighbours=neighbours)
        cfg = engine_config(s)
        owner_id = s.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        log = structlog.get_logger("streamrec.items")
        owner = ItemOwner(s, log, owner_id, cfg.covisit_half_life_ms, cfg.trending_half_life_ms)

        def stop(signum: int, _frame: Any) -> None:
            log.info("stopping", signal=signal.Signals(signum).name)
            owner.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("item owner starting", topic=s.item_deltas_name(), group=s.item_group())
        owner.run(idle_timeout_s=idle_timeout)
        log.info("item owner closed", **owner.stats())
