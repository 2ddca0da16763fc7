"""End-to-end helpers shared by the demo, the benchmarks and the process tests: worker processes, a
subscriber that timestamps every list on arrival, and settings for a throwaway broker."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from streamrec.consumers.reconnect import RECONNECT
from streamrec.stream import clients
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    return free_ports(1)[0]


def broker_ports() -> dict[str, int]:
    """Distinct free ports for an embedded broker, as ``Settings`` fields (``broker_port``, ``controller_port``)."""
    broker, controller = free_ports(2)
    return {"broker_port": broker, "controller_port": controller}


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on the loopback interface (all held open while choosing, so two calls
    in a row can never hand out the same port, e.g. a broker's and its controller's)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.02) -> bool:
    """Poll ``predicate`` every ``every_s`` until it holds or ``timeout_s`` passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return bool(predicate())


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if value != getattr(defaults, f.name) or f.name == "home":
            env[f"STREAMREC_{f.name.upper()}"] = str(value)
    env.setdefault("STREAMREC_LOG_FORMAT", "json")
    return env


def start_worker(settings: Settings, *args: str, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """``streamrec worker ARGS`` as a child process with ``settings``; its log goes to ``log_path``."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen([sys.executable, "-m", "streamrec.cli", "worker", *args], env=settings_env(settings),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30.0, kill: bool = False) -> int:
    """SIGTERM (or SIGKILL with ``kill``) and wait; SIGKILL if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


@dataclass(frozen=True)
class Arrival:
    user_id: str
    trigger_event_id: str
    arrival_ms: float
    record_ts_ms: int
    value: dict[str, Any]


def start_subscriber(sub: Any, timeout_s: float = 15.0) -> None:
    """Start ``sub`` (a :class:`Subscriber`) and wait until it reads; stop it and raise a ``RuntimeError``
    when it is not reading after ``timeout_s`` (a caller waiting for lists would wait for ever)."""
    sub.start()
    if not sub.ready.wait(timeout_s) or not sub.is_alive():
        sub.stop()
        raise RuntimeError(f"the subscriber of the recommendations topic did not start in {timeout_s:g} s")


class Subscriber(threading.Thread):
    """Reads the recommendations topic (read_committed) from its current end and keeps every list."""

    def __init__(self, settings: Settings, from_beginning: bool = False, keep_values: bool = True) -> None:
        """``keep_values=False`` keeps only who, which trigger and when (no decoded list): benchmarks over
        millions of lists need that to stay small."""
        super().__init__(name="subscriber", daemon=True)
        self.settings, self.from_beginning, self.keep_values = settings, from_beginning, keep_values
        self.arrivals: list[Arrival] = []
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        codec = codec_for("recommendation")
        consumer = clients.consumer(self.settings, group=None, max_poll_records=5000,
                                    **RECONNECT)   # back within a second of a broker restart, like the workers
        try:
            topic = self.settings.recommendations_topic
            parts: set[int] = set()
            deadline = time.monotonic() + 15.0       # metadata can lag a topic just created: wait, bounded
            while not parts and not self.stop_event.is_set():
                parts = consumer.partitions_for_topic(topic) or set()
                if not parts:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"topic {topic!r} has no partitions after 15 s")
                    time.sleep(0.1)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            (consumer.seek_to_beginning if self.from_beginning else consumer.seek_to_end)(*tps)
            for tp in tps:
                consumer.position(tp)
            self.ready.set()
            while not self.stop_event.is_set():
                for recs in consumer.poll(timeout_ms=20).values():
                    now = time.time() * 1000
                    got = []
                    for rec in recs:
                        value = codec.decode(rec.value)
                        got.append(Arrival(value["user_id"], value["trigger_event_id"], now, rec.timestamp,
                                           value if self.keep_values else {}))
                    with self._lock:
                        self.arrivals.extend(got)
        finally:
            self.ready.set()
            consumer.close()

    def snapshot(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)

    def wait_for(self, predicate: Any, timeout_s: float) -> bool:
        """Wait until ``predicate(arrivals)`` holds, polling every 20 ms, at most ``timeout_s``."""
        return wait_until(lambda: predicate(self.snapshot()), timeout_s)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)
