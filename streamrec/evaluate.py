"""The work behind ``streamrec evaluate`` (see :mod:`streamrec.cmd_evaluate`): options, the
configurations, one prequential run, the JSON report, the plot and a summary table.

Cadence and training (chosen so the full five-configuration MovieLens-100K run takes about 3-5 minutes on
a 2-core machine; measured 2-3 minutes with other work running): the full system retrains every
``DEFAULT_SYNC_EVERY`` = 10,000 events, nine trainings on MovieLens-100K counting the one after the
10,000-event warm-up, each ``TrainConfig(epochs=DEFAULT_EPOCHS, dim=64)`` on one torch thread (most
trainings reach the 10-epoch cap). Training is the largest cost (3 s on 10,000 events to 10-20 s on
90,000 events); the three base-model configurations share each training. 10,000 events is the cadence the
harness was tuned with; at 20,000 (five trainings) the full system without the reranker scored 0.201
HR@10 instead of 0.205, and capping epochs at 8 instead of 20 changed it by less than 0.001.

Where the time goes (cProfile, MovieLens-100K, first 30,000 events, five configurations): ``full``'s
``Recommender.recommend`` for one user per target event, about 7.5 ms a call (features and rescoring for the
reranker, selection, trending refresh, candidates), is 47 % of the replay; ``full``'s ``apply`` 11 %; base-model
training 15 %; river MF's per-event SGD 9 %; the other policies and the harness the rest. Scoring chunks of
events (``--batch-size``) would batch those calls but changes the figures, a lot on funnel logs (the item
viewed just before is the usual target; in a chunk it is not learned yet). So the run keeps exact
test-then-train and instead (1) trains every sync point's base model ahead, in ``--jobs`` processes beside
the replay (the points are known before it starts), and (2) replays the baselines (popularity, recent, sknn,
river_mf) in a process of their own beside the model-based configurations (on 4 CPUs or more). Both
give the same figures as ``--jobs 0`` (tested, and measured on MovieLens-100K's first 40,000 events:
identical metrics and curves). On a loaded 2-core machine they save nothing (the processes share the
cores: 84.6 s against 75.8 s replay wall time), so the speed-up needs free cores, and the 3x asked for
needs a cheaper one-user ``Recommender.recommend``, which is the engine's.

Profiled again on the generated session log (first 20,000 events, the eight configurations of the
report, ``--jobs 0``): 101 s before, 66 s after two changes: the reranker's river learning replayed with
numpy (``models/online/reranker.py``, same weights) and the engine's trending cache no longer rebuilt at
every request (``FullSystemPolicy`` passes no request time; it had been 0.75 ms of each 2-4 ms request).
Measured with the report's commands, old and new code back to back on the same machine (2026-12-01):
the full 40,000-event session log 112.5 s -> 95.2 s for the whole command (1.18x; the replay's own wall
108.1 -> 91.1 s), the OTTO sample 13.2 -> 13.8 s (training and start-up dominate it). The rest of the cost
is ``full``'s and ``full_blend``'s one-user ``recommend`` (about 2 ms each, 55 % of the replay), river MF's
per-event SGD and V-SKNN's neighbour search: still short of the 3x asked for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrec.models.errors import ConfigError, InputError, StreamrecError
from streamrec.models.evaluation import EvalConfig, EvalReport, plot_curves, prequential
from streamrec.models.evaluation.baselines import RecentPolicy, SknnPolicy
from streamrec.models.evaluation.config import TargetPolicy
from streamrec.models.evaluation.harness import sync_points
from streamrec.models.evaluation.policies import (
    BaseModelPolicy,
    FullSystemPolicy,
    PopularityPolicy,
    RiverMFPolicy,
    TrainedModel,
)
from streamrec.models.evaluation.policy import has_sync
from streamrec.models.evaluation.report import ratio_to_best
from streamrec.models.evaluation.sharding import ShardedEnginePolicy
from streamrec.models.events import Event, EventType

CONFIGS = ("popularity", "recent", "sknn", "river_mf", "static_base", "online_vectors", "full")
#: on request only: ``full`` without the learned reranker (what the reranker adds), with the content source, or
#: with the session-neighbour source (``session_knn``, not in the engine's default sources)
EXTRA_CONFIGS = ("full_blend", "full_content", "full_sknn")
#: dataset name -> log format
DATASETS = {"movielens-100k": "movielens", "otto": "otto", "csv": "csv", "jsonl": "jsonl", "avro": "avro"}
DEFAULT_SYNC_EVERY = 10_000
DEFAULT_EPOCHS = 10
REPO = Path(__file__).resolve().parents[1]
MOVIELENS_100K = REPO.parent / "shared" / "data" / "movielens-100k" / "u.data"
#: the rating files a MovieLens folder may hold, in the order they are looked for
MOVIELENS_FILES = ("u.data", "ratings.dat", "ratings.csv")
#: ``--targets`` names -> the event types they score (OTHER counts as a view, as everywhere)
TARGET_TYPES: dict[str, frozenset[EventType]] = {
    "view": frozenset({EventType.VIEW, EventType.OTHER}), "click": frozenset({EventType.CLICK}),
    "cart": frozenset({EventType.ADD_TO_CART}), "purchase": frozenset({EventType.PURCHASE}),
    "rating": frozenset({EventType.RATING}),
}

DESCRIPTIONS = {
    "popularity": "time-decayed trending counts (half-life 7 days of event time), one list for everyone",
    "recent": "the user's own recent distinct items, most recent first, padded with trending (half-life 1 day)",
    "sknn": "V-SKNN (Ludewig & Jannach 2018): the 100 most similar of the 500 most recent sessions sharing an "
            "item with the user's current session, linear position decay; padded with trending",
    "river_mf": "online biased matrix factorisation, one SGD step per event",
    "static_base": "base model trained once on the warm-up part, never updated; user vectors frozen then",
    "online_vectors": "the same single base model; user vectors re-encoded from recent items per request",
    "full": "the worker's engine: online vectors, co-visitation, trending, ranking and filters, base model "
            "retrained and swapped every sync_every events (plus the learned reranker when available)",
    "full_blend": "full without the learned reranker: the engine's weighted blend of its sources",
    "full_content": "full with the content source (catalog items similar in content to the user's recent items; "
                    "the catalog is fed to the engine before the replay)",
    "full_sknn": "full with the session_knn source (V-SKNN inside the engine: the items of the sessions most "
                 "similar to the user's recent items, learnt from every user's events; opt-in in the engine)",
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
    sync_every: int = DEFAULT_SYNC_EVERY   # events; 0: never after the warm-up
    sync_every_ms: int | None = None       # event time (``--sync-every 1d``); with events, whichever comes first
    mapping: str | None = None             # ``--map`` for csv / jsonl, as ``streamrec replay`` takes it
    targets: tuple[str, ...] | None = None  # ``--targets`` names (None: the log's policy decides)
    batch_size: int = 1                    # events scored against the state before their chunk (1: exact)
    jobs: int | None = None                # training processes beside the replay (None: default_jobs(); 0: inline)
    limit: int | None = None
    epochs: int = DEFAULT_EPOCHS
    dim: int = 64
    window: int = 1000
    seed: int = 0
    reranker: bool = True          # for ``full``, when the engine offers a learned reranker
    # scale-out (models/evaluation/sharding.py): the engine configurations on N simulated workers each
    workers: tuple[int, ...] = ()          # () : one engine, as before
    items: tuple[str, ...] = ("split",)    # item knowledge per worker (split) or shared by all (shared)
    partitions: int = 6                    # of the events topic (users -> partitions -> workers)
    restart_at: float | None = None        # an event index (>= 1) or a fraction of the log (< 1)
    #: catalog records fed to every engine configuration before the replay (``--catalog``): a MovieLens
    #: ``u.item``, or a csv / jsonl catalog in the item schema's fields; None: none (for MovieLens logs the
    #: ``u.item`` beside the ratings, when there is one)
    catalog: Path | None = None

    @classmethod
    def parse(cls, *, dataset: str, path: str | None, configs: str | Sequence[str] = CONFIGS,
              sync_every: int | str = DEFAULT_SYNC_EVERY, targets: str | None = None,
              **rest: Any) -> EvalOptions:
        """Check the command-line values; bad input raises :class:`InputError` (exit code 2)."""
        name = dataset.strip().lower()
        if name not in DATASETS:
            raise InputError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
        if path is None:
            if name != "movielens-100k":
                raise InputError(f"--path is required for dataset {name!r} (the log file to replay)")
            if not MOVIELENS_100K.exists():
                raise InputError(f"MovieLens-100K not found at {MOVIELENS_100K}; pass --path to its folder "
                                 "or its u.data")
            path = str(MOVIELENS_100K)
        log = movielens_file(Path(path)) if DATASETS[name] == "movielens" else Path(path)
        if log.is_dir():
            raise InputError(f"{log} is a folder; point --path at the event log file inside it")
        if not log.is_file():
            raise InputError(f"event log {log} not found; check --path")
        if rest.get("mapping") and rest.get("preset"):
            raise InputError("give --preset or --map, not both")
        names = [c.strip() for c in configs.split(",")] if isinstance(configs, str) else list(configs)
        names = [c for c in names if c]
        unknown = [c for c in names if c not in CONFIGS + EXTRA_CONFIGS]
        if unknown or not names:
            raise InputError(f"unknown configuration(s) {', '.join(unknown) or '(none given)'}; "
                             f"choose from {', '.join(CONFIGS + EXTRA_CONFIGS)}")
        if rest.get("limit") is not None and rest["limit"] < 1:
            raise InputError("--limit must be at least 1")
        if rest.get("jobs") is not None and rest["jobs"] < 0:
            raise InputError("--jobs must be 0 (train in the replay's process) or more")
        if rest.get("batch_size", 1) < 1:
            raise InputError("--batch-size must be at least 1 (1: every event scored against all before it)")
        events_every, ms_every = parse_sync_every(sync_every)
        from streamrec.evaluate_shards import check_shard_options

        rest.update(check_shard_options(**{k: rest.pop(k) for k in ("workers", "items", "partitions", "restart_at")
                                           if k in rest}))
        if not 0.0 < rest.get("warmup_fraction", 0.1) < 1.0:
            raise InputError("--warmup-fraction must lie strictly between 0 and 1 (base models train on it)")
        rest["catalog"] = catalog_file(rest.get("catalog"), log, DATASETS[name])
        return cls(dataset=name, path=log, fmt=DATASETS[name], configs=tuple(dict.fromkeys(names)),
                   sync_every=events_every, sync_every_ms=ms_every, targets=parse_targets(targets), **rest)


def catalog_file(value: str | Path | None, log: Path, fmt: str) -> Path | None:
    """``--catalog``: a file, ``none``, or (not given) the MovieLens ``u.item`` beside a MovieLens log."""
    if value is None:
        beside = log.parent / "u.item"
        return beside if fmt == "movielens" and beside.is_file() else None
    if str(value).strip().lower() == "none":
        return None
    path = Path(value)
    if path.is_dir() and (path / "u.item").is_file():
        path = path / "u.item"
    if not path.is_file():
        raise InputError(f"catalog {path} not found; pass --catalog with a u.item, csv or jsonl file (or none)")
    return path


def read_catalog(path: Path | None) -> tuple[Any, ...]:
    """The catalog's items (format from the name: ``u.item`` is MovieLens, else csv or jsonl by suffix)."""
    if path is None:
        return ()
    from streamrec.producers.catalog import read_items

    fmt = "movielens" if path.name == "u.item" else "csv" if path.suffix.lower() == ".csv" else "jsonl"
    return read_items(path, fmt).items


