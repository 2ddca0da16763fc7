"""Workers follow the catalog: the items topic, read in full at start, then followed between two batches.

* **Start**: :meth:`CatalogFollower.load` reads every partition of the items topic from the beginning up to
  the end offsets it finds, and hands the records to ``Recommender.update_catalog`` before the worker serves
  (``consumers/assembly.py`` calls it while assembling, before the loop's first poll): a restarted worker never
  lists an item the catalog blocks. The read is bounded by ``STREAMREC_RESTORE_TIMEOUT_S``; a missing items
  topic is a warning (the worker serves without a catalog and looks for the topic again every 30 s).
* **Following**: a thread of the follower (started by the first :meth:`CatalogFollower.between_batches`,
  so only a serving worker runs it) long-polls the items topic, validates what arrives and queues it; the
  hook, one of the loop's between-batch hooks, hands the queue to the engine before the loop processes its
  next batch (an empty queue costs one test). So a record takes effect in the first batch that starts after
  it reached the worker: a hidden or unavailable item leaves every list emitted after the batch during which
  the record was read, and stays out until a newer record makes it recommendable again (the store keeps the
  newest record of each item; models/catalog/store.py). Polling from the hook itself (``poll(0)``) was
  measured first: the record then took 2 batches to arrive, as a fetch response is only read by a later
  poll.
* **Validation**: every field of every record is checked (``stream.items.decode_item``: the Avro body, the
  rules of ``models.catalog.checks``, the key equal to the item id). A bad record becomes a dead letter on the
  DLQ with the worker's headers (``error.type``, ``error.message``, ``source.topic``, ``source.partition``,
  ``source.offset``) and is skipped; a null value (tombstone) removes the item from the catalog. Nothing here
  raises into the loop: a broker error is logged and the next hook tries again.

The follower uses a consumer of its own without a group (every worker reads every partition) and, only when
a bad record arrives, a plain producer for the DLQ (outside the worker's transactions). The thread never
dies of a record or a broker error (logged, retried after a backoff); :meth:`close` stops it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError

from streamrec.consumers.decode import DeadLetter
from streamrec.consumers.follow import BackgroundFollower, assign_from_beginning, read_to_end
from streamrec.models.catalog.checks import ItemLimits
from streamrec.models.catalog.item import Item
from streamrec.stream import clients
from streamrec.stream.errors import DecodeError
from streamrec.stream.items import decode_item
from streamrec.stream.records import Record
from streamrec.stream.settings import Settings

__all__ = ["CatalogFollower"]

RETRY_MISSING_S = 30.0


class CatalogFollower(BackgroundFollower):
    thread_name = "catalog"

    def __init__(self, settings: Settings, engine: Any, log: Any, *,
                 consumer_factory: Callable[[], Any] | None = None,
                 dead_letters: Callable[[DeadLetter], None] | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.settings, self.engine, self.log = settings, engine, log.bind(component="catalog")
        self.topic = settings.items_topic
        self.limits = ItemLimits(max_id_bytes=settings.max_id_bytes)
        self._consumer_factory = consumer_factory or (lambda: clients.consumer(
            settings, group=None, client_id=f"{settings.client_id}-catalog", max_poll_records=5000))
        self._dead_letters = dead_letters
        self._producer: Any = None
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.consumer: Any = None
        self._next_try = 0.0
        self.loaded = False
        self._lock = threading.Lock()
        self._queue: list[tuple[list[Item], list[str]]] = []
        self._thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self.n = dict.fromkeys(("records", "items", "tombstones", "dead_letters", "errors"), 0)
        self.last_update_at: float | None = None     # wall time the last record was applied

    # --- start -------------------------------------------------------------------------------------
    def _open(self) -> bool:
        """Assign every partition of the items topic from the beginning; False when the topic is missing."""
        self._next_try = time.monotonic() + RETRY_MISSING_S
        consumer = self._consumer_factory()
        if not assign_from_beginning(consumer, self.topic):
            self.log.warning("no items topic: serving without a catalog (create it with `streamrec topics "
                             "create`)", topic=self.topic)
            return False
        self.consumer = consumer
        return True

    def load(self, timeout_s: float | None = None) -> int:
        """Read the whole items topic (to the end offsets found now) into the engine; returns the records
        read. Called before the worker serves."""
        started = time.monotonic()
        timeout = self.settings.restore_timeout_s if timeout_s is None else timeout_s
        try:
            if self.consumer is None and not self._open():
                return 0
            before = self.n["records"]
            if not read_to_end(self.consumer, timeout, self._poll_and_drain, started):
                self.log.error("catalog not read in full before serving; the rest follows between batches",
                               timeout_s=timeout, records=self.n["records"] - before)
        except KafkaError as exc:
            self.n["errors"] += 1
            self.log.error("reading the catalog failed; serving with what was read", error=str(exc))
            return 0
        self.loaded = True
        read = self.n["records"] - before
        self.log.info("catalog loaded", records=read, items=len(self.engine.catalog),
                      blocked=len(self.engine.catalog.blocked), seconds=round(time.monotonic() - started, 3))
        return read

    def _poll_and_drain(self) -> None:
        self._poll(200)
        self._drain()

    # between_batches (the loop's hook) comes from BackgroundFollower: starts the thread, applies the queue
    def _drain(self) -> None:
        with self._lock:
            queued, self._queue = self._queue, []
        for items, gone in queued:     # in arrival order: newest-wins holds across chunks
            if items:
                self.engine.update_catalog(items)
            if gone:
                self.engine.remove_items(gone)
        if queued:
            self.last_update_at = time.time()
            self.log.info("catalog applied", records=sum(len(i) for i, _ in queued),
                          removed=sum(len(g) for _, g in queued))

    # --- the follower thread -----------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                if self.consumer is None and (time.monotonic() < self._next_try or not self._open()):
                    self.stop_event.wait(1.0)
                    continue
                self._poll(200)
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - nothing may stop the thread; retried after a backoff
                self.n["errors"] += 1
                self.log.warning("following the items topic failed; retrying", error=f"{type(exc).__name__}: "
                                 f"{exc}", backoff_s=backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _poll(self, timeout_ms: int) -> int:
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        if not polled:
            return 0
        records = [Record.from_kafka(r) for recs in polled.values() for r in recs]
        self.decode(records)
        return len(records)

    def decode(self, records: list[Record]) -> None:
        """Validate a chunk of items-topic records (arrival order) and queue them for the engine: items,
        tombstones (removals); bad records go to the DLQ."""
        now = self.clock_ms()
        items: list[Item] = []
        gone: list[str] = []
        bad: list[DeadLetter] = []
        for rec in records:
            self.n["records"] += 1
            try:
                if rec.value is None:
                    gone.append(_tombstone_id(rec.key, self.limits))
                    continue
                items.append(decode_item(rec.value, rec.key, self.limits, now))
            except DecodeError as exc:
                bad.append(DeadLetter(rec, exc.error_type, str(exc)))
            except (KeyError, ValueError, TypeError) as exc:
                bad.append(DeadLetter(rec, "invalid_record", f"{type(exc).__name__}: {exc}"))
        self.n["items"] += len(items)
        self.n["tombstones"] += len(gone)
        if items or gone:
            with self._lock:
                self._queue.append((items, gone))
        for dl in bad:
            self._dead_letter(dl)

    def _dead_letter(self, dl: DeadLetter) -> None:
        self.n["dead_letters"] += 1
        rec = dl.record
        self.log.warning("dead letter", topic=rec.topic, partition=rec.partition, offset=rec.offset,
                         error_type=dl.error_type, error=dl.message[:200])
        if self._dead_letters is not None:
            self._dead_letters(dl)
            return
        try:
            if self._producer is None:
                self._producer = clients.producer(self.settings, client_id=f"{self.settings.client_id}-catalog-dlq")
            self._producer.send(self.settings.dlq_topic, key=rec.key, value=rec.value, headers=dl.headers())
            self._producer.flush(timeout=10)
        except KafkaError as exc:
            self.n["errors"] += 1
            self.log.error("could not send a catalog dead letter", error=str(exc), offset=rec.offset)

    def stats(self) -> dict[str, Any]:
        return {f"catalog_follow_{k}": v for k, v in self.n.items()}

    def close(self) -> None:
        self.stop_event.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        for client in (self.consumer, self._producer):
            if client is not None:
                try:
                    client.close()
                except Exception as exc:  # noqa: BLE001 - closing on the way out
                    self.log.warning("closing a catalog client failed", error=str(exc))
        self.consumer = self._producer = None


def _tombstone_id(key: bytes | None, limits: ItemLimits) -> str:
    if not key:
        raise ValueError("a tombstone without a key")
    try:
        item_id = key.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("a tombstone whose key is not UTF-8") from None
    if not item_id.strip() or len(key) > limits.max_id_bytes:
        raise ValueError(f"a tombstone whose key is not an item id ({len(key)} bytes)")
    return item_id
