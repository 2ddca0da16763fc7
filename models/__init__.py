"""Everything that learns or ranks, with no Kafka: the base model, serving, online learners, engine, evaluation."""

__all__ = ["errors", "events", "decay", "timeunits", "base", "serving", "online", "engine", "evaluation"]