def movielens_file(path: Path) -> Path:
    """``path`` itself, or the rating file inside a MovieLens folder (u.data, ratings.dat, ratings.csv)."""
    if not path.is_dir():
        return path
    for candidate in MOVIELENS_FILES:
        if (path / candidate).is_file():
            return path / candidate
    raise InputError(f"folder {path} holds none of {', '.join(MOVIELENS_FILES)}; point --path at the "
                     "MovieLens folder or its ratings file")


def parse_sync_every(value: int | str) -> tuple[int, int | None]:
    """``--sync-every``: a number of events (``10000``; 0: never) or event time (``12h``, ``1d``, ``90m``).

    >>> parse_sync_every("10000"), parse_sync_every(0), parse_sync_every("1d")
    ((10000, None), (0, None), (0, 86400000))
    """
    from streamrec.models.errors import ConfigError
    from streamrec.stream.settings import parse_duration

    raw = str(value).strip().lower().replace("_", "")
    if raw.lstrip("-").isdigit():
        events = int(raw)
        if events < 0:
            raise InputError("--sync-every must be 0 (never), a positive number of events, or a duration of "
                             "event time such as 12h or 1d")
        return events, None
    try:
        seconds = parse_duration(raw)
    except ConfigError:
        raise InputError(f"--sync-every {value!r} is neither a number of events nor a duration; use e.g. "
                         "10000, 12h or 1d") from None
    return 0, max(1, int(seconds * 1000))


