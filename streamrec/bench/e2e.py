"""``streamrec bench e2e``: the whole loop with real processes, for each worker count.

For every count in ``--workers``, on fresh topics of one broker: a subscriber thread (timestamps every list),
N ``streamrec worker`` processes (distinct ids and metrics ports, a published random base model, no model
sync), a paced producer, and a monitor thread (``/metrics``, ``/proc``, the group's committed offsets).

1. Startup: workers start on the empty topic; timed until every partition is owned by exactly one worker.
2. Offered rate: ``rate`` events/s for ``seconds``; latency = list arrival at the subscriber minus the time
   the triggering event was handed to the producer, overall and per second; lag over time. With ``kill``,
   one worker is SIGKILLed half-way and restarted at once; recovery = kill until the first list for an
   event sent after the kill arrives from one of the partitions it owned; and the online hit rate as the
   users saw it (:func:`hit_curve`), per second, for the killed worker's users and the others (use the
   ``sessions`` workload: uniform random events never hit).
3. Backlog: the workers are paused (SIGSTOP) while ``events`` more events are written (well under the
   session timeout, so the group does not rebalance), then resumed (SIGCONT); throughput = backlog events /
   (last list for a backlog event - resume time).
4. Lists: every user's final event must produce a list (else *lost*); a (user, trigger event) pair that
   arrives twice is *duplicated* (expected after a kill in at-least-once, never in exactly-once).

With ``broker_restart``, the offered phase is cut in two: after the first half the embedded broker is
stopped, kept down ``down_s`` seconds and started again on the same data directory and ports (the workers
keep running), then the second half is produced. *resume* = the broker being back (answering admin
requests) until the first list for an event produced after it arrives; *lost* counts every user whose last
event of the first half (produced before the stop) has no list, as well as the final ones.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.bench.common import broker_session, machine, synthetic_events
from streamrec.bench.monitor import Monitor, WorkerProcess, owned_partitions
from streamrec.bench.worker import workload
from streamrec.e2e import Arrival, Subscriber, start_subscriber
from streamrec.models.base.artifact import random_artifact
from streamrec.models.errors import InputError, StreamrecError
from streamrec.producers.replay import Pacing, replay
from streamrec.stream import broker
from streamrec.stream.settings import Settings

Step = Callable[[str], None]


def _wait(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


def _assignment(workers: list[WorkerProcess]) -> dict[str, list[int]]:
    return {w.worker_id: owned_partitions(w.sample()) for w in workers}


def _wait_assigned(workers: list[WorkerProcess], partitions: int, timeout_s: float,
                   hold_s: float = 3.0) -> tuple[bool, dict[str, list[int]]]:
    """Wait until every partition is owned by exactly one worker, every worker owns one (when there are
    enough partitions), and that holds for ``hold_s``; ``(False, last assignment)`` after ``timeout_s``."""
    deadline, since = time.monotonic() + timeout_s, None
    owned: dict[str, list[int]] = {}
    while time.monotonic() < deadline:
        owned = _assignment(workers)
        flat = [p for ps in owned.values() for p in ps]
        ok = (len(flat) == partitions and set(flat) == set(range(partitions))
              and (len(workers) > partitions or all(owned.values())))
        now = time.monotonic()
        since = (since or now) if ok else None
        if since is not None and now - since >= hold_s:
            return True, owned
        time.sleep(0.25)
    return False, owned


def _percentiles(values: np.ndarray) -> dict[str, float | int | None]:
    if not len(values):
        return {"p50": None, "p90": None, "p99": None, "max": None, "samples": 0}
    p = np.percentile(values, [50, 90, 99])
    return {"p50": round(float(p[0]), 1), "p90": round(float(p[1]), 1), "p99": round(float(p[2]), 1),
            "max": round(float(values.max()), 1), "samples": int(len(values))}


def _latency(arrivals: list[Arrival], sent_at: dict[str, float], t0_ms: float) -> tuple[dict[str, Any],
                                                                                       list[dict[str, Any]]]:
    pairs = [(sent_at[a.trigger_event_id], a.arrival_ms - sent_at[a.trigger_event_id]) for a in arrivals
             if a.trigger_event_id in sent_at]
    lat = np.array([d for _, d in pairs], dtype=np.float64)
    second = np.array([int((s - t0_ms) // 1000) for s, _ in pairs], dtype=np.int64)
    over_time = []
    for sec in sorted(set(second.tolist())):
        v = lat[second == sec]
        over_time.append({"t": sec, "p50": round(float(np.percentile(v, 50)), 1),
                          "p99": round(float(np.percentile(v, 99)), 1), "lists": int(len(v))})
    return _percentiles(lat), over_time


class _Pending:
    """Users whose final event has no list yet, updated from new arrivals only (cheap to poll)."""

    def __init__(self, sub: Subscriber, final: dict[str, str]) -> None:
        self.sub, self.seen = sub, 0
        self.missing = {(u, e) for u, e in final.items()}

    def empty(self) -> bool:
        got = self.sub.snapshot()
        for a in got[self.seen:]:
            self.missing.discard((a.user_id, a.trigger_event_id))
        self.seen = len(got)
        return not self.missing


def _lists(arrivals: list[Arrival], final: dict[str, str]) -> dict[str, int]:
    pairs = Counter((a.user_id, a.trigger_event_id) for a in arrivals)
    lost = sum(1 for user, eid in final.items() if (user, eid) not in pairs)
    return {"emitted": len(arrivals), "users": len(final), "lost": lost,
            "duplicated": sum(c - 1 for c in pairs.values() if c > 1)}


class _Killer(threading.Thread):
    """SIGKILLs one worker after ``after_s`` and restarts it at once, remembering what it owned."""

    def __init__(self, worker: WorkerProcess, after_s: float) -> None:
        super().__init__(name="bench-killer", daemon=True)
        self.worker, self.after_s = worker, after_s
        self.partitions: list[int] = []
        self.killed_ms = 0.0
        self.restarted_ms = 0.0

    def run(self) -> None:
        time.sleep(self.after_s)
        self.partitions = owned_partitions(self.worker.sample() or self.worker.last_metrics)
        self.killed_ms = time.time() * 1000
        self.worker.kill()
        self.worker.start()
        self.restarted_ms = time.time() * 1000

    def report(self, arrivals: list[Arrival], sent_at: dict[str, float], t0_ms: float) -> dict[str, Any]:
        owned = set(self.partitions)
        back = [a.arrival_ms for a in arrivals if a.value.get("trigger_partition") in owned
                and sent_at.get(a.trigger_event_id, 0.0) >= self.killed_ms]
        recovery = (min(back) - self.killed_ms) / 1000 if back else None
        return {"worker_id": self.worker.worker_id, "partitions": self.partitions,
                "killed_at_s": round((self.killed_ms - t0_ms) / 1000, 2),
                "restart_s": round((self.restarted_ms - self.killed_ms) / 1000, 2),
                "recovery_s": None if recovery is None else round(recovery, 2)}


def hit_curve(paced: list[Any], sent_at: dict[str, float], arrivals: list[Arrival], partitions: list[int],
              killed_ms: float, window_s: float = 1.0, k: int = 10, before_s: float = 10.0,
              settle_s: float = 10.0) -> dict[str, Any]:
    """The online hit rate as users saw it, from outside: an event is a hit when its item is in the top ``k``
    of the newest list its user had received when the event was sent. Per window of send time (seconds from
    the kill), for the users of the killed worker's ``partitions`` (their partition read from their lists)
    and for the others (the control: the workload's own drift moves both). Summaries: each group's rate in
    the ``before_s`` before the kill, right after the killed worker's users got their first list that
    followed it (``first_5s``), and from ``settle_s`` after that list to the end (``settled``, once the
    backlog of the outage is worked off); ``settled_vs_control`` is the killed worker's users' settled/before
    over the others' (1.0: no lasting dip)."""
    lists: dict[str, tuple[list[float], list[frozenset[str]]]] = {}
    part: dict[str, int] = {}
    for a in sorted(arrivals, key=lambda x: x.arrival_ms):
        times, tops = lists.setdefault(a.user_id, ([], []))
        times.append(a.arrival_ms)
        tops.append(frozenset(it["item_id"] for it in (a.value.get("items") or [])[:k]))
        if isinstance(a.value.get("trigger_partition"), int):
            part[a.user_id] = a.value["trigger_partition"]
    owned = set(partitions)
    back = [a.arrival_ms for a in arrivals if part.get(a.user_id) in owned and a.arrival_ms > killed_ms
            and sent_at.get(a.trigger_event_id, 0.0) >= killed_ms]
    recovered_ms = min(back) if back else None
    windows: dict[int, list[int]] = {}           # window -> [restarted hits, restarted n, other hits, other n]
    spans = {"before": (killed_ms - before_s * 1000, killed_ms)}
    if recovered_ms is not None:
        spans["first_5s"] = (recovered_ms, recovered_ms + 5_000)
        spans["settled"] = (recovered_ms + settle_s * 1000, float("inf"))
    tally = {(name, g): [0, 0] for name in spans for g in ("restarted", "others")}
    for e in paced:
        sent = sent_at.get(e.event_id)
        seen = lists.get(e.user_id)
        if sent is None or seen is None:
            continue
        j = bisect.bisect_left(seen[0], sent) - 1
        if j < 0:
            continue                                 # no list yet: nothing to score against
        hit = int(e.item_id in seen[1][j])
        restarted = part.get(e.user_id) in owned
        w = windows.setdefault(int((sent - killed_ms) // (window_s * 1000)), [0, 0, 0, 0])
        w[0 if restarted else 2] += hit
        w[1 if restarted else 3] += 1
        for name, (lo, hi) in spans.items():
            if lo <= sent < hi:
                t = tally[(name, "restarted" if restarted else "others")]
                t[0] += hit
                t[1] += 1

    def rate(h: int, n: int) -> float | None:
        return round(h / n, 4) if n else None

    summary = {name: {g: rate(*tally[(name, g)]) for g in ("restarted", "others")}
               | {f"{g}_events": tally[(name, g)][1] for g in ("restarted", "others")} for name in spans}

    def ratio(name: str, g: str) -> float | None:
        a, b = (summary.get(name) or {}).get(g), summary["before"][g]
        return a / b if a is not None and b else None

    mine, control = ratio("settled", "restarted"), ratio("settled", "others")
    return {"k": k, "window_s": window_s, "settle_s": settle_s,
            "recovered_after_s": None if recovered_ms is None else round((recovered_ms - killed_ms) / 1000, 2),
            **summary,
            "settled_over_before": None if mine is None else round(mine, 3),
            "control_settled_over_before": None if control is None else round(control, 3),
            "settled_vs_control": round(mine / control, 3) if mine is not None and control else None,
            "curve": [{"t": round(t * window_s, 2), "restarted": rate(v[0], v[1]), "restarted_events": v[1],
                       "others": rate(v[2], v[3]), "other_events": v[3]} for t, v in sorted(windows.items())]}


class _BrokerRestart:
    """Stops the embedded broker, waits ``down_s``, starts it again (same data directory and ports)."""

    def __init__(self, settings: Settings, down_s: float) -> None:
        self.settings, self.down_s = settings, down_s
        self.stopped_ms = self.back_ms = 0.0
        self.before: dict[str, str] = {}

    def restart(self) -> None:
        self.stopped_ms = time.time() * 1000
        broker.stop(self.settings)
        time.sleep(self.down_s)
        broker.start(self.settings, quiet=True)   # returns once the broker answers admin requests
        self.back_ms = time.time() * 1000

    def report(self, arrivals: list[Arrival], sent_at: dict[str, float], t0_ms: float) -> dict[str, Any]:
        after = [a.arrival_ms for a in arrivals if sent_at.get(a.trigger_event_id, 0.0) >= self.back_ms]
        pairs = {(a.user_id, a.trigger_event_id) for a in arrivals}
        return {"stopped_at_s": round((self.stopped_ms - t0_ms) / 1000, 2), "down_s": self.down_s,
                "back_after_s": round((self.back_ms - self.stopped_ms) / 1000, 2),
                "resume_s": round((min(after) - self.back_ms) / 1000, 2) if after else None,
                "users_before": len(self.before),
                "lost_before": sum(1 for u, e in self.before.items() if (u, e) not in pairs)}


def _one(s: Settings, n: int, args: tuple[str, ...], work: Path, rate: float, seconds: float, backlog: int,
         users: int, items: int, kill: bool, step: Step, restart_down_s: float | None = None,
         kind: str = "uniform") -> dict[str, Any]:
    partitions = s.events_partitions
    sub = Subscriber(s)
    start_subscriber(sub)
    t0 = time.time()
    workers = [WorkerProcess(s, f"e2e-{n}w-{k}", args, work) for k in range(n)]
    for w in workers:
        w.start()
    monitor = Monitor(s, workers, t0)
    try:
        step(f"{n} worker(s): starting")
        balanced, assignment = _wait_assigned(workers, partitions, timeout_s=60)
        startup_s = time.time() - t0
        monitor.start()
        # offered rate (with an optional kill half-way)
        restart = _BrokerRestart(s, restart_down_s) if restart_down_s is not None else None
        step(f"{n} worker(s): {rate:g} events/s for {seconds:g} s" + (" with a kill" if kill else "")
             + (" with a broker restart" if restart else ""))
        paced = workload(kind, int(rate * seconds), users, items, seed=100 + n)
        sent_at: dict[str, float] = {}
        killer = _Killer(workers[-1], seconds / 2) if kill else None
        phase_ms = time.time() * 1000
        if killer is not None:
            killer.start()
        if restart is not None:
            half = len(paced) // 2
            first = replay(paced[:half], s, Pacing("rate", rate), sent_at=sent_at)
            restart.before = {e.user_id: e.event_id for e in paced[:half]}
            # the first half's lists are in (so each is known to be a trigger); its offsets may not be committed
            _wait(_Pending(sub, restart.before).empty, timeout_s=60, every_s=0.1)
            restart.restart()
            second = replay(paced[half:], s, Pacing("rate", rate), sent_at=sent_at)
            offered = dataclasses.replace(second, events=first.events + second.events,
                                          seconds=first.seconds + second.seconds)
        else:
            offered = replay(paced, s, Pacing("rate", rate), sent_at=sent_at)
        if killer is not None:
            killer.join()
        produced = time.time()
        _wait(lambda: monitor.committed_lag(since=produced) == 0, timeout_s=90, every_s=0.25)
        paced_done_s = time.time() - phase_ms / 1000
        arrivals = sub.snapshot()
        latency, latency_over_time = _latency(arrivals, sent_at, phase_ms)
        processed = [a.arrival_ms for a in arrivals if a.trigger_event_id in sent_at]
        # backlog: pause, write, resume, drain
        step(f"{n} worker(s): draining a backlog of {backlog:,} events")
        rebalances_before = sum(w.sample().get("streamrec_rebalances_total", 0.0) for w in workers)
        load = synthetic_events(backlog, users, items, seed=200 + n, t0_ms=int(time.time() * 1000))
        for w in workers:
            w.signal(signal.SIGSTOP)
        try:
            written = replay(load, s, Pacing())
        finally:
            for w in workers:
                w.signal(signal.SIGCONT)
        resumed_ms = time.time() * 1000
        load_ids = {e.event_id for e in load}
        final = {e.user_id: e.event_id for e in (*paced, *load)}
        done = _wait(_Pending(sub, final).empty, timeout_s=180, every_s=0.25)
        arrivals = sub.snapshot()
        last_ms = max((a.arrival_ms for a in arrivals if a.trigger_event_id in load_ids), default=resumed_ms)
        drain_s = max((last_ms - resumed_ms) / 1000, 1e-3)
        rebalances = sum(w.sample().get("streamrec_rebalances_total", 0.0) for w in workers) - rebalances_before
        time.sleep(2 * monitor.interval_s)
    finally:
        step(f"{n} worker(s): stopping")
        codes = [w.stop() for w in workers]
        monitor.stop()
        sub.stop()
    return {
        "workers": n, "startup_s": round(startup_s, 2), "exit_codes": codes,
        "assignment": assignment, "assignment_balanced": balanced,
        "offered_phase_at_s": round(phase_ms / 1000 - t0, 2),
        "backlog_resumed_at_s": round(resumed_ms / 1000 - t0, 2),
        "offered": {"rate": rate, "seconds": seconds, "events": len(paced),
                    "achieved_rate": round(offered.rate, 1),
                    "processed_per_s": round(len(paced) / max(paced_done_s, 1e-3), 1),
                    "drained_after_s": round(paced_done_s, 2)},
        "latency_ms": latency, "latency_over_time": latency_over_time,
        "throughput": {"backlog_events": backlog, "write_s": round(written.seconds, 2),
                       "drain_s": round(drain_s, 2), "events_per_s": round(backlog / drain_s, 1),
                       "rebalances_during_drain": int(rebalances), "all_lists_arrived": done},
        "lists": _lists(arrivals, final), "lists_in_offered_phase": len(processed),
        "kill": None if killer is None else {
            **killer.report(arrivals, sent_at, phase_ms),
            "hit_rate": hit_curve(paced, sent_at, arrivals, killer.partitions, killer.killed_ms)},
        "broker_restart": restart.report(arrivals, sent_at, phase_ms) if restart is not None else None,
        "lag_over_time": [{"t": x["t"], "committed_lag": x["committed_lag"],
                           "worker_lag": {k: v["lag"] for k, v in x["workers"].items()}}
                          for x in monitor.samples],
        "processes": [w.summary() for w in workers],
    }


def run(settings: Settings, workers: list[int], rate: float, seconds: float, events: int, guarantee: str,
        kill: bool = False, users: int | None = None, items: int = 10_000, dim: int = 32,
        partitions: int | None = None, step: Step | None = None, broker_restart: bool = False,
        down_s: float = 3.0, kind: str = "uniform", worker_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the end-to-end benchmark for each worker count in ``workers``; returns the JSON result.
    ``broker_restart``: stop the embedded broker half-way through the offered phase for ``down_s`` seconds.
    ``kind``: the offered phase's events (``uniform``: random users and items; ``sessions``: users browsing
    clustered items in sessions, where lists can hit, so a kill's effect on the hit rate shows);
    ``worker_args``: extra ``streamrec worker`` flags for every worker (e.g. ``--item-plane``)."""
    if kind not in ("uniform", "sessions"):
        raise InputError(f"unknown workload {kind!r}; use uniform or sessions")
    say: Step = step or (lambda _msg: None)
    if broker_restart and not settings.embedded:
        raise InputError("--broker-restart stops and starts the embedded broker; it cannot restart an external "
                         "cluster (unset STREAMREC_BOOTSTRAP_SERVERS)")
    if broker_restart and kill:
        raise InputError("--broker-restart and --kill measure different recoveries; choose one per run")
    users = users or max(1, min(5000, (int(rate * seconds) + events) // 4))
    partitions = partitions or max(settings.events_partitions, max(workers))
    work = Path(tempfile.mkdtemp(prefix="streamrec-bench-e2e-"))
    random_artifact(work / "model", items, dim, seed=0, clusters=max(1, items // 200), version="bench-e2e")
    args = ("--model", str(work / "model"), "--no-model-sync", *worker_args)
    runs = []
    base = settings.replace(guarantee=guarantee)
    try:
        with broker_session(base, partitions) as first:
            for i, n in enumerate(workers):
                # a fresh set of topics and a fresh group per worker count, on the same broker
                ctx = broker_session(first, partitions) if i else contextlib.nullcontext(first)
                with ctx as s:
                    runs.append(_one(s, n, args, work, rate, seconds, events, users, items, kill, say,
                                     restart_down_s=down_s if broker_restart else None, kind=kind))
    except StreamrecError:
        raise
    except Exception as exc:
        raise RuntimeError(f"bench e2e failed: {exc} (worker logs in {work})") from exc
    shutil.rmtree(work, ignore_errors=True)  # kept (worker logs) only when a run fails
    return {
        "benchmark": "e2e", "guarantee": guarantee, "partitions": partitions, "users": users, "items": items,
        "dim": dim, "rate": rate, "seconds": seconds, "backlog_events": events, "kill": kill,
        "workload": kind, "worker_args": list(worker_args),
        "broker_restart": broker_restart,
        "runs": runs, "scaling": {str(r["workers"]): r["throughput"]["events_per_s"] for r in runs},
        "machine": machine(),
        "note": "the producer, subscriber, broker and every worker share this machine's CPUs; once the "
                "workers outnumber the free cores, throughput stops growing with the worker count",
    }


def parse_counts(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``; anything else is an :class:`InputError`."""
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise InputError(f"--workers takes positive worker counts separated by commas (e.g. 1,2,3), not {text!r}")
    return counts


def run_with_progress(settings: Settings, counts: list[int], rate: float, seconds: float, events: int,
                      guarantee: str, kill: bool, users: int | None, items: int,
                      partitions: int | None, broker_restart: bool = False, kind: str = "uniform",
                      worker_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """:func:`run` with a rich progress bar on stderr (four steps per worker count)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("bench e2e", total=4 * len(counts))
        started = [False]

        def step(message: str) -> None:
            if started[0]:
                bar.advance(task)
            started[0] = True
            bar.update(task, description=f"bench e2e: {message}")

        result = run(settings, counts, rate, seconds, events, guarantee, kill, users, items,
                     partitions=partitions, step=step, broker_restart=broker_restart, kind=kind,
                     worker_args=worker_args)
        bar.update(task, completed=4 * len(counts), description="bench e2e: done")
    return result
