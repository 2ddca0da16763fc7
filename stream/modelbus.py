"""Model artifacts and control messages on the ``model-updates`` topic (one partition, so order holds).

A published artifact is its payload files cut into chunks under 1 MB, then its manifest last: a reader that
has the manifest knows every chunk before it has been written. Control messages share the topic:
``ROLLBACK`` (serve an older version), ``RETRAIN_REQUEST`` (ask the trainer to train now) and the workers'
serving reports (kind ``OTHER``, file ``serving``: which version a worker serves; see :func:`serving_record`).
No recommendation logic here: bytes in, bytes out; ``models.base.artifact`` verifies and decodes.

Nothing on the topic is trusted. :func:`parse_record` decodes and validates every field of a record and
raises :class:`InvalidRecordError` (one line, the reason) for anything malformed; :class:`Assembler` holds a
bounded amount of state (pending uploads, bytes, manifests and refusals are all capped), so no sequence of
records can make it raise anything else or grow without bound. A version whose chunks, checksums, manifest
or signature do not add up is *refused* with its reason (``Assembler.refused``), never half-assembled.

With a signing key (``STREAMREC_MODEL_SIGNING_KEY``) :func:`publish` adds an HMAC-SHA256 ``signature`` to the
manifest JSON and :func:`send_control` to a rollback's payload; an assembler (a worker) with the key refuses
unsigned or wrongly signed manifests and rollbacks. Readers without a key ignore the field (older readers
too: ``Manifest.from_json`` keeps only the fields it knows).

>>> rec = parse_record(codec_for("model_chunk").encode({"version": "v1", "kind": "CHUNK", "file": "a.json",
...     "index": 1, "count": 1, "data": b"x", "sent_at": 0}))
Traceback (most recent call last):
...
streamrec.stream.errors.InvalidRecordError: CHUNK v1/a.json: index 1 is outside 0..0 (count 1)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from streamrec.models.base.artifact import MANIFEST, Manifest, decode_artifact, sha256
from streamrec.models.errors import ArtifactError, ConfigError
from streamrec.stream import clients
from streamrec.stream.errors import DecodeError, InvalidRecordError
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

#: 900 KiB keeps a chunk message (Avro framing and Kafka record overhead included) under the 1 MB that
#: brokers and clients accept by default, with 43% fewer messages than 512 KiB: a 55 MB artifact reached two
#: followers in 0.67 s instead of 0.78 s (medians of six runs on the 2-core reference machine).
CHUNK_BYTES = 900 * 1024

# --- limits on what a record may say (anything beyond is malformed, whoever wrote it) ----------------------
MAX_NAME = 128                         # characters of a version or payload file name
MAX_CHUNK_DATA = 8 * 1024 * 1024       # bytes of one chunk: the follower fetches at most 8 MiB a partition
MAX_CHUNKS = 1 << 16                   # chunks of one payload file (57 GB at 900 KiB)
MAX_FILES = 16                         # payload files of one artifact
MAX_MANIFEST_BYTES = 64 * 1024         # a real manifest is about 2 KB
MAX_CONTROL_BYTES = 64 * 1024          # payload of a control message or serving report
MAX_DIM = 65536
MAX_ITEMS = 1 << 31
CHUNK_OVERHEAD = 256                   # bytes charged per buffered chunk beyond its data (dict slot, object)
DEFAULT_MAX_BYTES = 1 << 30            # STREAMREC_MODEL_MAX_BYTES's default
SERVING_FILE = "serving"               # kind OTHER + this file: a worker's serving report

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
KINDS = ("MANIFEST", "CHUNK", "ROLLBACK", "RETRAIN_REQUEST", "OTHER")


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- signatures -----------------------------------------------------------------------------------------
def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(key: str, obj: Any) -> str:
    return hmac.new(key.encode(), _canonical(obj), hashlib.sha256).hexdigest()


def sign_manifest(manifest_json: str | bytes, key: str) -> bytes:
    """The manifest JSON with a ``signature`` field: HMAC-SHA256 (hex) of its canonical JSON without it."""
    raw = json.loads(manifest_json)
    raw.pop("signature", None)
    raw["signature"] = _mac(key, raw)
    return json.dumps(raw, indent=2, sort_keys=True).encode()


def _check_signature(raw: dict[str, Any], key: str, what: str) -> None:
    sig = raw.get("signature")
    if sig is None:
        raise ArtifactError(f"{what} is not signed and this reader requires signed models "
                            "(STREAMREC_MODEL_SIGNING_KEY is set); publish it with the key")
    unsigned = {k: v for k, v in raw.items() if k != "signature"}
    if not isinstance(sig, str) or not hmac.compare_digest(sig, _mac(key, unsigned)):
        raise ArtifactError(f"{what} has a signature that does not match this reader's "
                            "STREAMREC_MODEL_SIGNING_KEY; it was not published with the same key")


# --- records --------------------------------------------------------------------------------------------
def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or not _NAME.fullmatch(value):
        shown = value[:40] + "..." if isinstance(value, str) and len(value) > 40 else value
        raise InvalidRecordError(f"{what} {shown!r} is not a name (1-{MAX_NAME} of A-Z a-z 0-9 . _ : + -, "
                                 "starting with a letter or digit)")
    return value


def _json_object(data: bytes, limit: int, what: str) -> dict[str, Any]:
    if len(data) > limit:
        raise InvalidRecordError(f"{what}: payload of {len(data)} bytes is over the {limit} allowed")
    if not data:
        return {}
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidRecordError(f"{what}: payload is not JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise InvalidRecordError(f"{what}: payload is a JSON {type(obj).__name__}, expected an object")
    return obj


def parse_record(value: bytes | None) -> dict[str, Any]:
    """Decode a model-topic message and validate every field; raises :class:`DecodeError` (with the reason)
    for anything a reader must skip. Control messages get their JSON payload as ``rec["payload"]``."""
    if value is None:
        raise InvalidRecordError("empty message (no value)")
    return validate_record(codec_for("model_chunk").decode(value))


def validate_record(rec: Any) -> dict[str, Any]:
    """Check every field of a decoded record (see :func:`parse_record`); returns it, with ``payload`` for
    control messages, or raises :class:`InvalidRecordError`."""
    if not isinstance(rec, dict):
        raise InvalidRecordError(f"a record is a mapping of fields, got {type(rec).__name__}")
    rec = dict(rec)
    kind, version, file, index, count, data = (rec.get(k) for k in ("kind", "version", "file", "index",
                                                                     "count", "data"))
    if kind not in KINDS:
        raise InvalidRecordError(f"unknown kind {str(kind)[:40]!r}")
    if not isinstance(version, str) or not isinstance(file, str) or not isinstance(data, bytes) \
            or not _is_int(index) or not _is_int(count):
        raise InvalidRecordError(f"{kind}: a field has the wrong type")
    if not _is_int(rec.get("sent_at")):
        raise InvalidRecordError(f"{kind}: sent_at is not a timestamp")
    if kind == "CHUNK":
        _name(version, "CHUNK version")
        where = f"CHUNK {version}/{file[:40]}"
        _name(file, f"{where}: file")
        if file == MANIFEST:
            raise InvalidRecordError(f"{where}: {MANIFEST} travels as a MANIFEST record, not a chunk")
        if not 1 <= count <= MAX_CHUNKS:
            raise InvalidRecordError(f"{where}: count {count} is outside 1..{MAX_CHUNKS}")
        if not 0 <= index < count:
            raise InvalidRecordError(f"{where}: index {index} is outside 0..{count - 1} (count {count})")
        if len(data) > MAX_CHUNK_DATA:
            raise InvalidRecordError(f"{where}: chunk of {len(data)} bytes is over the {MAX_CHUNK_DATA} allowed")
    elif kind == "MANIFEST":
        _name(version, "MANIFEST version")
        if file != MANIFEST or index != 0 or count != 1:
            raise InvalidRecordError(f"MANIFEST {version}: expected file {MANIFEST}, index 0, count 1; got "
                                     f"{file[:40]!r}, {index}, {count}")
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidRecordError(f"MANIFEST {version}: {len(data)} bytes is over the {MAX_MANIFEST_BYTES} "
                                     "allowed")
    elif kind == "ROLLBACK":
        _name(version, "ROLLBACK version")
        rec["payload"] = _json_object(data, MAX_CONTROL_BYTES, f"ROLLBACK {version}")
    elif kind == "RETRAIN_REQUEST":
        rec["payload"] = _json_object(data, MAX_CONTROL_BYTES, "RETRAIN_REQUEST")
    elif file == SERVING_FILE:
        rec["payload"] = _serving_payload(_json_object(data, MAX_CONTROL_BYTES, "serving report"))
    return rec


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _serving_payload(obj: dict[str, Any]) -> dict[str, Any]:
    worker, serving, at = obj.get("worker"), obj.get("serving"), obj.get("at")
    if not isinstance(worker, str) or not worker or len(worker) > 256:
        raise InvalidRecordError("serving report: worker is not a string of 1-256 characters")
    if serving is not None:
        _name(serving, "serving report: version")
    if not isinstance(at, int) or isinstance(at, bool):
        raise InvalidRecordError("serving report: at is not a timestamp in ms")
    refused = obj.get("refused", {})
    if not isinstance(refused, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in refused.items()):
        raise InvalidRecordError("serving report: refused is not an object of version -> reason")
    state = obj.get("state", "running")
    if state not in ("running", "stopped"):
        raise InvalidRecordError(f"serving report: state {str(state)[:20]!r} is not running or stopped")
    group = obj.get("group", "")
    return {"worker": worker, "serving": serving, "at": at, "state": state,
            "group": group if isinstance(group, str) else "", "refused": dict(list(refused.items())[:16])}


def check_manifest(data: bytes, version: str, signing_key: str = "") -> Manifest:
    """The manifest in a MANIFEST record, with every field checked (and its signature, with a key);
    raises :class:`ArtifactError` naming the problem."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"manifest is not valid JSON: {type(exc).__name__}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ArtifactError(f"manifest is a JSON {type(raw).__name__}, expected an object")
    if signing_key:
        _check_signature(raw, signing_key, f"manifest of {version}")
    manifest = Manifest.from_json(data)
    problems = []
    if manifest.version != version:
        problems.append(f"says version {str(manifest.version)[:40]!r}, its record {version!r}")
    if not isinstance(manifest.created_at, str):
        problems.append("created_at is not a string")
    for name, top in (("dim", MAX_DIM), ("item_count", MAX_ITEMS)):
        v = getattr(manifest, name)
        if not isinstance(v, int) or isinstance(v, bool) or not (1 if name == "dim" else 0) <= v <= top:
            problems.append(f"{name} {str(v)[:20]} is not an integer in range")
    files = manifest.files
    if not isinstance(files, dict) or not files or len(files) > MAX_FILES:
        problems.append(f"files must map 1-{MAX_FILES} payload names to sha256 digests")
    else:
        for name, digest in files.items():
            if not isinstance(name, str) or name == MANIFEST or not _NAME.fullmatch(name) or len(name) > MAX_NAME:
                problems.append(f"file name {str(name)[:40]!r} is not a payload name")
            elif not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                problems.append(f"sha256 of {name} is not 64 hex digits")
    for name in ("metrics", "data_range", "gate", "libraries", "index"):
        if not isinstance(getattr(manifest, name), dict):
            problems.append(f"{name} is not an object")
    if problems:
        raise ArtifactError(f"manifest of {version} is invalid: " + "; ".join(problems[:4]))
    return manifest


