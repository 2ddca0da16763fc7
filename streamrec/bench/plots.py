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

    runs = result.get("runs", [])
    hits: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (r, r["kill"]["hit_rate"]) for r in runs if (r.get("kill") or {}).get("hit_rate")]
    panels = 4 if hits else 3
    fig = Figure(figsize=(4.4 * panels, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    lat_ax, lag_ax, tp_ax = (fig.add_subplot(1, panels, k) for k in (1, 2, 3))
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
    axes = [lat_ax, lag_ax, tp_ax]
    if hits:
        hit_ax = fig.add_subplot(1, panels, 4)
        axes.append(hit_ax)
        for k, (run, h) in enumerate(hits):
            pts = h["curve"]
            for key, style, who in (("restarted", "-", "killed worker's users"), ("others", "--", "the others")):
                xs, ys = _rolling([(p["t"], p[key], p[f"{'restarted' if key == 'restarted' else 'other'}_events"])
                                   for p in pts if p[key] is not None])
                hit_ax.plot(xs, ys, color=f"C{k}", linestyle=style, label=f"{run['workers']}w: {who}")
            if h.get("recovered_after_s") is not None:
                hit_ax.axvline(h["recovered_after_s"], color=f"C{k}", linestyle="-.", linewidth=0.8)
                hit_ax.axvline(h["recovered_after_s"] + h.get("settle_s", 0), color=f"C{k}", linestyle=":",
                               linewidth=0.8)
        hit_ax.axvline(0, color="gray", linestyle=":", linewidth=1)
        hit_ax.set(xlabel="seconds from the kill (dash-dot: first list after it; dotted: settled from)",
                   ylabel=f"online hit rate @{hits[0][1]['k']} (3 s rolling)", title="hit rate as users saw it")
        hit_ax.set_ylim(bottom=0)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")


def _rolling(points: list[tuple[float, float, int]], width: int = 3) -> tuple[list[float], list[float]]:
    """Event-weighted rolling mean over ``width`` consecutive windows: (t, rate, events) -> (ts, rates)."""
    xs, ys = [], []
    for k in range(len(points)):
        part = points[max(0, k - width + 1):k + 1]
        n = sum(e for _, _, e in part)
        if n:
            xs.append(points[k][0])
            ys.append(sum(r * e for _, r, e in part) / n)
    return xs, ys
