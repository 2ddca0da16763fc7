"""The worker's HTTP endpoints: ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics`` (Prometheus).

:class:`WorkerMetrics` owns a dedicated ``CollectorRegistry`` (never the process-global one, so two workers in one
test process do not collide) and small methods the worker calls after each batch. :meth:`WorkerMetrics.serve`
starts a ``ThreadingHTTPServer`` in a daemon thread; the worker loop never blocks on it.

- ``/healthz``: 200 while the loop turns (the worker calls :meth:`WorkerMetrics.beat` every iteration);
  503 once no beat arrived for ``stale_after_s`` seconds (a wedged loop: restart the container), or while
  a liveness check registered with :meth:`WorkerMetrics.add_liveness_check` reports a problem (a dead
  model sync thread, say).
- ``/readyz``: 200 only when the ``ready`` callable says so (partitions assigned and their state restored).
- ``/metrics``: the Prometheus text format (OpenMetrics when the scraper asks for it).

Latency histograms are in milliseconds (``*_milliseconds``), like every latency in streamrec: event timestamps
are Kafka milliseconds, so there is no finer resolution to keep. Their buckets are counted with numpy, one call
per batch, not one ``observe`` per recommendation.

>>> m = WorkerMetrics(ready=lambda: True)
>>> m.observe_batch(events=3, dead_letters=1, duplicates=0, batch_seconds=0.004, latencies_ms=np.array([2.0, 9.0]))
>>> b"streamrec_events_total 3.0" in m.render()
True
"""

from __future__ import annotations

import errno
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from streamrec.models.errors import ConfigError

# Bucket upper bounds in ms: fine where a streaming recommender lives (1-500 ms), coarse beyond it.
LATENCY_BUCKETS_MS: tuple[float, ...] = (1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2500,
                                         5000)


