"""``streamrec bench ...``: measured figures with JSON output (targets live here, not in timed tests)."""

from __future__ import annotations

import typer

from streamrec.bench.common import write_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    bench = typer.Typer(help="Benchmarks on this machine with a real broker; JSON results.", no_args_is_help=True)
    app.add_typer(bench, name="bench")

    @bench.command("replay")
    def bench_replay(ctx: typer.Context,
                     events: int = typer.Option(200_000, "--events", help="Events to produce and read back."),
                     json_path: str = typer.Option(None, "--json", help="Write the result here too."),
                     seed: int = typer.Option(0, "--seed"),
                     yardstick: bool = typer.Option(True, "--yardstick/--no-yardstick",
                                                    help="Also time a plain kafka-python producer of the same "
                                                         "pre-encoded records (ceiling_events_per_s)."),
                     rounds: int = typer.Option(3, "--rounds", min=1,
                                                help="Alternated rounds of the plain producer and the replay; "
                                                     "the figures are medians.")) -> None:
        """Events/s produced (idempotent, compressed, keyed) and read back (decoded) through the broker,
        beside a plain kafka-python producer of the same pre-encoded records (the yardstick)."""
        from streamrec.bench import replay

        write_json(replay.run(ctx.obj, events, seed, yardstick=yardstick, rounds=rounds), json_path)

    @bench.command("produce")
    def bench_produce(ctx: typer.Context,
                      batches: int = typer.Option(40, "--batches", help="Batches per producer variant."),
                      lists: int = typer.Option(350, "--lists", help="Lists (and changelog records) per batch."),
                      rounds: int = typer.Option(4, "--rounds", help="Times every variant runs (mean reported)."),
                      json_path: str = typer.Option(None, "--json")) -> None:
        """The worker's send pattern (lists, changelog records, a flush per batch) per producer setting
        (linger, batch size, compression): microseconds per list and stored bytes, in one run."""
        from streamrec.bench import produce

        write_json(produce.run(ctx.obj, batches, lists, rounds=rounds), json_path)

    @bench.command("memory")
    def bench_memory(ctx: typer.Context,
                     users: str = typer.Option("10000,100000,1000000", "--users",
                                               help="Comma-separated user counts at which RSS is measured."),
                     items: int = typer.Option(100_000, "--items"), dim: int = typer.Option(64, "--dim"),
                     events_per_user: int = typer.Option(5, "--events-per-user"),
                     list_every: int = typer.Option(20, "--list-every",
                                                    help="One user in N gets a real list (the others a "
                                                         "shown list of model items, as a list leaves)."),
                     json_path: str = typer.Option(None, "--json", help="Write the result here too.")) -> None:
        """The worker engine's RSS with N users in state and a model of --items (no Kafka): MB and bytes per
        user at each mark."""
        from streamrec.bench import memory
        from streamrec.models.errors import InputError

        try:
            marks = [int(u.replace("_", "")) for u in users.split(",") if u.strip()]
        except ValueError:
            raise InputError(f"--users takes comma-separated whole numbers, not {users!r}") from None
        write_json(memory.run(ctx.obj, marks, items, dim, events_per_user, list_every=list_every), json_path)

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
                     workload: str = typer.Option("sessions", "--workload",
                                                  help="sessions (users browse in sessions) | uniform (one "
                                                       "random user per event: the worst case)."),
                     reranker: bool = typer.Option(None, "--reranker/--no-reranker",
                                                   help="The worker's learned reranker on or off (default: "
                                                        "STREAMREC_RERANKER)."),
                     yardstick: bool = typer.Option(True, "--yardstick/--no-yardstick",
                                                    help="Also measure a bare kafka-python passthrough loop "
                                                         "on the same broker (ceiling_events_per_s, "
                                                         "ratio_to_ceiling)."),
                     batch_target_ms: float = typer.Option(None, "--batch-target-ms",
                                                           help="The worker's batch time target (default: "
                                                                "STREAMREC_BATCH_TARGET_MS; 0: count only)."),
                     json_path: str = typer.Option(None, "--json")) -> None:
        """Throughput, event-to-recommendation latency and memory of one worker process, beside a bare
        kafka-python passthrough loop in the same run (the yardstick)."""
        from streamrec.bench import worker

        extra = ("--batch-target-ms", f"{batch_target_ms:g}") if batch_target_ms is not None else ()
        write_json(worker.run(ctx.obj, events, items, dim, rate, users, seconds, guarantee, extra_args=extra,
                              kind=workload, reranker=reranker, yardstick=yardstick), json_path)

    @bench.command("engine")
    def bench_engine(ctx: typer.Context,
                     events: int = typer.Option(30_000, "--events", help="Events of the sessions workload."),
                     items: int = typer.Option(100_000, "--items", help="Items in the base model."),
                     dim: int = typer.Option(64, "--dim", help="Embedding dimension."),
                     batch: int = typer.Option(1_000, "--batch", help="Events per batch."),
                     users: int = typer.Option(None, "--users", help="Distinct users (default events/4)."),
                     warmup: int = typer.Option(3, "--warmup", help="Batches run before measuring."),
                     gc_freeze: bool = typer.Option(True, "--gc-freeze/--no-gc-freeze",
                                                    help="Freeze the long-lived objects after the model "
                                                         "loads, as the worker does."),
                     profile: int = typer.Option(0, "--profile", help="Also list the N functions of largest "
                                                                      "own time (cProfile)."),
                     json_path: str = typer.Option(None, "--json")) -> None:
        """The worker's engine without Kafka: ms per batch of decode, update, recommend (and its split per
        source, score, select, stages) and record encoding. No broker, so no yardstick: compare runs."""
        from streamrec.bench import engine

        write_json(engine.run(ctx.obj, events, items, dim, batch, users, warmup, profile, gc_freeze=gc_freeze),
                   json_path)

    @bench.command("e2e")
    def bench_e2e(ctx: typer.Context,
                  workers: str = typer.Option("1,2,3", "--workers", help="Worker counts to run, e.g. 1,2,3."),
                  rate: float = typer.Option(1000.0, "--rate", help="Offered events/s (latency phase)."),
                  seconds: float = typer.Option(10.0, "--seconds", help="Length of the latency phase."),
                  events: int = typer.Option(50_000, "--events", help="Backlog written while the workers "
                                                                      "are paused (throughput)."),
                  guarantee: str = typer.Option("at-least-once", "--guarantee",
                                                help="at-least-once | exactly-once."),
                  kill: bool = typer.Option(False, "--kill", help="SIGKILL one worker half-way through "
                                                                  "the latency phase and restart it."),
                  broker_restart: bool = typer.Option(False, "--broker-restart",
                                                      help="Stop the embedded broker half-way through the "
                                                           "latency phase and start it again; reports how long "
                                                           "the workers took to resume and lost lists."),
                  users: int = typer.Option(None, "--users", help="Distinct users (default: events/4, "
                                                                  "at most 5,000)."),
                  items: int = typer.Option(10_000, "--items", help="Items in the random base model."),
                  partitions: int = typer.Option(None, "--partitions", help="Events partitions (default: "
                                                                            "the settings', at least the "
                                                                            "largest worker count)."),
                  kind: str = typer.Option("uniform", "--workload",
                                           help="Offered-phase events: uniform (random users and items) or "
                                                "sessions (clustered browsing: lists can hit, so --kill also "
                                                "reports the hit-rate curve of the killed worker's users)."),
                  worker_arg: list[str] = typer.Option([], "--worker-arg",
                                                       help="An extra `streamrec worker` flag for every worker "
                                                            "(repeat it), e.g. --worker-arg=--item-plane."),
                  json_path: str = typer.Option(None, "--json"),
                  plot_path: str = typer.Option(None, "--plot", help="PNG: latency and lag over time, "
                                                                     "throughput per worker count.")) -> None:
        """Producer, N worker processes and a subscriber: throughput, latency, lag, lost and duplicated
        lists, CPU and memory per worker, and recovery from a killed worker."""
        from streamrec.bench import e2e

        counts = e2e.parse_counts(workers)
        result = e2e.run_with_progress(ctx.obj, counts, rate, seconds, events, guarantee, kill, users, items,
                                       partitions, broker_restart=broker_restart, kind=kind,
                                       worker_args=tuple(worker_arg))
        if plot_path:
            from streamrec.bench.plots import plot_e2e

            plot_e2e(result, plot_path)
        write_json(result, json_path)


    @bench.command("serve")
    def bench_serve(ctx: typer.Context,
                    rate: float = typer.Option(1000.0, "--rate", help="Requests/s offered (open loop)."),
                    seconds: float = typer.Option(10.0, "--seconds", help="Length of each measurement."),
                    users: int = typer.Option(10_000, "--users", help="Users with a list on the topic."),
                    connections: int = typer.Option(8, "--connections", help="Keep-alive connections."),
                    json_path: str = typer.Option(None, "--json")) -> None:
        """p50/p99 of GET /v1/users/{user}/recommendations on `streamrec serve` at a fixed rate on loopback,
        beside a bare FastAPI app on the same server answering a constant (the yardstick)."""
        from streamrec.bench import serve

        write_json(serve.run(ctx.obj, rate, seconds, users, connections), json_path)

    @bench.command("sync")
    def bench_sync(ctx: typer.Context,
                   items: int = typer.Option(100_000, "--items", help="Items in the published model."),
                   dim: int = typer.Option(64, "--dim", help="Embedding dimension."),
                   workers: int = typer.Option(2, "--workers", help="Worker processes following model-updates."),
                   rate: float = typer.Option(1000.0, "--rate", help="Events/s flowing during the sync."),
                   json_path: str = typer.Option(None, "--json")) -> None:
        """Publish-to-serving time of a base model in every worker, and the longest batch gap it causes."""
        from streamrec.bench import sync

        write_json(sync.run(ctx.obj, items, dim, workers, rate), json_path)

    @bench.command("catalog")
    def bench_catalog(ctx: typer.Context,
                      trials: int = typer.Option(10, "--trials", help="Hide / show trials (1 to 50)."),
                      rate: float = typer.Option(300.0, "--rate", help="Offered events/s while the trials run."),
                      users: int = typer.Option(300, "--users", help="Users of the generated session log."),
                      items: int = typer.Option(1000, "--items", help="Items of the log and its catalog."),
                      hidden_s: float = typer.Option(1.5, "--hidden-s", help="Least time an item stays hidden."),
                      json_path: str = typer.Option(None, "--json", "--out", help="Write the result here too.")
                      ) -> None:
        """From `catalog set ITEM --hidden` to the last list that holds the item, in ms and in the worker's
        batches, beside the median batch interval of the same run; the item must come back when shown."""
        from streamrec.bench import catalog

        write_json(catalog.run_with_progress(ctx.obj, trials=trials, rate=rate, users=users, items=items,
                                             hidden_s=hidden_s), json_path)
