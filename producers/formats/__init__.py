"""Parsers for the event-log formats that ``producers.readers`` reads (one module per format)."""