class BatchHistogram:
    """A Prometheus histogram fed a numpy array at a time (a custom collector on a registry)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float] = LATENCY_BUCKETS_MS) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)   # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, values: np.ndarray | Sequence[float]) -> None:
        """Count every value; negative ones (clock skew between producer and worker) count as 0."""
        arr = np.maximum(np.asarray(values, dtype=np.float64).ravel(), 0.0)
        arr = arr[np.isfinite(arr)]
        if not len(arr):
            return
        idx = np.searchsorted(self.bounds, arr, side="left")   # first bound >= value: Prometheus' "le"
        counts = np.bincount(idx, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(arr.sum())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        les = [_le(b) for b in self.bounds] + ["+Inf"]
        yield HistogramMetricFamily(self.name, self.documentation,
                                    buckets=[(le, float(c)) for le, c in zip(les, cumulative, strict=True)],
                                    sum_value=total)


def _le(bound: float) -> str:
    return str(int(bound)) + ".0" if float(bound).is_integer() else repr(float(bound))


class WorkerMetrics:
    """Liveness, readiness and the Prometheus metrics of one worker process.

    ``stale_after_s``: ``/healthz`` fails when the loop has not called :meth:`beat` for this long. Set it above
    the longest legitimate pause of the loop (a changelog restore runs inside an iteration).
    ``ready``: a callable, true once partitions are assigned and restored; ``/readyz`` is 503 until then.
    """

    def __init__(self, *, stale_after_s: float = 60.0, ready: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 namespace: str = "streamrec") -> None:
        self.stale_after_s = stale_after_s
        self.ready_check = ready
        self._clock, self._wall = clock, wall_clock
        self._last_beat = clock()
        self._model_updated_at: float | None = None
        self._evicted_seen = 0
        self._published: dict[str, int] = {}
        self._lag_partitions: set[str] = set()
        self._liveness: dict[str, Callable[[], str | None]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

        self.registry = r = CollectorRegistry(auto_describe=True)
        ns = namespace
        self.events = Counter("events", "Input records processed (including dead letters and duplicates).",
                              namespace=ns, registry=r)
        self.dead_letters = Counter("dead_letters", "Records sent to the dead-letter topic.", namespace=ns,
                                    registry=r)
        self.duplicates = Counter("duplicates", "Events skipped as duplicates.", namespace=ns, registry=r)
        self.recommendations = Counter("recommendations", "Recommendation lists emitted.", namespace=ns,
                                       registry=r)
        self.rebalances = Counter("rebalances", "Consumer-group rebalances this worker went through.",
                                  namespace=ns, registry=r)
        self.evictions = Counter("state_evictions", "Users evicted from memory (LRU cap or TTL).", namespace=ns,
                                 registry=r)
        self.users = Gauge("state_users", "Users held in memory by this worker.", namespace=ns, registry=r)
        self.lag = Gauge("consumer_lag", "Records behind the end of each owned events partition.",
                         ["partition"], namespace=ns, registry=r)
        self.model = Info("model", "The base model in service.", namespace=ns, registry=r)
        self.model_age = Gauge("model_age_seconds", "Seconds since the model in service was updated "
                               "(NaN before the first model).", namespace=ns, registry=r)
        self.model_age.set_function(self._model_age)
        self.beat_age = Gauge("loop_heartbeat_age_seconds", "Seconds since the worker loop last turned.",
                              namespace=ns, registry=r)
        self.beat_age.set_function(self.seconds_since_beat)
        self.batch_ms = BatchHistogram(f"{ns}_batch_duration_milliseconds",
                                       "Wall time of one micro-batch, decode to commit (ms).")
        self.latency_ms = BatchHistogram(f"{ns}_event_to_emit_latency_milliseconds",
                                         "Trigger event's Kafka timestamp to its recommendation being emitted (ms).")
        r.register(self.batch_ms)
        r.register(self.latency_ms)

    # --- what the worker calls ---------------------------------------------------------------------
    def beat(self) -> None:
        """The loop is alive: call once per iteration, with or without input."""
        self._last_beat = self._clock()

    def observe_batch(self, events: int, dead_letters: int, duplicates: int, batch_seconds: float,
                      latencies_ms: np.ndarray | Sequence[float]) -> None:
        """After a committed batch: counts, the batch's duration, and one latency per recommendation emitted."""
        self.events.inc(events)
        self.dead_letters.inc(dead_letters)
        self.duplicates.inc(duplicates)
        self.recommendations.inc(len(latencies_ms))
        self.batch_ms.observe([batch_seconds * 1000.0])
        self.latency_ms.observe(latencies_ms)

    def publish(self, snapshot: Mapping[str, Any]) -> None:
        """Counters and gauges from one ``WorkerStats.snapshot`` (the same dict as the ``stats`` log line):
        each counter follows the snapshot's cumulative total, lag and state gauges take its values."""
        for counter, key in ((self.events, "events"), (self.dead_letters, "dead_letters"),
                             (self.duplicates, "duplicates"), (self.recommendations, "emitted"),
                             (self.rebalances, "rebalances")):
            value, seen = int(snapshot.get(key, 0)), self._published.get(key, 0)
            delta = value - seen if value >= seen else value   # a lower total: a restart from zero
            if delta > 0:
                counter.inc(delta)
            self._published[key] = value
        if "lag" in snapshot:
            self.set_lag(snapshot["lag"])
        if "users" in snapshot:
            self.set_state(int(snapshot["users"]),
                           int(snapshot.get("evicted_lru", 0)) + int(snapshot.get("evicted_ttl", 0)))

    def observe_timings(self, batch_seconds: float, latencies_ms: np.ndarray | Sequence[float]) -> None:
        """The histograms of one batch (its duration, one latency per list); counts come from :meth:`publish`."""
        self.batch_ms.observe([batch_seconds * 1000.0])
        self.latency_ms.observe(latencies_ms)

    def set_lag(self, lag: Mapping[int, int]) -> None:
        """Lag of the partitions owned now; partitions no longer owned disappear from the output."""
        now = {str(p) for p in lag}
        for gone in self._lag_partitions - now:
            self.lag.remove(gone)
        for p, value in lag.items():
            self.lag.labels(str(p)).set(value)
        self._lag_partitions = now

    def set_state(self, users: int, evicted: int) -> None:
        """Users in memory, and the engine's cumulative eviction count (the counter follows it; a lower
        value, e.g. a rebuilt engine, counts as a restart from zero)."""
        self.users.set(users)
        delta = evicted - self._evicted_seen if evicted >= self._evicted_seen else evicted
        if delta > 0:
            self.evictions.inc(delta)
        self._evicted_seen = evicted

    def set_model(self, version: str, updated_at: float) -> None:
        """The model now in service and when it was updated (Unix seconds)."""
        self.model.info({"version": str(version)})
        self._model_updated_at = float(updated_at)

    def rebalanced(self, n: int = 1) -> None:
        self.rebalances.inc(n)

    def add_liveness_check(self, name: str, check: Callable[[], str | None]) -> None:
        """``/healthz`` also fails while ``check()`` returns a problem (a string; ``None`` means fine) or
        raises. Checks run on each probe, on the server's thread: keep them cheap and non-blocking."""
        self._liveness[name] = check

    # --- what the endpoints answer -------------------------------------------------------------------
    def seconds_since_beat(self) -> float:
        return max(0.0, self._clock() - self._last_beat)

    def liveness_problems(self) -> list[str]:
        """What the registered liveness checks report, as ``"<name>: <problem>"``."""
        problems = []
        for name, check in list(self._liveness.items()):
            try:
                problem = check()
            except Exception as exc:  # noqa: BLE001 - a failing check is a problem, never a crashed endpoint
                problem = f"check failed: {type(exc).__name__}: {exc}"
            if problem:
                problems.append(f"{name}: {problem}")
        return problems

    def is_alive(self) -> bool:
        return self.seconds_since_beat() <= self.stale_after_s and not self.liveness_problems()

    def is_ready(self) -> bool:
        if self.ready_check is None:
            return False
        try:
            return bool(self.ready_check())
        except Exception:  # noqa: BLE001 - a failing check means "not ready", never a crashed endpoint
            return False

    def render(self, accept: str = "") -> bytes:
        """The metrics in the format the ``Accept`` header asks for (the plain text format by default)."""
        return self.render_with_type(accept)[0]

    def render_with_type(self, accept: str = "") -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def _model_age(self) -> float:
        if self._model_updated_at is None:
            return math.nan
        return max(0.0, self._wall() - self._model_updated_at)

    # --- the server ----------------------------------------------------------------------------------
    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """Serve the three endpoints from a daemon thread. ``port=0`` binds a free port (tests); the worker
        only calls this when ``STREAMREC_METRICS_PORT`` is set. The bound port is ``server.server_address[1]``."""
        if self._server is not None:
            raise RuntimeError("the health server is already running")
        try:
            server = ThreadingHTTPServer((host, port), _handler_for(self))
        except OSError as exc:
            why = "is in use by another process" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc})"
            raise ConfigError(f"metrics endpoint {host}:{port} {why}; choose another STREAMREC_METRICS_PORT "
                              "(--metrics-port) or STREAMREC_METRICS_HOST") from exc
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="streamrec-health", daemon=True)   # short poll: prompt shutdown
        thread.start()
        self._server, self._thread = server, thread
        return server

    def shutdown(self) -> None:
        """Stop the server (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)


def _handler_for(metrics: WorkerMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "streamrec-health"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype = metrics.render_with_type(self.headers.get("Accept", ""))
                self._reply(HTTPStatus.OK, body, ctype)
            elif path == "/healthz":
                age = metrics.seconds_since_beat()
                problems = metrics.liveness_problems()
                if age <= metrics.stale_after_s and problems:
                    self._reply(HTTPStatus.SERVICE_UNAVAILABLE, ("unhealthy: " + "; ".join(problems) + "\n").encode())
                elif metrics.is_alive():
                    self._reply(HTTPStatus.OK, f"ok: loop turned {age:.1f}s ago\n".encode())
                else:
                    self._reply(HTTPStatus.SERVICE_UNAVAILABLE,
                                f"stale: no loop iteration for {age:.1f}s (limit {metrics.stale_after_s}s)\n"
                                .encode())
            elif path == "/readyz":
                if metrics.is_ready():
                    self._reply(HTTPStatus.OK, b"ready\n")
                else:
                    self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"not ready: no partitions assigned and restored\n")
            else:
                self._reply(HTTPStatus.NOT_FOUND, b"not found: try /healthz, /readyz or /metrics\n")

        def _reply(self, status: HTTPStatus, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass   # probes every few seconds would drown the worker's own log

    return Handler
