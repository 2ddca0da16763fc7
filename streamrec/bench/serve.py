"""``streamrec bench serve``: read latency of ``streamrec serve`` at a fixed request rate, beside a yardstick.

A throwaway broker (or the configured one) gets ``users`` lists on a fresh recommendations topic; a
``streamrec serve`` process restores them; then an open-loop load generator on loopback sends
``GET /v1/users/{user}/recommendations?n=10`` at ``rate`` requests/s for ``seconds`` over ``connections``
keep-alive connections (90% known users, 10% unknown ones, who get the trending list). Latency is measured
from each request's *scheduled* time, so a stalled server is not hidden by a load generator that waits
for it. The yardstick is a bare FastAPI app on the same uvicorn configuration answering a constant JSON of
the same size, measured the same way in the same run: the difference is what the service itself costs.
Everything is bounded (at most 20,000 requests/s and 120 s) and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

import numpy as np

from streamrec.bench.common import broker_session, machine
from streamrec.e2e import free_port, settings_env, stop_process
from streamrec.models.errors import ConfigError
from streamrec.stream import clients
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

HOST = "127.0.0.1"
MAX_RATE, MAX_SECONDS = 20_000.0, 120.0


def _lists(settings: Settings, users: int, items: int = 20) -> None:
    codec = codec_for("recommendation")
    now = int(time.time() * 1000)
    producer = clients.producer(settings)
    rng = np.random.default_rng(0)
    try:
        for u in range(users):
            picks = rng.integers(0, 50_000, items)
            items_ = [{"item_id": f"i{int(p)}", "score": 1.0 - k / 100, "source": "ann"} for k, p in enumerate(picks)]
            rec: dict[str, Any] = {
                   "user_id": f"u{u}", "items": items_,
                   "trigger_event_id": f"e{u}", "trigger_timestamp": now - users + u, "trigger_partition": 0,
                   "trigger_offset": u, "emitted_at": now, "model_version": "bench", "index_version": None}
            producer.send(settings.recommendations_topic, key=f"u{u}".encode(), value=codec.encode(rec))
        producer.flush(timeout=60)
    finally:
        producer.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL built here
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s}s")


async def _load(port: int, paths: list[bytes], rate: float, seconds: float, connections: int) -> dict[str, Any]:
    total = int(rate * seconds)
    queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    latencies = np.full(total, np.nan)
    statuses: dict[int, int] = {}
    errors = [0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while True:
                i, scheduled = await queue.get()
                if i < 0:
                    return
                writer.write(b"GET " + paths[i % len(paths)] + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    await reader.readexactly(length)
                    status = int(head[9:12])
                except (asyncio.IncompleteReadError, ValueError, OSError):
                    errors[0] += 1
                    return
                latencies[i] = (time.perf_counter() - scheduled) * 1000
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(0.2)
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, due))
    for _ in tasks:
        queue.put_nowait((-1, 0.0))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    wall = time.perf_counter() - t0
    lat = latencies[~np.isnan(latencies)]
    warm = lat[int(len(lat) * 0.1):] if len(lat) > 100 else lat    # the first tenth warms caches and connections
    pct = (lambda q: round(float(np.percentile(warm, q)), 3)) if len(warm) else (lambda q: None)
    return {"requests": total, "answered": int(len(lat)), "errors": errors[0], "statuses": statuses,
            "achieved_rps": round(len(lat) / wall, 1),
            "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "p999": pct(99.9),
                           "max": round(float(warm.max()), 3) if len(warm) else None}}


def _measure(cmd: list[str], env: dict[str, str], port: int, ready_path: str, paths: list[bytes], rate: float,
             seconds: float, connections: int) -> dict[str, Any]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(f"http://{HOST}:{port}{ready_path}", proc)
        return asyncio.run(_load(port, paths, rate, seconds, connections))
    finally:
        stop_process(proc)


def run(settings: Settings, rate: float = 1000.0, seconds: float = 10.0, users: int = 10_000,
        connections: int = 8) -> dict[str, Any]:
    if not 0 < rate <= MAX_RATE or not 0 < seconds <= MAX_SECONDS or users < 1 or not 1 <= connections <= 256:
        raise ConfigError(f"bench serve needs 0 < --rate <= {MAX_RATE:g}, 0 < --seconds <= {MAX_SECONDS:g}, "
                          "--users >= 1 and 1 <= --connections <= 256")
    rng = np.random.default_rng(1)
    paths = [(f"/v1/users/u{int(u)}/recommendations?n=10" if rng.random() < 0.9
              else f"/v1/users/new{int(u)}/recommendations?n=10").encode()
             for u in rng.integers(0, users, 20_000)]
    load_before = os.getloadavg()[0]
    with broker_session(settings) as s:
        _lists(s, users)
        env = settings_env(s)
        env["STREAMREC_LOG_LEVEL"] = "warning"
        port_y, port_s = free_port(), free_port()
        yardstick = _measure([sys.executable, "-m", "streamrec.bench.serve", str(port_y)], env, port_y,
                             "/v1/users/u0/recommendations", paths, rate, seconds, connections)
        service = _measure([sys.executable, "-m", "streamrec.cli", "serve", "--port", str(port_s),
                            "--host", HOST], env, port_s, "/readyz", paths, rate, seconds, connections)
    p99 = service["latency_ms"]["p99"]
    return {"benchmark": "serve", "rate": rate, "seconds": seconds, "users": users, "connections": connections,
            "unknown_user_share": 0.1, "service": service, "yardstick": yardstick,
            "target": {"p99_ms": 5.0, "met": p99 is not None and p99 < 5.0 and service["errors"] == 0},
            "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "machine": machine()}


def yardstick_app() -> Any:
    """A bare FastAPI app answering every user with one constant list of the service's size."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    body = json.dumps({"user_id": "u0", "kind": "personal", "items": [
        {"item_id": f"i{k}", "score": 0.5, "source": "ann"} for k in range(10)], "lineage": {
        "trigger_event_id": "e0", "trigger_timestamp": 0, "trigger_partition": 0, "trigger_offset": 0,
        "emitted_at": 0, "model_version": "bench", "index_version": None, "partition": 0, "offset": 0}},
        separators=(",", ":")).encode()
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/v1/users/{user:path}/recommendations")
    async def constant(user: str, n: int = 10) -> Response:
        return Response(body, media_type="application/json")

    return app


if __name__ == "__main__":   # the yardstick server: python -m streamrec.bench.serve PORT
    from streamrec.consumers.serve.server import bind, uvicorn_server

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sock = bind(HOST, int(sys.argv[1]))
    uvicorn_server(yardstick_app()).run(sockets=[sock])
