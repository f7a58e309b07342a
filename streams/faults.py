"""Failpoints: die at a named point, or lose named records, for tests that must hit an exact moment.

`RILLET_FAULT_<NAME>=N` makes the N-th pass through `hit("<name>")` end the
process at once, as SIGKILL would (no cleanup, no flush).
`RILLET_SKIP_<NAME>=A-B` makes passes A..B (1-based, counted across calls)
through `skipped("<name>", n)` come back as skipped, as a faulty delivery would
drop them. `RILLET_PAUSE_<NAME>_MS=D` makes each pass through `await paused("<name>")`
wait D ms, as a slow disk or network would (a moment that lasts long enough to watch).
Unset, a call costs one dictionary lookup.
"""

from __future__ import annotations

import os

__all__ = ["hit", "hit_later", "paused", "skipped"]

_counts: dict[str, int] = {}


def hit(name: str) -> None:
    """Count a pass through failpoint `name`; die on the configured pass."""
    target = os.environ.get(f"RILLET_FAULT_{name.upper()}")
    if not target:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(target):
        os._exit(137)


def hit_later(name: str) -> None:
    """`RILLET_FAULT_<NAME>_MS=D`: the first pass through `name` ends the process D ms later, whatever it is
    doing then (a kill while a send is in flight)."""
    delay = os.environ.get(f"RILLET_FAULT_{name.upper()}_MS")
    if not delay or _counts.get(name):
        return
    _counts[name] = 1
    import asyncio

    asyncio.get_running_loop().call_later(float(delay) / 1000, os._exit, 137)


def skipped(name: str, count: int) -> set[int]:
    """Which of the next `count` passes through `name` (as indexes 0..count-1) to treat as lost."""
    spec = os.environ.get(f"RILLET_SKIP_{name.upper()}")
    if not spec:
        return set()
    first, _, last = spec.partition("-")
    done = _counts.get(name, 0)
    _counts[name] = done + count
    return {i for i in range(count) if int(first) <= done + i + 1 <= int(last or first)}


async def paused(name: str) -> None:
    """`RILLET_PAUSE_<NAME>_MS=D`: each pass through `name` waits D ms (the event loop goes on meanwhile)."""
    delay = os.environ.get(f"RILLET_PAUSE_{name.upper()}_MS")
    if delay:
        import asyncio

        await asyncio.sleep(float(delay) / 1000)
