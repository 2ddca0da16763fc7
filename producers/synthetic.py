"""A synthetic e-commerce event log with known structure, for demos, benchmarks and tests.

The simulation (numpy, vectorised; a million events in a few seconds):

* items ``i{k}`` have Zipf-like popularity and belong to taste clusters ``c{k}`` (``context["category"]``);
* users ``u{k}`` have lognormal activity and 1-3 favourite clusters;
* a user's visits are sessions ``s{k}``, separated by gaps of at least 30 minutes (on average the log
  span divided by the user's number of sessions); each session browses one of the user's favourite
  clusters (with a little exploration of globally popular items);
* a session is a funnel: every page is a ``VIEW``, some views lead to a ``CLICK``, some clicks to an
  ``ADD_TO_CART``, and some sessions end with a checkout that ``PURCHASE``\\ s carted items (``value`` =
  the item's price); so views > clicks > carts > purchases, and only carted items are bought;
* tastes drift: a fraction of users swap one favourite cluster for a new one at a time within their
  activity; sessions after that time browse the new set.

The log is cut to exactly ``events`` events in time order (ties in generation order). The same arguments
give the same events (same numpy version), and :func:`write_log` writes them to the same bytes.
:class:`GroundTruth` tells which cluster each item is in and which clusters a user favours at a time.

>>> log = simulate(SyntheticConfig(users=50, items=200, events=1000, seed=7))
>>> len(log.events), log.events[0].event_id
(1000, 'syn7-0')
>>> generate(50, 200, 1000, seed=7) == log.events
True
"""

from __future__ import annotations

import gc
import gzip
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.models.errors import InputError
from streamrec.models.events import Event, EventType
from streamrec.models.timeunits import DAY_MS
from streamrec.producers.formats import avro
from streamrec.producers.formats.base import MIN_TIMESTAMP_MS

DEFAULT_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z

