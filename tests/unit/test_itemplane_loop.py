"""The item plane in the worker's loop, on the in-memory cluster (consumers/testing.py): deltas leave with the
commit, stamped with the committed ranges; a crash and a resume put the same increments on item-deltas as an
uninterrupted run, and an owner that reads them (twice: a redone delivery) ends in the same state."""

from __future__ import annotations

import numpy as np
import structlog

from streamrec.consumers.engine import engine_config
from streamrec.consumers.itemcache import DeltaEmitter, plane_settings
from streamrec.consumers.loop import Loop
from streamrec.consumers.testing import MemoryCluster
from streamrec.models.engine.recommender import Recommender
from streamrec.models.serving.itemplane import ItemDelta, ItemStats
from streamrec.stream.itemdeltas import decode_deltas
from streamrec.stream.settings import Settings
from tests.unit.test_worker_loop import T0, drain, stream


def _loop(cluster: MemoryCluster, s: Settings) -> Loop:
    loop = Loop(s, Recommender(engine_config(s)), cluster.source(), cluster.sink(s.guarantee), cluster.changelog(),
                structlog.get_logger("test"), clock_ms=lambda: T0 + 10**7)
    assert loop.engine.item_plane is not None
    loop.item_deltas = DeltaEmitter(s, loop.engine.item_plane)
    return loop


def _deltas(cluster: MemoryCluster, s: Settings) -> list[ItemDelta]:
    """Every delta of the batch records on item-deltas (each sent to its items' partition, without a key)."""
    out: list[ItemDelta] = []
    for o in cluster.outputs(s.item_deltas_name()):
        assert o.value is not None and o.key is None and o.partition is not None
        deltas, refused = decode_deltas(o.value, o.key, o.partition, s.item_partitions)
        assert deltas and not refused
        out.extend(deltas)
    return out


#: an owner's items as ``{item: ({neighbour: weight}, trending)}``, decayed to one time
State = dict[str, tuple[dict[str, float], float]]


def owner_state(stats: ItemStats, now: int) -> State:
    """Every item of ``stats``, weights decayed to ``now`` (the default half-lives: 7 days, 1 day)."""
    out: State = {}
    for item in stats.items():
        rec = stats.record(item)
        assert rec is not None
        f_c, f_t = 2.0 ** ((rec["ts"] - now) / (7 * 86_400_000)), 2.0 ** ((rec["ts"] - now) / 86_400_000)
        out[item] = ({j: w * f_c for j, w in zip(rec["neighbours"], rec["weights"], strict=True)},
                     rec["trending"] * f_t)
    return out


def _owner(cluster: MemoryCluster, s: Settings, times: int = 1) -> State:
    stats = ItemStats(max_neighbours=1000)
    deltas = _deltas(cluster, s)
    kinds = [stats.apply(d) for _ in range(times) for d in deltas]
    assert kinds.count("applied") == len(deltas)
    return owner_state(stats, max(d.ts_ms for d in deltas))


def same_state(a: State, b: State) -> bool:
    """The same items with the same neighbours, weights and trending scores (to float tolerance)."""
    return a.keys() == b.keys() and all(
        a[i][0].keys() == b[i][0].keys() and np.allclose([a[i][0][j] for j in a[i][0]], [b[i][0][j] for j in a[i][0]])
        and np.isclose(a[i][1], b[i][1]) for i in a)


def test_a_crash_and_a_resume_emit_the_increments_of_an_uninterrupted_run() -> None:
    s = plane_settings(Settings().replace(poll_ms=1, max_batch=40, commit_interval_ms=10**9, item_plane=True,
                                          reranker=False, drift_detector="none"))
    assert "covisit_global" in s.sources and "trending_global" in s.sources
    events = stream()
    calm = MemoryCluster(partitions=3)
    calm.produce(events)
    drain(_loop(calm, s))
    reference = _owner(calm, s)
    assert len(reference) > 10
    deltas = _deltas(calm, s)
    assert len(calm.outputs(s.item_deltas_name())) < len(deltas)       # one record carries many deltas
    assert {d.source_partition for d in deltas} == {0, 1, 2}
    assert max(d.source_last for d in deltas if d.source_partition == 0) == calm.end_offsets()[0] - 1
    cluster = MemoryCluster(partitions=3)
    cluster.produce(events)
    first = _loop(cluster, s)
    first.run(max_batches=2)
    first.commit()
    first.run(max_batches=4)
    assert first.item_deltas.collector.pending() > 0       # learnt, not yet emitted
    cluster.crash()
    drain(_loop(cluster, s))
    assert same_state(_owner(cluster, s), reference)
    assert same_state(_owner(cluster, s, times=2), reference)   # every delta delivered twice: counted once
