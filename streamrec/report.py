"""``streamrec report --out reports [--quick]`` (what ``make bench`` runs): every benchmark and the
evaluations (MovieLens-100K; e-commerce: the OTTO sample and a generated session log) in one go, their JSON
files and PNGs in ``--out``, and ``--out/README.md`` with Markdown tables, the exact command behind each
figure, the machine facts and the date.

``--only`` runs the named steps and rewrites only their sections of ``--out/README.md`` (and the headline,
from every step's JSON in ``--out``); the other sections, with any notes written into them, stay as they were
(a README that does not exist yet is written whole, the steps not run marked as kept). So
``--only evaluate-movielens-100k,evaluate-otto-sample,evaluate-sessions`` refreshes the evaluation without
re-running the benchmarks. A run of evaluation steps only starts no broker.

Steps run in-process, one after another, on one broker (the running embedded broker, or a throwaway one
for the whole report); each benchmark gets fresh topics. A step that fails is reported as failed and the
others still run; the command then exits with status 1. ``--quick`` uses small sizes (a smoke run of the
whole pipeline in a few minutes; its figures are not representative).
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from streamrec.stream.settings import Settings

#: ``detail(description, completed, total)`` updates the progress line of the running step
Detail = Callable[[str, float | None, float | None], None]


@dataclass(frozen=True)
class Sizes:
    replay_events: int = 200_000
    worker_events: int = 200_000
    worker_items: int = 100_000
    worker_rate: float = 5000.0
    worker_seconds: float = 10.0
    train_epochs: int | None = None
    sync_items: int = 100_000
    e2e_workers: str = "1,2,3"
    e2e_rate: float = 1000.0
    e2e_seconds: float = 10.0
    e2e_events: int = 50_000
    kill_workers: str = "2"
    eval_limit: int | None = None
    eval_epochs: int | None = None       # None: streamrec.evaluate.DEFAULT_EPOCHS
    eval_sync_every: int | None = None   # None: streamrec.evaluate.DEFAULT_SYNC_EVERY
    #: the generated e-commerce session log (``streamrec generate``: taste clusters, sessions, a funnel)
    sessions_users: int = 2_000
    sessions_items: int = 5_000
    sessions_events: int = 40_000
    catalog_trials: int = 10             # bench catalog: hide / show trials


QUICK = Sizes(replay_events=20_000, worker_events=20_000, worker_items=10_000, worker_rate=2000.0,
              worker_seconds=4.0, train_epochs=2, sync_items=10_000, e2e_workers="1,2", e2e_rate=500.0,
              e2e_seconds=4.0, e2e_events=5_000, kill_workers="2", eval_limit=20_000, eval_epochs=2,
              eval_sync_every=5_000, sessions_users=300, sessions_items=1_000, sessions_events=8_000,
              catalog_trials=3)

#: the evaluation steps (no broker needed)
EVAL_STEPS = ("evaluate-movielens-100k", "evaluate-otto-sample", "evaluate-sessions", "evaluate-sessions-all",
              "evaluate-scale-out")
OTTO_SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "otto-sample.jsonl"
SESSIONS_SEED = 7


@dataclass(frozen=True)
class Step:
    name: str                                       # file stem in the output folder
    title: str
    command: str                                    # the CLI command that gives the same figures
    run: Callable[[Settings, Detail], dict[str, Any]]
    plot: Callable[[dict[str, Any], Path], None] | None = None


def _opt(flag: str, value: Any) -> str:
    return "" if value is None else f" {flag} {value:g}" if isinstance(value, float) else f" {flag} {value}"


def steps(out: Path, z: Sizes) -> list[Step]:
    from streamrec.bench import catalog, e2e, replay, sync, train, worker
    from streamrec.bench.plots import plot_e2e
    from streamrec.evaluate import (
        CONFIGS,
        DEFAULT_EPOCHS,
        DEFAULT_SYNC_EVERY,
        EXTRA_CONFIGS,
        MOVIELENS_100K,
        EvalOptions,
        evaluate,
        reranker_option,
    )

    def plot_eval(result: dict[str, Any], path: Path) -> None:
        from streamrec.models.evaluation import EvalReport, plot_curves

        plot_curves(EvalReport(**{k: result[k] for k in EvalReport.__dataclass_fields__}), path)

    epochs, sync_every = z.eval_epochs or DEFAULT_EPOCHS, z.eval_sync_every or DEFAULT_SYNC_EVERY
    # with a learned reranker in the engine, full_blend (full without it) shows what the reranker adds
    configs = CONFIGS + EXTRA_CONFIGS if reranker_option() else CONFIGS

    def run_eval(_s: Settings, detail: Detail) -> dict[str, Any]:
        opts = EvalOptions.parse(dataset="movielens-100k", path=None, limit=z.eval_limit, epochs=epochs,
                                 sync_every=sync_every, configs=configs)
        return evaluate(opts, lambda done, total: detail("replaying MovieLens-100K", done, total),
                        lambda n: detail(f"training the base model on {n:,} events", None, None)).to_dict()

    def run_log(dataset: str, path: Callable[[], Path], label: str,
                targets: str | None = None) -> Callable[[Settings, Detail], dict[str, Any]]:
        def run(_s: Settings, detail: Detail) -> dict[str, Any]:
            opts = EvalOptions.parse(dataset=dataset, path=str(path()), epochs=epochs, sync_every=sync_every,
                                     configs=configs, window=200 if label == "OTTO sample" else 1000,
                                     targets=targets)
            return evaluate(opts, lambda done, total: detail(f"replaying the {label}", done, total),
                            lambda n: detail(f"training the base model on {n:,} events", None, None)).to_dict()
        return run

    gen_args = (f"--users {z.sessions_users} --items {z.sessions_items} --events {z.sessions_events}"
                f" --seed {SESSIONS_SEED}")

    def generated() -> Path:
        import tempfile

        from streamrec.producers.synthetic import generate, write_log

        sessions_log = Path(tempfile.mkdtemp(prefix="streamrec-report-")) / "sessions.jsonl"
        write_log(generate(users=z.sessions_users, items=z.sessions_items, events=z.sessions_events,
                           seed=SESSIONS_SEED), sessions_log)
        return sessions_log

    def eval_command(dataset: str, path: str, name: str, extra: str = "") -> str:
        return (f"streamrec evaluate --dataset {dataset} --path {path} --epochs {epochs} --sync-every {sync_every}"
                + (f" --configs {','.join(configs)}" if configs != CONFIGS else "") + extra
                + f" --json {out}/{name}.json --plot {out}/{name}.png")

    def run_scale_out(s: Settings, detail: Detail) -> dict[str, Any]:
        from streamrec.evaluate_shards import REPORT_ITEMS, REPORT_RESTART, REPORT_WORKERS

        logs = {}
        for key, dataset, path, label, window in (("otto-sample", "otto", OTTO_SAMPLE, "OTTO sample", 200),
                                                  ("sessions", "jsonl", None, "generated session log", 1000)):
            opts = EvalOptions.parse(dataset=dataset, path=str(path or generated()), epochs=epochs,
                                     sync_every=sync_every, configs=("full",), window=window,
                                     workers=REPORT_WORKERS, items=REPORT_ITEMS, restart_at=str(REPORT_RESTART),
                                     partitions=s.events_partitions)
            def progress(done: int, total: int, lb: str = label) -> None:
                detail(f"{lb}: simulated workers", done, total)

            logs[key] = evaluate(opts, progress,
                                 lambda n: detail(f"training the base model on {n:,} events", None, None)).to_dict()
        return {"logs": logs, "labels": {"otto-sample": "OTTO sample (CC BY 4.0)",
                                         "sessions": "generated session log"}}

    def plot_scale_out(result: dict[str, Any], path: Path) -> None:
        from streamrec.evaluate_shards import plot_scale_out as plot

        plot(result, path)

    def scale_command() -> str:
        from streamrec.evaluate_shards import REPORT_ITEMS, REPORT_RESTART, REPORT_WORKERS

        flags = (f" --configs full --workers {REPORT_WORKERS} --items {REPORT_ITEMS} --restart-at {REPORT_RESTART:g}"
                 f" --epochs {epochs} --sync-every {sync_every}")
        return (f"streamrec evaluate --dataset otto --path tests/fixtures/otto-sample.jsonl --window 200{flags}"
                f" --json otto.json && streamrec generate {gen_args} --out sessions.jsonl && streamrec evaluate"
                f" --dataset jsonl --path sessions.jsonl{flags} --json sessions.json (the report keeps both runs in "
                f"{out}/evaluate-scale-out.json)")

    def run_e2e(counts: str, guarantee: str, kill: bool) -> Callable[[Settings, Detail], dict[str, Any]]:
        rate, secs = z.e2e_rate, z.e2e_seconds * (1.5 if kill else 1)
        return lambda s, detail: e2e.run(s, e2e.parse_counts(counts), rate, secs, z.e2e_events, guarantee,
                                         kill=kill, step=lambda m: detail(m, None, None))

    def run_worker(guarantee: str) -> Callable[[Settings, Detail], dict[str, Any]]:
        return lambda s, _d: worker.run(s, z.worker_events, z.worker_items, 64, z.worker_rate, None,
                                        z.worker_seconds, guarantee)

    e2e_args = f" --rate {z.e2e_rate:g} --events {z.e2e_events}"
    kill_secs = z.e2e_seconds * 1.5
    worker_args = (f" --events {z.worker_events} --items {z.worker_items} --rate {z.worker_rate:g}"
                   f" --seconds {z.worker_seconds:g}")
    return [
        Step("evaluate-movielens-100k", "Evaluation: MovieLens-100K, configurations side by side",
             f"streamrec evaluate --dataset movielens-100k{_opt('--limit', z.eval_limit)} --epochs {epochs}"
             f" --sync-every {sync_every}" + (f" --configs {','.join(configs)}" if configs != CONFIGS else "")
             + f" --json {out}/evaluate-movielens-100k.json"
             f" --plot {out}/evaluate-movielens-100k.png", run_eval, plot_eval),
        Step("evaluate-otto-sample", "Evaluation: OTTO sample (e-commerce sessions, CC BY 4.0)",
             eval_command("otto", "tests/fixtures/otto-sample.jsonl", "evaluate-otto-sample", " --window 200"),
             run_log("otto", lambda: OTTO_SAMPLE, "OTTO sample"), plot_eval),
        Step("evaluate-sessions", "Evaluation: generated e-commerce session log (planted clusters and sessions)",
             f"streamrec generate {gen_args} --out sessions.jsonl && "
             + eval_command("jsonl", "sessions.jsonl", "evaluate-sessions"),
             run_log("jsonl", generated, "generated session log"), plot_eval),
        Step("evaluate-sessions-all", "Evaluation: the generated session log with every event a target (the next "
             "item, views included)",
             f"streamrec generate {gen_args} --out sessions.jsonl && "
             + eval_command("jsonl", "sessions.jsonl", "evaluate-sessions-all", " --targets all"),
             run_log("jsonl", generated, "generated session log", targets="all"), plot_eval),
        Step("evaluate-scale-out", "Evaluation: scale-out and restarts (simulated workers, item knowledge split or "
             "shared)", scale_command(), run_scale_out, plot_scale_out),
        Step("e2e", f"End to end: {z.e2e_workers} worker processes",
             f"streamrec bench e2e --workers {z.e2e_workers}{e2e_args} --seconds {z.e2e_seconds:g}"
             f" --json {out}/e2e.json --plot {out}/e2e.png",
             run_e2e(z.e2e_workers, "at-least-once", False), plot_e2e),
        Step("e2e-kill", "End to end: a worker killed and restarted (exactly-once)",
             f"streamrec bench e2e --workers {z.kill_workers} --guarantee exactly-once --kill{e2e_args}"
             f" --seconds {kill_secs:g} --json {out}/e2e-kill.json --plot {out}/e2e-kill.png",
             run_e2e(z.kill_workers, "exactly-once", True), plot_e2e),
        *(Step(f"worker-{g}", f"One worker process ({g})",
               f"streamrec bench worker --guarantee {g}{worker_args} --json {out}/worker-{g}.json",
               run_worker(g))
          for g in ("at-least-once", "exactly-once")),
        Step("sync", "Model sync: publish to serving in two workers",
             f"streamrec bench sync --items {z.sync_items} --json {out}/sync.json",
             lambda s, _d: sync.run(s, z.sync_items, 64, 2, 1000.0)),
        Step("catalog", "Catalog: from `catalog set --hidden` to the last list holding the item",
             f"streamrec bench catalog --trials {z.catalog_trials} --json {out}/catalog.json",
             lambda s, detail: catalog.run(s, trials=z.catalog_trials, progress=detail)),
        Step("train", "Base-model training (MovieLens-100K)",
             f"streamrec bench train{_opt('--epochs', z.train_epochs)} --json {out}/train.json",
             lambda _s, _d: train.run(str(MOVIELENS_100K), "movielens", "auto", 1, z.train_epochs, 64)),
        Step("replay", "Replay into Kafka and read back",
             f"streamrec bench replay --events {z.replay_events} --json {out}/replay.json",
             lambda s, _d: replay.run(s, z.replay_events)),
    ]


def run_report(settings: Settings, out: Path, quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    """Run every step (or those named in ``only``), write the JSON, PNG and README files; return a summary."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streamrec.bench.common import broker_session, machine
    from streamrec.models.errors import InputError
    from streamrec.report_md import render, splice

    every = steps(out, QUICK if quick else Sizes())
    unknown = sorted(set(only or ()) - {s.name for s in every})
    if unknown:
        raise InputError(f"unknown report step(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(s.name for s in every)}")
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in every if not only or s.name in only]
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    needs_broker = any(s.name not in EVAL_STEPS for s in todo)
    session = broker_session(settings) if needs_broker else contextlib.nullcontext(settings)
    with Progress(*columns, console=Console(stderr=True)) as bar, session as s:
        overall = bar.add_task("report", total=len(todo))
        for step in todo:
            bar.update(overall, description=f"report: {step.title}")
            current = bar.add_task(f"  {step.name}", total=None)

            def detail(text: str, done: float | None, total: float | None, name: str = step.name,
                       task: Any = current) -> None:
                bar.update(task, description=f"  {name}: {text}", completed=done or 0, total=total)

            t0 = time.monotonic()
            try:
                result = step.run(s, detail)
                (out / f"{step.name}.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
                if step.plot is not None:
                    step.plot(result, out / f"{step.name}.png")
                results[step.name] = {"ok": True, "result": result}
            except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
                results[step.name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                      "trace": traceback.format_exc(limit=5)}
            results[step.name].update(command=step.command, title=step.title,
                                      seconds=round(time.monotonic() - t0, 1))
            bar.remove_task(current)
            bar.advance(overall)
    if only:
        results = {**kept_results(out, [s for s in every if s.name not in only]), **results}
        results = {s.name: results[s.name] for s in every if s.name in results}
    summary = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "quick": quick,
               "seconds": round(time.monotonic() - started, 1), "machine": machine(), "steps": results,
               "command": f"streamrec report --out {out}" + (" --quick" if quick else "")
               + (f" --only {','.join(only)}" if only else "")}
    readme, headline = render(summary, out)
    previous = out / "README.md"
    if only and previous.is_file():    # rewrite only the sections run now (and the headline)
        took = ", ".join(f"{results[n]['title']} ({results[n]['seconds']:.0f} s)" for n in only if n in results)
        readme = splice(previous.read_text(), readme, [results[n]["title"] for n in only if n in results],
                        f"Re-run on {summary['date']} by `{summary['command']}`: {took}; the other sections "
                        "are as they were.")
    previous.write_text(readme)
    summary["headline"] = headline
    return summary


