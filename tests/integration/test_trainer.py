"""The trainer process on a real broker: train from the topic, gate, publish; retrain on request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from streamrec.consumers.trainer import Trainer, read_topic_events, serving_artifact
from streamrec.e2e import wait_until
from streamrec.models.base.training import TrainConfig
from streamrec.producers.replay import replay
from streamrec.producers.synthetic import generate
from streamrec.stream.modelbus import model_log, send_control
from streamrec.stream.settings import Settings


def test_trainer_publishes_then_retrains_on_request(settings: Settings, tmp_path: Path) -> None:
    start = int(time.time() * 1000) - 3 * 86_400_000
    events = generate(users=200, items=300, events=6000, seed=3, start_ms=start, days=2.0)
    replay(events, settings)
    assert len(read_topic_events(settings)) == 6000
    cfg = TrainConfig(dim=16, epochs=2, batch_size=256, n_random_negatives=32, seed=0)
    trainer = Trainer(settings, cfg, every_s=3600.0, window_s=None, out_root=str(tmp_path), tolerance=0.5)
    outcomes: list = []  # type: ignore[type-arg]
    thread = threading.Thread(target=lambda: outcomes.extend(trainer.run(max_runs=2)), daemon=True)
    thread.start()
    try:
        # the first training starts at once; the second waits for the schedule (an hour) or a request
        assert wait_until(lambda: model_log(settings)[1] is not None, 120)
        first_version = model_log(settings)[1]
        send_control(settings, "RETRAIN_REQUEST", "", {"reason": "test"})
        thread.join(120)
        assert not thread.is_alive(), "the retrain request did not wake the trainer"
    finally:
        trainer.stop_event.set()
    first, second = outcomes
    assert first.published and first.version == first_version
    assert first.decision.reason == "no model in service"
    assert first.metrics["hr@10"] > first.metrics["popularity_hr@10"]
    assert second.decision.serving is not None  # gated against the model in service
    served = serving_artifact(settings)
    assert served is not None
    assert served.version == (second.version if second.published else first.version)
