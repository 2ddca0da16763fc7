"""An item owner stops with a clear error when the item-deltas topic's partition count changes under it
(item statistics are partitioned by that count), instead of dead-lettering every delta for a new partition."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from streamrec.consumers.itemplane import ItemOwner, PartitionCountChanged
from streamrec.consumers.rebalance import RebalanceTracker


class _Consumer:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))


def _owner(started_with: int, now: int) -> Any:
    owner = ItemOwner.__new__(ItemOwner)          # no broker: only the partition-count rule is under test
    owner.log, owner.topic, owner.partitions = structlog.get_logger("test"), "t.item-deltas", started_with
    owner.tables, owner.dirty, owner.pending = {}, {}, {}
    owner.consumer, owner.tracker, owner._heard = _Consumer(now), RebalanceTracker("t.item-deltas"), False
    owner._restore = lambda parts: None           # nothing to restore in this test
    return owner


def test_a_rebalance_with_the_same_partition_count_goes_on() -> None:
    owner = _owner(6, 6)
    owner.tracker.on_partitions_assigned([])
    assert owner._rebalance() == set() and owner._heard


def test_a_partition_count_that_changed_stops_the_owner_with_the_fix() -> None:
    owner = _owner(6, 8)
    owner.tracker.on_partitions_assigned([])
    with pytest.raises(PartitionCountChanged, match="has 8 partitions, 6 when the item owners started"):
        owner._rebalance()
    # not one of the errors run() recovers from by restoring (that would loop on the same rebalance)
    from kafka.errors import KafkaError

    from streamrec.models.errors import StreamrecError
    assert not issubclass(PartitionCountChanged, (KafkaError, StreamrecError))
