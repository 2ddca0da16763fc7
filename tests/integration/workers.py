"""Helpers for worker integration tests: in-process workers on threads, event factories, state readers."""

from __future__ import annotations

import threading
import time
from typing import Any

from kafka import TopicPartition

from streamrec.consumers.worker import Worker
from streamrec.e2e import wait_until
from streamrec.models.events import Event, EventType
from streamrec.stream import clients
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

T0 = int(time.time() * 1000) - 3_600_000


def ev(k: int, user: str, item: str, etype: EventType = EventType.CLICK, ts: int | None = None) -> Event:
    return Event(f"{user}-e{k}", user, item, etype, ts if ts is not None else T0 + k * 1000)


class ThreadWorker:
    """A Worker running on a thread; ``stop()`` asks it to finish its batch, commit and close."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.worker = Worker(settings, **kwargs)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop()
            self.error = exc

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        assert wait_until(lambda: self.worker.ready, timeout_s), "worker got no partitions"

    def stop(self) -> None:
        self.worker.stop_event.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error


def read_all(settings: Settings, topic: str, codec: str | None, timeout_s: float = 30.0) -> list[tuple[Any, Any]]:
    """(record, decoded value or None) for everything committed on ``topic`` now."""
    dec = codec_for(codec) if codec else None
    consumer = clients.consumer(settings, group=None)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[tuple[Any, Any]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=100).values():
                for r in recs:
                    out.append((r, dec.decode(r.value) if dec and r.value is not None else None))
        return out
    finally:
        consumer.close()


def latest_states(settings: Settings) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    for rec, value in read_all(settings, settings.state_topic(), "user_state"):
        states[rec.key.decode()] = value
    return states
