"""Prequential (test-then-train) replay of an event log through several policies at once.

Events are replayed in event-time order, in-process and deterministically. For each chunk of events
(one event by default) the harness

1. calls ``on_sync(events[:i])`` on policies that have it, when a sync is due (after the warm-up, then
   every ``sync_every_events`` events or ``sync_every_ms`` of event time): a base model retrained there
   sees exactly the events before the point where it is used;
2. for every target event of the chunk, asks each policy for the user's top list, with the user's
   excluded items, and scores it against the event's item;
3. only then lets every policy learn every event of the chunk, and updates its own seen sets and
   popularity counts (used for exclusion and novelty).

Item cold start: a target whose item had fewer than ``cold_item_events`` earlier events (of anyone, warm-up
included) is scored a second time into a cold-start accumulator per policy (the report's ``cold``).

Target kinds (the report's ``kinds``): each scored target is a ``repeat`` (the item is one of the user's own
earlier items), ``known`` (an item other users touched before, never this user) or ``new`` (no earlier event
of anyone has it), with each policy's HR@k per kind. The shares bound what a log allows: a list built from
the log alone reaches at most the ``repeat`` plus ``known`` share; a ``recent`` list reaches the ``known``
targets only through its trending padding.

So no policy ever learns an event before that event is scored; ``tests/unit/test_evaluation.py`` checks
this with a spy policy.

>>> from streamrec.models.events import Event, EventType
>>> class LastItem:  # recommends the last item anyone interacted with
...     name = "last"
...     last = None
...     def recommend(self, user_id, k, now_ms, exclude):
...         return [self.last] if self.last and self.last not in exclude else []
...     def learn(self, event):
...         self.last = event.item_id
>>> log = [Event(str(t), f"u{t % 3}", "i1" if t < 5 else "i2", EventType.CLICK, t) for t in range(10)]
>>> report = prequential(log, [LastItem()], EvalConfig.ecommerce(warmup_fraction=0.2))
>>> report.evaluated, report.configs["last"]["hr@10"]
(8, 0.875)
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from streamrec.models.errors import ConfigError, InputError
from streamrec.models.evaluation.config import EvalConfig
from streamrec.models.evaluation.metrics import Accumulator
from streamrec.models.evaluation.policy import Policy, Request, has_sync, learn_batch, recommend_batch
from streamrec.models.evaluation.report import EvalReport
from streamrec.models.events import Event, EventType

#: ``progress(done_events, total_events)``
ProgressCallback = Callable[[int, int], None]

_EMPTY: frozenset[str] = frozenset()


class _History:
    """The harness's own view of the past: seen and purchased items per user, popularity counts."""

    def __init__(self, exclude: str) -> None:
        self.exclude = exclude
        self.own: defaultdict[str, set[str]] = defaultdict(set)    # every item of each user, for target kinds
        self.seen = self.own if exclude == "seen" else defaultdict(set)   # "seen" excludes exactly those
        self.purchased: defaultdict[str, set[str]] = defaultdict(set)
        self.counts: defaultdict[str, int] = defaultdict(int)
        self.total = 0

    def update(self, events: Iterable[Event]) -> None:
        for e in events:
            self.counts[e.item_id] += 1
            self.own[e.user_id].add(e.item_id)
            self.total += 1
            if self.exclude == "purchased" and e.event_type == EventType.PURCHASE:
                self.purchased[e.user_id].add(e.item_id)

    def excluded(self, user_id: str) -> AbstractSet[str]:
        if self.exclude == "seen":
            return self.seen.get(user_id, _EMPTY)
        if self.exclude == "purchased":
            return self.purchased.get(user_id, _EMPTY)
        return _EMPTY

    def kind(self, e: Event) -> str:
        """The target's kind (:data:`KINDS`): the user's own earlier item, another user's, or new to the log."""
        if e.item_id in self.own.get(e.user_id, _EMPTY):
            return "repeat"
        return "known" if self.counts.get(e.item_id, 0) else "new"


#: target kinds, see the module docstring
KINDS = ("repeat", "known", "new")


