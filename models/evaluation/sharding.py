"""Scale-out and restarts in the prequential harness: N simulated workers, each with its own engine.

:class:`ShardedEnginePolicy` is one configuration of the harness (a :class:`models.evaluation.Policy`) that
runs ``workers`` engines (:class:`models.engine.recommender.Recommender`) side by side, as a consumer
group of that many workers would:

* **Users are sharded** by ``shard_of(user_id) -> worker``, a function passed in (this package never
  imports Kafka): ``streamrec.sharding`` builds it from the producer's own partitioner (kafka-python's
  murmur2 of the user-id key, modulo the events topic's partition count) and kafka-python's range assignor
  (the consumer's default) for that many members. Each worker's engine holds only its own users' state and
  only ever applies their events (in the order of the log, as one stream: partition 0, consecutive
  offsets, as the single-engine ``full`` does; so the TTL watermark is per worker rather than per
  partition). Every request goes to the engine of its user's worker.
* **Item knowledge** (co-visitation, trending, session neighbours, and the reranker's item table of
  first-seen times and categories) is ``"split"``: each engine learns it from its own users' events only,
  which is what workers do today; or ``"shared"``: one set of those tables, learned from every event,
  which is what an item plane would give every worker. Shared tables are honest: the harness replays one
  event at a time in the log's order and each event is applied by exactly one engine, so the shared tables
  see every event once, in the same global order as a single worker's, and still only after that event
  was scored (test, then train). The reranker and its feedback stay per worker in both modes (they are
  learned from the worker's own lists), as do user state and the duplicate-id window.
* The base model is the model plane's: every sync trains one model and all engines serve it (one
  prepared index shared by all).
* ``restart_at``: after that many events of the log are learned (the event with that index is the first
  one scored after it), every worker restarts as a restarted worker does today: a fresh engine restores
  each user from the changelog record (``export_user`` / ``restore_user``), the online learners from their
  checkpoint (assumed current), and serves the model in service; co-visitation, trending and session
  neighbours start empty. With ``items="shared"`` the shared tables stay (the item plane's promise: a
  restarted worker reads them back), so only user state and the online layer go through the round trip.

With ``workers=1`` the policy does exactly what :class:`models.evaluation.policies.FullSystemPolicy` does
(the same engine calls with the same arguments, so the same figures: tested).

The policy also keeps a trace of every scored target (event index, worker, rank of the target in the list
it returned), from which :func:`trace_metrics` and :func:`restart_curve` give the figures before and after
a restart and the windowed hit rate around it.

>>> from streamrec.models.events import Event, EventType
>>> from streamrec.models.evaluation import EvalConfig, prequential
>>> log = [Event(f"e{t}", f"u{t % 4}", f"i{t % 7}", EventType.CLICK, 1_000 * t) for t in range(200)]
>>> def sharded(items, restart_at=None):
...     name = f"full-{items}" + ("+restart" if restart_at else "")
...     return ShardedEnginePolicy(name, None, trainer=None, shard_of=lambda u: int(u[1:]) % 2, workers=2,
...                                items=items, restart_at=restart_at)
>>> policies = [sharded("split"), sharded("shared"), sharded("split", restart_at=100)]
>>> report = prequential(log, policies, EvalConfig.ecommerce(warmup_fraction=0.1))
>>> [p.events_per_worker for p in policies[:2]]
[[100, 100], [100, 100]]
>>> policies[2].restarts[0]["item_tables_before"]["covisit_items"] > 0, policies[2].restarts[0]["item_tables_after"]
(True, {'covisit_items': 0, 'trending_items': 0, 'session_knn_sessions': 0})
>>> round(trace_metrics(policies[0].trace, 10)["hr@10"], 4) == round(report.configs["full-split"]["hr@10"], 4)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streamrec.models.errors import ConfigError
from streamrec.models.evaluation.policies import FullSystemPolicy, Trainer, artifact_from
from streamrec.models.evaluation.policy import Request
from streamrec.models.events import Event

__all__ = ["ITEM_MODES", "ItemTables", "ShardedEnginePolicy", "item_table_sizes", "restart_curve", "restart_engine",
           "share_items", "summarise", "trace_metrics", "variant_name", "variants"]

#: ``items``: each worker learns item knowledge from its own users (today), or all share one set (item plane)
ITEM_MODES = ("split", "shared")

ShardOf = Callable[[str], int]


@dataclass
class ItemTables:
    """The item-level tables of one engine: what a shared item plane would hold for every worker."""

    covisit: Any = None
    trending: Any = None
    session_knn: Any = None
    online_items: Any = None

    @classmethod
    def of(cls, engine: Any) -> ItemTables:
        from streamrec.models.serving.session_knn import SessionKnnSource
        from streamrec.models.serving.sources import CovisitSource, TrendingSource

        tables = cls(online_items=None if engine.online is None else engine.online.items)
        for source in engine.sources:
            if isinstance(source, CovisitSource):
                tables.covisit = source.table
            elif isinstance(source, TrendingSource):
                tables.trending = source.table
            elif isinstance(source, SessionKnnSource):
                tables.session_knn = source.table
        return tables


def share_items(engine: Any, tables: ItemTables) -> None:
    """Make ``engine`` read and learn ``tables`` instead of its own item-level tables (same sources)."""
    from streamrec.models.serving.session_knn import SessionKnnSource
    from streamrec.models.serving.sources import CovisitSource, TrendingSource

    for source in engine.sources:
        if isinstance(source, CovisitSource):
            source.table = engine.covisit = tables.covisit
        elif isinstance(source, TrendingSource):
            source.table = engine.trending = tables.trending      # cold start and exploration read it too
        elif isinstance(source, SessionKnnSource):
            source.table = tables.session_knn
    if engine.online is not None and tables.online_items is not None:
        engine.online.items = tables.online_items


def item_table_sizes(engines: Sequence[Any]) -> dict[str, int]:
    """Entries of the item-level tables the engines hold (a shared table counted once)."""
    seen: set[int] = set()
    out = {"covisit_items": 0, "trending_items": 0, "session_knn_sessions": 0}
    for engine in engines:
        t = ItemTables.of(engine)
        for key, table in (("covisit_items", t.covisit), ("trending_items", t.trending),
                           ("session_knn_sessions", t.session_knn)):
            if table is not None and id(table) not in seen:
                seen.add(id(table))
                out[key] += len(table)
    return out


def restart_engine(old: Any, factory: Callable[[], Any], tables: ItemTables | None = None) -> Any:
    """A restarted worker's engine: fresh (empty item tables), every user restored from their changelog
    record, the online learners from their checkpoint, the model in service swapped in; with ``tables``
    (the shared item plane), linked to those instead of empty ones."""
    new = factory()
    if tables is not None:
        share_items(new, tables)
    for state in list(old.store.states()):
        record = old.export_user(state.user_id)
        if record is not None:
            new.restore_user(record, old.store.partition_of(state.user_id) or 0)
    if old.online is not None and new.online is not None:
        parts = [p for p in old.online.checkpoint() if tables is None or p[0] != "items"]  # shared: kept as is
        new.online.restore(parts)
    if old.model is not None:
        new.swap(old.model)
    return new


class _Worker(FullSystemPolicy):
    """One simulated worker: the full system's engine, applying its own users' events (partition 0)."""

    def restart(self, tables: ItemTables | None) -> None:
        self._engine = restart_engine(self.engine, self._factory, tables)
        if self.catalog:                  # a restarted worker reads the catalog again before it serves
            self._engine.update_catalog(self.catalog)


class ShardedEnginePolicy:
    """``workers`` engines behind one policy name (see the module docstring).

    ``engine_config`` is the ``EngineConfig`` of every engine (``None``: the defaults); ``trainer`` trains
    the base model at each sync (``None``: no model, the engines serve their other sources); ``shard_of``
    maps a user to a worker in ``range(workers)``; ``is_target`` says which learned events the harness
    scored (for the trace; default: every event that follows a scored request in its chunk); ``catalog``
    (catalog records) goes to every worker's engine, as :class:`FullSystemPolicy` takes it.
    """

    def __init__(self, name: str, engine_config: Any | None, trainer: Trainer | None, shard_of: ShardOf,
                 workers: int, items: str = "split", restart_at: int | None = None,
                 is_target: Callable[[Event], bool] | None = None, catalog: Sequence[Any] | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if items not in ITEM_MODES:
            raise ConfigError(f"items must be one of {', '.join(ITEM_MODES)}, not {items!r}")
        if restart_at is not None and restart_at < 1:
            raise ConfigError(f"restart_at must be a positive event index, got {restart_at}")
        self.name, self.items, self.restart_at = name, items, restart_at
        self.n_workers = workers
        self._trainer = trainer
        self._shard_of = shard_of
        self._shards: dict[str, int] = {}                           # user -> worker, cached
        self._is_target = is_target
        noop: Trainer = _no_trainer
        self.workers = [_Worker(engine_config, trainer=trainer or noop, name=f"{name}#{k}", catalog=catalog)
                        for k in range(workers)]                    # every worker reads the whole catalog
        self.tables: ItemTables | None = None
        if items == "shared":
            self.tables = ItemTables.of(self.workers[0].engine)
            for w in self.workers[1:]:
                share_items(w.engine, self.tables)
        self.learned = 0                                            # events of the log learned so far
        self.events_per_worker = [0] * workers
        self.syncs = 0
        self.restarts: list[dict[str, Any]] = []
        #: (event index, worker, 0-based rank of the target in the returned list or -1) per scored target
        self.trace: list[tuple[int, int, int]] = []
        self._pending: list[tuple[int, list[str]]] | None = None     # (worker, list) of the last requests

    @property
    def engines(self) -> list[Any]:
        return [w.engine for w in self.workers]

    def shard(self, user_id: str) -> int:
        s = self._shards.get(user_id)
        if s is None:
            s = self._shards[user_id] = int(self._shard_of(user_id))
            if not 0 <= s < self.n_workers:
                raise ConfigError(f"shard_of({user_id!r}) is {s}; it must lie in [0, {self.n_workers})")
        return s

    # --- the policy -------------------------------------------------------------------------------
    def learn(self, event: Event) -> None:
        self.learn_many([event])

    def learn_many(self, events: Sequence[Event]) -> None:
        if not events:
            return
        self._record(events)
        cut = self._restart_cut(len(events))
        if cut is None:
            self._apply(events)
            return
        self._apply(events[:cut])
        self._restart()
        self._apply(events[cut:])

    def on_sync(self, events: Sequence[Event]) -> None:
        """One training for all workers (the model plane's), one prepared index swapped into every engine."""
        if self._trainer is None:
            return
        result = self._trainer(events)
        self.syncs += 1
        artifact = artifact_from(result, version=f"eval-{self.syncs:04d}-{len(events)}")
        prepared = self.workers[0].engine.prepare_model(artifact)
        for w in self.workers:
            w.syncs += 1
            w.engine.swap(prepared)

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: Any) -> list[str]:
        return self.recommend_many([Request(user_id, now_ms, exclude)], k)[0]

    def recommend_many(self, requests: Sequence[Request], k: int) -> list[list[str]]:
        by_worker: dict[int, list[int]] = {}
        for n, r in enumerate(requests):
            by_worker.setdefault(self.shard(r.user_id), []).append(n)
        out: list[list[str]] = [[] for _ in requests]
        for s, idx in by_worker.items():
            for n, items in zip(idx, self.workers[s].recommend_many([requests[n] for n in idx], k), strict=True):
                out[n] = items
        self._pending = [(self.shard(r.user_id), lst) for r, lst in zip(requests, out, strict=True)]
        return out

    # --- inside -----------------------------------------------------------------------------------
    def _apply(self, events: Sequence[Event]) -> None:
        """Runs of consecutive events of one worker, in the log's order (shared tables see that order)."""
        start = 0
        while start < len(events):
            s = self.shard(events[start].user_id)
            end = start + 1
            while end < len(events) and self.shard(events[end].user_id) == s:
                end += 1
            self.workers[s].learn_many(events[start:end])
            self.events_per_worker[s] += end - start
            self.learned += end - start
            start = end

    def _restart_cut(self, n: int) -> int | None:
        """Where in the next ``n`` events the restart falls (``None``: not in them, or done already)."""
        if self.restart_at is None or self.restarts or not self.learned < self.restart_at <= self.learned + n:
            return None
        return self.restart_at - self.learned

    def _restart(self) -> None:
        before = item_table_sizes(self.engines)
        users = sum(len(e.store) for e in self.engines)
        for w in self.workers:
            w.restart(self.tables)
        self.restarts.append({"at_event": self.learned, "users_restored": sum(len(e.store) for e in self.engines),
                              "users_before": users, "item_tables_before": before,
                              "item_tables_after": item_table_sizes(self.engines)})

    def _record(self, events: Sequence[Event]) -> None:
        """Pair the lists of the last requests with the chunk's targets (the harness's own order)."""
        pending, self._pending = self._pending, None
        if not pending:
            return
        base = self.learned
        targets = [(base + n, e) for n, e in enumerate(events)
                   if self._is_target is None or self._is_target(e)][: len(pending)]
        if len(targets) != len(pending):
            raise ConfigError(f"{self.name}: {len(pending)} lists for {len(targets)} target events")
        for (index, e), (worker, items) in zip(targets, pending, strict=True):
            self.trace.append((index, worker, items.index(e.item_id) if e.item_id in items else -1))

    def describe(self) -> dict[str, Any]:
        """Workers, item mode, how the log's events and users fell on the workers, the restarts."""
        users = [0] * self.n_workers
        for s in self._shards.values():
            users[s] += 1
        return {"workers": self.n_workers, "items": self.items, "events_per_worker": list(self.events_per_worker),
                "users_per_worker": users, "restart_at": self.restart_at, "restarts": list(self.restarts),
                "item_tables_end": item_table_sizes(self.engines), "syncs": self.syncs}


