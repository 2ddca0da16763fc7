"""The model topic's records and the Assembler: every malformed shape is refused or skipped with a reason,
never an exception other than InvalidRecordError, and the Assembler's memory stays bounded."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrec.models.base.artifact import MANIFEST, Manifest, build_manifest, decode_artifact, encode_payload
from streamrec.stream.errors import DecodeError, InvalidRecordError
from streamrec.stream.modelbus import (
    CHUNK_OVERHEAD,
    MAX_CHUNK_DATA,
    Assembler,
    check_manifest,
    check_rollback,
    chunk_records,
    control_record,
    parse_record,
    replay_status,
    serving_record,
    sign_manifest,
)
from streamrec.stream.serde import codec_for

CODEC = codec_for("model_chunk")


def artifact(version: str, n: int = 6, dim: int = 4, seed: int = 0) -> tuple[Manifest, dict[str, bytes]]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    files = encode_payload([f"i{k}" for k in range(n)], emb)
    return build_manifest(files, dim, n, version=version), files


def records(version: str, chunk_bytes: int = 40, key: str = "", seed: int = 0) -> list[dict[str, Any]]:
    manifest, files = artifact(version, seed=seed)
    return list(chunk_records(manifest, files, chunk_bytes=chunk_bytes, signing_key=key))


def chunk(version: str = "v1", file: str = "item_ids.json", index: int = 0, count: int = 1,
          data: bytes = b"x") -> dict[str, Any]:
    return {"version": version, "kind": "CHUNK", "file": file, "index": index, "count": count, "data": data,
            "sent_at": 0}


def feed(a: Assembler, recs: list[dict[str, Any]]) -> list[str]:
    done = []
    for r in recs:
        with contextlib.suppress(InvalidRecordError):
            v = a.add(r)
            if v is not None:
                done.append(v)
    return done


def manifest_rec(version: str, data: bytes) -> dict[str, Any]:
    return {"version": version, "kind": "MANIFEST", "file": MANIFEST, "index": 0, "count": 1, "data": data,
            "sent_at": 0}


# --- the jam ------------------------------------------------------------------------------------
def test_chunk_index_past_its_count_then_its_manifest_neither_raises_nor_jams_later_models() -> None:
    """The issue's jam: index=1, count=1, then the manifest, raised KeyError out of the assembler."""
    manifest, files = artifact("vX")
    a = Assembler()
    for name, data in files.items():
        with contextlib.suppress(InvalidRecordError):
            a.add(chunk("vX", name, index=1, count=1, data=data))
    done = a.add(manifest_rec("vX", manifest.to_json().encode()))
    assert done == "vX" and "vX" not in a.complete
    assert feed(a, records("v2")) == ["v2"] and "v2" in a.complete


def test_a_valid_artifact_assembles_and_decodes() -> None:
    a = Assembler()
    assert feed(a, records("v1")) == ["v1"]
    art = decode_artifact(a.manifests["v1"], a.complete["v1"])
    assert art.embeddings.shape == (6, 4)


# --- malformed records: skipped with a reason -----------------------------------------------------------
@pytest.mark.parametrize(("rec", "reason"), [
    (chunk(index=1, count=1), "index 1 is outside"),
    (chunk(index=-1, count=3), "index -1 is outside"),
    (chunk(index=0, count=0), "count 0 is outside"),
    (chunk(index=0, count=1 << 20), "is outside 1.."),
    (chunk(file="../etc/passwd"), "is not a name"),
    (chunk(file=""), "is not a name"),
    (chunk(file=MANIFEST), "travels as a MANIFEST"),
    (chunk(version=""), "is not a name"),
    (chunk(version="a/b"), "is not a name"),
    (chunk(version="v" * 200), "is not a name"),
    (chunk(data=b"\0" * (MAX_CHUNK_DATA + 1)), "over the"),
    ({**chunk(), "index": "0"}, "wrong type"),
    ({**chunk(), "index": True}, "wrong type"),
    ({**chunk(), "data": "text"}, "wrong type"),
    ({**chunk(), "sent_at": None}, "sent_at"),
    ({**chunk(), "kind": "EXPLODE"}, "unknown kind"),
    ({k: v for k, v in chunk().items() if k != "version"}, "wrong type"),
    ({**manifest_rec("v1", b"{}"), "index": 3}, "expected file manifest.json, index 0"),
    ({**manifest_rec("v1", b"{}"), "file": "x"}, "expected file manifest.json"),
    (manifest_rec("v1", b" " * (65 * 1024)), "over the"),
    ([1, 2, 3], "mapping of fields"),
])
def test_malformed_records_are_invalid(rec: Any, reason: str) -> None:
    with pytest.raises(InvalidRecordError, match=reason):
        Assembler().add(rec)


