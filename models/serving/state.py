"""Per-user state, its user vector, and a bounded store of users per partition.

A :class:`UserState` keeps what the engine knows about one user in compact containers (tuples of
interned item ids, one packed bytes record per recent item, ``__slots__``): about 1.0 KB with 5 events,
1.4 KB with 20, 2.4 KB with the full 50 recent items (tracemalloc, 20,000 users).
Item ids are interned (``sys.intern``) so every user, the co-visitation graph and the trending counts
share one string object per item.

``to_record`` / ``from_record`` match ``stream/schemas/user_state.avsc`` field for field. The user vector is
not part of the record nor of the state: it is computed from the recent items when needed
(``models.serving.candidates.encode_users``), which is also what moves users into a new model's space.

:class:`UserStore` holds users per partition (one ``OrderedDict`` each, least recently touched first),
with a global cap on users (LRU eviction) and a TTL on the last event time (``expire``), measured against
a :class:`Watermark` that a few outlying event times cannot drag forward.

>>> from streamrec.models.base.encoder import TYPE_INDEX
>>> st = UserState("u1")
>>> st.observe("i1", TYPE_INDEX["CLICK"], 1_000, 1.0, StateLimits())
>>> st.observe("i2", TYPE_INDEX["PURCHASE"], 2_000, 4.0, StateLimits(), event_id="e2", offset=7)
>>> st.recent_items, st.recent_types.tolist(), st.purchased, st.last_offset
(('i2', 'i1'), [3, 1], ('i2',), 7)
>>> UserState.from_record(st.to_record()).to_record() == st.to_record()
True
>>> store = UserStore(max_users=2)
>>> for u in ("a", "b", "c"):
...     store.touch(u, partition=0).observe("i1", 0, 1_000, 0.5, store.limits)
>>> len(store), store.evicted_lru, store.get("a") is None
(2, 1, True)
"""

from __future__ import annotations

import struct
import sys
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamrec.models.base.encoder import TYPE_INDEX, TYPE_NAMES
from streamrec.models.errors import ConfigError, InputError
from streamrec.models.timeunits import DAY_MS

PURCHASE = TYPE_INDEX["PURCHASE"]
OTHER = TYPE_INDEX["OTHER"]
#: One packed record of the recent history: timestamp ms, event type index, strength (13 bytes).
META = np.dtype([("ts", "<i8"), ("type", "u1"), ("strength", "<f4")])
META_SIZE = META.itemsize
_PACK = struct.Struct("<qBf").pack


@dataclass(frozen=True)
class StateLimits:
    """Caps of one user's state: recent items (the encoder's input), seen items, purchased items."""

    recent: int = 50
    seen: int = 100
    purchased: int = 100

    def __post_init__(self) -> None:
        for name in ("recent", "seen", "purchased"):
            if getattr(self, name) < 1:
                raise ConfigError(f"StateLimits.{name} is {getattr(self, name)}; set it to 1 or more")


