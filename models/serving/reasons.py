"""A reason on every recommended item: the source that placed it and, where the source can tell, its evidence.

Reasons are short and machine-readable: ``covisit:<seed item>`` (co-visited with that recent item),
``content:<seed item>`` (similar in content to it), ``session:<n>`` (held by ``n`` neighbour sessions), or the
source's name alone: ``recent``, ``trending``, ``ann``, ``cold_start``, ``explore``, ``mf``.

The selection writes the source's name (free); a source with an ``explain(request, rows, items) -> reasons``
method adds its evidence for the items it won, after selection: a source computes evidence for the ~20
chosen items per user, never for the hundreds of candidates.

>>> from streamrec.models.serving.candidates import CodeSpace
>>> from streamrec.models.serving.contract import Request
>>> req = Request(["u"], [None], CodeSpace(), None, 0, "max", 20)
>>> class Seeded:
...     def explain(self, request, rows, items):
...         return [f"covisit:seed-of-{i}" for i in items]
>>> lists = [[RecItem("a", 1.0, "covisit", "covisit"), RecItem("b", 0.5, "trending", "trending"),
...           RecItem("c", 0.1, "explore")]]
>>> [it.reason for it in explain_lists(req, lists, {"covisit": Seeded().explain})[0]]
['covisit:seed-of-a', 'trending', 'explore']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from streamrec.models.serving.contract import Request
from streamrec.models.serving.ranking import RecItem

__all__ = ["Explainer", "explain_lists", "explainers"]

#: ``explain(request, rows, items) -> reasons``: one reason per (row, item) the source won
Explainer = Callable[[Request, Sequence[int], Sequence[str]], list[str]]


def explainers(plugins: Sequence[object]) -> dict[str, Explainer]:
    """The ``explain`` methods of the plug-ins that have one, by source name."""
    out: dict[str, Explainer] = {}
    for p in plugins:
        fn = getattr(p, "explain", None)
        name = getattr(p, "name", "")
        if callable(fn) and name:
            out[name] = fn
    return out


def explain_lists(request: Request, lists: list[list[RecItem]],
                  explain: Mapping[str, Explainer]) -> list[list[RecItem]]:
    """``lists`` with every item's reason: the evidence of sources that explain, else the source's name."""
    wanted: dict[str, list[tuple[int, int]]] = {}
    out: list[list[RecItem]] = []
    for r, items in enumerate(lists):              # one pass: who explains what, and the plain reasons
        row = list(items)
        for k in [k for k, it in enumerate(row) if it.source in explain or not it.reason]:
            it = row[k]
            src = it.source
            if src in explain:
                wanted.setdefault(src, []).append((r, k))
            else:
                row[k] = RecItem(it.item_id, it.score, src, src)
        out.append(row)
    for name, where in wanted.items():
        reasons = explain[name](request, [r for r, _ in where], [out[r][k].item_id for r, k in where])
        for (r, k), reason in zip(where, reasons, strict=True):
            it = out[r][k]
            reason = reason or it.source
            if reason != it.reason:
                out[r][k] = RecItem(it.item_id, it.score, it.source, reason)
    return out
