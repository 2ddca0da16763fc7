"""PNG figures for the benchmarks (matplotlib's Agg canvas, never the global pyplot state)."""

from __future__ import annotations

import os
from typing import Any


def plot_e2e(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Latency (p50 solid, p99 dashed) and committed lag over time per worker count, and events/s against
    the worker count (backlog drain, and what was processed at the offered rate). Time 0 is the start of
    the offered-rate phase; a dotted line marks a killed worker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    lat_ax, lag_ax, tp_ax = (fig.add_subplot(1, 3, k) for k in (1, 2, 3))
    runs = result.get("runs", [])
    for k, run in enumerate(runs):
        color = f"C{k}"
        label = f"{run['workers']} worker{'s' if run['workers'] > 1 else ''}"
        pts = run.get("latency_over_time", [])
        xs = [p["t"] for p in pts]
        lat_ax.plot(xs, [p["p50"] for p in pts], color=color, label=f"{label} p50")
        lat_ax.plot(xs, [p["p99"] for p in pts], color=color, linestyle="--", label=f"{label} p99")
        shift = run.get("offered_phase_at_s", 0.0)
        lag = [(x["t"] - shift, x["committed_lag"]) for x in run.get("lag_over_time", [])
               if x["committed_lag"] is not None]
        lag_ax.plot([t for t, _ in lag], [v for _, v in lag], color=color, label=label)
        kill = run.get("kill")
        if kill:
            for ax in (lat_ax, lag_ax):
                ax.axvline(kill["killed_at_s"], color=color, linestyle=":", linewidth=1)
        resumed = run.get("backlog_resumed_at_s")
        if resumed is not None:
            lag_ax.axvline(resumed - shift, color=color, linestyle="-.", linewidth=0.6, alpha=0.5)
    lat_ax.set_yscale("log")
    lat_ax.set(xlabel="seconds into the offered-rate phase", ylabel="event -> list latency (ms)",
               title=f"latency at {result.get('rate', 0):g} events/s offered")
    lag_ax.set(xlabel="seconds (dash-dot: backlog released)", ylabel="records behind committed offsets",
               title="consumer lag")
    counts = [r["workers"] for r in runs]
    tp_ax.plot(counts, [r["throughput"]["events_per_s"] for r in runs], marker="o", label="backlog drain")
    tp_ax.axhline(result.get("rate", 0), color="gray", linestyle="--", linewidth=1, label="offered rate")
    m = result.get("machine", {})
    tp_ax.set(xlabel="worker processes", ylabel="events/s", xticks=counts,
              title=f"throughput ({m.get('cpus', '?')} CPUs, {result.get('guarantee', '')})")
    tp_ax.set_ylim(bottom=0)
    for ax in (lat_ax, lag_ax, tp_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
