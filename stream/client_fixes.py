"""A fix for kafka-python 3.0's network transport, applied once when streamrec's client factories load.

kafka-python 3.0 (``kafka.net.transport``) reads a socket until it would block; when the same read also sees
the peer's close (end of file, or a TLS close_notify), it aborts the connection and drops the bytes it has
just read. A broker that answers and then closes, as every broker does after a failed SASL login, can have
its answer lost that way: the client then sees "socket disconnected" instead of "authentication failed",
retries until its bootstrap timeout and gives up with a bare "Unable to bootstrap". Whether the answer is
lost depends on timing alone (on a busy machine it can be every attempt).

:func:`deliver_data_before_close` makes the read hand such bytes to the connection first and close the
transport one loop step later, after the code waiting on that answer has run, so the broker's own error is
what the caller sees. Any kafka-python whose transport lacks the patched method is left as it is.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import errors

_PATCHED = "_streamrec_delivers_before_close"


async def _read_from_sock(self: Any) -> None:
    # kafka-python 3.0.12's KafkaTCPTransport._read_from_sock, except for the (data, error) case
    while self._read and not self._closed:
        await self._net.wait_read(self._sock)
        data, err = self._sock_recv()
        if data or not err:
            self.last_read = time.monotonic()
            if self._protocol and self._protocol._sensors:
                self._protocol._sensors.bytes_received.record(len(data))
            try:
                self._protocol.data_received(data)
            except errors.KafkaProtocolError as e:
                return self.abort(error=e)  # type: ignore[no-any-return]
        if err:
            # one loop step later: a request future resolved by ``data`` wakes its task first
            self._net.call_soon(lambda error=err: self.abort(error=error))
            return None
    return None


def deliver_data_before_close() -> bool:
    """Patch kafka-python's transport (idempotent); True when the patch is in place."""
    try:
        from kafka.net.transport import KafkaTCPTransport
    except ImportError:  # another kafka-python layout: nothing to fix here
        return False
    if getattr(KafkaTCPTransport, _PATCHED, False):
        return True
    needed = ("_read_from_sock", "_sock_recv", "abort")
    if not all(callable(getattr(KafkaTCPTransport, name, None)) for name in needed):
        return False
    KafkaTCPTransport._read_from_sock = _read_from_sock  # type: ignore[method-assign]
    setattr(KafkaTCPTransport, _PATCHED, True)
    return True
