"""Event-log readers: every format on small inline files, bad rows, errors, and the real sample data."""

from __future__ import annotations

import doctest
import gzip
import json
from collections import Counter
from pathlib import Path

import fastavro
import pytest

from streamrec.models.errors import InputError
from streamrec.models.events import Event, EventType
from streamrec.producers.formats import avro as avro_format
from streamrec.producers.formats import base, mapping
from streamrec.producers.formats.base import parse_timestamp
from streamrec.producers.readers import (
    PRESETS,
    ColumnMapping,
    parse_mapping,
    read_events,
    stream_events,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ML100K = SHARED_DATA / "movielens-100k" / "u.data"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- MovieLens ------------------------------------------------------------------------------------


def test_movielens_100k_layout_sorted_by_time_user_item(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n22\t377\t1\t878887116\n10\t5\t4\t878887116\n"
                                     "9\t7\t5\t878887116\n")
    result = read_events(path, "movielens")
    assert [(e.user_id, e.item_id) for e in result.events] == [("9", "7"), ("10", "5"), ("22", "377"),
                                                               ("196", "242")]
    first = result.events[0]
    assert first == Event("ml-4", "9", "7", EventType.RATING, 878887116000, None, 5.0)
    assert result.bad_count == 0


def test_movielens_1m_and_csv_layouts(tmp_path: Path) -> None:
    dat = read_events(write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"),
                      "movielens")
    assert [(e.item_id, e.value, e.timestamp_ms) for e in dat.events] == [("1193", 5.0, 978300760000),
                                                                          ("661", 3.0, 978302109000)]
    text = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n"
    csv = read_events(write(tmp_path, "ratings.csv", text), "movielens")
    assert csv.events[0] == Event("ml-2", "1", "31", EventType.RATING, 1260759144000, None, 2.5)


def test_movielens_bad_rows_are_counted_and_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "1\t2\t3\t881250949\n\t2\t3\t881250949\n1\t2\tgood\t881250949\n"
                                     "1\t2\t3\t12\n1\t2\t3\n1\t3\t4\t881250950\n")
    result = read_events(path, "movielens")
    assert len(result.events) == 2
    assert result.bad_count == 4
    assert [b.line for b in result.bad_rows] == [2, 3, 4, 5]
    assert "missing user" in result.bad_rows[0].reason
    assert "not a number" in result.bad_rows[1].reason
    assert "before 1990" in result.bad_rows[2].reason
    assert "expected 4" in result.bad_rows[3].reason
    with pytest.raises(InputError, match=r"u\.data, line 2: missing user"):
        read_events(path, "movielens", strict=True)


def test_movielens_unknown_layout_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--format csv"):
        read_events(write(tmp_path, "x.txt", "1;2;3;4\n"), "movielens")


@pytest.mark.skipif(not ML100K.exists(), reason="shared/data/movielens-100k is not beside the repository")
def test_movielens_100k_real_file() -> None:
    result = read_events(ML100K, "movielens")
    events = result.events
    assert len(events) == 100_000 and result.bad_count == 0
    keys = [(e.timestamp_ms, int(e.user_id), int(e.item_id)) for e in events]
    assert keys == sorted(keys)
    assert len({e.user_id for e in events}) == 943
    assert len({e.item_id for e in events}) == 1682
    assert {e.value for e in events} == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len({e.event_id for e in events}) == 100_000


# --- OTTO -----------------------------------------------------------------------------------------


def test_otto_fixture() -> None:
    result = read_events(FIXTURES / "otto-sample.jsonl", "otto")
    assert len(result.events) == 862 and result.bad_count == 0
    counts = Counter(e.event_type for e in result.events)
    assert counts == {EventType.CLICK: 800, EventType.ADD_TO_CART: 52, EventType.PURCHASE: 10}
    first = result.events[0]
    assert first == Event("otto-0-0", "0", "1517085", EventType.CLICK, 1659304800025, "0")
    times = [e.timestamp_ms for e in result.events]
    assert times == sorted(times)
    assert len({e.event_id for e in result.events}) == 862


