"""Failpoints: die at a named point, for crash tests that must hit an exact moment.

`RILLET_FAULT_<NAME>=N` makes the N-th pass through `hit("<name>")` end the
process at once, as SIGKILL would (no cleanup, no flush). Unset, a pass costs
one dictionary lookup.
"""

from __future__ import annotations

import os

__all__ = ["hit"]

_counts: dict[str, int] = {}


def hit(name: str) -> None:
    """Count a pass through failpoint `name`; die on the configured pass."""
    target = os.environ.get(f"RILLET_FAULT_{name.upper()}")
    if not target:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(target):
        os._exit(137)
