"""approx_percentile(q): quantiles from a DDSketch-style log-bucket sketch, the same number on every path.

The bucket rule (semantics.md), in exact arithmetic: with gamma the fraction 101/99,
a positive x falls in bucket i when gamma^(i-1) < x <= gamma^i, which stands for
2·gamma^i/(gamma + 1) = 101^i / (100·99^(i-1)), rounded once to the nearest double,
within 1% of every value in it; a negative x in the mirrored bucket of -x; zero in
its own. The sketch is the bucket counts, which add exactly, so a partial merges
by addition and the value is a function of the multiset of values. The rank of
the lower q-quantile is ceil(q·n) with q the decimal as written (0.28·25 = 7, where
doubles give 7.000000000000001 and so the 8th value).

Two properties make every path return the same bits:

- the bucket of a value is computed by one function (`bucket_indices`):
  NumPy's log for speed, and an exact comparison with gamma^i in integers
  wherever the quotient lies so near an integer that rounding could move it
  across a bucket edge;
- the mapping is monotone, so the bucket holding the r-th smallest value is
  the bucket of the r-th smallest value: the offline join needs no sketch,
  only an order statistic per range, mapped through the same function.

Non-finite values (NaN, ±inf) have no bucket and are skipped, like nulls.
The `ddsketch` package maps values the same way, but ranks by q·(n - 1)
where the contract asks for the lower quantile, rank ceil(q·n), and adds
one value per Python call; this is a few lines of NumPy instead.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from streams.aggregations.base import AggregationBase
from streams.aggregations.columns import EventColumn, FieldGroups, gather_ranges

__all__ = ["GAMMA", "GAMMA_EXACT", "RELATIVE_ACCURACY", "ApproxPercentile", "bucket_keys", "bucket_value",
           "exact_bucket", "rank_of"]

RELATIVE_ACCURACY = 0.01
GAMMA_EXACT = Fraction(101, 99)  # (1 + 0.01) / (1 - 0.01), as the contract means it: a fraction
GAMMA = float(GAMMA_EXACT)
LOG_GAMMA = math.log(GAMMA)
_NEAR_EDGE = 1e-6  # quotients this close to an integer are decided exactly (rounding moves them by < 1e-9)


@lru_cache(maxsize=4096)
def _gamma_power(i: int) -> Fraction:
    return GAMMA_EXACT**i


def exact_bucket(x: float) -> int:
    """The i with gamma^(i-1) < x <= gamma^i, for positive finite x, in exact arithmetic."""
    exact = Fraction(x)
    i = math.ceil(math.log(x) / LOG_GAMMA)
    while exact <= _gamma_power(i - 1):
        i -= 1
    while exact > _gamma_power(i):
        i += 1
    return i


def bucket_indices(magnitudes: np.ndarray) -> np.ndarray:
    """The bucket of each positive finite x: NumPy's log, decided exactly near an edge (module docstring)."""
    z = np.log(magnitudes) / LOG_GAMMA
    out = np.ceil(z).astype(np.int64)
    for i in np.flatnonzero(np.abs(z - np.rint(z)) < _NEAR_EDGE).tolist():
        out[i] = exact_bucket(float(magnitudes[i]))
    return out


# A bucket key packs (sign, i) in one int, so a sketch is one {key: count} map: key = 4*i + kind,
# kind 0 for a negative value's bucket, 1 for zero (i = 0), 2 for a positive value's.
def bucket_keys(values: np.ndarray) -> np.ndarray:
    """The bucket key of each finite value (callers drop non-finite ones first)."""
    values = np.asarray(values, dtype=np.float64)
    keys = np.ones(len(values), dtype=np.int64)  # zero
    nonzero = np.flatnonzero(values != 0)
    if len(nonzero):
        picked = values[nonzero]
        keys[nonzero] = 4 * bucket_indices(np.abs(picked)) + np.where(picked > 0, 2, 0)
    return keys


@lru_cache(maxsize=1 << 16)
def bucket_value(key: int) -> float:
    """The value a bucket stands for: ±2·gamma^i/(gamma + 1), or 0.0."""
    kind, i = key % 4, key // 4
    if kind == 1:
        return 0.0
    value = float(2 * _gamma_power(i) / (GAMMA_EXACT + 1))  # exact, then rounded once
    return value if kind == 2 else -value