def test_otto_seconds_and_bad_rows(tmp_path: Path) -> None:
    lines = [
        {"session": 7, "events": [{"aid": 5, "ts": 1661119200, "type": "clicks"},
                                  {"aid": 6, "ts": 1661119300, "type": "orders"},
                                  {"aid": 7, "type": "carts"},
                                  {"aid": 8, "ts": 1661119400, "type": "wishlist"}]},
    ]
    text = json.dumps(lines[0]) + "\nnot json\n" + json.dumps({"session": 8}) + "\n"
    result = read_events(write(tmp_path, "otto.jsonl", text), "otto")
    assert [(e.event_id, e.timestamp_ms, e.event_type) for e in result.events] == [
        ("otto-7-0", 1661119200000, EventType.CLICK), ("otto-7-1", 1661119300000, EventType.PURCHASE),
        ("otto-7-3", 1661119400000, EventType.OTHER)]
    assert result.events[2].context == {"raw_event_type": "wishlist"}
    assert [(b.line, b.reason.split(":")[0]) for b in result.bad_rows] == [
        (1, "event 2"), (2, "not JSON"), (3, "not an OTTO session")]


# --- CSV / JSON lines with a mapping --------------------------------------------------------------


def test_csv_with_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "ts,visitor,thing,kind,cat,price\n"
                                      "1433221332117,257597,355908,view,shoes,\n"
                                      "1433224214164,992329,248676,like,,9.5\n")
    mapping = parse_mapping("user=visitor,item=thing,ts=ts,type=kind,category=cat,value=price")
    result = read_events(path, "csv", mapping)
    a, b = result.events
    assert a == Event("log.csv:2", "257597", "355908", EventType.VIEW, 1433221332117, None, None,
                      {"category": "shoes"})
    assert b.event_type is EventType.OTHER and b.context == {"raw_event_type": "like"} and b.value == 9.5


def test_csv_type_map_default_type_and_headerless(tmp_path: Path) -> None:
    path = write(tmp_path, "log.tsv", "a\tb\t2024-03-01T10:00:00Z\tfav\nc\td\t2024-03-01T10:00:01+01:00\t\n")
    mapping = parse_mapping("user=u,item=i,ts=t,type=k,columns=u+i+t+k,sep=tab,types=fav:ADD_TO_CART,"
                            "default_type=CLICK,unit=iso")
    first, second = read_events(path, "csv", mapping).events
    assert second.event_type is EventType.ADD_TO_CART  # 10:00:00Z is after 10:00:01+01:00
    assert first.event_type is EventType.CLICK and first.timestamp_ms == 1709283601000
    assert second.timestamp_ms == 1709287200000


def test_csv_bad_rows_strict_and_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user_id,item_id,timestamp,value\nu1,i1,1700000000000,1\n"
                                      "u1,,1700000000000,1\nu1,i1,yesterday,1\nu1,i1,1700000000000,abc\n"
                                      "u1,i1,99999999999999,1\nu1,i1\n")
    result = read_events(path, "csv")
    assert len(result.events) == 1 and result.bad_count == 5
    assert [b.line for b in result.bad_rows] == [3, 4, 5, 6, 7]
    assert "future" in result.bad_rows[3].reason
    capped = read_events(path, "csv", max_examples=2)
    assert capped.bad_count == 5 and len(capped.bad_rows) == 2
    with pytest.raises(InputError, match=r"log\.csv, line 3: missing item"):
        read_events(path, "csv", strict=True)
    with pytest.raises(InputError, match="'visitorid' .user. is not in the header"):
        read_events(path, "csv", ColumnMapping(user="visitorid"))
    with pytest.raises(InputError, match="'price' .value. is not in the header"):
        read_events(path, "csv", ColumnMapping(value="price"))


def test_jsonl_default_mapping_reads_own_field_names(tmp_path: Path) -> None:
    event = Event("e1", "u1", "i1", EventType.ADD_TO_CART, 1_700_000_000_000, "s1", 2.5, {"category": "c3"})
    other = Event("e2", "u2", "i2", EventType.OTHER, 1_700_000_000_001, None, None, {"raw_event_type": "x"})
    lines = [json.dumps(e.to_record()) for e in (other, event)]
    result = read_events(write(tmp_path, "log.jsonl", "\n".join(lines) + "\n\n[1]\n"), "jsonl")
    assert result.events == (event, other)
    assert [(b.line, b.reason) for b in result.bad_rows] == [(4, "not a JSON object")]


def test_jsonl_with_mapping_numbers_and_context(tmp_path: Path) -> None:
    row = {"visitorid": 12, "itemid": 34.0, "t": 1700000000, "extra": {"device": "ios", "n": 3}}
    mapping = ColumnMapping(user="visitorid", item="itemid", timestamp="t", context_object="extra")
    (event,) = read_events(write(tmp_path, "x.jsonl", json.dumps(row) + "\n"), "jsonl", mapping).events
    assert event == Event("x.jsonl:1", "12", "34", EventType.VIEW, 1_700_000_000_000, None, None,
                          {"device": "ios", "n": "3"})


