"""RebalanceTracker: what the worker learns from kafka-python's rebalance callbacks."""

from __future__ import annotations

import time

from kafka import TopicPartition

from streamrec.consumers.rebalance import RebalanceTracker


def tps(*parts: int, topic: str = "events") -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in parts]


def test_assign_revoke_lost_are_told_apart() -> None:
    t = RebalanceTracker("events")
    t.on_partitions_assigned(tps(0, 1, 2) + tps(9, topic="other"))
    assert t.take_changes() == ({0, 1, 2}, set(), set())
    t.owned = {0, 1, 2}
    t.on_partitions_revoked(tps(0, 1, 2))
    t.on_partitions_assigned(tps(1, 2, 3))  # eager protocol: everything revoked, then the new set
    restore, drop, lost = t.take_changes()
    assert (restore, drop, lost) == ({3}, {0}, set())
    t.owned = {1, 2, 3}
    t.on_partitions_lost(tps(2))
    assert t.take_changes() == (set(), {2}, {2})


def test_a_revoke_without_assignment_is_a_stall() -> None:
    t = RebalanceTracker("events")
    assert not t.stalled(after_s=0.0)
    t.on_partitions_revoked(tps(0))
    time.sleep(0.01)
    assert t.stalled(after_s=0.005)
    t.on_partitions_assigned([])  # an empty assignment is still an answer
    assert not t.stalled(after_s=0.0)
