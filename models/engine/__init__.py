"""The engine a worker and the evaluation both drive: sources, one scorer, then stages."""

__all__ = ["recommender"]
