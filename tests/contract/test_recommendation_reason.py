"""The ``reason`` field of ``RecommendedItem`` (recommendation.avsc, default ""): schema evolution both ways.

* golden bytes written by the schema before reasons (``golden/recommendation.v1.hex``, the golden file of that
  schema) still decode with today's codec, every reason the default "";
* an old reader (the previous schema as its own, today's ``.avsc`` given to it as a known writer schema, the
  way ``stream/schemas/history/`` works) reads a new list and simply does not see the reasons;
* Avro schema resolution in plain fastavro agrees, with the two ``.avsc`` files alone.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import fastavro
import pytest

from streamrec.stream.errors import UnknownSchemaError
from streamrec.stream.serde import HEADER_LEN, SCHEMA_DIR, AvroCodec, _plain_longs, codec_for, load_schema_json
from tests.contract.samples import SAMPLES

GOLDEN = Path(__file__).parent / "golden"
OLD = SCHEMA_DIR / "history" / "recommendation.v1.avsc"


def without_reasons(record: dict) -> dict:  # type: ignore[type-arg]
    return {**record, "items": [{k: v for k, v in it.items() if k != "reason"} for it in record["items"]]}


def test_the_old_schema_is_kept_and_has_no_reason() -> None:
    old = load_schema_json(OLD)
    item_fields = [f["name"] for f in old["fields"][1]["type"]["items"]["fields"]]
    assert item_fields == ["item_id", "score", "source"]
    new = load_schema_json(SCHEMA_DIR / "recommendation.avsc")
    reason = new["fields"][1]["type"]["items"]["fields"][-1]
    assert reason == {**reason, "name": "reason", "type": "string", "default": ""}


def test_new_reader_reads_old_golden_bytes() -> None:
    old_bytes = bytes.fromhex((GOLDEN / "recommendation.v1.hex").read_text().strip())
    rec = codec_for("recommendation").decode(old_bytes)
    assert [it["reason"] for it in rec["items"]] == ["", ""]
    assert without_reasons(rec) == without_reasons(SAMPLES["recommendation"])


def test_old_reader_reads_new_lists(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    shutil.copy(OLD, tmp_path / "recommendation.avsc")                     # the old reader's own schema
    new_bytes = codec_for("recommendation").encode(SAMPLES["recommendation"])
    with pytest.raises(UnknownSchemaError):                                  # it must know the writer schema
        AvroCodec("recommendation", tmp_path).decode(new_bytes)
    shutil.copy(SCHEMA_DIR / "recommendation.avsc", tmp_path / "history" / "recommendation.v2.avsc")
    rec = AvroCodec("recommendation", tmp_path).decode(new_bytes)
    assert rec == without_reasons(SAMPLES["recommendation"])
    assert all("reason" not in it for it in rec["items"])


def test_plain_avro_resolution_both_ways() -> None:
    old = fastavro.parse_schema(_plain_longs(load_schema_json(OLD)))
    new = fastavro.parse_schema(_plain_longs(load_schema_json(SCHEMA_DIR / "recommendation.avsc")))
    body = codec_for("recommendation").encode(SAMPLES["recommendation"])[HEADER_LEN:]
    back = fastavro.schemaless_reader(io.BytesIO(body), new, old)
    assert back == without_reasons(SAMPLES["recommendation"])
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, old, without_reasons(SAMPLES["recommendation"]))
    buf.seek(0)
    forward = fastavro.schemaless_reader(buf, old, new)
    assert [it["reason"] for it in forward["items"]] == ["", ""]
