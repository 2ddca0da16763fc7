"""Keeps the service's view up to date: one consumer (no group) on ``recommendations``, ``events`` and
``events.dlq``, on its own thread.

At start the recommendations partitions are read from the beginning to their end (the service is *ready*
then), and followed after that; ``events`` and the dead-letter topic are read from their last
``tail`` records per partition (the dashboard's recent events and dead-letter types) and followed. Every
two seconds the worker group's lag per events partition (end offset minus the group's committed offset)
and the dead-letter topic's size are read. Errors of one iteration are logged and the loop goes on after a
short backoff, as the worker's does; ``health_problem`` reports a dead or stalled thread.

:meth:`Follower.take` is the Kafka-free half (records in, view updated), so it runs in unit tests on
:class:`~streamrec.stream.records.Record` objects.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from kafka import TopicPartition

from streamrec.consumers.decode import event_limits
from streamrec.consumers.reconnect import RECONNECT
from streamrec.consumers.serve.view import Activity, EventIndex, Figures, ListView, StoredList, parse_list
from streamrec.models.events import Event, check_event
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError, DecodeError
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

log = structlog.get_logger("streamrec.serve")

LAG_EVERY_S = 2.0
STALL_S = 30.0


class Follower:
    """The view, the recent activity and the dashboard's figures, fed from the topics."""

    def __init__(self, settings: Settings, tail: int = 200) -> None:
        self.settings = settings
        self.tail = tail
        self.view = ListView(max_users=settings.max_users, ttl_ms=int(settings.user_ttl_s * 1000))
        self.activity = Activity()
        self.index = EventIndex()
        self.figures = Figures()
        self.limits = event_limits(settings.max_id_bytes)
        self._rec_codec = codec_for("recommendation")
        self._event_codec = codec_for("event")
        self.ready = threading.Event()
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.last_poll = time.monotonic()
        self.restored = 0
        self._thread: threading.Thread | None = None
        self._skipped_logged = 0

    # --- the Kafka-free half -----------------------------------------------------------------------
    def take(self, records: list[Record]) -> None:
        """Records of any of the three topics, in topic order per partition."""
        s = self.settings
        lists: list[StoredList] = []
        for rec in records:
            if rec.topic == s.recommendations_topic:
                sl = self._list(rec)
                if sl is not None:
                    lists.append(sl)
                elif rec.value is None and rec.key is not None:
                    self._flush(lists)
                    self.view.remove(rec.key.decode("utf-8", "replace"))
            elif rec.topic == s.events_topic:
                self._flush(lists)      # a list and the event after it, in order: the hit rate tests that list
                self._event(rec)
            elif rec.topic == s.dlq_topic:
                kind = rec.header("error.type")
                self.figures.dead_letters[(kind or b"unknown").decode("utf-8", "replace")[:64]] += 1
        self._flush(lists)
        self.view.refresh_trending()
        self.figures.sample()

    def _list(self, rec: Record) -> StoredList | None:
        if rec.value is None:
            return None
        try:
            decoded: Any = self._rec_codec.decode(rec.value)
        except DecodeError as exc:
            parsed: StoredList | str = f"cannot decode: {exc}"
        else:
            parsed = parse_list(decoded, rec.key, rec.partition, rec.offset, rec.timestamp_ms,
                                self.settings.max_id_bytes)
        if isinstance(parsed, str):
            self.figures.skipped_lists += 1
            self._skipped_logged += 1
            if self._skipped_logged <= 10 or self._skipped_logged % 1000 == 0:
                log.warning("recommendation record skipped", partition=rec.partition, offset=rec.offset,
                            reason=parsed, skipped=self.figures.skipped_lists)
            return None
        return parsed

    def _flush(self, lists: list[StoredList]) -> None:
        if not lists:
            return
        fig = self.figures
        for sl in lists:
            fig.lists += 1
            fig.model(sl.model_version, sl.emitted_at)
            seen = self.index.get(sl.trigger_event_id)
            if seen is not None and seen[0] == sl.trigger_partition:
                fig.latency(max(0.0, float(sl.emitted_at - seen[2])))
        self.view.put_many(lists)
        lists.clear()

    def _event(self, rec: Record) -> None:
        self.figures.events += 1
        try:
            if rec.value is None:
                raise DecodeError("null value")
            event = Event.from_record(self._event_codec.decode(rec.value))
            if check_event(event, self.limits, int(time.time() * 1000)) is not None:
                raise DecodeError("invalid event")
        except (DecodeError, KeyError, ValueError, TypeError, OverflowError):
            self.figures.bad_events += 1     # the worker dead-letters it; the dashboard counts it
            return
        self.index.add(event.event_id, rec.partition, rec.offset, rec.timestamp_ms)
        self.activity.add(event, "topic", rec.partition, rec.offset)
        shown = self.view.get(event.user_id)
        if shown is not None and shown.trigger_partition == rec.partition and shown.trigger_offset < rec.offset:
            self.figures.hit(shown.has_item(event.item_id))   # test-then-train, as the worker counts it

    def posted(self, event: Event, partition: int, offset: int, record_ts: int) -> None:
        """An event this service produced and the broker acknowledged."""
        self.index.add(event.event_id, partition, offset, record_ts)
        self.activity.add(event, "http", partition, offset)

    def list_after(self, user_id: str, event_id: str) -> StoredList | None:
        """The user's list if it already follows event ``event_id`` (its trigger is that event or a later
        one of the same partition), else None."""
        sl = self.view.get(user_id)
        where = self.index.get(event_id)
        if sl is None or where is None:
            return None
        return sl if sl.trigger_partition == where[0] and sl.trigger_offset >= where[1] else None

    # --- the thread ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="streamrec-serve-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def health_problem(self) -> str | None:
        if self._thread is not None and not self._thread.is_alive():
            return f"the topic follower stopped: {self.error!r}" if self.error else "the topic follower stopped"
        age = time.monotonic() - self.last_poll
        return f"no poll of the topics for {age:.0f}s" if age > STALL_S else None

    def _run(self) -> None:
        try:
            self._follow()
        except BaseException as exc:  # noqa: BLE001 - reported by health_problem and the log
            self.error = exc
            log.error("topic follower stopped", error=f"{type(exc).__name__}: {exc}")

    def _follow(self) -> None:
        s = self.settings
        consumer = clients.consumer(s, group=None, max_poll_records=5000, fetch_max_wait_ms=20, **RECONNECT)
        admin = None
        try:
            rec_tps = _partitions(consumer, s.recommendations_topic, required=True)
            event_tps = _partitions(consumer, s.events_topic, required=False)
            dlq_tps = _partitions(consumer, s.dlq_topic, required=False)
            consumer.assign(rec_tps + event_tps + dlq_tps)
            consumer.seek_to_beginning(*rec_tps)
            begin = consumer.beginning_offsets(event_tps + dlq_tps) if event_tps or dlq_tps else {}
            end = consumer.end_offsets(rec_tps + event_tps + dlq_tps)
            for tp in event_tps + dlq_tps:
                consumer.seek(tp, max(begin[tp], end[tp] - self.tail))
            pending = {tp for tp in rec_tps if end[tp] > 0}
            started, backoff, next_lag = time.monotonic(), 0.1, 0.0
            log.info("restoring recommendations", topic=s.recommendations_topic,
                     records=sum(end[tp] for tp in rec_tps))
            while not self.stop_event.is_set():
                try:
                    batch = consumer.poll(timeout_ms=50)
                    self.last_poll = time.monotonic()
                    self.take([Record.from_kafka(r) for recs in batch.values() for r in recs])
                    if not self.ready.is_set():
                        pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
                        if not pending:
                            self.restored = len(self.view)
                            self.ready.set()
                            log.info("recommendations restored", users=len(self.view),
                                     seconds=round(time.monotonic() - started, 2))
                    if self.last_poll >= next_lag:
                        next_lag = self.last_poll + LAG_EVERY_S
                        if admin is None:
                            admin = clients.admin(s)
                        self._lag(consumer, admin, event_tps, dlq_tps)
                    backoff = 0.1
                except Exception as exc:  # noqa: BLE001 - one failed iteration; the loop goes on
                    log.warning("topic follower iteration failed", error=f"{type(exc).__name__}: {exc}",
                                retry_in_s=backoff)
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            consumer.close()
            if admin is not None:
                admin.close()

    def _lag(self, consumer: Any, admin: Any, event_tps: list[TopicPartition], dlq_tps: list[TopicPartition]) -> None:
        if event_tps:
            end = consumer.end_offsets(event_tps)
            committed = admin.list_group_offsets({self.settings.group: event_tps}).get(self.settings.group, {})
            lag = {}
            for tp in event_tps:
                c = committed.get(tp)
                if c is not None and c.offset >= 0:
                    lag[tp.partition] = max(0, end[tp] - c.offset)
            self.figures.lag = lag
        if dlq_tps:
            begin, end = consumer.beginning_offsets(dlq_tps), consumer.end_offsets(dlq_tps)
            self.figures.dlq_total = sum(end[tp] - begin[tp] for tp in dlq_tps)


def _partitions(consumer: Any, topic: str, required: bool) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        if required:
            raise BrokerError(f"topic {topic} does not exist; create it with `streamrec topics create`")
        log.warning("topic not found; not followed", topic=topic)
        return []
    return [TopicPartition(topic, p) for p in sorted(parts)]
