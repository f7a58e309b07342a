"""Aggregations as mergeable partial states: one small interface for all.

Every aggregation has an initial state, adds one value, merges two partial
states and turns a state into its result (style habit 3). States are plain
numbers, lists and bytes so that msgpack can store them in the changelog and
in Redis unchanged. Windows hold one state per pane or session and merge
panes when evaluated; no aggregation is computed anywhere else.

Null values never reach `add` except for `count`, which counts events.

Each class also has two vectorized forms. `over_ranges`: the aggregation's
result over many ranges of a time-sorted event log at once, for the offline
point-in-time join. `group_partials`: one partial state per group of a batch's
events (one entity's events in one pane or session), which the engine then
merges into the stored partials, so a batch costs Python work per group, not
per event and feature. Keeping every form in one class keeps one definition
per aggregation; the oracle tests hold all of them to semantics.md.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from functools import lru_cache
from hashlib import blake2b
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from streams.kernel.event_columns import EventColumn, FieldGroups, gather_ranges, reduce_ranges, sorted_unique

__all__ = ["SUM", "Aggregation", "AggregationBase", "Count", "CountDistinct", "Max", "Mean", "Min", "StdDev", "Sum",
           "fold_groups"]


class Aggregation(Protocol):
    """The interface every aggregation implements."""

    name: str
    counts_nulls: bool  # True only for `count` and `age`: nulls are events too
    needs_field: bool
    takes_field: bool
    lifetime_only: bool
    reads_time: bool
    label: str
    state_agg: Aggregation
    needs_numbers: bool  # sum, mean, stddev: a definition over a non-numeric field is refused at load

    def initial(self) -> Any: ...
    def add(self, state: Any, value: Any, event_ms: int, offset: int) -> Any: ...
    def merge(self, older: Any, newer: Any) -> Any: ...
    def combine(self, states: list) -> Any: ...
    def result(self, state: Any) -> Any: ...
    # Aggregations whose value moves with the read time (age, decayed_sum) set `reads_time` and
    # give `result_at(state, t_ms)` and `over_ranges_at(column, lo, hi, times, t_ms)` instead.
    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Results over the log ranges [lo, hi), as (values, present); absent results are null."""
        ...
    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        """One partial state per group [lo, hi) of a batch's events: `initial()` folded with `add`.

        The groups tile the values, in order: lo[0] == 0, hi[i] == lo[i + 1], hi[-1] == len(values).
        """
        ...



class AggregationBase:
    """What an aggregation is unless it says otherwise: the defaults of the interface's descriptive parts."""

    name: str
    needs_field = True  # False for count and age, which count events, not values
    takes_field = True  # False for age: the entity's first event has no field
    lifetime_only = False  # age and decayed_sum: defined over the entity's whole history only
    reads_time = False

    @property
    def label(self) -> str:
        """The aggregation's part of a default feature name (`amount_{label}_5m`)."""
        return self.name

    @property
    def state_agg(self) -> Aggregation:
        """The aggregation whose partial state this one reads: itself, or one shared by several
        outputs (every quantile of a field reads one sketch)."""
        return self  # type: ignore[return-value]

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        """The value's Arrow type in training data, given the field's."""
        return field_type


