"""``streamrec bench engine``: the worker's per-batch work without Kafka, stage by stage.

The worker's engine (its ``EngineConfig`` from the settings, so the learned reranker and drift detector are on
by default) with a random base model of ``items`` x ``dim`` is fed the sessions workload of ``bench worker`` in
batches of ``batch`` events, each batch as the worker runs it: ``decode`` (Avro event records to events,
validated), ``update`` (``apply``), ``recommend``, ``encode`` (each list as its ``Recommendation`` record,
each touched user's ``UserState`` record). Reported: milliseconds per batch of each stage (the mean over the
batches after ``warmup``), the engine's own split of ``recommend`` (``engine_stage_ms_per_batch``: each
source, score, select, stages), and events/s of the engine alone. There is no broker, so there is no
yardstick and no ratio: compare runs on one machine, or use ``bench worker`` for the figure against the bare
client. ``--profile N`` adds the ``N`` functions of largest own time (cProfile, measured batches only).
"""

from __future__ import annotations

import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from streamrec.bench.common import machine
from streamrec.bench.worker import workload
from streamrec.consumers.decode import decode_batch, event_limits
from streamrec.consumers.engine import engine_config
from streamrec.consumers.lists import FiniteScores
from streamrec.consumers.worker import freeze_long_lived
from streamrec.models.base.artifact import load_artifact, random_artifact
from streamrec.models.engine.recommender import Recommender
from streamrec.models.errors import InputError
from streamrec.models.serving.ranking import Trigger
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

STAGES = ("decode", "update", "recommend", "encode")
NO_TRIGGER = Trigger("", 0, 0, -1)


class _Quiet:
    def warning(self, *args: Any, **kwargs: Any) -> None:
        """The list guard's log line; nothing to log in a benchmark."""


def run(settings: Settings, events: int = 30_000, items: int = 100_000, dim: int = 64, batch: int = 1_000,
        users: int | None = None, warmup: int = 3, profile: int = 0, kind: str = "sessions",
        gc_freeze: bool = True) -> dict[str, Any]:
    if events < 1 or batch < 1 or items < 1 or dim < 1 or warmup < 0 or profile < 0:
        raise InputError("bench engine needs --events, --batch, --items, --dim of 1 or more and --warmup, "
                         "--profile of 0 or more")
    users = users or max(1, events // 4)
    cfg = engine_config(settings)
    work = Path(tempfile.mkdtemp(prefix="streamrec-bench-engine-"))
    random_artifact(work / "model", items, dim, seed=0, clusters=max(1, items // 200), version="bench")
    engine = Recommender(cfg)
    engine.swap(engine.prepare_model(load_artifact(work / "model")))
    if gc_freeze:
        freeze_long_lived()   # as the worker does once its model is in (consumers/worker.py)
    load = workload(kind, events, users, items, seed=1)
    ev_codec, rec_codec, state_codec = codec_for("event"), codec_for("recommendation"), codec_for("user_state")
    records = [Record(settings.events_topic, 0, k, e.timestamp_ms, e.user_id.encode(), ev_codec.encode(e.to_record()))
               for k, e in enumerate(load)]
    finite = FiniteScores(_Quiet())
    limits = event_limits(settings.max_id_bytes)
    n_batches = (len(records) + batch - 1) // batch
    totals = dict.fromkeys(STAGES, 0.0)
    engine_before: dict[str, float] = {}
    measured_events = measured_lists = measured = 0
    prof = cProfile.Profile() if profile else None
    with Progress(transient=True) as progress:
        task = progress.add_task("engine batches", total=n_batches)
        for b in range(n_batches):
            if b == warmup:
                engine_before = dict(engine.timings)
                if prof is not None:
                    prof.enable()
            chunk = records[b * batch:(b + 1) * batch]
            t0 = time.perf_counter()
            good, _ = decode_batch(chunk, limits=limits)
            t1 = time.perf_counter()
            touched = engine.apply([d.event for d in good], partition=0, offsets=[d.record.offset for d in good])
            t2 = time.perf_counter()
            lists = engine.recommend(touched, now_ms=int(time.time() * 1000))
            t3 = time.perf_counter()
            for rl in lists:
                trig = rl.trigger or NO_TRIGGER
                rec_codec.encode({
                    "user_id": rl.user_id, "items": finite.items(rl),
                    "trigger_event_id": trig.event_id, "trigger_timestamp": trig.timestamp_ms,
                    "trigger_partition": trig.partition, "trigger_offset": trig.offset, "emitted_at": 0,
                    "model_version": rl.model_version, "index_version": rl.index_version})
                state = engine.export_user(rl.user_id)
                if state is not None:
                    state_codec.encode(state)
            t4 = time.perf_counter()
            if b >= warmup:
                for name, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    totals[name] += seconds
                measured_events += len(chunk)
                measured_lists += len(lists)
                measured += 1
            progress.advance(task)
    if prof is not None:
        prof.disable()
    if not measured:
        raise InputError(f"{n_batches} batches and --warmup {warmup}: nothing was measured; give more --events")
    per_batch = {k: round(1000 * v / measured, 2) for k, v in totals.items()}
    engine_ms = {k: round(1000 * (v - engine_before.get(k, 0.0)) / measured, 2) for k, v in engine.timings.items()}
    seconds = sum(totals.values())
    result: dict[str, Any] = {
        "benchmark": "engine", "workload": kind, "gc_freeze": gc_freeze, "events": events, "users": users,
        "items": items, "dim": dim,
        "batch": batch, "batches_measured": measured, "warmup_batches": warmup,
        "avg_lists_per_batch": round(measured_lists / measured, 1),
        "stage_ms_per_batch": per_batch, "total_ms_per_batch": round(1000 * seconds / measured, 2),
        "engine_stage_ms_per_batch": engine_ms,
        "events_per_s": round(measured_events / seconds, 1) if seconds > 0 else None,
        "us_per_list": {k: round(1e6 * totals[k] / max(measured_lists, 1), 1) for k in ("recommend", "encode")},
        "us_per_event": {k: round(1e6 * totals[k] / max(measured_events, 1), 1) for k in ("decode", "update")},
        "sources": list(engine.columns), "reranker": cfg.reranker, "machine": machine(),
        "users_in_state": len(engine.store), "p50_list_len": float(np.median([len(x.items) for x in lists]))
        if lists else 0.0,
    }
    if prof is not None:
        result["profile_top"] = _top(prof, profile)
    return result


def _top(prof: cProfile.Profile, n: int) -> list[dict[str, Any]]:
    """The ``n`` functions of largest own time: where, calls, own and cumulative seconds."""
    st = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_, calls, own, cum, _) in st.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}:{func}", "calls": calls, "own_s": round(own, 4),
                     "cum_s": round(cum, 4)})
    rows.sort(key=lambda r: -r["own_s"])
    return rows[:n]
