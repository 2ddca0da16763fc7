"""The online learners as engine plug-ins (the contract is :mod:`models.serving.contract`).

* :class:`OnlineLearning`: the layer's test-then-train hooks (drift monitor, reranker labels, item table).
* :class:`RerankerScorer`: the blend, replaced by the learned reranker's scores once it serves.
* :class:`FeedbackStage`: logs the features of every emitted list (where the reranker's labels come from).
* :class:`MFSource` (``mf``): river biased MF, learned per event, each user's best items as candidates.
* :class:`Exploration` (``explore``): a source of random new items (weight 0 in the blend) *and* the stage
  that puts up to ``slots`` of them into the second half of each list; the two halves of one idea in one
  object, drawing on the layer's seeded generator.

>>> from streamrec.models.engine.recommender import EngineConfig, Recommender
>>> rec = Recommender(EngineConfig(reranker=True, explore_slots=1, mf="ranking"))
>>> rec.columns
('ann', 'covisit', 'recent', 'trending', 'cold_start', 'mf', 'explore')
>>> [type(s).__name__ for s in rec.stages]
['Exploration', 'FeedbackStage']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamrec.models.events import Event
from streamrec.models.online.layer import OnlineLayer
from streamrec.models.online.sources import explore_block, explore_lists, mf_block
from streamrec.models.serving.candidates import CandidateBatch
from streamrec.models.serving.contract import EXPLORE, Block, Plugin, Request, Scorer, Selected
from streamrec.models.serving.ranking import RecItem
from streamrec.models.serving.state import UserState

__all__ = ["Exploration", "FeedbackStage", "MFSource", "OnlineLearning", "RerankerScorer"]


class OnlineLearning(Plugin):
    """The layer's per-event and per-batch learning (no candidates, no scores)."""

    name = "online"

    def __init__(self, layer: OnlineLayer) -> None:
        self.layer = layer

    def learn(self, event: Event, item: str, strength: float, state: UserState, position: int) -> None:
        self.layer.observe(event, item, state, position)

    def end_apply(self) -> None:
        self.layer.end_apply()

    def forget_user(self, user_id: str) -> None:
        self.layer.forget_user(user_id)

    def stats(self) -> dict[str, Any]:
        return self.layer.stats()


class RerankerScorer:
    """``base``'s scores (the blend) while the reranker warms up or loses to the blend, its own after."""

    def __init__(self, layer: OnlineLayer, base: Scorer) -> None:
        self.layer, self.base = layer, base

    def score(self, request: Request, batch: CandidateBatch, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        scores, primary = self.base.score(request, batch, columns)
        return self.layer.rescore(batch, columns, scores, request.states, request.space, request.model), primary


class FeedbackStage(Plugin):
    """Logs each emitted list with its features; changes no list."""

    name = "feedback"

    def __init__(self, layer: OnlineLayer) -> None:
        self.layer = layer

    def apply(self, request: Request, selected: Selected, lists: list[list[RecItem]]) -> list[list[RecItem]]:
        self.layer.log_lists(request.user_ids, request.states, lists, selected.batch, selected.scores, request.space)
        return lists


class MFSource(Plugin):
    """River MF's best ``k`` items per user it has factors for (the layer's ``mf``, which a restore replaces)."""

    name = "mf"

    def __init__(self, layer: OnlineLayer, k: int, filter_seen: str) -> None:
        self.layer, self.k, self.filter_seen = layer, k, filter_seen

    def learn(self, event: Event, item: str, strength: float, state: UserState, position: int) -> None:
        mf = self.layer.mf
        if mf is not None:
            mf.learn_event(event)

    def candidates(self, request: Request) -> Block | None:
        mf = self.layer.mf
        if mf is None:
            return None
        return mf_block(mf, request.user_ids, request.states, request.space, self.k, request.method, self.filter_seen)


class Exploration(Plugin):
    """Random draws from the newest items: candidates with weight 0, then up to ``slots`` per list."""

    name = "explore"
    phase = EXPLORE

    def __init__(self, layer: OnlineLayer, slots: int, pool: int, newest: Callable[[int], list[str]] | None,
                 top_n: int) -> None:
        self.layer, self.slots, self.pool, self.top_n = layer, slots, pool, top_n
        self._newest = newest
        self._drawn: np.ndarray | None = None

    def candidates(self, request: Request) -> Block | None:
        pool = self._newest(self.pool) if self._newest is not None else []
        block, self._drawn = explore_block(self.layer._rng, len(request), request.space, list(pool)[:self.pool],
                                           self.slots)
        return block

    def apply(self, request: Request, selected: Selected, lists: list[list[RecItem]]) -> list[list[RecItem]]:
        drawn, self._drawn = self._drawn, None
        if drawn is None:
            return lists
        width = max(request.space.size, 1)
        lists, added = explore_lists(lists, drawn, selected.keys(width), width, selected.scores, request.space,
                                     selected.blocked, self.top_n, self.slots, self.layer._rng)
        self.layer.explored += added
        return lists
