"""Contract of the online-learning checkpoint envelope (``online_state.avsc``): a hypothesis round trip
(golden bytes and error cases run for every schema in test_wire_format.py), and the envelope of real
checkpoint parts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.consumers.online import decode_checkpoint, encode_checkpoint
from streamrec.models.engine.recommender import EngineConfig, Recommender
from streamrec.models.online.layer import OnlineConfig
from streamrec.stream.serde import codec_for
from streamrec.stream.settings import Settings

texts = st.text(max_size=30)
online_states = st.fixed_dictionaries({
    "group": texts, "worker_id": texts, "written_at": st.integers(min_value=0, max_value=2**53),
    "river_version": texts, "format": st.integers(-2**31, 2**31 - 1),
    "events_applied": st.integers(-2**63, 2**63 - 1),
    "parts": st.lists(st.fixed_dictionaries({"name": texts, "encoding": st.sampled_from(["json", "npz", "pickle"]),
                                             "data": st.binary(max_size=300)}), max_size=5),
})


@settings(max_examples=150, deadline=None)
@given(online_states)
def test_round_trip(record: dict) -> None:  # type: ignore[type-arg]
    codec = codec_for("online_state")
    assert codec.decode(codec.encode(record)) == record


def test_the_envelope_carries_every_part_of_a_checkpoint() -> None:
    rec = Recommender(EngineConfig(reranker=True, drift_detector="adwin", mf="rating",
                                   online=OnlineConfig(item_table=100)))
    assert rec.online is not None
    parts = rec.online.checkpoint()
    meta, back = decode_checkpoint(encode_checkpoint(Settings(group="g"), "w", parts, 7))
    assert back == parts and {n for n, _, _ in parts} == {"items", "reranker", "drift", "mf"}
    assert {e for _, e, _ in parts} <= {"json", "npz"}                 # plain data, never pickle
    assert meta["group"] == "g" and meta["events_applied"] == 7 and meta["format"] == 2
