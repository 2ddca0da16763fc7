"""The prequential harness (leak-freedom, targets, exclusion, syncs, report) and the policy adapters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from streamrec.models.base.encoder import UserEncoder
from streamrec.models.errors import ConfigError, InputError
from streamrec.models.evaluation import EvalConfig, EvalReport, Policy, Request, TargetPolicy, plot_curves, prequential
from streamrec.models.evaluation.policies import (
    BaseModelPolicy,
    FullSystemPolicy,
    OnlineBaseModelPolicy,
    PopularityPolicy,
    RiverMFPolicy,
    StaticBaseModelPolicy,
)
from streamrec.models.events import Event, EventType
from streamrec.models.online.river_mf import RiverMFConfig

# ------------------------------------------------------------------------------------------ fixtures


def ratings_log(n: int = 400, users: int = 25, items: int = 40, seed: int = 0) -> list[Event]:
    """A MovieLens-like log: each user rates an item at most once; equal timestamps happen."""
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int]] = set()
    out: list[Event] = []
    t = 1_000_000
    while len(out) < n:
        u, i = int(rng.integers(users)), int(rng.integers(items))
        if (u, i) in seen:
            continue
        seen.add((u, i))
        t += int(rng.integers(0, 3)) * 1000
        stars = float(rng.integers(1, 6))
        out.append(Event(f"e{len(out)}", f"u{u}", f"i{i}", EventType.RATING, t, value=stars))
    return out


def shop_log(n: int = 300, seed: int = 1) -> list[Event]:
    rng = np.random.default_rng(seed)
    types = [EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE]
    return [Event(f"e{k}", f"u{rng.integers(10)}", f"i{rng.integers(12)}",
                  types[int(rng.choice(4, p=[0.4, 0.4, 0.15, 0.05]))], 5_000 + 10 * k) for k in range(n)]


def index(event_id: str) -> int:
    return int(event_id[1:])


class Spy:
    """Records every call; recommends nothing useful. Event ids encode the log position."""

    def __init__(self, name: str = "spy") -> None:
        self.name = name
        self.learned: list[int] = []
        self.recommended: list[tuple[str, int, int, frozenset[str]]] = []  # user, now, #learned, exclude
        self.syncs: list[list[int]] = []

    def recommend(self, user_id: str, k: int, now_ms: int, exclude: AbstractSet[str]) -> list[str]:
        self.recommended.append((user_id, now_ms, len(self.learned), frozenset(exclude)))
        return []

    def learn(self, event: Event) -> None:
        self.learned.append(index(event.event_id))

    def on_sync(self, events: Sequence[Event]) -> None:
        self.syncs.append([index(e.event_id) for e in events])


class BatchSpy(Spy):
    """The same spy through the batched entry points."""

    def recommend_many(self, requests: Sequence[Request], k: int) -> list[list[str]]:
        return [self.recommend(r.user_id, k, r.now_ms, r.exclude) for r in requests]

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            self.learn(e)


# ------------------------------------------------------------------------------------------ harness


@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("spy_type", [Spy, BatchSpy])
def test_no_policy_learns_an_event_before_it_is_scored(batch_size: int, spy_type: type[Spy]) -> None:
    log = ratings_log()
    cfg = EvalConfig.movielens(any_rating=False, warmup_fraction=0.2, batch_size=batch_size,
                               sync_every_events=50, sync_every_ms=40_000)
    spy = spy_type()
    report = prequential(log, [spy], cfg)
    targets = [k for k, e in enumerate(log) if k >= report.warmup and e.value is not None and e.value >= 4]
    assert len(spy.recommended) == len(targets) == report.evaluated > 0
    for target, (user, now_ms, n_learned, _) in zip(targets, spy.recommended, strict=True):
        assert (user, now_ms) == (log[target].user_id, log[target].timestamp_ms)
        learned = spy.learned[:n_learned]
        assert target not in learned                      # the scored event itself: not yet
        assert all(k < target for k in learned)           # nor anything after it
        if batch_size == 1:
            assert learned == list(range(target))         # and everything before it, in order
        else:
            assert target - n_learned < batch_size
    assert spy.learned == list(range(len(log)))           # every event learned once, in order
    # each sync sees exactly a prefix of the log, which ends before the next scored event
    assert spy.syncs and spy.syncs[0] == list(range(report.warmup))
    for prefix in spy.syncs:
        assert prefix == list(range(len(prefix)))
        later = [t for t in targets if t >= len(prefix)]
        assert not later or len(prefix) <= later[0]
    assert len(spy.syncs) > 3


def test_syncs_follow_event_count_and_event_time() -> None:
    log = [Event(f"e{k}", "u", f"i{k}", EventType.CLICK, k * 1000) for k in range(100)]
    by_count, by_time = Spy("a"), Spy("b")
    prequential(log, [by_count], EvalConfig.ecommerce(warmup_fraction=0.1, sync_every_events=30))
    prequential(log, [by_time], EvalConfig.ecommerce(warmup_fraction=0.1, sync_every_ms=25_000))
    assert [len(s) for s in by_count.syncs] == [10, 40, 70]
    assert [len(s) for s in by_time.syncs] == [10, 35, 60, 85]
    no_warm_sync = Spy()
    prequential(log, [no_warm_sync], EvalConfig.ecommerce(warmup_fraction=0.1, sync_after_warmup=False))
    assert no_warm_sync.syncs == []


def test_target_policies() -> None:
    log = ratings_log(200)
    liked = sum(1 for e in log[40:] if e.value is not None and e.value >= 4)
    assert prequential(log, [Spy()], EvalConfig.movielens(warmup_fraction=0.2)).evaluated == liked
    assert prequential(log, [Spy()], EvalConfig.movielens(True, warmup_fraction=0.2)).evaluated == 160
    shop = shop_log()
    not_views = sum(1 for e in shop[30:] if e.event_type != EventType.VIEW)
    assert prequential(shop, [Spy()], EvalConfig.ecommerce(warmup_fraction=0.1)).evaluated == not_views
    cfg = EvalConfig.ecommerce(include_views=True, warmup_fraction=0.1)
    assert prequential(shop, [Spy()], cfg).evaluated == 270
    assert not TargetPolicy().is_target(Event("x", "u", "i", EventType.OTHER, 0))


def test_exclusion_policies() -> None:
    shop = shop_log()
    for exclude in ("seen", "purchased", "none"):
        spy = Spy()
        report = prequential(shop, [spy], EvalConfig.ecommerce(warmup_fraction=0.1, exclude=exclude))
        targets = [e for e in shop[30:] if e.event_type != EventType.VIEW]
        unreachable = 0
        for e, (_, _, n_learned, excluded) in zip(targets, spy.recommended, strict=True):
            past = [p for p in shop[:n_learned] if p.user_id == e.user_id]
            if exclude == "seen":
                expected = {p.item_id for p in past}
            elif exclude == "purchased":
                expected = {p.item_id for p in past if p.event_type == EventType.PURCHASE}
            else:
                expected = set()
            assert excluded == expected
            unreachable += e.item_id in expected
        assert report.unreachable == unreachable
    assert EvalConfig.ecommerce().exclude == "none" and EvalConfig.movielens().exclude == "seen"


def test_rejects_unsorted_events_and_duplicate_names() -> None:
    log = ratings_log(20)
    with pytest.raises(InputError, match="event-time order"):
        prequential(list(reversed(log)), [Spy()])
    with pytest.raises(ConfigError):
        prequential(log, [Spy("x"), Spy("x")])
    with pytest.raises(ConfigError):
        EvalConfig(warmup_fraction=1.0)
    with pytest.raises(ConfigError):
        EvalConfig(exclude="all")  # type: ignore[arg-type]


def test_inputs_are_not_mutated_and_runs_are_deterministic() -> None:
    log = ratings_log(300)
    snapshot = list(log)

    def run() -> EvalReport:
        policies: list[Policy] = [PopularityPolicy(half_life_ms=20_000),
                                  RiverMFPolicy(RiverMFConfig(n_factors=4, seed=2))]
        return prequential(log, policies, EvalConfig.movielens(warmup_fraction=0.3, window=20))

    a, b = run(), run()
    assert log == snapshot
    assert a.configs == b.configs and a.curves == b.curves


def test_report_schema_json_and_plot(tmp_path: Any) -> None:
    log = ratings_log(300)
    calls: list[tuple[int, int]] = []
    cfg = EvalConfig.movielens(warmup_fraction=0.2, window=25, progress_every=50)
    report = prequential(log, [PopularityPolicy(), RiverMFPolicy(RiverMFConfig(n_factors=4))], cfg,
                         progress=lambda done, total: calls.append((done, total)))
    raw = json.loads(report.to_json())
    assert raw["schema"] == "streamrec-eval/1"
    assert set(raw) == {"schema", "dataset", "events", "warmup", "evaluated", "unreachable", "k", "recall_k",
                        "catalog_size", "configs", "curves", "timings", "settings", "cold", "kinds"}
    assert set(raw["configs"]) == {"popularity", "river_mf"}
    for metrics in raw["configs"].values():
        assert list(metrics) == sorted(["hr@10", "ndcg@10", "mrr@10", "recall@20", "coverage", "novelty"])
        assert all(v >= 0.0 for v in metrics.values())
    curve = raw["curves"]["popularity"]
    assert sum(p["evaluated"] for p in curve) == report.evaluated
    assert {"window", "evaluated", "end_evaluated", "end_ts_ms", "hr@10"} <= set(curve[0])
    assert raw["dataset"] == "movielens" and raw["events"] == 300
    assert raw["catalog_size"] == len({e.item_id for e in log})
    assert EvalReport.from_json(report.to_json()) == report
    assert report.metric("hr@10").keys() == {"popularity", "river_mf"}
    assert calls[-1] == (300, 300) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    png = tmp_path / "hr.png"
    plot_curves(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ policies


def click(k: int, user: str, item: str, t: int, kind: EventType = EventType.CLICK) -> Event:
    return Event(f"e{k}", user, item, kind, t)


def test_popularity_decays_with_half_life() -> None:
    events = [click(0, "u", "old", 0), click(1, "u", "old", 0), click(2, "u", "old", 0),
              click(3, "u", "new", 10_000)]
    decayed, plain = PopularityPolicy(half_life_ms=1_000), PopularityPolicy(half_life_ms=None)
    for e in events:
        decayed.learn(e)
        plain.learn(e)
    assert decayed.recommend("x", 2, 10_000, set()) == ["new", "old"]
    assert plain.recommend("x", 2, 10_000, set()) == ["old", "new"]
    # far-apart timestamps re-anchor instead of overflowing
    far = PopularityPolicy(half_life_ms=1.0)
    for k in range(5):
        far.learn(click(k, "u", f"i{k}", k * 400))
    assert far.recommend("x", 3, 2000, set()) == ["i4", "i3", "i2"]
    weighted = PopularityPolicy(half_life_ms=None, weighting="strength")
    weighted.learn(click(0, "u", "a", 0, EventType.PURCHASE))
    weighted.learn(click(1, "u", "b", 0))
    weighted.learn(click(2, "u", "b", 0))
    assert weighted.recommend("x", 2, 0, set()) == ["a", "b"]


@dataclass(frozen=True)
class FakeResult:
    item_ids: list[str]
    embeddings: np.ndarray
    encoder: UserEncoder | None


class FakeTrainer:
    """One-hot embeddings for the items seen so far; records what it was trained on."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, events: Sequence[Event]) -> FakeResult:
        self.calls.append([e.event_id for e in events])
        items = sorted({e.item_id for e in events})
        return FakeResult(items, np.eye(len(items), dtype=np.float32), None)