def _no_trainer(events: Sequence[Event]) -> Any:
    raise ConfigError("this sharded policy has no trainer; it cannot sync a base model")


def trace_metrics(trace: Sequence[tuple[int, int, int]], k: int, start: int = 0,
                  end: int | None = None) -> dict[str, Any]:
    """HR@k and NDCG@k of the traced targets with ``start <= event index < end``, and how many there are."""
    ranks = [r for i, _, r in trace if i >= start and (end is None or i < end)]
    n = len(ranks)
    hits = [r for r in ranks if 0 <= r < k]
    return {"evaluated": n, f"hr@{k}": len(hits) / n if n else 0.0,
            f"ndcg@{k}": sum(1.0 / math.log2(r + 2) for r in hits) / n if n else 0.0}


def restart_curve(trace: Sequence[tuple[int, int, int]], at: int, k: int, window: int,
                  before: int | None = None, after: int | None = None) -> list[dict[str, Any]]:
    """HR@k and NDCG@k per window of ``window`` scored targets around event index ``at``: ``before`` windows
    that end at it and ``after`` windows that start there (window ``0`` is the first after it; ``None``: to
    the start or the end of the log), each with the event indices it spans. Another policy's trace over the
    same log gives the same windows.

    >>> trace = [(i, 0, 0 if i % 2 else -1) for i in range(10)]
    >>> [(p["window"], p["first_event"], p["hr@10"]) for p in restart_curve(trace, 5, 10, 2, after=2)]
    [(-3, 0, 0.0), (-2, 1, 0.5), (-1, 3, 0.5), (0, 5, 0.5), (1, 7, 0.5)]
    """
    ranks = sorted(trace)
    first_after = next((n for n, (i, _, _) in enumerate(ranks) if i >= at), len(ranks))
    if before is None:
        before = -(-first_after // window)
    if after is None:
        after = -(-(len(ranks) - first_after) // window)
    points = []
    for w in range(-before, after):
        lo, hi = first_after + w * window, first_after + (w + 1) * window
        part = ranks[max(lo, 0): min(hi, len(ranks))]
        if not part:
            continue
        hits = [r for _, _, r in part if 0 <= r < k]
        points.append({"window": w, "evaluated": len(part), "first_event": part[0][0], "last_event": part[-1][0],
                       f"hr@{k}": len(hits) / len(part),
                       f"ndcg@{k}": sum(1.0 / math.log2(r + 2) for r in hits) / len(part)})
    return points


def variant_name(base: str, workers: int, items: str, restart: bool = False) -> str:
    """The configuration name of ``base`` on ``workers`` simulated workers.

    >>> variant_name("full", 1, "split"), variant_name("full", 3, "shared", restart=True)
    ('full@1w', 'full@3w-shared+restart')
    """
    return f"{base}@{workers}w" + (f"-{items}" if workers > 1 else "") + ("+restart" if restart else "")


def variants(base: str, workers: Sequence[int], items: Sequence[str],
             restart: bool = False) -> list[tuple[str, int, str, int | None]]:
    """``(name, workers, items, restart?)`` of every simulated configuration of ``base``; one worker has no
    split to share, so it runs once; with ``restart`` each one also runs restarted (its twin without).

    >>> [v[0] for v in variants("full", [1, 3], ["split", "shared"], restart=True)]
    ['full@1w', 'full@1w+restart', 'full@3w-split', 'full@3w-split+restart', 'full@3w-shared', 'full@3w-shared+restart']
    """
    out = []
    for n in workers:
        for mode in (items if n > 1 else items[:1]):
            for r in ((False, True) if restart else (False,)):
                out.append((variant_name(base, n, mode, r), n, mode, 1 if r else None))
    return out


def summarise(policies: Sequence[Any], k: int, window: int) -> dict[str, Any] | None:
    """The scale-out and restart figures of the sharded policies of a run (``None``: there are none).

    ``configs``: per policy its workers, item mode, the split of events and users, HR@k and NDCG@k, and
    HR@k relative to the one-worker run of the same base configuration. ``restarts``: per restarted policy,
    HR@k / NDCG@k before and after the restart, those of its twin (the same configuration, not restarted)
    over the same targets, and both curves in windows of ``window`` scored targets around the restart.
    """
    sharded = [p for p in policies if isinstance(p, ShardedEnginePolicy)]
    if not sharded:
        return None
    by_name = {p.name: p for p in sharded}
    configs: dict[str, Any] = {}
    for p in sharded:
        base = p.name.split("@", 1)[0]
        one = by_name.get(variant_name(base, 1, "split", p.restart_at is not None))
        m = trace_metrics(p.trace, k)
        ref = trace_metrics(one.trace, k)[f"hr@{k}"] if one is not None else None
        configs[p.name] = {**p.describe(), **m,
                           f"hr@{k}_vs_1_worker": round(m[f"hr@{k}"] / ref, 4) if ref else None}
    restarts: dict[str, Any] = {}
    for p in sharded:
        if not p.restarts:
            continue
        at = p.restarts[0]["at_event"]
        twin = by_name.get(p.name.removesuffix("+restart"))
        entry: dict[str, Any] = {"at_event": at, "window": window, **p.restarts[0],
                                 "before": trace_metrics(p.trace, k, end=at), "after": trace_metrics(p.trace, k, at),
                                 "curve": restart_curve(p.trace, at, k, window)}
        if twin is not None:
            entry.update(twin=twin.name, twin_after=trace_metrics(twin.trace, k, at),
                         twin_curve=restart_curve(twin.trace, at, k, window))
            dips = [(a[f"hr@{k}"] / b[f"hr@{k}"]) if b[f"hr@{k}"] else None
                    for a, b in zip(entry["curve"], entry["twin_curve"], strict=True) if a["window"] >= 0]
            entry["first_window_vs_twin"] = round(dips[0], 4) if dips and dips[0] is not None else None
            entry["after_vs_twin"] = (round(entry["after"][f"hr@{k}"] / entry["twin_after"][f"hr@{k}"], 4)
                                      if entry["twin_after"][f"hr@{k}"] else None)
        restarts[p.name] = entry
    return {"k": k, "configs": configs, "restarts": restarts}