def test_count_mismatch_and_conflicting_duplicate_chunks_are_skipped_the_first_kept() -> None:
    a = Assembler()
    a.add(chunk(index=0, count=2, data=b"ab"))
    with pytest.raises(InvalidRecordError, match="contradicts the count 2"):
        a.add(chunk(index=1, count=3, data=b"c"))
    with pytest.raises(InvalidRecordError, match="other bytes"):
        a.add(chunk(index=0, count=2, data=b"zz"))
    assert a.add(chunk(index=0, count=2, data=b"ab")) is None   # an identical duplicate is harmless
    assert a.partial["v1"].chunks["item_ids.json"] == {0: b"ab"}


def test_every_record_of_a_real_upload_duplicated_still_assembles() -> None:
    recs = records("v1")
    a = Assembler()
    assert feed(a, [r for r in recs for _ in (0, 1)]) == ["v1"]   # the second manifest is a no-op


def test_another_manifest_for_a_complete_version_is_skipped_and_the_first_stays() -> None:
    a = Assembler()
    feed(a, records("v1"))
    other, _ = artifact("v1", seed=9)
    with pytest.raises(InvalidRecordError, match="already complete"):
        a.add(manifest_rec("v1", other.to_json().encode()))
    assert "v1" in a.complete


# --- versions that do not add up: refused with the reason -----------------------------------------------
def refused_reason(recs: list[dict[str, Any]], version: str = "v1", **kw: Any) -> str:
    a = Assembler(**kw)
    assert version in feed(a, recs)
    assert version not in a.complete
    return a.refused[version]


def test_missing_chunk_refuses_the_version() -> None:
    recs = records("v1")
    assert "incomplete" in refused_reason([r for r in recs if not (r["kind"] == "CHUNK" and r["index"] == 1)])


def test_missing_file_refuses_the_version() -> None:
    recs = records("v1")
    assert "is missing" in refused_reason([r for r in recs if r.get("file") != "item_ids.json"])


def test_corrupted_chunk_fails_the_checksum() -> None:
    recs = records("v1")
    recs[1] = {**recs[1], "data": bytes(b ^ 0x55 for b in recs[1]["data"])}
    assert "checksum of" in refused_reason(recs)


def test_manifest_without_chunks_is_refused() -> None:
    assert "is missing" in refused_reason(records("v1")[-1:])


@pytest.mark.parametrize(("change", "reason"), [
    (lambda m: "not json", "not valid JSON"),
    (lambda m: "[" * 20000 + "]" * 20000, "not valid JSON"),
    (lambda m: json.dumps([m]), "expected an object"),
    (lambda m: json.dumps({**m, "format": "other/9"}), "format"),
    (lambda m: json.dumps({**m, "version": "v2"}), "says version"),
    (lambda m: json.dumps({**m, "files": ["item_ids.json"]}), "files must map"),
    (lambda m: json.dumps({**m, "files": {}}), "files must map"),
    (lambda m: json.dumps({**m, "files": {"../x": "0" * 64}}), "not a payload name"),
    (lambda m: json.dumps({**m, "files": {k: "nothex" for k in m["files"]}}), "not 64 hex digits"),
    (lambda m: json.dumps({**m, "dim": "4"}), "dim"),
    (lambda m: json.dumps({**m, "dim": 0}), "dim"),
    (lambda m: json.dumps({**m, "item_count": -1}), "item_count"),
    (lambda m: json.dumps({**m, "item_count": 10 ** 12}), "item_count"),
    (lambda m: json.dumps({**m, "metrics": [1]}), "metrics is not an object"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "dim"}), "missing fields"),
])
def test_invalid_manifests_refuse_the_version(change: Any, reason: str) -> None:
    recs = records("v1")
    raw = json.loads(recs[-1]["data"])
    recs[-1] = {**recs[-1], "data": change(raw).encode()}
    assert reason in refused_reason(recs)


