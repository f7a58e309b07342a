"""Count, sum, mean, min, max and standard deviation: the arithmetic aggregations.

Sums are exact where floating point could mislead (see `_range_sums`), and every
form (add, merge, over_ranges, group_partials) lives in the one class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from streams.aggregations.base import AggregationBase, FoldMerge, fold_groups
from streams.aggregations.columns import EventColumn, FieldGroups, gather_ranges, reduce_ranges

__all__ = ["SUM", "Count", "Max", "Mean", "Min", "StdDev", "Sum", "exact_sum"]


class Count(AggregationBase):
    """Number of events, nulls included."""

    def combine(self, states: list) -> int:
        return sum(states)

    name = "count"
    counts_nulls = True
    needs_numbers = False
    needs_field = False

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        return pa.int64()

    def initial(self) -> int:
        return 0

    def add(self, state: int, value: Any, event_ms: int, offset: int) -> int:
        return state + 1

    def merge(self, older: int, newer: int) -> int:
        return older + newer

    def result(self, state: int) -> int:
        return state

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return hi - lo, np.ones(len(lo), dtype=bool)

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        return (hi - lo).tolist()


class Sum(AggregationBase, FoldMerge):
    """Sum of the field: [sum, 0.0] for integers; for floats the exact sum as two doubles (`exact_sum`)."""

    name = "sum"
    counts_nulls = False
    needs_numbers = True

    def initial(self) -> list:
        return [0, 0.0]

    def add(self, state: list, value: Any, event_ms: int, offset: int) -> list:
        if type(value) is int and type(state[0]) is int:
            state[0] += value
            return state
        return exact_sum([state[0], state[1], value])

    def merge(self, older: list, newer: list) -> list:
        if type(older[0]) is int and type(newer[0]) is int:
            return [older[0] + newer[0], 0.0]
        return exact_sum([*older, *newer])

    def combine(self, states: list) -> list:
        if all(type(s[0]) is int for s in states):
            return [sum(s[0] for s in states), 0.0]
        return exact_sum([part for s in states for part in s])

    def result(self, state: list) -> Any:
        return state[0] + state[1] if state[1] else state[0]

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _range_sums(column, lo, hi), np.ones(len(lo), dtype=bool)

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        column = values.column
        if column is None:
            return fold_groups(self, values, lo, hi)
        if column.is_integer:
            return [[s, 0.0] for s in _range_sums(column, lo, hi).tolist()]
        return [exact_sum(part) if part else [0, 0.0] for part in _valid_parts(values.objects, lo, hi)]


SUM = Sum()


def _valid_parts(objects: list, lo: np.ndarray, hi: np.ndarray) -> list[list]:
    return [[v for v in objects[a:b] if v is not None] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]


def exact_sum(parts: list) -> list:
    """[hi, lo]: the exact sum of `parts` as its correctly rounded value and the rounded rest.

    Exact whenever the sum fits in two doubles (any history short of values some 2**50 apart
    in size), so a partial sum is a function of the values it holds, not of the order or the
    batches they came in: a replay in other batches, or in two processes, stores the same bytes.
    """
    try:
        hi = math.fsum(parts)
        return [hi, math.fsum([*parts, -hi]) if math.isfinite(hi) else 0.0]
    except (OverflowError, ValueError):  # the sum overflows, or holds inf - inf
        return [sum(float(p) for p in parts), 0.0]


# Recursive summation errs by at most (n - 1) * eps * sum(|x|); where that bound could
# exceed this fraction of the sum itself, the range is summed again with math.fsum.
_SUM_DOUBT = 1e-11


def _range_sums(column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums of the valid values in each range: exact for integers, correctly rounded where doubtful."""
    if column.is_integer:
        prefix = column.prefix_sums
        return prefix[hi] - prefix[lo]
    x = column.zero_filled
    sums = reduce_ranges(np.add, x, lo, hi, 0.0)
    size = reduce_ranges(np.add, np.abs(x), lo, hi, 0.0)
    n = (hi - lo).astype(np.float64)
    doubtful = np.flatnonzero((n - 1) * np.finfo(np.float64).eps * size > _SUM_DOUBT * np.abs(sums))
    for i in doubtful:
        sums[i] = math.fsum(x[lo[i]:hi[i]])
    return sums


