"""Tumbling windows: fixed, epoch-aligned, non-overlapping.

    |----- w0 -----|----- w1 -----|----- w2 -----|
    0            size          2*size
                          ^ t
    value at t = events in [floor(t/size)*size, t]

The start is inclusive; the value grows until the window closes at the next
multiple of `size` (exclusive), and is final once the watermark passes that
end by the view's grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from streams.errors import DefinitionError
from streams.timeutil import duration_label, to_ms

__all__ = ["Tumbling"]


@dataclass(frozen=True, slots=True, init=False)
class Tumbling:
    """A tumbling window of `size` (timedelta, '5m', or int milliseconds)."""

    size_ms: int

    def __init__(self, size: timedelta | int | str) -> None:
        size_ms = to_ms(size, what="Tumbling size")
        if size_ms <= 0:
            raise DefinitionError(f"Tumbling size must be positive, got {size!r}")
        object.__setattr__(self, "size_ms", size_ms)

    @property
    def step_ms(self) -> int:
        """Panes are as wide as the window itself."""
        return self.size_ms

    @property
    def label(self) -> str:
        return duration_label(self.size_ms)

    @property
    def as_written(self) -> str:
        """How a user writes this window (error messages; the repr stays as fingerprints stored it)."""
        return f'Tumbling("{duration_label(self.size_ms)}")'

    def start_ms(self, t_ms: int) -> int:
        """First event time (inclusive) aggregated into the value at `t_ms`."""
        return (t_ms // self.size_ms) * self.size_ms
