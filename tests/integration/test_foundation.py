"""The foundation on a real broker: topics, replay, read back, MovieLens-100K."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from streamrec.models.events import Event, EventType
from streamrec.producers.readers import read_events
from streamrec.producers.replay import Pacing, replay
from streamrec.stream import broker
from streamrec.stream.settings import Settings
from streamrec.stream.tail import read
from streamrec.stream.topics import ensure_topics, partitions_for, topic_specs


def _events(n: int) -> list[Event]:
    types = list(EventType)
    return [Event(f"e{k}", f"u{k % 37}", f"i{k % 101}", types[k % len(types)], 1_700_000_000_000 + k * 1000,
                  session_id=f"s{k % 5}" if k % 2 else None, value=float(k % 5) if k % 3 == 0 else None,
                  context={"k": str(k)} if k % 4 == 0 else {}) for k in range(n)]


def test_broker_reports_running(kafka: Settings) -> None:
    st = broker.status(kafka)
    assert st.running and st.bootstrap == kafka.bootstrap


def test_topic_creation_is_idempotent(settings: Settings) -> None:
    specs = topic_specs(settings)
    again = ensure_topics(settings, specs)
    assert set(again.values()) == {"exists"}
    assert partitions_for(settings, settings.events_topic) == settings.events_partitions
    assert partitions_for(settings, settings.model_topic) == 1


def test_replay_reads_back_exactly_the_events(settings: Settings) -> None:
    sent = _events(500)
    stats = replay(sent, settings, Pacing())
    assert stats.events == 500 and not stats.interrupted
    got = [Event.from_record(m.value) for m in read(settings, settings.events_topic, from_beginning=True,
                                                    max_messages=600, timeout_s=3) if m.value]
    assert len(got) == 500
    assert sorted(got, key=lambda e: e.event_id) == sorted(sent, key=lambda e: e.event_id)
    # keyed by user: every user's events sit in one partition, in order
    by_user: dict[str, set[int]] = defaultdict(set)
    for m in read(settings, settings.events_topic, from_beginning=True, max_messages=500, timeout_s=3):
        by_user[(m.record.key or b"").decode()].add(m.record.partition)
    assert all(len(parts) == 1 for parts in by_user.values())


def test_rate_pacing_is_respected(settings: Settings) -> None:
    stats = replay(_events(200), settings, Pacing("rate", 1000))
    assert stats.seconds >= 0.18  # 200 events at 1,000/s cannot finish in much less than 0.2 s


def test_movielens_100k_replays_in_time_order(settings: Settings, movielens_path: Path) -> None:
    result = read_events(movielens_path, "movielens")
    stats = replay(result.events, settings, Pacing())
    assert stats.events == 100_000
    per_partition: dict[int, list[int]] = defaultdict(list)
    n = 0
    for m in read(settings, settings.events_topic, from_beginning=True, max_messages=100_001, timeout_s=5):
        assert m.value is not None
        per_partition[m.record.partition].append(m.value["timestamp"])
        n += 1
    assert n == 100_000
    for stamps in per_partition.values():
        assert stamps == sorted(stamps)
