"""The worker's online state on Kafka: checkpoints of the online learners, restores, retrain requests.

Topic ``<group>.online``: compacted, one partition, every record keyed by the group. The reranker and the
drift detector are one global model per worker, learned from whichever users the worker holds, so any
worker's newest checkpoint is a good start for every worker of the group: a per-group key with
last-writer-wins keeps exactly one record after compaction (per-worker keys would pile up orphans when
worker ids change, e.g. the default ``<hostname>-<pid>``, and a new worker would not know which to take).
The cost: the river MF's *user* factors in a checkpoint are those of the writer's users (item factors are
shared), so with several workers a restarted worker relearns some users' factors (a few events each).

* **Write**: every ``online_checkpoint_s`` seconds, between two batches, and once more on close. The
  value is the ``online_state`` Avro envelope (``stream/schemas/online_state.avsc``): writer, time, river
  version and the parts of ``models.online.checkpoint``, each the plain-data state of one learner (JSON or
  ``.npz``, never pickle). Checkpoints are best effort and outside the exactly-once transaction: losing one
  costs the learning since the previous one, never correctness.
* **Restore**: when the worker starts, and when it takes over partitions before it has learned anything
  (a worker that has been learning keeps its own, newer model). Nothing read from the topic is unpickled
  or executed: each learner checks every field of its part, and a part that is not plain data (the pickled
  ``river`` part of checkpoints written by earlier versions, or anything malformed) is refused with a
  warning naming it and the reason; that learner starts fresh, the other parts are restored.
* **Retrain requests**: the engine's drift monitor reports a drop in online quality through a callback;
  the request is published on the model topic (``RETRAIN_REQUEST``) between batches, after the cool-down
  the monitor applies, so one shift makes one request.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from streamrec.models.online.checkpoint import FORMAT, Part
from streamrec.models.online.drift import DriftSignal
from streamrec.stream import clients
from streamrec.stream.errors import DecodeError, StreamrecError
from streamrec.stream.modelbus import send_control
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings
from streamrec.stream.topics import TopicSpec, ensure_topics

MAX_BYTES = 64 * 1024 * 1024


def river_version() -> str:
    """The installed river's version, read from its package metadata: importing river would pull in scipy
    (~60 MB of a worker's memory) in a worker whose default learners are all numpy."""
    try:
        return metadata.version("river")
    except metadata.PackageNotFoundError:
        return "none"


def online_topic(settings: Settings) -> str:
    return f"{settings.group}.online"


def ensure_online_topic(settings: Settings) -> None:
    ensure_topics(settings, [TopicSpec(online_topic(settings), 1, {"cleanup.policy": "compact",
                                                                  "max.message.bytes": str(MAX_BYTES)})])


def encode_checkpoint(settings: Settings, worker_id: str, parts: list[Part], events_applied: int = 0) -> bytes:
    """The ``online_state`` envelope of ``parts``."""
    return codec_for("online_state").encode({
        "group": settings.group, "worker_id": worker_id, "written_at": int(time.time() * 1000),
        "river_version": river_version(), "format": FORMAT, "events_applied": events_applied,
        "parts": [{"name": n, "encoding": e, "data": d} for n, e, d in parts]})


def decode_checkpoint(data: bytes) -> tuple[dict[str, Any], list[Part]]:
    """The envelope's fields (without the parts) and its parts."""
    rec = codec_for("online_state").decode(data)
    parts = [(p["name"], p["encoding"], p["data"]) for p in rec.pop("parts")]
    return rec, parts


def read_latest(settings: Settings, timeout_s: float = 30.0) -> bytes | None:
    """The newest checkpoint of the group on its topic (``None``: there is none)."""
    tp = TopicPartition(online_topic(settings), 0)
    consumer = clients.consumer(settings, group=None, max_partition_fetch_bytes=MAX_BYTES,
                                fetch_max_bytes=MAX_BYTES)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        latest: bytes | None = None
        key = settings.group.encode()
        deadline = time.monotonic() + timeout_s
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                for rec in recs:
                    if rec.key == key:
                        latest = rec.value   # a tombstone (None) clears it
        return latest
    finally:
        consumer.close()


class OnlineState:
    """Checkpoints, restores and retrain requests for one worker's engine (see the module docstring)."""

    def __init__(self, settings: Settings, engine: Any, log: Any, worker_id: str) -> None:
        self.settings, self.engine, self.worker_id = settings, engine, worker_id
        self.layer = engine.online
        self.log = log.bind(component="online")
        self.pending: list[DriftSignal] = []
        self.requests_sent = 0
        self.checkpoints = 0
        self.restored: dict[str, str] = {}
        self._producer: Any = None
        self._next_checkpoint = time.monotonic() + settings.online_checkpoint_s
        self.layer.set_on_drift(self._on_drift)
        ensure_online_topic(settings)
        self.restore()

    # --- drift -----------------------------------------------------------------------------------
    def _on_drift(self, signal: DriftSignal) -> None:
        self.log.warning("online quality drift detected; requesting a retrain", **signal.reason())
        self.pending.append(signal)

    def send_requests(self) -> None:
        while self.pending:
            signal = self.pending[0]
            send_control(self.settings, "RETRAIN_REQUEST", "", {**signal.reason(), "worker": self.worker_id,
                                                                 "group": self.settings.group})
            self.pending.pop(0)
            self.requests_sent += 1
            self.log.info("retrain requested", topic=self.settings.model_topic, at_event=signal.at_event)

    # --- checkpoints -----------------------------------------------------------------------------
    def restore(self) -> bool:
        """Install the group's newest checkpoint; False when there is none (or it cannot be read)."""
        data = read_latest(self.settings)
        if data is None:
            self.log.info("no online checkpoint to restore; online learners start fresh",
                          topic=online_topic(self.settings))
            return False
        try:
            meta, parts = decode_checkpoint(data)
        except DecodeError as exc:
            self.log.error("online checkpoint unreadable; online learners start fresh", error=str(exc))
            return False
        self.restored = self.layer.restore(parts)
        refused = {k[:64]: v for k, v in self.restored.items() if not v.startswith("restored")}
        if refused:
            self.log.warning("online checkpoint parts refused", parts=refused, written_by=meta["worker_id"][:128],
                             written_with_river=meta["river_version"][:32], running_river=river_version(),
                             format=meta["format"])
        self.log.info("online state restored", written_by=meta["worker_id"][:128], written_at=meta["written_at"],
                      parts=sorted(k for k, v in self.restored.items() if v.startswith("restored")))
        return True

    def on_assigned(self) -> None:
        """Partitions were taken over: restore, unless this worker has already learned something."""
        if not self.layer.learned_anything():
            self.restore()

    def checkpoint(self) -> int:
        """Write a checkpoint now; returns its size in bytes."""
        started = time.perf_counter()
        data = encode_checkpoint(self.settings, self.worker_id, self.layer.checkpoint(),
                                 int(self.engine.stats().get("events_applied", 0)))
        if self._producer is None:
            self._producer = clients.producer(self.settings, max_request_size=MAX_BYTES)
        self._producer.send(online_topic(self.settings), key=self.settings.group.encode(), value=data, partition=0)
        self._producer.flush()
        self.checkpoints += 1
        self.log.info("online state checkpointed", bytes=len(data),
                      ms=round((time.perf_counter() - started) * 1000, 1))
        return len(data)

    def between_batches(self) -> None:
        """Worker hook: send retrain requests, write a checkpoint when one is due. Both are best effort: a
        broker error is logged and retried later (requests at the next batch, checkpoints at the next
        interval), never raised into the worker's loop."""
        try:
            if self.pending:
                self.send_requests()
            interval = self.settings.online_checkpoint_s
            if interval > 0 and time.monotonic() >= self._next_checkpoint:
                self._next_checkpoint = time.monotonic() + interval
                self.checkpoint()
        except (KafkaError, StreamrecError) as exc:
            self.log.warning("online state not written; retrying later", error=str(exc),
                             pending_requests=len(self.pending))

    def close(self) -> None:
        try:
            if self.pending:
                self.send_requests()
            if self.settings.online_checkpoint_s > 0 and self.layer.learned_anything():
                self.checkpoint()
        finally:
            if self._producer is not None:
                self._producer.close()
                self._producer = None
