"""``streamrec evaluate``: prequential comparison of seven configurations over one replayed log, in-process.

The log is read with :func:`producers.readers.read_events` (event-time order) and replayed through
:func:`models.evaluation.prequential`, which scores each target event before any configuration learns it.

=================  ===================================================================================
``popularity``     time-decayed trending counts, the same list for everyone
``recent``         the user's own recent distinct items, most recent first, padded with trending
``sknn``           V-SKNN session neighbours (Ludewig & Jannach 2018), see ``models.evaluation.baselines``
``river_mf``       online biased matrix factorisation, one SGD step per event
``static_base``    the torch base model trained once on the warm-up part, never updated; user vectors
                   computed at that point and frozen (users who appear later get no list)
``online_vectors`` the same single base model, with each user's vector re-encoded from their recent
                   items at every request (no periodic retraining)
``full``           the worker's engine (``models.engine.recommender.Recommender``): online vectors, co-visitation,
                   trending, the engine's ranking and filters, a base model retrained and swapped in every
                   ``--sync-every`` events, and the learned reranker when the engine offers one
``full_blend``     on request (``--configs``): ``full`` without the reranker, the engine's weighted blend
``full_content``   on request (``--configs``): ``full`` with the ``content`` source (needs a catalog: the
                   ``u.item`` beside a MovieLens log, or ``--catalog``)
``full_sknn``      on request (``--configs``): ``full`` with the engine's ``session_knn`` source (V-SKNN session
                   neighbours learnt from every user's events; opt-in in the engine)
=================  ===================================================================================

Base models are trained by :func:`models.base.training.train`; the three base-model configurations share one
training per sync point (the same events give the same model), so a sync costs one training, not three.

Before the replay, one pass over the events counts the targets after the warm-up; a run that would score
none stops with an error that says which types the log has and how to score them (``--targets``).
"""

from __future__ import annotations

import typer

from streamrec.evaluate import CONFIGS, DATASETS, DEFAULT_EPOCHS, DEFAULT_SYNC_EVERY, TARGET_TYPES, EvalOptions


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        ctx: typer.Context,
        dataset: str = typer.Option("movielens-100k", "--dataset", "-d", help=" | ".join(DATASETS) + "."),
        path: str = typer.Option(None, "--path", "-p", help="The event log, or a MovieLens folder (default for "
                                                            "movielens-100k: ../shared/data/movielens-100k)."),
        preset: str = typer.Option(None, "--preset", help="Column preset for csv / jsonl logs."),
        mapping: str = typer.Option(None, "--map",
                                    help="Column mapping for csv/jsonl, as replay takes it, e.g. 'user=visitorid,"
                                         "item=itemid,timestamp=ts,event_type=event,timestamp_unit=ms'."),
        targets: str = typer.Option(None, "--targets",
                                    help="Event types scored: comma-separated " + ", ".join(TARGET_TYPES)
                                         + ", or all (default: ratings of 4+ stars for rating logs; clicks, "
                                           "carts and purchases otherwise)."),
        warmup_fraction: float = typer.Option(0.1, "--warmup-fraction", help="Share of the log learned "
                                                                             "before scoring starts."),
        k: int = typer.Option(10, "--k", help="List length scored by HR / NDCG / MRR."),
        json_path: str = typer.Option(None, "--json", help="Write the JSON report here ('-': stdout)."),
        plot_path: str = typer.Option(None, "--plot", help="Write a PNG of HR@k per window here."),
        configs: str = typer.Option(",".join(CONFIGS), "--configs", help="Comma-separated subset of "
                                    + ", ".join(CONFIGS) + "; also full_blend (full without the reranker), "
                                    "full_content (full with the content source) and full_sknn (full with the "
                                    "session_knn source)."),
        sync_every: str = typer.Option(str(DEFAULT_SYNC_EVERY), "--sync-every",
                                       help="Retrain and swap the full system's base model every N events, or "
                                            "every span of event time (12h, 1d); 0: never after the warm-up."),
        limit: int = typer.Option(None, "--limit", help="Only the first N events (after sorting)."),
        epochs: int = typer.Option(DEFAULT_EPOCHS, "--epochs", help="Base-model training: at most this many "
                                                                    "epochs (early stopping may end sooner)."),
        dim: int = typer.Option(64, "--dim", help="Base-model embedding dimension."),
        window: int = typer.Option(1000, "--window", help="Scored events per point of the curves."),
        batch_size: int = typer.Option(1, "--batch-size",
                                       help="Score chunks of N events against the state before the chunk, "
                                            "as a worker's micro-batch does (1: exact test-then-train)."),
        seed: int = typer.Option(0, "--seed"),
        jobs: int = typer.Option(None, "--jobs", help="Processes that train the base models ahead, beside the "
                                                      "replay (default: CPUs - 1, at most 4; 0: in the replay's "
                                                      "process). Same figures either way."),
        reranker: bool = typer.Option(True, "--reranker/--no-reranker",
                                      help="Turn on the engine's learned reranker for full (when it has one)."),
        workers: str = typer.Option(None, "--workers",
                                    help="Run full (and full_blend, full_content, full_sknn) on N simulated "
                                         "workers, users sharded as the producer and the consumer group shard "
                                         "them; a list (1,3,6) runs each."),
        items: str = typer.Option(None, "--items", help="With --workers: item knowledge (co-visitation, trending, "
                                                        "session neighbours) split per worker (today), shared by "
                                                        "all (an item plane), or split,shared (default split)."),
        partitions: int = typer.Option(None, "--partitions",
                                       help="Partitions of the events topic the users are sharded over "
                                            "(default: STREAMREC_EVENTS_PARTITIONS)."),
        restart_at: str = typer.Option(None, "--restart-at",
                                       help="Restart every simulated worker at this event index, or fraction of the "
                                            "log (0.5): item knowledge is lost, users come back from the "
                                            "changelog; each configuration also runs without the restart."),
        catalog: str = typer.Option(None, "--catalog",
                                    help="Catalog records fed to the engine before the replay (u.item, csv or "
                                         "jsonl; 'none': no catalog). Default: the u.item beside a MovieLens log."),
    ) -> None:
        """Replay a log in event-time order and compare configurations side by side (test, then train)."""
        from streamrec.evaluate import print_summary, run_with_progress, write_outputs

        opts = EvalOptions.parse(dataset=dataset, path=path, preset=preset, mapping=mapping, targets=targets,
                                 warmup_fraction=warmup_fraction,
                                 k=k, configs=configs, sync_every=sync_every, limit=limit, epochs=epochs,
                                 dim=dim, window=window, seed=seed, reranker=reranker,
                                 batch_size=batch_size, jobs=jobs, workers=workers, items=items,
                                 partitions=partitions if partitions is not None else ctx.obj.events_partitions,
                                 restart_at=restart_at, catalog=catalog)
        result = run_with_progress(opts)
        write_outputs(result, json_path, plot_path)
        if json_path != "-":
            print_summary(result)
