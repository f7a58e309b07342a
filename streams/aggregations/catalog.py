"""Every aggregation by name, and `get_aggregation`, which reads a name with its parameter.

Names are what a `Feature` says: `"sum"`, `"last_k(5)"`, `"top_k(3)"`,
`"approx_percentile(0.99)"`, `"decayed_sum(1h)"`. One instance per name, so
features that say the same share one slot of the window state.
"""

from __future__ import annotations

import re
from functools import cache

from streams.aggregations.base import Aggregation
from streams.aggregations.distinct import CountDistinct
from streams.aggregations.numeric import SUM, Count, Max, Mean, Min, StdDev
from streams.aggregations.over_time import Age, DecayedSum
from streams.aggregations.percentiles import ApproxPercentile
from streams.aggregations.picks import First, FirstK, Last, LastK, TopK
from streams.errors import DefinitionError
from streams.timeutil import to_ms

__all__ = ["AGGREGATIONS", "PARAMETERIZED", "get_aggregation"]

AGGREGATIONS: dict[str, Aggregation] = {
    agg.name: agg
    for agg in (Count(), SUM, Mean(), Min(), Max(), Last(), StdDev(), CountDistinct(), First(), Age())
}

_MAX_K = 1000


def _k(name: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= _MAX_K:
        raise DefinitionError(f"{name}({text}): k must be a whole number from 1 to {_MAX_K}")
    return int(text)


def _quantile(text: str) -> ApproxPercentile:
    try:
        q = float(text)
    except ValueError:
        q = -1.0
    if not 0 < q <= 1:
        raise DefinitionError(f"approx_percentile({text}): q must be a number in (0, 1], e.g. 0.99")
    return ApproxPercentile(q)


def _half_life(text: str) -> DecayedSum:
    value: int | str = int(text) if text.isdigit() else text.strip("'\"")
    half_life = to_ms(value, what=f"decayed_sum({text}) half-life")
    if half_life <= 0:
        raise DefinitionError(f"decayed_sum({text}): the half-life must be positive")
    return DecayedSum(half_life, str(value))


PARAMETERIZED = {
    "last_k": lambda text: LastK(_k("last_k", text)),
    "first_k": lambda text: FirstK(_k("first_k", text)),
    "top_k": lambda text: TopK(_k("top_k", text)),
    "approx_percentile": _quantile,
    "decayed_sum": _half_life,
}

_EXAMPLES = {"last_k": "last_k(5)", "first_k": "first_k(5)", "top_k": "top_k(3)",
             "approx_percentile": "approx_percentile(0.99)", "decayed_sum": "decayed_sum(1h)"}
_CALL = re.compile(r"^\s*(\w+)\s*\(\s*([^()]*?)\s*\)\s*$")


@cache
def get_aggregation(name: str) -> Aggregation:
    """The aggregation called `name` (with its parameter, e.g. `last_k(5)`); the error lists those that exist."""
    if name in AGGREGATIONS:
        return AGGREGATIONS[name]
    call = _CALL.match(name)
    if call and call.group(1) in PARAMETERIZED:
        return PARAMETERIZED[call.group(1)](call.group(2))
    if name in PARAMETERIZED:
        raise DefinitionError(f"aggregation {name!r} takes a parameter, e.g. {_EXAMPLES[name]}")
    known = [*AGGREGATIONS, *(f"{p}(...)" for p in PARAMETERIZED)]
    raise DefinitionError(f"aggregation {name!r} does not exist; use one of: {', '.join(known)}")
