"""Avro single-object encoding (fastavro; writes of streamrec's own schemas through the compiled writer of
``stream/avro_writer.py``, byte-identical): ``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint + body.

Schemas live as ``.avsc`` files in ``stream/schemas/``; older writer schemas a reader still accepts live in
``stream/schemas/history/<name>.<tag>.avsc``. Any Avro library can read our messages with the ``.avsc`` files
alone; no registry is needed.

>>> codec = codec_for("event")
>>> rec = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "CLICK",
...        "timestamp": 1700000000000, "session_id": None, "value": None, "context": {}}
>>> data = codec.encode(rec)
>>> data[:2].hex(), len(data[2:10])
('c301', 8)
>>> codec.decode(data) == rec
True
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
from fastavro.types import Schema

from streamrec.stream.avro_writer import compile_writer
from streamrec.stream.errors import BadMarkerError, CorruptRecordError, UnknownSchemaError

MARKER = b"\xc3\x01"
HEADER_LEN = 10
SCHEMA_DIR = Path(__file__).parent / "schemas"
#: schemas written by the compiled writer (stream/avro_writer.py): where it is faster than fastavro, measured
#: per record on this project's records: an event 5.5 -> 3.4 us, a 20-item list 61 -> 31 us; a user state
#: (arrays of 13-digit timestamps) is slower in Python (28 -> 41 us), so fastavro keeps it and the rest
COMPILED_WRITERS = frozenset({"event", "recommendation"})


def load_schema_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _plain_longs(node: Any) -> Any:
    """Drop ``timestamp-millis`` logical types so records carry plain ints (the canonical form, and so the
    fingerprint, ignores logical types, so this changes nothing on the wire)."""
    if isinstance(node, dict):
        if node.get("logicalType") == "timestamp-millis":
            return "long"
        return {k: _plain_longs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain_longs(v) for v in node]
    return node


def fingerprint(schema_json: dict[str, Any]) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a schema's parsing canonical form."""
    canonical = fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(schema_json))
    return bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


class AvroCodec:
    """Encode with the current schema; decode any known writer schema into the current reader schema."""

    def __init__(self, name: str, schema_dir: Path = SCHEMA_DIR) -> None:
        self.name = name
        self.path = schema_dir / f"{name}.avsc"
        if not self.path.is_file():
            raise FileNotFoundError(f"no Avro schema {self.path}")
        current = load_schema_json(self.path)
        self.schema: Schema = fastavro.parse_schema(_plain_longs(current))
        self.fingerprint = fingerprint(current)
        self._header = MARKER + self.fingerprint
        # None: fastavro writes every record
        self._compiled = compile_writer(self.schema, self._header) if name in COMPILED_WRITERS else None
        self._writers: dict[bytes, Schema] = {}
        for old in sorted((schema_dir / "history").glob(f"{name}.*.avsc")):
            old_json = load_schema_json(old)
            self._writers[fingerprint(old_json)] = fastavro.parse_schema(_plain_longs(old_json))

    def encode(self, record: dict[str, Any]) -> bytes:
        if self._compiled is not None:
            try:
                return self._compiled(record)
            except Exception:  # noqa: BLE001 - a record it cannot write: fastavro writes it or says why
                return self.encode_with_fastavro(record)
        return self.encode_with_fastavro(record)

    def encode_with_fastavro(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < HEADER_LEN or data[:2] != MARKER:
            raise BadMarkerError(f"not an Avro single-object message (first bytes {data[:2].hex() or 'none'})")
        fp = data[2:HEADER_LEN]
        writer: Schema | None
        if fp == self.fingerprint:
            writer, reader = self.schema, None
        else:
            writer, reader = self._writers.get(fp), self.schema
            if writer is None:
                raise UnknownSchemaError(f"unknown writer schema fingerprint {fp.hex()} for {self.name}; "
                                         f"add its .avsc to stream/schemas/history/ to accept it")
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        try:
            rec = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises many types for corrupt bodies
            raise CorruptRecordError(f"{self.name} body does not decode: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise CorruptRecordError(f"{self.name} body has {len(data) - buf.tell()} trailing bytes")
        if not isinstance(rec, dict):
            raise CorruptRecordError(f"{self.name} body decoded to {type(rec).__name__}, expected a record")
        return rec


@functools.cache
def codec_for(name: str) -> AvroCodec:
    """The shared codec for ``stream/schemas/<name>.avsc`` (event, recommendation, user_state, model_chunk)."""
    return AvroCodec(name)


def to_json(record: dict[str, Any]) -> str:
    """A decoded record as one line of JSON (bytes as hex), for subscribers who prefer JSON."""
    return json.dumps(record, default=lambda o: o.hex() if isinstance(o, bytes) else str(o), sort_keys=True)
