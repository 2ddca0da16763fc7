"""Time units in milliseconds, the unit of every event timestamp (``Event.timestamp_ms``).

>>> DAY_MS == 24 * HOUR_MS == 86_400_000
True
"""

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

__all__ = ["DAY_MS", "HOUR_MS", "MINUTE_MS", "SECOND_MS"]
