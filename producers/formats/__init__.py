"""Parsers for the event-log formats that ``streamrec.producers.readers`` reads (one module per format)."""

__all__ = ["avro", "base", "mapping", "movielens", "otto", "tabular"]
