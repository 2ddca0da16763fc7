"""Features of (user, candidate) pairs for the learned reranker, built for a whole batch at once.

:func:`build_features` turns a :class:`~models.serving.candidates.CandidateBatch` into a ``(G, F)`` float32 matrix
(one row per candidate, columns :data:`FEATURES`) with numpy; the only Python loops run over the batch's
distinct items and over each user's recent items and previous list (a few dozen per user):

``ann`` ... ``recent``         the candidate's normalised score from each source of :data:`SCORED` (0: not
                               proposed by it, or the engine does not run that source)
                               (``content`` last: catalog items similar in content)
``from_ann`` ... ``from_recent`` 1 where that source proposed the candidate
``blend``                      the configured weighted blend
``item_age``                   ``log1p`` of the minutes since the item was first seen in an event
                               (items never seen count as :data:`MAX_AGE_MIN` old)
``category_affinity``          share of the user's last :data:`AFFINITY_ITEMS` items in the candidate's category
``user_activity``              ``log1p`` of the user's number of events
``prev_position``              ``1 / (1 + position)`` of the candidate in the user's previous list, else 0
``recent_item``                1 if the user interacted with the candidate recently (a repeat)
``last_view``                  1 if the user's last event was a view (or an unknown type): context
``session_length``             ``log1p`` of the user's events in the current session (recent events less
                               than :data:`SESSION_GAP_MS` apart, counted back from the last): context
``recent_after_view``          ``recent`` x ``last_view``: re-engagement just after a view
``knn_in_session``             ``session_knn`` x ``min(1, session_length / log1p(10))``: neighbours once the
                               session has a few items
``own_position``               ``1 / (1 + p)``, ``p`` the candidate's place among the user's distinct recent
                               items (0: the last one), whatever the sources proposed; 0 if not among them
``own_last``                   1 if the candidate is the item of the user's last event
``own_recency``                ``1 / (1 + minutes / 30)`` since the user last touched the candidate, else 0
``own_view`` ... ``own_purchase`` 1 for the event type of the user's last touch of the candidate (a view
                               or unknown type, a click, a cart, a purchase; a rating counts as a click)
``own_purchased``              1 if the user bought the candidate (the seen/purchased policy lets it through)

The ``own_*`` features describe "this is one of the user's own recent items" in detail (where in the history,
how long ago, how it was touched), so the reranker can learn per log whether to put them first (funnel logs:
the item viewed just before is carted next) or not (a movie once rated).

The two context features are the same for every candidate of a user; the logistic reranker uses them
through the two products, which let it learn per context how much to trust ``recent`` and ``session_knn``.

:class:`~models.online.itemtable.ItemTable` supplies first-seen times and categories; it must be bound to the
model whose codes ``space`` uses (:meth:`~models.online.itemtable.ItemTable.bind`).

>>> from streamrec.models.serving.candidates import merge_candidates
>>> from streamrec.models.serving.state import StateLimits
>>> table = ItemTable()
>>> table.observe("a", 0, "red"); table.observe("b", 60_000, "blue")
>>> st = UserState("u"); st.observe("a", 1, 0, 1.0, StateLimits()); st.shown = ("b",)
>>> space = CodeSpace()
>>> batch = merge_candidates(1, [(1, np.zeros(2, dtype=np.int64), space.codes(["a", "b"]),
...                                np.array([1.0, 0.5], dtype=np.float32))])
>>> x = build_features(batch, batch.scores[:, 1], [st], space, table, now_ms=120_000)
>>> {n: x[:, FEATURES.index(n)].round(3).tolist() for n in ("covisit", "category_affinity", "prev_position")}
{'covisit': [1.0, 0.5], 'category_affinity': [1.0, 0.0], 'prev_position': [0.0, 1.0]}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamrec.models.base.encoder import TYPE_INDEX
from streamrec.models.online.itemtable import ItemTable
from streamrec.models.serving.candidates import CandidateBatch, CodeSpace
from streamrec.models.serving.state import META, UserState

#: the sources whose scores are features (explore, if present, is not one)
SCORED: tuple[str, ...] = ("ann", "covisit", "trending", "cold_start", "mf", "session_knn", "recent",
                         "content")
FEATURES: tuple[str, ...] = (
    *SCORED, *(f"from_{s}" for s in SCORED),
    "blend", "item_age", "category_affinity", "user_activity", "prev_position", "recent_item",
    "last_view", "session_length", "recent_after_view", "knn_in_session",
    "own_position", "own_last", "own_recency", "own_view", "own_click", "own_cart", "own_purchase",
    "own_purchased",
)
N_SCORED = len(SCORED)
SESSION_GAP_MS = 30 * 60_000   # events further apart than this start a new session
_VIEWS = (TYPE_INDEX["VIEW"], TYPE_INDEX["OTHER"])
_F = {name: k for k, name in enumerate(FEATURES)}
BLEND, AGE, AFFINITY, ACTIVITY, PREV, REPEAT = (_F[n] for n in ("blend", "item_age", "category_affinity",
                                                                "user_activity", "prev_position", "recent_item"))
LAST_VIEW, SESSION_LEN, RECENT_VIEW, KNN_SESSION = (_F[n] for n in ("last_view", "session_length",
                                                                    "recent_after_view", "knn_in_session"))
OWN_POS, OWN_LAST, OWN_RECENCY, OWN_VIEW, OWN_PURCHASED = (_F[n] for n in ("own_position", "own_last", "own_recency",
                                                                        "own_view", "own_purchased"))
#: event type index -> offset of its ``own_*`` touch column from ``own_view`` (view, click, cart, purchase;
#: a rating counts as a click, OTHER as a view)
_TOUCH = np.array([0, 1, 2, 3, 1, 0], dtype=np.int64)
OWN_RECENCY_MIN = 30.0         # minutes at which own_recency is 1/2
AFFINITY_ITEMS = 10            # recent items that define a user's category affinity
MAX_AGE_MIN = 60.0 * 24 * 365  # age of items never seen (and the cap of every age), minutes
_ROW = 1 << 40                 # row stride of the (row, key) join keys


def _join(keys: np.ndarray, values: np.ndarray, probe: np.ndarray, default: float = 0.0) -> np.ndarray:
    """``values`` of ``keys`` looked up at ``probe`` (``default`` where absent); keys need not be unique
    (the first occurrence wins)."""
    out = np.full(len(probe), default, dtype=np.float32)
    if not len(keys) or not len(probe):
        return out
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    at = np.minimum(np.searchsorted(k, probe), len(k) - 1)
    found = k[at] == probe
    out[found] = values[order][at[found]]
    return out


def build_features(batch: CandidateBatch, blend: np.ndarray, states: Sequence[UserState | None],
                   space: CodeSpace, table: ItemTable, now_ms: int,
                   columns: Sequence[str] | None = None) -> np.ndarray:
    """The ``(len(batch), len(FEATURES))`` float32 feature matrix of a batch (see the module docstring).

    ``states[r]`` is the user of row ``r``; ``space`` the batch's codes (``table`` bound to its model);
    ``now_ms`` the event time that item ages are measured at; ``columns`` names the batch's score columns
    (default: the first of :data:`SCORED`; a scored source the batch has no column for contributes zeros).
    Nothing passed in is modified.
    """
    g = len(batch)
    x = np.zeros((g, len(FEATURES)), dtype=np.float32)
    if g == 0:
        return x
    names = list(SCORED[:batch.scores.shape[1]] if columns is None else columns)
    for f, name in enumerate(SCORED):
        if name in names:
            col = batch.scores[:, names.index(name)]
            x[:, f] = col
            x[:, N_SCORED + f] = col != 0
    x[:, BLEND] = blend
    uniq, inv = np.unique(batch.codes, return_inverse=True)
    item = space.item
    first, cat = table.facts(np.where(uniq < space.n_model, uniq, -1), lambda k: item(int(uniq[k])))
    age = np.where(first >= 0, (now_ms - first) / 60_000.0, MAX_AGE_MIN).clip(0.0, MAX_AGE_MIN)
    x[:, AGE] = np.log1p(age)[inv]
    cand_cat = cat[inv]
    # the users' recent items and previous lists, flattened with their row
    rec_items: list[str] = []
    rec_rows: list[int] = []
    prev_items: list[str] = []
    prev_rows: list[int] = []
    prev_pos: list[int] = []
    activity = np.zeros(len(states), dtype=np.float32)
    last_view = np.zeros(len(states), dtype=np.float32)
    session = np.zeros(len(states), dtype=np.float32)
    active: list[int] = []             # rows with a recent history, whose packed records follow in ``history``
    for r, st in enumerate(states):
        if st is None:
            continue
        recent = st.recent_items
        if recent:
            active.append(r)
            recent = recent[:AFFINITY_ITEMS]
            rec_items.extend(recent)
            rec_rows.extend([r] * len(recent))
        shown = st.shown
        if shown:
            prev_items.extend(shown)
            prev_rows.extend([r] * len(shown))
            prev_pos.extend(range(len(shown)))
        activity[r] = sum(st.counts)
    history = _History(states, active)
    if active:
        last_view[active], session[active] = history.context()
    x[:, ACTIVITY] = np.log1p(activity)[batch.rows]
    x[:, LAST_VIEW] = last_view[batch.rows]
    x[:, SESSION_LEN] = np.log1p(session)[batch.rows]
    x[:, RECENT_VIEW] = x[:, _F["recent"]] * x[:, LAST_VIEW]
    x[:, KNN_SESSION] = x[:, _F["session_knn"]] * np.minimum(1.0, x[:, SESSION_LEN] / np.log1p(10.0))
    width = np.int64(max(space.size, 1))
    cand_keys = batch.rows * width + batch.codes
    if rec_items:
        rrows = np.array(rec_rows, dtype=np.int64)
        rcodes = space.finds(rec_items)
        _, rcat = table.facts(np.where(rcodes < space.n_model, rcodes, -1), rec_items)
        n_recent = np.bincount(rrows, minlength=len(states)).astype(np.float32)
        known = rcat >= 0
        ckeys, counts = np.unique(rrows[known] * _ROW + rcat[known], return_counts=True)
        share = counts / n_recent[ckeys // _ROW]
        has_cat = cand_cat >= 0
        x[has_cat, AFFINITY] = _join(ckeys, share.astype(np.float32), batch.rows[has_cat] * _ROW + cand_cat[has_cat])
        inb = rcodes >= 0
        at, found = _locate(cand_keys, rrows[inb] * width + rcodes[inb])
        x[at[found], REPEAT] = 1.0
    if prev_items:
        pcodes = space.finds(prev_items)
        inb = pcodes >= 0
        at, found = _locate(cand_keys, np.array(prev_rows, dtype=np.int64)[inb] * width + pcodes[inb])
        pos = np.array(prev_pos, dtype=np.float32)[inb]
        x[at[found][::-1], PREV] = (1.0 / (1.0 + pos[found]))[::-1]     # an item listed twice: its first place
    _own_features(x, states, history, space, cand_keys, width, now_ms)
    return x


def _own_features(x: np.ndarray, states: Sequence[UserState | None], history: _History, space: CodeSpace,
                  cand_keys: np.ndarray, width: np.int64, now_ms: int) -> None:
    """The ``own_*`` columns: each candidate that is one of its user's distinct recent items (first, i.e.
    most recent, occurrence), and whether the user bought it."""
    rows: list[int] = []
    items: list[str] = []
    pos: list[int] = []
    at_meta: list[int] = []          # each distinct item's record in ``history.meta``
    bought_rows: list[int] = []
    bought: list[str] = []
    for r, start in zip(history.rows, history.starts.tolist(), strict=True):
        st = states[r]
        recent = st.recent_items                       # type: ignore[union-attr]
        first = list(dict.fromkeys(recent))            # distinct, most recent first
        n = len(first)
        rows.extend([r] * n)
        items.extend(first)
        pos.extend(range(n))
        at_meta.extend([start + k for k in map(recent.index, first)] if n < len(recent) else
                       range(start, start + n))
    for r, st in enumerate(states):
        if st is not None and st.recent_items and st.purchased:
            bought_rows.extend([r] * len(st.purchased))
            bought.extend(st.purchased)
    if items:
        codes = space.finds(items)
        inb = codes >= 0
        meta = history.meta[np.array(at_meta, dtype=np.int64)[inb]]
        at, found = _locate(cand_keys, np.array(rows, dtype=np.int64)[inb] * width + codes[inb])
        hit, meta = at[found], meta[found]
        p = np.array(pos, dtype=np.float32)[inb][found]
        x[hit, OWN_POS] = 1.0 / (1.0 + p)
        x[hit, OWN_LAST] = p == 0
        age = np.maximum(now_ms - meta["ts"], 0) / 60_000.0
        x[hit, OWN_RECENCY] = 1.0 / (1.0 + age / OWN_RECENCY_MIN)
        x[hit, OWN_VIEW + _TOUCH[np.minimum(meta["type"].astype(np.int64), len(_TOUCH) - 1)]] = 1.0
    if bought:
        bcodes = space.finds(bought)
        inb = bcodes >= 0
        at, found = _locate(cand_keys, np.array(bought_rows, dtype=np.int64)[inb] * width + bcodes[inb])
        x[at[found], OWN_PURCHASED] = 1.0


class _History:
    """The packed recent records (``META``) of the batch's users with a history, joined into one array:
    user ``rows[j]``'s records are ``meta[starts[j]:starts[j] + lengths[j]]``, most recent first."""

    def __init__(self, states: Sequence[UserState | None], rows: list[int]) -> None:
        self.rows = rows
        blobs = [states[r].recent_meta for r in rows]        # type: ignore[union-attr]
        self.lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)) // META.itemsize
        self.starts = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(self.lengths[:-1], out=self.starts[1:])
        self.meta = np.frombuffer(b"".join(blobs), dtype=META)

    def context(self) -> tuple[np.ndarray, np.ndarray]:
        """Per user: whether the last event was a view, and how many events the current session has (recent
        events less than :data:`SESSION_GAP_MS` apart, counted back from the last)."""
        ts, starts, lengths = self.meta["ts"], self.starts, self.lengths
        last = self.meta["type"][starts]
        view = ((last == _VIEWS[0]) | (last == _VIEWS[1])).astype(np.float32)
        if len(starts) == 1:
            gaps = np.flatnonzero(ts[:-1] - ts[1:] > SESSION_GAP_MS)
            return view, np.array([gaps[0] + 1 if len(gaps) else len(ts)], dtype=np.float32)
        gap = np.zeros(len(ts), dtype=bool)                  # a gap after record i, inside its user
        gap[:-1] = ts[:-1] - ts[1:] > SESSION_GAP_MS
        gap[starts + lengths - 1] = False
        local = np.arange(len(ts)) - np.repeat(starts, lengths) + 1
        first = np.minimum.reduceat(np.where(gap, local, len(ts) + 1), starts)
        return view, np.minimum(first, lengths).astype(np.float32)


def _locate(sorted_keys: np.ndarray, probe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each ``probe`` key sits in ``sorted_keys`` (ascending, unique), and whether it is there: the
    candidates' keys are sorted (the batch is ordered by row, then code), so a few thousand user keys are
    looked up among tens of thousands of candidates without sorting them."""
    at = np.minimum(np.searchsorted(sorted_keys, probe), len(sorted_keys) - 1)
    return at, sorted_keys[at] == probe
