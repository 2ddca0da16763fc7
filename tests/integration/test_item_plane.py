"""The item plane on a real broker (docs/item-plane.md): two workers over six partitions share what they learn
about items through item-deltas -> an owner -> item-results; an owner restarted (after its changelog was
written but before its offsets were committed, and without either) comes back equal to the last delta applied
and counts nothing twice; exactly-once workers put each delta on item-deltas once."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from typing import Any

import structlog

from streamrec.consumers.itemplane import ItemOwner, OwnerProcess
from streamrec.consumers.worker import Worker
from streamrec.e2e import Subscriber
from streamrec.models.events import Event, EventType
from streamrec.models.serving.itemplane import ItemDelta
from streamrec.producers.replay import replay
from streamrec.sharding import partition_of
from streamrec.stream import clients
from streamrec.stream.itemdeltas import decode_deltas, encode_delta, encode_result
from streamrec.stream.settings import Settings
from streamrec.stream.topics import ensure_topics, topic_specs
from tests.integration.workers import T0, ThreadWorker, read_all, wait_until

LOG = structlog.get_logger("test")


def _plane(kafka: Settings, **overrides: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    s = kafka.replace(events_topic=f"events-{tag}", recommendations_topic=f"recs-{tag}", dlq_topic=f"dlq-{tag}",
                      model_topic=f"models-{tag}", items_topic=f"items-{tag}", group=f"g-{tag}",
                      item_deltas_topic=f"deltas-{tag}", item_results_topic=f"results-{tag}",
                      events_partitions=6, recommendations_partitions=3, item_partitions=3, item_plane=True,
                      sources="covisit,recent", reranker=False, drift_detector="none", catalog=False,
                      log_level="warning", **overrides)
    ensure_topics(s, topic_specs(s))
    return s


class OwnerThread:
    def __init__(self, settings: Settings, name: str = "owner") -> None:
        self.owner = ItemOwner(settings, LOG, name)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.owner.run()
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        self.owner.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive() and self.error is None, self.error


def _users_on(partitions: set[int], n: int, prefix: str) -> list[str]:
    part = partition_of(6)
    out: list[str] = []
    k = 0
    while len(out) < n:
        user = f"{prefix}{k}"
        if part(user) in partitions:
            out.append(user)
        k += 1
    return out


def test_a_covisitation_learnt_on_one_worker_reaches_the_other_workers_users(kafka: Settings) -> None:
    s = _plane(kafka)     # the item owners are child processes of the two workers (STREAMREC_ITEM_OWNER_PROCESS)
    w1, w2 = ThreadWorker(s.replace(worker_id="w1"), model_sync=False), None
    sub = Subscriber(s)
    try:
        w2 = ThreadWorker(s.replace(worker_id="w2"), model_sync=False)
        assert wait_until(lambda: len(w1.worker.loop.owned) == 3 and len(w2.worker.loop.owned) == 3, 60)
        owners = [w.worker.item_owner for w in (w1, w2) if w.worker.item_owner is not None]
        assert len(owners) == 2 and all(isinstance(o, OwnerProcess) for o in owners)   # the default: child processes
        assert wait_until(lambda: sum(o.owned_partitions() for o in owners) == 3
                          and all(o.owned_partitions() for o in owners), 60)
        sub.start()
        sub.ready.wait(10)
        first, other = w1.worker.loop.owned, w2.worker.loop.owned
        learners, [reader] = _users_on(first, 3, "learner-"), _users_on(other, 1, "reader-")
        sent_ms = time.time() * 1000
        replay([Event(f"{u}-{k}", u, item, EventType.CLICK, T0 + 10 * j + k)
                for j, u in enumerate(learners) for k, item in enumerate(("x", "y"))], s)
        # the reader clicks x again and again: its list holds y once the item plane brought x-y from worker 1
        found, k, cached_ms = None, 0, None
        cache = w2.worker.engine.item_plane.cache
        producer = clients.producer(s)
        try:
            deadline = time.monotonic() + 20
            while found is None and time.monotonic() < deadline:
                replay([Event(f"r-{k}", reader, "x", EventType.CLICK, T0 + 1000 + k)], s, producer=producer)
                k += 1
                until = time.monotonic() + 0.05
                while time.monotonic() < until:
                    if cached_ms is None and "y" in (cache.row("x") or {}):
                        cached_ms = time.time() * 1000
                    time.sleep(0.005)
                found = next((a for a in sub.snapshot() if a.user_id == reader
                              and "y" in [i["item_id"] for i in a.value["items"]]), None)
        finally:
            producer.close()
        assert found is not None, "y never reached the lists of worker 2's user"
        y = next(i for i in found.value["items"] if i["item_id"] == "y")
        assert (y["source"], y["reason"]) == ("covisit", "covisit:x")
        print(f"\nfreshness: {found.value['emitted_at'] - sent_ms:.0f} ms from the learners' events to the other "
              f"worker's list ({k} reader events); in its item cache after "
              f"{(cached_ms or 0) - sent_ms:.0f} ms")
        # worker 2 never saw x-y itself: it came from the cache, learnt from worker 1's users
        assert "y" not in dict(w2.worker.engine.covisit.neighbors("x"))
        assert "y" in (w2.worker.engine.item_plane.cache.row("x") or {})
        records = read_all(s, s.item_deltas_topic, None)
        deltas = _read_deltas(s, records)
        assert deltas and all(d.source_partition in first | other for d in deltas)
        events = w1.worker.stats.events + w2.worker.stats.events
        delta_bytes = w1.worker.stats.bytes_sent["item_deltas"] + w2.worker.stats.bytes_sent["item_deltas"]
        print(f"item-deltas: {len(records)} records carrying {len(deltas)} deltas, {delta_bytes / events:.1f} bytes "
              f"per event ({events} events)")
    finally:
        sub.stop()
        w1.stop()
        if w2 is not None:
            w2.stop()


def _read_deltas(s: Settings, records: list[Any]) -> list[ItemDelta]:
    """The deltas of batch records read from item-deltas (each in the partition its items hash to)."""
    out: list[ItemDelta] = []
    for r, _ in records:
        deltas, refused = decode_deltas(r.value, r.key, r.partition, s.item_partitions)
        assert not refused
        out.extend(deltas)
    return out


def _send(s: Settings, deltas: list[ItemDelta]) -> None:
    producer = clients.producer(s)
    try:
        for d in deltas:
            producer.send(s.item_deltas_topic, key=d.item_id.encode(), value=encode_delta(d))
        producer.flush()
    finally:
        producer.close()


def _steps(owner: ItemOwner, until: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, owner.stats()
        owner.step()


def _state(owner: ItemOwner) -> dict[str, Any]:
    return {item: t.record(item) for t in owner.tables.values() for item in t.items()}


def test_a_restarted_owner_comes_back_equal_and_counts_nothing_twice(kafka: Settings) -> None:
    s = _plane(kafka, item_interval_ms=600_000, item_owner=False)     # commits only when the test says so
    a = ItemOwner(s, LOG, "a")
    _steps(a, lambda: a.ready and len(a.tables) == 3)
    d1 = [ItemDelta("a", T0, (("b", 1.0),), 1.0, 0, 0, 9), ItemDelta("b", T0, (("a", 1.0),), 1.0, 0, 0, 9)]
    _send(s, d1)
    _steps(a, lambda: a.n["applied"] == 2)
    a.commit()
    d2 = ItemDelta("a", T0 + 1000, (("c", 2.0),), 0.5, 0, 10, 19)
    _send(s, [d2, d1[0]])                            # the next range, and the first again (a redone batch)
    _steps(a, lambda: a.n["deltas"] == 4)
    assert (a.n["applied"], a.n["redone"]) == (3, 1)
    before = _state(a)
    assert set(before["a"]["neighbours"]) == {"b", "c"}
    a.write()          # changelog and results flushed: a crash now, before the offsets are committed
    a.close()
    b = ItemOwner(s, LOG, "b")
    _steps(b, lambda: b.ready and len(b.tables) == 3 and b.n["deltas"] == 2)   # d2 and the redo, read again
    assert _state(b) == before
    assert (b.n["applied"], b.n["redone"]) == (0, 2)          # no increment counted twice
    d3 = ItemDelta("a", T0 + 2000, (("b", 1.0),), 1.0, 0, 20, 29)
    _send(s, [d3])
    _steps(b, lambda: b.n["applied"] == 1)
    after = _state(b)
    b.close()          # a crash with nothing written or committed since the restore
    c = ItemOwner(s, LOG, "c")
    _steps(c, lambda: c.ready and len(c.tables) == 3 and c.n["deltas"] == 3)
    assert _state(c) == after and (c.n["applied"], c.n["redone"]) == (1, 2)
    c.commit()
    c.close()
    results = {r.key.decode(): v for r, v in read_all(s, s.item_results_topic, "item_result")}
    assert results["a"]["neighbours"] == after["a"]["neighbours"] and results["a"]["weights"] == after["a"]["weights"]
    assert results["a"]["sources"] == []
    assert results["b"]["trending"] == after["b"]["trending"]


def test_exactly_once_workers_put_each_delta_on_the_topic_once(kafka: Settings) -> None:
    s = _plane(kafka, guarantee="exactly-once", item_owner=False)   # a separate owner, as `streamrec items` runs
    owner = OwnerThread(s)
    w = ThreadWorker(s.replace(worker_id="eos-1"), model_sync=False)
    try:
        w.wait_ready()
        users = [f"eos-u{k}" for k in range(20)]
        replay([Event(f"{u}-{k}", u, f"i{(j + k) % 7}", EventType.CLICK, T0 + k) for j, u in enumerate(users)
                for k in range(5)], s)
        assert wait_until(lambda: w.worker.stats.events >= 100 and not w.worker.loop.pending, 30)
        assert wait_until(lambda: owner.owner.n["applied"] > 0 and not owner.owner.pending, 30)
    finally:
        w.stop()
        owner.stop()
    deltas = _read_deltas(s, read_all(s, s.item_deltas_topic, None))
    seen = Counter((d.item_id, d.source_partition, d.source_first) for d in deltas)
    assert deltas and max(seen.values()) == 1
    assert owner.owner.n["redone"] == 0 and owner.owner.n["overlap"] == 0


def test_a_starting_worker_rebuilds_its_item_cache_before_it_serves(kafka: Settings) -> None:
    """100,000 items with 20 neighbours each on item-results: the worker holds all of them when its constructor
    returns (before its loop polls a single event); the rebuild time is printed."""
    n, k = int(os.environ.get("STREAMREC_TEST_ITEM_CACHE_ITEMS", "100000")), 20
    s = _plane(kafka, item_owner=False)
    producer = clients.producer(s, linger_ms=50)
    try:
        started = time.monotonic()
        for i in range(n):
            rec = {"item_id": f"item-{i}", "ts": T0 + i, "trending": float(i % 97),
                   "neighbours": [f"item-{(i * 7 + j) % n}" for j in range(k)],
                   "weights": [1.0 / (1 + j) for j in range(k)], "sources": []}
            producer.send(s.item_results_topic, key=rec["item_id"].encode(), value=encode_result(rec))
        producer.flush()
        produced_s = time.monotonic() - started
    finally:
        producer.close()
    result_bytes = sum(len(r.value) for r, _ in read_all(s, s.item_results_topic, None)[:1000]) / 1000
    worker = Worker(s.replace(worker_id="cache-1"), model_sync=False)
    try:
        assert worker.items is not None and worker.items.load_seconds is not None
        cache = worker.engine.item_plane.cache
        assert len(cache) == n and not worker.ready          # all of it, and no partition served yet
        assert cache.row(f"item-{n - 1}") is not None and len(cache.row(f"item-{n - 1}") or {}) == k
        print(f"\nitem cache rebuilt: {n} items x {k} neighbours in {worker.items.load_seconds:.2f} s "
              f"({result_bytes:.0f} bytes per result record; produced in {produced_s:.1f} s)")
    finally:
        worker.close()
