"""The topics streamrec uses, with partition counts and cleanup policies from the settings."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from streamrec.stream import clients
from streamrec.stream.errors import BrokerError
from streamrec.stream.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings, group: str | None = None) -> list[TopicSpec]:
    """events (delete), recommendations (compact + retention), events.dlq (delete),
    model-updates (delete, long retention; one partition keeps chunks in order), <group>.state (compact,
    co-partitioned with events), items (the catalog: compact, keyed by item id, kept for ever), and the item
    plane's <group>.item-deltas (delete), <group>.items.state (compact, co-partitioned with item-deltas) and
    <group>.item-results (compact); the item topics' names are those of the settings when set."""
    return [
        TopicSpec(settings.events_topic, settings.events_partitions,
                  {"cleanup.policy": "delete", "retention.ms": str(settings.events_retention_ms)}),
        TopicSpec(settings.recommendations_topic, settings.recommendations_partitions,
                  {"cleanup.policy": "compact,delete", "retention.ms": str(settings.recommendations_retention_ms)}),
        TopicSpec(settings.dlq_topic, 1,
                  {"cleanup.policy": "delete", "retention.ms": str(settings.dlq_retention_ms)}),
        TopicSpec(settings.model_topic, 1,
                  {"cleanup.policy": "delete", "retention.ms": str(settings.model_retention_ms),
                   "max.message.bytes": str(2 * 1024 * 1024)}),
        TopicSpec(settings.state_topic(group), settings.events_partitions, {"cleanup.policy": "compact"}),
        TopicSpec(settings.items_topic, settings.items_partitions, {"cleanup.policy": "compact"}),
        # the item plane (docs/item-plane.md): deltas by item, the owners' changelog, the compacted results
        TopicSpec(settings.item_deltas_name(group), settings.item_partitions,
                  {"cleanup.policy": "delete", "retention.ms": str(settings.events_retention_ms)}),
        TopicSpec(settings.item_state_topic(group), settings.item_partitions, {"cleanup.policy": "compact"}),
        TopicSpec(settings.item_results_name(group), settings.item_partitions, {"cleanup.policy": "compact"}),
    ]


def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> dict[str, str]:
    """Create the topics that do not exist yet; returns {name: "created" | "exists"}. Safe to run twice."""
    specs = topic_specs(settings) if specs is None else specs
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        result: dict[str, str] = {}
        for spec in specs:
            if spec.name in existing:
                result[spec.name] = "exists"
                continue
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.config)])
                result[spec.name] = "created"
            except TopicAlreadyExistsError:
                result[spec.name] = "exists"
        created = [n for n, what in result.items() if what == "created"]
        if created:
            _wait_for_leaders(admin, created, settings.bootstrap)
        return result
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, names: list[str], bootstrap: str, timeout_s: float = 30.0) -> None:
    """Return once every partition of ``names`` has a leader, so a consumer that starts right after
    sees the whole topic (otherwise its first assignment can miss partitions until a metadata refresh)."""
    deadline = time.monotonic() + timeout_s
    while True:
        desc = admin.describe_topics(names)
        if all(not d.get("error_code") and d["partitions"] and all(p["leader_id"] >= 0 for p in d["partitions"])
               for d in desc):
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics {names} have no leader on {bootstrap} after {timeout_s:.0f}s")
        time.sleep(0.05)


def admin_client(settings: Settings) -> KafkaAdminClient:
    """An admin client from :func:`streamrec.stream.clients.admin` (security settings included)."""
    return clients.admin(settings)


def partitions_for(settings: Settings, topic: str) -> int:
    admin = admin_client(settings)
    try:
        desc = admin.describe_topics([topic])
    finally:
        admin.close()
    if not desc or desc[0].get("error_code"):
        raise BrokerError(f"topic {topic!r} does not exist on {settings.bootstrap}; run `streamrec topics create`")
    return len(desc[0]["partitions"])
