"""The service's memory, without Kafka: the latest list per user (bounded like the worker's state), a trending
list for users without one, each user's recent events, and the figures the dashboard shows.

:class:`ListView` holds the latest ``Recommendation`` per user from the compacted topic, bounded by the
worker's rules (``models/serving/state.py``): at most ``max_users`` (the least recently updated user of
the partition whose oldest entry is oldest in event time goes first) and none whose list's trigger
event is older than ``ttl_ms`` before the partition's :class:`~streamrec.models.serving.state.Watermark`
(the median of its recent trigger times, capped at the wall clock, none before 100 lists). A newer record
(higher offset) replaces the one held; a tombstone removes it. Every field read from the topic is checked
(:func:`parse_list`); a record that fails is skipped and counted, never served.

Reads (:meth:`ListView.get`) are one dict lookup and take no lock: only the follower thread writes.

>>> view = ListView(max_users=2)
>>> rec = {"user_id": "u1", "items": [{"item_id": "i1", "score": 0.5, "source": "ann"}],
...        "trigger_event_id": "e1", "trigger_timestamp": 1_700_000_000_000, "trigger_partition": 0,
...        "trigger_offset": 7, "emitted_at": 1_700_000_000_050, "model_version": "v1", "index_version": None}
>>> sl = parse_list(rec, b"u1", partition=0, offset=3, record_ts=1_700_000_000_051)
>>> view.put_many([sl]), view.get("u1").items[0]             # a list written before reasons: reason ""
(1, ('i1', 0.5, 'ann', ''))
>>> parse_list({**rec, "items": [{"item_id": "i1", "score": float("nan"), "source": "ann"}]}, b"u1", 0, 4, 0)
'item 0 (i1) has a non-finite score nan'
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamrec.models.errors import ConfigError
from streamrec.models.events import MAX_ID_BYTES, Event
from streamrec.models.serving.state import Watermark
from streamrec.models.timeunits import DAY_MS

#: Longest list accepted from the topic (the worker's top_n is 20 by default).
MAX_ITEMS = 1000
#: Longest candidate-source name accepted from the topic.
MAX_SOURCE_BYTES = 64
#: Longest reason accepted from the topic (a source name, ``:`` and an item id).
MAX_REASON_BYTES = 64 + 1 + MAX_ID_BYTES


@dataclass(frozen=True, slots=True)
class StoredList:
    """One user's latest list and where it came from."""

    user_id: str
    items: tuple[tuple[str, float, str, str], ...]  # (item_id, score, source, reason), best first
    trigger_event_id: str
    trigger_timestamp: int
    trigger_partition: int
    trigger_offset: int
    emitted_at: int
    model_version: str | None
    index_version: str | None
    partition: int                                  # on the recommendations topic
    offset: int
    record_ts: int                                  # the record's Kafka timestamp (ms)

    def lineage(self) -> dict[str, Any]:
        return {"trigger_event_id": self.trigger_event_id, "trigger_timestamp": self.trigger_timestamp,
                "trigger_partition": self.trigger_partition, "trigger_offset": self.trigger_offset,
                "emitted_at": self.emitted_at, "model_version": self.model_version,
                "index_version": self.index_version, "partition": self.partition, "offset": self.offset}

    def has_item(self, item_id: str, k: int = 10) -> bool:
        return any(it[0] == item_id for it in self.items[:k])


def _text(value: object, what: str, max_bytes: int, required: bool = True) -> str | None:
    if not isinstance(value, str):
        return f"{what} is {type(value).__name__}, not text"
    if required and not value:
        return f"empty {what}"
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        return f"{what} is over {max_bytes} bytes"
    return None


def _int(value: object, what: str) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else f"{what} is not an integer"


