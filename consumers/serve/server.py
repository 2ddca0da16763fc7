"""Runs the service: the topic follower, the events producer and the ASGI application under uvicorn.

:func:`run` is ``streamrec serve``: it checks the topics, binds the address (a port in use is a one-line
error), starts the follower and serves until SIGINT/SIGTERM (uvicorn's own handlers: requests in flight
finish). :class:`Background` serves the same application from a thread (tests and ``streamrec bench serve``).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
import uvicorn

from streamrec.consumers.reconnect import RECONNECT
from streamrec.consumers.serve.app import Timed, build_app
from streamrec.consumers.serve.follow import Follower
from streamrec.models.errors import ConfigError
from streamrec.models.events import Event
from streamrec.stream import clients
from streamrec.stream.errors import BrokerError
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

log = structlog.get_logger("streamrec.serve")

#: How long a POST waits for the broker's acknowledgement before answering 503.
DELIVERY_TIMEOUT_MS = 10_000


class Service:
    """The follower, the producer and the application of one ``streamrec serve`` process."""

    def __init__(self, settings: Settings, producer: Any = None) -> None:
        self.settings = settings
        _check_topics(settings)
        self.follower = Follower(settings)
        self.producer = producer or clients.producer(settings, **{**RECONNECT, "linger_ms": 1, "max_block_ms": 5000,
                                                                  "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
                                                                  "request_timeout_ms": DELIVERY_TIMEOUT_MS - 1000})
        self.producer.partitions_for(settings.events_topic)     # metadata now, so a send never waits for it
        self._codec = codec_for("event")
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="streamrec-serve-send")
        self.app: Timed = build_app(self.follower, self.produce, settings.max_id_bytes)

    def start(self) -> None:
        self.follower.start()

    async def produce(self, events: list[Event]) -> list[tuple[int, int, int]]:
        """Send ``events`` to the events topic keyed by user; (partition, offset, timestamp) of each once
        the broker acknowledged all of them (acks=all, idempotent producer). Raises if any failed."""
        loop = asyncio.get_running_loop()
        futures = await loop.run_in_executor(self._sender, self._send, events)
        done: list[asyncio.Future[tuple[int, int, int]]] = []
        for f in futures:
            waiter: asyncio.Future[tuple[int, int, int]] = loop.create_future()

            def ok(meta: Any, w: asyncio.Future[tuple[int, int, int]] = waiter) -> None:
                loop.call_soon_threadsafe(_resolve, w, (meta.partition, meta.offset, meta.timestamp), None)

            def failed(exc: BaseException, w: asyncio.Future[tuple[int, int, int]] = waiter) -> None:
                loop.call_soon_threadsafe(_resolve, w, None, exc)

            f.add_callback(ok)
            f.add_errback(failed)
            done.append(waiter)
        return list(await asyncio.wait_for(asyncio.gather(*done), DELIVERY_TIMEOUT_MS / 1000 + 5))

    def _send(self, events: list[Event]) -> list[Any]:
        topic, codec = self.settings.events_topic, self._codec
        return [self.producer.send(topic, key=e.user_id.encode(), value=codec.encode(e.to_record()))
                for e in events]

    def close(self) -> None:
        self.follower.stop()
        self._sender.shutdown(wait=True)
        try:
            self.producer.flush(timeout=5)
        finally:
            self.producer.close(timeout=5)


def _resolve(waiter: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if waiter.done():
        return
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(value)


def _check_topics(settings: Settings) -> None:
    consumer = clients.consumer(settings, group=None)
    try:
        missing = [t for t in (settings.recommendations_topic, settings.events_topic)
                   if not consumer.partitions_for_topic(t)]
    finally:
        consumer.close()
    if missing:
        raise BrokerError(f"topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found on "
                          f"{settings.bootstrap}; create {'them' if len(missing) > 1 else 'it'} with "
                          "`streamrec topics create`")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port); a port in use is a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "is in use by another process" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc})"
        raise ConfigError(f"{host}:{port} {why}; choose another STREAMREC_SERVE_PORT (--port) or "
                          "STREAMREC_SERVE_HOST (--host)") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def uvicorn_server(app: Any) -> uvicorn.Server:
    """uvicorn with uvloop and httptools, no access log (the metrics count every request)."""
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="off", access_log=False,
                            log_level="warning", timeout_graceful_shutdown=5, backlog=2048)
    return uvicorn.Server(config)


def run(settings: Settings, echo: Any = print) -> None:
    """``streamrec serve``: serve until a signal."""
    sock = bind(settings.serve_host, settings.serve_port)
    service = Service(settings)
    service.start()
    host, port = sock.getsockname()[:2]
    echo(f"streamrec serve on http://{host}:{port}/ (dashboard /dashboard/, API /v1/..., "
         f"OpenAPI /openapi.json); restoring {settings.recommendations_topic}")
    log.info("serving", host=host, port=port, recommendations=settings.recommendations_topic,
             events=settings.events_topic)
    try:
        uvicorn_server(service.app).run(sockets=[sock])
    finally:
        service.close()
        sock.close()


class Background:
    """A :class:`Service` (or any ASGI app) served by uvicorn on a thread; ``url`` once started."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.url = "http://{}:{}".format(*self.sock.getsockname()[:2])
        self.server = uvicorn_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="streamrec-serve-http", daemon=True)

    def __enter__(self) -> Background:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("the HTTP server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
