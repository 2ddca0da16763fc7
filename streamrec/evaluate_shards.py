"""``streamrec evaluate --workers N [--items split|shared] [--restart-at X]``: the options and the wiring of the
simulated workers (:mod:`models.evaluation.sharding`) into the evaluation (:mod:`streamrec.evaluate`).

Users are sharded as production shards them (:mod:`streamrec.sharding`: the producer's partitioner, then
the consumer group's range assignment over ``--partitions``, default the events topic's
``STREAMREC_EVENTS_PARTITIONS``). Each engine configuration asked for (``full``, ``full_blend``,
``full_content``, ``full_sknn``) runs once per worker count and item mode (one worker: once), named ``full@3w-split``,
``full@3w-shared``, ``full@1w``; with ``--restart-at``, each also runs restarted at that point
(``full@3w-split+restart``) beside its twin, so the dip is read against the same stream without a restart.
The baselines run once, as before.

>>> check_shard_options(workers="1, 3,6", items="split,shared", partitions=6, restart_at="0.5")
{'workers': (1, 3, 6), 'items': ('split', 'shared'), 'partitions': 6, 'restart_at': 0.5}
>>> restart_index(0.5, 1000, 100), restart_index(250.0, 1000, 100)
(500, 250)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamrec.models.errors import InputError
from streamrec.models.evaluation.config import EvalConfig
from streamrec.models.evaluation.report import EvalReport
from streamrec.models.evaluation.sharding import ITEM_MODES, ShardedEnginePolicy, summarise, variants

__all__ = ["check_shard_options", "headline_cells", "plot_scale_out", "restart_index", "scale_out",
           "scale_out_markdown", "sharded_policies"]


def check_shard_options(workers: str | Sequence[int] | None = None, items: str | Sequence[str] | None = None,
                        partitions: int | None = None, restart_at: str | float | None = None) -> dict[str, Any]:
    """Check ``--workers``, ``--items``, ``--partitions`` and ``--restart-at`` (the restart's place in the log
    is checked once the log is read, :func:`restart_index`); bad values raise :class:`InputError`."""
    from streamrec.sharding import range_assignment

    out: dict[str, Any] = {}
    parts = 6 if partitions is None else partitions
    if parts < 1:
        raise InputError(f"--partitions must be at least 1 (the events topic's partition count), got {parts}")
    counts: tuple[int, ...] = ()
    if workers is not None and workers != "":
        raw = [w.strip() for w in workers.split(",") if w.strip()] if isinstance(workers, str) else list(workers)
        try:
            counts = tuple(dict.fromkeys(int(w) for w in raw))
        except ValueError:
            raise InputError(f"--workers {workers!r}: give worker counts as whole numbers, e.g. 3 or 1,3,6") from None
        if not counts:
            raise InputError("--workers is empty; give a worker count such as 3, or 1,3,6")
        for n in counts:
            range_assignment(parts, n)            # 1 <= n <= partitions, or a one-line error
    modes: tuple[str, ...] = ("split",)
    if items is not None and items != "":
        names = [m.strip().lower() for m in items.split(",")] if isinstance(items, str) else list(items)
        bad = [m for m in names if m not in ITEM_MODES]
        if bad or not names:
            raise InputError(f"--items {items!r}: use split (each worker learns item knowledge from its own users), "
                             "shared (one set of item tables for all), or split,shared")
        modes = tuple(dict.fromkeys(names))
        if not counts:
            raise InputError("--items needs --workers (the simulated workers whose item knowledge it splits or shares)")
    at: float | None = None
    if restart_at is not None and restart_at != "":
        try:
            at = float(restart_at)
        except ValueError:
            raise InputError(f"--restart-at {restart_at!r}: give an event index (e.g. 20000) or a fraction of the "
                             "log (e.g. 0.5)") from None
        if not (0 < at < 1 or (at >= 1 and at == int(at))):
            raise InputError(f"--restart-at {restart_at}: give an event index of 1 or more, or a fraction strictly "
                             "between 0 and 1")
        if not counts:
            counts = (1,)                         # a restart of the one worker
    out.update(workers=counts, items=modes, partitions=parts, restart_at=at)
    return out


def restart_index(at: float, events: int, warmup: int) -> int:
    """The event index of ``--restart-at`` (a fraction of ``events`` or an index); it must fall after the
    warm-up and before the log's end, or the before / after figures would be empty."""
    index = int(at * events) if at < 1 else int(at)
    if not warmup < index < events:
        raise InputError(f"--restart-at {at:g} is event {index:,}, outside the scored stream: the log has "
                         f"{events:,} events and scoring starts after the warm-up at event {warmup:,}; give an "
                         f"index between {warmup + 1:,} and {events - 1:,} or a fraction of the log")
    return index


