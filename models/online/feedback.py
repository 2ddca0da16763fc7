"""Labels for the reranker from what users do next, with care for position bias.

When a list is emitted, the features its items were ranked with are logged, followed by the features of
the best-scored candidates that did not make the list (:class:`FeedbackLog`: a fixed ring of the last
``capacity`` users, float16, so memory is allocated once and never grows). When the user's next events
arrive, :func:`label_pairs` turns that log into training pairs:

* **Positives**: every logged item the user acted on, shown or not: a candidate ranked 35th that the user
  found anyway is exactly what the reranker should learn to move up.
* **Negatives**: logged items the user did not act on. Users look at the top of a list more than at its
  bottom, so an unclicked item is only a real "no" if it was examined. Under the position-based click
  model an item at 0-based position ``q`` is examined with probability ``theta_q = 1 / log2(q + 2)`` (the
  DCG discount; ``position_bias="none"`` sets it to 1), so ``negatives`` of them per positive are *sampled*
  with probability proportional to ``theta_q`` (without replacement, weight 1): in expectation the same
  as weighting every unclicked item by its examination probability, at a bounded cost. The logged
  candidates that missed the list are in the pool too (after the list, so with smaller ``theta``): with
  positives drawn from them but negatives only from the list, the model would learn "not shown" means
  "good" (``unshown_negatives=False`` restores list-only negatives).
* **Inverse propensity weights** for shown positives (``1 / theta_p``, at most ``max_weight``) are the
  textbook correction when clicks are *caused* by the list, and are available with ``ipw=True``. They are
  off by default: most events on the stream are not clicks on our list (replayed logs, organic browsing,
  other surfaces), and there IPS over-corrects. On a replayed stream with a planted category preference,
  IPS cost 6 points of hit rate at 10 (0.377 against 0.437 without it; ``tests/unit/test_reranker.py``).
* Events whose item was not logged at all train nothing (the candidate sources did not propose it; finding
  it is the sources' job), nor do users not in the log (evicted, or never shown a list by this worker).

The pairs of a batch are then capped by uniform sampling (seeded): the online layer allows
``max(max_pairs, pairs_per_event * events)``, so learning costs a bounded number of river updates per
event whatever the batch size.

>>> log = FeedbackLog(capacity=2, width=4, n_features=1)
>>> log.record(["u1"], [("a", "b", "c", "d")], [3], np.array([[[0.0], [1.0], [2.0], [3.0]]], dtype=np.float32))
>>> slot, items = log.lookup("u1")
>>> items, log.shown(slot), log.features(slot, 4).ravel().tolist()
(('a', 'b', 'c', 'd'), 3, [0.0, 1.0, 2.0, 3.0])
>>> X, y, w = label_pairs(log, {slot: {2}}, LabelPolicy(negatives=3), np.random.default_rng(0))
>>> y.tolist(), sorted(X[1:, 0].tolist()), w.tolist()
([True, False, False, False], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0])
>>> X, y, w = label_pairs(log, {slot: {2, 3}}, LabelPolicy(negatives=1, ipw=True), np.random.default_rng(0))
>>> y.tolist(), [round(v, 3) for v in w.tolist()]
([True, True, False, False], [2.0, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

import numpy as np

from streamrec.models.errors import ConfigError


@dataclass(frozen=True)
class LabelPolicy:
    """How events become labelled pairs (see the module docstring)."""

    negatives: int = 4               # sampled per positive
    position_bias: str = "log"       # log: theta_p = 1 / log2(p + 2); none: theta_p = 1
    max_weight: float = 10.0         # cap of a positive's inverse-propensity weight
    max_pairs: int = 256             # per batch, sampled uniformly beyond
    ipw: bool = False                # weight shown positives by 1 / theta_p
    unshown_negatives: bool = True   # logged candidates that missed the list can be negatives too

    def __post_init__(self) -> None:
        if self.position_bias not in ("log", "none"):
            raise ConfigError(f"position_bias is {self.position_bias!r}; use log or none")
        if self.negatives < 0 or self.max_weight < 1 or self.max_pairs < 1:
            raise ConfigError("negatives must be >= 0, max_weight >= 1 and max_pairs >= 1")

    def propensity(self, n: int) -> np.ndarray:
        """Examination probability of positions ``0 .. n - 1``."""
        if self.position_bias == "none":
            return np.ones(n)
        return 1.0 / np.log2(np.arange(n) + 2.0)


class FeedbackLog:
    """The logged features of the last list (and the next best candidates) of at most ``capacity`` users
    (oldest overwritten first); ``width`` rows per user. The arrays start small and double as users come,
    up to ``capacity``: an engine with few users holds little (the full log of 50,000 users is 27 MB)."""

    INITIAL_ROWS = 1_024

    def __init__(self, capacity: int, width: int, n_features: int) -> None:
        if capacity < 1 or width < 1:
            raise ConfigError("FeedbackLog capacity and width must be at least 1")
        self.capacity, self.width = capacity, width
        rows = min(capacity, self.INITIAL_ROWS)
        self._X = np.zeros((rows, width, n_features), dtype=np.float16)
        self._items: list[tuple[str, ...]] = [()] * rows
        self._shown = np.zeros(rows, dtype=np.int64)
        self._owner: list[str | None] = [None] * rows
        self._slot: dict[str, int] = {}
        self._next = 0

    def _grow(self) -> None:
        """Double the arrays (at most to ``capacity``); slots keep their place."""
        rows = len(self._owner)
        more = min(self.capacity, 2 * rows) - rows
        self._X = np.concatenate([self._X, np.zeros((more, *self._X.shape[1:]), dtype=self._X.dtype)])
        self._shown = np.concatenate([self._shown, np.zeros(more, dtype=self._shown.dtype)])
        self._items.extend([()] * more)
        self._owner.extend([None] * more)

    def __len__(self) -> int:
        return len(self._slot)

    def record(self, user_ids: Sequence[str], items: Sequence[tuple[str, ...]], shown: Sequence[int],
               X: np.ndarray) -> None:
        """Log one user per row: ``items[r]`` (the first ``shown[r]`` of them were the emitted list, in its
        order) with feature rows ``X[r, :len(items[r])]``."""
        slots = np.empty(len(user_ids), dtype=np.int64)
        for r, (uid, its, n) in enumerate(zip(user_ids, items, shown, strict=True)):
            slot = self._slot.get(uid)
            if slot is None:
                slot = self._next
                if slot == len(self._owner):      # slots are taken in order: grow before the first wrap
                    self._grow()
                self._next = (slot + 1) % self.capacity
                old = self._owner[slot]
                if old is not None:
                    del self._slot[old]
                self._owner[slot] = uid
                self._slot[uid] = slot
            self._items[slot] = its[:self.width]
            self._shown[slot] = min(n, self.width)
            slots[r] = slot
        if len(slots):
            self._X[slots] = X[:, :self.width]

    def lookup(self, user_id: str) -> tuple[int, tuple[str, ...]] | None:
        slot = self._slot.get(user_id)
        return None if slot is None else (slot, self._items[slot])

    def shown(self, slot: int) -> int:
        """How many of the slot's logged items were in the emitted list."""
        return int(self._shown[slot])

    def features(self, slot: int, n: int) -> np.ndarray:
        return self._X[slot, :n].astype(np.float32)

    def forget(self, user_id: str) -> None:
        slot = self._slot.pop(user_id, None)
        if slot is not None:
            self._owner[slot] = None
            self._items[slot] = ()


