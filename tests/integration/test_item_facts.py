"""First-seen times and categories on a real broker (docs/item-plane.md): an item first seen on worker 1 is
known as new, with its first-seen time and category, by worker 2 (its cache and its engine's newest items,
which cold start and exploration draw on), and the earliest time over the two workers wins."""

from __future__ import annotations

import time
import uuid

from streamrec.models.events import Event, EventType
from streamrec.producers.replay import replay
from streamrec.sharding import partition_of
from streamrec.stream.settings import Settings
from streamrec.stream.topics import ensure_topics, topic_specs
from tests.integration.workers import T0, ThreadWorker, wait_until


def _users_on(partitions: set[int], n: int, prefix: str) -> list[str]:
    part = partition_of(6)
    out: list[str] = []
    k = 0
    while len(out) < n:
        if part(f"{prefix}{k}") in partitions:
            out.append(f"{prefix}{k}")
        k += 1
    return out


def test_an_item_first_seen_on_one_worker_is_new_on_the_other(kafka: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    s = kafka.replace(events_topic=f"events-{tag}", recommendations_topic=f"recs-{tag}", dlq_topic=f"dlq-{tag}",
                      model_topic=f"models-{tag}", items_topic=f"items-{tag}", group=f"facts-{tag}",
                      events_partitions=6, recommendations_partitions=3, item_partitions=3, item_plane=True,
                      sources="covisit,recent,trending,cold_start", reranker=False, drift_detector="none",
                      catalog=False, log_level="warning")
    ensure_topics(s, topic_specs(s))      # the group's own item topics: facts-<tag>.item-deltas, ...
    w1 = ThreadWorker(s.replace(worker_id="w1"), model_sync=False)
    w2 = ThreadWorker(s.replace(worker_id="w2"), model_sync=False)
    try:
        assert wait_until(lambda: len(w1.worker.loop.owned) == 3 and len(w2.worker.loop.owned) == 3, 60)
        owners = [w.worker.item_owner for w in (w1, w2) if w.worker.item_owner is not None]
        assert wait_until(lambda: sum(o.owned_partitions() for o in owners) == 3, 60)
        [u1], [u2] = _users_on(w1.worker.loop.owned, 1, "one-"), _users_on(w2.worker.loop.owned, 1, "two-")
        fresh = f"fresh-{tag}"
        sent = time.monotonic()
        replay([Event("e1", u1, fresh, EventType.CLICK, T0 + 5_000, context={"category": "hats"})], s)
        cache2, engine2 = w2.worker.engine.item_plane.cache, w2.worker.engine
        assert wait_until(lambda: cache2.first_seen(fresh) == T0 + 5_000, 30), "worker 2 never learnt the item"
        print(f"\nfirst-seen time on the other worker after {time.monotonic() - sent:.2f} s")
        assert cache2.category(fresh) == "hats"
        assert engine2.newest(3)[0] == fresh                    # worker 2's new arrivals: cold start, explore
        assert fresh not in engine2.trending.newest(50)         # its own counts never saw the item
        # worker 2's user clicks it with an earlier event time: the earliest time over workers wins everywhere
        replay([Event("e2", u2, fresh, EventType.CLICK, T0 + 1_000)], s)
        cache1 = w1.worker.engine.item_plane.cache
        assert wait_until(lambda: cache1.first_seen(fresh) == T0 + 1_000 == cache2.first_seen(fresh), 30)
        assert cache1.category(fresh) == "hats"
    finally:
        w2.stop()
        w1.stop()
