"""The processes that read Kafka: the worker (loop, delivery, rebalance, changelog, model sync), the trainer."""

__all__ = ["changelog", "decode", "delivery", "engine", "health", "modelsync", "online", "rebalance", "stats",
           "trainer", "worker"]
