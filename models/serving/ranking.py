"""Blending, filtering and diversifying candidates into the final list.

Each source's scores are first normalised per user (``"max"``: divided by the list's largest absolute
score, so every source's best item scores 1; ``"rank"``: ``1 - rank / len``, which ignores score scales
altogether). The blend is ``sum_s weight_s * score_s``; the item's ``source`` is the one with the largest
weighted contribution (:class:`BlendScorer`, the engine's default scorer; a learned reranker is another
scorer, see :mod:`models.serving.contract`).

Filters (``filter_seen``): ``"purchased"`` (default) drops items the user bought; ``"all"`` drops every
item the user has interacted with (what a movie or news site wants); ``"none"`` keeps everything (repeat
purchases, e.g. groceries). Diversity: ``"category"`` allows at most ``max_per_category`` items of one
artifact category (items without a category are not capped; capped items come back at the end of the
list if nothing else is left); ``"mmr"`` is maximal marginal relevance with the item embeddings,
``lambda * relevance - (1 - lambda) * max similarity to the items already chosen``.

>>> normalise(np.array([4.0, 2.0, 3.0, 1.0]), np.array([0, 0, 1, 1])).tolist()
[1.0, 0.5, 1.0, 0.3333333432674408]
>>> normalise(np.array([4.0, 2.0, 3.0]), np.array([0, 0, 1]), method="rank").tolist()
[1.0, 0.5, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from streamrec.models.errors import ConfigError
from streamrec.models.serving.candidates import SOURCES, CandidateBatch, CodeSpace, normalise
from streamrec.models.serving.runs import offsets, rank_in_runs
from streamrec.models.serving.state import UserState

if TYPE_CHECKING:
    from streamrec.models.catalog.store import CatalogMasks

__all__ = ["BlendScorer", "RecItem", "RecList", "Selection", "Trigger", "blend", "blocked_items", "mmr_order",
           "normalise", "select"]

FILTER_POLICIES = ("none", "purchased", "all")
DIVERSITY_MODES = ("none", "category", "mmr")
NORMALISERS = ("max", "rank")


_SET = object.__setattr__


@dataclass(frozen=True, slots=True, init=False)
class RecItem:
    item_id: str
    score: float
    source: str
    #: why, machine-readable: the source and its evidence (``covisit:<seed>``, ``content:<seed>``,
    #: ``session:<n neighbours>``) or the source's name alone (``recent``, ``trending``, ``ann``, ...);
    #: the selection fills in the source's name, :func:`models.serving.reasons.explain_lists` the evidence
    reason: str = ""

    def __init__(self, item_id: str, score: float, source: str, reason: str = "") -> None:
        # the dataclass's generated __init__, written out: half its cost per item (thousands per batch)
        _SET(self, "item_id", item_id)
        _SET(self, "score", score)
        _SET(self, "source", source)
        _SET(self, "reason", reason)


@dataclass(frozen=True, slots=True)
class Trigger:
    """The event that triggered a list (the user's last applied event), for lineage."""

    event_id: str
    timestamp_ms: int
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class RecList:
    user_id: str
    items: tuple[RecItem, ...]
    model_version: str | None
    index_version: str | None
    trigger: Trigger | None = None

    @property
    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]


def blocked_items(state: UserState | None, filter_seen: str) -> frozenset[str] | None:
    """The items a user must not be shown under the ``filter_seen`` policy (``None``: nothing)."""
    if state is None or filter_seen == "none":
        return None
    if filter_seen == "all":
        return frozenset(state.seen).union(state.purchased) if state.seen or state.purchased else None
    return frozenset(state.purchased) if state.purchased else None


def check_options(filter_seen: str, diversity: str, normalise_by: str) -> None:
    for value, allowed, name in ((filter_seen, FILTER_POLICIES, "filter_seen"),
                                 (diversity, DIVERSITY_MODES, "diversity"),
                                 (normalise_by, NORMALISERS, "normalise")):
        if value not in allowed:
            raise ConfigError(f"{name} is {value!r}; use one of {', '.join(allowed)}")


