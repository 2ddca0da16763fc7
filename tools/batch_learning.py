"""One end of batch per worker batch against one per partition (not a test: a measurement to report).

``.venv/bin/python tools/batch_learning.py [WORKDIR]`` (default ``demo-data``, what ``make demo`` leaves: its
``events.jsonl`` and ``model/``): the engine alone replays the log's second half (the demo's live half) in
265-event batches split over six partitions by user, as the demo's worker sees them, once ending the batch
after every partition (``apply(...)``, the worker before) and once after the whole batch
(``apply(..., end_batch=False)`` per partition, then ``end_apply()``). Prints, per way: apply milliseconds per
batch, labelled pairs the reranker learned, the online HR@10 and the reranker's AUC on its recent pairs.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from pathlib import Path

from streamrec.consumers.engine import engine_config
from streamrec.models.base.artifact import load_artifact
from streamrec.models.engine.recommender import Recommender
from streamrec.models.events import Event
from streamrec.stream.settings import Settings

BATCH, PARTITIONS = 265, 6


def run(events: list[Event], model: Path, per_partition: bool) -> dict[str, object]:
    engine = Recommender(engine_config(Settings()))
    engine.swap(engine.prepare_model(load_artifact(model)))
    apply_s, batches = 0.0, 0
    for start in range(0, len(events), BATCH):
        parts: dict[int, list[Event]] = {}
        for e in events[start:start + BATCH]:
            parts.setdefault(zlib.crc32(e.user_id.encode()) % PARTITIONS, []).append(e)
        t = time.perf_counter()
        touched: list[str] = []
        for p, evs in parts.items():
            touched += engine.apply(evs, p, end_batch=per_partition)
        if not per_partition:
            engine.end_apply()
        apply_s += time.perf_counter() - t
        batches += 1
        engine.recommend(touched)
    st, online = engine.stats(), engine.online
    if online is None or online.reranker is None:
        raise SystemExit("the engine has no learned reranker: check STREAMREC_RERANKER")
    return {"end": "per partition" if per_partition else "per batch",
            "apply_ms_per_batch": round(1000 * apply_s / batches, 2), "pairs": online.reranker.pairs,
            "hit_rate_at_10": round(st["hits_at_10"] / max(st["evaluated"], 1), 4),
            "reranker_recent_auc": online.reranker.stats()["reranker_recent_auc"]}


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-data")
    lines = (work / "events.jsonl").read_text().splitlines()
    events = [Event.from_record(json.loads(line)) for line in lines]
    live = events[len(events) // 2:]
    for per_partition in (True, False):
        print(json.dumps(run(live, work / "model", per_partition)))


if __name__ == "__main__":
    main()
