"""The synthetic generator: determinism, realistic structure (popularity, clusters, sessions, funnel,
drift), and round trips through write_log and the readers."""

from __future__ import annotations

import doctest
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrec.models.errors import InputError
from streamrec.models.events import Event, EventType
from streamrec.producers import synthetic
from streamrec.producers.readers import read_events
from streamrec.producers.synthetic import (
    DEFAULT_START_MS,
    SyntheticConfig,
    SyntheticLog,
    generate,
    simulate,
    write_log,
)


@pytest.fixture(scope="module")
def log() -> SyntheticLog:
    return simulate(SyntheticConfig(users=200, items=1000, events=40_000, seed=3))


def test_exact_count_ids_and_time_order(log: SyntheticLog) -> None:
    events = log.events
    assert len(events) == 40_000
    assert [e.timestamp_ms for e in events] == sorted(e.timestamp_ms for e in events)
    assert events[0].timestamp_ms >= DEFAULT_START_MS
    assert len({e.event_id for e in events}) == len(events) and events[0].event_id == "syn3-0"
    assert {e.user_id for e in events} <= {f"u{k}" for k in range(200)}
    assert {e.item_id for e in events} <= {f"i{k}" for k in range(1000)}
    assert all(e.context["category"] == log.truth.cluster_of(e.item_id) for e in events)
    for n in (0, 1, 7):
        assert len(generate(5, 3, n, seed=1)) == n


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    for suffix in (".jsonl", ".avro", ".jsonl.gz"):
        a, b, c = (tmp_path / f"{name}{suffix}" for name in "abc")
        write_log(generate(30, 100, 2_000, seed=11), a)
        write_log(generate(30, 100, 2_000, seed=11), b)
        write_log(generate(30, 100, 2_000, seed=12), c)
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()


def test_funnel_proportions_and_purchases_only_of_carted_items(log: SyntheticLog) -> None:
    counts = Counter(e.event_type for e in log.events)
    assert counts[EventType.VIEW] > counts[EventType.CLICK] > counts[EventType.ADD_TO_CART]
    assert counts[EventType.ADD_TO_CART] > counts[EventType.PURCHASE] > 0
    assert counts[EventType.VIEW] / len(log.events) > 0.5
    assert set(counts) == {EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE}
    carted: set[tuple[str, str | None, str]] = set()
    for e in log.events:
        key = (e.user_id, e.session_id, e.item_id)
        if e.event_type is EventType.ADD_TO_CART:
            carted.add(key)
        elif e.event_type is EventType.PURCHASE:
            assert key in carted
            assert e.value is not None and e.value > 0
        else:
            assert e.value is None