def parse_targets(value: str | None) -> tuple[str, ...] | None:
    """``--targets``: comma-separated view, click, cart, purchase, rating, or ``all``; None keeps the default.

    >>> parse_targets("cart, purchase"), parse_targets("all")[:2], parse_targets(None)
    (('cart', 'purchase'), ('view', 'click'), None)
    """
    if value is None:
        return None
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if "all" in names:
        return tuple(TARGET_TYPES)
    unknown = [n for n in names if n not in TARGET_TYPES]
    if unknown or not names:
        raise InputError(f"unknown target type(s) {', '.join(unknown) or '(none given)'} in --targets; use "
                         f"any of {', '.join(TARGET_TYPES)}, or all")
    return tuple(dict.fromkeys(names))


_POOL_EVENTS: tuple[Event, ...] = ()
_POOL_CONFIG: Any = None


def _init_pool(events: tuple[Event, ...], config: Any) -> None:
    global _POOL_EVENTS, _POOL_CONFIG
    _POOL_EVENTS, _POOL_CONFIG = events, config


def _train_prefix(n: int) -> tuple[Any, float]:
    """In a training process: the base model on the first ``n`` events of the log (and its seconds)."""
    from streamrec.models.base.training import train

    started = time.perf_counter()
    return train(list(_POOL_EVENTS[:n]), _POOL_CONFIG), time.perf_counter() - started


