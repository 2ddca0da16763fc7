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
        keep = (found >= 0) & (scores > 0.0)
        # the seeds and the items the filter policy blocks, as (query, row) keys, masked in one isin
        width = len(index) + 1
        excl: list[int] = []
        row_of = index.row_of
        for q, (r, own) in enumerate(zip(rows, seed_items, strict=True)):
            ban = blocked_items(request.states[r], self.filter_seen)
            for item in (*own, *ban) if ban else own:
                c = row_of(item)
                if c >= 0:
                    excl.append(q * width + c)
        if excl:
            keys = np.arange(len(rows), dtype=np.int64)[:, None] * width + found
            keep &= ~np.isin(keys, np.asarray(excl, dtype=np.int64))
        keep &= np.cumsum(keep, axis=1) <= self.k
        q_idx, pos = np.nonzero(keep)
        if not len(q_idx):
            return empty_block()
        rows_a = np.asarray(rows, dtype=np.int64)[q_idx]
        item_of = index.item_of
        codes = request.space.codes([item_of(c) for c in found[q_idx, pos].tolist()])
        return rows_a, codes, request.normalise(scores[q_idx, pos].astype(np.float32), rows_a)

    def explain(self, request: Request, rows: Sequence[int], items: Sequence[str]) -> list[str]:
        """``content:<seed>`` per chosen (row, item): the seed that contributed most to its score (one small
        matrix product per user over the items content won for them)."""
        out = [self.name] * len(rows)
        index = self.index
        by_row: dict[int, list[int]] = {}
        for k, r in enumerate(rows):
            by_row.setdefault(r, []).append(k)
        for r, ks in by_row.items():
            st = request.states[r]
            if st is None:
                continue
            names, weights = seeds(st, self.n_seeds)
            have = [(n, w, v) for n, w in zip(names, weights, strict=True) if (v := index.vector(n)) is not None]
            vecs = [index.vector(items[k]) for k in ks]
            found = [j for j, v in enumerate(vecs) if v is not None]
            if not have or not found:
                continue
            seed_mat = np.stack([w * v for _, w, v in have])
            contrib = np.stack([vecs[j] for j in found]) @ seed_mat.T      # type: ignore[misc]
            for j, best, value in zip(found, contrib.argmax(axis=1).tolist(), contrib.max(axis=1).tolist(),
                                      strict=True):
                if value > 0:
                    out[ks[j]] = f"{self.name}:{have[best][0]}"
        return out

    def stats(self) -> dict[str, Any]:
        return self.index.stats()