def blend(batch: CandidateBatch, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blended score and primary source (index of the largest weighted contribution) per candidate.

    A candidate that only unweighted sources proposed (weight 0: exploration, a source switched off in the
    blend) is credited to the one of them with the largest score, so an item only exploration proposed is
    ``explore``.
    """
    w = np.asarray(weights, dtype=np.float32)
    contrib = batch.scores * w
    primary = contrib.argmax(axis=1).astype(np.int8)
    weighted = w > 0
    if len(batch) and not weighted.all():
        none = ~(batch.scores[:, weighted] != 0).any(axis=1)
        if none.any():
            primary[none] = batch.scores[none].argmax(axis=1)
    return contrib.sum(axis=1), primary


class BlendScorer:
    """The default scorer: ``sum_s weight_s * score_s`` with one weight per score column (by name)."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = dict(weights)
        self._cache: tuple[tuple[str, ...], np.ndarray] | None = None

    def vector(self, columns: Sequence[str]) -> np.ndarray:
        key = tuple(columns)
        if self._cache is None or self._cache[0] != key:
            self._cache = key, np.array([self.weights.get(c, 0.0) for c in key], dtype=np.float32)
        return self._cache[1]

    def score(self, request: object, batch: CandidateBatch, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return blend(batch, self.vector(columns))


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    """Greedy maximal-marginal-relevance selection of ``k`` indices (``vectors`` rows L2-normalised).

    >>> v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> mmr_order(np.array([1.0, 0.9, 0.5]), v, k=2, lam=0.5)
    [0, 2]
    """
    n = len(relevance)
    chosen: list[int] = []
    max_sim = np.zeros(n, dtype=np.float32)
    free = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        value = np.where(free, lam * relevance - (1.0 - lam) * max_sim, -np.inf)
        j = int(np.argmax(value))
        chosen.append(j)
        free[j] = False
        max_sim = np.maximum(max_sim, vectors @ vectors[j])
    return chosen


@dataclass(frozen=True)
class Selection:
    """How to turn blended candidates into lists (one per row)."""

    top_n: int = 20
    diversity: str = "category"
    max_per_category: int = 10
    mmr_lambda: float = 0.7
    lookahead: int = 3       # rows consider top_n * lookahead candidates before looking further


def select(batch: CandidateBatch, scores: np.ndarray, primary: np.ndarray, space: CodeSpace,
           blocked: Sequence[AbstractSet[str] | None], how: Selection, categories: np.ndarray | None = None,
           embeddings: np.ndarray | None = None, sources: Sequence[str] = SOURCES,
           catalog: CatalogMasks | None = None) -> list[list[RecItem]]:
    """The final list of every row: best ``scores`` first, minus ``blocked`` items, diversified.

    Vectorised over the batch: candidates are ordered per row, blocked items and the category cap are
    masks, and capped items are moved behind the others by one more sort; only the chosen ``top_n``
    items per row become Python objects. ``categories`` (int codes, -1 for none) and ``embeddings`` are
    indexed by model code; items outside the model have no category and a zero vector. ``sources``
    names the score columns (``primary`` indexes it). ``catalog`` (per candidate, from the engine's catalog
    store) removes blocked items for every row and applies the hard per-list caps (category, brand): an item
    over a cap is left out, never moved to the end.
    """
    n_rows, g = len(batch.starts) - 1, len(batch)
    if g == 0:
        return [[] for _ in range(n_rows)]
    span = float(scores.max() - scores.min()) + 1.0
    order = np.argsort(batch.rows * span - scores.astype(np.float64))    # by row, best first
    rank = np.arange(g) - batch.starts[batch.rows[order]]
    look = how.top_n * max(1, how.lookahead)
    bkeys = _blocked_keys(blocked, space)
    cats = categories if how.diversity == "category" and how.max_per_category else None
    if how.diversity == "mmr" and embeddings is not None:
        return _mmr_lists(batch, order, scores, primary, space, bkeys, how, embeddings, sources, catalog)
    sel, clean = _pick(batch, order[rank < look], bkeys, space.size, cats, how, catalog)
    counts = np.bincount(batch.rows[sel], minlength=n_rows)
    short = (np.bincount(batch.rows[sel[clean]], minlength=n_rows) < how.top_n) & (np.diff(batch.starts) > look)
    if short.any():   # blocked or capped candidates in the way: look at all of those rows' candidates
        redo, _ = _pick(batch, order[short[batch.rows[order]]], bkeys, space.size, cats, how, catalog)
        sel = np.concatenate([sel[~short[batch.rows[sel]]], redo])
        sel = sel[np.argsort(batch.rows[sel], kind="stable")]
        counts = np.bincount(batch.rows[sel], minlength=n_rows)
    names = [sources[p] for p in primary[sel].tolist()]
    items = list(map(RecItem, space.items(batch.codes[sel].tolist()), scores[sel].tolist(), names, names))
    bounds = offsets(counts).tolist()
    return [items[bounds[r]:bounds[r + 1]] for r in range(n_rows)]


def _blocked_keys(blocked: Sequence[AbstractSet[str] | None], space: CodeSpace) -> np.ndarray | None:
    """``row * space.size + code`` of every blocked item that is a candidate code in this batch."""
    keys = [r * space.size + c for r, items in enumerate(blocked) if items
            for c in map(space.find, items) if c >= 0]
    return np.array(keys, dtype=np.int64) if keys else None


def _pick(batch: CandidateBatch, idx: np.ndarray, bkeys: np.ndarray | None, width: int,
          categories: np.ndarray | None, how: Selection,
          catalog: CatalogMasks | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Of ``idx`` (grouped by row, best first), each row's first ``top_n`` allowed candidates, with
    candidates over their category's cap after all others. Returns the candidate indices, by row, and
    a mask of those within their category's cap."""
    n = len(idx)
    rows, codes = batch.rows[idx], batch.codes[idx]
    prio = np.zeros(n, dtype=np.int64)
    if bkeys is not None:
        prio[np.isin(rows * width + codes, bkeys)] = 2
    if catalog is not None:
        prio[catalog.blocked[idx]] = 2
        for group, cap in catalog.caps:
            _hard_cap(prio, rows, group[idx], cap)
    if categories is not None and how.max_per_category:
        cat = np.full(n, -1, dtype=np.int64)
        inside = codes < len(categories)
        cat[inside] = categories[codes[inside]]
        ci = np.flatnonzero((cat >= 0) & (prio == 0))
        if len(ci):
            key = rows[ci] * (int(categories.max()) + 1) + cat[ci]
            o = np.argsort(key, kind="stable")                          # keeps best-first order per group
            nth = rank_in_runs(key[o])
            prio[ci[o[nth >= how.max_per_category]]] = 1
    final = np.argsort((rows * 3 + prio) * n + np.arange(n))
    nth = rank_in_runs(rows[final])
    take = (nth < how.top_n) & (prio[final] < 2)
    return idx[final[take]], prio[final[take]] == 0


def _nth_in_group(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(o, nth)``: a stable order of ``key`` and each position's rank within its run of equal keys."""
    o = np.argsort(key, kind="stable")
    return o, rank_in_runs(key[o])


def _hard_cap(prio: np.ndarray, rows: np.ndarray, group: np.ndarray, cap: int) -> None:
    """Exclude (priority 2) each row's candidates beyond the ``cap``-th of their group, best first."""
    ci = np.flatnonzero((group >= 0) & (prio < 2))
    if len(ci):
        o, nth = _nth_in_group(rows[ci].astype(np.int64) * (int(group.max()) + 1) + group[ci])
        prio[ci[o[nth >= cap]]] = 2


def _capped(chosen: np.ndarray, caps: Sequence[tuple[np.ndarray, int]], k: int) -> np.ndarray:
    """The first ``k`` of ``chosen`` (candidate indices, in list order) that keep every cap."""
    counts: list[dict[int, int]] = [{} for _ in caps]
    keep = []
    for j in chosen.tolist():
        groups = [int(g[j]) for g, _ in caps]
        if any(gv >= 0 and counts[n].get(gv, 0) >= caps[n][1] for n, gv in enumerate(groups)):
            continue
        for n, gv in enumerate(groups):
            if gv >= 0:
                counts[n][gv] = counts[n].get(gv, 0) + 1
        keep.append(j)
        if len(keep) == k:
            break
    return np.array(keep, dtype=np.int64)


def _mmr_lists(batch: CandidateBatch, order: np.ndarray, scores: np.ndarray, primary: np.ndarray,
               space: CodeSpace, bkeys: np.ndarray | None, how: Selection,
               embeddings: np.ndarray, sources: Sequence[str] = SOURCES,
               catalog: CatalogMasks | None = None) -> list[list[RecItem]]:
    """MMR re-ranking, one row at a time over its best ``top_n * lookahead`` allowed candidates."""
    rows_o, codes_o = batch.rows[order], batch.codes[order]
    allowed = np.ones(len(order), dtype=bool) if bkeys is None else ~np.isin(rows_o * space.size + codes_o, bkeys)
    if catalog is not None:
        allowed &= ~catalog.blocked[order]
    capped = catalog is not None and bool(catalog.caps)
    look = how.top_n * max(1, how.lookahead)
    out: list[list[RecItem]] = []
    for r in range(len(batch.starts) - 1):
        s, e = int(batch.starts[r]), int(batch.starts[r + 1])
        idx = order[s:e][allowed[s:e]][:look]
        codes = batch.codes[idx]
        vec = np.zeros((len(idx), embeddings.shape[1]), dtype=np.float32)
        inside = codes < len(embeddings)
        vec[inside] = embeddings[codes[inside]]
        chosen = idx[mmr_order(scores[idx], vec, len(idx) if capped else how.top_n, how.mmr_lambda)]
        if capped:
            chosen = _capped(chosen, catalog.caps, how.top_n)  # type: ignore[union-attr]
        out.append([RecItem(space.item(c), v, sources[p], sources[p]) for c, v, p in
                    zip(batch.codes[chosen].tolist(), scores[chosen].tolist(), primary[chosen].tolist(),
                        strict=True)])
    return out
