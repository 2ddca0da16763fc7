"""The exact at-least-once rule of the item plane (docs/item-plane.md): where a worker starts a partition (a
start, an assignment, an aborted batch), its deltas go per source offset for up to STREAMREC_ITEM_EXACT_REDO
offsets, so an owner that applied a first delivery keeps exactly the part of a redo past what it applied, however
the redo is cut: never counted twice, the new part never lost."""

from __future__ import annotations

import random

import pytest
import structlog

from streamrec.consumers.engine import engine_config
from streamrec.consumers.itemcache import DeltaEmitter, plane_settings
from streamrec.consumers.loop import Loop
from streamrec.consumers.testing import MemoryCluster
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.errors import ConfigError
from streamrec.models.events import Event, EventType
from streamrec.models.serving.itemplane import ItemDelta, ItemStats
from streamrec.stream.settings import Settings
from tests.unit.test_itemplane_loop import State
from tests.unit.test_itemplane_loop import owner_state as _state
from tests.unit.test_itemplane_loop import same_state as _close
from tests.unit.test_worker_loop import stream

T0 = 1_790_000_000_000


def _events(n: int = 100) -> list[Event]:
    rnd = random.Random(7)
    return [Event(f"e{k}", f"u{rnd.randrange(8)}", f"i{rnd.randrange(15)}", EventType.CLICK, T0 + 1000 * k)
            for k in range(n)]


def _engine(exact_redo: int = 5_000) -> Recommender:
    eng = Recommender(EngineConfig(sources=("covisit_global", "recent", "trending_global")))
    eng.item_plane.collector.exact_redo = exact_redo
    return eng


def _run(eng: Recommender, events: list[Event], cuts: list[tuple[int, int]]) -> list[ItemDelta]:
    """Apply ``events`` (offset = index, partition 0) in batches ``cuts`` (first, last), as the loop does."""
    for first, last in cuts:
        eng.item_plane.collector.enter(0, first, last)
        eng.apply(events[first:last + 1], partition=0, offsets=list(range(first, last + 1)))
    return eng.item_plane.collector.take()


def _owner(*deliveries: list[ItemDelta]) -> ItemStats:
    stats = ItemStats(max_neighbours=1000)
    for deltas in deliveries:
        for d in deltas:
            stats.apply(d)
    return stats


def _reference(events: list[Event]) -> State:
    return _state(_owner(_run(_engine(), events, [(0, len(events) - 1)])), events[-1].timestamp_ms)


def test_a_longer_redo_neither_double_counts_nor_loses_the_new_part() -> None:
    events, now = _events(), T0 + 99_000
    want = _reference(events)
    first = _run(_engine(), events, [(0, 29), (30, 59)])          # delivered and applied; offsets not committed
    # the redo from the committed offset 0, cut longer (0..99), by a worker whose user state came back as of 0
    # (its changelog was not acknowledged either): it learns 0..59 again
    redo = _run(_engine(), events, [(0, 79), (80, 99)])
    owner = _owner(first, redo)
    assert _close(_state(owner, now), want)
    assert owner.n["overlap"] == 0 and owner.n["redone"] > 0
    # ... and by one whose user state came back as of 59 (changelog acknowledged): its redo learns 60..99 only
    restored = _engine()
    restored.apply(events[:60], partition=0, offsets=list(range(60)))    # the restored users, as of offset 59
    restored.forget_event_ids()
    restored.item_plane.collector.clear()
    assert _close(_state(_owner(first, _run(restored, events, [(0, 99)])), now), want)


def test_a_shorter_redo_then_a_range_past_the_first_delivery() -> None:
    events, now = _events(), T0 + 99_000
    first = _run(_engine(), events, [(0, 59)])
    eng = _engine()
    redo = _run(eng, events, [(0, 29)]) + _run(eng, events, [(30, 99)])     # two commits: 0..29, then 30..99
    assert _close(_state(_owner(first, redo), now), _reference(events))
    assert _close(_state(_owner(first, redo, first, redo), now), _reference(events))   # everything twice


