"""Shared fixtures. Integration tests talk to a real Apache Kafka broker started once per test session on
free loopback ports (never mocked); each test gets unique topic and group names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamrec.e2e import broker_ports
from streamrec.stream import broker
from streamrec.stream.settings import Settings
from streamrec.stream.topics import ensure_topics, topic_specs

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"



@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running broker. With STREAMREC_BOOTSTRAP_SERVERS set, that cluster is used instead."""
    env = {k: v for k, v in os.environ.items() if k.startswith("STREAMREC_")}
    base = Settings.from_env(env)
    if not base.embedded:
        yield base
        return
    settings = base.replace(**broker_ports(),
                            broker_dir=str(tmp_path_factory.mktemp("broker")), broker_start_timeout_s=90.0)
    broker.start(settings, quiet=True)
    try:
        yield settings
    finally:
        broker.stop(settings)


@pytest.fixture
def settings(kafka: Settings) -> Settings:
    """Settings with unique topic and group names for one test; the topics exist."""
    tag = uuid.uuid4().hex[:8]
    s = kafka.replace(events_topic=f"events-{tag}", recommendations_topic=f"recs-{tag}",
                      dlq_topic=f"dlq-{tag}", model_topic=f"models-{tag}", group=f"g-{tag}",
                      events_partitions=3, recommendations_partitions=3)
    ensure_topics(s, topic_specs(s))
    return s


@pytest.fixture(scope="session")
def movielens_path() -> Path:
    path = SHARED_DATA / "movielens-100k" / "u.data"
    if not path.exists():
        pytest.fail(f"MovieLens-100K is expected at {path} (../shared/data beside the checkout)")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
