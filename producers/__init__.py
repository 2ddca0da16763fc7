"""What writes events: log readers and presets, the synthetic generator, replay."""

__all__ = ["formats", "readers", "replay", "synthetic"]
