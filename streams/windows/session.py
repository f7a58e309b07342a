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

from dataclasses import dataclass
from datetime import timedelta

from streams.errors import DefinitionError
from streams.timeutil import duration_label, to_ms

__all__ = ["Session"]


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
