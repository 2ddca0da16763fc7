"""Watching worker processes during a benchmark: their ``/metrics``, their CPU time and memory from ``/proc``,
and the consumer group's lag from its committed offsets.

:class:`WorkerProcess` is one worker slot (a ``streamrec worker`` child process with a fixed id and metrics
port) that can be paused, killed and restarted; CPU seconds add up across its incarnations. :class:`Monitor`
samples every slot and the group every ``interval_s`` on a thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from streamrec.e2e import free_port, start_worker, stop_process
from streamrec.stream import clients
from streamrec.stream.settings import Settings
from streamrec.stream.topics import admin_client

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_usage(pid: int) -> tuple[float, float, float] | None:
    """(CPU seconds, RSS MB, peak RSS MB) of a live process from ``/proc``; ``None`` once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()          # after "pid (comm)": state is fields[0]
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    mem = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Vm")}
    return cpu, int(mem.get("VmRSS", 0)) / 1024, int(mem.get("VmHWM", 0)) / 1024


def scrape(port: int, timeout_s: float = 1.0) -> dict[str, float]:
    """A worker's ``/metrics`` as ``{series: value}`` (series with labels, e.g. ``x_lag{partition="0"}``)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[series] = float(value)
    return out


def owned_partitions(metrics: dict[str, float]) -> list[int]:
    prefix = 'streamrec_consumer_lag{partition="'
    return sorted(int(k[len(prefix):].split('"')[0]) for k in metrics if k.startswith(prefix))


@dataclass
class WorkerProcess:
    """One worker slot: ``streamrec worker --worker-id ID --metrics-port PORT`` plus ``args``."""

    settings: Settings
    worker_id: str
    args: tuple[str, ...]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: Any = None
    incarnations: int = 0
    cpu_done_s: float = 0.0        # CPU seconds of earlier incarnations
    cpu_s: float = 0.0             # of the current one, as last sampled
    peak_rss_mb: float = 0.0
    last_metrics: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        self.incarnations += 1
        log = self.log_dir / f"{self.worker_id}.{self.incarnations}.log"
        self.proc = start_worker(self.settings, *self.args, "--worker-id", self.worker_id, "--metrics-port",
                                 str(self.port), log_path=log)
        self.cpu_s = 0.0

    def sample(self) -> dict[str, float]:
        with self.lock:
            usage = proc_usage(self.proc.pid) if self.proc is not None else None
            if usage is not None:
                self.cpu_s = usage[0]
                self.peak_rss_mb = max(self.peak_rss_mb, usage[2])
        metrics = scrape(self.port)
        if metrics:
            self.last_metrics = metrics
        return metrics

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (as a crash would); its CPU time so far is kept."""
        self._end(kill=True)

    def stop(self) -> int:
        return self._end(kill=False)

    def _end(self, kill: bool) -> int:
        self.sample()
        with self.lock:
            code = stop_process(self.proc, kill=kill)
            self.cpu_done_s += self.cpu_s
            self.cpu_s = 0.0
        return code

    def summary(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "cpu_s": round(self.cpu_done_s + self.cpu_s, 2),
                "peak_rss_mb": round(self.peak_rss_mb, 1), "incarnations": self.incarnations,
                "partitions_last_seen": owned_partitions(self.last_metrics),
                "events_processed": int(self.last_metrics.get("streamrec_events_total", 0))}


class GroupLag:
    """Records behind the group's committed offsets on the events topic (what a restarted member redoes)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = admin_client(settings)
        self.consumer = clients.consumer(settings, group=None)
        parts = self.consumer.partitions_for_topic(settings.events_topic) or set()
        self.tps = [TopicPartition(settings.events_topic, p) for p in sorted(parts)]
        self.committed: dict[TopicPartition, int] = {}

    def __call__(self) -> dict[int, int] | None:
        try:
            end = self.consumer.end_offsets(self.tps)
            committed = self.admin.list_group_offsets({self.settings.group: self.tps})[self.settings.group]
        except Exception:  # noqa: BLE001 - best effort while the group rebalances
            return None
        out = {}
        for tp in self.tps:
            c = committed.get(tp)
            if c is not None and c.offset >= 0:
                self.committed[tp] = max(self.committed.get(tp, 0), c.offset)
            # a partition missing from one answer (seen while the group rebalances) keeps its last offset
            out[tp.partition] = max(0, end[tp] - self.committed.get(tp, 0))
        return out

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


class Monitor(threading.Thread):
    """Samples worker metrics, ``/proc`` and the group lag every ``interval_s``; times relative to ``t0``."""

    def __init__(self, settings: Settings, workers: list[WorkerProcess], t0: float, interval_s: float = 0.5) -> None:
        super().__init__(name="bench-monitor", daemon=True)
        self.workers, self.t0, self.interval_s = workers, t0, interval_s
        self.lag = GroupLag(settings)
        self.samples: list[dict[str, Any]] = []
        self.last_lag: dict[int, int] | None = None
        self.last_lag_at = 0.0
        self.stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                started = time.monotonic()
                self.sample()
                self.stop_event.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            self.lag.close()

    def sample(self) -> None:
        per_worker = {}
        for w in self.workers:
            m = w.sample()
            per_worker[w.worker_id] = {
                "lag": int(sum(v for k, v in m.items() if k.startswith("streamrec_consumer_lag{"))) if m else None,
                "events": int(m.get("streamrec_events_total", 0)) if m else None,
                "cpu_s": round(w.cpu_done_s + w.cpu_s, 2), "rss_mb": round(w.peak_rss_mb, 1)}
        asked = time.time()
        lag = self.lag()
        if lag is not None:
            self.last_lag, self.last_lag_at = lag, asked
        self.samples.append({"t": round(time.time() - self.t0, 2),
                             "committed_lag": None if lag is None else sum(lag.values()),
                             "workers": per_worker})

    def committed_lag(self, since: float = 0.0) -> int | None:
        """The group's total lag as last sampled, if it was asked for at or after ``since`` (epoch s)."""
        if self.last_lag is None or self.last_lag_at < since:
            return None
        return sum(self.last_lag.values())

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)
