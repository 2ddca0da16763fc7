"""A frozen wrapper for kafka-python's ConsumerRecord, made at the edge and never unpacked positionally."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_kafka(cls, rec: Any) -> Record:
        return cls(topic=rec.topic, partition=rec.partition, offset=rec.offset, timestamp_ms=rec.timestamp,
                   key=rec.key, value=rec.value, headers=tuple(rec.headers or ()))

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None
