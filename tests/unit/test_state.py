"""User state: caps, the changelog record (schema and round trip), user vectors, the bounded store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.models.base.encoder import TYPE_INDEX, TYPE_NAMES, UserEncoder
from streamrec.models.errors import ConfigError, InputError
from streamrec.models.serving.candidates import encode_user, encode_users
from streamrec.models.serving.state import IdWindow, StateLimits, UserState, UserStore, Watermark

SCHEMA = Path(__file__).resolve().parents[2] / "stream" / "schemas" / "user_state.avsc"
CLICK, PURCHASE, VIEW = TYPE_INDEX["CLICK"], TYPE_INDEX["PURCHASE"], TYPE_INDEX["VIEW"]


def state_with(events: list[tuple[str, int]], limits: StateLimits | None = None, user: str = "u") -> UserState:
    s = UserState(user)
    for k, (item, t) in enumerate(events):
        s.observe(item, t, 1_000 * (k + 1), 1.0 + t, limits or StateLimits(), event_id=f"e{k}", offset=k)
    return s


def test_recent_items_are_most_recent_first_and_capped() -> None:
    s = state_with([(f"i{k}", CLICK) for k in range(8)], StateLimits(recent=5))
    assert s.recent_items == ("i7", "i6", "i5", "i4", "i3")
    assert s.recent_ts.tolist() == [8000, 7000, 6000, 5000, 4000]
    assert s.recent_types.tolist() == [CLICK] * 5 and s.recent_strength.tolist() == [2.0] * 5
    assert (s.last_offset, s.last_ts, s.last_event_id) == (7, 8000, "e7")


def test_seen_drops_the_oldest_and_moves_a_retouched_item_to_the_end() -> None:
    s = state_with([("a", VIEW), ("b", VIEW), ("c", VIEW), ("a", VIEW), ("d", VIEW)], StateLimits(seen=3))
    assert s.seen == ("c", "a", "d")


def test_purchased_is_a_bounded_set_and_counts_follow_types() -> None:
    s = state_with([("a", PURCHASE), ("a", PURCHASE), ("b", PURCHASE), ("c", PURCHASE), ("d", CLICK)],
                   StateLimits(purchased=2))
    assert s.purchased == ("b", "c")
    assert s.counts[PURCHASE] == 4 and s.counts[CLICK] == 1


def test_invalid_limits_say_what_to_set() -> None:
    with pytest.raises(ConfigError, match="set it to 1 or more"):
        StateLimits(recent=0)


def test_record_has_exactly_the_schema_fields_and_encodes_with_fastavro() -> None:
    schema = json.loads(SCHEMA.read_text())
    rec = state_with([("a", CLICK), ("b", PURCHASE)]).to_record()
    rec["shown"] = ["x", "y"]
    assert list(rec) == [f["name"] for f in schema["fields"]]
    parsed = fastavro.parse_schema(schema)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, rec)
    buf.seek(0)
    back = fastavro.schemaless_reader(buf, parsed, parsed)
    assert UserState.from_record(back).to_record() == rec


item_ids = st.text(alphabet="abcdefgh0123456789-", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(item_ids, st.sampled_from(range(len(TYPE_NAMES))),
                          st.floats(0.0, 10.0, width=32)), max_size=70),
       st.lists(item_ids, max_size=25))
def test_record_round_trip(events: list[tuple[str, int, float]], shown: list[str]) -> None:
    s = UserState("user-1")
    for k, (item, t, strength) in enumerate(events):
        s.observe(item, t, 1_700_000_000_000 + k, strength, StateLimits(), event_id=f"e{k}", offset=k)
    s.shown = tuple(shown)
    rec = s.to_record()
    again = UserState.from_record(rec)
    assert again.to_record() == rec
    assert again.recent_meta == s.recent_meta


def test_malformed_records_raise_input_error() -> None:
    rec = state_with([("a", CLICK)]).to_record()
    with pytest.raises(InputError, match="differ in length"):
        UserState.from_record({**rec, "recent_ts": []})
    with pytest.raises(InputError, match="user_state.avsc"):
        UserState.from_record({k: v for k, v in rec.items() if k != "seen"})


def test_from_record_cuts_to_the_limits_and_maps_unknown_types_to_other() -> None:
    rec = state_with([(f"i{k}", CLICK) for k in range(10)]).to_record()
    rec["recent_types"][0] = 99
    s = UserState.from_record(rec, StateLimits(recent=4, seen=3))
    assert s.recent_items == ("i9", "i8", "i7", "i6") and s.seen == ("i7", "i8", "i9")
    assert s.recent_types.tolist()[0] == TYPE_INDEX["OTHER"]


def test_batched_encoding_matches_the_reference_and_skips_unknown_items() -> None:
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(30, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index_of = {f"i{k}": k for k in range(30)}
    enc = UserEncoder(pos_weight=np.linspace(1.0, 0.2, 6).astype(np.float32),
                      W=rng.normal(size=(8, 8)).astype(np.float32), b=rng.normal(size=8).astype(np.float32),
                      half_life_s=5.0)
    users = [state_with([(f"i{rng.integers(0, 40)}", int(rng.integers(0, 6))) for _ in range(n)], user=f"u{n}")
             for n in (1, 3, 9, 20)] + [state_with([("new-item", CLICK)]), UserState("empty")]
    vecs, has = encode_users(users, enc, index_of, emb)
    for s, v, h in zip(users, vecs, has, strict=True):
        ref = encode_user(s, enc, index_of, emb)
        assert h == (ref is not None)
        if ref is not None:
            np.testing.assert_allclose(v, ref, rtol=1e-4, atol=1e-5)
    assert has.tolist()[-2:] == [False, False]


def test_store_evicts_the_least_recently_touched_user_and_counts_it() -> None:
    store = UserStore(max_users=3)
    for k, u in enumerate(["a", "b", "c"]):
        store.touch(u, partition=k % 2).observe("i", CLICK, 1_000 + k, 1.0, store.limits)
    store.touch("a", 0).observe("j", CLICK, 2_000, 1.0, store.limits)       # a is fresh again
    store.touch("d", 1).observe("i", CLICK, 2_001, 1.0, store.limits)
    assert len(store) == 3 and store.evicted_lru == 1
    assert store.get("b") is None and store.get("a") is not None
    assert store.partition_of("d") == 1 and store.get("d", partition=0) is None


def test_store_ttl_runs_on_event_time() -> None:
    store = UserStore(ttl_ms=10_000)
    for k in range(5):
        store.touch(f"u{k}", 0).observe("i", CLICK, k * 5_000, 1.0, store.limits)
    assert store.expire(now_ms=22_000) == 3          # last events at 0, 5000, 10000 are older than 12000
    assert store.evicted_ttl == 3 and sorted(s.user_id for s in store.states()) == ["u3", "u4"]
    assert UserStore(ttl_ms=0).expire(10**12) == 0


def test_store_drop_partition_put_remove_and_memory_estimate() -> None:
    store = UserStore()
    for k in range(10):
        store.touch(f"u{k}", k % 3).observe("i", CLICK, k, 1.0, store.limits)
    assert store.drop_partition(0) == 4 and len(store) == 6 and store.partitions() == [1, 2]
    restored = UserState.from_record(store.get("u1").to_record())          # type: ignore[union-attr]
    store.put(restored, 2)
    assert store.get("u1") is restored and store.partition_of("u1") == 2 and len(store) == 6
    assert store.remove("u1") and not store.remove("u1") and len(store) == 5
    assert 200 * 5 < store.memory_bytes() < 5_000 * 5


def test_id_window_forgets_the_oldest_ids() -> None:
    w = IdWindow(3)
    assert [w.check_and_add(x) for x in "abcab"] == [False, False, False, True, True]
    assert [w.check_and_add(x) for x in "dea"] == [False, False, False]    # a fell out of the window
    assert len(w) == 3


def test_the_watermark_of_small_batches_equals_the_vectorised_ring() -> None:
    """Batches of up to ``Watermark.SMALL`` events are written into the ring one by one: the same ring,
    counts and watermark as the numpy path (``SMALL = 0``), for batches below, at and above the window."""
    rng = np.random.default_rng(2)
    fast = Watermark(window=50, min_events=10, clock=lambda: 10**13, refresh=3)
    ref = Watermark(window=50, min_events=10, clock=lambda: 10**13, refresh=3)
    ref.SMALL = 0
    for b in range(300):
        ts = (1_000 * b + rng.integers(-5_000, 5_000, size=int(rng.choice([0, 1, 2, 7, 16, 60])))).tolist()
        batch = ts if b % 2 else tuple(ts)
        assert fast.advance(b % 3, batch) == ref.advance(b % 3, batch)
    for p in range(3):
        assert np.array_equal(fast._ring[p], ref._ring[p]) and fast._seen[p] == ref._seen[p] > 500
        assert fast.get(p) == ref.get(p) > 0
