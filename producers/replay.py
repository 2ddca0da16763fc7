"""Replay an event log into the ``events`` topic: keyed by user, idempotent, compressed, paced, checked.

Pacing: ``max`` (as fast as possible), ``rate`` (events per second), or ``speedup`` (the log's own timeline,
X times faster). The record's Kafka timestamp is the produce time; the event time travels in the payload.

Nothing is lost silently. The topic must exist (checked through the cluster's metadata before anything is
sent: a missing topic is a :class:`~streamrec.stream.errors.BrokerError` at once). Every send is checked:

* a record larger than the topic's ``max.message.bytes`` (after compression) or the producer's
  ``max_request_size`` is *refused* before it is sent, so it cannot take the records batched with it down;
* a record the broker refuses anyway fails the idempotent producer as a whole (Kafka treats a refused batch
  as fatal), and with it the batches in flight: the replay then resends what was taken down with a fresh
  producer, in order, the first of them alone, so that only the records the broker refuses on their own
  end up refused;
* a record that cannot be delivered for a reason that is not its own (the broker unreachable past the
  producer's delivery timeout) is *failed*, and the replay stops.

:class:`ReplayStats` says how many records landed and lists the refused and failed ones with their
position in the replay; with ``strict=True`` the first refused record raises :class:`RecordRefused`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2
from kafka.record.default_records import DefaultRecordBatchBuilder

from streamrec.models.errors import InputError
from streamrec.models.events import Event
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError
from streamrec.stream.logs import get_logger
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from streamrec.stream.topics import admin_client

log = get_logger(__name__)

MAX_EXAMPLES = 20          # refused / failed records kept with their reason (all are counted)
MAX_RESEND_ROUNDS = 1_000  # rounds of resending after the broker refused a record (each settles >= 1 record)
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # assumed when the topic's config cannot be read


@dataclass(frozen=True)
class Pacing:
    mode: str = "max"          # max | rate | speedup
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("max", "rate", "speedup"):
            raise InputError(f"pacing must be max, rate or speedup, not {self.mode!r}")
        if self.mode != "max" and not (self.value > 0 and self.value != float("inf")):
            raise InputError(f"--{self.mode} needs a positive finite number, got {self.value} "
                             "(omit it to replay as fast as possible)")


@dataclass(frozen=True)
class NotSent:
    """A record that did not land: its 1-based position in the replay, the event, and why."""

    number: int
    event: Event
    reason: str

    def __str__(self) -> str:
        return f"record {self.number} (event {self.event.event_id}): {self.reason}"


@dataclass(frozen=True)
class ReplayStats:
    events: int                # records that landed on the topic
    seconds: float
    interrupted: bool
    last_event_id: str | None  # the last event handed to the producer
    refused_count: int = 0     # records refused for their own sake (too large, invalid): bad rows
    failed_count: int = 0      # records not delivered for another reason (the broker, the network)
    refused: tuple[NotSent, ...] = ()  # the first MAX_EXAMPLES of each, in replay order
    failed: tuple[NotSent, ...] = ()
    resent: int = 0            # records resent after the broker refused a record batched with them

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        """Every record handed to the replay landed (none refused, none failed, not interrupted)."""
        return not (self.refused_count or self.failed_count or self.interrupted)


class RecordRefused(InputError):
    """Raised in strict mode at the first refused record (after flushing what was sent before it)."""

    def __init__(self, record: NotSent, landed: int) -> None:
        super().__init__(f"{record}; the replay stopped there, {landed:,} events were sent (drop --strict "
                         "to skip refused records and report them)")
        self.record = record
        self.landed = landed


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


@dataclass(frozen=True)
class TopicInfo:
    partitions: int
    max_message_bytes: int | None  # None: the topic's config could not be read


def describe_topic(settings: Settings, topic: str) -> TopicInfo:
    """The topic's partition count and ``max.message.bytes``, from the cluster's metadata; a missing topic
    is a :class:`BrokerError` (one line, at once: nothing waits for the topic to appear)."""
    admin = admin_client(settings)
    try:
        desc = admin.describe_topics([topic])
        if not desc or desc[0].get("error_code") or not desc[0].get("partitions"):
            raise BrokerError(f"topic {topic!r} does not exist on {settings.bootstrap}; create it (`streamrec "
                              "topics create` makes the events topic) or check --topic")
        limit: int | None
        try:
            configs = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None})],
                config_filter="all")
            limit = int(configs["topic"][topic]["max.message.bytes"]["value"])
        except (KafkaError, KeyError, TypeError, ValueError) as exc:  # e.g. no DescribeConfigs permission
            log.warning("replay.topic_config_unreadable", topic=topic, error=str(exc),
                        assumed=KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
            limit = None
        return TopicInfo(len(desc[0]["partitions"]), limit)
    except KafkaError as exc:
        raise BrokerError(f"cannot read the metadata of topic {topic!r} on {settings.bootstrap}: {exc}") from exc
    finally:
        admin.close()


class SizeCheck:
    """Refuses a record before it is sent when the broker would refuse it: its record batch (compressed as
    the producer compresses) is larger than ``max.message.bytes``, or it is larger than ``max_request_size``.
    Records well under the limits (nearly all) cost one addition and one comparison."""

    _SLACK = 256  # batch header and record overhead: a record this far under the limits always fits

    def __init__(self, max_request_size: int, max_message_bytes: int, compression_attrs: int) -> None:
        self.max_request_size = max_request_size
        self.max_message_bytes = max_message_bytes
        self.compression_attrs = compression_attrs
        self.fast = min(max_request_size, max_message_bytes) - self._SLACK

    @classmethod
    def for_producer(cls, producer: KafkaProducer, max_message_bytes: int | None) -> SizeCheck:
        config = producer.config
        return cls(int(config["max_request_size"]), max_message_bytes or KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
                   int(config.get("compression_attrs") or 0))

    def __call__(self, key: bytes, value: bytes) -> str | None:
        if len(key) + len(value) <= self.fast:
            return None
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
        if size > self.max_request_size:
            return (f"the record is {size:,} bytes, more than the producer's max_request_size "
                    f"({self.max_request_size:,})")
        if size > self.max_message_bytes:
            batch = DefaultRecordBatchBuilder(2, self.compression_attrs, False, -1, -1, -1, size + 1024)
            batch.append(0, int(time.time() * 1000), key, value, [])
            size = len(batch.build())
            if size > self.max_message_bytes:
                how = " compressed" if self.compression_attrs else ""
                return (f"the record is {size:,} bytes{how}, more than the topic's max.message.bytes "
                        f"({self.max_message_bytes:,})")
        return None


def _reason(exc: BaseException) -> str:
    detail = exc.args[0] if exc.args and exc.args[0] not in (None, "") else None
    name = type(exc).__name__
    return f"refused by the broker: {name}" + (f" ({detail})" if detail else "")


def _retriable(exc: BaseException) -> bool:
    """Not the record's fault: the broker or the network (timeouts, no leader, a closed producer)."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or type(exc).__name__ == "IllegalStateError"
    return False


