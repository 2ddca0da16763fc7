"""A compiled Avro binary writer for streamrec's own schemas: the hot path's encoder.

``compile_writer(schema)`` turns a parsed schema (``fastavro.parse_schema``) into one function
``record -> bytes`` built from closures, one per field, for the types streamrec's schemas use: null,
boolean, int, long, float, double, string, bytes, enum, fixed, record, array, map, and unions of null and
one other type. Its output is byte for byte what ``fastavro.schemaless_writer`` writes (the tests check every
schema in ``stream/schemas/`` on random and edge-case records), in a fraction of the time for small records
(fastavro's per-call set-up dominates them: an event encodes in about a quarter of the time).

It only writes; every read goes through fastavro (``stream/serde.py``). A schema with a type outside that
list compiles to ``None`` and the codec keeps fastavro. A record the compiled writer cannot encode (a field
of the wrong type, an unknown enum symbol, a missing field without a default) raises an exception, and the
codec then hands that record to fastavro, which encodes it or raises its own error: a bad record is never
written differently from fastavro's way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Write = Callable[[Any, list[bytes]], None]   # (value, parts to append to)

_NO_DEFAULT = object()
_pack_double, _pack_float = struct.Struct("<d").pack, struct.Struct("<f").pack


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    if n < 0 or n >> 64:
        raise OverflowError("an Avro long is 64 bits")
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = tuple(_zigzag(k) for k in range(1024))   # lengths and small numbers, looked up


def varint(n: int) -> bytes:
    """An Avro int or long: zig-zag, then base-128 little-endian (a plain int only: anything else, a bool
    included, raises, and the codec leaves the record to fastavro)."""
    if type(n) is not int:
        raise TypeError(f"{n!r} is not an int")
    if 0 <= n < 1024:
        return _SMALL[n]
    return _zigzag(n)


def _long(value: Any, parts: list[bytes]) -> None:
    parts.append(varint(value))


def _int(value: Any, parts: list[bytes]) -> None:
    if type(value) is not int or not -(2**31) <= value < 2**31:
        raise TypeError(f"{value!r} is not a 32-bit int")
    parts.append(varint(value))


def _null(value: Any, parts: list[bytes]) -> None:
    if value is not None:
        raise TypeError(f"{value!r} is not null")


def _boolean(value: Any, parts: list[bytes]) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not a boolean")
    parts.append(b"\x01" if value else b"\x00")


def _double(value: Any, parts: list[bytes]) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not a number")
    parts.append(_pack_double(value))


def _float(value: Any, parts: list[bytes]) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not a number")
    parts.append(_pack_float(value))


def _string(value: Any, parts: list[bytes]) -> None:
    data = value.encode()       # a non-str raises (bytes has no .encode): the codec falls back
    parts.append(varint(len(data)))
    parts.append(data)


def _bytes(value: Any, parts: list[bytes]) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{type(value).__name__} is not bytes")
    data = bytes(value)
    parts.append(varint(len(data)))
    parts.append(data)


_PRIMITIVES: dict[str, Write] = {"null": _null, "boolean": _boolean, "int": _int, "long": _long,
                                 "float": _float, "double": _double, "string": _string, "bytes": _bytes}


class Unsupported(Exception):
    """The schema uses a type this writer does not compile (the codec keeps fastavro)."""


def _compile(schema: Any, named: dict[str, Any]) -> Write:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        if schema in named:                       # a named type defined earlier in the schema
            return named[schema]
        raise Unsupported(schema)
    if isinstance(schema, list):
        return _union(schema, named)
    if not isinstance(schema, dict):
        raise Unsupported(repr(schema))
    kind = schema.get("type")
    if schema.get("logicalType"):
        raise Unsupported(f"logical type {schema['logicalType']}")
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if kind == "record":
        return _record(schema, named)
    if kind == "enum":
        index = {s: varint(k) for k, s in enumerate(schema["symbols"])}

        def enum(value: Any, parts: list[bytes]) -> None:
            parts.append(index[value])
        named[schema["name"]] = enum
        return enum
    if kind == "fixed":
        size = int(schema["size"])

        def fixed(value: Any, parts: list[bytes]) -> None:
            if not isinstance(value, bytes) or len(value) != size:
                raise TypeError(f"fixed({size}) needs {size} bytes")
            parts.append(value)
        named[schema["name"]] = fixed
        return fixed
    if kind == "array":
        special = _primitive_array(schema["items"])
        if special is not None:
            return special
        item = _compile(schema["items"], named)

        def array(value: Any, parts: list[bytes]) -> None:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"{type(value).__name__} is not an array")
            if value:
                parts.append(varint(len(value)))
                for v in value:
                    item(v, parts)
            parts.append(b"\x00")
        return array
    if kind == "map":
        val = _compile(schema["values"], named)

        def mapping(value: Any, parts: list[bytes]) -> None:
            if value:
                parts.append(varint(len(value)))
                for k, v in value.items():
                    _string(k, parts)
                    val(v, parts)
            elif not isinstance(value, dict):
                raise TypeError(f"{type(value).__name__} is not a map")
            parts.append(b"\x00")
        return mapping
    raise Unsupported(str(kind))


def _primitive_array(items: Any) -> Write | None:
    """Arrays of strings, ints/longs and floats/doubles written in one loop or one ``struct.pack`` (the
    state records are mostly such arrays), or None for other item types."""
    kind = items.get("type") if isinstance(items, dict) and not items.get("logicalType") else items
    small, sized = _SMALL, varint

    def strings(value: Any, parts: list[bytes]) -> None:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{type(value).__name__} is not an array")
        if value:
            parts.append(sized(len(value)))
            for v in value:
                data = v.encode()
                n = len(data)
                parts.append(small[n] if n < 1024 else sized(n))
                parts.append(data)
        parts.append(b"\x00")

    def numbers(lo: int | None) -> Write:
        def ints(value: Any, parts: list[bytes]) -> None:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"{type(value).__name__} is not an array")
            if value:
                if lo is not None and (min(value) < lo or max(value) >= -lo):
                    raise TypeError("an int outside 32 bits")
                parts.append(sized(len(value)))
                parts.extend(map(sized, value))
            parts.append(b"\x00")
        return ints

    def reals(code: str) -> Write:
        def pack(value: Any, parts: list[bytes]) -> None:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"{type(value).__name__} is not an array")
            if value:
                if not all(type(v) is float or type(v) is int for v in value):
                    raise TypeError("an array item is not a number")
                parts.append(sized(len(value)))
                parts.append(struct.pack(f"<{len(value)}{code}", *value))
            parts.append(b"\x00")
        return pack

    if kind == "string":
        return strings
    if kind == "long":
        return numbers(None)
    if kind == "int":
        return numbers(-(2**31))
    if kind == "float":
        return reals("f")
    if kind == "double":
        return reals("d")
    return None


def _union(branches: list[Any], named: dict[str, Any]) -> Write:
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported("a union other than null and one type")
    null_at = branches.index("null")
    other = _compile(branches[1 - null_at], named)
    null_tag, other_tag = varint(null_at), varint(1 - null_at)

    def union(value: Any, parts: list[bytes]) -> None:
        if value is None:
            parts.append(null_tag)
        else:
            parts.append(other_tag)
            other(value, parts)
    return union


def _record(schema: dict[str, Any], named: dict[str, Any]) -> Write:
    fields: list[tuple[str, Any, Write]] = []

    def record(value: Any, parts: list[bytes]) -> None:
        for name, default, write in fields:
            v = value.get(name, default)
            if v is _NO_DEFAULT:
                raise KeyError(f"no value for field {name!r}")
            write(v, parts)
    named[schema["name"]] = record               # before the fields: a field may refer to this record
    for f in schema["fields"]:
        fields.append((f["name"], f.get("default", _NO_DEFAULT), _compile(f["type"], named)))
    return record


def compile_writer(parsed_schema: Any, prefix: bytes = b"") -> Callable[[dict[str, Any]], bytes] | None:
    """``record -> prefix + Avro binary body`` for ``parsed_schema`` (a ``fastavro.parse_schema`` result),
    or ``None`` when the schema uses a type this writer does not compile."""
    try:
        write = _compile(_plain(parsed_schema), {})
    except Unsupported:
        return None
    join = b"".join

    def encode(record: dict[str, Any]) -> bytes:
        parts = [prefix]
        write(record, parts)
        return join(parts)
    return encode


def _plain(node: Any) -> Any:
    """fastavro's parsed form names types by their full name and keeps a few keys of its own: drop those."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
