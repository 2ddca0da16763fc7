"""``streamrec serve``: an HTTP read API over the recommendations topic, event ingest and a live dashboard.

``view`` is the in-memory materialised view (Kafka-free, bounded like the worker's state), ``follow`` keeps
it up to date from the topics on a thread, ``ingest`` validates and produces events, ``app`` is the ASGI
application (FastAPI) and ``server`` runs it with uvicorn.
"""

from __future__ import annotations

__all__ = ["app", "follow", "ingest", "server", "view"]
