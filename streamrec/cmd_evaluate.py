"""``streamrec evaluate``: prequential comparison of five configurations over one replayed log, in-process.

The log is read with :func:`producers.readers.read_events` (event-time order) and replayed through
:func:`models.evaluation.prequential`, which scores each target event before any configuration learns it.

=================  ===================================================================================
``popularity``     time-decayed trending counts, the same list for everyone
``river_mf``       online biased matrix factorisation, one SGD step per event
``static_base``    the torch base model trained once on the warm-up part, never updated; user vectors
                   computed at that point and frozen (users who appear later get no list)
``online_vectors`` the same single base model, with each user's vector re-encoded from their recent
                   items at every request (no periodic retraining)
``full``           the worker's engine (``models.engine.recommender.Recommender``): online vectors, co-visitation,
                   trending, the engine's ranking and filters, a base model retrained and swapped in every
                   ``--sync-every`` events, and the learned reranker when the engine offers one
``full_blend``     on request (``--configs``): ``full`` without the reranker, the engine's weighted blend
=================  ===================================================================================

Base models are trained by :func:`models.base.training.train`; the three base-model configurations share one
training per sync point (the same events give the same model), so a sync costs one training, not three.
"""

from __future__ import annotations

import typer

from streamrec.evaluate import CONFIGS, DATASETS, DEFAULT_EPOCHS, DEFAULT_SYNC_EVERY, EvalOptions


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        dataset: str = typer.Option("movielens-100k", "--dataset", "-d", help=" | ".join(DATASETS) + "."),
        path: str = typer.Option(None, "--path", "-p", help="The event log (default for movielens-100k: "
                                                            "../shared/data/movielens-100k/u.data)."),
        preset: str = typer.Option(None, "--preset", help="Column preset for csv / jsonl logs."),
        warmup_fraction: float = typer.Option(0.1, "--warmup-fraction", help="Share of the log learned "
                                                                             "before scoring starts."),
        k: int = typer.Option(10, "--k", help="List length scored by HR / NDCG / MRR."),
        json_path: str = typer.Option(None, "--json", help="Write the JSON report here ('-': stdout)."),
        plot_path: str = typer.Option(None, "--plot", help="Write a PNG of HR@k per window here."),
        configs: str = typer.Option(",".join(CONFIGS), "--configs", help="Comma-separated subset of "
                                    + ", ".join(CONFIGS) + "; also full_blend (full without the reranker)."),
        sync_every: int = typer.Option(DEFAULT_SYNC_EVERY, "--sync-every",
                                       help="Retrain and swap the full system's base model every N events "
                                            "(0: never after the warm-up)."),
        limit: int = typer.Option(None, "--limit", help="Only the first N events (after sorting)."),
        epochs: int = typer.Option(DEFAULT_EPOCHS, "--epochs", help="Base-model training: at most this many "
                                                                    "epochs (early stopping may end sooner)."),
        dim: int = typer.Option(64, "--dim", help="Base-model embedding dimension."),
        window: int = typer.Option(1000, "--window", help="Scored events per point of the curves."),
        seed: int = typer.Option(0, "--seed"),
        reranker: bool = typer.Option(True, "--reranker/--no-reranker",
                                      help="Turn on the engine's learned reranker for full (when it has one)."),
    ) -> None:
        """Replay a log in event-time order and compare configurations side by side (test, then train)."""
        from streamrec.evaluate import print_summary, run_with_progress, write_outputs

        opts = EvalOptions.parse(dataset=dataset, path=path, preset=preset, warmup_fraction=warmup_fraction,
                                 k=k, configs=configs, sync_every=sync_every, limit=limit, epochs=epochs,
                                 dim=dim, window=window, seed=seed, reranker=reranker)
        result = run_with_progress(opts)
        write_outputs(result, json_path, plot_path)
        if json_path != "-":
            print_summary(result)
