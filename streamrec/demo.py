"""``streamrec demo``: the whole loop on the embedded broker, narrated.

Generate a log with known taste clusters, train a base model on its first half and publish it through
Kafka, start a worker, replay the second half at a steady rate, and show a few users' lists changing right
after their clicks and purchases; end with throughput and event-to-recommendation latency.
"""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from streamrec.e2e import Subscriber, free_port, start_subscriber, start_worker, stop_process, wait_until
from streamrec.stream import broker
from streamrec.stream.logs import configure
from streamrec.stream.settings import Settings
from streamrec.stream.topics import ensure_topics, topic_specs

console = Console()


def run(settings: Settings, users: int, items: int, events: int, rate: float, epochs: int, workdir: Path,
        keep_broker: bool) -> None:
    from streamrec.consumers.trainer import train_and_publish
    from streamrec.models.base.training import TrainConfig
    from streamrec.producers.replay import Pacing, replay
    from streamrec.producers.synthetic import SyntheticConfig, simulate, write_log

    configure("warning", settings.log_format)  # the demo narrates; components only speak up for problems
    workdir.mkdir(parents=True, exist_ok=True)
    started_broker = False
    if settings.embedded and not broker.status(settings).running:
        console.rule("[bold]1. Kafka")
        demo_dir = workdir / "broker"
        shutil.rmtree(demo_dir, ignore_errors=True)
        settings = settings.replace(broker_dir=str(demo_dir))
        with console.status("provisioning (first run only) and starting Apache Kafka..."):
            st = broker.start(settings)
        started_broker = True
        console.print(f"broker ready at [bold]{st.bootstrap}[/] (KRaft, pid {st.pid})")
    else:
        tag = uuid.uuid4().hex[:6]  # a broker someone else runs: use fresh topic names
        settings = settings.replace(events_topic=f"events-demo-{tag}", recommendations_topic=f"recs-demo-{tag}",
                                    model_topic=f"models-demo-{tag}", dlq_topic=f"dlq-demo-{tag}",
                                    group=f"demo-{tag}")
        console.print(f"using the broker at {settings.bootstrap} with topics *-demo-{tag}")
    settings = settings.replace(group=settings.group if not started_broker else "demo-workers")
    worker = None
    sub = Subscriber(settings)
    try:
        for name, what in ensure_topics(settings, topic_specs(settings)).items():
            console.print(f"topic {name}: {what}")

        console.rule("[bold]2. A synthetic event log with planted taste clusters")
        log = simulate(SyntheticConfig(users=users, items=items, events=events, seed=7))
        path = workdir / "events.jsonl"
        write_log(log.events, path)
        kinds = Counter(e.event_type.value for e in log.events)
        console.print(f"{len(log.events):,} events, {users:,} users, {items:,} items -> {path}  {dict(kinds)}")
        half = len(log.events) // 2
        history, live = list(log.events[:half]), list(log.events[half:])

        console.rule("[bold]3. Train the base model on the first half and publish it through Kafka")
        outcome = train_and_publish(settings, history, TrainConfig(epochs=epochs, dim=32, threads=1),
                                    str(workdir / "model"))
        m = outcome.metrics
        console.print(f"model {outcome.version}: holdout HR@10 {m['hr@10']:.3f} (popularity "
                      f"{m['popularity_hr@10']:.3f}), {outcome.stats['interactions_per_s']:,.0f} interactions/s "
                      f"on {outcome.stats['device']}; gate: {outcome.decision.reason}; published: {outcome.published}")

        console.rule("[bold]4. A worker, and a subscriber on the recommendations topic")
        start_subscriber(sub)
        port = free_port()
        worker = start_worker(settings, "--worker-id", "demo-1", "--metrics-port", str(port),
                              log_path=workdir / "worker.log")
        t_ready = time.monotonic()
        with console.status("waiting for the worker's /readyz (partitions assigned, state restored)..."):
            ready = wait_until(lambda: worker.poll() is None and _ready(port), timeout_s=120, every_s=0.1)
        if not ready:
            raise RuntimeError(f"the worker did not become ready within 120 s; see {workdir / 'worker.log'}")
        console.print(f"worker pid {worker.pid} ready in {time.monotonic() - t_ready:.1f} s "
                      f"(log: {workdir / 'worker.log'}; metrics http://127.0.0.1:{port}/metrics)")

        console.rule(f"[bold]5. Replay the second half at {rate:,.0f} events/s")
        sent_at: dict[str, float] = {}
        stats = replay(live, settings, Pacing("rate", rate), sent_at=sent_at)
        last_ids = {e.event_id for e in live[-200:]}
        sub.wait_for(lambda arr: len({a.trigger_event_id for a in arr} & last_ids) >= 1, 60)
        time.sleep(0.5)
        arrivals = sub.snapshot()
        console.print(f"replayed {stats.events:,} events in {stats.seconds:.1f}s; {len(arrivals):,} lists received")

        console.rule("[bold]6. Lists right after each user's clicks and purchases")
        _show_users(log, live, arrivals)

        console.rule("[bold]7. Throughput and latency")
        for line in latency_lines(arrivals, sent_at, rate):
            console.print(line)
        console.print(f"try: [bold]streamrec tail {settings.recommendations_topic} --from-beginning -n 5[/] "
                      f"(with the broker running: make demo DEMO_ARGS=--keep-broker)")
    finally:
        sub.stop()
        if worker is not None:
            code = stop_process(worker)
            console.print(f"worker stopped with SIGTERM (exit {code}): batch finished, committed, closed")
        if started_broker and not keep_broker:
            broker.stop(settings)
            console.print("broker stopped")


