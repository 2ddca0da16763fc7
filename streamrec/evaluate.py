"""The work behind ``streamrec evaluate`` (see :mod:`streamrec.cmd_evaluate`): options, the five
configurations, one prequential run, the JSON report, the plot and a summary table.

Cadence and training (chosen so the full five-configuration MovieLens-100K run takes about 3-5 minutes on
a 2-core machine; measured 2-3 minutes with other work running): the full system retrains every
``DEFAULT_SYNC_EVERY`` = 10,000 events, nine trainings on MovieLens-100K counting the one after the
10,000-event warm-up, each ``TrainConfig(epochs=DEFAULT_EPOCHS, dim=64)`` on one torch thread (most
trainings reach the 10-epoch cap). Training is the largest cost (3 s on 10,000 events to 10-20 s on
90,000 events); the three base-model configurations share each training. 10,000 events is the cadence the
harness was tuned with; at 20,000 (five trainings) the full system without the reranker scored 0.201
HR@10 instead of 0.205, and capping epochs at 8 instead of 20 changed it by less than 0.001.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrec.models.errors import ConfigError, InputError
from streamrec.models.evaluation import EvalConfig, EvalReport, plot_curves, prequential
from streamrec.models.evaluation.policies import (
    BaseModelPolicy,
    FullSystemPolicy,
    PopularityPolicy,
    RiverMFPolicy,
    TrainedModel,
)
from streamrec.models.events import Event, EventType

CONFIGS = ("popularity", "river_mf", "static_base", "online_vectors", "full")
#: on request only: ``full`` without the learned reranker, to measure what the reranker adds
EXTRA_CONFIGS = ("full_blend",)
#: dataset name -> log format
DATASETS = {"movielens-100k": "movielens", "otto": "otto", "csv": "csv", "jsonl": "jsonl", "avro": "avro"}
DEFAULT_SYNC_EVERY = 10_000
DEFAULT_EPOCHS = 10
REPO = Path(__file__).resolve().parents[1]
MOVIELENS_100K = REPO.parent / "shared" / "data" / "movielens-100k" / "u.data"

DESCRIPTIONS = {
    "popularity": "time-decayed trending counts (half-life 7 days of event time), one list for everyone",
    "river_mf": "online biased matrix factorisation, one SGD step per event",
    "static_base": "base model trained once on the warm-up part, never updated; user vectors frozen then",
    "online_vectors": "the same single base model; user vectors re-encoded from recent items per request",
    "full": "the worker's engine: online vectors, co-visitation, trending, ranking and filters, base model "
            "retrained and swapped every sync_every events (plus the learned reranker when available)",
    "full_blend": "full without the learned reranker: the engine's weighted blend of its sources",
}


@dataclass(frozen=True)
class EvalOptions:
    dataset: str
    path: Path
    fmt: str
    preset: str | None = None
    warmup_fraction: float = 0.1
    k: int = 10
    configs: tuple[str, ...] = CONFIGS
    sync_every: int = DEFAULT_SYNC_EVERY
    limit: int | None = None
    epochs: int = DEFAULT_EPOCHS
    dim: int = 64
    window: int = 1000
    seed: int = 0
    reranker: bool = True          # for ``full``, when the engine offers a learned reranker

    @classmethod
    def parse(cls, *, dataset: str, path: str | None, configs: str | Sequence[str] = CONFIGS,
              **rest: Any) -> EvalOptions:
        """Check the command-line values; bad input raises :class:`InputError` (exit code 2)."""
        name = dataset.strip().lower()
        if name not in DATASETS:
            raise InputError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
        if path is None:
            if name != "movielens-100k":
                raise InputError(f"--path is required for dataset {name!r} (the log file to replay)")
            if not MOVIELENS_100K.exists():
                raise InputError(f"MovieLens-100K not found at {MOVIELENS_100K}; pass --path to its u.data")
            path = str(MOVIELENS_100K)
        if not Path(path).is_file():
            raise InputError(f"event log {path} not found; check --path")
        names = [c.strip() for c in configs.split(",")] if isinstance(configs, str) else list(configs)
        names = [c for c in names if c]
        unknown = [c for c in names if c not in CONFIGS + EXTRA_CONFIGS]
        if unknown or not names:
            raise InputError(f"unknown configuration(s) {', '.join(unknown) or '(none given)'}; "
                             f"choose from {', '.join(CONFIGS + EXTRA_CONFIGS)}")
        if rest.get("limit") is not None and rest["limit"] < 1:
            raise InputError("--limit must be at least 1")
        if rest.get("sync_every", DEFAULT_SYNC_EVERY) < 0:
            raise InputError("--sync-every must be 0 (never) or a positive number of events")
        if not 0.0 < rest.get("warmup_fraction", 0.1) < 1.0:
            raise InputError("--warmup-fraction must lie strictly between 0 and 1 (base models train on it)")
        return cls(dataset=name, path=Path(path), fmt=DATASETS[name], configs=tuple(dict.fromkeys(names)),
                   **rest)


class SharedTrainer:
    """``models.base.training.train`` with a one-entry cache: the base-model configurations ask for a model on
    the same events at the same sync, and get one training between them."""

    def __init__(self, config: Any, on_train: Callable[[int], None] | None = None) -> None:
        self.config, self.on_train = config, on_train
        self._key: tuple[int, str] | None = None
        self._result: TrainedModel | None = None
        self.history: list[dict[str, Any]] = []

    def __call__(self, events: Sequence[Event]) -> TrainedModel:
        from streamrec.models.base.training import train  # lazy: torch

        key = (len(events), events[-1].event_id if events else "")
        if key != self._key or self._result is None:
            if self.on_train is not None:
                self.on_train(len(events))
            started = time.perf_counter()
            result = train(list(events), self.config)
            self.history.append({"events": len(events), "seconds": round(time.perf_counter() - started, 2),
                                 "epochs": result.stats.get("epochs"),
                                 "holdout_hr@10": round(float(result.metrics["hr@10"]), 4)})
            self._key, self._result = key, result
        return self._result


class TrainedOnce(BaseModelPolicy):
    """A base-model policy that trains at its first sync only (the harness calls every sync)."""

    def __init__(self, online: bool, trainer: SharedTrainer, name: str) -> None:
        super().__init__(online=online, trainer=trainer, name=name)
        self.trainings = 0

    def on_sync(self, events: Sequence[Event]) -> None:
        if self.trainings == 0:
            super().on_sync(events)
            self.trainings = 1


def eval_config(opts: EvalOptions, events: Sequence[Event]) -> EvalConfig:
    """MovieLens policy for rating logs, e-commerce policy otherwise (see ``models.evaluation.config``)."""
    common: dict[str, Any] = {"dataset": opts.dataset, "k": opts.k, "recall_k": max(20, opts.k),
                              "warmup_fraction": opts.warmup_fraction, "window": opts.window,
                              "sync_every_events": opts.sync_every or None}
    ratings = sum(1 for e in events if e.event_type == EventType.RATING)
    if opts.fmt == "movielens" or ratings * 2 > len(events):
        return EvalConfig.movielens(**common)
    return EvalConfig.ecommerce(**common)


def reranker_option() -> dict[str, Any]:
    """The EngineConfig setting that turns the learned reranker on, if this engine has one."""
    from streamrec.models.engine.recommender import EngineConfig

    for f in dataclasses.fields(EngineConfig):
        if "rerank" not in f.name:
            continue
        if isinstance(f.default, bool):
            return {f.name: True}
        if isinstance(f.default, str) and f.default.lower() in ("", "none", "off"):
            return {f.name: "river"}
    return {}


def full_engine(cfg: EvalConfig, events: Sequence[Event], reranker: bool = True) -> tuple[Any, dict[str, Any]]:
    """The engine configuration of ``full`` and the settings that differ from the engine's defaults.

    Under the ``seen`` exclusion (MovieLens) the engine must filter every seen item and remember all of
    them (``seen_cap`` at least the longest history), or its lists fill with items the harness removes."""
    from streamrec.models.engine.recommender import EngineConfig

    overrides: dict[str, Any] = {"top_n": max(20, cfg.k, cfg.recall_k), "seed": 0}
    if cfg.exclude == "seen":
        longest = max(Counter(e.user_id for e in events).values(), default=1)
        overrides.update(filter_seen="all", seen_cap=max(100, longest))
    rerank = reranker_option() if reranker else {}
    if rerank:
        try:
            return EngineConfig(**overrides, **rerank), {**overrides, **rerank}
        except (ConfigError, TypeError):
            pass
    return EngineConfig(**overrides), overrides


def build_policies(names: Sequence[str], cfg: EvalConfig, events: Sequence[Event], trainer: SharedTrainer,
                   reranker: bool = True) -> tuple[list[Any], dict[str, Any]]:
    policies: list[Any] = []
    engine: dict[str, Any] = {}
    for name in names:
        if name == "popularity":
            policies.append(PopularityPolicy(name=name))
        elif name == "river_mf":
            policies.append(RiverMFPolicy(name=name))
        elif name in ("static_base", "online_vectors"):
            policies.append(TrainedOnce(online=name == "online_vectors", trainer=trainer, name=name))
        else:
            config, settings = full_engine(cfg, events, reranker and name == "full")
            engine = settings if name == "full" or not engine else engine
            policies.append(FullSystemPolicy(config, trainer=trainer, name=name))
    return policies, engine


@dataclass
class Evaluation:
    report: EvalReport
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), **self.extra}


def evaluate(opts: EvalOptions, progress: Callable[[int, int], None] | None = None,
             on_train: Callable[[int], None] | None = None) -> Evaluation:
    """Read the log, replay it through the chosen configurations, return the report and its context."""
    from streamrec.models.base.training import TrainConfig
    from streamrec.producers.readers import read_events

    started = time.perf_counter()
    read = read_events(opts.path, opts.fmt, preset=opts.preset)
    events = read.events[: opts.limit] if opts.limit else read.events
    cfg = eval_config(opts, events)
    train_config = TrainConfig(epochs=opts.epochs, dim=opts.dim, seed=opts.seed, threads=1)
    trainer = SharedTrainer(train_config, on_train)
    policies, engine = build_policies(opts.configs, cfg, events, trainer, opts.reranker)
    report = prequential(events, policies, cfg, progress=progress)
    warm = report.warmup
    early_users = {e.user_id for e in events[:warm]}
    later = [e for e in events[warm:] if cfg.targets.is_target(e)]
    unseen = sum(1 for e in later if e.user_id not in early_users)
    for p in policies:
        report.timings[p.name]["models_trained"] = (
            len(trainer.history) if isinstance(p, FullSystemPolicy) else getattr(p, "trainings", 0))
    extra = {
        "path": str(opts.path), "format": opts.fmt, "bad_rows": read.bad_count,
        "policy": describe_policy(cfg, engine),
        "descriptions": {n: DESCRIPTIONS[n] for n in opts.configs},
        "sync_every": opts.sync_every or None,
        "train_config": {"epochs": train_config.epochs, "dim": train_config.dim, "threads": 1,
                         "seed": train_config.seed, "holdout_fraction": train_config.holdout_fraction,
                         "validation_fraction": train_config.validation_fraction},
        "base_model_trainings": trainer.history,
        "full_engine": engine, "reranker": {k: engine[k] for k in reranker_option() if k in engine} or None,
        "targets_of_users_unseen_in_warmup": round(unseen / len(later), 4) if later else 0.0,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    return Evaluation(report, extra)


def describe_policy(cfg: EvalConfig, engine: dict[str, Any]) -> dict[str, Any]:
    if cfg.exclude == "seen":
        text = ("MovieLens policy: ratings of 4-5 stars are targets (every rating is learned); a list may not "
                "contain a movie the user rated before (exclusion 'seen'), so full runs the engine with "
                f"filter_seen=all and seen_cap={engine.get('seen_cap', 'n/a')} (the longest history)")
    else:
        text = ("e-commerce policy: clicks, carts and purchases are targets, views are learned only; "
                "nothing is excluded (re-clicking an item is normal); full keeps the engine's own filter "
                "(purchased items)")
    return {"name": "movielens" if cfg.exclude == "seen" else "ecommerce", "targets": cfg.targets.describe(),
            "exclude": cfg.exclude, "text": text}


def run_with_progress(opts: EvalOptions) -> Evaluation:
    """:func:`evaluate` with a rich progress bar on stderr (training syncs show in its description)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(f"reading {opts.path.name}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"{opts.dataset}: replaying")

        def on_train(n: int) -> None:
            bar.update(task, description=f"{opts.dataset}: training base model on {n:,} events")

        return evaluate(opts, progress, on_train)


def write_outputs(result: Evaluation, json_path: str | None, plot_path: str | None) -> None:
    text = json.dumps(result.to_dict(), indent=2, sort_keys=True)
    if json_path == "-":
        print(text)
    elif json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text + "\n")
    if plot_path:
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        plot_curves(result.report, plot_path)


def print_summary(result: Evaluation) -> None:
    from rich.console import Console
    from rich.table import Table

    r = result.report
    metrics = [f"hr@{r.k}", f"ndcg@{r.k}", f"mrr@{r.k}", f"recall@{r.recall_k}", "coverage", "novelty"]
    table = Table(title=f"{r.dataset}: {r.evaluated:,} targets scored of {r.events:,} events "
                        f"({result.extra['policy']['name']} policy)")
    for col in ("config", *metrics, "train+sync s"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for name, values in r.configs.items():
        sync = r.timings.get(name, {}).get("sync_s", 0.0)
        table.add_row(name, *(f"{values.get(m, float('nan')):.4f}" for m in metrics), f"{sync:.1f}")
    Console(width=None if sys.stdout.isatty() else 120).print(table)
