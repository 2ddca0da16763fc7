"""The compiled Avro writer writes exactly what fastavro writes, for every schema streamrec ships, on random
and edge-case records; what it cannot write goes to fastavro (which encodes it or raises its own error)."""

from __future__ import annotations

import math
import random
from typing import Any

import fastavro
import pytest

from streamrec.stream.avro_writer import _plain, compile_writer, varint
from streamrec.stream.serde import COMPILED_WRITERS, SCHEMA_DIR, codec_for

SCHEMAS = sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))
EDGE_LONGS = [0, 1, -1, 63, 64, -64, -65, 1023, 1024, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63)]
EDGE_TEXT = ["", "a", "é", "日本語", "emoji 🎬", "x" * 300, "\x00nul"]


def fake(schema: Any, rng: random.Random, named: dict[str, Any]) -> Any:
    """A random value of ``schema`` (fastavro's parsed form), edge cases included."""
    if isinstance(schema, str):
        if schema in named:
            return fake(named[schema], rng, named)
        schema = {"type": schema}
    if isinstance(schema, list):
        return None if rng.random() < 0.3 or len(schema) == 1 else fake(schema[1 - schema.index("null")], rng, named)
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        named[schema["name"]] = schema
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 2**31 - 1, -(2**31), rng.randint(-(2**31), 2**31 - 1)])
    if kind == "long":
        return rng.choice(EDGE_LONGS + [rng.randint(-(2**63), 2**63 - 1)])
    if kind in ("double", "float"):
        return rng.choice([0.0, -0.0, 1.5, -2.25, 1e300 if kind == "double" else 3.0, float("inf"), rng.random()])
    if kind == "string":
        return rng.choice(EDGE_TEXT + [f"s{rng.randint(0, 10**6)}"])
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 200])))
    if kind == "fixed":
        return bytes(rng.randrange(256) for _ in range(schema["size"]))
    if kind == "enum":
        return rng.choice(schema["symbols"])
    if kind == "array":
        return [fake(schema["items"], rng, named) for _ in range(rng.choice([0, 1, 3, 70]))]
    if kind == "map":
        keys = [rng.choice(EDGE_TEXT) + str(k) for k in range(rng.choice([0, 1, 4]))]
        return {k: fake(schema["values"], rng, named) for k in keys}
    if kind == "record":
        return {f["name"]: fake(f["type"], rng, named) for f in schema["fields"]}
    raise AssertionError(f"no fake value for {kind}")


def fastavro_bytes(codec: Any, record: dict[str, Any]) -> bytes:
    return codec.encode_with_fastavro(record)


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_shipped_schema_compiles_and_writes_what_fastavro_writes(name: str) -> None:
    codec = codec_for(name)
    compiled = compile_writer(codec.schema, codec._header)
    assert (codec._compiled is not None) == (name in COMPILED_WRITERS)
    if compiled is None:      # a type it does not cover: allowed for a schema fastavro writes anyway
        assert name not in COMPILED_WRITERS
        return
    rng = random.Random(name)
    for _ in range(300):
        record = fake(_plain(codec.schema), rng, {})
        assert compiled(record) == fastavro_bytes(codec, record)
        assert codec.decode(codec.encode(record)).keys() == record.keys()


def test_varints_match_avro_for_the_edges() -> None:
    schema = fastavro.parse_schema({"type": "record", "name": "N", "fields": [{"name": "n", "type": "long"}]})
    encode = compile_writer(schema)
    assert encode is not None
    for n in EDGE_LONGS:
        import io

        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, {"n": n})
        assert encode({"n": n}) == buf.getvalue() and varint(n) == buf.getvalue()


def test_a_record_the_writer_cannot_write_goes_to_fastavro() -> None:
    codec = codec_for("event")
    good = {"event_id": "e", "user_id": "u", "item_id": "i", "event_type": "CLICK", "timestamp": 5,
            "session_id": None, "value": None, "context": {}}
    assert codec.encode(good) == fastavro_bytes(codec, good)
    # a missing field that has a default: fastavro fills the default, and so does the compiled writer
    partial = {k: v for k, v in good.items() if k not in ("session_id", "value", "context")}
    assert codec.encode(partial) == fastavro_bytes(codec, partial)
    # wrong types: the compiled writer refuses them, fastavro raises its own error
    for field, bad in (("timestamp", "soon"), ("event_type", "LIKE"), ("user_id", 7), ("value", "3"),
                       ("timestamp", 2**64)):
        rec = {**good, field: bad}
        assert codec._compiled is not None
        with pytest.raises(Exception):  # noqa: B017 - whichever error, the compiled writer must not write it
            codec._compiled(rec)
        with pytest.raises(Exception) as fast:
            fastavro_bytes(codec, rec)
        with pytest.raises(type(fast.value)):
            codec.encode(rec)
    # a bool where a long goes: the compiled writer leaves it to fastavro (same bytes either way)
    rec = {**good, "timestamp": True}
    assert codec.encode(rec) == fastavro_bytes(codec, rec)
    # NaN doubles keep their bits
    rec = {**good, "value": math.nan}
    assert codec.encode(rec) == fastavro_bytes(codec, rec)


def test_unsupported_types_keep_fastavro() -> None:
    schema = fastavro.parse_schema({"type": "record", "name": "U", "fields": [
        {"name": "x", "type": ["null", "string", "long"]}]})
    assert compile_writer(schema) is None