def kept_results(out: Path, others: list[Step]) -> dict[str, dict[str, Any]]:
    """The figures of steps not run this time, read back from their JSON files in ``out`` (if there)."""
    kept: dict[str, dict[str, Any]] = {}
    for step in others:
        path = out / f"{step.name}.json"
        if not path.is_file():
            continue
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        kept[step.name] = {"ok": True, "result": result, "command": step.command, "title": step.title,
                           "seconds": None, "kept": True}
    return kept


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(ctx: typer.Context,
                   out: str = typer.Option("reports", "--out", help="Folder for README.md, JSON and PNG files."),
                   quick: bool = typer.Option(False, "--quick", help="Small sizes: a smoke run of every step."),
                   only: str = typer.Option(None, "--only", help="Comma-separated step names to run (e.g. "
                                                                 "e2e,train); only their README sections and the "
                                                                 "headline are rewritten, the others kept.")
                   ) -> None:
        """Run the benchmarks and the evaluations; write reports/README.md with the figures."""
        names = [n.strip() for n in only.split(",") if n.strip()] if only else None
        summary = run_report(ctx.obj, Path(out), quick, names)
        print(summary["headline"])
        failed = [name for name, st in summary["steps"].items() if not st["ok"]]
        print(f"\n{Path(out) / 'README.md'} written in {summary['seconds']:.0f} s"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
        if failed:
            raise typer.Exit(1)
