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
    cold          item cold start: {"item_events_below": N, "targets": scored targets whose item had fewer
                  than N earlier events, "configs": {name: <the metrics over those targets>}} ({}: not measured)
    kinds         target kinds: {"targets": {"repeat", "known", "new": scored targets of each kind},
                  "hr@K": {name: {kind: HR@K over that kind's targets, or null}}} (models.evaluation.harness)

>>> r = EvalReport("toy", 10, 2, 4, 0, 10, 20, 5, {"pop": {"hr@10": 0.5}}, {"pop": []}, {}, {})
>>> EvalReport.from_json(r.to_json()) == r
True
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "streamrec-eval/1"
#: the simple baselines a configuration is measured against (:func:`ratio_to_best`)
BASELINES = ("popularity", "recent", "sknn", "river_mf")


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
    cold: dict[str, Any] = field(default_factory=dict)
    kinds: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> EvalReport:
        raw = json.loads(text)
        if raw.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report (schema {raw.get('schema')!r})")
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})

    def metric(self, name: str) -> dict[str, float]:
        """One metric across configurations, e.g. ``report.metric("hr@10")``."""
        return {config: values[name] for config, values in self.configs.items() if name in values}


def ratio_to_best(report: EvalReport, config: str = "full",
                  baselines: tuple[str, ...] = BASELINES) -> dict[str, dict[str, Any]] | None:
    """``config``'s value over the best baseline's, per ranking metric (HR, NDCG, MRR, recall).

    Only the baselines present in the run count; ``None`` when ``config`` or every baseline is missing.
    A ratio is ``None`` when the best baseline scored 0.

    >>> r = EvalReport("toy", 10, 2, 4, 0, 10, 20, 5, {"full": {"hr@10": 0.3, "ndcg@10": 0.1},
    ...                "recent": {"hr@10": 0.2, "ndcg@10": 0.2}, "sknn": {"hr@10": 0.25, "ndcg@10": 0.05}},
    ...                {}, {}, {})
    >>> ratio_to_best(r)["hr@10"]
    {'best': 'sknn', 'best_value': 0.25, 'value': 0.3, 'ratio': 1.2}
    >>> ratio_to_best(r)["ndcg@10"]["best"], ratio_to_best(r)["ndcg@10"]["ratio"]
    ('recent', 0.5)
    """
    present = [b for b in baselines if b in report.configs and b != config]
    if config not in report.configs or not present:
        return None
    out: dict[str, dict[str, Any]] = {}
    for metric in (f"hr@{report.k}", f"ndcg@{report.k}", f"mrr@{report.k}", f"recall@{report.recall_k}"):
        if metric not in report.configs[config]:
            continue
        best = max(present, key=lambda b: report.configs[b].get(metric, 0.0))
        value, best_value = report.configs[config][metric], report.configs[best].get(metric, 0.0)
        out[metric] = {"best": best, "best_value": best_value, "value": value,
                       "ratio": round(value / best_value, 4) if best_value > 0 else None}
    return out


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
