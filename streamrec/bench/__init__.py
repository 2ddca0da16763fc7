"""``streamrec bench ...``: measured figures with JSON output (targets live here, not in timed tests)."""

from __future__ import annotations

import typer

from streamrec.bench.common import write_json


def register(app: typer.Typer) -> None:
    bench = typer.Typer(help="Benchmarks on this machine with a real broker; JSON results.", no_args_is_help=True)
    app.add_typer(bench, name="bench")

    @bench.command("replay")
    def bench_replay(ctx: typer.Context,
                     events: int = typer.Option(200_000, "--events", help="Events to produce and read back."),
                     json_path: str = typer.Option(None, "--json", help="Write the result here too."),
                     seed: int = typer.Option(0, "--seed")) -> None:
        """Events/s produced (idempotent, compressed, keyed) and read back (decoded) through the broker."""
        from streamrec.bench import replay

        write_json(replay.run(ctx.obj, events, seed), json_path)

    @bench.command("train")
    def bench_train(events: str = typer.Option(None, "--events", help="Log to train on (default MovieLens-100K "
                                                                     "from ../shared/data)."),
                    fmt: str = typer.Option("movielens", "--format", "-f"),
                    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
                    threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
                    epochs: int = typer.Option(None, "--epochs"),
                    dim: int = typer.Option(64, "--dim"),
                    json_path: str = typer.Option(None, "--json")) -> None:
        """Interactions/s per epoch on this machine's CPU or GPU, with the holdout metrics."""
        from streamrec.bench import train

        write_json(train.run(events, fmt, device, threads, epochs, dim), json_path)

    @bench.command("worker")
    def bench_worker(ctx: typer.Context,
                     events: int = typer.Option(200_000, "--events", help="Preloaded events (throughput)."),
                     items: int = typer.Option(100_000, "--items", help="Items in the base model."),
                     dim: int = typer.Option(64, "--dim", help="Embedding dimension."),
                     rate: float = typer.Option(5000.0, "--rate", help="Offered events/s (latency)."),
                     seconds: float = typer.Option(10.0, "--seconds", help="Length of the latency phase."),
                     users: int = typer.Option(None, "--users", help="Distinct users (default events/4)."),
                     guarantee: str = typer.Option("at-least-once", "--guarantee"),
                     json_path: str = typer.Option(None, "--json")) -> None:
        """Throughput, event-to-recommendation latency and memory of one worker process."""
        from streamrec.bench import worker

        write_json(worker.run(ctx.obj, events, items, dim, rate, users, seconds, guarantee), json_path)
