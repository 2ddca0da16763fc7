"""Helpers for ``streamrec serve`` tests: a service on a thread, HTTP calls, lists produced by hand."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streamrec.consumers.serve.server import Background, Service
from streamrec.stream import clients
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings


@contextmanager
def running(settings: Settings) -> Iterator[tuple[Service, str]]:
    """A started :class:`Service` served on a free loopback port: (service, base URL)."""
    service = Service(settings)
    service.start()
    try:
        with Background(service.app) as server:
            yield service, server.url
    finally:
        service.close()


def call(url: str, body: bytes | str | None = None, method: str | None = None,
         timeout_s: float = 20.0) -> tuple[int, Any]:
    """(status, decoded JSON or text) of one request."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode()


def rec_list(user: str, items: list[str], trigger: str, offset: int, ts: int, model: str | None = "m1",
             source: str = "ann", score: float = 1.0) -> dict[str, Any]:
    return {"user_id": user, "items": [{"item_id": i, "score": score - k / 100, "source": source}
                                       for k, i in enumerate(items)],
            "trigger_event_id": trigger, "trigger_timestamp": ts, "trigger_partition": 0, "trigger_offset": offset,
            "emitted_at": ts + 5, "model_version": model, "index_version": None}


def produce_lists(settings: Settings, lists: list[dict[str, Any] | tuple[str, None]]) -> None:
    """Each list (or ``(user, None)``: a tombstone) to the recommendations topic, keyed by user; acknowledged."""
    codec = codec_for("recommendation")
    producer = clients.producer(settings)
    try:
        for rl in lists:
            if isinstance(rl, tuple):
                producer.send(settings.recommendations_topic, key=rl[0].encode(), value=None)
            else:
                producer.send(settings.recommendations_topic, key=rl["user_id"].encode(), value=codec.encode(rl))
        producer.flush(timeout=30)
    finally:
        producer.close()


def until(predicate: Any, timeout_s: float = 20.0, every_s: float = 0.05) -> Any:
    """The first truthy value of ``predicate()`` within ``timeout_s`` (else its last value)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every_s)