def test_base_model_static_vs_online_user_vectors() -> None:
    static, online = StaticBaseModelPolicy(trainer=FakeTrainer()), OnlineBaseModelPolicy(trainer=FakeTrainer())
    history = [click(0, "u", "a", 0), click(1, "u", "b", 1), click(2, "v", "c", 2)]
    for p in (static, online):
        assert p.recommend("u", 3, 0, set()) == []        # no model before the first sync
        for e in history:
            p.learn(e)
        p.on_sync(history)
        p.learn(click(3, "u", "c", 3, EventType.PURCHASE))  # after the sync
    # online: the purchase of c (weight 4) now dominates u's vector; static: u's vector is frozen at a, b
    assert online.recommend("u", 1, 4, set()) == ["c"]
    assert static.recommend("u", 3, 4, set())[-1] == "c" and static.user_vector("u", 4) is not None
    assert static.recommend("u", 3, 4, {"a"})[0] == "b"
    assert static.recommend("nobody", 3, 4, set()) == []   # no cold-start fallback in the base model
    # items unknown to the model are never recommended, and the user's unknown items are skipped
    online.learn(click(4, "w", "brand-new", 5))
    assert online.recommend("w", 3, 5, set()) == []
    assert isinstance(online, BaseModelPolicy) and online.name == "base_online"


