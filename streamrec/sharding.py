"""How a consumer group of N workers shards users in production, for ``streamrec evaluate --workers N``.

Two steps, both taken from the code that does them in production, not re-implemented:

1. **user -> partition**: the producer (``streamrec replay``) keys every event by its user id and sends it
   to :class:`producers.replay.KeyPartitioner`'s partition: kafka-python's ``murmur2`` of the key bytes,
   made positive, modulo the events topic's partition count (kafka-python's ``DefaultPartitioner`` for a
   keyed record; the tests check the two agree);
2. **partition -> worker**: the workers' consumers use kafka-python's default assignment strategy, whose
   first entry is the range assignor: partitions in order, members in order, the first ``P % N`` members
   one partition more. :func:`range_assignment` calls kafka-python's ``RangePartitionAssignor`` itself
   (it needs only the partition count and the members, no broker).

>>> range_assignment(6, 4)
[[0, 1], [2, 3], [4], [5]]
>>> shard = user_sharding(6, 3)
>>> [shard(u) for u in ("u1", "u2", "u3", "u4")] == [partition_of(6)(u) // 2 for u in ("u1", "u2", "u3", "u4")]
True
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

from streamrec.models.errors import InputError

__all__ = ["TOPIC", "partition_of", "range_assignment", "user_sharding"]

TOPIC = "events"


def partition_of(partitions: int) -> Callable[[str], int]:
    """``user_id -> partition`` of the producer (murmur2 of the UTF-8 user id, positive, mod ``partitions``)."""
    from streamrec.producers.replay import KeyPartitioner

    keyed = KeyPartitioner(partitions)
    return lambda user_id: keyed(user_id.encode())


class _Partitions:
    """The one piece of cluster metadata the range assignor reads: the topic's partitions."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))


def range_assignment(partitions: int, workers: int) -> list[list[int]]:
    """The partitions of each of ``workers`` group members under kafka-python's range assignor (members
    numbered in the order the assignor sorts them)."""
    from kafka.coordinator.assignors.range import RangePartitionAssignor

    if partitions < 1:
        raise InputError(f"the events topic needs at least 1 partition, got {partitions}")
    if not 1 <= workers <= partitions:
        raise InputError(f"{workers} workers on {partitions} partitions: a consumer group gives each partition to "
                         f"one worker, so use 1 to {partitions} workers (or more --partitions)")
    members = [SimpleNamespace(member_id=f"worker-{k:04d}", group_instance_id=None,
                               metadata=RangePartitionAssignor.metadata([TOPIC])) for k in range(workers)]
    assigned = RangePartitionAssignor.assign(_Partitions(partitions), members)
    out: list[list[int]] = []
    for m in members:
        parts = dict(assigned[m.member_id].assigned_partitions).get(TOPIC, [])
        out.append(sorted(parts))
    return out


def user_sharding(partitions: int, workers: int) -> Callable[[str], int]:
    """``user_id -> worker`` in ``range(workers)``: the producer's partition, then the range assignment."""
    worker_of = {p: w for w, parts in enumerate(range_assignment(partitions, workers)) for p in parts}
    part = partition_of(partitions)
    return lambda user_id: worker_of[part(user_id)]
