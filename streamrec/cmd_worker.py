"""``streamrec worker``: a member of the worker group on the events topic."""

from __future__ import annotations

import typer

from streamrec.stream.settings import Settings


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker_cmd(
        ctx: typer.Context,
        group: str = typer.Option(None, "--group", help="Consumer group (STREAMREC_GROUP)."),
        guarantee: str = typer.Option(None, "--guarantee",
                                      help="at-least-once | exactly-once (STREAMREC_GUARANTEE)."),
        model: str = typer.Option(None, "--model", help="A base-model artifact directory to start with "
                                                        "(STREAMREC_MODEL_PATH); newer ones arrive on model-updates."),
        worker_id: str = typer.Option(None, "--worker-id", help="Stable id of this worker slot (STREAMREC_WORKER_ID)"
                                                                "; exactly-once fences a crashed predecessor by it."),
        metrics_port: int = typer.Option(None, "--metrics-port", help="Serve /healthz, /readyz, /metrics here "
                                                                      "(STREAMREC_METRICS_PORT; 0 = off)."),
        top_n: int = typer.Option(None, "--top-n", help="List length (STREAMREC_TOP_N)."),
        batch_target_ms: float = typer.Option(None, "--batch-target-ms",
                                              help="A batch's processing-time target in ms; the next poll "
                                                   "asks for that long's worth of events at the measured "
                                                   "cost, at most STREAMREC_MAX_BATCH (STREAMREC_BATCH_TARGET_MS; "
                                                   "0: the count bound only)."),
        max_events: int = typer.Option(None, "--max-events", help="Stop after N events (tests, benchmarks)."),
        idle_timeout: float = typer.Option(None, "--idle-timeout", help="Stop after this many idle seconds."),
        no_model_sync: bool = typer.Option(False, "--no-model-sync", help="Do not follow model-updates."),
        reranker: bool = typer.Option(None, "--reranker/--no-reranker",
                                      help="Learned river reranker instead of the static blend (STREAMREC_RERANKER)."),
        catalog: bool = typer.Option(None, "--catalog/--no-catalog",
                                     help="Follow the items topic: hidden / unavailable items are never listed "
                                          "(STREAMREC_CATALOG)."),
        item_plane: bool = typer.Option(None, "--item-plane/--no-item-plane",
                                        help="Co-visitation and trending learnt from every worker through Kafka "
                                             "(each worker also owns item partitions unless "
                                             "STREAMREC_ITEM_OWNER=0, then run `streamrec items`; "
                                             "STREAMREC_ITEM_PLANE; docs/item-plane.md)."),
        item_owner: bool = typer.Option(None, "--item-owner/--no-item-owner",
                                        help="With the item plane: this worker also owns item partitions "
                                             "(STREAMREC_ITEM_OWNER)."),
        item_owner_process: bool = typer.Option(None, "--item-owner-process/--item-owner-thread",
                                                help="That owner in a child process (default) or a thread "
                                                     "(STREAMREC_ITEM_OWNER_PROCESS)."),
        item_exact_redo: int = typer.Option(None, "--item-exact-redo",
                                            help="At-least-once: offsets per partition whose item deltas go "
                                                 "per source offset after a start, so a redo counts once; 0: "
                                                 "aggregated (STREAMREC_ITEM_EXACT_REDO)."),
        filter_seen: str = typer.Option(None, "--filter-seen",
                                        help="auto | purchased | all | none: what a user touched that may come "
                                             "back; auto learns from the stream whether purchased items do "
                                             "(STREAMREC_FILTER_SEEN)."),
        rule_max_per_category: int = typer.Option(None, "--rule-max-per-category",
                                                  help="At most N items of one category per list; 0: no cap "
                                                       "(STREAMREC_RULE_MAX_PER_CATEGORY)."),
        rule_max_per_brand: int = typer.Option(None, "--rule-max-per-brand",
                                               help="At most N items of one brand per list; 0: no cap "
                                                    "(STREAMREC_RULE_MAX_PER_BRAND)."),
        rule_exclude_categories: str = typer.Option(None, "--rule-exclude-categories",
                                                    help="Comma-separated categories never listed "
                                                         "(STREAMREC_RULE_EXCLUDE_CATEGORIES)."),
        rule_min_price: float = typer.Option(None, "--rule-min-price",
                                             help="Items priced below are never listed (STREAMREC_RULE_MIN_PRICE)."),
        rule_max_price: float = typer.Option(None, "--rule-max-price",
                                             help="Items priced above are never listed; 0: no maximum "
                                                  "(STREAMREC_RULE_MAX_PRICE)."),
    ) -> None:
        """Consume events, update state, emit a fresh list per touched user. SIGTERM: finish, commit, close."""
        import signal
        import sys

        # a signal during start-up (restores, model load): nothing processed yet, so exit cleanly
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sys.exit(0))
        from streamrec.consumers.worker import Worker

        s: Settings = ctx.obj.replace(group=group, guarantee=guarantee, model_path=model, worker_id=worker_id,
                                      metrics_port=metrics_port, top_n=top_n, reranker=reranker,
                                      batch_target_ms=batch_target_ms, catalog=catalog, item_plane=item_plane,
                                      item_owner=item_owner, item_owner_process=item_owner_process,
                                      item_exact_redo=item_exact_redo, filter_seen=filter_seen,
                                      rule_max_per_category=rule_max_per_category,
                                      rule_max_per_brand=rule_max_per_brand,
                                      rule_exclude_categories=rule_exclude_categories,
                                      rule_min_price=rule_min_price, rule_max_price=rule_max_price)
        worker = Worker(s, model_sync=not no_model_sync)
        worker.install_signal_handlers()
        worker.run(max_events=max_events, idle_timeout_s=idle_timeout)
