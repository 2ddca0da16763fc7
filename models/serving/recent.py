"""Recent items (``recent``): what the user touched recently, most recent first (re-engagement).

Re-clicking an item, carting the item just viewed, buying what was carted: on e-commerce streams the next
item is often one of the user's own last few. This source proposes the user's ``k`` most recent distinct
items with the score ``1 / (1 + p)`` at position ``p`` (0 = the last item), the seeds' weighting of
co-visitation. The ``filter_seen`` policy decides what may come back: ``purchased`` (the default) leaves
out what the user bought, ``all`` leaves out everything the user touched (this source then proposes
nothing), ``none`` keeps everything. It owns no table: the user state's recent history is the source.

>>> from streamrec.models.serving.candidates import CodeSpace
>>> from streamrec.models.serving.state import StateLimits, UserState
>>> st = UserState("u")
>>> for item, kind in [("a", 0), ("b", 0), ("a", 1), ("c", 3)]:      # view a, view b, click a, buy c
...     st.observe(item, kind, 0, 1.0, StateLimits())
>>> req = Request(["u"], [st], CodeSpace(), None, 0, "max", 20)
>>> rows, codes, scores = RecentSource(k=10).candidates(req)
>>> [req.space.item(c) for c in codes.tolist()], scores.round(3).tolist()          # c was bought
(['a', 'b'], [1.0, 0.5])
"""

from __future__ import annotations

import numpy as np

from streamrec.models.errors import ConfigError
from streamrec.models.serving.contract import Block, Plugin, Request, empty_block
from streamrec.models.serving.ranking import blocked_items

__all__ = ["DECAYS", "RecentSource"]

DECAYS = ("harmonic", "linear")


class RecentSource(Plugin):
    """The user's ``k`` most recent distinct items the filter policy allows, ``1 / (1 + p)``."""

    name = "recent"

    def __init__(self, k: int = 20, filter_seen: str = "purchased", decay: str = "harmonic") -> None:
        if decay not in DECAYS:
            raise ConfigError(f"recent_decay is {decay!r}; use one of {', '.join(DECAYS)}")
        self.k, self.filter_seen, self.decay = k, filter_seen, decay

    def candidates(self, request: Request) -> Block | None:
        if self.filter_seen == "all":
            return None
        items: list[str] = []
        lengths: list[int] = []
        k = self.k
        for st in request.states:
            if st is None or not st.recent_items:
                lengths.append(0)
                continue
            ban = blocked_items(st, self.filter_seen) or ()
            mine = [i for i in dict.fromkeys(st.recent_items) if i not in ban][:k]
            items.extend(mine)
            lengths.append(len(mine))
        if not items:
            return empty_block()
        n = np.asarray(lengths, dtype=np.int64)
        rows = np.repeat(np.arange(len(n), dtype=np.int64), n)
        pos = np.arange(len(rows)) - np.repeat(np.cumsum(n) - n, n)
        score = 1.0 / (1.0 + pos) if self.decay == "harmonic" else 1.0 - pos / (k + 1.0)
        return rows, request.space.codes(items), request.normalise(score, rows)
