"""``streamrec bench memory``: the worker engine's resident memory against the number of users in state.

The process imports the worker's modules, builds the worker's engine (``EngineConfig`` from the settings:
learned reranker, drift detector, every default source) and serves a random base model of ``items`` x
``dim``. It then adds users in chunks, each with ``events_per_user`` events of one browsing session (items
drawn from the user's cluster of the catalogue, as in the sessions workload), applied in batches like the
worker's. One user in ``list_every`` gets a real list from ``recommend`` (so the reranker's feedback log and
the sources' caches fill as they do in serving); every other user is given a ``shown`` list of the same
length made of model items, which is what a list leaves in state, without paying for the list.

Reported at each mark of ``--users``: RSS after a full garbage collection, MB above the engine with the model
and no users, bytes per user (overall and between the last two marks: the slope once the item-level tables,
which are bounded, have filled), the engine's own estimate of the user store (``state_bytes``) and the
co-visitation table's (``covisit_mb``), and whether river was imported (the default worker does not). No Kafka
client runs here: add the empty worker's client buffers (``bench sync`` reports a worker's RSS) for a
worker's figure.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streamrec.bench.common import machine
from streamrec.bench.common import rss_mb as peak_rss_mb
from streamrec.models.errors import InputError
from streamrec.stream.settings import Settings

MB = 1e6


def rss_mb() -> float:
    """This process's resident memory now (MB; the peak where /proc is not there)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mb()
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def run(settings: Settings, users: list[int], items: int = 100_000, dim: int = 64, events_per_user: int = 5,
        batch: int = 1_000, list_every: int = 20) -> dict[str, Any]:
    marks = sorted(set(users))
    if not marks or marks[0] < 1 or items < 1 or dim < 1 or events_per_user < 1 or batch < 1 or list_every < 1:
        raise InputError("bench memory needs --users of 1 or more (comma-separated), and --items, --dim, "
                         "--events-per-user, --batch, --list-every of 1 or more")
    import streamrec.consumers.worker  # noqa: F401 - the worker's imports are part of its memory
    from streamrec.consumers.engine import engine_config
    from streamrec.models.base.artifact import load_artifact, random_artifact
    from streamrec.models.engine.recommender import Recommender
    from streamrec.models.events import Event, EventType

    gc.collect()
    imports_mb = rss_mb()
    work = Path(tempfile.mkdtemp(prefix="streamrec-bench-memory-"))
    clusters = max(1, items // 200)
    random_artifact(work / "model", items, dim, seed=0, clusters=clusters, version="bench")
    engine = Recommender(engine_config(settings))
    gc.collect()
    engine_mb = rss_mb()
    model = engine.prepare_model(load_artifact(work / "model"))
    engine.swap(model)
    del model
    gc.collect()
    empty_mb = rss_mb()
    item_ids, top_n = engine.model.item_ids if engine.model else (), engine.config.top_n
    rng = np.random.default_rng(7)
    t0_ms = int(time.time() * 1000) - 86_400_000
    per_batch_users = max(1, batch // events_per_user)
    points: list[dict[str, Any]] = []
    done = offset = 0
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("users in state", total=marks[-1])
        for mark in marks:
            while done < mark:
                n = min(per_batch_users, mark - done)
                cluster = rng.integers(clusters, size=n)
                picks = (cluster[:, None] * 200 + rng.integers(200, size=(n, events_per_user))) % items
                events = []
                for j in range(n):
                    uid = f"u{done + j}"
                    for r in range(events_per_user):
                        ts = t0_ms + (done + j) * 10 + r
                        events.append(Event(f"m{done + j}-{r}", uid, item_ids[int(picks[j, r])] if item_ids
                                            else f"i{int(picks[j, r])}", EventType.CLICK, ts))
                touched = engine.apply(events, partition=0, offsets=list(range(offset, offset + len(events))))
                offset += len(events)
                listed = touched[::list_every]
                engine.recommend(listed)
                for uid in touched:            # what a list leaves in state, for the users not listed here
                    st = engine.store.get(uid)
                    if st is not None and not st.shown and item_ids:
                        st.shown = tuple(item_ids[int(c)] for c in rng.integers(len(item_ids), size=top_n))
                done += n
                progress.update(task, completed=done)
            gc.collect()
            rss = rss_mb()
            stats = engine.stats()
            covisit = engine.covisit
            point: dict[str, Any] = {
                "users": done, "rss_mb": round(rss, 1), "above_empty_mb": round(rss - empty_mb, 1),
                "bytes_per_user": round((rss - empty_mb) * MB / done),
                "state_bytes_per_user": round(stats["state_bytes"] / max(1, stats["users"])),
                "users_held": stats["users"], "covisit_items": stats.get("covisit_items"),
                "covisit_mb": round(covisit.memory_bytes() / MB, 1) if hasattr(covisit, "memory_bytes") else None,
                "seconds": round(time.perf_counter() - started, 1)}
            if points:
                prev = points[-1]
                point["bytes_per_user_since_last"] = round((rss - prev["rss_mb"]) * MB / (done - prev["users"]))
            points.append(point)
    return {"benchmark": "memory", "items": items, "dim": dim, "events_per_user": events_per_user,
            "list_every": list_every, "imports_mb": round(imports_mb, 1),
            "engine_without_model_mb": round(engine_mb, 1), "empty_with_model_mb": round(empty_mb, 1),
            "peak_rss_mb": peak_rss_mb(), "river_imported": "river" in sys.modules, "points": points,
            "machine": machine()}
