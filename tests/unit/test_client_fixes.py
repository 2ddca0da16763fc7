"""kafka-python's transport, fed by a real socket pair whose far end answers and closes before the client
reads: the answer reaches the connection, and code waiting on it runs, before the transport closes. Without
streamrec.stream.client_fixes the answer is dropped with the close (how a failed SASL login's "authentication
failed" was lost and turned into "Unable to bootstrap")."""

from __future__ import annotations

import socket
from typing import Any

from kafka.future import Future
from kafka.net.selector import NetworkSelector
from kafka.net.transport import KafkaTCPTransport

from streamrec.stream.client_fixes import deliver_data_before_close


class Recorder:
    """The protocol side of a transport: records what it is given, in order."""

    _sensors = None

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.answer: Future = Future()
        self.lost: Future = Future()

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))
        if not self.answer.is_done:
            self.answer.success(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append(("lost", type(exc).__name__))
        self.lost.success(exc)


def test_bytes_read_with_the_close_reach_the_connection_before_it_closes() -> None:
    assert deliver_data_before_close() and deliver_data_before_close()  # idempotent
    net = NetworkSelector()
    near, far = socket.socketpair()
    near.setblocking(False)
    far.sendall(b"the broker's answer")
    far.close()  # the answer and the end of the stream are both waiting before the first read
    proto = Recorder()
    transport = KafkaTCPTransport(net, near)
    transport.set_protocol(proto)

    async def waiter() -> None:
        proto.events.append(("waiter saw", await proto.answer))

    try:
        net.call_soon(waiter)
        transport.resume_reading()
        net.poll(timeout_ms=5000, future=proto.lost)
        assert proto.events == [("data", b"the broker's answer"), ("waiter saw", b"the broker's answer"),
                                ("lost", "KafkaConnectionError")]
        assert transport.is_closing()
    finally:
        near.close()
        net.close()
