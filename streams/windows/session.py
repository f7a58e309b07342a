"""Session windows: runs of one entity's events no more than `gap` apart.

    events:  x  x x        x   x            x
             |-session 1-|  |--s2--|         |s3
                       >gap         >gap

The value at t aggregates the session that holds the entity's latest event at
or before t. A late (within grace) event can extend a session, open one
between two others, or bridge two into one; the state keeps every session a
non-late event could still touch, so the value always matches the sessions
that the full set of events defines. A session value also reports its
`start` and `end` (first and last event times) and whether it is `active`
(`t - end <= gap`).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from streams.errors import DefinitionError
from streams.timeutil import duration_label, to_ms

__all__ = ["Session", "merge_into_sessions"]


@dataclass(frozen=True, slots=True, init=False)
class Session:
    """A session window that closes after `gap` without events."""

    gap_ms: int

    def __init__(self, gap: timedelta | int | str) -> None:
        gap_ms = to_ms(gap, what="Session gap")
        if gap_ms <= 0:
            raise DefinitionError(f"Session gap must be positive, got {gap!r}")
        object.__setattr__(self, "gap_ms", gap_ms)

    @property
    def label(self) -> str:
        return f"session_{duration_label(self.gap_ms)}"

    @property
    def as_written(self) -> str:
        return f'Session("{duration_label(self.gap_ms)}")'


def merge_into_sessions(sessions: list[list], aggs: list[Any], gap: int, start: int, end: int,
                        partials: list) -> list[list]:
    """Sessions (disjoint, sorted, more than `gap` apart) with a run of events [start, end] added:
    the run extends, joins or bridges every session within `gap` of it, or starts one of its own."""
    merged = [start, end, partials]
    starts = [sess[0] for sess in sessions]
    lo = bisect_left(starts, start - gap)  # those within gap of the run are contiguous
    while lo > 0 and sessions[lo - 1][1] >= start - gap:
        lo -= 1
    hi = lo
    while hi < len(sessions) and sessions[hi][0] <= end + gap:
        hi += 1
    for sess in sessions[lo:hi]:
        merged = [min(sess[0], merged[0]), max(sess[1], merged[1]),
                  [agg.merge(a, b) for agg, a, b in zip(aggs, sess[2], merged[2], strict=True)]]
    return [*sessions[:lo], merged, *sessions[hi:]]
