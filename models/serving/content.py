"""Content candidates (``content``): catalog items similar to the user's recent items, by their metadata.

The only source that can place an item nobody has interacted with: an item is indexed from its first catalog
record (the plug-in ``catalog`` hook feeds :class:`~models.catalog.content.ContentIndex`), and from then on it
is a candidate for every user whose recent items it resembles. Without a catalog the source proposes nothing
(and costs nothing).

Per user: the seeds are the first ``seeds`` distinct recent items, weighted ``strength / (1 + position)`` (as
for co-visitation, :func:`models.serving.sources.seeds`); the query is ``sum_s w_s * v_s``, so a candidate's
score is ``sum_s w_s * cos(v_s, v_item)``. One exact inner-product search serves the whole batch; the seeds
themselves and the items the ``filter_seen`` policy blocks are left out, and so are items of similarity
``<= 0`` (no shared evidence). The reason of a chosen item (:meth:`ContentSource.explain`) is
``content:<seed>``, the seed with the largest ``w_s * cos(v_s, v_item)``, computed for chosen items only.

How the blend relates to the hybrid ``a x CF + (1 - a) x CB``: the weighted blend scores a candidate
``sum_s weight_s * score_s`` over every source's per-user normalised score; with the collaborative sources
(``ann``, ``covisit``, ``session_knn``, ``mf``) summed into CF and ``content`` as CB, a blend whose weights
are ``a`` for every CF source and ``1 - a`` for content *is* the fixed hybrid. The learned reranker
generalises it: it sees the content score as one feature among the other sources' scores (and context), so
the weight of content is learned from feedback and may differ per context instead of one ``a`` for all.

>>> from streamrec.models.catalog.item import Item
>>> from streamrec.models.serving.candidates import CodeSpace
>>> from streamrec.models.serving.state import StateLimits, UserState
>>> src = ContentSource(k=5)
>>> src.catalog([Item("a", "Star Wars", tags=("sci-fi",)), Item("b", "Star Trek", tags=("sci-fi",)),
...              Item("c", "Pride and Prejudice", tags=("romance",))])
>>> st = UserState("u"); st.observe("a", 1, 0, 1.0, StateLimits())
>>> req = Request(["u"], [st], CodeSpace(), None, 0, "max", 20)
>>> rows, codes, scores = src.candidates(req)
>>> [req.space.item(c) for c in codes.tolist()], src.explain(req, [0], ["b"])
(['b'], ['content:a'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamrec.models.catalog.content import ContentConfig, ContentIndex
from streamrec.models.catalog.item import Item
from streamrec.models.serving.contract import Block, Plugin, Request, empty_block
from streamrec.models.serving.ranking import blocked_items
from streamrec.models.serving.sources import seeds

__all__ = ["ContentSource"]


class ContentSource(Plugin):
    """Items whose content vectors are closest to each user's seeds (see the module docstring)."""

    name = "content"

    def __init__(self, k: int = 50, seeds: int = 5, config: ContentConfig | None = None,
                 filter_seen: str = "purchased") -> None:
        self.k, self.n_seeds, self.filter_seen = k, seeds, filter_seen
        self.index = ContentIndex(config)

    def catalog(self, items: Sequence[Item]) -> None:
        self.index.update(items)

    def candidates(self, request: Request) -> Block | None:
        index = self.index
        if not len(index):
            return None
        rows: list[int] = []
        seed_items: list[list[str]] = []
        seed_weights: list[list[float]] = []
        for r, st in enumerate(request.states):
            if st is None or not st.recent_items:
                continue
            items, weights = seeds(st, self.n_seeds)
            if any(i in index for i in items):
                rows.append(r)
                seed_items.append(items)
                seed_weights.append(weights)
        if not rows:
            return empty_block()
        scores, found = index.search(index.query(seed_items, seed_weights), 2 * self.k + self.n_seeds)
        out_rows: list[int] = []
        out_items: list[str] = []
        out_scores: list[float] = []
        item_of = index.item_of
        for r, own, sc, fr in zip(rows, seed_items, scores.tolist(), found.tolist(), strict=True):
            ban = blocked_items(request.states[r], self.filter_seen)
            taken = 0
            for s, f in zip(sc, fr, strict=True):
                if f < 0 or s <= 0.0:
                    break
                item = item_of(f)
                if item in own or (ban and item in ban):
                    continue
                out_rows.append(r)
                out_items.append(item)
                out_scores.append(s)
                taken += 1
                if taken >= self.k:
                    break
        if not out_rows:
            return empty_block()
        rows_a = np.asarray(out_rows, dtype=np.int64)
        return rows_a, request.space.codes(out_items), request.normalise(np.asarray(out_scores, np.float32), rows_a)

    def explain(self, request: Request, rows: Sequence[int], items: Sequence[str]) -> list[str]:
        """``content:<seed>`` per chosen (row, item): the seed that contributed most to its score."""
        out: list[str] = []
        index = self.index
        for r, item in zip(rows, items, strict=True):
            st = request.states[r]
            v = index.vector(item)
            if st is None or v is None:
                out.append(self.name)
                continue
            best, best_w = "", 0.0
            for seed, w in zip(*seeds(st, self.n_seeds), strict=True):
                sv = index.vector(seed)
                if sv is not None and seed != item:
                    contribution = w * float(sv @ v)
                    if contribution > best_w:
                        best, best_w = seed, contribution
            out.append(f"{self.name}:{best}" if best else self.name)
        return out

    def stats(self) -> dict[str, Any]:
        return self.index.stats()
