"""Online learning inside the engine: learned reranker, quality and drift, exploration, river MF source.

:class:`OnlineLayer` holds the online learners of one engine, switched on by :class:`OnlineSwitches`
(``reranker``, ``drift_detector``, ``explore_slots``, ``mf``, fields of the engine's ``EngineConfig``), and
:mod:`models.online.plugins` plugs them into the engine's contract (:mod:`models.serving.contract`):

* ``observe(event, item, state, position)``, per applied event *before* the state learns it (test, then
  train): the event is scored against the user's last list (drift monitor, labels for the reranker) and
  the item table records the item.
* ``end_apply()``, once per applied batch: the batch's labelled pairs (:mod:`models.online.feedback`) are
  scored, counted in the online AUC / log loss, then learned (:mod:`models.online.reranker`).
* ``rescore``: the feature matrix of the batch (:mod:`models.online.features`) scored by the reranker replaces
  the blend, once the reranker has learned ``warmup_pairs`` pairs (the blend serves until then).
* ``log_lists``: the feature log of the emitted lists, where the labels of later events come from.
* ``mf`` (the river MF of the ``mf`` source) and the random generator that exploration draws from.

State that survives restarts: :meth:`OnlineLayer.checkpoint` returns named parts (reranker weights and
scaler statistics, online metrics and the drift detector as JSON, the item table and river MF as
``.npz``: plain data, never pickle), :meth:`OnlineLayer.restore` hands them back to the learners, which
check every field. ``consumers/online.py`` wraps the parts in the ``online_state`` Avro envelope.

>>> from streamrec.models.events import Event, EventType
>>> from streamrec.models.engine.recommender import EngineConfig, Recommender
>>> rec = Recommender(EngineConfig(reranker=True, drift_detector="adwin", online=OnlineConfig(warmup_pairs=10)))
>>> events = [Event(f"e{k}", f"u{k % 5}", f"i{k * k % 23}", EventType.CLICK, 1_000 * k) for k in range(300)]
>>> for s in range(0, 300, 30):
...     _ = rec.recommend(rec.apply(events[s:s + 30]), now_ms=events[s + 29].timestamp_ms)
>>> st = rec.stats()
>>> st["reranker_pairs"] > 10, st["drift_detector"], st["evaluated"]  # each user's first event of 9 batches
(True, 'adwin', 45)
>>> st["reranker_recent_auc"], st["blend_recent_auc"], st["reranker_active"]   # the better ranker serves
(0.7244, 0.4763, True)
>>> [name for name, _, _ in rec.online.checkpoint()]
['items', 'reranker', 'drift']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.models.errors import ConfigError
from streamrec.models.events import Event
from streamrec.models.online.checkpoint import dump_parts, load_parts
from streamrec.models.online.drift import DETECTORS, DriftConfig, DriftMonitor, DriftSignal
from streamrec.models.online.features import FEATURES, build_features
from streamrec.models.online.feedback import FeedbackLog, LabelPolicy, label_pairs
from streamrec.models.online.itemtable import ItemTable
from streamrec.models.online.river_mf import RiverMF, RiverMFConfig
from streamrec.models.serving import candidates as cand
from streamrec.models.serving.ranking import RecItem
from streamrec.models.serving.runs import offsets
from streamrec.models.serving.state import UserState

if TYPE_CHECKING:
    from streamrec.models.online.reranker import OnlineReranker

MF_PRESETS = ("none", "rating", "ranking")
BLEND = FEATURES.index("blend")


@dataclass(frozen=True)
class OnlineConfig:
    """The finer knobs of online learning (the switches are :class:`OnlineSwitches`)."""

    reranker_lr: float = 0.01
    reranker_l2: float = 1e-4
    fm_factors: int = 4
    warmup_pairs: int = 500            # the blend serves until the reranker has learned this many pairs
    gate: bool = True                  # and while it ranks the last labelled pairs worse than the blend
    negatives: int = 4                 # sampled per positive (models/feedback.py)
    position_bias: str = "log"         # log | none: examination propensity of negatives
    ipw: bool = False                  # inverse-propensity weights for shown positives
    max_pairs: int = 64                # labelled pairs learned per batch at most: this many, or
    pairs_per_event: float = 0.125     # this many per applied event if that is more
    feedback_users: int = 20_000       # users whose last list's features are kept for labels
    log_depth: int = 0                 # candidates logged per user: the list, then the best others (0: the list)
    item_table: int = 200_000          # items whose first-seen time and category are kept
    drift_delta: float = 0.002
    drift_threshold: float = 50.0
    drift_window: int = 2_000          # evaluated events per quality window
    drift_cooldown_events: int = 10_000
    drift_cooldown_ms: int = 3_600_000
    drift_min_events: int = 2_000
    explore_pool: int = 100            # newest items that exploration draws from
    mf_factors: int = 16
    mf_max_users: int = 100_000

    def labels(self) -> LabelPolicy:
        return LabelPolicy(self.negatives, self.position_bias, 10.0, self.max_pairs, self.ipw)


@dataclass(frozen=True)
class OnlineSwitches:
    """Which online learners an engine runs, and the few engine settings they need (the engine's
    :class:`~models.engine.recommender.EngineConfig` builds this with ``online_switches()``)."""

    reranker: bool = False             # a river model learned from feedback replaces the blend
    reranker_model: str = "logreg"     # logreg | fm (models/online/reranker.py)
    drift_detector: str = "none"       # none | adwin | page_hinkley
    explore_slots: int = 0             # items per list from new arrivals, source "explore"
    mf: str = "none"                   # none | rating | ranking: river BiasedMF as candidate source "mf"
    k_mf: int = 50
    top_n: int = 20
    filter_seen: str = "purchased"
    seed: int = 0

    def wanted(self) -> bool:
        """Whether any online learner is on (the engine then builds an :class:`OnlineLayer`)."""
        return bool(self.reranker or self.drift_detector != "none" or self.explore_slots or self.mf != "none")

    def check(self) -> None:
        """Raise :class:`ConfigError` for an unknown reranker model, drift detector or MF preset."""
        from streamrec.models.online.reranker import MODELS

        if self.reranker_model not in MODELS:
            raise ConfigError(f"reranker_model is {self.reranker_model!r}; use one of {', '.join(MODELS)}")
        if self.drift_detector not in ("none", *DETECTORS):
            raise ConfigError(f"drift_detector is {self.drift_detector!r}; use none, {', '.join(DETECTORS)}")
        if self.mf not in MF_PRESETS:
            raise ConfigError(f"mf is {self.mf!r}; use one of {', '.join(MF_PRESETS)}")


class OnlineLayer:
    """Online learners of one engine (see the module docstring); :mod:`models.online.plugins` plugs them
    into the engine's contract."""

    def __init__(self, switches: OnlineSwitches, config: OnlineConfig | None = None) -> None:
        self.switches = switches
        oc = self.config = config or OnlineConfig()
        switches.check()
        self._rng = np.random.default_rng(switches.seed + 1013)
        self.items = ItemTable(oc.item_table)
        self.policy = oc.labels()
        self.reranker: OnlineReranker | None = None
        self.log: FeedbackLog | None = None
        if switches.reranker:
            # imported here: river's linear models and scaler import scipy.stats (seconds, and not needed
            # by an engine without the reranker)
            from streamrec.models.online.reranker import OnlineReranker, RerankerConfig

            self.reranker = OnlineReranker(RerankerConfig(switches.reranker_model, oc.reranker_lr, oc.reranker_l2,
                                                          fm_factors=oc.fm_factors, seed=switches.seed), FEATURES)
            self.log = FeedbackLog(oc.feedback_users, max(oc.log_depth, switches.top_n), len(FEATURES))
        self.drift: DriftMonitor | None = None
        if switches.drift_detector != "none":
            self.drift = DriftMonitor(DriftConfig(switches.drift_detector, oc.drift_delta, oc.drift_threshold,
                                                  oc.drift_window, cooldown_events=oc.drift_cooldown_events,
                                                  cooldown_ms=oc.drift_cooldown_ms, min_events=oc.drift_min_events))
        self.mf: RiverMF | None = None
        if switches.mf != "none":
            base: dict[str, Any] = {"n_factors": oc.mf_factors, "max_users": oc.mf_max_users, "seed": switches.seed}
            self.mf = RiverMF(RiverMFConfig.for_ranking(**base) if switches.mf == "ranking" else RiverMFConfig(**base))
        self.now_ms = 0
        self.reranked_batches = 0
        self.explored = 0
        self.learned_batches = 0
        self._acted: dict[int, set[int]] = {}
        self._batch_events = 0
        self._batch_users: set[str] = set()   # users with an event in the batch being applied
        self._X: np.ndarray | None = None
        self._serve = False                  # the reranker's scores replace the blend
        self._next_gate = oc.warmup_pairs    # pairs learned when the gate is next decided

    # --- events ------------------------------------------------------------------------------------
    def set_on_drift(self, callback: Any) -> None:
        """Call ``callback(DriftSignal)`` on every reported drift (the worker sends a retrain request)."""
        if self.drift is not None:
            self.drift.on_drift = callback

    def observe(self, event: Event, item: str, state: UserState, position: int) -> DriftSignal | None:
        """Test, then train, for one applied event: call before ``state`` learns the event; ``position`` is
        the item's place in ``state.shown`` (-1: not there)."""
        ts = event.timestamp_ms
        if ts > self.now_ms:
            self.now_ms = ts
        self._batch_events += 1
        # the drift monitor scores only a user's first event of a batch: their later ones were made before
        # the list of the batch was sent, so scoring them against the older list would make the hit rate
        # (and a drift alarm) depend on the batch size, which load changes
        first = event.user_id not in self._batch_users
        self._batch_users.add(event.user_id)
        if self.reranker is not None:           # the item table only feeds the reranker's features
            ctx = event.context
            self.items.observe(item, ts, ctx.get("category") if ctx else None)
        signal = None
        if state.shown:
            if self.drift is not None and first:
                signal = self.drift.observe(position, ts)
            if self.log is not None:
                got = self.log.lookup(event.user_id)
                if got is not None and item in got[1]:
                    self._acted.setdefault(got[0], set()).add(got[1].index(item))
        return signal

    def end_apply(self) -> None:
        """Learn the labelled pairs of the batch just applied (test, then train)."""
        if self.reranker is None or self.log is None or not self._acted:
            self._acted, self._batch_events = {}, 0
            self._batch_users.clear()
            return
        cap = max(self.config.max_pairs, int(self.config.pairs_per_event * self._batch_events))
        X, y, w = label_pairs(self.log, self._acted, self.policy, self._rng, cap)
        self._acted, self._batch_events = {}, 0
        self._batch_users.clear()
        if len(y):
            order = self._rng.permutation(len(y))
            self.reranker.learn(X[order], y[order], w[order], baseline=X[order, BLEND])
            self.learned_batches += 1
            if self.reranker.pairs >= self._next_gate:       # re-decide every 1,000 pairs (two sorts)
                self._next_gate = self.reranker.pairs + 1_000
                self._serve = self._reranker_wins()

    def _reranker_wins(self) -> bool:
        """Serve the reranker once warmed up, and (with ``gate``) while its exact AUC on the last labelled
        pairs is at least the blend's on the same pairs: on a stream where the features carry nothing the
        blend does not, the blend keeps serving."""
        rr = self.reranker
        if rr is None or rr.pairs < self.config.warmup_pairs:
            return False
        if not self.config.gate:
            return True
        model_auc, blend_auc = rr.recent.get()
        return model_auc is not None and (blend_auc is None or model_auc >= blend_auc)

    def forget_user(self, user_id: str) -> None:
        if self.log is not None:
            self.log.forget(user_id)

    # --- ranking -----------------------------------------------------------------------------------
    def rescore(self, batch: cand.CandidateBatch, columns: Sequence[str], blend: np.ndarray,
                states: Sequence[UserState | None], space: cand.CodeSpace,
                model: cand.PreparedModel | None) -> np.ndarray:
        """The reranker's scores of the batch (the blend itself while the reranker warms up); the batch's
        features are kept for the feedback log of the lists that follow."""
        self._X = None
        if self.reranker is None:
            return blend
        ids = () if model is None else model.item_ids
        if self.items.bound is not ids:        # a new model (or a restored table): mirror it by model code
            self.items.bind(ids, {} if model is None else model.index_of, None if model is None else model.categories)
        self._X = build_features(batch, blend, states, space, self.items, self.now_ms, columns)
        if not self._serve:
            return blend
        self.reranked_batches += 1
        return self.reranker.score(self._X)

    def log_lists(self, user_ids: Sequence[str], states: Sequence[UserState | None], lists: list[list[RecItem]],
                  batch: cand.CandidateBatch, scores: np.ndarray, space: cand.CodeSpace) -> None:
        """The feature log of the emitted lists (labels for the reranker when the users act on them)."""
        if self.log is None or self._X is None:
            return
        width = np.int64(max(space.size, 1))
        self._log_lists(user_ids, states, lists, batch, scores, batch.rows * width + batch.codes, width, space)

    def _log_lists(self, user_ids: Sequence[str], states: Sequence[UserState | None], lists: list[list[RecItem]],
                   batch: cand.CandidateBatch, scores: np.ndarray, keys: np.ndarray, width: np.int64,
                   space: cand.CodeSpace) -> None:
        """Log each emitted list, then the best-scored candidates that missed it, up to the log's width."""
        if self.log is None or self._X is None:
            return
        rows = [r for r, st in enumerate(states) if st is not None and lists[r]]
        if not rows:
            return
        w = self.log.width
        shown = [[it.item_id for it in lists[r][:w]] for r in rows]
        n_shown = np.array([len(x) for x in shown], dtype=np.int64)
        item = space.item
        rows_a = np.array(rows, dtype=np.int64)
        jrow = np.repeat(np.arange(len(rows)), n_shown)
        col = np.arange(len(jrow)) - np.repeat(np.cumsum(n_shown) - n_shown, n_shown)
        chosen = np.searchsorted(keys, rows_a[jrow] * width + space.codes([i for x in shown for i in x]))
        idx = np.full((len(rows), w), -1, dtype=np.int64)
        idx[jrow, col] = chosen
        best = bj = np.zeros(0, dtype=np.int64)
        if self.config.log_depth > self.switches.top_n:     # the best candidates that missed the lists
            order = np.lexsort((-scores, batch.rows))             # by row, best first
            rank = np.arange(len(order)) - batch.starts[batch.rows[order]]
            j_of = np.full(len(lists), -1, dtype=np.int64)
            j_of[rows_a] = np.arange(len(rows))
            best = order[(rank < w) & (j_of[batch.rows[order]] >= 0)]
            best = best[~np.isin(best, chosen)]
            bj = j_of[batch.rows[best]]
            nth = np.arange(len(best)) - np.searchsorted(bj, bj)
            keep = nth < w - n_shown[bj]
            best, bj, nth = best[keep], bj[keep], nth[keep]
            idx[bj, n_shown[bj] + nth] = best
        names = [item(c) for c in batch.codes[best].tolist()]
        bounds = offsets(np.bincount(bj, minlength=len(rows))).tolist()
        logged = [(*shown[j], *names[bounds[j]:bounds[j + 1]]) for j in range(len(rows))]
        X = np.where((idx >= 0)[:, :, None], self._X[np.maximum(idx, 0)], 0.0)
        self.log.record([user_ids[r] for r in rows], logged, n_shown.tolist(), X)

    # --- reporting and checkpoints ------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"online_item_table": len(self.items), "explored": self.explored}
        if self.reranker is not None and self.log is not None:
            out.update(self.reranker.stats())
            out.update({"reranker_active": self._serve,
                        "reranked_batches": self.reranked_batches, "feedback_users": len(self.log)})
        if self.drift is not None:
            out.update(self.drift.stats())
        if self.mf is not None:
            out.update({"mf_users": self.mf.n_users, "mf_items": self.mf.n_items,
                        "mf_evicted_users": self.mf.evicted_users})
        return out

    def learned_anything(self) -> bool:
        return bool((self.reranker is not None and self.reranker.pairs) or (self.drift and self.drift.evaluated)
                    or (self.mf is not None and self.mf.n_users))

    def learners(self) -> dict[str, Any]:
        """The learners this engine runs, by checkpoint part name (see :mod:`models.online.checkpoint`)."""
        out: dict[str, Any] = {}
        if self.reranker is not None:
            out.update(items=self.items, reranker=self.reranker)
        if self.drift is not None:
            out["drift"] = self.drift
        if self.mf is not None:
            out["mf"] = self.mf
        return out

    def checkpoint(self) -> list[tuple[str, str, bytes]]:
        """The state worth keeping, as ``(name, encoding, bytes)`` parts of plain data (see
        :mod:`models.online.checkpoint`)."""
        return dump_parts(self.learners())

    def restore(self, parts: Sequence[tuple[str, str, bytes]]) -> dict[str, str]:
        """Install checkpoint parts; returns ``{part: "restored" | reason refused}``. Each learner checks
        its own state; parts that are not plain data (an old pickled part) are refused, never decoded."""
        outcome = load_parts(self.learners(), parts)
        self._serve = self._reranker_wins()
        if self.reranker is not None:
            self._next_gate = max(self.config.warmup_pairs, self.reranker.pairs + 1_000)
        return outcome
