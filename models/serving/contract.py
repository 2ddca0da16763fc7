"""The engine's plug-in contract: candidate sources, one scorer, and post-selection stages, all batch-first.

A ``recommend`` call is one :class:`Request`: the batch's users (``user_ids``, ``states``), the item codes of
the batch (``space``), the model in service, the time and the list length. The engine then runs

1. every :class:`Source` (``candidates(request)`` returns one :data:`Block` for *all* the batch's users at once:
   ``(rows, codes, scores)`` as numpy arrays, scores already normalised per row with
   :meth:`Request.normalise`); a source's ``name`` is the ``source`` of the items it wins and the name of its
   score column;
2. one :class:`Scorer` over the merged candidates (``score(request, batch)`` returns a score per candidate and
   the index of the column each candidate is credited to): the weighted blend by default, the learned reranker
   when it serves;
3. the selection (filters and diversity, vectorised over the batch: :func:`models.serving.ranking.select`),
   then every :class:`Stage` in order (``apply(request, selected, lists)`` returns the lists: exploration
   slots, feedback logging, the finite-score guard).

Sources run in ``phase`` order (then in configuration order): ``PRIMARY`` sources first; ``FALLBACK`` sources
after them, when :meth:`Request.counts` tells how many candidates each user already has (cold start fills the
short rows); ``EXPLORE`` sources last.

Any plug-in may also learn. :class:`Plugin` gives every hook a default that does nothing, and the engine calls
only the hooks a plug-in overrides:

* ``learn(event, item, strength, state, position)``: once per applied event, *before* the user's state learns
  it (test, then train); ``position`` is the item's place in the list the user was last shown (-1: not in it,
  or no list);
* ``end_apply()``: once per applied batch;
* ``forget_user(user_id)``; ``stats()`` (merged into the engine's stats);
* ``to_state()`` / ``load_state(state)`` for checkpoints: plain data only (numbers, strings, lists, arrays).

A source may also explain what it won: ``explain(request, rows, items) -> reasons``, called after selection
with the (row, item) pairs the source is credited with in the final lists, returns one short reason each
(``covisit:<seed>``); evidence is computed for the chosen items only (:mod:`models.serving.reasons`). An
item of a source without ``explain`` has the source's name as its reason.

A new source is one file with a class like::

    class Newest(Plugin):
        name = "newest"
        def candidates(self, request):
            codes = request.space.codes(self.items)             # the same list for every row
            rows = np.arange(len(request.user_ids))
            return shared(rows, codes, np.linspace(1, 0.5, len(codes)), request)

and one line in the engine's source registry (:data:`models.engine.recommender.SOURCE_FACTORIES`).

>>> req = Request(["u1", "u2"], [None, None], CodeSpace(), None, 0, "max", 20)
>>> rows, codes, scores = shared(np.arange(2), req.space.codes(["a", "b"]), np.array([2.0, 1.0]), req)
>>> rows.tolist(), codes.tolist(), scores.tolist()
([0, 0, 1, 1], [0, 1, 0, 1], [1.0, 0.5, 1.0, 0.5])
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streamrec.models.catalog.item import Item
from streamrec.models.events import Event
from streamrec.models.serving.candidates import CandidateBatch, CodeSpace, PreparedModel, normalise
from streamrec.models.serving.ranking import RecItem
from streamrec.models.serving.state import UserState

__all__ = ["EXPLORE", "FALLBACK", "PRIMARY", "Block", "Plugin", "Request", "Scorer", "Selected", "Source", "Stage",
           "empty_block", "shared"]

#: ``(rows, codes, scores)``: row = the user's index in the request, code = the item's code in ``space``,
#: score normalised per row; each row's entries contiguous and best first, one entry per item and row.
Block = tuple[np.ndarray, np.ndarray, np.ndarray]

PRIMARY, FALLBACK, EXPLORE = 0, 1, 2


@dataclass
class Request:
    """One ``recommend`` call, as every plug-in sees it. ``blocks`` fills as sources run."""

    user_ids: Sequence[str]
    states: Sequence[UserState | None]
    space: CodeSpace
    model: PreparedModel | None
    now_ms: int | None
    method: str                 # per-row normalisation of source scores: "max" | "rank"
    top_n: int
    blocks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.user_ids)

    def normalise(self, scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Per-row normalised ``scores`` (the engine's method); ``rows`` must be grouped: each row's candidates
        contiguous (as every built-in source sorts them), or rows that recur are scaled together."""
        return normalise(scores, rows, self.method)

    def counts(self) -> np.ndarray:
        """Candidates each row has from the sources that ran so far (duplicates across sources counted)."""
        m = len(self.user_ids)
        if not self.blocks:
            return np.zeros(m, dtype=np.int64)
        return np.bincount(np.concatenate([b[1] for b in self.blocks]), minlength=m)


@dataclass(frozen=True)
class Selected:
    """What the stages after selection may read: the merged candidates, their final scores, the column each
    is credited to, the items each row must not show, and the score columns' names."""

    batch: CandidateBatch
    scores: np.ndarray
    primary: np.ndarray
    blocked: Sequence[AbstractSet[str] | None]
    columns: Sequence[str]

    def keys(self, width: int) -> np.ndarray:
        """Sorted ``row * width + code`` keys of the candidates (the batch is ordered by row, then code)."""
        return self.batch.rows * np.int64(width) + self.batch.codes


class Plugin:
    """Base of sources, scorers and stages: learning hooks that do nothing unless overridden."""

    name: str = ""
    phase: int = PRIMARY

    def learn(self, event: Event, item: str, strength: float, state: UserState, position: int) -> None:
        """One applied event, before ``state`` learns it."""

    def end_apply(self) -> None:
        """The batch of events just applied is complete."""

    def forget_user(self, user_id: str) -> None:
        """``user_id`` left this engine (evicted, tombstoned or its partition revoked)."""

    def catalog(self, items: Sequence[Item]) -> None:
        """Catalog records arrived (new items or changes; the newest record of an item wins)."""

    def stats(self) -> dict[str, Any]:
        return {}


def overrides(plugin: object, hook: str) -> bool:
    """Whether ``plugin`` implements ``hook`` itself (the engine skips the base's no-op hooks)."""
    impl = getattr(type(plugin), hook, None)
    return impl is not None and impl is not getattr(Plugin, hook, None)


@runtime_checkable
class Source(Protocol):
    name: str
    phase: int

    def candidates(self, request: Request) -> Block | None: ...


@runtime_checkable
class Scorer(Protocol):
    def score(self, request: Request, batch: CandidateBatch, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (G,) float32, primary (G,) int)``: a finite score per candidate and the index in
        ``columns`` of the source it is credited to."""
        ...


@runtime_checkable
class Stage(Protocol):
    name: str

    def apply(self, request: Request, selected: Selected, lists: list[list[RecItem]]) -> list[list[RecItem]]: ...


def empty_block() -> Block:
    empty = np.zeros(0, dtype=np.int64)
    return empty, empty, np.zeros(0, dtype=np.float32)


def shared(rows: np.ndarray, codes: np.ndarray, scores: np.ndarray, request: Request) -> Block:
    """The same ranked list (``codes``, ``scores`` best first) for every row in ``rows``."""
    norm = request.normalise(np.asarray(scores, dtype=np.float32), np.zeros(len(scores), dtype=np.int64))
    return (np.repeat(np.asarray(rows, dtype=np.int64), len(codes)), np.tile(codes, len(rows)),
            np.tile(norm, len(rows)))
