"""The ASGI application of ``streamrec serve`` (FastAPI; the OpenAPI document at ``/openapi.json``).

Routes: ``GET /v1/users/{user}/recommendations`` (the latest list with its lineage; a trending or
cold-start list, marked as such, for a user without one; ``after_event`` waits, bounded, for the list that
followed that event), ``GET /v1/users/{user}/events`` (the user's recent events), ``GET /v1/trending``,
``POST /v1/events`` (validated like the stream, produced to ``events`` keyed by user, answered after the
broker's acknowledgement), ``GET /v1/stats`` (the dashboard's figures), ``/healthz``, ``/readyz``,
``/metrics`` and the dashboard at ``/dashboard/`` (static files of this package; nothing from a CDN).

Answers are JSON built by hand (``json.dumps`` into a :class:`Response`); the pydantic models below only
describe them in the OpenAPI document, so the read path pays for no validation of its own output.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, Field

from streamrec.consumers.serve.follow import Follower
from streamrec.consumers.serve.ingest import MAX_BATCH, MAX_BODY_BYTES, parse_events
from streamrec.consumers.serve.view import MAX_ITEMS, StoredList
from streamrec.models.events import Event

STATIC = Path(__file__).parent / "static"
#: The longest a read-your-writes request waits (``wait_ms``), and how often it looks.
MAX_WAIT_MS = 10_000
WAIT_STEP_S = 0.005
_JSON = "application/json"

Produce = Callable[[list[Event]], Awaitable[list[tuple[int, int, int]]]]
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


# --- the OpenAPI document's description of the answers -------------------------------------------
class Item(BaseModel):
    item_id: str
    score: float = Field(description="The engine's score; for trending lists, the item's share of recent lists.")
    source: str = Field(description="Candidate source that contributed most: ann, covisit, session_knn, "
                                    "recent, content, trending, cold_start, mf, explore.")
    reason: str = Field("", description="Why, machine-readable: covisit:<seed item>, content:<seed item>, "
                                        "session:<n neighbours>, or the source's name; empty for lists "
                                        "written before reasons existed.")


class Lineage(BaseModel):
    trigger_event_id: str
    trigger_timestamp: int
    trigger_partition: int
    trigger_offset: int
    emitted_at: int
    model_version: str | None
    index_version: str | None
    partition: int = Field(description="Partition of the recommendations topic the list was read from.")
    offset: int


class Recommendations(BaseModel):
    user_id: str
    kind: str = Field(description="personal: the user's latest list; trending: the items most often in recent "
                                  "lists (no list for this user); cold_start: the newest items seen (no lists "
                                  "at all yet).")
    items: list[Item]
    lineage: Lineage | None
    after_event: dict[str, Any] | None = None


class EventIn(BaseModel):
    event_id: str | None = Field(None, description="Default: a new random id. Send your own so a retried "
                                                   "request is deduplicated.")
    user_id: str
    item_id: str
    event_type: str = Field(description="VIEW, CLICK, ADD_TO_CART, PURCHASE, RATING or OTHER (any case).")
    timestamp: int | None = Field(None, description="Event time, ms since the epoch; default: now.")
    session_id: str | None = None
    value: float | None = None
    context: dict[str, str] | None = None


class Accepted(BaseModel):
    accepted: int
    events: list[dict[str, Any]]


class Refused(BaseModel):
    errors: list[str]


class Metrics:
    """The service's Prometheus registry (its own, never the process-global one)."""

    def __init__(self, follower: Follower) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("streamrec_serve_requests", "HTTP requests answered.", ["route", "status"],
                                registry=r)
        self.latency = Histogram("streamrec_serve_request_duration_milliseconds", "Time to answer a request (ms).",
                                 ["route"], registry=r,
                                 buckets=(0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000, 10000))
        self.ingested = Counter("streamrec_serve_events_ingested", "Events produced and acknowledged.", registry=r)
        self.refused = Counter("streamrec_serve_requests_refused", "Event requests refused with a 422 (nothing "
                               "produced).", registry=r)
        r.register(_ViewCollector(follower))