# --- bounds ---------------------------------------------------------------------------------------------
def test_an_upload_over_the_byte_cap_is_refused() -> None:
    recs = records("v1")   # about 200 bytes of payload in 40-byte chunks
    reason = refused_reason(recs, max_bytes=100 + CHUNK_OVERHEAD)
    assert "STREAMREC_MODEL_MAX_BYTES" in reason


def test_older_uploads_give_way_when_the_buffered_bytes_would_pass_the_cap() -> None:
    a = Assembler(max_bytes=3 * (1000 + CHUNK_OVERHEAD))
    for v in ("a", "b", "c", "d"):
        a.add(chunk(v, data=bytes(1000)))
    assert list(a.partial) == ["b", "c", "d"] and "abandoned" in a.refused["a"]
    assert a.pending_bytes <= a.max_bytes


def test_pending_uploads_are_capped() -> None:
    a = Assembler(max_pending=2)
    for k in range(10):
        a.add(chunk(f"v{k}"))
    assert list(a.partial) == ["v8", "v9"] and "abandoned" in a.refused["v0"]
    with pytest.raises(InvalidRecordError, match="abandoned"):
        a.add(chunk("v0", index=0, count=1))   # its late chunks are not buffered again


_names = st.sampled_from(["a", "b", "c", "v1", "../x", "", MANIFEST, "item_ids.json", "item_embeddings.npy"])
_junk = st.fixed_dictionaries({
    "version": _names, "kind": st.sampled_from(["CHUNK", "MANIFEST", "ROLLBACK", "OTHER", "BOGUS"]),
    "file": _names, "index": st.integers(-3, 5), "count": st.integers(-1, 5),
    "data": st.one_of(st.binary(max_size=300), st.just(b"{}"),
                      st.builds(lambda m: m.to_json().encode(), st.just(artifact("a")[0]))),
    "sent_at": st.integers(0, 10)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_junk, st.builds(lambda: records("a")[0]), st.builds(lambda: records("b")[-1])),
                max_size=60))
def test_any_junk_only_raises_invalid_record_stays_bounded_and_a_later_model_assembles(
        junk: list[dict[str, Any]]) -> None:
    a = Assembler(keep=2, max_pending=3, max_bytes=8000, max_remembered=5)
    for rec in junk:
        with contextlib.suppress(InvalidRecordError):
            a.add(rec)
        assert len(a.partial) <= 3 and a.pending_bytes <= 8000 and len(a._dropping) <= 5
        assert len(a.complete) <= 2 and len(a.refused) <= 5 and len(a.manifests) <= 5
    assert feed(a, records("good")) == ["good"]
    assert decode_artifact(a.manifests["good"], a.complete["good"]).item_ids[0] == "i0"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.builds(lambda b: CODEC.encode(records("a")[0])[:10] + b,
                                                    st.binary(max_size=60))))
def test_any_bytes_parse_or_raise_decode_error(value: bytes) -> None:
    with contextlib.suppress(DecodeError):
        parse_record(value)


# --- signatures -----------------------------------------------------------------------------------------
def test_a_signing_reader_takes_signed_manifests_and_refuses_unsigned_or_wrongly_signed_ones() -> None:
    a = Assembler(signing_key="k1")
    assert feed(a, records("v1", key="k1")) == ["v1"] and "v1" in a.complete
    assert "not signed" in refused_reason(records("v2"), "v2", signing_key="k1")
    assert "does not match" in refused_reason(records("v3", key="other"), "v3", signing_key="k1")
    tampered = records("v4", key="k1")
    raw = json.loads(tampered[-1]["data"])
    tampered[-1] = {**tampered[-1], "data": json.dumps({**raw, "dim": 8}).encode()}
    assert "does not match" in refused_reason(tampered, "v4", signing_key="k1")


def test_readers_without_a_key_and_manifest_parsing_ignore_the_signature() -> None:
    recs = records("v1", key="k1")
    assert feed(Assembler(), recs) == ["v1"]
    assert Manifest.from_json(recs[-1]["data"]).version == "v1"
    assert check_manifest(sign_manifest(artifact("v1")[0].to_json(), "k"), "v1", "k").dim == 4


