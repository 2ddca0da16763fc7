"""Read a topic and decode what is on it: the ``streamrec tail`` subscriber."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition

from streamrec.models.errors import InputError
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError, DecodeError
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings


@dataclass(frozen=True)
class Message:
    record: Record
    value: dict[str, Any] | None      # decoded value, or None for dead letters / undecodable bytes
    error: str | None = None


def codec_name(settings: Settings, topic: str) -> str | None:
    if topic == settings.events_topic:
        return "event"
    if topic == settings.recommendations_topic:
        return "recommendation"
    if topic == settings.model_topic:
        return "model_chunk"
    if topic.endswith(".state"):
        return "user_state"
    return None  # dead letters and unknown topics: raw bytes + headers


def read(settings: Settings, topic: str, *, from_beginning: bool = False, user: str | None = None,
         max_messages: int | None = None, timeout_s: float | None = None) -> Iterator[Message]:
    """Yield decoded messages from every partition of ``topic`` (read_committed), until ``max_messages``,
    or ``timeout_s`` seconds without a new message (forever when both are None)."""
    if max_messages is not None and max_messages < 1:
        raise InputError(f"max_messages must be at least 1, got {max_messages}")
    if timeout_s is not None and not timeout_s >= 0:
        raise InputError(f"timeout_s must be 0 or more seconds, got {timeout_s}")
    consumer = clients.consumer(settings, group=None, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise BrokerError(f"topic {topic!r} does not exist on {settings.bootstrap}; "
                              "run `streamrec topics create` or check the name")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*tps)
        name = codec_name(settings, topic)
        codec = codec_for(name) if name else None
        wanted = user.encode() if user is not None else None
        seen, idle_since = 0, time.monotonic()
        while max_messages is None or seen < max_messages:
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                if timeout_s is not None and time.monotonic() - idle_since > timeout_s:
                    return
                continue
            idle_since = time.monotonic()
            for recs in batch.values():
                for raw in recs:
                    rec = Record.from_kafka(raw)
                    if wanted is not None and rec.key != wanted:
                        continue
                    yield _decode(codec, rec)
                    seen += 1
                    if max_messages is not None and seen >= max_messages:
                        return
    finally:
        consumer.close()


def _decode(codec: Any, rec: Record) -> Message:
    if codec is None or rec.value is None:
        return Message(rec, None)
    try:
        return Message(rec, codec.decode(rec.value))
    except DecodeError as exc:
        return Message(rec, None, str(exc))