class UserState:
    """What the engine knows about one user. Mutated only through :meth:`observe` and by the engine.

    The recent history is most recent first: ``recent_items`` (a tuple of interned ids) and
    ``recent_meta``, one packed 13-byte record per item (``META``: timestamp ms, type index, strength);
    ``recent_ts``, ``recent_types`` and ``recent_strength`` unpack it. ``seen`` and ``purchased`` are oldest
    first (the oldest is dropped at the cap; touching a seen item again moves it to the end). The user
    vector is not kept here: the engine computes it per batch with ``models.serving.candidates.encode_users``
    (a cached vector would be stale after the user's next event anyway, and would cost 368 bytes per
    user), so users are always encoded with the model in service, also right after a swap.
    """

    __slots__ = ("user_id", "recent_items", "recent_meta", "seen", "purchased", "counts", "last_offset",
                 "last_ts", "last_event_id", "shown")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.recent_items: tuple[str, ...] = ()
        self.recent_meta = b""
        self.seen: tuple[str, ...] = ()
        self.purchased: tuple[str, ...] = ()
        self.counts = array("I", bytes(4 * len(TYPE_NAMES)))
        self.last_offset = -1
        self.last_ts = 0
        self.last_event_id = ""
        self.shown: tuple[str, ...] = ()

    @property
    def recent_ts(self) -> np.ndarray:
        return np.frombuffer(self.recent_meta, dtype=META)["ts"]

    @property
    def recent_types(self) -> np.ndarray:
        return np.frombuffer(self.recent_meta, dtype=META)["type"]

    @property
    def recent_strength(self) -> np.ndarray:
        return np.frombuffer(self.recent_meta, dtype=META)["strength"]

    def observe(self, item_id: str, type_index: int, ts_ms: int, strength: float, limits: StateLimits,
                event_id: str = "", offset: int = -1) -> None:
        """Apply one event (the caller has already deduplicated it)."""
        cap = limits.recent
        self.recent_items = (item_id,) + self.recent_items[:cap - 1]
        self.recent_meta = _PACK(ts_ms, type_index, strength) + self.recent_meta[:META_SIZE * (cap - 1)]
        seen = self.seen
        if item_id in seen:
            if seen[-1] != item_id:
                k = seen.index(item_id)
                self.seen = (*seen[:k], *seen[k + 1:], item_id)
        else:
            self.seen = (*seen[-(limits.seen - 1):], item_id) if limits.seen > 1 else (item_id,)
        if type_index == PURCHASE and item_id not in self.purchased:
            self.purchased = (*self.purchased, item_id)[-limits.purchased:]
        self.counts[type_index] += 1
        if offset >= 0:
            self.last_offset = offset
        if ts_ms > self.last_ts:
            self.last_ts = ts_ms
        self.last_event_id = event_id

    def to_record(self) -> dict[str, Any]:
        """The ``UserState`` Avro record (``stream/schemas/user_state.avsc``)."""
        meta = np.frombuffer(self.recent_meta, dtype=META)
        return {
            "user_id": self.user_id,
            "recent_items": list(self.recent_items),
            "recent_types": meta["type"].tolist(),
            "recent_ts": meta["ts"].tolist(),
            "recent_strength": meta["strength"].tolist(),
            "seen": list(self.seen),
            "purchased": list(self.purchased),
            "counts": {TYPE_NAMES[t]: c for t, c in enumerate(self.counts) if c},
            "last_offset": self.last_offset,
            "last_ts": self.last_ts,
            "last_event_id": self.last_event_id,
            "shown": list(self.shown),
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], limits: StateLimits | None = None) -> UserState:
        """Rebuild a state from its record, cut to ``limits``; the vector is left to be recomputed."""
        lim = limits or StateLimits()
        try:
            st = cls(str(rec["user_id"]))
            items, types = rec["recent_items"], rec["recent_types"]
            ts, strength = rec["recent_ts"], rec["recent_strength"]
            if not len(items) == len(types) == len(ts) == len(strength):
                raise InputError(f"user state {st.user_id!r}: recent_* arrays differ in length "
                                 f"({len(items)}, {len(types)}, {len(ts)}, {len(strength)}); the changelog "
                                 "record is corrupt, drop it (the user restarts cold)")
            n = lim.recent
            st.recent_items = tuple(sys.intern(str(i)) for i in items[:n])
            meta = np.zeros(len(st.recent_items), dtype=META)
            meta["ts"], meta["strength"] = ts[:n], strength[:n]
            meta["type"] = [t if 0 <= t < len(TYPE_NAMES) else OTHER for t in types[:n]]
            st.recent_meta = meta.tobytes()
            st.seen = tuple(sys.intern(str(i)) for i in rec["seen"][-lim.seen:])
            st.purchased = tuple(sys.intern(str(i)) for i in rec["purchased"][-lim.purchased:])
            for name, count in (rec.get("counts") or {}).items():
                st.counts[TYPE_INDEX.get(name, OTHER)] += int(count)
            st.last_offset, st.last_ts = int(rec["last_offset"]), int(rec["last_ts"])
            st.last_event_id = str(rec.get("last_event_id") or "")
            st.shown = tuple(sys.intern(str(i)) for i in rec.get("shown") or ())
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"user state record is malformed ({exc!r}); it must match "
                             "stream/schemas/user_state.avsc") from exc
        return st

    def nbytes(self) -> int:
        """Approximate bytes held by this state, not counting the shared (interned) item ids."""
        return sum(sys.getsizeof(p) for p in (
            self, self.user_id, self.last_event_id, self.recent_items, self.recent_meta, self.seen,
            self.purchased, self.counts, self.shown, self.last_offset, self.last_ts))

    def __repr__(self) -> str:
        return (f"UserState({self.user_id!r}, recent={len(self.recent_items)}, seen={len(self.seen)}, "
                f"purchased={len(self.purchased)}, last_offset={self.last_offset})")


