"""Reduce repeated measurements to the figures the table shows: medians of wall and CPU time, and ratios.

Medians, not means: on a small shared VM a single descheduled exec can take ten times the others, and the
median is what a runtime sees most of the time.
"""

from __future__ import annotations

import statistics
from typing import Iterable, NamedTuple, Optional


class Usage(NamedTuple):
    """One measured exec (or group of execs): wall time and CPU time (user + sys of all children), seconds."""

    wall: float
    cpu: float

    def __add__(self, other: object) -> "Usage":  # type: ignore[override]
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(self.wall + other.wall, self.cpu + other.cpu)


def median_usage(samples: Iterable[Usage]) -> Usage:
    """Median wall and median CPU, taken independently; ValueError on no samples."""
    items = list(samples)
    if not items:
        raise ValueError("no samples to take a median of")
    return Usage(statistics.median(s.wall for s in items), statistics.median(s.cpu for s in items))


def total_usage(samples: Iterable[Usage]) -> Usage:
    """Sum of the samples (CPU of a burst: every call's children added up)."""
    total = Usage(0.0, 0.0)
    for sample in samples:
        total = total + sample
    return total


def ratio(ours: Optional[float], theirs: Optional[float]) -> Optional[float]:
    """ours / theirs, or None when either side is missing or theirs is zero."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs
