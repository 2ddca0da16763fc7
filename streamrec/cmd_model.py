"""``streamrec train``, ``streamrec trainer`` and ``streamrec model publish|list|rollback|retrain``."""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamrec.stream.settings import Settings, parse_duration

console = Console(stderr=True)


def _config(dim: int | None, epochs: int | None, device: str, threads: int | None, seed: int | None) -> Any:
    from streamrec.models.base.training import TrainConfig

    given: dict[str, Any] = {k: v for k, v in {"dim": dim, "epochs": epochs, "device": device,
                                               "threads": threads, "seed": seed}.items() if v is not None}
    return TrainConfig(**given)


class TrainProgress:
    """A rich progress bar fed by the trainer's progress callback (loss and throughput)."""

    def __init__(self, epochs: int) -> None:
        self.progress = Progress(TextColumn("epoch {task.completed}/{task.total}"), BarColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.task = self.progress.add_task("train", total=epochs, info="")

    def __call__(self, info: dict[str, Any]) -> None:
        if info.get("phase") == "epoch" or "val_ndcg@10" in info:
            self.progress.update(self.task, completed=info.get("epoch", 0))
        parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()
                 if k in ("loss", "interactions_per_s", "val_ndcg@10", "step")]
        self.progress.update(self.task, info=" ".join(parts))


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(help="Publish, list and roll back base models on the model-updates topic.",
                            no_args_is_help=True)
    app.add_typer(model_app, name="model")

    @app.command("train")
    def train_cmd(
        ctx: typer.Context,
        events: str = typer.Option(None, "--events", help="An event log file to train on."),
        fmt: str = typer.Option("jsonl", "--format", "-f", help="Format of --events (movielens, otto, jsonl, ...)."),
        from_topic: bool = typer.Option(False, "--from-topic", help="Train on the events topic instead."),
        since: str = typer.Option(None, "--since", help="With --from-topic: only the last T (e.g. 7d)."),
        out: str = typer.Option(..., "--out", "-o", help="Directory to write the artifact to."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
        dim: int = typer.Option(None, "--dim", help="Embedding dimension (default 64)."),
        epochs: int = typer.Option(None, "--epochs", help="Most epochs (early stopping may end sooner)."),
        threads: int = typer.Option(None, "--threads", help="CPU threads for torch (default 1)."),
        seed: int = typer.Option(None, "--seed", help="Random seed."),
        publish: bool = typer.Option(False, "--publish", help="Publish to model-updates if the gate passes."),
        tolerance: float = typer.Option(0.02, "--tolerance", help="Gate tolerance against the model in service."),
    ) -> None:
        """Train the base model, evaluate it on a time-based holdout, write an artifact (and publish it)."""
        from streamrec.consumers.trainer import read_topic_events, train_and_publish
        from streamrec.models.base.training import train, write_result
        from streamrec.producers.readers import read_events

        s: Settings = ctx.obj
        if bool(events) == from_topic:
            raise typer.BadParameter("give exactly one of --events PATH or --from-topic")
        cfg = _config(dim, epochs, device, threads, seed)
        with console.status("reading events..."):
            if events:
                log = list(read_events(events, fmt).events)
            else:
                since_ms = int((time.time() - parse_duration(since)) * 1000) if since else None
                log = read_topic_events(s, since_ms)
        console.print(f"{len(log):,} events")
        bar = TrainProgress(cfg.epochs)
        with bar.progress:
            if publish:
                outcome = train_and_publish(s, log, cfg, out, tolerance, progress=bar)
                metrics, stats, version = outcome.metrics, outcome.stats, outcome.version
                console.print(f"gate: {'passed' if outcome.decision.passed else 'failed'} ({outcome.decision.reason});"
                              f" published: {outcome.published}")
            else:
                result = train(log, cfg, progress=bar)
                version = write_result(result, out).version
                metrics, stats = result.metrics, result.stats
        table = Table("metric", "value", title=f"model {version} -> {out}")
        for key in ("hr@10", "ndcg@10", "popularity_hr@10", "popularity_ndcg@10"):
            if key in metrics:
                table.add_row(key, f"{metrics[key]:.4f}")
        for key in ("device", "epochs", "interactions_per_s", "seconds"):
            if key in stats:
                val = stats[key]
                table.add_row(key, f"{val:,.1f}" if isinstance(val, float) else str(val))
        Console().print(table)

    @app.command("trainer")
    def trainer_cmd(
        ctx: typer.Context,
        every: str = typer.Option("10m", "--every", help="Train on this schedule (e.g. 10m)."),
        window: str = typer.Option("7d", "--window", help="Train on the last T of events ('all' for everything)."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
        out_dir: str = typer.Option("models-out", "--out-dir", help="Where artifacts are written."),
        tolerance: float = typer.Option(0.02, "--tolerance", help="Gate tolerance."),
        max_runs: int = typer.Option(None, "--max-runs", help="Stop after N trainings."),
        dim: int = typer.Option(None, "--dim", help="Embedding dimension."),
        epochs: int = typer.Option(None, "--epochs", help="Most epochs per training."),
    ) -> None:
        """Keep training on a schedule and on retrain requests; publish what passes the gate."""
        from streamrec.consumers.trainer import Trainer

        win = None if window == "all" else parse_duration(window)
        trainer = Trainer(ctx.obj, _config(dim, epochs, device, None, None), parse_duration(every), win, out_dir,
                          tolerance)
        outcomes = trainer.run(max_runs=max_runs)
        for o in outcomes:
            console.print(f"{o.version}: published={o.published} ({o.decision.reason})")

    @model_app.command("publish")
    def publish_cmd(ctx: typer.Context, directory: str = typer.Argument(..., help="An artifact directory.")) -> None:
        """Verify an artifact directory and send it to model-updates as chunks under 1 MB."""
        from streamrec.models.base.artifact import decode_artifact, read_files
        from streamrec.stream.modelbus import publish

        manifest, files = read_files(directory)
        decode_artifact(manifest, files)  # refuse to publish anything a worker would refuse
        n = publish(ctx.obj, manifest, files)
        signed = ", signed" if ctx.obj.model_signing_key else ""
        console.print(f"published {manifest.version} ({manifest.item_count:,} items, dim {manifest.dim}) "
                      f"in {n} messages{signed}")

    @model_app.command("list")
    def list_cmd(ctx: typer.Context, fmt: str = typer.Option("text", "--format", help="text | json"),
                 timeout: float = typer.Option(60.0, "--timeout", min=1.0,
                                               help="Seconds to read the topic to its end.")) -> None:
        """Versions on model-updates, each verified as a worker verifies it, and the workers serving each."""
        from streamrec.stream.modelbus import model_status

        st = model_status(ctx.obj, timeout)
        if st.truncated:
            console.print(f"[yellow]warning:[/] {ctx.obj.model_topic} was not read to its end within {timeout:g} s; "
                          "what follows may be out of date (raise --timeout)")
        if fmt == "json":
            print(json.dumps({"serving": st.serving, "versions": st.versions, "workers": st.workers,
                              "skipped": [{"offset": o, "reason": r} for o, r in st.skipped],
                              "truncated": st.truncated}, indent=2))
            return
        table = Table("version", "created", "items", "dim", "hr@10", "status", "served by")
        for e in st.versions:
            status = f"refused: {e['reason']}" if e["status"] == "refused" else e["status"]
            if e["refused_by"]:
                status += f" (refused by {', '.join(e['refused_by'])})"
            table.add_row(e["version"], e["created_at"] or "-", _cell(e["item_count"]), _cell(e["dim"]),
                          f"{e['hr@10']:.4f}" if isinstance(e.get("hr@10"), float) else "-", status,
                          ", ".join(e["workers"]) or "-")
        out = Console()
        out.print(table)
        now_ms = time.time() * 1000
        for worker, r in st.workers.items():
            age = max(0.0, (now_ms - r["at"]) / 1000)
            what = "stopped" if r["state"] == "stopped" else f"serves {r['serving'] or 'no model'}"
            out.print(f"worker {worker} ({r['group'] or '-'}): {what}, reported {age:,.0f} s ago")
        if st.skipped:
            out.print(f"{len(st.skipped)} malformed record(s) skipped, e.g. offset {st.skipped[-1][0]}: "
                      f"{st.skipped[-1][1]}")

    @model_app.command("rollback")
    def rollback_cmd(ctx: typer.Context, version: str = typer.Argument(..., help="The version to serve."),
                     reason: str = typer.Option("", "--reason", help="Why (logged by every worker).")) -> None:
        """Ask every worker to serve an older version."""
        from streamrec.stream.errors import StreamrecError
        from streamrec.stream.modelbus import model_status, send_control

        known = {e["version"]: e for e in model_status(ctx.obj).versions}
        if version not in known or known[version]["status"] not in ("available", "in service"):
            why = known[version]["status"] if version in known else "not on the topic"
            raise StreamrecError(f"version {version!r} cannot be served from {ctx.obj.model_topic} ({why}); "
                                 "see `streamrec model list`")
        send_control(ctx.obj, "ROLLBACK", version, {"reason": reason})
        console.print(f"rollback to {version} sent")

    @model_app.command("retrain")
    def retrain_cmd(ctx: typer.Context, reason: str = typer.Option("manual", "--reason")) -> None:
        """Ask the trainer to train now."""
        from streamrec.stream.modelbus import send_control

        send_control(ctx.obj, "RETRAIN_REQUEST", "", {"reason": reason})
        console.print("retrain request sent")
