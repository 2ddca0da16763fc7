"""One set of event validity rules (models.events.EventLimits / check_event) for the stream's decoder and the
file readers: finite values within range, id lengths, context size, time bounds; a bad row names its line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from streamrec.consumers.decode import decode_batch, event_limits
from streamrec.models.errors import ConfigError
from streamrec.models.events import Event, EventLimits, EventType, check_event
from streamrec.producers.formats import avro as avro_format
from streamrec.producers.readers import read_events
from streamrec.stream.records import Record
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

NOW = 1_700_000_000_000
TS = NOW - 3_600_000
LIM = EventLimits()
BIG_CONTEXT = {f"k{i}": "v" for i in range(100)}


def event(**kw: object) -> Event:
    base: dict[str, object] = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": EventType.CLICK,
                               "timestamp_ms": TS}
    return Event(**{**base, **kw})  # type: ignore[arg-type]


BAD: list[tuple[str, Event, str]] = [
    ("nan rating", event(event_type=EventType.RATING, value=math.nan), "not a finite number"),
    ("inf rating", event(event_type=EventType.RATING, value=math.inf), "not a finite number"),
    ("-inf value", event(value=-math.inf), "not a finite number"),
    ("rating out of range", event(event_type=EventType.RATING, value=1e6), "outside the accepted range"),
    ("negative price", event(event_type=EventType.PURCHASE, value=-3.0), "price or quantity"),
    ("huge value", event(value=1e300), "outside"),
    ("10 KB user id", event(user_id="u" * 10_240), "user_id is 10240 bytes, over the limit of 256"),
    ("long item id", event(item_id="i" * 257), "item_id is 257 bytes"),
    ("long multibyte item id", event(item_id="é" * 200), "item_id is 400 bytes"),
    ("long event id", event(event_id="e" * 1_000), "event_id is 1000 bytes"),
    ("long session id", event(session_id="s" * 300), "session_id is 300 bytes"),
    ("blank user", event(user_id="  "), "empty user"),
    ("empty item", event(item_id=""), "empty item"),
    ("many context entries", event(context=BIG_CONTEXT), "context has 100 entries"),
    ("huge context value", event(context={"page": "x" * 5_000}), "context value of 'page' is 5000 bytes"),
    ("long context key", event(context={"k" * 200: "v"}), "context key is 200 bytes"),
    ("huge context", event(context={f"k{i}": "x" * 1_000 for i in range(8)}), "context is 8016 bytes"),
    ("ancient", event(timestamp_ms=5), "before 1990"),
    ("far future", event(timestamp_ms=NOW + 2 * 86_400_000), "after now"),
    ("not a type", event(event_type="CLICK"), "event_type"),
    ("surrogate id", event(user_id="u\udcff"), "not valid UTF-8"),
]


@pytest.mark.parametrize(("name", "ev", "reason"), BAD, ids=[b[0] for b in BAD])
def test_check_event_names_the_reason(name: str, ev: Event, reason: str) -> None:
    got = check_event(ev, LIM, NOW)
    assert got is not None and reason in got, got


def test_valid_events_pass_and_limits_are_settings() -> None:
    for ev in (event(), event(event_type=EventType.RATING, value=4.5), event(event_type=EventType.PURCHASE, value=0.0),
               event(user_id="u" * 256, context={"raw_event_type": "wishlist", "category": "shoes"}),
               event(event_type=EventType.RATING, value=-10.0), event(timestamp_ms=NOW + 3_600_000)):
        assert check_event(ev, LIM, NOW) is None, ev
    long_id = event(user_id="u" * 300)
    assert check_event(long_id, EventLimits(max_id_bytes=512), NOW) is None
    assert Settings.from_env({}).max_id_bytes == 256
    assert event_limits(Settings.from_env({"STREAMREC_MAX_ID_BYTES": "512"}).max_id_bytes).max_id_bytes == 512
    with pytest.raises(ConfigError, match="MAX_ID_BYTES"):
        Settings.from_env({"STREAMREC_MAX_ID_BYTES": "0"})
    with pytest.raises(ConfigError):
        EventLimits(rating_range=(5.0, 1.0))


def test_the_stream_decoder_dead_letters_every_rule_with_its_reason() -> None:
    codec = codec_for("event")
    cases = [b for b in BAD if isinstance(b[1].event_type, EventType) and "surrogate" not in b[0]]
    records = [Record("events", 0, k, TS, b"u", codec.encode(ev.to_record())) for k, (_, ev, _) in enumerate(cases)]
    good_record = Record("events", 0, len(cases), TS, b"u", codec.encode(event().to_record()))
    good, bad = decode_batch([*records, good_record], now_ms=NOW)
    assert [d.event for d in good] == [event()]
    assert len(bad) == len(cases)
    for dl, (name, _, reason) in zip(bad, cases, strict=True):
        headers = dict(dl.headers())
        assert headers["error.type"] == b"invalid_record", name
        assert reason in headers["error.message"].decode(), (name, headers["error.message"])
    wide = decode_batch(records[6:7], now_ms=NOW, limits=EventLimits(max_id_bytes=20_000))[0]
    assert len(wide) == 1                                       # the 10 KB user id under a wider limit


# --- the file readers apply the same rules, with line numbers ---------------------------------------


def test_movielens_rows_out_of_the_rules_are_bad_rows(tmp_path: Path) -> None:
    rows = ["1\t10\t4\t881250949", "2\t11\t50\t881250949", f"{'3' * 10_240}\t12\t4\t881250949",
            f"4\t{'9' * 300}\t4\t881250949", "5\t13\t5\t881250949"]
    path = tmp_path / "u.data"
    path.write_text("\n".join(rows) + "\n")
    result = read_events(path, "movielens")
    assert [e.user_id for e in result.events] == ["1", "5"]
    reasons = {b.line: b.reason for b in result.bad_rows}
    assert set(reasons) == {2, 3, 4}
    assert "rating 50.0 is outside" in reasons[2]
    assert "user_id is 10240 bytes" in reasons[3] and "item_id is 300 bytes" in reasons[4]


def test_jsonl_rows_out_of_the_rules_are_bad_rows(tmp_path: Path) -> None:
    def row(**kw: object) -> str:
        return json.dumps({"user_id": "u1", "item_id": "i1", "timestamp": TS, **kw})

    lines = [row(), row(user_id="u" * 10_240), row(item_id="i" * 300), row(context=BIG_CONTEXT),
             row(context={"page": "x" * 5_000}), row(event_type="purchase", value=-1),
             row(value=1e300), row(value=math.nan),
             row(event_type="rating", value=4)]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = read_events(path, "jsonl")
    assert result.bad_count == 7 and [b.line for b in result.bad_rows] == [2, 3, 4, 5, 6, 7, 8]
    assert [e.event_type for e in result.events] == [EventType.VIEW, EventType.RATING]
    assert "user_id is 10240 bytes" in result.bad_rows[0].reason
    assert "context has 100 entries" in result.bad_rows[2].reason
    assert "not a finite number" in result.bad_rows[6].reason


def test_csv_and_otto_rows_out_of_the_rules_are_bad_rows(tmp_path: Path) -> None:
    csv = tmp_path / "log.csv"
    csv.write_text(f"user_id,item_id,timestamp\nu1,i1,{TS}\nu2,{'i' * 300},{TS}\n")
    result = read_events(csv, "csv")
    assert len(result.events) == 1 and [(b.line, "item_id is 300 bytes" in b.reason) for b in result.bad_rows] \
        == [(3, True)]
    otto = tmp_path / "otto.jsonl"
    otto.write_text(json.dumps({"session": 1, "events": [{"aid": 5, "ts": TS, "type": "clicks"},
                                                         {"aid": "a" * 300, "ts": TS, "type": "clicks"}]}) + "\n")
    result = read_events(otto, "otto")
    assert len(result.events) == 1 and result.bad_rows[0].line == 1
    assert "event 1" in result.bad_rows[0].reason and "item_id is 300 bytes" in result.bad_rows[0].reason


def test_avro_records_out_of_the_rules_are_bad_rows(tmp_path: Path) -> None:
    events = [event(event_id="a1"), event(event_id="a2", event_type=EventType.RATING, value=math.nan),
              event(event_id="a3", value=math.inf), event(event_id="a4", user_id="u" * 10_240),
              event(event_id="a5", context=BIG_CONTEXT), event(event_id="a6", item_id="i" * 300)]
    path = tmp_path / "log.avro"
    avro_format.write(events, path)
    result = read_events(path, "avro")
    assert [e.event_id for e in result.events] == ["a1"]
    assert [b.line for b in result.bad_rows] == [2, 3, 4, 5, 6]
    assert "not a finite number" in result.bad_rows[0].reason and "not a finite" in result.bad_rows[1].reason
