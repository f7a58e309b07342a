"""Lifetime windows: every event of the entity at or before t.

    events:  x   x     x  x        x
             [---------------------t]     value at t: all of them

The engine keeps a lifetime window as a grid with one pane that spans all
time (`LIFETIME_MS`), so every path (worker, online read, point-in-time
join) treats it like a tumbling window that never closes. Its state is never
dropped and its online key never expires: an entity that comes back after
its ttl finds its whole history. Event times are taken to be at or after the
Unix epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LIFETIME_MS", "Lifetime"]

LIFETIME_MS = 2**62  # one pane wider than any event time


@dataclass(frozen=True, slots=True, init=False)
class Lifetime:
    """A window that holds the entity's whole history."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        if args or kwargs:
            from streams.errors import DefinitionError

            given = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
            raise DefinitionError(f"Lifetime({given}): a lifetime window takes no size, it holds the entity's "
                                  "whole history; for the last hour write Sliding(\"1h\", \"5m\") or Tumbling(\"1h\")")

    @property
    def as_written(self) -> str:
        return "Lifetime()"

    @property
    def size_ms(self) -> int:
        return LIFETIME_MS

    @property
    def step_ms(self) -> int:
        return LIFETIME_MS

    @property
    def label(self) -> str:
        return "lifetime"

    def start_ms(self, t_ms: int) -> int:
        return 0
