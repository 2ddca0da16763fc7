"""Catalog records on the wire: :class:`~streamrec.models.catalog.item.Item` <-> ``stream/schemas/item.avsc``,
and the items topic read in full (what ``streamrec catalog set|show`` and a starting worker do).

:func:`decode_item` validates every field of a record read from the topic (the rules of
:func:`streamrec.models.catalog.checks.check_item`) and raises :class:`InvalidRecordError` with the reason;
a key that is not the record's item id is refused too (compaction keeps one record per key, so a mismatch
would leave two items fighting over one slot).

>>> from streamrec.models.catalog.item import Item
>>> it = Item("sku-1", "Shoe", category=("shoes", "running"), price=59.0, hidden=True, updated_at_ms=1_700_000_000_000)
>>> decode_item(encode_item(it), b"sku-1") == it
True
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from streamrec.models.catalog.checks import ItemLimits, check_item
from streamrec.models.catalog.item import Item
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError, InvalidRecordError
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

__all__ = ["decode_item", "encode_item", "item_from_record", "item_to_record", "read_catalog"]


def item_to_record(item: Item) -> dict[str, Any]:
    return {"item_id": item.item_id, "title": item.title, "description": item.description,
            "category": list(item.category), "brand": item.brand, "price": item.price, "tags": list(item.tags),
            "available": item.available, "hidden": item.hidden, "created_at": item.created_at_ms,
            "updated_at": item.updated_at_ms, "attributes": dict(item.attributes)}


def item_from_record(rec: dict[str, Any]) -> Item:
    return Item(rec["item_id"], rec["title"], rec["description"], tuple(rec["category"]), rec["brand"],
                rec["price"], tuple(rec["tags"]), rec["available"], rec["hidden"], rec["created_at"],
                rec["updated_at"], dict(rec["attributes"]))


def encode_item(item: Item) -> bytes:
    return codec_for("item").encode(item_to_record(item))


def decode_item(value: bytes, key: bytes | None = None, limits: ItemLimits = ItemLimits(),
                now_ms: int | None = None) -> Item:
    """The item of one topic record; :class:`DecodeError` (bad bytes) or :class:`InvalidRecordError`."""
    item = item_from_record(codec_for("item").decode(value))
    reason = check_item(item, limits, now_ms)
    if reason is not None:
        raise InvalidRecordError(reason)
    if key is not None and key != item.item_id.encode("utf-8", "surrogatepass"):
        raise InvalidRecordError(f"key {key[:64]!r} is not the item id {item.item_id[:64]!r}")
    return item


def read_catalog(settings: Settings, topic: str | None = None, timeout_s: float = 60.0) -> Iterator[Record]:
    """Every record of the items topic now, from the beginning to the end offsets taken when it starts (records
    written later are not waited for). :class:`BrokerError` when the topic is missing or the read stalls."""
    name = topic or settings.items_topic
    consumer = clients.consumer(settings, group=None, client_id=f"{settings.client_id}-catalog-read")
    try:
        parts = consumer.partitions_for_topic(name)
        if not parts:
            raise BrokerError(f"topic {name!r} does not exist on {settings.bootstrap}; run `streamrec topics "
                              "create`")
        tps = [TopicPartition(name, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise BrokerError(f"reading {name} did not reach its end in {timeout_s:.0f}s")
            for recs in consumer.poll(timeout_ms=200).values():
                for r in recs:
                    if r.offset < end[TopicPartition(r.topic, r.partition)]:
                        yield Record.from_kafka(r)
    except KafkaError as exc:
        raise BrokerError(f"reading {name} failed: {exc}") from exc
    finally:
        consumer.close()
