"""The maths of the online candidate sources: river MF (``mf``) and exploration (``explore``).

:mod:`models.online.plugins` makes them sources of the engine. ``mf`` proposes each user's best items under
the online matrix factorisation (numpy scoring). ``explore`` proposes a few random new
items per user with weight 0 in the blend; after selection, :func:`explore_lists` puts one of them (not
already listed, not blocked) into every list at a random position of its second half, with source
``explore``, so that new items are shown and earn feedback.

>>> from streamrec.models.serving.candidates import CodeSpace
>>> from streamrec.models.serving.ranking import RecItem, blocked_items
>>> space, rng = CodeSpace(), np.random.default_rng(0)
>>> block, drawn = explore_block(rng, 1, space, ["n1", "n2", "n3"], slots=1)
>>> len(block[0]), drawn.shape
(3, (1, 3))
>>> lists = [[RecItem(f"i{k}", 1.0 - k / 10, "covisit") for k in range(4)]]
>>> keys = np.sort(space.codes(["n1", "n2", "n3"]))                  # the batch's (row 0) candidate keys
>>> out, added = explore_lists(lists, drawn, keys, space.size, np.zeros(3), space, [None], top_n=4, slots=1,
...                            rng=rng)
>>> added, [it.source for it in out[0]].count("explore"), len(out[0])
(1, 1, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import numpy as np

from streamrec.models.online.river_mf import RiverMF
from streamrec.models.serving import candidates as cand
from streamrec.models.serving.contract import Block
from streamrec.models.serving.ranking import RecItem, blocked_items
from streamrec.models.serving.state import UserState


def mf_block(mf: RiverMF, user_ids: Sequence[str], states: Sequence[UserState | None], space: cand.CodeSpace,
             k: int, method: str, filter_seen: str) -> Block | None:
    """The river MF's top ``k`` items of every user it has factors for (numpy scoring); seen or purchased
    items are left out as ``filter_seen`` says."""
    if mf.n_items == 0:
        return None
    rows: list[int] = []
    items: list[str] = []
    values: list[np.ndarray] = []
    known = mf.model.u_latents
    for r, (uid, st) in enumerate(zip(user_ids, states, strict=True)):
        if uid not in known:
            continue
        top = mf.rank(uid, k, blocked_items(st, filter_seen) or ())   # the filter the selection applies
        if top:
            rows.extend([r] * len(top))
            items.extend(top)
            values.append(mf.score(uid, top))
    if not items:
        return None
    rows_a = np.array(rows, dtype=np.int64)
    vals = np.concatenate(values).astype(np.float32)
    vals = vals - vals.min() + 1e-3          # positive, so "max" normalisation keeps each user's order
    return rows_a, space.codes(items), cand.normalise(vals, rows_a, method)


def explore_block(rng: np.random.Generator, n_rows: int, space: cand.CodeSpace, pool: Sequence[str],
                  slots: int) -> tuple[Block | None, np.ndarray | None]:
    """``slots + 4`` random items of ``pool`` per row (spares for drawn items that are already listed), as a
    block with weight 0 in the blend, and the drawn codes ``(n_rows, draws)`` in draw order."""
    if not slots or not pool or not n_rows:
        return None, None
    draw = min(len(pool), slots + 4)
    picks = np.argsort(rng.random((n_rows, len(pool))), axis=1)[:, :draw]
    codes = space.codes(list(pool))[picks]
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), draw)
    return (rows, codes.ravel(), np.ones(n_rows * draw, dtype=np.float32)), codes


def explore_lists(lists: list[list[RecItem]], drawn: np.ndarray, keys: np.ndarray, width: int, scores: np.ndarray,
                  space: cand.CodeSpace, blocked: Sequence[AbstractSet[str] | None], top_n: int, slots: int,
                  rng: np.random.Generator) -> tuple[list[list[RecItem]], int]:
    """Each list with up to ``slots`` drawn items inserted at random positions in its second half (cut to
    ``top_n``); ``keys`` are the batch's sorted ``row * width + code`` keys (for the items' scores).
    Returns the lists and how many items were inserted."""
    out = []
    total = 0
    for r, items in enumerate(lists):
        present = {it.item_id for it in items}
        ban = blocked[r] or ()
        new = list(items)
        added = 0
        for c in drawn[r].tolist():
            if added >= slots:
                break
            item = space.item(c)
            if item in present or item in ban:
                continue
            g = int(np.searchsorted(keys, r * width + c))
            lo = min(len(new), top_n // 2)
            pos = int(rng.integers(lo, min(len(new), top_n - 1) + 1))
            new.insert(pos, RecItem(item, float(scores[g]), "explore"))
            present.add(item)
            added += 1
        total += added
        out.append(new[:top_n])
    return out, total
