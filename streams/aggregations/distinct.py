"""count_distinct: exact up to EXACT_LIMIT distinct values, then a HyperLogLog sketch."""

from __future__ import annotations

import math
from bisect import bisect_left
from functools import lru_cache
from hashlib import blake2b
from typing import Any

import numpy as np
import pyarrow as pa

from streams.aggregations.base import AggregationBase, fold_groups
from streams.aggregations.columns import EventColumn, FieldGroups, gather_ranges, sorted_unique

__all__ = ["EXACT_LIMIT", "CountDistinct"]


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