def test_base_model_policies_train_only_on_the_past_in_the_harness() -> None:
    log = ratings_log(300)
    trainer = FakeTrainer()
    cfg = EvalConfig.movielens(warmup_fraction=0.2, sync_every_events=60)
    report = prequential(log, [StaticBaseModelPolicy(trainer=trainer),
                               OnlineBaseModelPolicy(trainer=FakeTrainer())], cfg)
    assert [len(c) for c in trainer.calls] == [60, 120, 180, 240]
    assert all(c == [f"e{k}" for k in range(len(c))] for c in trainer.calls)
    assert report.configs["base_online"]["hr@10"] >= 0.0


class FakeEngine:
    """Stands in for models.engine.recommender.Recommender with the documented interface."""

    def __init__(self) -> None:
        self.applied: list[tuple[list[str], int, list[int]]] = []
        self.swapped: list[Any] = []
        self.counts: dict[str, int] = {}

    def apply(self, events: list[Event], partition: int, offsets: list[int]) -> list[str]:
        self.applied.append(([e.event_id for e in events], partition, list(offsets)))
        for e in events:
            self.counts[e.item_id] = self.counts.get(e.item_id, 0) + 1
        return sorted({e.user_id for e in events})

    def recommend(self, users: list[str], now_ms: int | None) -> list[Any]:
        self.now_ms = now_ms
        ranked = sorted(self.counts, key=lambda i: -self.counts[i])  # ties: first seen first
        items = [SimpleNamespace(item_id=i, score=float(self.counts[i]), source="trending") for i in ranked]
        return [SimpleNamespace(user_id=u, items=items, model_version=None, index_version=None) for u in users]

    def swap_model(self, artifact: Any) -> None:
        self.swapped.append(artifact)