def test_aggregated_deltas_lose_the_new_part_of_a_longer_redo() -> None:
    """What the rule fixes: with deltas aggregated over the redo's range (STREAMREC_ITEM_EXACT_REDO=0) the owner
    skips the whole overlapping delta, so the increments of offsets 60..99 are lost."""
    events, now = _events(), T0 + 99_000
    first = _run(_engine(0), events, [(0, 59)])
    owner = _owner(first, _run(_engine(0), events, [(0, 99)]))
    assert owner.n["overlap"] > 0 and not _close(_state(owner, now), _reference(events))


def test_the_region_ends_at_the_cap_and_at_the_partitions_end_and_starts_again_after_a_drop() -> None:
    events = _events()
    eng = _engine(exact_redo=40)
    deltas = _run(eng, events, [(0, 59)]) + _run(eng, events, [(60, 99)])
    per_offset = {d.source_first for d in deltas if d.source_first == d.source_last and d.source_last < 40}
    assert per_offset and max(d.source_last for d in deltas if d.source_first == d.source_last) <= 39
    assert {(d.source_first, d.source_last) for d in deltas if d.source_first != d.source_last} == {(40, 59),
                                                                                                     (60, 99)}
    eng.item_plane.collector.drop({0})          # given up, owned again: a redo may begin where it restarts
    again = _run(eng, events, [(60, 99)])
    assert all(d.source_first == d.source_last for d in again)
    # the partition's end when the worker started it bounds the region (the emitter asks the loop's lag)
    s = Settings().replace(item_exact_redo=995, max_batch=5)
    eng = _engine()
    DeltaEmitter(s, eng.item_plane, lag=lambda ps: dict.fromkeys(ps, 10))
    deltas = _run(eng, events, [(0, 19), (20, 99)])
    assert max(d.source_last for d in deltas if d.source_first == d.source_last) == 19 + 10 + 5
    assert DeltaEmitter(s.replace(guarantee="exactly-once"), _engine().item_plane).collector.exact_redo == 0
    with pytest.raises(ConfigError, match="ITEM_EXACT_REDO=-1 must not be negative"):
        Settings.from_env({"STREAMREC_ITEM_EXACT_REDO": "-1"})
    assert DeltaEmitter(Settings().replace(max_batch=5000), _engine().item_plane).collector.exact_redo == 10_000


def test_the_loop_commits_before_a_partitions_range_outgrows_the_region() -> None:
    """The bound that makes the rule exact: a previous owner's uncommitted range of a partition never spans more
    than STREAMREC_ITEM_EXACT_REDO offsets, whatever the commit interval, so the region a redo keeps per offset
    always covers what the previous owner may have delivered."""
    s = plane_settings(Settings().replace(poll_ms=1, max_batch=40, commit_interval_ms=10**9, item_plane=True,
                                          reranker=False, drift_detector="none", item_exact_redo=60))
    cluster = MemoryCluster(partitions=1)
    cluster.produce(stream(n=400))
    loop = Loop(s, Recommender(engine_config(s)), cluster.source(), cluster.sink(s.guarantee), cluster.changelog(),
                structlog.get_logger("test"))
    loop.item_deltas = DeltaEmitter(s, loop.engine.item_plane)
    commits = []
    for _ in range(10):
        loop.step()
        commits.append(cluster.committed.get(0))
    done = [0, *[c or 0 for c in commits]]
    spans = [b - a for a, b in zip(done, done[1:], strict=False) if b != a]
    assert spans and max(spans) <= 100 and (commits[-1] or 0) >= 200     # committed every 60 to 100 offsets


def test_nothing_is_collected_outside_enter_after_a_take() -> None:
    events = _events()
    eng = _engine()
    _run(eng, events, [(0, 9)])
    eng.apply(events[10:20], partition=0, offsets=list(range(10, 20)))     # no enter: an engine no loop drives
    assert eng.item_plane.collector.take() == []