def test_rollbacks_are_signed_with_a_key() -> None:
    signed = parse_record(CODEC.encode(control_record("ROLLBACK", "v1", {"reason": "x"}, "k1")))
    check_rollback(signed, "k1")
    check_rollback(signed, "")
    unsigned = parse_record(CODEC.encode(control_record("ROLLBACK", "v1", {"reason": "x"})))
    with pytest.raises(Exception, match="not signed"):
        check_rollback(unsigned, "k1")
    forged = {**signed, "version": "v0"}
    with pytest.raises(Exception, match="does not match"):
        check_rollback(forged, "k1")


# --- what `model list` shows ----------------------------------------------------------------------------
def encoded(recs: list[dict[str, Any]]) -> list[bytes]:
    return [CODEC.encode(r) for r in recs]


def test_replay_status_verifies_each_version_and_never_serves_a_refused_one() -> None:
    bad = records("v2", seed=2)
    bad[0] = {**bad[0], "data": bytes(b ^ 1 for b in bad[0]["data"])}
    m3, f3 = artifact("v3", seed=3)   # checksums match, contents do not: the worker's decode refuses it
    f3 = {**f3, "item_ids.json": json.dumps(["only-one"]).encode()}
    m3 = build_manifest(f3, m3.dim, m3.item_count, version="v3")
    jam = [CODEC.encode(chunk("vX", index=1, count=1)), b"garbage", CODEC.encode(manifest_rec("vX", b"{}"))]
    report = {"worker": "w1", "group": "g", "serving": "v1", "state": "running", "refused": {"v2": "checksum"},
              "at": 1}
    msgs = encoded(records("v1")) + jam + encoded(bad) + encoded(list(chunk_records(m3, f3))) \
        + [CODEC.encode(serving_record(report))]
    status = replay_status(list(enumerate(msgs)))
    by = {e["version"]: e for e in status.versions}
    assert status.serving == "v1"
    assert by["v1"]["status"] == "in service" and by["v1"]["workers"] == ["w1"]
    assert by["v2"]["status"] == "refused" and "checksum" in by["v2"]["reason"] and by["v2"]["refused_by"] == ["w1"]
    assert by["v3"]["status"] == "refused" and "do not match the manifest" in by["v3"]["reason"]
    assert by["vX"]["status"] == "refused"
    assert {o for o, _ in status.skipped} >= {len(records("v1")), len(records("v1")) + 1}

    rollback = [CODEC.encode(r) for r in records("v4", seed=4)] + [CODEC.encode(control_record("ROLLBACK", "v1"))]
    status = replay_status(list(enumerate(msgs + rollback)))
    assert status.serving == "v1" and {e["version"]: e["status"] for e in status.versions}["v4"] == "available"
    unsigned = replay_status(list(enumerate(msgs)), signing_key="k")
    assert unsigned.serving is None and "not signed" in unsigned.versions[0]["reason"]


def test_model_list_shows_a_refused_version_as_refused_and_who_serves_what(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from streamrec import cli
    from streamrec.stream import modelbus

    bad = records("v2", seed=2)
    bad[0] = {**bad[0], "data": bytes(b ^ 1 for b in bad[0]["data"])}
    report = {"worker": "w1", "group": "g", "serving": "v1", "state": "running", "refused": {}, "at": 1}
    msgs = encoded(records("v1") + bad) + [CODEC.encode(serving_record(report)), b"junk"]
    monkeypatch.setattr(modelbus, "model_status", lambda s, timeout_s=30.0: replay_status(list(enumerate(msgs))))
    result = CliRunner().invoke(cli.app, ["model", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    v1 = next(line for line in result.output.splitlines() if "│ v1 " in line)
    v2 = next(line for line in result.output.splitlines() if "│ v2 " in line)
    assert "in service" in v1 and "w1" in v1
    assert "refused: artifact v2: checksum" in v2 and "in service" not in v2
    assert "worker w1 (g): serves v1" in result.output and "1 malformed record(s) skipped" in result.output
    rollback = CliRunner().invoke(cli.app, ["model", "rollback", "v2"])
    assert rollback.exit_code != 0 and "cannot be served" in str(rollback.exception)
