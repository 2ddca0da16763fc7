"""Replay an event log into the ``events`` topic: keyed by user, idempotent, compressed, paced.

Pacing: ``max`` (as fast as possible), ``rate`` (events per second), or ``speedup`` (the log's own timeline,
X times faster). The record's Kafka timestamp is the produce time; the event time travels in the payload.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from streamrec.models.errors import InputError
from streamrec.models.events import Event
from streamrec.stream import clients
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings


@dataclass(frozen=True)
class Pacing:
    mode: str = "max"          # max | rate | speedup
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("max", "rate", "speedup"):
            raise InputError(f"pacing must be max, rate or speedup, not {self.mode!r}")
        if self.mode != "max" and self.value <= 0:
            raise InputError(f"--{self.mode} needs a positive number, got {self.value}")


@dataclass(frozen=True)
class ReplayStats:
    events: int
    seconds: float
    interrupted: bool
    last_event_id: str | None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class KeyPartitioner:
    """Kafka's default keyed partitioning (murmur2 of the key, positive, modulo the partition count), cached
    per key: users repeat, and the pure-Python murmur2 is a large share of a send."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        p = self.cache.get(key)
        if p is None:
            if len(self.cache) > 1_000_000:
                self.cache.clear()
            p = self.cache[key] = (murmur2(key) & 0x7FFFFFFF) % self.partitions
        return p


def _target_time(pacing: Pacing, start: float, i: int, first_ts: int, ts: int) -> float:
    if pacing.mode == "rate":
        return start + i / pacing.value
    if pacing.mode == "speedup":
        return start + (ts - first_ts) / 1000.0 / pacing.value
    return start


def replay(events: Iterable[Event], settings: Settings, pacing: Pacing = Pacing(),
           topic: str | None = None, progress: Callable[[int], None] | None = None,
           producer: KafkaProducer | None = None, sent_at: dict[str, float] | None = None,
           stop: threading.Event | None = None) -> ReplayStats:
    """Produce ``events`` in order; flushes and reports where it stopped on Ctrl-C. With ``sent_at``, the
    wall-clock time (ms) each event was handed to the producer is recorded by event id (for latency).
    Setting ``stop`` ends the replay early (after a flush), like Ctrl-C."""
    topic = topic or settings.events_topic
    prod = producer or clients.producer(settings)
    codec = codec_for("event")
    encode, send = codec.encode, prod.send
    partition_of = KeyPartitioner(len(prod.partitions_for(topic)))
    sent, last_id, interrupted = 0, None, False
    first_ts: int | None = None
    start = time.perf_counter()
    try:
        for i, ev in enumerate(events):
            if first_ts is None:
                first_ts = ev.timestamp_ms
            if stop is not None and i % 20 == 0 and stop.is_set():
                interrupted = True
                break
            if pacing.mode != "max" and i % 20 == 0:
                delay = _target_time(pacing, start, i, first_ts, ev.timestamp_ms) - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            key = ev.user_id.encode()
            if sent_at is not None:
                sent_at[ev.event_id] = time.time() * 1000
            send(topic, key=key, value=encode(ev.to_record()), partition=partition_of(key))
            sent, last_id = i + 1, ev.event_id
            if progress is not None and sent % 1000 == 0:
                progress(1000)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        prod.flush()
        if producer is None:
            prod.close()
    if progress is not None and sent % 1000:
        progress(sent % 1000)
    return ReplayStats(sent, time.perf_counter() - start, interrupted, last_id)