class UserStore:
    """Users per partition, at most ``max_users`` in all (least recently touched evicted first) and
    none whose last event is older than ``ttl_ms`` before the watermark (``expire``).

    TTL runs on event time, so replaying an old log behaves like live traffic; the engine passes the
    partition's :class:`Watermark`, not the newest event time, so a few events dated far ahead cannot
    evict everyone. Both evictions are counted (``evicted_lru``, ``evicted_ttl``). ``ttl_ms=0`` turns
    the TTL off.
    """

    def __init__(self, limits: StateLimits | None = None, max_users: int = 1_000_000,
                 ttl_ms: int = 30 * DAY_MS, watermark: Watermark | None = None) -> None:
        if max_users < 1 or ttl_ms < 0:
            raise ConfigError(f"UserStore needs max_users >= 1 and ttl_ms >= 0 (got {max_users}, {ttl_ms})")
        self.limits = limits or StateLimits()
        self.max_users, self.ttl_ms = max_users, ttl_ms
        self.watermark = watermark or Watermark()
        self._parts: dict[int, OrderedDict[str, UserState]] = {}
        self._n = 0
        self.evicted_lru = 0
        self.evicted_ttl = 0

    def __len__(self) -> int:
        return self._n

    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def get(self, user_id: str, partition: int | None = None) -> UserState | None:
        """The user's state (without touching its LRU position), searching every partition if needed."""
        if partition is not None:
            part = self._parts.get(partition)
            return None if part is None else part.get(user_id)
        for part in self._parts.values():
            st = part.get(user_id)
            if st is not None:
                return st
        return None

    def partition_of(self, user_id: str) -> int | None:
        for p, part in self._parts.items():
            if user_id in part:
                return p
        return None

    def touch(self, user_id: str, partition: int) -> UserState:
        """The user's state, created if needed, marked most recently used (may evict another user)."""
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = OrderedDict()
        st = part.get(user_id)
        if st is not None:
            part.move_to_end(user_id)
            return st
        while self._n >= self.max_users:
            self._evict_one()
        st = part[user_id] = UserState(user_id)
        self._n += 1
        return st

    def put(self, state: UserState, partition: int) -> None:
        """Insert or replace a state (a restore from the changelog); it becomes most recently used."""
        self.remove(state.user_id)
        part = self._parts.setdefault(partition, OrderedDict())
        while self._n >= self.max_users:
            self._evict_one()
        part[state.user_id] = state
        self._n += 1

    def remove(self, user_id: str) -> bool:
        for part in self._parts.values():
            if part.pop(user_id, None) is not None:
                self._n -= 1
                return True
        return False

    def _evict_one(self) -> None:
        # the least recently touched user of the partition whose LRU head is oldest in event time
        best, best_ts = None, None
        for p, part in self._parts.items():
            if part:
                ts = next(iter(part.values())).last_ts
                if best_ts is None or ts < best_ts:
                    best, best_ts = p, ts
        if best is None:
            return
        self._parts[best].popitem(last=False)
        self._n -= 1
        self.evicted_lru += 1

    def expire(self, now_ms: int, partition: int | None = None) -> int:
        """Drop users whose last event is older than ``now_ms - ttl_ms`` (in ``partition`` only, when
        given); returns how many. ``now_ms <= 0`` (no watermark yet) drops nobody.

        Walks each partition from its least recently touched end and stops at the first fresh user,
        so the cost is proportional to the users dropped (touch order follows event time closely).
        """
        if not self.ttl_ms or now_ms <= 0:
            return 0
        cutoff, dropped = now_ms - self.ttl_ms, 0
        parts = self._parts.values() if partition is None else [self._parts.get(partition, OrderedDict())]
        for part in parts:
            while part and next(iter(part.values())).last_ts < cutoff:
                part.popitem(last=False)
                dropped += 1
        self._n -= dropped
        self.evicted_ttl += dropped
        return dropped

    def expire_partition(self, partition: int, timestamps: Iterable[int]) -> int:
        """Advance the partition's :attr:`watermark` with a batch's event times and drop the partition's
        users idle for longer than the TTL before it; returns how many were dropped."""
        return self.expire(self.watermark.advance(partition, timestamps), partition)

    def drop_partition(self, partition: int) -> int:
        """Forget every user of a partition (revoked or lost) and its watermark; returns how many users."""
        self.watermark.forget(partition)
        part = self._parts.pop(partition, None)
        n = len(part) if part else 0
        self._n -= n
        return n

    def states(self, partition: int | None = None) -> Iterator[UserState]:
        parts = self._parts.values() if partition is None else [self._parts.get(partition, OrderedDict())]
        for part in list(parts):
            yield from list(part.values())

    def memory_bytes(self, sample: int = 256) -> int:
        """Approximate bytes held: the mean size of a sample of states, plus ~100 B of index, per user."""
        if not self._n:
            return 0
        sizes = []
        for part in self._parts.values():
            for st in part.values():
                sizes.append(st.nbytes() + 100)
                if len(sizes) >= sample:
                    break
            if len(sizes) >= sample:
                break
        return int(np.mean(sizes) * self._n)


