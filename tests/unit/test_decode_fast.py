"""The event decoder's direct reader (``consumers.decode.read_event``) gives exactly what the codec gives.

For valid records of the current schema it must return the event ``Event.from_record(codec.decode(data))``
returns; for anything else (corrupt, truncated, trailing bytes, an older writer) it must hand the record to the
codec, so the batch's events and dead letters (type and message) are those of the codec path.
"""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.consumers import decode
from streamrec.consumers.decode import decode_batch, fast_reader, read_event
from streamrec.models.events import Event, EventType
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for

CODEC = codec_for("event")
NOW = 1_800_000_000_000
text = st.text(max_size=40)
records = st.fixed_dictionaries({
    "event_id": text, "user_id": text, "item_id": text,
    "event_type": st.sampled_from([t.value for t in EventType]),
    "timestamp": st.integers(-(2 ** 63), 2 ** 63 - 1),
    "session_id": st.none() | text,
    "value": st.none() | st.floats(allow_nan=True, allow_infinity=True),
    "context": st.dictionaries(text, text, max_size=5),
})


def _same(a: Event | None, b: Event) -> bool:
    return a is not None and a.to_record() == b.to_record() or (
        a is not None and a.value != a.value and b.value != b.value)  # NaN != NaN


@settings(max_examples=400, deadline=None)
@given(records)
def test_a_valid_record_reads_as_the_codec_reads_it(rec: dict) -> None:
    data = CODEC.encode(rec)
    want = Event.from_record(CODEC.decode(data))
    got = read_event(data, fast_reader(CODEC))
    assert got is not None
    assert _same(got, want)
    assert type(got.timestamp_ms) is int and got.event_type is want.event_type


def _codec_only(records: list[Record], monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    with monkeypatch.context() as m:
        m.setattr(decode, "fast_reader", lambda codec: None)
        return decode_batch(records, now_ms=NOW)


def test_corrupt_records_give_the_dead_letters_of_the_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    base = [CODEC.encode({"event_id": f"e{k}", "user_id": f"u{k % 7}", "item_id": "ï" * (k % 3) + f"i{k}",
                          "event_type": "CLICK", "timestamp": NOW - k, "session_id": None if k % 2 else "s",
                          "value": None if k % 3 else 1.5, "context": {"k": "v"} if k % 4 else {}})
            for k in range(60)]
    values: list[bytes | None] = [None, b"", b"\xc3\x01", b"\x00\x01" + base[0][2:], base[0] + b"\x00"]
    for data in base:
        b = bytearray(data)
        what = rng.randrange(4)
        if what == 0:
            values.append(bytes(b[:rng.randrange(len(b))]))             # truncated
        elif what == 1:
            b[rng.randrange(10, len(b))] = rng.randrange(256)           # one byte changed
            values.append(bytes(b))
        elif what == 2:
            values.append(bytes(b) + bytes([rng.randrange(256)]))       # a trailing byte
        else:
            values.append(bytes(b))                                     # intact
    recs = [Record("events", 0, k, 0, None, v) for k, v in enumerate(values)]
    good, bad = decode_batch(recs, now_ms=NOW)
    ref_good, ref_bad = _codec_only(recs, monkeypatch)
    assert [(d.record.offset, d.event.to_record()) for d in good] == \
           [(d.record.offset, d.event.to_record()) for d in ref_good]
    def letters(dead: list) -> list:   # a fastavro message may name a buffer by its address
        return [(d.record.offset, d.error_type, re.sub(r" at 0x[0-9a-f]+", "", d.message)) for d in dead]

    assert letters(bad) == letters(ref_bad)
    assert len(good) > 10 and len(bad) > 10


def test_records_it_does_not_read_go_to_the_codec() -> None:
    fp = fast_reader(CODEC)
    data = CODEC.encode({"event_id": "e", "user_id": "u", "item_id": "i", "event_type": "VIEW", "timestamp": NOW,
                         "session_id": None, "value": None, "context": {"a": "b"}})
    assert read_event(data, fp) is not None
    assert read_event(data[:2] + bytes(8) + data[10:], fp) is None      # another writer schema
    assert read_event(data + b"\x00", fp) is None                        # trailing bytes
    assert read_event(data[:-1], fp) is None                             # truncated
    assert fast_reader(codec_for("recommendation")) is None
    # the map's end written as a two-byte zero, then more bytes: the codec's to judge
    assert data.endswith(b"\x00")
    assert read_event(data[:-1] + b"\x80\x00\x02\x02a\x02b\x00", fp) is None
