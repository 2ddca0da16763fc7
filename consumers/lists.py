"""The items of a ``Recommendation`` record, with a last check: a score that is not a finite number is never
emitted. The engine should never produce one (events are validated at the edge, the sources refuse
non-finite strengths); if it does anyway, the item is dropped from the list, counted and logged.

>>> import structlog
>>> from streamrec.models.serving.ranking import RecItem, RecList
>>> guard = FiniteScores(structlog.wrap_logger(structlog.ReturnLogger()))   # a logger that prints nothing
>>> rl = RecList("u1", (RecItem("a", 0.9, "ann"), RecItem("b", float("nan"), "covisit")), None, None)
>>> [i["item_id"] for i in guard.items(rl)], guard.dropped, guard.lists
(['a'], 1, 1)
"""

from __future__ import annotations

import math
from typing import Any

from streamrec.models.serving.ranking import RecList

#: Lists logged one by one before the log line is thinned to one in ``LOG_EVERY``.
LOG_FIRST, LOG_EVERY = 10, 1000


class FiniteScores:
    """Builds the ``items`` of a ``Recommendation`` and drops the items whose score is NaN or infinite;
    ``dropped`` counts the items, ``lists`` the lists that lost at least one."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.dropped = 0
        self.lists = 0

    def items(self, rl: RecList) -> list[dict[str, Any]]:
        out = [{"item_id": it.item_id, "score": float(it.score), "source": it.source, "reason": it.reason}
               for it in rl.items if math.isfinite(it.score)]
        n = len(rl.items) - len(out)
        if n:
            self.dropped += n
            self.lists += 1
            if self.lists <= LOG_FIRST or self.lists % LOG_EVERY == 0:
                self.log.warning("non-finite scores dropped from a list", user=rl.user_id[:64], dropped=n,
                                 kept=len(out), total_dropped=self.dropped, lists=self.lists)
        return out