class Watermark:
    """The event time the user TTL measures idleness against: per partition, a time that a few outlying
    event times cannot drag forward.

    Each partition keeps its last ``window`` event times. Its watermark is their ``quantile`` (the
    median by default), capped at the wall clock (``clock``, ms) so that a future-dated event can never
    advance it past now, and it never goes back. Until a partition has seen ``min_events`` event times
    (since this process started) its watermark is 0, which expires nobody: right after a restart or an
    assignment, the first few events are no evidence of where the stream is. The quantile is recomputed
    once ``refresh`` new event times have arrived (default ``window // 50``), not on every call.

    So a user is dropped when their own last event is more than the TTL older than where *most* of their
    partition's recent events are. Five events dated a year after a replayed log are five of the last
    thousand: the median does not move and nobody is evicted. A stream that really moved on (live traffic
    after a replay) moves it within ``window / 2`` events. With the median, the watermark trails the newest
    event by half a window's worth of time (seconds at live rates), nothing next to a TTL of days.

    >>> wm = Watermark(window=100, min_events=10, refresh=1, clock=lambda: 10**13)
    >>> wm.advance(0, range(1_000, 1_005))           # too few events: no watermark yet
    0
    >>> wm.advance(0, range(1_005, 1_100))           # 100 event times from 1000 to 1099 ms
    1049
    >>> wm.advance(0, [10**12] * 5)                  # five far in the future: the median hardly moves
    1054
    >>> wm.advance(0, [10**12] * 60)                 # most of the window: the stream has moved on
    1000000000000
    >>> wm.advance(0, [2 * 10**13] * 100), wm.get(1) # capped at the clock; partition 1 has none
    (10000000000000, 0)
    """

    def __init__(self, window: int = 1_000, quantile: float = 0.5, min_events: int = 100,
                 clock: Callable[[], int] | None = None, refresh: int | None = None) -> None:
        refresh = max(1, window // 50) if refresh is None else refresh
        if window < 1 or not 0.0 <= quantile <= 1.0 or not 1 <= min_events <= window or refresh < 1:
            raise ConfigError(f"Watermark needs window >= 1, 0 <= quantile <= 1, 1 <= min_events <= window and "
                              f"refresh >= 1 (got {window}, {quantile}, {min_events}, {refresh})")
        self.window, self.quantile, self.min_events, self.refresh = window, quantile, min_events, refresh
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._ring: dict[int, np.ndarray] = {}
        self._seen: dict[int, int] = {}
        self._done: dict[int, int] = {}      # events seen when the quantile was last computed
        self._mark: dict[int, int] = {}

    def get(self, partition: int) -> int:
        """The partition's watermark in ms (0: none yet)."""
        return self._mark.get(partition, 0)

    #: batches of at most this many events are written into the ring one by one (no numpy call per batch)
    SMALL = 16

    def advance(self, partition: int, timestamps: Iterable[int]) -> int:
        """Add a batch of one partition's event times (ms); returns its watermark (0: none yet)."""
        small = timestamps if isinstance(timestamps, list | tuple) and len(timestamps) <= self.SMALL else None
        ts = np.fromiter(timestamps, dtype=np.int64) if small is None else small
        if not len(ts):
            return self.get(partition)
        ring = self._ring.get(partition)
        if ring is None:
            ring = self._ring[partition] = np.zeros(self.window, dtype=np.int64)
        seen = self._seen.get(partition, 0)
        ts = ts[-self.window:]
        if small is None:
            pos = (seen + np.arange(len(ts))) % self.window
            ring[pos] = ts
        else:
            for k, t in enumerate(ts, seen):
                ring[k % self.window] = t
        seen = self._seen[partition] = seen + len(ts)
        mark = self._mark.get(partition, 0)
        if seen >= self.min_events and seen - self._done.get(partition, 0) >= self.refresh:
            filled = ring if seen >= self.window else ring[:seen]
            k = int(self.quantile * (len(filled) - 1))       # the "lower" quantile: an observed time
            q = int(np.partition(filled, k)[k])
            mark = max(mark, min(q, self._clock()))
            self._mark[partition], self._done[partition] = mark, seen
        return mark

    def forget(self, partition: int) -> None:
        """Drop a partition's history (it was revoked); it starts again from no watermark."""
        self._ring.pop(partition, None)
        self._seen.pop(partition, None)
        self._done.pop(partition, None)
        self._mark.pop(partition, None)


class IdWindow:
    """The last ``size`` event ids, for dropping redelivered events (a set plus a ring buffer).

    >>> w = IdWindow(2)
    >>> [w.check_and_add(x) for x in ("a", "b", "a", "c", "a")]
    [False, False, True, False, False]
    """

    def __init__(self, size: int = 200_000) -> None:
        if size < 1:
            raise ConfigError(f"IdWindow size is {size}; set it to 1 or more")
        self._ring: list[str | None] = [None] * size
        self._pos = 0
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def check_and_add(self, event_id: str) -> bool:
        """True if ``event_id`` is in the window (a duplicate); otherwise remember it and return False."""
        if event_id in self._ids:
            return True
        old = self._ring[self._pos]
        if old is not None:
            self._ids.discard(old)
        self._ring[self._pos] = event_id
        self._pos = (self._pos + 1) % len(self._ring)
        self._ids.add(event_id)
        return False
