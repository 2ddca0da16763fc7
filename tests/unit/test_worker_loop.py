"""The worker's loop on the in-memory source and sink (consumers/testing.py): the whole decode → apply →
recommend → emit → changelog → commit path, a crash and a resume, without a broker. Each test fails if one
of those stages were skipped: lists and their lineage, dead letters and their headers, duplicates, the
purchase filter, the committed offsets, and the state rebuilt from the changelog after a crash."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from typing import Any

import numpy as np
import structlog

from streamrec.consumers.engine import engine_config
from streamrec.consumers.health import WorkerMetrics
from streamrec.consumers.loop import Loop
from streamrec.consumers.testing import MemoryCluster
from streamrec.models.engine.recommender import Recommender
from streamrec.models.events import Event, EventType
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

T0 = int(time.time() * 1000) - 3_600_000
REC, STATE = codec_for("recommendation"), codec_for("user_state")


def settings(**kw: Any) -> Settings:
    return Settings().replace(poll_ms=1, max_batch=kw.pop("max_batch", 50),
                              commit_interval_ms=kw.pop("commit_interval_ms", 0), **kw)


def new_loop(cluster: MemoryCluster, s: Settings, metrics: WorkerMetrics | None = None) -> Loop:
    return Loop(s, Recommender(engine_config(s)), cluster.source(), cluster.sink(s.guarantee),
                cluster.changelog(), structlog.get_logger("test"), metrics=metrics, clock_ms=lambda: T0 + 10**7)


def drain(loop: Loop) -> Loop:
    """Turn until the source is empty, then commit what is left."""
    while loop.step() or loop.source.lag(loop.owned) and any(loop.source.lag(loop.owned).values()):
        pass
    loop.finish()
    return loop


def ev(k: int, user: str, item: str, etype: EventType = EventType.CLICK) -> Event:
    return Event(f"{user}-e{k}", user, item, etype, T0 + k * 1000)


def lists(cluster: MemoryCluster, s: Settings) -> list[dict[str, Any]]:
    return [REC.decode(o.value) for o in cluster.outputs(s.recommendations_topic) if o.value is not None]


def changelog_states(cluster: MemoryCluster, s: Settings) -> dict[str, dict[str, Any]]:
    return {o.key.decode(): STATE.decode(o.value) for o in cluster.outputs(s.state_topic())
            if o.key is not None and o.value is not None}


def stream(n: int = 900, users: int = 30, items: int = 60, seed: int = 3) -> list[Event]:
    rng = random.Random(seed)
    kinds = [EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE]
    return [ev(k, f"u{rng.randrange(users)}", f"i{min(int(rng.paretovariate(1.2)), items)}",
               rng.choices(kinds, [0.5, 0.35, 0.1, 0.05])[0]) for k in range(n)]


def test_one_list_per_touched_user_with_lineage_and_a_changelog_record() -> None:
    s, cluster = settings(), MemoryCluster(partitions=2)
    records = cluster.produce([ev(1, "alice", "i1"), ev(2, "bob", "i2"), ev(3, "alice", "i3")])
    loop = drain(new_loop(cluster, s))
    got = lists(cluster, s)
    assert sorted(x["user_id"] for x in got) == ["alice", "bob"]       # one list per touched user per batch
    by_user = {x["user_id"]: x for x in got}
    trig = next(r for r in records if r.key == b"alice" and r.offset == max(
        q.offset for q in records if q.key == b"alice"))
    alice = by_user["alice"]
    assert alice["trigger_event_id"] == "alice-e3"                     # the user's last event of the batch
    assert (alice["trigger_partition"], alice["trigger_offset"]) == (trig.partition, trig.offset)
    assert alice["trigger_timestamp"] == T0 + 3000 and alice["emitted_at"] == T0 + 10**7
    assert [o.key for o in cluster.outputs(s.recommendations_topic)].count(b"alice") == 1
    # the changelog holds each touched user's exported state, on the user's events partition
    states = changelog_states(cluster, s)
    assert states["alice"] == loop.engine.export_user("alice") and states["alice"]["counts"] == {"CLICK": 2}
    state_parts = {o.key: o.partition for o in cluster.outputs(s.state_topic())}
    assert state_parts[b"alice"] == trig.partition
    # offsets committed after their outputs, one past the last processed record
    assert cluster.committed == cluster.end_offsets()
    assert loop.stats.events == 3 and loop.stats.emitted == 2 and loop.ready


def test_undecodable_records_become_dead_letters_with_headers_and_good_ones_still_flow() -> None:
    s, cluster = settings(), MemoryCluster(partitions=1)
    cluster.produce([ev(1, "alice", "i1")])
    junk = cluster.append(b"\x00not avro", key=b"mallory", partition=0)
    tomb = cluster.append(None, key=b"mallory", partition=0)
    cluster.produce([ev(2, "bob", "i2")])
    loop = drain(new_loop(cluster, s))
    dlq = cluster.outputs(s.dlq_topic)
    assert [(o.key, o.value) for o in dlq] == [(b"mallory", b"\x00not avro"), (b"mallory", None)]
    headers = dict(dlq[0].headers)
    assert headers["source.topic"] == s.events_topic.encode()
    assert headers["source.partition"] == b"0" and headers["source.offset"] == str(junk.offset).encode()
    assert headers["error.type"] and headers["error.message"]
    assert dict(dlq[1].headers)["source.offset"] == str(tomb.offset).encode()
    assert sorted(x["user_id"] for x in lists(cluster, s)) == ["alice", "bob"]
    assert loop.stats.dead_letters == 2 and cluster.committed == {0: 4}


def test_duplicates_are_applied_once_and_make_no_list() -> None:
    s, cluster = settings(), MemoryCluster(partitions=1)
    cluster.produce([ev(1, "alice", "i1"), ev(2, "alice", "i2")])
    loop = new_loop(cluster, s)
    drain(loop)
    cluster.produce([ev(2, "alice", "i2")])           # the same event again (a producer retry)
    drain(loop)
    assert loop.stats.duplicates == 1
    assert loop.engine.export_user("alice")["counts"] == {"CLICK": 2}   # type: ignore[index]
    assert len(lists(cluster, s)) == 1                 # the duplicate-only batch touched nobody
    assert cluster.committed == {0: 3}                 # but its offset is committed


def test_a_purchased_item_leaves_the_next_list() -> None:
    s, cluster = settings(), MemoryCluster(partitions=1)
    crowd = [e for k in range(8) for e in (ev(10 * k, f"c{k}", "x"), ev(10 * k + 1, f"c{k}", "y"))]
    cluster.produce([*crowd, ev(100, "alice", "x")])
    # filter_seen="purchased" (the default "auto" lets purchases back until 100 events of buyers decide)
    engine = Recommender(dataclasses.replace(engine_config(s), filter_seen="purchased"))
    loop = drain(Loop(s, engine, cluster.source(), cluster.sink(s.guarantee), cluster.changelog(),
                      structlog.get_logger("test"), clock_ms=lambda: T0 + 10**7))
    first = [it["item_id"] for x in lists(cluster, s) if x["user_id"] == "alice" for it in x["items"]]
    assert "y" in first                                # co-visited with x by the crowd
    cluster.produce([ev(101, "alice", "y", EventType.PURCHASE)])
    drain(loop)
    last = [x for x in lists(cluster, s) if x["user_id"] == "alice"][-1]
    assert last["trigger_event_id"] == "alice-e101"
    assert "y" not in [it["item_id"] for it in last["items"]] and last["items"]


def comparable(state: dict[str, Any] | None) -> dict[str, Any]:
    """A user's state without ``shown`` (the items of the last list: those depend on the co-visitation and
    trending counts, which are not in the changelog and are relearned after a restart)."""
    assert state is not None
    return {k: v for k, v in state.items() if k != "shown"}


def test_a_crash_then_a_resume_loses_nothing_and_rebuilds_the_same_state() -> None:
    s = settings(max_batch=40, commit_interval_ms=10**9)   # commits only when the test says so
    events = stream()
    # the uninterrupted run
    calm = MemoryCluster(partitions=3)
    calm.produce(events)
    reference = new_loop(calm, s)
    drain(reference)
    # the same input: two batches committed, two more processed but not committed, then a crash
    cluster = MemoryCluster(partitions=3)
    cluster.produce(events)
    first = new_loop(cluster, s)
    first.run(max_batches=2)
    first.commit()
    committed_events = sum(cluster.committed.values())
    first.run(max_batches=4)
    assert first.pending and first.sink.pending           # type: ignore[attr-defined]
    lists_before = len(lists(cluster, s))
    cluster.crash()                                       # the process dies: uncommitted outputs are gone
    assert len(lists(cluster, s)) == lists_before
    # a new process: fresh engine, resumes from the committed offsets and the changelog
    second = drain(new_loop(cluster, s))
    assert second.stats.restored_records > 0
    assert second.stats.events == len(events) - committed_events   # nothing before the commit is redone
    assert cluster.committed == cluster.end_offsets()
    # at-least-once: every list of the uninterrupted run arrived (here exactly once, the lost ones redone)
    pairs = Counter((x["user_id"], x["trigger_event_id"]) for x in lists(cluster, s))
    expected = Counter((x["user_id"], x["trigger_event_id"]) for x in lists(calm, s))
    assert set(pairs) == set(expected)
    final = {e.user_id: e.event_id for e in events}
    assert all((u, eid) in pairs for u, eid in final.items())
    # the state equals the uninterrupted run's, in memory and in the changelog
    users = sorted(final)
    assert {u: comparable(second.engine.export_user(u)) for u in users} == \
        {u: comparable(reference.engine.export_user(u)) for u in users}
    assert {u: comparable(v) for u, v in changelog_states(cluster, s).items()} == \
        {u: comparable(v) for u, v in changelog_states(calm, s).items()}
    assert {u: sum(st["counts"].values()) for u, st in changelog_states(cluster, s).items()} == \
        dict(Counter(e.user_id for e in events))


def test_a_failed_commit_rewinds_to_the_last_commit_and_redoes_the_batch() -> None:
    s, events = settings(max_batch=40), stream(n=300, seed=5)
    calm = MemoryCluster(partitions=2)
    calm.produce(events)
    reference = drain(new_loop(calm, s))
    cluster = MemoryCluster(partitions=2)
    cluster.produce(events)
    loop = new_loop(cluster, s)
    loop.run(max_batches=3)
    cluster.fail_next_commits = 1
    drain(loop)
    assert loop.sink.aborts == 1                          # type: ignore[attr-defined]
    assert cluster.committed == cluster.end_offsets()
    users = sorted({e.user_id for e in events})
    assert {u: comparable(loop.engine.export_user(u)) for u in users} == \
        {u: comparable(reference.engine.export_user(u)) for u in users}
    final = {(e.user_id, e.event_id) for e in {e.user_id: e for e in events}.values()}
    assert final <= {(x["user_id"], x["trigger_event_id"]) for x in lists(cluster, s)}


def test_a_revoked_partition_is_dropped_and_restored_from_the_changelog_when_it_comes_back() -> None:
    s, cluster = settings(), MemoryCluster(partitions=2)
    cluster.produce([ev(k, f"u{k % 6}", f"i{k % 5}") for k in range(60)])
    loop = drain(new_loop(cluster, s))
    before = {f"u{k}": loop.engine.export_user(f"u{k}") for k in range(6)}
    source = loop.source
    source.assign({0})                                    # type: ignore[attr-defined]
    loop.step()
    assert loop.owned == {0}
    gone = [u for u, st in before.items() if st is not None and loop.engine.export_user(u) is None]
    assert gone                                           # partition 1's users left memory
    source.assign({0, 1})                                 # type: ignore[attr-defined]
    loop.step()
    assert {u: loop.engine.export_user(u) for u in before} == before
    assert loop.stats.rebalances == 3


def test_a_partition_revoked_and_given_straight_back_redoes_its_uncommitted_events() -> None:
    # the client keeps the fetch position of a partition that comes back to the same member; the loop
    # dropped the partition's uncommitted work with it, so it must read again from the committed offset
    s, cluster = settings(max_batch=20, commit_interval_ms=600_000), MemoryCluster(partitions=1)
    events = [ev(k, f"u{k % 4}", f"i{k % 7}") for k in range(60)]
    cluster.produce(events)
    reference = drain(new_loop(_copy(cluster), s))
    loop = new_loop(cluster, s)
    loop.step()                                           # the first assignment: restore, read from offset 0
    assert loop.step() and loop.pending                   # 20 events processed, not committed
    source = loop.source
    source.assign(set())                                  # type: ignore[attr-defined]
    loop.step()
    assert loop.owned == set()
    source.assign({0})                                    # type: ignore[attr-defined]
    drain(loop)
    assert cluster.committed == cluster.end_offsets()
    users = sorted({e.user_id for e in events})
    assert {u: comparable(loop.engine.export_user(u)) for u in users} == \
        {u: comparable(reference.engine.export_user(u)) for u in users}
    assert loop.engine.stats()["events_applied"] == 20 + 60   # the first 20 before the revoke, then all 60


def _copy(cluster: MemoryCluster) -> MemoryCluster:
    other = MemoryCluster(partitions=cluster.partitions, settings=cluster.settings)
    for log in cluster.events:
        for rec in log:
            other.append(rec.value, rec.key, partition=rec.partition, timestamp_ms=rec.timestamp_ms)
    return other


def test_one_snapshot_feeds_the_stats_line_and_prometheus() -> None:
    s, cluster = settings(max_batch=10), MemoryCluster(partitions=2)
    cluster.produce(stream(n=120, seed=9))
    cluster.append(b"junk", key=b"x", partition=0)
    cluster.produce([ev(5, "u1", "i1")] * 2)
    metrics = WorkerMetrics(ready=lambda: True)
    loop = drain(new_loop(cluster, s, metrics=metrics))
    loop.publish()
    line = loop.report()
    text = metrics.render().decode()

    def value(name: str) -> float:
        return float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(name + " ")))

    assert line["events"] == 123 and value("streamrec_events_total") == line["events"]
    assert value("streamrec_dead_letters_total") == line["dead_letters"] == 1
    assert value("streamrec_duplicates_total") == line["duplicates"] >= 1
    assert value("streamrec_recommendations_total") == line["emitted"] > 0
    assert value("streamrec_state_users") == line["users"] > 0
    assert value("streamrec_rebalances_total") == line["rebalances"] == 1
    assert value("streamrec_event_to_emit_latency_milliseconds_count") == line["emitted"]
    assert np.isclose(value("streamrec_batch_duration_milliseconds_count"), line["batches"])


def test_the_changelog_is_coalesced_to_one_record_per_user_per_commit_and_restores_exactly() -> None:
    s = settings(max_batch=5, commit_interval_ms=10**9)   # many batches, one commit interval
    cluster = MemoryCluster(partitions=2)
    cluster.produce([ev(k, "alice", f"i{k % 7}") for k in range(40)] + [ev(100, "bob", "i1")])
    loop = new_loop(cluster, s)
    loop.run(max_batches=9)                               # every event processed, nothing committed yet
    assert loop.stats.events == 41 and loop.stats.batches == 9
    assert len(lists(cluster, s)) == 0 and loop.sink.pending   # type: ignore[attr-defined]
    loop.commit()
    state_outputs = cluster.outputs(s.state_topic())
    assert sorted(o.key for o in state_outputs) == [b"alice", b"bob"]   # 40 events of alice -> 1 record
    assert loop.stats.changelog_records == 2
    assert len(lists(cluster, s)) >= 9                    # the lists themselves are not coalesced
    assert changelog_states(cluster, s)["alice"] == loop.engine.export_user("alice")
    assert sum(changelog_states(cluster, s)["alice"]["counts"].values()) == 40
    # a fresh worker restores exactly the committed state
    restored = new_loop(cluster, s)
    restored.step()
    assert restored.engine.export_user("alice") == loop.engine.export_user("alice")
    # exactly-once: one record per user per transaction (each batch is one)
    eo = settings(max_batch=5, guarantee="exactly-once")
    cluster = MemoryCluster(partitions=1)
    cluster.produce([ev(k, "alice", f"i{k % 7}") for k in range(12)])
    drain(new_loop(cluster, eo))
    assert [o.key for o in cluster.outputs(eo.state_topic())] == [b"alice"] * 3 and cluster.commits == 3


def test_a_batch_is_bounded_by_its_time_target_as_well_as_by_count() -> None:
    from streamrec.consumers.loop import MIN_BATCH

    events = stream(n=1200, users=200, seed=4)
    runs = {}
    for target in (0.0, 0.001):     # off, and a target no batch of 400 events can meet (1 us)
        s = settings(max_batch=400, batch_target_ms=target)
        cluster = MemoryCluster(partitions=1)
        cluster.produce(events)
        loop = new_loop(cluster, s)
        loop.run(max_batches=3)
        runs[target] = (loop.stats.events, loop.sizer.limit(), loop.report()["batch_limit"])
    assert runs[0.0] == (1200, 400, 400)                       # the count bound only
    assert runs[0.001] == (400 + 2 * MIN_BATCH, MIN_BATCH, MIN_BATCH)   # after the first batch: the floor


class _CountingEngine(Recommender):
    """The worker's engine, counting its applies (and whether each ended the batch) and its ends of batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, bool]] = []
        self.ends = 0

    def apply(self, events: Any, partition: int = 0, offsets: Any = None, end_batch: bool = True) -> list[str]:
        self.calls.append((partition, end_batch))
        if end_batch:
            self.ends += 1
        return super().apply(events, partition, offsets, end_batch)

    def end_apply(self) -> None:
        self.ends += 1
        super().end_apply()


def test_a_batch_over_several_partitions_ends_once_so_the_reranker_learns_once_per_batch() -> None:
    s, cluster = settings(max_batch=5000), MemoryCluster(partitions=3)
    cluster.produce(stream(600, users=40))
    engine = _CountingEngine(engine_config(s))
    loop = Loop(s, engine, cluster.source(), cluster.sink(s.guarantee), cluster.changelog(),
                structlog.get_logger("test"), clock_ms=lambda: T0 + 10**7)
    for _ in range(10):                     # the first steps join and restore; then one batch of every partition
        loop.step()
        if engine.calls:
            break
    assert sorted(p for p, _ in engine.calls) == [0, 1, 2]
    assert not any(end for _, end in engine.calls)    # no partition ends the batch by itself
    assert engine.ends == 1                 # the batch's end-of-batch learning runs once
    cluster.produce(stream(300, users=40, seed=4))
    drain(loop)
    assert engine.ends == loop.stats.batches == 2 and len(engine.calls) == 6