class _ViewCollector:
    def __init__(self, follower: Follower) -> None:
        self.f = follower

    def collect(self) -> list[Metric]:
        f, view, fig = self.f, self.f.view, self.f.figures
        users = GaugeMetricFamily("streamrec_serve_users", "Users whose latest list is held in memory.")
        users.add_metric([], len(view))
        ready = GaugeMetricFamily("streamrec_serve_ready", "1 once the recommendations topic was read to its end.")
        ready.add_metric([], 1.0 if f.ready.is_set() else 0.0)
        lists = CounterMetricFamily("streamrec_serve_lists_read", "Recommendation records read from the topic.")
        lists.add_metric([], fig.lists)
        skipped = CounterMetricFamily("streamrec_serve_lists_skipped", "Recommendation records that failed "
                                      "their checks (never served).")
        skipped.add_metric([], fig.skipped_lists)
        evicted = CounterMetricFamily("streamrec_serve_evictions", "Lists dropped from memory.", labels=["reason"])
        evicted.add_metric(["lru"], view.evicted_lru)
        evicted.add_metric(["ttl"], view.evicted_ttl)
        evicted.add_metric(["tombstone"], view.removed)
        events = CounterMetricFamily("streamrec_serve_events_read", "Records read from the events topic.")
        events.add_metric([], fig.events)
        out: list[Metric] = [users, ready, lists, skipped, evicted, events]
        if fig.lag is not None:
            lag = GaugeMetricFamily("streamrec_serve_group_lag", "The worker group's lag per events partition.",
                                    labels=["partition"])
            for p, v in sorted(fig.lag.items()):
                lag.add_metric([str(p)], v)
            out.append(lag)
        return out


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":"), allow_nan=False), status_code=status, media_type=_JSON)


def personal(sl: StoredList, n: int) -> dict[str, Any]:
    return {"user_id": sl.user_id, "kind": "personal",
            "items": [{"item_id": i, "score": s, "source": src, "reason": why} for i, s, src, why in sl.items[:n]],
            "lineage": sl.lineage()}


def fallback(follower: Follower, user: str, n: int) -> dict[str, Any]:
    top = follower.view.trending(n)
    if top:
        total = max(1, sum(c for _, c in follower.view.trending(100)))
        return {"user_id": user, "kind": "trending", "lineage": None,
                "items": [{"item_id": i, "score": round(c / total, 6), "source": "trending", "reason": "trending"}
                          for i, c in top]}
    newest = follower.activity.newest_items(n)
    return {"user_id": user, "kind": "cold_start", "lineage": None,
            "items": [{"item_id": i, "score": 0.0, "source": "cold_start", "reason": "cold_start"}
                      for i in newest]}