def sharded_policies(base: str, engine_config: Any, trainer: Any, cfg: EvalConfig, opts: Any,
                     events: int, catalog: Sequence[Any] = ()) -> list[ShardedEnginePolicy]:
    """The simulated-worker configurations of the engine configuration ``base`` (every worker gets the whole
    ``catalog``, as every worker reads the catalog topic in full)."""
    from streamrec.sharding import user_sharding

    at = None if opts.restart_at is None else restart_index(opts.restart_at, events, int(events * cfg.warmup_fraction))
    out = []
    for name, n, mode, restart in variants(base, opts.workers, opts.items, restart=at is not None):
        out.append(ShardedEnginePolicy(name, engine_config, trainer, user_sharding(opts.partitions, n), n, mode,
                                       restart_at=at if restart else None, is_target=cfg.targets.is_target,
                                       catalog=catalog))
    return out


def scale_out(policies: Sequence[Any], opts: Any, report: EvalReport) -> dict[str, Any] | None:
    """The ``scale_out`` part of the JSON report (see :func:`models.evaluation.sharding.summarise`)."""
    window = max(10, report.evaluated // 40)        # about 40 points over the scored stream
    summary = summarise(policies, report.k, window)
    if summary is None:
        return None
    for name, entry in summary["configs"].items():      # the trace and the harness must agree exactly
        hr = report.configs.get(name, {}).get(f"hr@{report.k}")
        if hr is not None and abs(hr - entry[f"hr@{report.k}"]) > 1e-9:
            raise RuntimeError(f"{name}: the sharded policy's trace gives HR {entry[f'hr@{report.k}']}, the harness "
                               f"{hr}")
    return {"partitions": opts.partitions, "workers": list(opts.workers), "items": list(opts.items),
            "restart_at": opts.restart_at, "sharding": "producer partitioner (kafka-python murmur2 of the user id) "
                                                        "and kafka-python's range assignor", **summary}


# --- the report section (``streamrec report --only evaluate-scale-out``) -------------------------------------

#: the report's scale-out runs: every worker count with both item modes, everyone restarted half-way
REPORT_WORKERS, REPORT_ITEMS, REPORT_RESTART = "1,3,6", "split,shared", 0.5


def _order(name: str) -> tuple[int, int, str]:
    """Sort key of a simulated configuration: worker count, then split before shared."""
    head, _, rest = name.partition("@")
    workers = rest.split("w", 1)[0]
    return (int(workers) if workers.isdigit() else 0, 1 if "shared" in rest else 0, head)


def _hr(entry: dict[str, Any] | None, k: int) -> str | None:
    return _fixed(None if entry is None else entry.get(f"hr@{k}"))


def _fixed(v: float | None) -> str | None:
    return None if v is None else f"{v:.4f}"


def scale_out_rows(ev: dict[str, Any]) -> list[list[Any]]:
    """Per worker count: HR@k and NDCG@k with item knowledge split and shared, and HR@k over one worker's."""
    s = ev["scale_out"]
    k, cfg = s["k"], s["configs"]
    rows = []
    for n in s["workers"]:
        split = cfg.get(f"full@{n}w" if n == 1 else f"full@{n}w-split")
        shared = cfg.get(f"full@{n}w" if n == 1 else f"full@{n}w-shared")
        rows.append([n, _hr(split, k), _hr(shared, k), _fixed(_get(split, f"ndcg@{k}")),
                     _fixed(_get(shared, f"ndcg@{k}")),
                     _ratio(_get(split, f"hr@{k}_vs_1_worker")), _ratio(_get(shared, f"hr@{k}_vs_1_worker")),
                     " / ".join(str(u) for u in (split or {}).get("users_per_worker", []))])
    return rows


def restart_rows(ev: dict[str, Any]) -> list[list[Any]]:
    """Per restarted configuration: HR@k before and after, its twin's after, the ratios, the tables emptied."""
    s = ev["scale_out"]
    k = s["k"]
    rows = []
    for name, r in sorted(s["restarts"].items(), key=lambda kv: _order(kv[0])):
        before, after = r["item_tables_before"], r["item_tables_after"]
        rows.append([name.removesuffix("+restart"), _hr(r["before"], k), _hr(r["after"], k),
                     _hr(r.get("twin_after"), k),
                     _ratio(r.get("after_vs_twin")), _ratio(r.get("first_window_vs_twin")),
                     f"{before['covisit_items']:,} -> {after['covisit_items']:,}",
                     f"{r['users_before']:,} / {r['users_restored']:,}"])
    return rows


def _get(d: dict[str, Any] | None, key: str) -> Any:
    return None if d is None else d.get(key)


def _ratio(v: float | None) -> str | None:
    return None if v is None else f"{v:.3f}x"


def headline_cells(res: dict[str, Any]) -> list[list[Any]]:
    """The report's headline rows: per log, HR@k with the most workers over one worker (split / shared), and
    HR@k after the one-worker restart over its twin."""
    rows: list[list[Any]] = []
    for label, ev in res["logs"].items():
        s = ev["scale_out"]
        k, most = s["k"], max(s["workers"])
        cfg, restart = s["configs"], s["restarts"].get("full@1w+restart", {})
        ratios = [_get(cfg.get(f"full@{most}w-{m}"), f"hr@{k}_vs_1_worker") for m in ("split", "shared")]
        rows.append([f"{res['labels'].get(label, label)}: HR@{k} on {most} simulated workers over 1, item knowledge "
                     "split / shared; after a restart over no restart (1 worker, first window / rest of the log)",
                     " / ".join(_ratio(r) or "n/a" for r in ratios) + "; "
                     + " / ".join(_ratio(restart.get(key)) or "n/a" for key in ("first_window_vs_twin",
                                                                                  "after_vs_twin"))])
    return rows


def scale_out_markdown(res: dict[str, Any], png: str, table: Callable[[Sequence[str], Sequence[Sequence[Any]]], str]
                       ) -> list[str]:
    """The report section: per log, the worker-count table and the restart table (drawn by ``table``, the
    report's Markdown table), then the plot."""
    parts: list[str] = []
    for label, ev in res["logs"].items():
        s = ev["scale_out"]
        k = s["k"]
        restart = next(iter(s["restarts"].values()), None)
        parts += [f"**{res['labels'].get(label, label)}**: {ev['events']:,} events, {ev['evaluated']:,} targets "
                  f"scored, {s['partitions']} partitions.", "",
                  table(["workers", f"HR@{k} split", f"HR@{k} shared", f"NDCG@{k} split", f"NDCG@{k} shared",
                         "split / 1 worker", "shared / 1 worker", "users per worker"], scale_out_rows(ev)), ""]
        if restart is not None:
            parts += [f"Every worker restarted at event {restart['at_event']:,} (HR@{k} of the targets before and "
                      f"after it; the twin is the same configuration without the restart; the first window is the "
                      f"{restart['window']:,} targets right after it):", "",
                      table(["configuration", f"HR@{k} before", "after", "twin after", "after / twin",
                             "first window / twin", "co-visitation items", "users before / restored"],
                            restart_rows(ev)), ""]
    parts += [
        "Users are sharded as production shards them (the producer's murmur2 partitioner on the user id, the "
        "consumer group's range assignment); each simulated worker has its own engine and user state. `split`: "
        "co-visitation, trending, session neighbours and the reranker's item table are learned per worker from "
        "its own users' events (today); `shared`: one set of those tables learns every event in the log's order "
        "(what an item plane would give). A restart replaces each engine by a fresh one that restores users from "
        "their changelog records and the online learners from their checkpoint; item tables start empty "
        "(`split`) or are kept (`shared`, the item plane's promise). The reranker stays per worker in both modes, "
        "so `shared` can differ from one worker.", "",
        f"![scale-out and restarts]({png})"]
    return parts


def plot_scale_out(res: dict[str, Any], path: Any) -> None:
    """Per log: HR@k by worker count (split and shared), and HR@k per window around the restart."""
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    logs = list(res["logs"].items())
    fig = Figure(figsize=(12, 4.2 * len(logs)), dpi=110)
    FigureCanvasAgg(fig)
    for row, (label, ev) in enumerate(logs):
        s = ev["scale_out"]
        k, title = s["k"], res["labels"].get(label, label)
        bars, curve = fig.add_subplot(len(logs), 2, 2 * row + 1), fig.add_subplot(len(logs), 2, 2 * row + 2)
        rows = scale_out_rows(ev)
        xs = np.arange(len(rows))
        for j, (mode, col) in enumerate((("split", 1), ("shared", 2))):
            bars.bar(xs + (j - 0.5) * 0.38, [float(r[col] or 0.0) for r in rows], width=0.38, label=f"items {mode}")
        bars.set_xticks(xs, [f"{r[0]} worker{'s' if r[0] > 1 else ''}" for r in rows])
        low = min((float(r[c]) for r in rows for c in (1, 2) if r[c]), default=0.0)
        bars.set_ylim(max(0.0, low * 0.9), None)
        bars.set(ylabel=f"HR@{k}", title=f"{title}: HR@{k} by simulated workers")
        bars.legend(fontsize=8)
        bars.grid(True, axis="y", alpha=0.3)
        for c, (name, r) in enumerate(sorted(s["restarts"].items(), key=lambda kv: _order(kv[0]))):
            twin = {p["window"]: p[f"hr@{k}"] for p in r.get("twin_curve") or []}
            points = [(p["window"], p[f"hr@{k}"] - twin[p["window"]]) for p in r["curve"] if p["window"] in twin]
            curve.plot([w for w, _ in points], [d for _, d in points], color=f"C{c}", marker="o", markersize=2,
                       linewidth=1.1, label=name.removesuffix("+restart"))
        curve.axvline(-0.5, color="grey", linewidth=0.8)
        curve.axhline(0.0, color="grey", linewidth=0.6)
        window = next((r["window"] for r in s["restarts"].values()), "?")
        curve.set(xlabel=f"windows of {window} scored targets (0: the first after the restart)",
                  ylabel=f"HR@{k} restarted minus not restarted",
                  title=f"{title}: every worker restarted")
        curve.legend(fontsize=7)
        curve.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
