"""What the ``covisit`` reasons cost per list (not a test: a measurement to report).

``.venv/bin/python tools/covisit_reasons_timing.py [WORKDIR]`` (default ``demo-data``, what ``make demo``
leaves): the engine replays the demo's log (its first 40,000 events, 265-event batches) and every
``CovisitSource.explain`` call is made twice, by the engine's own code (each seed's weights for the chosen
items, ``CoVisitation.weights``) and by the earlier way (each seed's whole neighbour row as a dict), checking
that both give the same reasons. Prints microseconds per list of each.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from streamrec.consumers.engine import engine_config
from streamrec.models.base.artifact import load_artifact
from streamrec.models.engine.recommender import Recommender
from streamrec.models.events import Event
from streamrec.models.serving import sources
from streamrec.models.serving.contract import Request
from streamrec.stream.settings import Settings


def whole_rows(self: sources.CovisitSource, request: Request, rows: Sequence[int], items: Sequence[str]) -> list[str]:
    """The reasons as they were read before ``CoVisitation.weights``: every seed's row built as a dict."""
    out: list[str] = []
    nb = self.table._nb
    states, current = request.states, -1
    evidence: list[tuple[str, float, dict[str, float]]] = []
    for r, item in zip(rows, items, strict=True):
        if r != current:
            current, st = r, states[r]
            pairs = sources.seeds(st, self.n_seeds) if st is not None else ((), ())
            evidence = [(seed, w, row) for seed, w in zip(*pairs, strict=True) if (row := nb.get(seed))]
        best, best_w = "", 0.0
        for seed, w, row in evidence:
            v = w * row.get(item, 0.0)
            if v > best_w:
                best, best_w = seed, v
        out.append(f"covisit:{best}" if best else "covisit")
    return out


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-data")
    spent = {"weights": 0.0, "whole rows": 0.0}
    own = sources.CovisitSource.explain

    def both(self: sources.CovisitSource, request: Request, rows: Sequence[int], items: Sequence[str]) -> list[str]:
        t0 = time.perf_counter()
        got = own(self, request, rows, items)
        t1 = time.perf_counter()
        if whole_rows(self, request, rows, items) != got:
            raise SystemExit("the two ways gave different reasons")
        spent["weights"] += t1 - t0
        spent["whole rows"] += time.perf_counter() - t1
        return got

    sources.CovisitSource.explain = both  # type: ignore[method-assign]
    engine = Recommender(engine_config(Settings()))
    engine.swap(engine.prepare_model(load_artifact(work / "model")))
    lines = (work / "events.jsonl").read_text().splitlines()[:40_000]
    events = [Event.from_record(json.loads(line)) for line in lines]
    lists = 0
    for start in range(0, len(events), 265):
        lists += len(engine.recommend(engine.apply(events[start:start + 265])))
    print(json.dumps({"lists": lists, **{f"{k} us per list": round(1e6 * v / lists, 1) for k, v in spent.items()}}))


if __name__ == "__main__":
    main()
