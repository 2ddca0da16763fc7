"""The per-partition state changelog: ``<group>.state``, compacted, co-partitioned with ``events``.

Every batch writes the state of each touched user to the changelog partition that matches the user's
events partition. When a partition is assigned, its state is read back from the beginning of the matching
changelog partition up to its end (the last stable offset, read_committed) before any of its events are
processed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition

from streamrec.consumers.reconnect import RECONNECT
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError, DecodeError
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings


def restore(settings: Settings, topic: str, partitions: set[int],
            apply: Callable[[dict[str, Any] | None, str, int], None], timeout_s: float = 60.0) -> int:
    """Replay changelog partitions into ``apply(record_or_None_for_tombstone, user_id, partition)``.
    Returns the number of records read."""
    if not partitions:
        return 0
    codec = codec_for("user_state")
    consumer = clients.consumer(settings, group=None, max_poll_records=5000, fetch_max_wait_ms=10, **RECONNECT)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > consumer.position(tp)}
        count, deadline = 0, time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise BrokerError(f"restoring {topic} partitions {sorted(partitions)} took over {timeout_s}s")
            for tp, recs in consumer.poll(timeout_ms=100).items():
                for rec in recs:
                    user = (rec.key or b"").decode()
                    if rec.value is None:
                        apply(None, user, tp.partition)
                    else:
                        try:
                            apply(codec.decode(rec.value), user, tp.partition)
                        except DecodeError:
                            continue  # a state record we cannot read is skipped; its user starts fresh
                    count += 1
            remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
        return count
    finally:
        consumer.close()