#: configurations without a base model: cheap enough to replay together in one side process
LIGHT_CONFIGS = ("popularity", "recent", "sknn", "river_mf")
#: the side replay only pays with a core for each process (replay, side replay, training): on 2 cores it
#: slowed the main replay as much as it saved (MovieLens-100K, 40,000 events: 84.6 s against 75.8 s)
SIDE_REPLAY_CPUS = 4


def _replay_side(events: tuple[Event, ...], cfg: EvalConfig, names: list[str]) -> EvalReport:
    policies, _ = build_policies(names, cfg, events, SharedTrainer(None))
    return prequential(events, policies, cfg)


def _start_side_replay(events: Sequence[Event], cfg: EvalConfig, names: list[str]) -> Any:
    """The replay of ``names`` in a process of its own; ``.result()`` is its :class:`EvalReport`."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    future = pool.submit(_replay_side, tuple(events), cfg, names)
    pool.shutdown(wait=False)
    return future


def _merge(main: EvalReport, side: EvalReport, order: Sequence[str]) -> EvalReport:
    """One report from two replays of the same log with the same settings (configurations in ``order``)."""
    if (main.events, main.evaluated, main.unreachable) != (side.events, side.evaluated, side.unreachable):
        raise RuntimeError("the side replay scored other targets than the main one")
    configs, curves = {**main.configs, **side.configs}, {**main.curves, **side.curves}
    timings = {**side.timings, **main.timings}
    timings["total"] = {"wall_s": max(main.timings["total"]["wall_s"], side.timings["total"]["wall_s"])}
    hr = f"hr@{main.k}"
    per_kind = {**main.kinds.get(hr, {}), **side.kinds.get(hr, {})}
    kinds = {**main.kinds, hr: {n: per_kind[n] for n in order if n in per_kind}} if main.kinds else {}
    return dataclasses.replace(main, configs={n: configs[n] for n in order}, kinds=kinds,
                               curves={n: curves[n] for n in order},
                               timings={n: timings[n] for n in [*order, "total"]})


def pool_result(future: Any, what: str) -> Any:
    """``future.result()``, or a one-line :class:`StreamrecError` when its process died (killed, out of memory)."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise StreamrecError(f"the process {what} ended without a result (killed, or out of memory?); rerun, or "
                             "pass --jobs 0 to do everything in one process") from exc