class _Sender:
    """The producer and the records it failed to deliver: each send's future waits in ``pending`` (send
    order) and :meth:`collect` takes the resolved ones off the front, keeping the failures (a scan every few
    hundred sends costs less than an errback per record)."""

    def __init__(self, settings: Settings, producer: KafkaProducer | None, topic: str,
                 partition_of: KeyPartitioner) -> None:
        self.settings, self.topic, self.partition_of = settings, topic, partition_of
        self.own = producer is None
        self.prod = producer or clients.producer(settings)
        self.codec = codec_for("event")
        self.pending: deque[tuple[Any, int, Event]] = deque()
        self.failures: list[tuple[int, Event, BaseException]] = []
        self.refused: list[NotSent] = []
        self.failed: list[NotSent] = []
        self.refused_count = self.failed_count = self.resent = 0

    def encode(self, ev: Event) -> tuple[bytes, bytes]:
        return ev.user_id.encode(), self.codec.encode(ev.to_record())

    def send(self, number: int, ev: Event, key: bytes, value: bytes) -> None:
        try:
            future = self.prod.send(self.topic, key=key, value=value, partition=self.partition_of(key))
        except KafkaError as exc:
            self.failure(number, ev, exc)
            return
        self.pending.append((future, number, ev))

    def failure(self, number: int, ev: Event, exc: BaseException) -> None:
        self.failures.append((number, ev, exc))

    def collect(self) -> None:
        """Take the resolved sends off the front of ``pending``; a failed one joins ``failures``."""
        pending, failures = self.pending, self.failures
        while pending and pending[0][0].is_done:
            future, number, ev = pending.popleft()
            if future.exception is not None:
                failures.append((number, ev, future.exception))

    def _take(self) -> list[tuple[int, Event, BaseException]]:
        self.collect()
        taken, self.failures = self.failures, []
        return sorted(taken, key=lambda f: f[0])

    def refuse(self, number: int, ev: Event, reason: str) -> NotSent:
        record = NotSent(number, ev, reason)
        self.refused_count += 1
        if len(self.refused) < MAX_EXAMPLES:
            self.refused.append(record)
        return record

    def fail(self, number: int, ev: Event, reason: str) -> None:
        self.failed_count += 1
        if len(self.failed) < MAX_EXAMPLES:
            self.failed.append(NotSent(number, ev, reason))

    def flush(self) -> None:
        """``flush`` that outlasts kafka-python's own hiccups: after a batch was split or aborted it can
        raise although the batches completed (their futures still resolve). Every send is resolved after it."""
        for _ in range(50):
            try:
                self.prod.flush()
                self.collect()
                return
            except KafkaError as exc:
                error = exc
                time.sleep(0.05)
        raise BrokerError(f"cannot flush the replay's producer: {error}")

    def _renew(self) -> None:
        """Kafka fails an idempotent producer for good once the broker refuses a batch: start a new one."""
        try:
            self.prod.close(timeout=5)
        except KafkaError as exc:  # the failed producer's flush can raise: its batches are resolved anyway
            log.warning("replay.producer_close_failed", error=str(exc))
        self.prod = clients.producer(self.settings)

    def settle(self) -> bool:
        """Flush, then resend whatever failed, until every record has landed or is refused or failed.
        Returns False when the replay must stop (a delivery failure: the broker, not the records)."""
        self.flush()
        rounds = 0
        while True:
            taken = self._take()
            if not taken:
                return True
            if not self.own or rounds >= MAX_RESEND_ROUNDS or any(_retriable(exc) for _, _, exc in taken):
                for number, ev, exc in taken:
                    if _retriable(exc) or not self.own:
                        self.fail(number, ev, f"not delivered: {type(exc).__name__} ({exc})")
                    else:
                        self.refuse(number, ev, _reason(exc))
                return False
            rounds += 1
            log.warning("replay.resending", records=len(taken), first=taken[0][0], reason=_reason(taken[0][2]))
            # the first failed record alone, on a fresh producer: if it fails again, it is refused for its own
            # sake; the rest follow it (they were taken down with it, or are refused in a later round)
            (number, ev, _), rest = taken[0], taken[1:]
            self._renew()
            self.send(number, ev, *self.encode(ev))
            self.flush()
            again = self._take()
            if again:
                exc = again[0][2]
                if _retriable(exc):
                    self.fail(number, ev, f"not delivered: {type(exc).__name__} ({exc})")
                    for n, e, x in rest:
                        self.fail(n, e, f"not delivered: {type(x).__name__} ({x})")
                    return False
                self.refuse(number, ev, _reason(exc))
                self._renew()
            else:
                self.resent += 1
            for n, e, _ in rest:
                self.send(n, e, *self.encode(e))
            self.resent += len(rest)
            self.flush()

    def close(self) -> None:
        if self.own:
            self.flush()
            try:
                self.prod.close(timeout=10)
            except KafkaError as exc:
                log.warning("replay.producer_close_failed", error=str(exc))


