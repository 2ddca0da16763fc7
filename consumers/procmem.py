"""This process's resident memory as the kernel counts it for the running program: ``VmRSS`` (now) and
``VmHWM`` (its peak) from ``/proc/self/status``.

Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux keeps that figure across ``fork`` and ``execve``, so a
worker started by a bigger process (``streamrec demo`` after simulating and training, a benchmark holding
its workload) reports its parent's peak instead of its own (the demo's worker showed 838-841 MB that way,
while its own peak was 117 MB)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

__all__ = ["resident_mb"]


def _ru_maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024   # bytes on macOS, KiB elsewhere


def resident_mb(status: Path = Path("/proc/self/status")) -> tuple[float, float]:
    """(resident now, peak resident) of this process in MiB; both the inherited ``ru_maxrss`` figure where
    ``/proc`` is not there (it can then be a parent's peak)."""
    try:
        fields = {line.split(":", 1)[0]: line.split()[1] for line in status.read_text().splitlines()
                  if line.startswith(("VmRSS:", "VmHWM:"))}
        return round(int(fields["VmRSS"]) / 1024, 1), round(int(fields["VmHWM"]) / 1024, 1)
    except (OSError, KeyError, IndexError, ValueError):
        peak = round(_ru_maxrss_mb(), 1)
        return peak, peak