def test_gzip_and_non_utf8_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl.gz"
    good = json.dumps(Event("e1", "u1", "i1", EventType.VIEW, 1_700_000_000_000).to_record()).encode()
    with gzip.open(path, "wb") as fh:
        fh.write(good + b"\n" + b'{"user_id": "\xff"}\n')
    result = read_events(path, "jsonl")
    assert len(result.events) == 1 and result.events[0].event_id == "e1"
    assert [(b.line, b.reason) for b in result.bad_rows] == [(2, "not valid UTF-8 text")]


# --- presets --------------------------------------------------------------------------------------


def test_preset_rees46(tmp_path: Path) -> None:
    text = ("event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
            "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde\n"
            "2019-10-01 00:00:05 UTC,remove_from_cart,3900821,2053013552326770905,appliances.water_heater,"
            "aqua,33.20,554748717,9333dfbd\n")
    view, removed = read_events(write(tmp_path, "2019-Oct.csv", text), "csv", preset="rees46").events
    assert view == Event("2019-Oct.csv:2", "541312140", "44600062", EventType.VIEW, 1569888000000, "72d76fde",
                         35.79, {"category_id": "2103807459595387724", "brand": "shiseido"})
    assert removed.event_type is EventType.OTHER
    assert removed.context["raw_event_type"] == "remove_from_cart"
    assert removed.context["category"] == "appliances.water_heater"


def test_preset_retailrocket_as_format_name(tmp_path: Path) -> None:
    text = ("timestamp,visitorid,event,itemid,transactionid\n1433221332117,257597,view,355908,\n"
            "1433224214164,992329,addtocart,248676,\n1433224214165,992329,transaction,248676,4000\n")
    events = read_events(write(tmp_path, "events.csv", text), "retailrocket").events
    assert [e.event_type for e in events] == [EventType.VIEW, EventType.ADD_TO_CART, EventType.PURCHASE]
    assert events[2].context == {"transactionid": "4000"} and events[0].context == {}


def test_preset_diginetica_user_fallback_and_timeframe(tmp_path: Path) -> None:
    text = ("sessionId;userId;itemId;timeframe;eventdate\n"
            "1;NA;81766;526309;2016-05-09\n2;278;31331;0;2016-05-09\n")
    path = write(tmp_path, "train-item-views.csv", text)
    known, anon = read_events(path, "csv", preset="diginetica").events
    assert known.user_id == "278" and known.timestamp_ms == 1462752000000
    assert anon.user_id == "sessionId:1" and anon.session_id == "1"
    assert anon.timestamp_ms == 1462752000000 + 526309 and anon.event_type is EventType.VIEW


def test_presets_yoochoose(tmp_path: Path) -> None:
    clicks = write(tmp_path, "yoochoose-clicks.dat", "1,2014-04-07T10:51:09.277Z,214536502,0\n")
    (click,) = read_events(clicks, "csv", preset="yoochoose-clicks").events
    assert click == Event("yoochoose-clicks.dat:1", "1", "214536502", EventType.CLICK, 1396867869277, "1",
                          None, {"category": "0"})
    buys = write(tmp_path, "yoochoose-buys.dat", "420374,2014-04-06T18:44:58.314Z,214537888,12462,1\n")
    (buy,) = read_events(buys, "csv", preset="yoochoose-buys").events
    assert buy.event_type is EventType.PURCHASE and buy.value == 12462.0 and buy.context == {"quantity": "1"}
    assert set(PRESETS) == {"rees46", "retailrocket", "diginetica", "yoochoose-clicks", "yoochoose-buys"}


# --- Avro -----------------------------------------------------------------------------------------


def test_avro_round_trip_and_bad_record(tmp_path: Path) -> None:
    events = [Event("e2", "u1", "i2", EventType.PURCHASE, 1_700_000_000_025, "s1", 19.99, {"category": "c1"}),
              Event("e1", "u1", "i1", EventType.CLICK, 1_659_304_800_025),
              Event("e3", " ", "i1", EventType.VIEW, 1_700_000_000_000)]
    path = tmp_path / "log.avro"
    assert avro_format.write(events, path) == 3
    result = read_events(path, "avro")
    assert result.events == (events[1], events[0])
    assert [(b.line, b.reason) for b in result.bad_rows] == [(3, "empty user")]