def _target_time(pacing: Pacing, start: float, i: int, first_ts: int, ts: int) -> float:
    if pacing.mode == "rate":
        return start + i / pacing.value
    if pacing.mode == "speedup":
        return start + (ts - first_ts) / 1000.0 / pacing.value
    return start


def replay(events: Iterable[Event], settings: Settings, pacing: Pacing = Pacing(),
           topic: str | None = None, progress: Callable[[int], None] | None = None,
           producer: KafkaProducer | None = None, sent_at: dict[str, float] | None = None,
           stop: threading.Event | None = None, strict: bool = False,
           max_message_bytes: int | None = None) -> ReplayStats:
    """Produce ``events`` in order; flushes and reports where it stopped on Ctrl-C. With ``sent_at``, the
    wall-clock time (ms) each event was handed to the producer is recorded by event id (for latency).
    Setting ``stop`` ends the replay early (after a flush), like Ctrl-C. ``max_message_bytes`` overrides
    the topic's own limit for the size check (read from the topic when None).

    Raises :class:`BrokerError` at once when the topic does not exist, and in strict mode
    :class:`RecordRefused` at the first record that cannot land on the topic."""
    topic = topic or settings.events_topic
    info = describe_topic(settings, topic)
    out = _Sender(settings, producer, topic, KeyPartitioner(info.partitions))
    check = SizeCheck.for_producer(out.prod, max_message_bytes or info.max_message_bytes)
    # the hot loop binds what it calls (a send is ~30 us of kafka-python; these lookups would add a tenth)
    encode_value, partition_of, on_failure, refuse = out.codec.encode, out.partition_of, out.failure, out.refuse
    produce, pending = out.prod.send, out.pending.append
    handed, last_id, interrupted, stopped = 0, None, False, False
    first_ts: int | None = None
    push: clients.Push | None = None   # paced: ships the records handed over before each wait
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
                    # what was handed over leaves during the wait, not after the producer's linger
                    if push is None or push.producer is not out.prod:
                        push = clients.Push(out.prod)
                    push.push()
                    time.sleep(delay)
                    push.settle()
            handed = i + 1
            key = ev.user_id.encode()
            value = encode_value(ev.to_record())
            too_large = check(key, value)
            if too_large is not None:
                refuse(handed, ev, too_large)
                if strict:
                    break
                continue
            if sent_at is not None:
                sent_at[ev.event_id] = time.time() * 1000
            try:
                pending((produce(topic, key=key, value=value, partition=partition_of(key)), handed, ev))
            except KafkaError as exc:
                on_failure(handed, ev, exc)
            last_id = ev.event_id
            if handed % 256 == 0:
                out.collect()
            if out.failures:  # the broker refused something: settle before going on, so order is kept
                if not out.settle():
                    stopped = True
                    break
                produce = out.prod.send  # settling may have replaced the producer
                if strict and out.refused_count:
                    break
            if progress is not None and handed % 1000 == 0:
                progress(1000)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        try:
            if not stopped:
                out.settle()
        finally:
            out.close()
    if progress is not None and handed % 1000:
        progress(handed % 1000)
    landed = handed - out.refused_count - out.failed_count
    if strict and out.refused_count:
        raise RecordRefused(out.refused[0], landed)
    return ReplayStats(landed, time.perf_counter() - start, interrupted, last_id, out.refused_count,
                       out.failed_count, tuple(out.refused), tuple(out.failed), out.resent)