def test_full_system_adapter_drives_the_engine_interface() -> None:
    engine, trainer = FakeEngine(), FakeTrainer()
    policy = FullSystemPolicy(trainer=trainer, engine_factory=lambda: engine)
    log = shop_log(120)
    cfg = EvalConfig.ecommerce(warmup_fraction=0.25, sync_every_events=40, batch_size=5, exclude="seen")
    report = prequential(log, [policy, PopularityPolicy(half_life_ms=None)], cfg)
    offsets = [o for _, _, offs in engine.applied for o in offs]
    assert offsets == list(range(120)) and {p for _, p, _ in engine.applied} == {0}
    assert [a.manifest.item_count for a in engine.swapped] == [len({e.item_id for e in log[:n]})
                                                               for n in (30, 70, 110)]
    assert [len(c) for c in trainer.calls] == [30, 70, 110]
    # the fake engine ranks by all-time counts, like plain popularity: same lists after exclusion
    assert report.configs["full_system"] == report.configs["popularity"]
    lists = policy.recommend_many([Request("u1", 0, frozenset({"i1"})), Request("u2", 1, frozenset())], 3)
    assert len(lists) == 2 and "i1" not in lists[0] and len(lists[1]) == 3
    assert engine.now_ms is None          # event time does not pace the trending cache (events do, as in a worker)
