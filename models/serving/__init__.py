"""The per-batch serving path: user state, candidate plumbing, item statistics, ranking."""

__all__ = ["state", "candidates", "covisit", "trending", "ranking"]