def test_popularity_is_skewed(log: SyntheticLog) -> None:
    views = Counter(e.item_id for e in log.events if e.event_type is EventType.VIEW)
    ranked = [n for _, n in views.most_common()]
    top_tenth = sum(ranked[: len(ranked) // 10])
    assert top_tenth / sum(ranked) > 0.4


def test_users_are_dominated_by_their_favourite_clusters(log: SyntheticLog) -> None:
    truth = log.truth
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in log.events:
        tally = hits[e.user_id]
        tally[0] += truth.cluster_of(e.item_id) in truth.favourites_at(e.user_id, e.timestamp_ms)
        tally[1] += 1
    shares = [inside / total for inside, total in hits.values() if total >= 100]
    assert len(shares) > 50
    assert min(shares) > 0.7 and sum(shares) / len(shares) > 0.85
    assert all(1 <= len(f) <= 3 for f in truth.favourites.values())


def test_sessions_belong_to_one_user_and_are_separated(log: SyntheticLog) -> None:
    spans: dict[str, list[int]] = {}
    owner: dict[str, str] = {}
    for e in log.events:
        assert e.session_id is not None
        assert owner.setdefault(e.session_id, e.user_id) == e.user_id
        span = spans.setdefault(e.session_id, [e.timestamp_ms, e.timestamp_ms])
        span[1] = e.timestamp_ms
    by_user: dict[str, list[list[int]]] = defaultdict(list)
    for session, span in spans.items():
        by_user[owner[session]].append(span)
    for sessions in by_user.values():
        sessions.sort()
        for (_, end), (start, _) in zip(sessions, sessions[1:], strict=False):
            assert start - end >= 30 * 60_000
    assert len(spans) / len(log.events) < 0.3  # sessions hold several events


def test_tastes_drift(log: SyntheticLog) -> None:
    truth = log.truth
    assert 0.1 < len(truth.drifts) / len(truth.favourites) < 0.4
    before = [0, 0]
    after = [0, 0]
    for e in log.events:
        drift = truth.drifts.get(e.user_id)
        if drift is None:
            continue
        new = set(drift.after) - set(drift.before)
        assert len(new) == 1 and len(drift.after) == len(drift.before)
        tally = after if e.timestamp_ms >= drift.at_ms else before
        tally[0] += truth.cluster_of(e.item_id) in new
        tally[1] += 1
    assert before[0] / before[1] < 0.05
    assert after[0] / after[1] > 0.2
    no_drift = simulate(SyntheticConfig(users=50, items=200, events=2_000, seed=3, drift=0.0)).truth
    assert no_drift.drifts == {}


def test_invalid_config_says_what_is_wrong() -> None:
    with pytest.raises(InputError, match="users must be at least 1"):
        generate(0, 10, 10, seed=1)
    with pytest.raises(InputError, match="before 1990"):
        generate(1, 10, 10, seed=1, start_ms=1_000)
    with pytest.raises(InputError, match="drift must be between 0 and 1"):
        generate(1, 10, 10, seed=1, drift=2.0)


def test_write_log_reads_back_without_mapping(tmp_path: Path, log: SyntheticLog) -> None:
    events = log.events[:3_000]
    for name, fmt in (("log.jsonl", "jsonl"), ("log.jsonl.gz", "jsonl"), ("log.avro", "avro")):
        path = tmp_path / "out" / name
        assert write_log(events, path) == len(events)
        result = read_events(path, fmt)
        assert result.bad_count == 0
        assert result.events == tuple(events)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["log.avro", "log.jsonl", "log.jsonl.gz"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), users=st.integers(1, 30), items=st.integers(1, 80),
       n=st.integers(1, 300), drift=st.floats(0.0, 1.0))
def test_generated_logs_round_trip(seed: int, users: int, items: int, n: int, drift: float) -> None:
    events = generate(users, items, n, seed=seed, drift=drift)
    with tempfile.TemporaryDirectory() as tmp:
        for name, fmt in (("g.jsonl", "jsonl"), ("g.avro", "avro")):
            path = Path(tmp) / name
            write_log(events, path)
            assert read_events(path, fmt, strict=True).events == tuple(events)


_ids = st.text(min_size=1, max_size=12).filter(lambda s: bool(s.strip()))
_events = st.builds(
    Event,
    event_id=_ids, user_id=_ids, item_id=_ids, event_type=st.sampled_from(EventType),
    timestamp_ms=st.integers(631_152_000_000, 1_767_225_600_000),  # 1990 .. 2026
    session_id=st.none() | st.text(max_size=8),
    value=st.none() | st.floats(0.0, 10.0),   # valid for every type (models.events.EventLimits)
    context=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)


@settings(max_examples=40, deadline=None)
@given(events=st.lists(_events, max_size=20))
def test_any_events_round_trip(events: list[Event]) -> None:
    expected = tuple(sorted(events, key=lambda e: e.timestamp_ms))
    with tempfile.TemporaryDirectory() as tmp:
        for name, fmt in (("a.jsonl", "jsonl"), ("a.avro", "avro")):
            path = Path(tmp) / name
            write_log(events, path)
            if not events:
                with pytest.raises(InputError):
                    read_events(path, fmt)
                continue
            assert read_events(path, fmt, strict=True).events == expected


def test_docstring_examples() -> None:
    assert doctest.testmod(synthetic).failed == 0