def fold_groups(agg: Aggregation, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
    """`group_partials` by the definition itself: `add` each value of each group, in order.

    The form for types with no column (booleans, arrays) and for aggregations whose
    per-value step is already a hash lookup (count_distinct).
    """
    objects, event_ms, offsets = values.objects, values.event_ms.tolist(), values.offsets.tolist()
    add, skip_nulls, out = agg.add, not agg.counts_nulls, []
    for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
        state = agg.initial()
        for i in range(a, b):
            value = objects[i]
            if value is None and skip_nulls:
                continue
            state = add(state, value, event_ms[i], offsets[i])
        out.append(state)
    return out


class _FoldMerge:
    """`combine` as a left fold of `merge`: right for every aggregation, fastest for none."""

    def combine(self, states: list) -> Any:
        out = self.initial()  # type: ignore[attr-defined]
        for state in states:
            out = self.merge(out, state)  # type: ignore[attr-defined]
        return out


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


class Sum(AggregationBase, _FoldMerge):
    """Sum of the field: [sum, 0.0] for integers; for floats the exact sum as two doubles (`_exact_sum`)."""

    name = "sum"
    counts_nulls = False
    needs_numbers = True

    def initial(self) -> list:
        return [0, 0.0]

    def add(self, state: list, value: Any, event_ms: int, offset: int) -> list:
        if type(value) is int and type(state[0]) is int:
            state[0] += value
            return state
        return _exact_sum([state[0], state[1], value])

    def merge(self, older: list, newer: list) -> list:
        if type(older[0]) is int and type(newer[0]) is int:
            return [older[0] + newer[0], 0.0]
        return _exact_sum([*older, *newer])

    def combine(self, states: list) -> list:
        if all(type(s[0]) is int for s in states):
            return [sum(s[0] for s in states), 0.0]
        return _exact_sum([part for s in states for part in s])

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
        return [_exact_sum(part) if part else [0, 0.0] for part in _valid_parts(values.objects, lo, hi)]


SUM = Sum()


def _valid_parts(objects: list, lo: np.ndarray, hi: np.ndarray) -> list[list]:
    return [[v for v in objects[a:b] if v is not None] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]


def _exact_sum(parts: list) -> list:
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


class Mean(AggregationBase, _FoldMerge):
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


# count_distinct: exact (a set of 64-bit hashes) up to EXACT_LIMIT, then HyperLogLog
# with 2**HLL_P registers (0.4% standard error; linear counting keeps it far better
# than that up to ~160k values), so the contract's 2% holds with a wide margin.
EXACT_LIMIT = 4096
HLL_P = 16
_HLL_M = 1 << HLL_P
_HLL_ALPHA = 0.7213 / (1 + 1.079 / _HLL_M)


def _hash64(value: Any) -> int:
    try:
        return _cached_hash64(value)
    except TypeError:  # an unhashable value (an Avro array or map): hashed by its text, uncached
        return _hash64_of(value)


def _hash64_of(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1 and 1.0 are one value, as in a Python set
    return int.from_bytes(blake2b(repr(value).encode(), digest_size=8).digest(), "big")


# the same merchants recur in every batch: hashing them again was 5% of the engine's time
_cached_hash64 = lru_cache(maxsize=1 << 16, typed=True)(_hash64_of)


def _hll_from_hashes(hashes: list[int] | np.ndarray) -> bytearray:
    """The registers of a set of hashes, at once: each register the largest rank among its hashes."""
    h = np.asarray(hashes, dtype=np.uint64)
    rest = (h & np.uint64((1 << (64 - HLL_P)) - 1)).astype(np.float64)  # below 2**48: exact as a double
    bits = np.where(rest > 0, np.frexp(rest)[1], 0)  # the bit length
    registers = np.zeros(_HLL_M, dtype=np.uint8)
    np.maximum.at(registers, (h >> np.uint64(64 - HLL_P)).astype(np.int64), (64 - HLL_P) - bits + 1)
    return bytearray(registers.tobytes())


def _hash_union(sets: list[list[int]]) -> np.ndarray:
    """The sorted union of sorted hash lists, as uint64 (12 panes of 4,000 hashes: 10 ms, 30 ms in Python)."""
    if sum(len(s) for s in sets) <= 1024:  # small: Python's set is quicker than building arrays
        return np.array(sorted({h for s in sets for h in s}), dtype=np.uint64)
    return sorted_unique(np.concatenate([np.fromiter(s, dtype=np.uint64, count=len(s)) for s in sets]))


def _hll_add(registers: bytearray, h: int) -> None:
    index = h >> (64 - HLL_P)
    rest = h & ((1 << (64 - HLL_P)) - 1)
    rank = (64 - HLL_P) - rest.bit_length() + 1
    if rank > registers[index]:
        registers[index] = rank


def _hll_union(sketches: list) -> bytearray:
    """Register-wise max of HLL registers (NumPy: 12 panes of 64 KiB merged in microseconds, not 30 ms)."""
    arrays = [np.frombuffer(bytes(s) if isinstance(s, bytearray) else s, dtype=np.uint8) for s in sketches]
    return bytearray(np.maximum.reduce(arrays).tobytes()) if len(arrays) > 1 else bytearray(arrays[0])


def _hll_estimate(registers: bytes) -> int:
    regs = np.frombuffer(registers, dtype=np.uint8)
    zeros = int(np.count_nonzero(regs == 0))
    if zeros:
        linear = _HLL_M * math.log(_HLL_M / zeros)
        if linear <= 2.5 * _HLL_M:
            return round(linear)
    raw = _HLL_ALPHA * _HLL_M * _HLL_M / math.fsum(np.ldexp(1.0, -regs.astype(np.int64)).tolist())
    return round(raw)


class CountDistinct(AggregationBase):
    """Number of distinct values: exact below EXACT_LIMIT, HyperLogLog above.

    State: the sorted 64-bit hashes (exact) or HLL registers as bytes. Sorted, so the state
    is a function of the set of values, whatever order or batches they came in.
    """

    name = "count_distinct"
    counts_nulls = False
    needs_numbers = False

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        return pa.int64()

    def initial(self) -> Any:
        return []

    def add(self, state: Any, value: Any, event_ms: int, offset: int) -> Any:
        h = _hash64(value)
        if isinstance(state, list):
            at = bisect_left(state, h)
            if at == len(state) or state[at] != h:
                state.insert(at, h)
                if len(state) > EXACT_LIMIT:
                    return _hll_from_hashes(state)
            return state
        registers = state if isinstance(state, bytearray) else bytearray(state)
        _hll_add(registers, h)
        return registers

    def merge(self, older: Any, newer: Any) -> Any:
        if isinstance(older, list) and isinstance(newer, list):
            merged = sorted(set(older).union(newer))
            return merged if len(merged) <= EXACT_LIMIT else _hll_from_hashes(merged)
        return _hll_union([_hll_from_hashes(s) if isinstance(s, list) else s for s in (older, newer)])

    def combine(self, states: list) -> Any:
        exact = _hash_union([s for s in states if isinstance(s, list)])
        sketches = [s for s in states if not isinstance(s, list)]
        if not sketches:
            return exact.tolist() if len(exact) <= EXACT_LIMIT else _hll_from_hashes(exact)
        return _hll_union([*sketches, _hll_from_hashes(exact)] if len(exact) else sketches)

    def result(self, state: Any) -> int:
        if isinstance(state, list):
            return len(state)
        return _hll_estimate(state)

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        return fold_groups(self, values, lo, hi)  # one cached hash per value: folding is the fast form

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # exact over the log, where the stream's sketch may answer within the contract's 2%
        codes, starts, lengths, present = gather_ranges(column, column.valid_codes, lo, hi)
        out = np.zeros(len(lo), dtype=np.int64)
        if len(codes):
            segment = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
            pairs = sorted_unique(segment * (column.distinct_values + 1) + codes)
            out[present] = np.bincount(pairs // (column.distinct_values + 1), minlength=len(starts))
        return out, np.ones(len(lo), dtype=bool)
