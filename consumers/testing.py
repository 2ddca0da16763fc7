"""An in-memory source and sink for the worker's loop (like bytewax's testing source and sink): a list of
``Record`` in, a list of outputs out, committed offsets, and a crash that loses everything uncommitted.

>>> from streamrec.consumers.testing import MemoryCluster
>>> cluster = MemoryCluster(partitions=2)
>>> cluster.source().take_assignment()
({0, 1}, set())

:class:`MemoryCluster` holds the events partitions (records appended by the test), the committed offsets
of the group, and the committed outputs per topic. :class:`MemorySink` keeps a batch's outputs apart until
``commit``: then they are appended to their topics and the offsets are committed, together. :meth:`MemoryCluster.crash`
drops every sink's uncommitted outputs (what a killed worker had not flushed); a new loop on a fresh engine
over :meth:`MemoryCluster.source` then resumes from the committed offsets, restoring state from the committed
changelog (:class:`MemoryChangelog`), as a restarted worker does on Kafka.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from streamrec.consumers.loop import Apply
from streamrec.models.events import Event
from streamrec.stream.errors import BrokerError, DecodeError
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: tuple[tuple[str, bytes], ...]


def partition_of(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


class MemoryCluster:
    """The topics of one worker group, in memory."""

    def __init__(self, partitions: int = 2, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.partitions = partitions
        self.events: list[list[Record]] = [[] for _ in range(partitions)]
        self.committed: dict[int, int] = {}                 # partition -> next offset to read
        self.topics: dict[str, list[Output]] = {}           # committed outputs, in commit order
        self.sinks: list[MemorySink] = []
        self.commits = 0
        self.fail_next_commits = 0                          # inject broker failures into commit

    # --- input -------------------------------------------------------------------------------------
    def append(self, value: bytes | None, key: bytes | None = None, partition: int | None = None,
               timestamp_ms: int = 0) -> Record:
        p = partition if partition is not None else partition_of(key or b"", self.partitions)
        log = self.events[p]
        rec = Record(self.settings.events_topic, p, len(log), timestamp_ms, key, value)
        log.append(rec)
        return rec

    def produce(self, events: Iterable[Event]) -> list[Record]:
        """Encode ``events`` as a producer does (Avro, keyed by user) and append them."""
        codec = codec_for("event")
        return [self.append(codec.encode(e.to_record()), e.user_id.encode(), timestamp_ms=e.timestamp_ms)
                for e in events]

    # --- parts -------------------------------------------------------------------------------------
    def source(self, partitions: Iterable[int] | None = None) -> MemorySource:
        return MemorySource(self, set(range(self.partitions)) if partitions is None else set(partitions))

    def sink(self, guarantee: str = "at-least-once") -> MemorySink:
        sink = MemorySink(self, guarantee)
        self.sinks.append(sink)
        return sink

    def changelog(self) -> MemoryChangelog:
        return MemoryChangelog(self)

    def crash(self) -> None:
        """Every uncommitted output is lost (the committed offsets and outputs stay)."""
        for sink in self.sinks:
            sink.pending.clear()
        self.sinks.clear()

    # --- output ------------------------------------------------------------------------------------
    def outputs(self, topic: str) -> list[Output]:
        return list(self.topics.get(topic, []))

    def end_offsets(self) -> dict[int, int]:
        return {p: len(log) for p, log in enumerate(self.events)}


class MemorySource:
    """Reads the owned partitions from the committed offsets, ``max_records`` at a time, partition by partition."""

    def __init__(self, cluster: MemoryCluster, assigned: set[int]) -> None:
        self.cluster = cluster
        self.assigned = set(assigned)
        self.position = {p: cluster.committed.get(p, 0) for p in assigned}
        self.rebalances = 0
        self._changed = True
        self._lost: set[int] = set()

    def assign(self, partitions: Iterable[int], lost: Iterable[int] = ()) -> None:
        """A rebalance: the new assignment (``lost``: taken away without a revoke)."""
        self.assigned = set(partitions)
        self._lost |= set(lost)
        for p in self.assigned:
            self.position.setdefault(p, self.cluster.committed.get(p, 0))
        self._changed = True

    def poll(self, timeout_ms: int, max_records: int) -> list[Record]:
        out: list[Record] = []
        for p in sorted(self.assigned):
            log = self.cluster.events[p]
            take = log[self.position[p]: self.position[p] + max_records - len(out)]
            self.position[p] += len(take)
            out.extend(take)
            if len(out) >= max_records:
                break
        return out

    def take_assignment(self) -> tuple[set[int], set[int]] | None:
        if not self._changed:
            return None
        self._changed = False
        self.rebalances += 1
        lost, self._lost = self._lost, set()
        return set(self.assigned), lost

    def committed(self, partition: int) -> int | None:
        return self.cluster.committed.get(partition)

    def seek(self, partition: int, offset: int | None) -> None:
        self.position[partition] = offset or 0

    def lag(self, partitions: set[int]) -> dict[int, int]:
        return {p: len(self.cluster.events[p]) - self.position.get(p, 0) for p in partitions}

    def stalled(self) -> bool:
        return False

    def rejoin(self) -> None:
        self._changed = True


class MemorySink:
    """Outputs wait in ``pending`` until ``commit`` appends them to their topics with the offsets."""

    def __init__(self, cluster: MemoryCluster, guarantee: str = "at-least-once") -> None:
        self.cluster, self.guarantee = cluster, guarantee
        self.pending: list[Output] = []
        self.aborts = 0

    def begin(self) -> None:
        """Nothing to open."""

    def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        self.pending.append(Output(topic, key, value, partition, tuple(headers or ())))

    def commit(self, offsets: dict[int, int]) -> None:
        if self.cluster.fail_next_commits > 0:
            self.cluster.fail_next_commits -= 1
            raise BrokerError("commit refused (injected)")
        for out in self.pending:
            self.cluster.topics.setdefault(out.topic, []).append(out)
        self.pending.clear()
        for p, off in offsets.items():
            self.cluster.committed[p] = off + 1
        self.cluster.commits += 1

    def abort(self) -> None:
        self.pending.clear()
        self.aborts += 1


class MemoryChangelog:
    """Restores from the committed records of the state topic (the last record per user wins, as after
    compaction)."""

    def __init__(self, cluster: MemoryCluster) -> None:
        self.cluster = cluster
        self.codec = codec_for("user_state")

    def restore(self, partitions: set[int], apply: Apply) -> int:
        count = 0
        for out in self.cluster.outputs(self.cluster.settings.state_topic()):
            if out.partition not in partitions:
                continue
            user = (out.key or b"").decode()
            if out.value is None:
                apply(None, user, out.partition)
            else:
                try:
                    apply(self.codec.decode(out.value), user, out.partition)
                except DecodeError:
                    continue
            count += 1
        return count