_MIN_SESSION_GAP_MS = 30 * 60_000
_TYPES = (EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE)
# Time before an event of each type (mean, minimum) in ms: the next page view, a click on the viewed
# item, putting it in the cart, checking out (all purchases of a checkout share its time).
_GAP_MEAN = np.array([45_000.0, 8_000.0, 15_000.0, 90_000.0])
_GAP_MIN = np.array([2_000.0, 1_000.0, 1_000.0, 10_000.0])


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    """What to simulate. Rates are probabilities; ``clusters`` None means ``items // 25`` within [1, 50]."""

    users: int
    items: int
    events: int
    seed: int = 0
    start_ms: int = DEFAULT_START_MS
    days: float = 30.0
    clusters: int | None = None
    zipf: float = 1.1  # item popularity ~ 1 / rank**zipf
    session_pages: float = 6.0  # mean page views per session
    explore: float = 0.1  # share of page views drawn from global popularity instead of the session's cluster
    click_rate: float = 0.4  # P(click | view)
    cart_rate: float = 0.15  # P(add to cart | click)
    checkout_rate: float = 0.5  # P(a session checks out)
    buy_rate: float = 0.8  # P(a carted item is bought | checkout)
    drift: float = 0.25  # share of users who swap one favourite cluster during the log

    def __post_init__(self) -> None:
        for name in ("users", "items"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.events < 0:
            raise InputError(f"events must be 0 or more, got {self.events}")
        if self.start_ms < MIN_TIMESTAMP_MS:
            raise InputError(f"start_ms {self.start_ms} is before 1990-01-01; give UTC milliseconds")
        if self.days <= 0 or self.session_pages < 1 or self.zipf < 0:
            raise InputError("days must be positive, session_pages at least 1 and zipf not negative")
        if self.clusters is not None and not 1 <= self.clusters <= self.items:
            raise InputError(f"clusters must be between 1 and items ({self.items}), got {self.clusters}")
        for name in ("explore", "click_rate", "cart_rate", "checkout_rate", "buy_rate", "drift"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be between 0 and 1, got {getattr(self, name)}")

    @property
    def n_clusters(self) -> int:
        return self.clusters if self.clusters is not None else max(1, min(50, self.items // 25))


@dataclass(frozen=True, slots=True)
class Drift:
    """From ``at_ms`` on, the user favours ``after`` instead of ``before``."""

    at_ms: int
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """The hidden structure of a synthetic log."""

    item_cluster: dict[str, str]  # "i7" -> "c2"
    favourites: dict[str, tuple[str, ...]]  # user -> favourite clusters at the start of the log
    drifts: dict[str, Drift]  # the users whose tastes drift

    def cluster_of(self, item_id: str) -> str:
        return self.item_cluster[item_id]

    def favourites_at(self, user_id: str, ts_ms: int) -> tuple[str, ...]:
        drift = self.drifts.get(user_id)
        if drift is not None and ts_ms >= drift.at_ms:
            return drift.after
        return self.favourites[user_id]


@dataclass(frozen=True, slots=True)
class SyntheticLog:
    config: SyntheticConfig
    events: list[Event]
    truth: GroundTruth


def generate(users: int, items: int, events: int, seed: int, start_ms: int = DEFAULT_START_MS,
             days: float = 30.0, clusters: int | None = None, drift: float = 0.25) -> list[Event]:
    """``events`` synthetic events in time order; see :class:`SyntheticConfig` for the other knobs."""
    config = SyntheticConfig(users, items, events, seed, start_ms, days, clusters, drift=drift)
    return simulate(config).events


def simulate(config: SyntheticConfig) -> SyntheticLog:
    """The events and the ground truth behind them."""
    c = config
    rng = np.random.default_rng(c.seed)
    n_clusters = c.n_clusters
    item_cluster, popularity, price = item_table(rng, c)
    fav_before, n_fav = _favourites(rng, c.users, n_clusters)
    drifting = (rng.random(c.users) < c.drift) & (n_fav < n_clusters)
    fav_after = _swap_one(rng, fav_before, n_fav, drifting, n_clusters)
    activity = rng.lognormal(0.0, 1.0, c.users)

    per_page = 1 + c.click_rate * (1 + c.cart_rate * (1 + c.checkout_rate * c.buy_rate))
    n_sessions = int(c.events * 1.05 / (c.session_pages * per_page)) + 1
    while True:
        sim = _sessions(rng, c, n_sessions, activity / activity.sum())
        if len(sim["time"]) >= c.events:
            break
        n_sessions = int(n_sessions * 1.1 * c.events / max(1, len(sim["time"]))) + 1

    # Drift time: somewhere in the middle half of the user's activity.
    first, last = sim["user_first"], sim["user_last"]
    switch_ms = first + (rng.uniform(0.25, 0.75, c.users) * (last - first)).astype(np.int64)
    sess_user, sess_start = sim["sess_user"], sim["sess_start"]
    after = drifting[sess_user] & (sess_start >= switch_ms[sess_user])
    favs = np.where(after[:, None], fav_after[sess_user], fav_before[sess_user])
    pick = (rng.random(len(sess_user)) * n_fav[sess_user]).astype(np.int64)
    sess_cluster = favs[np.arange(len(sess_user)), pick]
    page_item = _pick_items(rng, sess_cluster[sim["page_sess"]], item_cluster, popularity, c.explore)

    order = np.argsort(sim["time"], kind="stable")[: c.events]
    ev_item = page_item[sim["page"][order]]
    ev_type = sim["type"][order]
    events = _build_events(c.seed, sess_user[sim["sess"][order]], ev_item, ev_type, sim["time"][order],
                           sim["sess"][order], item_cluster, price)
    truth = _truth(item_cluster, fav_before, fav_after, n_fav, drifting, switch_ms)
    return SyntheticLog(config, events, truth)


def item_table(rng: np.random.Generator, c: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item's cluster, popularity weight and price: the first draws of the simulation's generator (the
    synthetic catalog, ``producers/synthetic_catalog.py``, redraws them from the seed)."""
    item_cluster = rng.permutation(c.items) % c.n_clusters
    popularity = (rng.permutation(c.items) + 1.0) ** -c.zipf
    price = np.round(rng.lognormal(3.0, 0.8, c.items), 2)
    return item_cluster, popularity, price


def _favourites(rng: np.random.Generator, users: int, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """(users x 3 favourite clusters padded with -1, how many each user has): 1-3 distinct clusters."""
    n_fav = np.minimum(rng.choice([1, 2, 3], size=users, p=[0.4, 0.4, 0.2]), n_clusters)
    fav = np.full((users, 3), -1, dtype=np.int64)
    for slot in range(3):
        taken = np.sort(fav[:, :slot], axis=1)
        draw = (rng.random(users) * (n_clusters - slot)).astype(np.int64) if n_clusters > slot else \
            np.zeros(users, dtype=np.int64)
        for col in range(slot):  # shift past clusters already taken, in ascending order
            draw += draw >= taken[:, col]
        fav[:, slot] = np.where(slot < n_fav, draw, -1)
    return fav, n_fav


def _swap_one(rng: np.random.Generator, fav: np.ndarray, n_fav: np.ndarray, drifting: np.ndarray,
              n_clusters: int) -> np.ndarray:
    """Replace one favourite of each drifting user by a cluster the user did not favour."""
    users = len(fav)
    members = np.sort(np.where(fav >= 0, fav, np.iinfo(np.int64).max), axis=1)
    new = (rng.random(users) * np.maximum(n_clusters - n_fav, 1)).astype(np.int64)
    for col in range(3):
        new += new >= members[:, col]
    slot = (rng.random(users) * n_fav).astype(np.int64)
    after = fav.copy()
    rows = np.flatnonzero(drifting)
    after[rows, slot[rows]] = new[rows]
    return after


def _sessions(rng: np.random.Generator, c: SyntheticConfig, n_sessions: int,
              activity: np.ndarray) -> dict[str, np.ndarray]:
    """Sessions, their pages and the funnel events, with times; arrays keyed by name."""
    if n_sessions >= c.users:
        per_user = 1 + rng.multinomial(n_sessions - c.users, activity)
    else:
        per_user = rng.multinomial(n_sessions, activity)
    sess_user = np.repeat(np.arange(c.users), per_user)
    pages = rng.geometric(1.0 / c.session_pages, n_sessions)
    page_sess = np.repeat(np.arange(n_sessions), pages)
    n_pages = len(page_sess)
    click = rng.random(n_pages) < c.click_rate
    cart = click & (rng.random(n_pages) < c.cart_rate)
    checkout = rng.random(n_sessions) < c.checkout_rate
    buy = cart & checkout[page_sess] & (rng.random(n_pages) < c.buy_rate)

    # Funnel events of each page: view, then click, then cart; purchases go after the session's pages.
    per_page = 1 + click.astype(np.int64) + cart
    funnel_page = np.repeat(np.arange(n_pages), per_page)
    page_first = np.cumsum(per_page) - per_page
    funnel_type = np.arange(len(funnel_page)) - page_first[funnel_page]
    bought = np.flatnonzero(buy)
    ev_page = np.concatenate([funnel_page, bought])
    ev_type = np.concatenate([funnel_type, np.full(len(bought), 3)])
    by_session = np.argsort(page_sess[ev_page], kind="stable")
    ev_page, ev_type = ev_page[by_session], ev_type[by_session]
    ev_sess = page_sess[ev_page]

    # Offsets within a session: a gap before each event, none before the first or between purchases.
    gap = rng.exponential(1.0, len(ev_page)) * _GAP_MEAN[ev_type] + _GAP_MIN[ev_type]
    starts = np.ones(len(ev_page), dtype=bool)
    starts[1:] = ev_sess[1:] != ev_sess[:-1]
    repeat_buy = np.zeros(len(ev_page), dtype=bool)
    repeat_buy[1:] = (ev_type[1:] == 3) & (ev_type[:-1] == 3) & ~starts[1:]
    gap = np.where(starts | repeat_buy, 0, gap.astype(np.int64))
    offset = _group_cumsum(gap, starts)
    ends = np.ones(len(ev_page), dtype=bool)
    ends[:-1] = starts[1:]
    duration = np.zeros(n_sessions, dtype=np.int64)
    duration[ev_sess[ends]] = offset[ends]

    # Session starts: each user's sessions follow one another, gaps averaging the span / their count.
    span = c.days * DAY_MS
    mean_gap = span / np.maximum(per_user, 1)
    user_start = (rng.random(c.users) * mean_gap).astype(np.int64)
    gaps = (rng.exponential(1.0, n_sessions) * mean_gap[sess_user]).astype(np.int64) + _MIN_SESSION_GAP_MS
    user_first = np.ones(n_sessions, dtype=bool)
    user_first[1:] = sess_user[1:] != sess_user[:-1]
    step = np.concatenate([[0], (duration + gaps)[:-1]])
    sess_start = c.start_ms + user_start[sess_user] + _group_cumsum(np.where(user_first, 0, step), user_first)
    first = np.full(c.users, c.start_ms, dtype=np.int64)
    last = np.full(c.users, c.start_ms, dtype=np.int64)
    first[sess_user[user_first]] = sess_start[user_first]
    user_last = np.ones(n_sessions, dtype=bool)
    user_last[:-1] = user_first[1:]
    last[sess_user[user_last]] = sess_start[user_last]
    return {"time": sess_start[ev_sess] + offset, "sess": ev_sess, "page": ev_page, "type": ev_type,
            "page_sess": page_sess, "sess_user": sess_user, "sess_start": sess_start,
            "user_first": first, "user_last": last}


def _group_cumsum(values: np.ndarray, group_starts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each True of ``group_starts`` (values there count, from zero)."""
    total = np.cumsum(values)
    base = np.maximum.accumulate(np.where(group_starts, np.arange(len(values)), 0))
    return total - total[base] + values[base]


def _pick_items(rng: np.random.Generator, cluster: np.ndarray, item_cluster: np.ndarray,
                popularity: np.ndarray, explore: float) -> np.ndarray:
    """One item per page: from the page's cluster by popularity, or (explore) from the whole catalogue."""
    u = rng.random(len(cluster))
    exploring = rng.random(len(cluster)) < explore
    out = np.empty(len(cluster), dtype=np.int64)
    out[exploring] = _draw(np.arange(len(popularity)), popularity, u[exploring])
    stay = np.flatnonzero(~exploring)
    for k in np.unique(cluster[stay]):
        rows = stay[cluster[stay] == k]
        members = np.flatnonzero(item_cluster == k)
        out[rows] = _draw(members, popularity[members], u[rows])
    return out


def _draw(members: np.ndarray, weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return members[np.minimum(np.searchsorted(cdf, u, side="right"), len(members) - 1)]


def _build_events(seed: int, user: np.ndarray, item: np.ndarray, kind: np.ndarray, time: np.ndarray,
                  sess: np.ndarray, item_cluster: np.ndarray, price: np.ndarray) -> list[Event]:
    users = {int(u): f"u{u}" for u in np.unique(user)}
    items = {int(i): f"i{i}" for i in np.unique(item)}
    cats = [f"c{k}" for k in range(int(item_cluster.max()) + 1)]
    sessions = {int(s): f"s{s}" for s in np.unique(sess)}
    item_cat = item_cluster.tolist()
    prices = price.tolist()
    out = []
    collecting = gc.isenabled()
    gc.disable()  # a million new objects would trigger many full collections that find nothing to free
    try:
        for n, (u, i, k, t, s) in enumerate(zip(user.tolist(), item.tolist(), kind.tolist(), time.tolist(),
                                                sess.tolist(), strict=True)):
            out.append(Event(f"syn{seed}-{n}", users[u], items[i], _TYPES[k], t, sessions[s],
                             prices[i] if k == 3 else None, {"category": cats[item_cat[i]]}))
    finally:
        if collecting:
            gc.enable()
    return out


def _truth(item_cluster: np.ndarray, before: np.ndarray, after: np.ndarray, n_fav: np.ndarray,
           drifting: np.ndarray, switch_ms: np.ndarray) -> GroundTruth:
    def names(row: Sequence[int], n: int) -> tuple[str, ...]:
        return tuple(f"c{k}" for k in row[:n])

    items = {f"i{i}": f"c{k}" for i, k in enumerate(item_cluster.tolist())}
    fav = {f"u{u}": names(row, n) for u, (row, n) in enumerate(zip(before.tolist(), n_fav.tolist(), strict=True))}
    drifts = {f"u{u}": Drift(int(switch_ms[u]), fav[f"u{u}"], names(after[u].tolist(), int(n_fav[u])))
              for u in np.flatnonzero(drifting).tolist()}
    return GroundTruth(items, fav, drifts)


def write_log(events: Iterable[Event], path: str | Path) -> int:
    """Write events to ``path``: an Avro container file (``.avro``, schema ``stream/schemas/event.avsc``) or
    JSON lines with the Avro field names (``.gz`` compresses), which ``--format jsonl`` reads without a
    mapping. The same events give the same bytes. Written to a temporary file, then renamed. Returns the
    number of events."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        if target.suffix == ".avro":
            count = avro.write(events, tmp)
        else:
            count = _write_jsonl(events, tmp, gz=target.suffix == ".gz")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _write_jsonl(events: Iterable[Event], path: Path, gz: bool) -> int:
    count = 0
    with path.open("wb") as raw:
        sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if gz else raw
        try:
            lines: list[bytes] = []
            for event in events:
                lines.append(json.dumps(event.to_record(), separators=(",", ":")).encode() + b"\n")
                count += 1
                if len(lines) >= 10_000:
                    sink.write(b"".join(lines))
                    lines.clear()
            sink.write(b"".join(lines))
        finally:
            if gz:
                sink.close()
    return count