#: seconds at the start of the replay that the second latency line leaves out (the broker's and the worker's
#: first requests, compiled code and caches: the first 1-2 s ran at 150-300 ms where later ones ran at 40-70 ms)
WARMUP_S = 2.0


def latency_lines(arrivals: Sequence[Any], sent_at: dict[str, float], rate: float,
                  warmup_s: float = WARMUP_S) -> list[str]:
    """The demo's latency report: event -> recommendation percentiles over every list whose trigger the replay
    sent, then over those whose trigger was sent ``warmup_s`` or more after the replay's first event."""
    pairs = np.array([(sent_at[a.trigger_event_id], a.arrival_ms - sent_at[a.trigger_event_id])
                      for a in arrivals if a.trigger_event_id in sent_at], dtype=np.float64).reshape(-1, 2)
    if not len(pairs):
        return ["no list arrived for an event of the replay: see the worker's log"]
    start = min(sent_at.values())
    lines = []
    for what, lat in (("", pairs[:, 1]), (f" after the first {warmup_s:g} s",
                                          pairs[pairs[:, 0] >= start + 1000 * warmup_s, 1])):
        if len(lat):
            p50, p90, p99 = np.percentile(lat, [50, 90, 99])
            lines.append(f"event -> recommendation latency over {len(lat):,} lists{what}: p50 {p50:.1f} ms, "
                         f"p90 {p90:.1f} ms, p99 {p99:.1f} ms (offered {rate:,.0f} events/s)")
    return lines


def _ready(port: int) -> bool:
    """True once the worker's ``/readyz`` answers 200: its partitions are assigned and their state restored,
    so the replay measures the loop's latency and not its start-up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _show_users(log: object, live: list, arrivals: list) -> None:  # type: ignore[type-arg]
    truth = log.truth  # type: ignore[attr-defined]
    by_trigger = {a.trigger_event_id: a for a in arrivals}
    active = Counter(e.user_id for e in live if e.event_type.value in ("CLICK", "ADD_TO_CART", "PURCHASE"))
    for user, _ in active.most_common(3):
        favourites = ", ".join(truth.favourites_at(user, live[-1].timestamp_ms))
        table = Table(title=f"user {user}, favourite clusters now: {favourites}")
        for col in ("event", "item (cluster)", "top 5 of the list that followed", "share of the event's cluster"):
            table.add_column(col)
        shown = 0
        for e in live:
            if e.user_id != user or e.event_type.value == "VIEW" or e.event_id not in by_trigger:
                continue
            items = by_trigger[e.event_id].value["items"]
            clusters = [truth.cluster_of(i["item_id"]) for i in items]
            cluster = truth.cluster_of(e.item_id)
            top = " ".join(f"{i['item_id']}({c})" for i, c in zip(items[:5], clusters[:5], strict=False))
            table.add_row(e.event_type.value, f"{e.item_id} ({cluster})", top,
                          f"{clusters.count(cluster)}/{len(clusters)}")
            shown += 1
            if shown >= 6:
                break
        console.print(table)