def _kinds_report(k: int, targets: dict[str, int], hits: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {"targets": dict(targets), f"hr@{k}": {
        name: {kind: round(h[kind] / targets[kind], 6) if targets[kind] else None for kind in KINDS}
        for name, h in hits.items()}}


def _check_sorted(events: Sequence[Event]) -> None:
    for a, b in zip(events, events[1:], strict=False):
        if b.timestamp_ms < a.timestamp_ms:
            raise InputError(
                f"events are not in event-time order (event {b.event_id!r} at {b.timestamp_ms} follows "
                f"{a.event_id!r} at {a.timestamp_ms}); read logs with producers.readers.read_events, "
                "which sorts them")


def sync_points(events: Sequence[Event], config: EvalConfig) -> list[int]:
    """Where :func:`prequential` calls ``on_sync``: the lengths of the log prefixes it passes, in order.

    Known before the replay (they depend on event counts and times only), so base models can be
    trained ahead, on exactly these prefixes.

    >>> log = [Event(str(k), "u", "i", EventType.CLICK, k * 1000) for k in range(100)]
    >>> sync_points(log, EvalConfig(warmup_fraction=0.1, sync_every_events=30))
    [10, 40, 70]
    >>> sync_points(log, EvalConfig(warmup_fraction=0.1, sync_every_ms=25_000))
    [10, 35, 60, 85]
    """
    n = len(events)
    warm = int(n * config.warmup_fraction)
    points = [warm] if warm > 0 and config.sync_after_warmup else []
    if warm >= n or (config.sync_every_events is None and config.sync_every_ms is None):
        return points
    last_i, last_ts = warm, events[warm].timestamp_ms
    for i in range(warm, n):
        if (config.sync_every_events is not None and i - last_i >= config.sync_every_events) or (
                config.sync_every_ms is not None and events[i].timestamp_ms - last_ts >= config.sync_every_ms):
            points.append(i)
            last_i, last_ts = i, events[i].timestamp_ms
    return points


def prequential(events: Iterable[Event], policies: Sequence[Policy], config: EvalConfig | None = None,
                progress: ProgressCallback | None = None) -> EvalReport:
    """Replay ``events`` (sorted by event time) through ``policies``; score first, then learn.

    ``events`` is read once into a tuple and never mutated. ``progress(done, total)`` is called every
    ``config.progress_every`` events and at the end.
    """
    cfg = config or EvalConfig()
    log = tuple(events)
    _check_sorted(log)
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ConfigError(f"policy names must be unique, got {names}")
    n = len(log)
    warm = int(n * cfg.warmup_fraction)
    catalog = cfg.catalog_size or len({e.item_id for e in log})
    depth = max(cfg.k, cfg.recall_k)
    accs = {p.name: Accumulator(cfg.k, cfg.recall_k, cfg.window, catalog) for p in policies}
    cold_accs = {p.name: Accumulator(cfg.k, cfg.recall_k, cfg.window, catalog) for p in policies}
    cold_below = cfg.cold_item_events
    timings = {p.name: {"recommend_s": 0.0, "learn_s": 0.0, "sync_s": 0.0, "syncs": 0} for p in policies}
    syncing = [p for p in policies if has_sync(p)]
    history = _History(cfg.exclude)
    kind_targets = dict.fromkeys(KINDS, 0)
    kind_hits = {p.name: dict.fromkeys(KINDS, 0) for p in policies}
    started = time.perf_counter()
    reported = 0

    def report_progress(done: int) -> None:
        nonlocal reported
        if progress is not None and (done - reported >= cfg.progress_every or done == n):
            progress(done, n)
            reported = done

    def learn(chunk: Sequence[Event]) -> None:
        for p in policies:
            t0 = time.perf_counter()
            learn_batch(p, chunk)
            timings[p.name]["learn_s"] += time.perf_counter() - t0
        history.update(chunk)

    def sync(i: int) -> None:
        past = log[:i]
        for p in syncing:
            t0 = time.perf_counter()
            p.on_sync(past)  # type: ignore[attr-defined]
            timings[p.name]["sync_s"] += time.perf_counter() - t0
            timings[p.name]["syncs"] += 1

    # warm-up: learned, never scored
    for start in range(0, warm, cfg.progress_every):
        learn(log[start: min(start + cfg.progress_every, warm)])
        report_progress(min(start + cfg.progress_every, warm))
    due = set(sync_points(log, cfg)) if syncing else set()
    if warm in due and warm > 0:
        sync(warm)
    due.discard(warm)

    def sync_due(i: int) -> bool:
        return i in due

    unreachable = 0
    i = warm
    while i < n:
        if syncing and sync_due(i):
            sync(i)
        j = i + 1
        while j < n and j - i < cfg.batch_size and not (syncing and sync_due(j)):
            j += 1
        chunk = log[i:j]
        targets = [e for e in chunk if cfg.targets.is_target(e)]
        if targets:
            requests = [Request(e.user_id, e.timestamp_ms, history.excluded(e.user_id)) for e in targets]
            unreachable += sum(1 for e, r in zip(targets, requests, strict=True) if e.item_id in r.exclude)
            kinds = [history.kind(e) for e in targets]
            for kind in kinds:
                kind_targets[kind] += 1
            for p in policies:
                t0 = time.perf_counter()
                lists = recommend_batch(p, requests, depth)
                timings[p.name]["recommend_s"] += time.perf_counter() - t0
                acc, cold_acc, hits = accs[p.name], cold_accs[p.name], kind_hits[p.name]
                for e, ranked, kind in zip(targets, lists, kinds, strict=True):
                    acc.add(ranked, e.item_id, history.counts, history.total, e.timestamp_ms)
                    hits[kind] += e.item_id in ranked[:cfg.k]
                    if history.counts.get(e.item_id, 0) < cold_below:
                        cold_acc.add(ranked, e.item_id, history.counts, history.total, e.timestamp_ms)
        learn(chunk)
        i = j
        report_progress(i)

    evaluated = next(iter(accs.values())).n if accs else 0
    all_timings: dict[str, dict[str, float]] = {name: dict(t) for name, t in timings.items()}
    all_timings["total"] = {"wall_s": time.perf_counter() - started}
    return EvalReport(
        dataset=cfg.dataset, events=n, warmup=warm, evaluated=evaluated, unreachable=unreachable,
        k=cfg.k, recall_k=cfg.recall_k, catalog_size=catalog,
        configs={name: acc.result() for name, acc in accs.items()},
        curves={name: acc.curve() for name, acc in accs.items()},
        timings=all_timings, settings=cfg.describe(),
        cold={} if not cold_below else {
            "item_events_below": cold_below, "targets": next(iter(cold_accs.values())).n if cold_accs else 0,
            "configs": {name: acc.result() for name, acc in cold_accs.items()}},
        kinds=_kinds_report(cfg.k, kind_targets, kind_hits),
    )
