"""Sliding (hopping) windows: `size` long, advancing by `step`, epoch-aligned.

    steps:   |s0 |s1 |s2 |s3 |s4 |      size = 3 * step
                     [-----------t]     value at t: the 3 most recent steps,
                                        the last one up to and including t

    value at t = events in [floor(t/step)*step + step - size, t]

The state keeps one partial aggregate per step (a pane); a value merges the
`size/step` most recent panes, so a window decays between events as old
panes fall out: that decay is what `as_of(t)` reads. The start is inclusive;
each step's value is final once the watermark passes its end by the grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from streams.errors import DefinitionError
from streams.timeutil import duration_label, to_ms

__all__ = ["Sliding"]


@dataclass(frozen=True, slots=True, init=False)
class Sliding:
    """A sliding window of `size`, advancing every `step` (size a whole multiple of step)."""

    size_ms: int
    step_ms: int

    def __init__(self, size: timedelta | int | str, step: timedelta | int | str) -> None:
        size_ms = to_ms(size, what="Sliding size")
        step_ms = to_ms(step, what="Sliding step")
        if step_ms <= 0 or size_ms <= 0:
            raise DefinitionError(f"Sliding size and step must be positive, got {size!r}, {step!r}")
        if size_ms % step_ms:
            raise DefinitionError(
                f"Sliding size {duration_label(size_ms)} is not a whole multiple of step "
                f"{duration_label(step_ms)}; pick a step that divides the size"
            )
        object.__setattr__(self, "size_ms", size_ms)
        object.__setattr__(self, "step_ms", step_ms)

    @property
    def label(self) -> str:
        return f"{duration_label(self.size_ms)}_every_{duration_label(self.step_ms)}"

    @property
    def as_written(self) -> str:
        return f'Sliding("{duration_label(self.size_ms)}", "{duration_label(self.step_ms)}")'

    def start_ms(self, t_ms: int) -> int:
        """First event time (inclusive) aggregated into the value at `t_ms`."""
        return (t_ms // self.step_ms) * self.step_ms + self.step_ms - self.size_ms
