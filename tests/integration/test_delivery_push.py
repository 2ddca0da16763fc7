"""On a real broker: ``clients.Push`` ships what a producer holds without its linger or the acks (the worker
at the end of a batch, the paced replay before each wait); the worker's at-least-once delivery commits the
offsets only after the outputs are acknowledged, asynchronously, and a clean close leaves the last offsets
committed."""

from __future__ import annotations

import time

from kafka import TopicPartition

from streamrec.consumers.delivery import AtLeastOnce
from streamrec.stream import clients
from streamrec.stream.settings import Settings


def test_push_ships_what_the_producer_holds_without_its_linger(settings: Settings) -> None:
    prod = clients.producer(settings, linger_ms=20_000)
    push = clients.Push(prod)
    try:
        first = prod.send(settings.events_topic, key=b"u1", value=b"one", partition=0)
        started = time.monotonic()
        push.push()
        assert time.monotonic() - started < 1.0          # push does not wait for the ack
        first.get(timeout=10)                            # and the record leaves long before the 20 s linger
        push.settle()
        assert not prod._accumulator.flush_in_progress()  # settled: the producer lingers again
        second = prod.send(settings.events_topic, key=b"u2", value=b"two", partition=0)
        time.sleep(0.5)
        assert not second.is_done
    finally:
        prod.close(timeout=10)


def test_at_least_once_acks_the_outputs_then_commits_and_close_leaves_the_offsets(settings: Settings) -> None:
    tp = TopicPartition(settings.events_topic, 0)
    consumer = clients.consumer(settings, group=settings.group)
    consumer.assign([tp])
    check = clients.consumer(settings, group=settings.group)
    delivery = AtLeastOnce(settings, consumer)
    try:
        assert not delivery.sync_commits
        delivery.begin()
        delivery.send(settings.recommendations_topic, b"u1", b"list")
        futures = list(delivery._futures)
        delivery.flush()                                  # the batch's end: pushed, not awaited
        delivery.commit({tp: 41})
        assert all(f.is_done and f.succeeded() for f in futures)   # acknowledged before the offsets went
    finally:
        delivery.close()
    try:
        assert check.committed(tp) == 42                  # the clean close left the last offsets committed
        planed = AtLeastOnce(settings.replace(item_plane=True), consumer)   # the exact redo rule: commit waits
        try:
            assert planed.sync_commits
            planed.commit({tp: 99})
            assert check.committed(tp) == 100
        finally:
            planed.close()
    finally:
        consumer.close(autocommit=False)
        check.close(autocommit=False)