def test_avro_older_writer_schema_is_resolved(tmp_path: Path) -> None:
    schema = json.loads((Path(__file__).parents[2] / "stream" / "schemas" / "event.avsc").read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "context"]  # an older schema
    schema["fields"][3]["type"]["symbols"].append("WISHLIST")  # a type this reader does not know
    records = [{"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "WISHLIST",
                "timestamp": 1_700_000_000_123, "session_id": None, "value": None}]
    path = tmp_path / "old.avro"
    with path.open("wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(schema), records)
    (event,) = read_events(path, "avro").events
    assert event == Event("e1", "u1", "i1", EventType.OTHER, 1_700_000_000_123)


def test_avro_not_a_container(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not an Avro container file"):
        read_events(write(tmp_path, "x.avro", "hello"), "avro")


# --- errors and streaming -------------------------------------------------------------------------


def test_input_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found.*check the path"):
        read_events(tmp_path / "nope.csv", "csv")
    with pytest.raises(InputError, match="unknown log format 'parquet'; use one of movielens, otto"):
        read_events(write(tmp_path, "a.csv", "x\n"), "parquet")
    with pytest.raises(InputError, match="is empty"):
        read_events(write(tmp_path, "empty.csv", ""), "csv")
    with pytest.raises(InputError, match="holds no events"):
        read_events(write(tmp_path, "header.csv", "user_id,item_id,timestamp\n"), "csv")
    with pytest.raises(InputError, match="none of its 1 rows is usable"):
        read_events(write(tmp_path, "bad.jsonl", "{}\n"), "jsonl")
    with pytest.raises(InputError, match="takes no column mapping"):
        read_events(write(tmp_path, "u.data", "1\t2\t3\t881250949\n"), "movielens", ColumnMapping())
    with pytest.raises(InputError, match="not both"):
        read_events(write(tmp_path, "e.csv", "x\n"), "csv", ColumnMapping(), preset="retailrocket")
    with pytest.raises(InputError, match="unknown preset"):
        read_events(write(tmp_path, "e.csv", "x\n"), "csv", preset="amazon")
    with pytest.raises(InputError, match="is not a file"):
        read_events(tmp_path, "csv")


def test_stream_events_keeps_file_order_and_tallies(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "1\t2\t3\t881250949\n1\tx\t3\t881250949\n2\t3\t4\t878887116\n")
    stream = stream_events(path, "movielens")
    assert [e.event_id for e in stream] == ["ml-1", "ml-3"]
    assert (stream.count, stream.bad_count, stream.bad_rows[0].line, stream.out_of_order) == (2, 1, 2, 1)
    assert [e.event_id for e in stream] == ["ml-1", "ml-3"] and stream.bad_count == 1  # re-iterable
    with pytest.raises(InputError, match="not found"):
        stream_events(tmp_path / "missing", "movielens")


# --- helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "unit", "expected"), [
    ("881250949", None, 881250949000), (1659304800025, None, 1659304800025),
    ("1659304800.5", "s", 1659304800500),
    ("2019-10-01 00:00:00 UTC", None, 1569888000000), ("2014-04-07T10:51:09.277Z", "iso", 1396867869277),
    ("2016-05-09", None, 1462752000000), (1700000000, "ms", 1700000000),
])
def test_parse_timestamp(raw: object, unit: str | None, expected: int) -> None:
    assert parse_timestamp(raw, unit) == expected


def test_parse_mapping() -> None:
    m = parse_mapping("user=visitorid, item=itemid, ts=timestamp, type=event, unit=ms, event_id=, "
                      "sep=semicolon,"
                      "types=addtocart:ADD_TO_CART+transaction:purchase, context=transactionid")
    assert (m.user, m.item, m.timestamp, m.event_type, m.event_id, m.delimiter) == (
        "visitorid", "itemid", "timestamp", "event", None, ";")
    assert m.type_map == (("addtocart", EventType.ADD_TO_CART), ("transaction", EventType.PURCHASE))
    assert m.context == ("transactionid",) and m.timestamp_unit == "ms"
    base = PRESETS["retailrocket"].mapping
    assert parse_mapping("value=price", base=base).user == "visitorid"
    for bad, message in [("colour=red", "keys among"), ("unit=minutes", "ms, s, iso"), ("user=", "needs"),
                         ("default_type=LIKE", "unknown event type"), ("sep=ab", "one character"),
                         ("types=view", "raw:TYPE")]:
        with pytest.raises(InputError, match=message):
            parse_mapping(bad)


def test_docstring_examples() -> None:
    for module in (base, mapping):
        assert doctest.testmod(module).failed == 0
