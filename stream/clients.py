"""Client factories: every producer, consumer and admin client streamrec makes comes from here, configured
alike (bootstrap, client id, security: TLS and SASL from the settings, README "Secured clusters").

A failed SASL login is one clear :class:`BrokerError` ("authentication failed for user X on <bootstrap>"),
whether it happens when the client is made or at its first call (:func:`auth_failure`)."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import SaslAuthenticationFailedError

from streamrec.stream.client_fixes import deliver_data_before_close
from streamrec.stream.errors import BrokerError
from streamrec.stream.settings import Settings

deliver_data_before_close()  # a broker's last answer before it closes is not lost (client_fixes.py)


def _compression(settings: Settings) -> str | None:
    return None if settings.compression in ("", "none") else settings.compression


def security_config(settings: Settings) -> dict[str, Any]:
    """kafka-python's security options for ``settings``: nothing beyond the protocol for PLAINTEXT."""
    config: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.sasl:
        config.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                      sasl_plain_password=settings.sasl_secret())
    if settings.tls:
        config.update(ssl_cafile=settings.ssl_cafile or None, ssl_certfile=settings.ssl_certfile or None,
                      ssl_keyfile=settings.ssl_keyfile or None, ssl_password=settings.ssl_key_password or None)
    return config


class _SaslFailureWatch(logging.Handler):
    """kafka-python (3.0) logs a failed SASL login while bootstrapping and retries it until its bootstrap
    timeout (30 s), then raises a bare "Unable to bootstrap". This handler, on the ``kafka.net.manager``
    logger, marks the failure on the connection manager the way kafka-python marks the failures it sees
    itself (``_auth_failures``), so the bootstrap raises the authentication error at once; it also keeps the
    last failure, so that the error names the cause even if a later kafka-python bootstraps differently."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: tuple[float, SaslAuthenticationFailedError] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        failure = next((a for a in args if isinstance(a, SaslAuthenticationFailedError)), None)
        if failure is None:
            return
        self.last = (time.monotonic(), failure)
        frame = sys._getframe(1)
        while frame is not None:
            manager, node = frame.f_locals.get("self"), frame.f_locals.get("bootstrap_broker")
            if frame.f_code.co_name == "_do_bootstrap" and isinstance(getattr(manager, "_auth_failures", None),
                                                                       dict) and node is not None:
                manager._auth_failures[node.node_id] = failure  # type: ignore[union-attr]
                return
            frame = frame.f_back  # type: ignore[assignment]


_watch = _SaslFailureWatch()
logging.getLogger("kafka.net.manager").addHandler(_watch)  # needs its WARNINGs (stream/logs.py lets them in)


def auth_failure(settings: Settings, exc: BaseException, since: float | None = None) -> BrokerError | None:
    """The one-line error for a failed SASL login: one in ``exc``'s chain, or (``since`` given) one that
    kafka-python logged after that moment; else None."""
    seen: BaseException | None = exc
    failure: BaseException | None = None
    while seen is not None and failure is None:
        failure = seen if isinstance(seen, SaslAuthenticationFailedError) else None
        seen = seen.__cause__ or seen.__context__
    if failure is None and since is not None and _watch.last is not None and _watch.last[0] >= since:
        failure = _watch.last[1]
    if failure is None:
        return None
    # kafka-python's text repeats the class name: "[Error 58] SaslAuthenticationFailedError: Sasl...: why"
    detail = re.sub(r"^(\[Error \d+\] )?(SaslAuthenticationFailedError: ?)*", "", str(failure)).strip()
    detail = detail or type(failure).__name__
    return BrokerError(f"authentication failed for user {settings.sasl_username!r} on {settings.bootstrap} "
                       f"({settings.security_protocol}, {settings.sasl_mechanism}): {detail}")


def _made(settings: Settings, what: str, make: Any, *args: Any, **config: Any) -> Any:
    started = time.monotonic()
    try:
        return make(*args, **config)
    except Exception as exc:
        if (auth := auth_failure(settings, exc, since=started)) is not None:
            raise auth from exc
        hint = "Is the broker running (`streamrec broker status`)?"
        if settings.security_protocol != "PLAINTEXT":
            hint += (f" With {settings.security_protocol}, also check the listener's protocol, STREAMREC_SSL_CAFILE"
                     + (" and the SASL mechanism and credentials" if settings.sasl else "") + ".")
        raise BrokerError(f"cannot create {what} for {settings.bootstrap}: {exc}. {hint}") from exc


def _base(settings: Settings) -> dict[str, Any]:
    return {"bootstrap_servers": settings.bootstrap, "client_id": settings.client_id, **security_config(settings)}


#: kafka-python's own sensors (rates, averages per request, per batch and per fetch) are off in the producers
#: and consumers: nothing reads them (the worker keeps its own stats and Prometheus metrics), and they cost
#: a paced producer's sender thread a tenth to a fifth of its CPU (``replay`` at 3,000 events/s on the 2-core
#: VM: 30-32 % of a core with them, 25-28 % without; ``tools/client_sensors.py``)
CLIENT_SENSORS: dict[str, Any] = {"metrics_enabled": False}


def producer_defaults(settings: Settings) -> dict[str, Any]:
    """The batching and compression every producer starts from (``streamrec bench produce`` measures them
    against the alternatives on the worker's send pattern)."""
    return {
        "compression_type": _compression(settings),
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
    }


def producer(settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> KafkaProducer:
    """An idempotent producer (acks=all); transactional when ``transactional_id`` is given."""
    config: dict[str, Any] = {
        **_base(settings),
        **CLIENT_SENSORS,
        "enable_idempotence": True,
        "acks": "all",
        **producer_defaults(settings),
    }
    if transactional_id:
        config["transactional_id"] = transactional_id
    config.update(overrides)
    return _made(settings, "a producer", KafkaProducer, **config)  # type: ignore[no-any-return]


class Push:
    """Ship what a producer holds *now*, without waiting for the acknowledgements (``flush`` waits for them).

    :meth:`push` marks the buffered batches sendable (as ``flush`` does: a flush in progress, then the sender
    woken) and returns at once; :meth:`settle` ends that mark before the next burst of sends, so that the
    burst lingers again instead of leaving record by record. The acks are still awaited where a guarantee
    needs them (a flush before an offset commit). Without these kafka-python internals it falls back to a
    blocking ``flush``."""

    def __init__(self, producer: KafkaProducer) -> None:
        self.producer = producer
        accumulator, sender = getattr(producer, "_accumulator", None), getattr(producer, "_sender", None)
        self._counter = getattr(accumulator, "_flushes_in_progress", None)
        self._wakeup = getattr(sender, "wakeup", None)
        self.pending = False

    def push(self) -> None:
        if self._counter is None or self._wakeup is None:
            self.producer.flush()
            return
        if not self.pending:
            self._counter.increment()
            self.pending = True
        self._wakeup()

    def settle(self) -> None:
        if self.pending:
            self.pending = False
            self._counter.decrement()  # type: ignore[union-attr]


def consumer(settings: Settings, *topics: str, group: str | None = None, **overrides: Any) -> KafkaConsumer:
    """A consumer with manual commits; ``read_committed`` so transactional output is read safely."""
    config: dict[str, Any] = {
        **_base(settings),
        **CLIENT_SENSORS,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": settings.max_batch,
        "fetch_max_wait_ms": 50,
    }
    config.update(overrides)
    return _made(settings, "a consumer", KafkaConsumer, *topics, **config)  # type: ignore[no-any-return]


def admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    """An admin client (topics, cluster description)."""
    config: dict[str, Any] = {**_base(settings), "request_timeout_ms": 10000}
    config.update(overrides)
    return _made(settings, "an admin client", KafkaAdminClient, **config)  # type: ignore[no-any-return]
