"""Reading a compacted topic in full, then following it: the steps the catalog follower
(:mod:`consumers.catalog`) and the item-results cache (:mod:`consumers.itemcache`) share.

A follower assigns every partition of its topic from the beginning (no consumer group: every worker reads
all of it), reads to the end offsets found at start before the worker serves, then keeps polling on a
thread of its own and hands what it read to the worker's thread between batches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition


def assign_from_beginning(consumer: Any, topic: str) -> bool:
    """Assign every partition of ``topic`` to ``consumer`` at its first offset; False (and the consumer
    closed) when the topic has no partitions, that is, does not exist."""
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        consumer.close()
        return False
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return True


def read_to_end(consumer: Any, timeout_s: float, step: Callable[[], None], started: float | None = None) -> bool:
    """Call ``step`` (a poll and what it read) until ``consumer`` is at the end offsets its assignment has
    now; False when ``timeout_s`` (counted from ``started``, default now) ran out first."""
    started = time.monotonic() if started is None else started
    tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
    end = consumer.end_offsets(tps)
    while any(consumer.position(tp) < end[tp] for tp in tps):
        if time.monotonic() - started > timeout_s:
            return False
        step()
    return True


class BackgroundFollower:
    """The worker-thread side of a follower: :meth:`between_batches` (the loop's hook) starts the follower
    thread (``_run``, named ``thread_name``) once and applies what it queued (``_drain``), never waiting.
    Subclasses set ``_thread``, ``_queue``, ``stop_event`` and implement ``_run`` and ``_drain``."""

    thread_name = "follower"
    _thread: threading.Thread | None
    _queue: list[Any]
    stop_event: threading.Event

    def between_batches(self) -> None:
        if self._thread is None and not self.stop_event.is_set():
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        if self._queue:
            self._drain()

    def _run(self) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError
