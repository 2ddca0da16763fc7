"""Client factories: every producer and consumer streamrec makes comes from here, configured alike."""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from streamrec.stream.errors import BrokerError
from streamrec.stream.settings import Settings


def _compression(settings: Settings) -> str | None:
    return None if settings.compression in ("", "none") else settings.compression


def producer(settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> KafkaProducer:
    """An idempotent producer (acks=all); transactional when ``transactional_id`` is given."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "client_id": settings.client_id,
        "enable_idempotence": True,
        "acks": "all",
        "compression_type": _compression(settings),
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
    }
    if transactional_id:
        config["transactional_id"] = transactional_id
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except Exception as exc:
        raise BrokerError(f"cannot create a producer for {settings.bootstrap}: {exc}. Is the broker running "
                          "(`streamrec broker status`)?") from exc


def consumer(settings: Settings, *topics: str, group: str | None = None, **overrides: Any) -> KafkaConsumer:
    """A consumer with manual commits; ``read_committed`` so transactional output is read safely."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "client_id": settings.client_id,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": settings.max_batch,
        "fetch_max_wait_ms": 50,
    }
    config.update(overrides)
    try:
        return KafkaConsumer(*topics, **config)
    except Exception as exc:
        raise BrokerError(f"cannot create a consumer for {settings.bootstrap}: {exc}. Is the broker running "
                          "(`streamrec broker status`)?") from exc
