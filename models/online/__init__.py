"""Online learners (river): reranker, features, feedback labels, drift, item table, MF, checkpoints."""

__all__ = ["reranker", "features", "feedback", "drift", "itemtable", "river_mf", "sources", "layer", "checkpoint"]