def default_jobs() -> int:
    """Training processes beside the replay: one core is left to the replay, at most 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class SharedTrainer:
    """``models.base.training.train`` with a one-entry cache: the base-model configurations ask for a model on
    the same events at the same sync, and get one training between them.

    :meth:`prefetch` trains the models of every sync point ahead, in ``jobs`` processes beside the replay
    (the points are known before it starts, :func:`models.evaluation.harness.sync_points`); the same
    function on the same prefix with the same seed and one thread gives the same model, so the figures do
    not change, only the replay stops waiting for training."""

    def __init__(self, config: Any, on_train: Callable[[int], None] | None = None) -> None:
        self.config, self.on_train = config, on_train
        self._key: tuple[int, str] | None = None
        self._result: TrainedModel | None = None
        self.history: list[dict[str, Any]] = []
        self._pool: Any = None
        self._ahead: dict[tuple[int, str], Any] = {}
        self.waited_s = 0.0

    def prefetch(self, events: Sequence[Event], points: Sequence[int], jobs: int) -> None:
        """Start training on ``events[:n]`` for each ``n`` of ``points`` in ``jobs`` processes (0: inline)."""
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        points = sorted({n for n in points if n > 0})
        if jobs < 1 or not points:
            return
        self._pool = ProcessPoolExecutor(max_workers=min(jobs, len(points)), mp_context=get_context("spawn"),
                                         initializer=_init_pool, initargs=(tuple(events[: points[-1]]), self.config))
        self._ahead = {(n, events[n - 1].event_id): self._pool.submit(_train_prefix, n) for n in points}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._ahead = {}

    def __call__(self, events: Sequence[Event]) -> TrainedModel:
        from streamrec.models.base.training import train  # lazy: torch

        key = (len(events), events[-1].event_id if events else "")
        if key != self._key or self._result is None:
            future = self._ahead.pop(key, None)
            if self.on_train is not None:
                self.on_train(len(events))
            started = time.perf_counter()
            if future is not None:
                result, seconds = pool_result(future, f"training the base model on {len(events):,} events")
                self.waited_s += time.perf_counter() - started
            else:
                result = train(list(events), self.config)
                seconds = time.perf_counter() - started
            self.history.append({"events": len(events), "seconds": round(seconds, 2),
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
    """MovieLens policy for rating logs, e-commerce policy otherwise (see ``models.evaluation.config``);
    ``--targets`` replaces the scored event types (ratings stay scored from 4 stars under the MovieLens
    policy)."""
    common: dict[str, Any] = {"dataset": opts.dataset, "k": opts.k, "recall_k": max(20, opts.k),
                              "warmup_fraction": opts.warmup_fraction, "window": opts.window,
                              "sync_every_events": opts.sync_every or None, "sync_every_ms": opts.sync_every_ms,
                              "batch_size": opts.batch_size}
    ratings = sum(1 for e in events if e.event_type == EventType.RATING)
    movielens = opts.fmt == "movielens" or ratings * 2 > len(events)
    cfg = EvalConfig.movielens(**common) if movielens else EvalConfig.ecommerce(**common)
    if opts.targets is not None:
        types = frozenset().union(*(TARGET_TYPES[n] for n in opts.targets))
        cfg = dataclasses.replace(cfg, targets=TargetPolicy(types=types, min_rating=4.0 if movielens else None))
    return cfg


def check_targets(cfg: EvalConfig, events: Sequence[Event], warm: int) -> int:
    """The number of target events after the warm-up; none is an :class:`InputError` that names the fix."""
    scored = sum(1 for e in events[warm:] if cfg.targets.is_target(e))
    if scored:
        return scored
    counts = Counter(e.event_type.value for e in events[warm:])
    found = ", ".join(f"{n:,} {t}" for t, n in counts.most_common()) or "no events"
    wanted = ", ".join(cfg.targets.describe()["types"])
    rating = (f" (ratings of at least {cfg.targets.min_rating:g})"
              if cfg.targets.min_rating is not None and EventType.RATING in cfg.targets.types else "")
    raise InputError(f"nothing to score: after the warm-up ({warm:,} events) the log has {found}, and none is a "
                     f"target ({wanted}{rating}); pass --targets with the types to score (e.g. --targets view, "
                     "or --targets all), lower --warmup-fraction, or check that --map / --preset read the "
                     "event_type column")


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
                   reranker: bool = True, opts: EvalOptions | None = None,
                   catalog: Sequence[Any] = ()) -> tuple[list[Any], dict[str, Any]]:
    """The configurations named; with ``opts.workers``, each engine configuration on simulated workers.
    ``catalog`` goes to every single-engine configuration (``full*``) before its first event."""
    policies: list[Any] = []
    engine: dict[str, Any] = {}
    for name in names:
        if name == "popularity":
            policies.append(PopularityPolicy(name=name))
        elif name == "recent":
            policies.append(RecentPolicy(name=name))
        elif name == "sknn":
            policies.append(SknnPolicy(name=name))
        elif name == "river_mf":
            policies.append(RiverMFPolicy(name=name))
        elif name in ("static_base", "online_vectors"):
            policies.append(TrainedOnce(online=name == "online_vectors", trainer=trainer, name=name))
        else:
            config, settings = full_engine(cfg, events, reranker and name in ("full", "full_content", "full_sknn"))
            engine = settings if name == "full" or not engine else engine
            if name == "full_content" and "content" not in config.sources:
                config = dataclasses.replace(config, sources=(*config.sources, "content"))
            if name == "full_sknn" and "session_knn" not in config.sources:
                config = dataclasses.replace(config, sources=(*config.sources, "session_knn"))
            if opts is not None and opts.workers:      # on simulated workers (streamrec/evaluate_shards.py)
                from streamrec.evaluate_shards import sharded_policies

                policies += sharded_policies(name, config, trainer, cfg, opts, len(events), catalog)
                continue
            policies.append(FullSystemPolicy(config, trainer=trainer, name=name, catalog=catalog))
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
    from streamrec.producers.readers import parse_mapping, read_events

    started = time.perf_counter()
    cmap = parse_mapping(opts.mapping) if opts.mapping else None
    read = read_events(opts.path, opts.fmt, cmap, preset=opts.preset)
    events = read.events[: opts.limit] if opts.limit else read.events
    cfg = eval_config(opts, events)
    scored = check_targets(cfg, events, int(len(events) * cfg.warmup_fraction))
    train_config = TrainConfig(epochs=opts.epochs, dim=opts.dim, seed=opts.seed, threads=1)
    trainer = SharedTrainer(train_config, on_train)
    jobs = default_jobs() if opts.jobs is None else opts.jobs
    # the baselines replay in a process of their own beside the model-based configurations (same log, same
    # harness: the same figures), when there are both and processes are allowed
    light = [n for n in opts.configs if n in LIGHT_CONFIGS]
    heavy = [n for n in opts.configs if n not in LIGHT_CONFIGS]
    aside = light if jobs >= 1 and light and heavy and (os.cpu_count() or 1) >= SIDE_REPLAY_CPUS else []
    catalog = read_catalog(opts.catalog)
    policies, engine = build_policies([n for n in opts.configs if n not in aside], cfg, events, trainer,
                                      opts.reranker, opts, catalog)
    if any(has_sync(p) for p in policies):
        points = sync_points(events, cfg)
        if not any(isinstance(p, FullSystemPolicy | ShardedEnginePolicy) for p in policies):
            points = points[:1]          # the base-model configurations train once
        trainer.prefetch(events, points, jobs)
    side = _start_side_replay(events, cfg, aside) if aside else None
    try:
        report = prequential(events, policies, cfg, progress=progress)
        if side is not None:
            report = _merge(report, pool_result(side, "the baselines' replay"), [p.name for p in policies] + aside
                            if opts.workers else opts.configs)
    finally:
        trainer.close()
        if side is not None:
            side.cancel()
    warm = report.warmup
    early_users = {e.user_id for e in events[:warm]}
    later = [e for e in events[warm:] if cfg.targets.is_target(e)]
    unseen = sum(1 for e in later if e.user_id not in early_users)
    for p in policies:
        engine_based = isinstance(p, FullSystemPolicy | ShardedEnginePolicy)
        report.timings[p.name]["models_trained"] = len(trainer.history) if engine_based else getattr(p, "trainings", 0)
    extra = {
        "path": str(opts.path), "format": opts.fmt, "bad_rows": read.bad_count,
        "catalog": None if opts.catalog is None else {"path": str(opts.catalog), "items": len(catalog)},
        "policy": describe_policy(cfg, engine),
        "descriptions": {n: DESCRIPTIONS[n] for n in opts.configs},
        "sync_every": opts.sync_every or None, "sync_every_ms": opts.sync_every_ms,
        "targets_in_log": scored, "mapping": opts.mapping,
        "full_vs_best_baseline": ratio_to_best(report, "full") if "full" in opts.configs else None,
        "train_config": {"epochs": train_config.epochs, "dim": train_config.dim, "threads": 1,
                         "seed": train_config.seed, "holdout_fraction": train_config.holdout_fraction,
                         "validation_fraction": train_config.validation_fraction},
        "base_model_trainings": trainer.history,
        "training_processes": (default_jobs() if opts.jobs is None else opts.jobs),
        "replay_waited_for_training_s": round(trainer.waited_s, 1),
        "full_engine": engine, "reranker": {k: engine[k] for k in reranker_option() if k in engine} or None,
        "targets_of_users_unseen_in_warmup": round(unseen / len(later), 4) if later else 0.0,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    full = next((p for p in policies if isinstance(p, FullSystemPolicy) and p.name == "full"), None)
    if full is not None and full._engine is not None:
        st = full.engine.stats()
        extra["full_engine_stats"] = {k: st[k] for k in (
            "filter_seen_effective", "repurchase_rate", "repurchase_events", "reranker_active", "reranker_pairs",
            "reranker_recent_auc", "blend_recent_auc") if k in st}
    if opts.workers:
        from streamrec.evaluate_shards import scale_out

        extra["scale_out"] = scale_out(policies, opts, report)
    return Evaluation(report, extra)


_PLURALS = {"VIEW": "views", "CLICK": "clicks", "ADD_TO_CART": "carts", "PURCHASE": "purchases",
            "RATING": "ratings", "OTHER": "other events"}


def targets_text(targets: dict[str, Any]) -> str:
    """What is scored, in words, from ``TargetPolicy.describe()``.

    >>> targets_text({"types": ["ADD_TO_CART", "CLICK", "PURCHASE"], "min_rating": None})
    'clicks, carts and purchases are targets, views are learned only'
    >>> targets_text({"types": list(_PLURALS), "min_rating": None})
    'every event is a target (views included)'
    >>> targets_text({"types": ["RATING"], "min_rating": 4.0})
    'ratings of 4+ stars are targets (every rating is learned)'
    """
    types, low = set(targets.get("types") or ()), targets.get("min_rating")
    if types >= set(_PLURALS):
        return "every event is a target (views included)"
    if types == {"RATING"} and low is not None:
        return f"ratings of {low:g}+ stars are targets (every rating is learned)"
    names = [p for t, p in _PLURALS.items() if t in types]
    text = (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]) + " are targets"
    if low is not None and "RATING" in types:
        text += f" (ratings of {low:g}+ stars)"
    return text + (", views are learned only" if "VIEW" not in types else "")


def describe_policy(cfg: EvalConfig, engine: dict[str, Any]) -> dict[str, Any]:
    scored = targets_text(cfg.targets.describe())
    if cfg.exclude == "seen":
        text = (f"MovieLens policy: {scored}; a list may not "
                "contain a movie the user rated before (exclusion 'seen'), so full runs the engine with "
                f"filter_seen=all and seen_cap={engine.get('seen_cap', 'n/a')} (the longest history)")
    else:
        text = (f"e-commerce policy: {scored}; "
                "nothing is excluded (re-clicking an item is normal); full keeps the engine's own policy "
                "(filter_seen=auto: purchased items may come back while the users who bought return to "
                "them, models/serving/repurchase.py; the decision and the rate are in full_engine_stats)")
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
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    line = kinds_line(r.kinds, r.k)
    if line:
        console.print(line)


def kinds_line(kinds: dict[str, Any], k: int) -> str:
    """The scored targets by kind and each configuration's HR@k per kind, in one paragraph ('' if none)."""
    n = kinds.get("targets") or {}
    total = sum(n.values())
    if not total:
        return ""
    per = kinds.get(f"hr@{k}", {})
    cells = "; ".join(f"{name} " + " / ".join("-" if v is None else f"{v:.3f}" for v in
                                               (hr.get(kind) for kind in ("repeat", "known", "new")))
                      for name, hr in per.items())
    return (f"targets: {100 * n.get('repeat', 0) / total:.1f}% repeat the user's own items, "
            f"{100 * n.get('known', 0) / total:.1f}% are items only others touched before, "
            f"{100 * n.get('new', 0) / total:.1f}% are new to the log. HR@{k} on repeat / known / new: {cells}")
