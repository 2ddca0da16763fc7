"""Client overrides that bring the worker back within a second or two of a broker returning.

kafka-python backs off reconnects exponentially up to ``reconnect_backoff_max_ms`` (30 s by default), so
after a broker restart of a few seconds a worker's clients waited up to ~20 s before their next attempt.
Capping the backoff at 500 ms costs at most two connection attempts a second per broker while it is down.
The worker's consumer, its delivery producer and its changelog reader take these (passed as overrides to
``stream/clients.py``).
"""

from __future__ import annotations

from typing import Any

RECONNECT: dict[str, Any] = {
    "reconnect_backoff_ms": 50,          # first retry of a refused connection
    "reconnect_backoff_max_ms": 500,     # exponential backoff capped here (kafka-python: 30 s)
    "retry_backoff_ms": 100,             # between retries of a failed request (metadata, coordinator)
    "request_timeout_ms": 15000,         # a request to a broker that went away fails after this
    "metadata_max_age_ms": 30000,        # metadata refreshed at least this often (kafka-python: 5 min)
}