def decimal_fraction(q: float) -> Fraction:
    """q as the decimal it was written as: 0.28 is 7/25, not the double nearest it."""
    return Fraction(repr(q))


def rank_of(q: float, n: int) -> int:
    """The 1-based rank of the lower q-quantile of n values: ceil(q·n) in exact arithmetic, at least 1."""
    return max(1, math.ceil(decimal_fraction(q) * n))


def ranks_of(q: float, counts: np.ndarray) -> np.ndarray:
    """`rank_of` for many counts at once (integer arithmetic: ceil(a·n/b) = -((-a·n) // b))."""
    exact = decimal_fraction(q)
    a, b = exact.numerator, exact.denominator
    if a * int(counts.max(initial=0)) < 2**62:
        return np.maximum(1, -((-a * counts.astype(np.int64)) // b))
    return np.array([rank_of(q, int(n)) for n in counts.tolist()], dtype=np.int64)


def _finite(values: list) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return array[np.isfinite(array)]


class _Sketch(AggregationBase):
    """The partial state every quantile of a field shares: {bucket key: count}."""

    name = "approx_percentile"
    counts_nulls = False
    needs_numbers = True

    def initial(self) -> dict:
        return {}

    def add(self, state: dict, value: Any, event_ms: int, offset: int) -> dict:
        finite = _finite([value])
        if len(finite):
            key = int(bucket_keys(finite)[0])
            state[key] = state.get(key, 0) + 1
        return state

    def merge(self, older: dict, newer: dict) -> dict:
        return self.combine([older, newer])

    def combine(self, states: list) -> dict:
        out: Counter = Counter()
        for state in states:
            out.update(state)
        return dict(out)

    def result(self, state: dict) -> Any:
        raise NotImplementedError("a sketch is read through ApproxPercentile(q)")

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        column = values.column
        out: list = [{} for _ in range(len(lo))]
        if column is None or column.labels is not None:
            objects = values.objects
            for g, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
                finite = _finite(objects[a:b])
                out[g] = dict(Counter(bucket_keys(finite).tolist()))
            return out
        group = np.repeat(np.arange(len(lo), dtype=np.int64), hi - lo)
        x = column.values.astype(np.float64)
        keep = column.valid & np.isfinite(x)
        if not keep.any():
            return out
        packed, counts = np.unique(group[keep] * _KEY_SPAN + (bucket_keys(x[keep]) + _KEY_SPAN // 2),
                                   return_counts=True)
        owners, found = packed // _KEY_SPAN, packed % _KEY_SPAN - _KEY_SPAN // 2
        for g, key, n in zip(owners.tolist(), found.tolist(), counts.tolist(), strict=True):
            out[g][key] = n
        return out


SKETCH = _Sketch()
_KEY_SPAN = 1 << 20  # bucket keys of doubles lie within ±4 * 38,000


class ApproxPercentile(AggregationBase):
    """The lower q-quantile's bucket value (semantics.md); every quantile of a field reads one sketch."""

    counts_nulls = False
    needs_numbers = True

    def __init__(self, q: float) -> None:
        self.q = q
        self.name = f"approx_percentile({q!r})"

    @property
    def label(self) -> str:
        return "p" + f"{self.q * 100:.10g}".replace(".", "_")

    @property
    def state_agg(self) -> _Sketch:
        return SKETCH

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        return pa.float64()

    def result(self, state: dict) -> float | None:
        n = sum(state.values())
        if not n:
            return None
        rank, seen = rank_of(self.q, n), 0
        for key in sorted(state, key=bucket_value):
            seen += state[key]
            if seen >= rank:
                return bucket_value(key)
        raise AssertionError("unreachable: the ranks sum to n")

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, _, lengths, _ = gather_ranges(column, column.valid_floats, lo, hi)
        out = np.zeros(len(lo))
        counts = np.zeros(len(lo), dtype=np.int64)
        if not len(x):
            return out, counts > 0
        segment = np.repeat(np.flatnonzero(column.valid_count(lo, hi) > 0), lengths)
        finite = np.isfinite(x)
        x, segment = x[finite], segment[finite]
        order = np.lexsort((x, segment))
        x, segment = x[order], segment[order]
        counts = np.bincount(segment, minlength=len(lo))
        present = counts > 0
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        ranks = ranks_of(self.q, counts[present])
        picked = x[first[present] + ranks - 1]
        out[present] = [bucket_value(k) for k in bucket_keys(picked).tolist()]
        return out, present