def chunk_records(manifest: Manifest, files: dict[str, bytes], chunk_bytes: int = CHUNK_BYTES,
                  signing_key: str = "") -> Iterator[dict]:
    """The ModelChunk records of one artifact: every payload chunk, then the manifest (signed with a key)."""
    for name in sorted(files):
        data = files[name]
        count = max(1, -(-len(data) // chunk_bytes))
        for i in range(count):
            yield {"version": manifest.version, "kind": "CHUNK", "file": name, "index": i, "count": count,
                   "data": data[i * chunk_bytes:(i + 1) * chunk_bytes], "sent_at": _now_ms()}
    body = manifest.to_json().encode()
    yield {"version": manifest.version, "kind": "MANIFEST", "file": MANIFEST, "index": 0, "count": 1,
           "data": sign_manifest(body, signing_key) if signing_key else body, "sent_at": _now_ms()}


def publish(settings: Settings, manifest: Manifest, files: dict[str, bytes]) -> int:
    """Send an artifact to the model topic; returns the number of messages sent."""
    codec = codec_for("model_chunk")
    prod = clients.producer(settings, compression_type=None)
    n = 0
    try:
        for rec in chunk_records(manifest, files, signing_key=_signing_key(settings)):
            prod.send(settings.model_topic, key=manifest.version.encode(), value=codec.encode(rec), partition=0)
            n += 1
        prod.flush()
    finally:
        prod.close()
    return n


def _signing_key(settings: Settings) -> str:
    return settings.model_signing_key


def _max_bytes(settings: Settings) -> int:
    return settings.model_max_bytes


def control_record(kind: str, version: str = "", payload: dict[str, Any] | None = None,
                   signing_key: str = "") -> dict[str, Any]:
    """A control message; a ROLLBACK is signed with a key (the signature covers kind, version, payload)."""
    body = dict(payload or {})
    body.pop("signature", None)
    if signing_key and kind == "ROLLBACK":
        body["signature"] = _mac(signing_key, {"kind": kind, "version": version, "payload": body})
    return {"version": version, "kind": kind, "file": "", "index": 0, "count": 0,
            "data": json.dumps(body).encode(), "sent_at": _now_ms()}


def check_rollback(rec: dict[str, Any], signing_key: str) -> None:
    """With a key, a ROLLBACK must carry its signature; raises :class:`ArtifactError` otherwise."""
    if not signing_key:
        return
    payload = dict(rec.get("payload") or {})
    sig = payload.pop("signature", None)
    _check_signature({"kind": "ROLLBACK", "version": rec["version"], "payload": payload,
                      **({"signature": sig} if sig is not None else {})}, signing_key,
                     f"rollback to {rec['version']}")


def send_control(settings: Settings, kind: str, version: str = "", payload: dict[str, Any] | None = None) -> None:
    """A ROLLBACK (version = the one to serve) or RETRAIN_REQUEST (payload = the reason) message."""
    codec = codec_for("model_chunk")
    prod = clients.producer(settings)
    try:
        prod.send(settings.model_topic, key=(version or kind).encode(), partition=0,
                  value=codec.encode(control_record(kind, version, payload, _signing_key(settings))))
        prod.flush()
    finally:
        prod.close()


def serving_record(report: dict[str, Any]) -> dict[str, Any]:
    """A worker's serving report (``worker``, ``serving``, ``refused``, ``state``, ``at``) as a record."""
    return {"version": report.get("serving") or "", "kind": "OTHER", "file": SERVING_FILE, "index": 0,
            "count": 0, "data": json.dumps(report).encode(), "sent_at": _now_ms()}


class ServingReporter:
    """Sends a worker's serving reports to the model topic (keyed ``serving:<worker>``), one producer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: Any = None

    def __call__(self, report: dict[str, Any]) -> None:
        if self._producer is None:
            self._producer = clients.producer(self.settings)
        self._producer.send(self.settings.model_topic, key=f"serving:{report['worker']}".encode(), partition=0,
                            value=codec_for("model_chunk").encode(serving_record(report))).get(timeout=10)

    def close(self) -> None:
        prod, self._producer = self._producer, None
        if prod is not None:
            prod.close(timeout=5)


# --- assembly -------------------------------------------------------------------------------------------
@dataclass
class _Upload:
    chunks: dict[str, dict[int, bytes]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    nbytes: int = 0


def _bounded_put(d: OrderedDict[str, Any], key: str, value: Any, cap: int) -> None:
    d.pop(key, None)
    d[key] = value
    while len(d) > cap:
        d.popitem(last=False)


@dataclass
class Assembler:
    """Collects chunks per version; a version is complete when its manifest arrives and every chunk it
    lists is there and matches its sha256. Keeps the bytes of the ``keep`` most recent complete versions
    (for rollback).

    Bounded whatever arrives: at most ``max_pending`` uploads without a manifest (the oldest is abandoned),
    ``max_bytes`` buffered by them together (an upload that alone needs more is refused), and the newest
    ``max_remembered`` manifests and refusals. :meth:`add` raises only :class:`InvalidRecordError` (a
    record to skip); a version that does not add up lands in :attr:`refused` with the reason.
    """

    keep: int = 3
    max_pending: int = 4
    max_bytes: int = DEFAULT_MAX_BYTES
    max_remembered: int = 256
    signing_key: str = ""
    partial: OrderedDict[str, _Upload] = field(default_factory=OrderedDict)
    manifests: OrderedDict[str, Manifest] = field(default_factory=OrderedDict)   # the newest versions seen
    complete: OrderedDict[str, dict[str, bytes]] = field(default_factory=OrderedDict)
    refused: OrderedDict[str, str] = field(default_factory=OrderedDict)          # version -> reason
    _raw: dict[str, bytes] = field(default_factory=dict)                         # manifest bytes, complete ones
    _dropping: OrderedDict[str, str] = field(default_factory=OrderedDict)        # uploads refused midway

    def __post_init__(self) -> None:
        for name in ("keep", "max_pending", "max_bytes", "max_remembered"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"model assembler: {name} must be a positive integer, got {getattr(self, name)!r}")

    @classmethod
    def for_settings(cls, settings: Settings, keep: int = 3) -> Assembler:
        return cls(keep=keep, max_bytes=_max_bytes(settings), signing_key=_signing_key(settings))

    @property
    def pending_bytes(self) -> int:
        return sum(u.nbytes for u in self.partial.values())

    def add(self, rec: dict[str, Any]) -> str | None:
        """Add a CHUNK or MANIFEST record (a decoded record; every field is checked again); returns the
        version when this record settled it, complete (in :attr:`complete`) or refused (in :attr:`refused`).
        Raises :class:`InvalidRecordError`, and nothing else, for a record to skip."""
        rec = validate_record(rec)
        kind, version = rec["kind"], rec["version"]
        if kind == "CHUNK":
            self._chunk(rec)
            return None
        if kind != "MANIFEST":
            return None
        data = rec["data"]
        if version in self.complete and self._raw.get(version) == data:
            return None   # the same manifest again (a producer retry or a republish): nothing new
        if version in self.complete:
            raise InvalidRecordError(f"MANIFEST {version}: the version is already complete with another "
                                     "manifest; a version is published once")
        upload = self.partial.pop(version, None) or _Upload()
        if version in self._dropping:
            return self._refuse(version, self._dropping.pop(version))
        try:
            manifest = check_manifest(data, version, self.signing_key)
        except ArtifactError as exc:
            return self._refuse(version, str(exc))
        _bounded_put(self.manifests, version, manifest, self.max_remembered)
        files: dict[str, bytes] = {}
        for name, digest in manifest.files.items():
            chunks, count = upload.chunks.get(name), upload.counts.get(name)
            if chunks is None or count is None:
                return self._refuse(version, f"artifact {version}: payload {name} is missing (no chunk arrived)")
            if len(chunks) != count:
                return self._refuse(version, f"artifact {version}: payload {name} is incomplete "
                                             f"({len(chunks)} of {count} chunks arrived)")
            blob = b"".join(chunks[i] for i in range(count))
            if sha256(blob) != digest:
                return self._refuse(version, f"artifact {version}: checksum of {name} does not match its manifest")
            files[name] = blob
        self.refused.pop(version, None)
        self._raw[version] = data
        self.complete.pop(version, None)
        self.complete[version] = files
        while len(self.complete) > self.keep:
            old, _ = self.complete.popitem(last=False)
            self._raw.pop(old, None)
        return version

    def forget(self, version: str, reason: str) -> None:
        """Drop a complete version's bytes and refuse it (it failed a later check, e.g. decoding)."""
        self.complete.pop(version, None)
        self._raw.pop(version, None)
        _bounded_put(self.refused, version, reason, self.max_remembered)

    def _refuse(self, version: str, reason: str) -> str:
        self.partial.pop(version, None)
        _bounded_put(self.refused, version, reason, self.max_remembered)
        return version

    def _drop(self, version: str, reason: str) -> None:
        """Give up an upload midway: its later chunks are skipped and its manifest is refused with ``reason``."""
        self.partial.pop(version, None)
        _bounded_put(self._dropping, version, reason, self.max_remembered)
        _bounded_put(self.refused, version, reason, self.max_remembered)

    def _chunk(self, rec: dict[str, Any]) -> None:
        version, name, index, count, data = rec["version"], rec["file"], rec["index"], rec["count"], rec["data"]
        where = f"CHUNK {version}/{name} #{index}"
        if version in self._dropping:
            raise InvalidRecordError(f"{where}: skipped, {self._dropping[version]}")
        upload = self.partial.get(version)
        if upload is None:
            upload = self.partial[version] = _Upload()
            while len(self.partial) > self.max_pending:   # abandoned uploads must not grow without bound
                old = next(iter(self.partial))
                self._drop(old, f"artifact {old}: upload abandoned ({self.max_pending} newer uploads started "
                                "before its manifest arrived)")
        known = upload.counts.get(name)
        if known is None and len(upload.counts) >= MAX_FILES:
            raise InvalidRecordError(f"{where}: more than {MAX_FILES} payload files in one upload")
        if known is not None and known != count:
            raise InvalidRecordError(f"{where}: count {count} contradicts the count {known} of earlier chunks")
        chunks = upload.chunks.setdefault(name, {})
        if index in chunks:
            if chunks[index] == data:
                return   # a duplicate (producer retry): nothing new
            raise InvalidRecordError(f"{where}: a chunk with this index and other bytes arrived before; "
                                     "the first one is kept")
        cost = len(data) + CHUNK_OVERHEAD
        if upload.nbytes + cost > self.max_bytes:
            self._drop(version, f"artifact {version}: the upload needs more than {self.max_bytes} bytes, the "
                                "cap of what an assembly may buffer (STREAMREC_MODEL_MAX_BYTES)")
            raise InvalidRecordError(f"{where}: upload over the {self.max_bytes}-byte cap; version refused")
        while self.pending_bytes + cost > self.max_bytes:   # older uploads give way to the newest
            old = next(v for v in self.partial if v != version)
            self._drop(old, f"artifact {old}: upload abandoned (buffered bytes over the {self.max_bytes}-byte cap)")
        upload.counts[name] = count
        chunks[index] = data
        upload.nbytes += cost


# --- reading the topic ----------------------------------------------------------------------------------
def follow(settings: Settings, from_beginning: bool = True, poll_ms: int = 200, offset: int | None = None) -> Any:
    """A consumer on the model topic's single partition (no group: every worker reads everything), at
    ``offset`` when given, else at the beginning (or the end)."""
    consumer = clients.consumer(settings, group=None, max_poll_records=50, fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    tp = TopicPartition(settings.model_topic, 0)
    consumer.assign([tp])
    if offset:
        consumer.seek(tp, offset)
    else:
        (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(tp)
    return consumer


class KafkaModelSource:
    """The model topic as (offset, value) pairs from ``offset`` on: what :class:`ModelSync` reads."""

    def __init__(self, settings: Settings, offset: int = 0) -> None:
        self.tp = TopicPartition(settings.model_topic, 0)
        self.consumer = follow(settings, offset=offset)

    def end_offset(self) -> int:
        return int(self.consumer.end_offsets([self.tp])[self.tp])

    def position(self) -> int:
        return int(self.consumer.position(self.tp))

    def poll(self, timeout_ms: int = 200) -> list[tuple[int, bytes | None]]:
        return [(r.offset, r.value) for recs in self.consumer.poll(timeout_ms=timeout_ms).values() for r in recs]

    def close(self) -> None:
        self.consumer.close()


def read_raw(settings: Settings, timeout_s: float = 30.0) -> Iterator[tuple[int, bytes | None]]:
    """Every message on the model topic as (offset, value), from the beginning up to its end when called."""
    source = KafkaModelSource(settings)
    try:
        end = source.end_offset()
        deadline = time.monotonic() + timeout_s
        while source.position() < end and time.monotonic() < deadline:
            yield from source.poll(200)
    finally:
        source.close()


def read_to_end(settings: Settings, timeout_s: float = 30.0) -> Iterator[dict[str, Any]]:
    """Every valid record on the model topic (see :func:`parse_record`), from the beginning to its end."""
    for _, value in read_raw(settings, timeout_s):
        try:
            yield parse_record(value)
        except DecodeError:
            continue


def in_service(records: Iterable[dict[str, Any]], keep: int = 2,
               assembler: Assembler | None = None) -> tuple[Assembler, str | None, set[str]]:
    """Replay model-topic records: the assembler (holding the ``keep`` newest complete versions), the version
    in service (newest complete manifest, or the newest valid rollback's target) and every complete version.
    Malformed records are skipped, refused versions never become the one in service."""
    assembler = assembler or Assembler(keep=keep)
    serving, complete = None, set()
    for value in records:
        kind = value.get("kind")
        if kind in ("CHUNK", "MANIFEST"):
            try:
                done = assembler.add(value)
            except DecodeError:
                continue
            if done is not None and done in assembler.complete:
                serving = done
                complete.add(done)
        elif kind == "ROLLBACK" and value.get("version") in assembler.complete:
            try:
                check_rollback(value, assembler.signing_key)
            except ArtifactError:
                continue
            serving = value["version"]
    return assembler, serving, complete


# --- what `streamrec model list` shows ------------------------------------------------------------------
@dataclass
class ModelStatus:
    versions: list[dict[str, Any]]             # in topic order: manifest fields, status, reason, workers
    serving: str | None                        # what a worker that reads the whole topic serves
    workers: dict[str, dict[str, Any]]         # worker id -> its latest serving report
    skipped: list[tuple[int, str]]             # (offset, reason) of every malformed record
    truncated: bool = False                    # the read stopped before the end of the topic (timeout)


def replay_status(messages: Iterable[tuple[int, bytes | None]], signing_key: str = "",
                  max_bytes: int = DEFAULT_MAX_BYTES, keep: int = 3,
                  verify: Callable[[Manifest, dict[str, bytes]], Any] = decode_artifact) -> ModelStatus:
    """Replay the topic the way a worker does: assemble (checksums, manifest, signature with a key), hold the
    ``keep`` newest complete versions, then decode the held ones with ``verify`` (what a worker does before
    serving) and serve the newest target (manifest or rollback) that is held and decodes, falling back
    through earlier targets as a worker does. Older versions are only checked up to their checksums."""
    assembler = Assembler(keep=keep, max_bytes=max_bytes, signing_key=signing_key)
    entries: dict[str, dict[str, Any]] = {}
    history: list[str] = []                    # targets in topic order
    workers: dict[str, dict[str, Any]] = {}
    skipped: list[tuple[int, str]] = []

    def entry(version: str) -> dict[str, Any]:
        m = assembler.manifests.get(version)
        e = {"version": version, "created_at": m.created_at if m else None,
             "item_count": m.item_count if m else None, "dim": m.dim if m else None,
             "hr@10": m.metrics.get("hr@10") if m else None, "complete": False, "status": "refused",
             "reason": ""}
        entries.pop(version, None)
        entries[version] = e
        return e

    for offset, value in messages:
        try:
            rec = parse_record(value)
            kind = rec["kind"]
            if kind in ("CHUNK", "MANIFEST"):
                done = assembler.add(rec)
                if done is None:
                    continue
                e = entry(done)
                if done in assembler.refused:
                    e["reason"] = assembler.refused[done]
                    continue
                e["status"] = "superseded"
                e["reason"] = (f"checksums match; no longer held by workers (they keep the {keep} newest), "
                               "republish to serve it")
                history.append(done)
            elif kind == "ROLLBACK":
                check_rollback(rec, signing_key)
                if rec["version"] not in assembler.complete:
                    skipped.append((offset, f"rollback to {rec['version']}, which no worker holds"))
                history.append(rec["version"])
            elif kind == "OTHER" and rec.get("payload") is not None:
                report = rec["payload"]
                workers.pop(report["worker"], None)
                workers[report["worker"]] = report
        except (DecodeError, ArtifactError) as exc:
            skipped.append((offset, str(exc)))
    for version in list(assembler.complete):   # what a worker holds: decoded as it would before serving
        e = entries[version]
        try:
            verify(assembler.manifests[version], assembler.complete[version])
        except Exception as exc:  # noqa: BLE001 - whatever a worker would refuse is refused here
            e["status"], e["reason"] = "refused", (str(exc) if isinstance(exc, ArtifactError)
                                                   else f"{type(exc).__name__}: {exc}")
            assembler.forget(version, e["reason"])
            continue
        e["complete"], e["status"], e["reason"] = True, "available", ""
    serving = next((v for v in reversed(history) if v in assembler.complete), None)
    versions = list(entries.values())
    for e in versions:
        if e["version"] == serving:
            e["status"] = "in service"
        e["workers"] = sorted(w for w, r in workers.items() if r["state"] == "running" and r["serving"] == e["version"])
        e["refused_by"] = sorted(w for w, r in workers.items() if e["version"] in r["refused"])
    return ModelStatus(versions, serving, workers, skipped)


class _TopicReader:
    """(offset, value) of the model topic up to its end at the start, or ``timeout_s``; ``reached_end`` after."""

    def __init__(self, settings: Settings, timeout_s: float) -> None:
        self.settings, self.timeout_s, self.reached_end = settings, timeout_s, False

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        source = KafkaModelSource(self.settings)
        try:
            end = source.end_offset()
            deadline = time.monotonic() + self.timeout_s
            while source.position() < end and time.monotonic() < deadline:
                yield from source.poll(200)
            self.reached_end = source.position() >= end
        finally:
            source.close()


def model_status(settings: Settings, timeout_s: float = 60.0) -> ModelStatus:
    """:func:`replay_status` of the whole model topic, with this process's key and cap; ``truncated`` when
    the topic could not be read to its end within ``timeout_s``."""
    reader = _TopicReader(settings, timeout_s)
    status = replay_status(reader, _signing_key(settings), _max_bytes(settings))
    status.truncated = not reader.reached_end
    return status


def model_log(settings: Settings, timeout_s: float = 60.0) -> tuple[list[dict[str, Any]], str | None]:
    """Every version on the model topic (manifest fields, verified or not) and the one in service."""
    status = model_status(settings, timeout_s)
    return status.versions, status.serving
