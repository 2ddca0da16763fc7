"""One fixed record per schema; their encodings are the golden bytes in golden/."""

SAMPLES = {
    "event": {"event_id": "e-1", "user_id": "u-42", "item_id": "i-7", "event_type": "ADD_TO_CART",
              "timestamp": 1700000000123, "session_id": "s-9", "value": 19.99, "context": {"device": "ios"}},
    "recommendation": {"user_id": "u-42", "items": [{"item_id": "i-1", "score": 0.75, "source": "ann",
                                                      "reason": "ann"},
                                                     {"item_id": "i-2", "score": 0.5, "source": "covisit",
                                                      "reason": "covisit:i-7"}],
                       "trigger_event_id": "e-1", "trigger_timestamp": 1700000000123, "trigger_partition": 2,
                       "trigger_offset": 1234, "emitted_at": 1700000000140, "model_version": "m1",
                       "index_version": "m1/flat"},
    "user_state": {"user_id": "u-42", "recent_items": ["i-7", "i-3"], "recent_types": [2, 1],
                   "recent_ts": [1700000000123, 1700000000000], "recent_strength": [2.0, 1.0],
                   "seen": ["i-7", "i-3"], "purchased": [], "counts": {"CLICK": 1, "ADD_TO_CART": 1},
                   "last_offset": 1234, "last_ts": 1700000000123, "last_event_id": "e-1", "shown": ["i-1"]},
    "model_chunk": {"version": "20261124T000000000Z", "kind": "CHUNK", "file": "item_embeddings.npy",
                    "index": 3, "count": 9, "data": b"\x00\x01\x02", "sent_at": 1700000000000},
    "online_state": {"group": "streamrec-worker", "worker_id": "worker-1", "written_at": 1700000000000,
                     "river_version": "0.26.1", "format": 1, "events_applied": 123456,
                     "parts": [{"name": "reranker", "encoding": "json", "data": b'{"pairs": 3}'},
                               {"name": "river", "encoding": "pickle", "data": b"\x80\x05N."}]},
}
