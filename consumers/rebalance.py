"""Rebalance bookkeeping. kafka-python calls the listener on its IO thread while the main thread waits
in ``poll``; the callbacks only record what changed, and the worker acts on it on its own thread before
it processes the next batch (so nothing blocks heartbeats, and no commit runs on the IO loop).

A revoke may find processed, uncommitted events (the worker commits on an interval): the loop drops
them with the partition and, should it come back, rewinds it to its committed offset and redoes them.
"""

from __future__ import annotations

import threading
import time

from kafka import ConsumerRebalanceListener, TopicPartition


class RebalanceTracker(ConsumerRebalanceListener):
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self.owned: set[int] = set()          # partitions whose state is in memory
        self._assigned: set[int] = set()       # latest assignment from the group
        self._lost: set[int] = set()
        self.rebalances = 0
        self.changed = False
        self.awaiting_since: float | None = None   # revoked or lost, and no assignment since

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        with self._lock:
            self._assigned -= {tp.partition for tp in revoked if tp.topic == self.topic}
            self.changed = True
            self.awaiting_since = time.monotonic()

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        with self._lock:
            self._assigned = {tp.partition for tp in assigned if tp.topic == self.topic}
            self.rebalances += 1
            self.changed = True
            self.awaiting_since = None

    def on_partitions_lost(self, lost: list[TopicPartition]) -> None:
        with self._lock:
            parts = {tp.partition for tp in lost if tp.topic == self.topic}
            self._lost |= parts
            self._assigned -= parts
            self.changed = True
            self.awaiting_since = time.monotonic()

    def stalled(self, after_s: float) -> bool:
        """True when a revoke (or loss) has had no assignment for ``after_s``: with the eager protocol a
        healthy member always hears its new assignment (possibly empty) promptly, so its join is stuck."""
        since = self.awaiting_since
        return since is not None and time.monotonic() - since > after_s

    def take_assignment(self) -> tuple[set[int], set[int]]:
        """(assigned, lost): the group's latest assignment and the partitions lost since the last call."""
        with self._lock:
            self.changed = False
            assigned, lost = set(self._assigned), set(self._lost)
            self._lost.clear()
        return assigned, lost

    def take_changes(self) -> tuple[set[int], set[int], set[int]]:
        """(to_restore, to_drop, lost): partitions newly ours, partitions no longer ours, partitions lost."""
        assigned, lost = self.take_assignment()
        to_restore = assigned - self.owned
        to_drop = (self.owned - assigned) | lost
        return to_restore, to_drop, lost
