"""streamrec: a streaming real-time recommender (Kafka in, fresh lists out); this package is its CLI."""

__all__ = ["bench", "cli", "models", "stream", "consumers", "producers"]
