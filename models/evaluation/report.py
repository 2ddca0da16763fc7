"""The result of a prequential run: overall metrics and curves per configuration, as stable JSON and a PNG.

JSON schema ``streamrec-eval/1`` (keys sorted, every value a JSON number, string, list or object)::

    schema        "streamrec-eval/1"
    dataset       name given in EvalConfig
    events        events replayed;  warmup: of which learned only;  evaluated: target events scored
    unreachable   scored targets that the exclusion policy had removed from the candidates
    k, recall_k   cut-offs;  catalog_size: denominator of coverage
    configs       {name: {"hr@K", "ndcg@K", "mrr@K", "recall@R", "coverage", "novelty"}}
    curves        {name: [{"window", "evaluated", "end_evaluated", "end_ts_ms", <the same metrics>}]}
    timings       {name: {"recommend_s", "learn_s", "sync_s", "syncs"}} plus "total": {"wall_s"}
    settings      the EvalConfig, as plain values

>>> r = EvalReport("toy", 10, 2, 4, 0, 10, 20, 5, {"pop": {"hr@10": 0.5}}, {"pop": []}, {}, {})
>>> EvalReport.from_json(r.to_json()) == r
True
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

SCHEMA = "streamrec-eval/1"


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    events: int
    warmup: int
    evaluated: int
    unreachable: int
    k: int
    recall_k: int
    catalog_size: int
    configs: dict[str, dict[str, float]]
    curves: dict[str, list[dict[str, Any]]]
    timings: dict[str, dict[str, float]]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> EvalReport:
        raw = json.loads(text)
        if raw.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report (schema {raw.get('schema')!r})")
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__})

    def metric(self, name: str) -> dict[str, float]:
        """One metric across configurations, e.g. ``report.metric("hr@10")``."""
        return {config: values[name] for config, values in self.configs.items() if name in values}


def plot_curves(report: EvalReport, path: str | os.PathLike[str], metric: str | None = None) -> None:
    """Draw ``metric`` (default ``hr@k``) per window for every configuration into a PNG at ``path``.

    Uses matplotlib's Agg canvas directly, so it never touches the global pyplot backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    name = metric or f"hr@{report.k}"
    fig = Figure(figsize=(8, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for config, points in sorted(report.curves.items()):
        xs = [p["end_evaluated"] for p in points if name in p]
        ys = [p[name] for p in points if name in p]
        overall = report.configs.get(config, {}).get(name)
        label = f"{config} ({overall:.4f})" if overall is not None else config
        ax.plot(xs, ys, marker="o", markersize=2.5, linewidth=1.2, label=label)
    window = report.settings.get("window", "?")
    ax.set_xlabel(f"scored events (window = {window})")
    ax.set_ylabel(f"{name} per window")
    ax.set_title(f"prequential {name}: {report.dataset}, "
                 f"{report.evaluated:,} scored of {report.events:,} events")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