def parse_list(rec: Any, key: bytes | None, partition: int, offset: int, record_ts: int,
               max_id_bytes: int = MAX_ID_BYTES) -> StoredList | str:
    """A decoded ``Recommendation`` record as a :class:`StoredList`, or why it cannot be served (one line)."""
    if not isinstance(rec, dict):
        return "the record is not a Recommendation"
    user = rec.get("user_id")
    reason = _text(user, "user_id", max_id_bytes)
    if reason:
        return reason
    if key is not None and key != str(user).encode("utf-8", "surrogatepass"):
        return "the record's key is not its user_id"
    raw_items = rec.get("items")
    if not isinstance(raw_items, list):
        return "items is not a list"
    if len(raw_items) > MAX_ITEMS:
        return f"{len(raw_items)} items, over the limit of {MAX_ITEMS}"
    items: list[tuple[str, float, str, str]] = []
    for i, it in enumerate(raw_items):
        if not isinstance(it, dict):
            return f"item {i} is not a record"
        item_id, score, source, why = it.get("item_id"), it.get("score"), it.get("source"), it.get("reason", "")
        reason = (_text(item_id, f"item {i}'s item_id", max_id_bytes)
                  or _text(source, f"item {i}'s source", MAX_SOURCE_BYTES, required=False)
                  or _text(why, f"item {i}'s reason", MAX_REASON_BYTES, required=False))
        if reason:
            return reason
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            return f"item {i} ({str(item_id)[:40]}) has a non-finite score {score!r}"
        items.append((str(item_id), float(score), str(source), str(why)))
    reason = _text(rec.get("trigger_event_id"), "trigger_event_id", max_id_bytes, required=False)
    for name in ("trigger_timestamp", "trigger_partition", "trigger_offset", "emitted_at"):
        reason = reason or _int(rec.get(name), name)
    for name in ("model_version", "index_version"):
        if rec.get(name) is not None:
            reason = reason or _text(rec.get(name), name, 256)
    if reason:
        return reason
    return StoredList(str(user), tuple(items), rec["trigger_event_id"], rec["trigger_timestamp"],
                      rec["trigger_partition"], rec["trigger_offset"], rec["emitted_at"], rec.get("model_version"),
                      rec.get("index_version"), partition, offset, record_ts)