_THETA: dict[tuple[str, int], np.ndarray] = {}


def _theta(policy: LabelPolicy, n: int) -> np.ndarray:
    """``policy.propensity(n)``, computed once per bias and length (read-only)."""
    key = (policy.position_bias, n)
    theta = _THETA.get(key)
    if theta is None:
        theta = _THETA[key] = policy.propensity(n)
        theta.setflags(write=False)
    return theta


def label_pairs(log: FeedbackLog, acted: Mapping[int, Set[int]], policy: LabelPolicy,
                rng: np.random.Generator, max_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled pairs ``(X, y, w)`` from the logged positions acted on (``acted``: slot -> positions), at
    most ``max_pairs`` (default ``policy.max_pairs``). Vectorised over all slots: negatives are drawn per
    slot without replacement with probability proportional to ``theta`` by Efraimidis-Spirakis keys
    (``log(u) / theta``, the largest keys win).

    One slot (a batch where one user acted on their list: every labelled event of a batch-of-one replay)
    takes a short path with a handful of numpy calls; it returns the same arrays and draws the same random
    numbers as the vectorised path (:func:`label_pairs_vectorised`; ``tests/unit/test_feedback_log.py``)."""
    if len(acted) == 1:
        return _one_slot(log, acted, policy, rng, max_pairs)
    return label_pairs_vectorised(log, acted, policy, rng, max_pairs)


def _one_slot(log: FeedbackLog, acted: Mapping[int, Set[int]], policy: LabelPolicy,
              rng: np.random.Generator, max_pairs: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`label_pairs_vectorised` for one slot, with the same operations on the same values."""
    (slot, positions), = acted.items()
    n = len(log._items[slot])
    hits = sorted(p for p in positions if 0 <= p < n)
    if not hits:
        return np.zeros((0, log._X.shape[2]), dtype=np.float32), np.zeros(0, dtype=bool), np.zeros(0)
    shown = int(log._shown[slot])
    theta = _theta(policy, n)
    hit = set(hits)
    end = n if policy.unshown_negatives else min(shown, n)
    cand = [q for q in range(end) if q not in hit]
    key = np.log(rng.random(len(cand))) / theta[cand]
    neg = np.asarray(cand, dtype=np.int64)[np.argsort(-key, kind="stable")[:policy.negatives * len(hits)]]
    take = np.concatenate((np.asarray(hits, dtype=np.int64), neg))
    y = np.zeros(len(take), dtype=bool)
    y[:len(hits)] = True
    w = np.ones(len(take))
    if policy.ipw:
        p_hit = np.asarray(hits, dtype=np.int64)
        w[:len(hits)] = np.where(p_hit < shown, np.minimum(1.0 / theta[p_hit], policy.max_weight), 1.0)
    cap = policy.max_pairs if max_pairs is None else max_pairs
    if len(take) > cap:
        keep = np.sort(rng.choice(len(take), size=cap, replace=False))
        take, y, w = take[keep], y[keep], w[keep]
    return log._X[slot, take].astype(np.float32), y, w


def label_pairs_vectorised(log: FeedbackLog, acted: Mapping[int, Set[int]], policy: LabelPolicy,
                           rng: np.random.Generator,
                           max_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`label_pairs` for any number of slots, vectorised over them."""
    n_feat = log._X.shape[2]
    slots = np.fromiter(acted, dtype=np.int64, count=len(acted))
    lengths = np.array([len(log._items[s]) for s in slots.tolist()], dtype=np.int64)
    if not len(slots) or not lengths.sum():
        return np.zeros((0, n_feat), dtype=np.float32), np.zeros(0, dtype=bool), np.zeros(0)
    shown = log._shown[slots]
    owner = np.repeat(np.arange(len(slots)), lengths)                      # one entry per logged item
    pos = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    hit = np.zeros(len(owner), dtype=bool)
    starts = (np.cumsum(lengths) - lengths).tolist()
    for j, (slot, n) in enumerate(zip(slots.tolist(), lengths.tolist(), strict=True)):
        for p in acted[slot]:
            if 0 <= p < n:
                hit[starts[j] + p] = True
    n_pos = np.bincount(owner[hit], minlength=len(slots))
    theta = policy.propensity(int(lengths.max()))[pos]
    pool = ~hit & (n_pos[owner] > 0) & (policy.unshown_negatives | (pos < shown[owner]))
    cand = np.flatnonzero(pool)
    key = np.log(rng.random(len(cand))) / theta[cand]
    order = cand[np.lexsort((-key, owner[cand]))]                          # by slot, best key first
    rank = np.arange(len(order)) - np.searchsorted(owner[order], owner[order])
    neg = order[rank < policy.negatives * n_pos[owner[order]]]
    take = np.concatenate((np.flatnonzero(hit), neg))
    y = np.concatenate((np.ones(int(hit.sum()), dtype=bool), np.zeros(len(neg), dtype=bool)))
    w = np.ones(len(take))
    if policy.ipw:
        p_hit = np.flatnonzero(hit)
        w[:len(p_hit)] = np.where(pos[p_hit] < shown[owner[p_hit]],
                                  np.minimum(1.0 / theta[p_hit], policy.max_weight), 1.0)
    cap = policy.max_pairs if max_pairs is None else max_pairs
    if len(take) > cap:
        keep = np.sort(rng.choice(len(take), size=cap, replace=False))
        take, y, w = take[keep], y[keep], w[keep]
    X = log._X[slots[owner[take]], pos[take]].astype(np.float32)
    return X, y, w