def build_app(follower: Follower, produce: Produce, max_id_bytes: int = 256) -> Timed:
    """The application over a running (or test) :class:`Follower` and an async ``produce(events)`` that
    returns (partition, offset, timestamp) per event once the broker acknowledged them all."""
    app = FastAPI(title="streamrec serve", version="1", docs_url=None, redoc_url=None,
                  description="The latest recommendation list per user from the recommendations topic, event "
                              "ingest onto the events topic, and a live dashboard at /dashboard/.")
    metrics = Metrics(follower)
    app.state.metrics = metrics
    counts = {"ingested": 0, "refused": 0}

    @app.get("/v1/users/{user:path}/recommendations", responses={200: {"model": Recommendations}},
             summary="The user's latest list and its lineage")
    async def recommendations(user: str, n: int = Query(10, ge=1, le=MAX_ITEMS),
                              after_event: str | None = Query(None, description="Wait until the list that "
                                                              "followed this event id has arrived (bounded)."),
                              wait_ms: int = Query(2000, ge=0, le=MAX_WAIT_MS)) -> Response:
        if len(user.encode("utf-8", "surrogatepass")) > max_id_bytes:
            return _json({"errors": [f"user_id is over {max_id_bytes} bytes (STREAMREC_MAX_ID_BYTES)"]}, 422)
        waited: dict[str, Any] | None = None
        if after_event is not None:
            started = time.monotonic()
            deadline = started + wait_ms / 1000
            sl = follower.list_after(user, after_event)
            while sl is None and time.monotonic() < deadline:
                await asyncio.sleep(WAIT_STEP_S)
                sl = follower.list_after(user, after_event)
            waited = {"event_id": after_event, "arrived": sl is not None,
                      "waited_ms": round((time.monotonic() - started) * 1000, 1)}
        sl = follower.view.get(user)
        body = personal(sl, n) if sl is not None else fallback(follower, user, n)
        if waited is not None:
            body["after_event"] = waited
        return _json(body)

    @app.get("/v1/users/{user:path}/events", summary="The user's recent events (posted here or on the topic)")
    async def user_events(user: str) -> Response:
        return _json({"user_id": user, "events": follower.activity.recent(user)})

    @app.get("/v1/trending", responses={200: {"model": Recommendations}}, summary="The items most often in "
             "recent lists")
    async def trending(n: int = Query(10, ge=1, le=100)) -> Response:
        return _json(fallback(follower, "", n))

    @app.post("/v1/events", status_code=200, summary="Produce one event or a list of events",
              responses={200: {"model": Accepted}, 422: {"model": Refused}, 413: {"model": Refused},
                         503: {"model": Refused}},
              openapi_extra={"requestBody": {"required": True, "content": {_JSON: {"schema": {
                  "oneOf": [{"$ref": "#/components/schemas/EventIn"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"},
                             "maxItems": MAX_BATCH}]}}}}})
    async def post_events(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _json({"errors": [f"the body is over {MAX_BODY_BYTES} bytes"]}, 413)
        events, errors = parse_events(body, follower.limits)
        if errors:
            metrics.refused.inc()
            counts["refused"] += 1
            return _json({"errors": errors}, 422)
        try:
            landed = await produce(events)
        except Exception as exc:  # noqa: BLE001 - the broker did not acknowledge: the client must retry
            return _json({"errors": [f"not acknowledged by the broker: {type(exc).__name__}: {exc}"[:500]]}, 503)
        out = []
        for event, (partition, offset, ts) in zip(events, landed, strict=True):
            follower.posted(event, partition, offset, ts)
            out.append({"event_id": event.event_id, "partition": partition, "offset": offset})
        metrics.ingested.inc(len(events))
        counts["ingested"] += len(events)
        return _json({"accepted": len(events), "events": out})

    @app.get("/v1/stats", summary="The dashboard's figures")
    async def stats() -> Response:
        fig = follower.figures.snapshot(int(time.time() * 1000))
        view = follower.view
        fig.update(users=len(view), evicted_lru=view.evicted_lru, evicted_ttl=view.evicted_ttl,
                   ready=follower.ready.is_set(), ingested=counts["ingested"], refused=counts["refused"])
        return _json(fig)

    @app.get("/healthz", summary="Liveness: the topic follower runs")
    async def healthz() -> Response:
        problem = follower.health_problem()
        return Response(f"unhealthy: {problem}\n" if problem else "ok\n", status_code=503 if problem else 200,
                        media_type="text/plain")

    @app.get("/readyz", summary="Readiness: the recommendations topic was read to its end")
    async def readyz() -> Response:
        ready = follower.ready.is_set()
        return Response("ready\n" if ready else "not ready: restoring the recommendations topic\n",
                        status_code=200 if ready else 503, media_type="text/plain")

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus(request: Request) -> Response:
        encoder, ctype = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(metrics.registry), media_type=ctype)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/dashboard/")

    @app.get("/dashboard/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/dashboard/{name}", include_in_schema=False)
    async def dashboard_file(name: str) -> Response:
        files = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in files:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return FileResponse(STATIC / name, media_type=files[name])

    return Timed(app, metrics)


class Timed:
    """Counts and times every request by route template (a plain ASGI wrapper: no per-request task)."""

    def __init__(self, app: FastAPI, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "other")
            self.metrics.latency.labels(name).observe((time.perf_counter() - started) * 1000)
            self.metrics.requests.labels(name, str(status[0])).inc()
