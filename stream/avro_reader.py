"""The one primitive the direct Avro readers share (the event decoder in ``consumers/decode.py`` and the
item result reader in ``stream/itemdeltas.py``): a zig-zag varint at a position of a record's bytes.

>>> read_long(bytes([0x02]), 0), read_long(bytes([0x03]), 0), read_long(bytes([0xAC, 0x02]), 0)
((1, 1), (-2, 1), (150, 2))
"""

from __future__ import annotations

__all__ = ["read_long"]


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint (Avro int or long) at ``pos``: ``(value, next position)``; over 64 bits: ValueError."""
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = data[pos]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if n >> 64:
                raise ValueError("varint over 64 bits")
            return (n >> 1) ^ -(n & 1), pos + 1
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