class ListView:
    """The latest list per user, bounded by ``max_users`` and the TTL on the per-partition watermark."""

    def __init__(self, max_users: int = 1_000_000, ttl_ms: int = 30 * DAY_MS, watermark: Watermark | None = None,
                 trending_window: int = 1000, trending_depth: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_users < 1 or ttl_ms < 0 or trending_window < 1 or trending_depth < 1:
            raise ConfigError(f"ListView needs max_users >= 1, ttl_ms >= 0 and positive trending sizes "
                              f"(got {max_users}, {ttl_ms}, {trending_window}, {trending_depth})")
        self.max_users, self.ttl_ms = max_users, ttl_ms
        self.watermark = watermark or Watermark()
        self._latest: dict[str, StoredList] = {}                    # what reads look at
        self._parts: dict[int, OrderedDict[str, StoredList]] = {}   # update order per partition (eviction)
        self.evicted_lru = self.evicted_ttl = self.removed = self.stale = 0
        self._clock = clock
        self._depth = trending_depth
        self._ring: deque[tuple[str, ...]] = deque(maxlen=trending_window)
        self._counts: Counter[str] = Counter()
        self._trending: tuple[tuple[str, int], ...] = ()
        self._trending_at = -math.inf
        self._dirty = False

    def __len__(self) -> int:
        return len(self._latest)

    def get(self, user_id: str) -> StoredList | None:
        return self._latest.get(user_id)

    def put_many(self, lists: Iterable[StoredList]) -> int:
        """Take a batch of lists (topic order); returns how many replaced or added a user's list."""
        taken = 0
        touched: dict[int, list[int]] = {}
        for sl in lists:
            old = self._latest.get(sl.user_id)
            if old is not None:
                if old.partition == sl.partition and old.offset >= sl.offset:
                    self.stale += 1          # a redelivered or older record: the held one is newer
                    continue
                self._parts[old.partition].pop(sl.user_id, None)
            else:
                while len(self._latest) >= self.max_users:
                    self._evict_one()
            part = self._parts.get(sl.partition)
            if part is None:
                part = self._parts[sl.partition] = OrderedDict()
            part[sl.user_id] = sl
            self._latest[sl.user_id] = sl
            self._learn(sl)
            touched.setdefault(sl.partition, []).append(sl.trigger_timestamp)
            taken += 1
        for p, times in touched.items():
            self._expire(p, self.watermark.advance(p, times))
        self.refresh_trending()
        return taken

    def remove(self, user_id: str) -> bool:
        """A tombstone: forget the user's list."""
        old = self._latest.pop(user_id, None)
        if old is None:
            return False
        self._parts[old.partition].pop(user_id, None)
        self.removed += 1
        return True

    def _evict_one(self) -> None:
        best, best_ts = None, None
        for p, part in self._parts.items():
            if part:
                ts = next(iter(part.values())).trigger_timestamp
                if best_ts is None or ts < best_ts:
                    best, best_ts = p, ts
        if best is None:
            return
        user, _ = self._parts[best].popitem(last=False)
        del self._latest[user]
        self.evicted_lru += 1

    def _expire(self, partition: int, mark: int) -> None:
        if not self.ttl_ms or mark <= 0:
            return
        cutoff, part = mark - self.ttl_ms, self._parts.get(partition)
        while part and next(iter(part.values())).trigger_timestamp < cutoff:
            user, _ = part.popitem(last=False)
            del self._latest[user]
            self.evicted_ttl += 1

    # --- trending: the items most often in the last lists ----------------------------------------
    def _learn(self, sl: StoredList) -> None:
        top = tuple(it[0] for it in sl.items[: self._depth])
        if len(self._ring) == self._ring.maxlen:
            self._counts.subtract(self._ring[0])
        self._ring.append(top)
        self._counts.update(top)
        self._dirty = True

    def refresh_trending(self, max_age_s: float = 1.0) -> None:
        """Recompute the trending list if lists arrived since, at most every ``max_age_s`` (on the writer's
        thread: :meth:`trending` only reads the result)."""
        now = self._clock()
        if self._dirty and (now - self._trending_at >= max_age_s or not self._trending):
            counts = self._counts
            self._trending = tuple(heapq.nlargest(100, ((k, c) for k, c in counts.items() if c > 0),
                                                  key=lambda kc: (kc[1], kc[0])))
            self._trending_at, self._dirty = now, False
            if len(counts) > 4 * (self._ring.maxlen or 1) * self._depth:   # drop the zeros now and then
                self._counts = Counter({k: c for k, c in counts.items() if c > 0})

    def trending(self, n: int) -> tuple[tuple[str, int], ...]:
        """The ``n`` items most often in the top of the last lists, with their counts (an immutable tuple:
        safe to read from any thread)."""
        return self._trending[:n]


class EventIndex:
    """Where recent events landed: event id -> (partition, offset, Kafka timestamp), the last ``size`` only."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, tuple[int, int, int]] = OrderedDict()

    def add(self, event_id: str, partition: int, offset: int, record_ts: int) -> None:
        self._ids[event_id] = (partition, offset, record_ts)
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def get(self, event_id: str) -> tuple[int, int, int] | None:
        return self._ids.get(event_id)


class Activity:
    """The last ``per_user`` events of the last ``max_users`` users seen (posted here or on the topic)."""

    def __init__(self, max_users: int = 10_000, per_user: int = 20) -> None:
        self.max_users, self.per_user = max_users, per_user
        self._users: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._items: OrderedDict[str, None] = OrderedDict()     # the newest items seen (cold start)
        self._lock = threading.Lock()

    def add(self, event: Event, via: str, partition: int | None = None, offset: int | None = None) -> None:
        row = {"event_id": event.event_id, "item_id": event.item_id, "event_type": event.event_type.value,
               "timestamp": event.timestamp_ms, "value": event.value, "via": via, "partition": partition,
               "offset": offset}
        with self._lock:
            self._items[event.item_id] = None
            self._items.move_to_end(event.item_id)
            if len(self._items) > 1000:
                self._items.popitem(last=False)
            rows = self._users.get(event.user_id)
            if rows is None:
                rows = self._users[event.user_id] = deque(maxlen=self.per_user)
                if len(self._users) > self.max_users:
                    self._users.popitem(last=False)
            else:
                self._users.move_to_end(event.user_id)
                for old in rows:
                    if old["event_id"] == event.event_id:    # posted here, now seen on the topic
                        if offset is not None:
                            old["partition"], old["offset"] = partition, offset
                        return
            rows.append(row)

    def newest_items(self, n: int) -> list[str]:
        """The last ``n`` distinct items seen in events, newest first."""
        with self._lock:
            return list(reversed(self._items))[:n]

    def recent(self, user_id: str) -> list[dict[str, Any]]:
        """The user's recent events, newest first."""
        with self._lock:
            rows = self._users.get(user_id)
            return [dict(r) for r in reversed(rows)] if rows else []


class Figures:
    """What the dashboard plots: rates, event-to-list latency, online hit rate, dead letters by type."""

    def __init__(self, window: int = 2000, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.events = self.lists = self.skipped_lists = self.bad_events = 0
        self._latency = np.full(window, np.nan)
        self._latency_n = 0
        self._hits: deque[bool] = deque(maxlen=window)
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=64)
        self.dead_letters: Counter[str] = Counter()
        self.dlq_total: int | None = None
        self.lag: dict[int, int] | None = None
        self.models: dict[str, int] = {}     # model version -> earliest emitted_at seen (ms)
        self.model_version: str | None = None

    def latency(self, ms: float) -> None:
        self._latency[self._latency_n % len(self._latency)] = ms
        self._latency_n += 1

    def hit(self, hit: bool) -> None:
        self._hits.append(hit)

    def model(self, version: str | None, emitted_at: int) -> None:
        if version is None:
            return
        first = self.models.get(version)
        if first is None or emitted_at < first:
            self.models[version] = emitted_at
            if len(self.models) > 32:
                self.models.pop(min(self.models, key=self.models.__getitem__))
        if self.model_version is None or self.models.get(self.model_version, 0) <= self.models[version]:
            self.model_version = version

    def sample(self) -> None:
        now = self._clock()
        if not self._samples or now - self._samples[-1][0] >= 0.5:
            self._samples.append((now, self.events, self.lists))

    def rates(self, span_s: float = 5.0) -> tuple[float, float]:
        """Events/s and lists/s over about the last ``span_s`` seconds."""
        now = self._clock()
        samples = list(self._samples)
        if not samples:
            return 0.0, 0.0
        base = next((s for s in samples if now - s[0] <= span_s), samples[-1])
        dt = max(now - base[0], 1e-9)
        if now - base[0] < 0.25:
            return 0.0, 0.0
        return (self.events - base[1]) / dt, (self.lists - base[2]) / dt

    def snapshot(self, wall_ms: int) -> dict[str, Any]:
        lat = self._latency[~np.isnan(self._latency)]
        hits = list(self._hits)
        ev, li = self.rates()
        version = self.model_version
        return {
            "events_per_s": round(ev, 1), "lists_per_s": round(li, 1),
            "events_seen": self.events, "lists_seen": self.lists,
            "skipped_lists": self.skipped_lists, "bad_events_seen": self.bad_events,
            "latency_ms": {"p50": float(np.percentile(lat, 50)) if len(lat) else None,
                           "p99": float(np.percentile(lat, 99)) if len(lat) else None, "n": int(len(lat))},
            "hit_rate_at_10": {"rate": (sum(hits) / len(hits)) if hits else None, "n": len(hits)},
            "dead_letters": {"total": self.dlq_total, "recent_by_type": dict(self.dead_letters)},
            "lag": None if self.lag is None else {str(p): v for p, v in sorted(self.lag.items())},
            "model": {"version": version,
                      "age_s": None if version is None else max(0.0, (wall_ms - self.models[version]) / 1000)},
        }
