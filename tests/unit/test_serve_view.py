"""The service's in-memory view without a broker: the worker's bounds (user cap, TTL on the watermark), newer
records replacing older ones, trending, and the follower's bookkeeping (latency, hit rate, tombstones,
records that fail their checks)."""

from __future__ import annotations

import math

from streamrec.consumers.serve.follow import Follower
from streamrec.consumers.serve.view import ListView, StoredList, parse_list
from streamrec.models.events import Event, EventType
from streamrec.models.serving.state import Watermark
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

T = 1_700_000_000_000


def rec(user: str, items: list[str], ts: int, trigger: str = "e", offset: int = 0) -> dict:  # type: ignore[type-arg]
    return {"user_id": user, "items": [{"item_id": i, "score": 1.0, "source": "ann"} for i in items],
            "trigger_event_id": trigger, "trigger_timestamp": ts, "trigger_partition": 0, "trigger_offset": offset,
            "emitted_at": ts + 10, "model_version": "m1", "index_version": None}


def stored(user: str, ts: int, offset: int, items: list[str] | None = None, partition: int = 0) -> StoredList:
    sl = parse_list(rec(user, items or ["a"], ts, offset=offset), user.encode(), partition, offset, ts)
    assert isinstance(sl, StoredList)
    return sl


def test_user_cap_evicts_the_oldest_in_event_time() -> None:
    view = ListView(max_users=2)
    view.put_many([stored("old", T, 0, partition=1), stored("mid", T + 5, 1)])
    view.put_many([stored("new", T + 9, 2)])
    assert view.get("old") is None and view.get("mid") and view.get("new")
    assert len(view) == 2 and view.evicted_lru == 1


def test_ttl_runs_on_the_watermark_of_trigger_times() -> None:
    view = ListView(ttl_ms=1000, watermark=Watermark(window=10, min_events=5, refresh=1, clock=lambda: 10**15))
    view.put_many([stored("idle", T, 0)])
    view.put_many([stored(f"u{k}", T + 5000 + k, 1 + k) for k in range(3)])
    assert view.get("idle") is not None            # three lists are no evidence yet: nobody expires
    view.put_many([stored(f"u{k}", T + 5000 + k, 1 + k) for k in range(3, 6)])
    assert view.get("idle") is None and view.evicted_ttl == 1 and view.get("u5") is not None


def test_a_newer_record_replaces_an_older_one_never_the_reverse() -> None:
    view = ListView()
    view.put_many([stored("u", T, 5, ["new"])])
    view.put_many([stored("u", T - 1, 3, ["old"])])   # redelivered older offset
    held = view.get("u")
    assert held is not None and held.items[0][0] == "new" and view.stale == 1
    view.put_many([stored("u", T + 1, 9, ["newer"])])
    held = view.get("u")
    assert held is not None and held.items[0][0] == "newer"


def test_trending_counts_recent_lists() -> None:
    view = ListView(trending_window=2)
    view.put_many([stored("a", T, 0, ["x", "y"]), stored("b", T, 1, ["y"]), stored("c", T, 2, ["z", "y"])])
    assert view.trending(2) == (("y", 2), ("z", 1))      # the first list left the window of two


def test_parse_list_checks_every_field() -> None:
    good = rec("u", ["a"], T)
    assert isinstance(parse_list(good, b"u", 0, 0, T), StoredList)
    assert parse_list(good, b"someone-else", 0, 0, T) == "the record's key is not its user_id"
    assert "non-finite" in str(parse_list({**good, "items": [{"item_id": "a", "score": math.inf, "source": "ann"}]},
                                          b"u", 0, 0, T))
    assert "over 256 bytes" in str(parse_list({**good, "user_id": "u" * 300}, None, 0, 0, T))
    assert "not an integer" in str(parse_list({**good, "trigger_offset": "7"}, b"u", 0, 0, T))
    assert parse_list({**good, "items": [{"item_id": "", "score": 1.0, "source": "ann"}]}, b"u", 0, 0, T) \
        == "empty item 0's item_id"


def test_follower_bookkeeping_from_records() -> None:
    s = Settings.from_env({})
    f = Follower(s)
    recs, evs = codec_for("recommendation"), codec_for("event")

    def r(topic: str, offset: int, key: bytes, value: bytes | None, ts: int = T) -> Record:
        return Record(topic, 0, offset, ts, key, value)

    e1 = Event("e1", "u", "a", EventType.CLICK, T)
    e2 = Event("e2", "u", "b", EventType.CLICK, T + 1)
    f.take([r(s.events_topic, 0, b"u", evs.encode(e1.to_record()), ts=T),
            r(s.recommendations_topic, 0, b"u", recs.encode(rec("u", ["b", "c"], T, trigger="e1", offset=0))),
            r(s.events_topic, 1, b"u", evs.encode(e2.to_record())),
            r(s.events_topic, 2, b"u", b"garbage"),
            r(s.recommendations_topic, 1, b"v", recs.encode(rec("v", ["q"], T))),
            r(s.recommendations_topic, 2, b"v", None),
            r(s.dlq_topic, 0, b"u", b"x")])
    snap = f.figures.snapshot(T + 100)
    assert snap["latency_ms"]["n"] == 1 and snap["latency_ms"]["p50"] == 10.0   # emitted_at - event's Kafka time
    assert snap["hit_rate_at_10"] == {"rate": 1.0, "n": 1}                      # e2's item b was in the list
    assert f.figures.bad_events == 1 and snap["dead_letters"]["recent_by_type"] == {"unknown": 1}
    assert f.view.get("v") is None and f.view.removed == 1
    assert [e["event_id"] for e in f.activity.recent("u")] == ["e2", "e1"]
    assert f.list_after("u", "e1") is not None and f.list_after("u", "e2") is None
    assert snap["model"]["version"] == "m1"