class Mean(AggregationBase, FoldMerge):
    """Arithmetic mean: [n, sum, rest], the sum kept as Sum keeps it."""

    name = "mean"
    counts_nulls = False
    needs_numbers = True

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        return pa.float64()

    def initial(self) -> list:
        return [0, 0, 0.0]

    def add(self, state: list, value: Any, event_ms: int, offset: int) -> list:
        return [state[0] + 1, *SUM.add([state[1], state[2]], value, event_ms, offset)]

    def merge(self, older: list, newer: list) -> list:
        return [older[0] + newer[0], *SUM.merge(older[1:], newer[1:])]

    def combine(self, states: list) -> list:
        return [sum(s[0] for s in states), *SUM.combine([s[1:] for s in states])]

    def result(self, state: list) -> float | None:
        if state[0] == 0:
            return None
        return (state[1] + state[2]) / state[0]

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = column.valid_count(lo, hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            return _range_sums(column, lo, hi) / n, n > 0

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        column = values.column
        if column is None:
            return fold_groups(self, values, lo, hi)
        sums = SUM.group_partials(values, lo, hi)
        return [[n, *total] for n, total in zip(column.valid_count(lo, hi).tolist(), sums, strict=True)]


class Min(AggregationBase):
    """Smallest value; None while empty."""

    def combine(self, states: list) -> Any:
        present = [s for s in states if s is not None]
        return min(present) if present else None

    name = "min"
    counts_nulls = False
    needs_numbers = False

    def initial(self) -> Any:
        return None

    def add(self, state: Any, value: Any, event_ms: int, offset: int) -> Any:
        return value if state is None or value < state else state

    def merge(self, older: Any, newer: Any) -> Any:
        if older is None:
            return newer
        if newer is None:
            return older
        return newer if newer < older else older

    def result(self, state: Any) -> Any:
        return state

    _ufunc = np.minimum

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        present = column.valid_count(lo, hi) > 0
        ordered, neutral = column.ordered_values(largest=self._ufunc is np.minimum)
        picked = reduce_ranges(self._ufunc, ordered, lo, hi, neutral)
        return column.decode(picked), present

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        column = values.column
        if column is None:
            return fold_groups(self, values, lo, hi)
        picked, present = self.over_ranges(column, lo, hi)
        return [v if p else None for v, p in zip(picked.tolist(), present.tolist(), strict=True)]


class Max(Min):
    """Largest value; None while empty."""

    name = "max"
    _ufunc = np.maximum

    def add(self, state: Any, value: Any, event_ms: int, offset: int) -> Any:
        return value if state is None or value > state else state

    def merge(self, older: Any, newer: Any) -> Any:
        if older is None:
            return newer
        if newer is None:
            return older
        return newer if newer > older else older

    def combine(self, states: list) -> Any:
        present = [s for s in states if s is not None]
        return max(present) if present else None


class StdDev(AggregationBase):
    """Population standard deviation: [n, mean, M2], Welford's update and Chan's merge."""

    name = "stddev"
    counts_nulls = False
    needs_numbers = True

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        return pa.float64()

    def initial(self) -> list:
        return [0, 0.0, 0.0]

    def add(self, state: list, value: Any, event_ms: int, offset: int) -> list:
        n = state[0] + 1
        delta = value - state[1]
        mean = state[1] + delta / n
        state[0], state[1] = n, mean
        state[2] += delta * (value - mean)
        return state

    def merge(self, older: list, newer: list) -> list:
        n_a, n_b = older[0], newer[0]
        if n_a == 0:
            return list(newer)
        if n_b == 0:
            return list(older)
        n = n_a + n_b
        delta = newer[1] - older[1]
        mean = older[1] + delta * n_b / n
        m2 = older[2] + newer[2] + delta * delta * n_a * n_b / n
        return [n, mean, m2]

    def combine(self, states: list) -> list:
        # the parallel form of Chan's merge over all the parts at once: the mean of the weighted
        # means, then each part's M2 plus its mean's weighted squared distance from it (fsum: the
        # same bits in whatever order the panes come)
        parts = [s for s in states if s[0]]
        if not parts:
            return self.initial()
        n = sum(p[0] for p in parts)
        mean = math.fsum([p[0] * p[1] for p in parts]) / n
        m2 = math.fsum([p[2] + p[0] * (p[1] - mean) * (p[1] - mean) for p in parts])
        return [n, mean, m2]

    def result(self, state: list) -> float | None:
        if state[0] == 0:
            return None
        return math.sqrt(max(state[2], 0.0) / state[0])

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, _, m2, present = _moments(column, lo, hi)
        out = np.zeros(len(lo))
        out[present] = np.sqrt(np.maximum(m2, 0.0) / n)
        return out, present

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        column = values.column
        if column is None or column.labels is not None:
            return fold_groups(self, values, lo, hi)
        n, mean, m2, present = _moments(column, lo, hi)
        out: list = [[0, 0.0, 0.0] for _ in range(len(lo))]
        for g, k, m, s in zip(np.flatnonzero(present).tolist(), n.astype(np.int64).tolist(), mean.tolist(),
                              m2.tolist(), strict=True):
            out[g] = [k, m, s]
        return out


def _moments(column: EventColumn, lo: np.ndarray, hi: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations (M2) of the ranges that hold a valid value, and which
    ranges those are: two passes over each range's values (mean, then corrected squared deviations)."""
    values, starts, lengths, present = gather_ranges(column, column.valid_floats, lo, hi)
    if not len(values):
        empty = np.zeros(0)
        return empty, empty, empty, present
    n = lengths.astype(np.float64)
    mean = np.add.reduceat(values, starts) / n
    dev = values - np.repeat(mean, lengths)
    drift = np.add.reduceat(dev, starts)
    m2 = np.add.reduceat(dev * dev, starts) - drift * drift / n
    return n, mean + drift / n, m2, present
