"""Aggregations that pick values by event order or by frequency: last, first, last_k, first_k, top_k.

Order is (event time, offset) (semantics.md: "ties: the later offset" for last,
"the earlier offset" for first); on a full tie, which only events of one
entity on two partitions can reach, the later arrival counts as later, as
`Last` always decided. The offline log is sorted by (event time, partition,
offset), so its order agrees wherever one entity's events share a partition.

Partial states keep the picked events as `[event_ms, offset, value]`, so two
partials merge by order alone; `top_k` keeps every value's count, since
exact frequencies need them all (its state grows with the distinct values).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from streams.aggregations.base import AggregationBase
from streams.aggregations.columns import EventColumn, FieldGroups, gather_ranges

__all__ = ["First", "FirstK", "Last", "LastK", "TopK"]


def _order_key(entry: list) -> tuple[int, int]:
    return entry[0], entry[1]


def _ranked(values: FieldGroups, lo: np.ndarray, hi: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The valid values' indices ordered by (group, event time, offset, arrival), each one's group,
    and where each group's run starts and ends in that order (one run per group that holds a value)."""
    objects = values.objects
    group = np.repeat(np.arange(len(lo)), hi - lo)
    valid = np.flatnonzero(np.fromiter((v is not None for v in objects), dtype=bool, count=len(objects)))
    ranked = valid[np.lexsort((values.offsets[valid], values.event_ms[valid], group[valid]))]
    owner = group[ranked]
    starts = np.flatnonzero(np.append(True, owner[1:] != owner[:-1])) if len(owner) else np.zeros(0, np.int64)
    return ranked, owner, starts, np.append(starts[1:], len(ranked)).astype(np.int64)[:len(starts)]


def _entries(values: FieldGroups, indices: list[int]) -> list[list]:
    event_ms, offsets, objects = values.event_ms, values.offsets, values.objects
    return [[int(event_ms[i]), int(offsets[i]), objects[i]] for i in indices]


class Last(AggregationBase):
    """Value of the event with the greatest event time; ties go to the later offset.

    State: None or [event_ms, offset, value].
    """

    name = "last"
    counts_nulls = False
    needs_numbers = False

    @staticmethod
    def _wins(new: tuple[int, int], old: tuple[int, int]) -> bool:
        """Whether an event ordered `new` replaces the kept one; a full tie goes to the later arrival."""
        return new >= old

    def initial(self) -> Any:
        return None

    def add(self, state: Any, value: Any, event_ms: int, offset: int) -> Any:
        if state is None or self._wins((event_ms, offset), _order_key(state)):
            return [event_ms, offset, value]
        return state

    def merge(self, older: Any, newer: Any) -> Any:
        if older is None:
            return newer
        if newer is None:
            return older
        return newer if self._wins(_order_key(newer), _order_key(older)) else older

    def combine(self, states: list) -> Any:
        out = None
        for state in states:
            out = self.merge(out, state)
        return out

    def result(self, state: Any) -> Any:
        return None if state is None else state[2]

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # the log is sorted by (event time, partition, offset): the last valid index before hi wins
        last = column.last_valid_index[np.maximum(hi - 1, 0)]
        present = (hi > lo) & (last >= lo)
        return column.decode(column.values[np.where(present, last, 0)]), present

    def _picked(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Of each group's run of ranked values [start, end): where the kept one is."""
        return ends - 1

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        ranked, owner, starts, ends = _ranked(values, lo, hi)
        picked = self._picked(starts, ends)
        out: list = [None] * len(lo)
        for g, entry in zip(owner[picked].tolist(), _entries(values, ranked[picked].tolist()), strict=True):
            out[g] = entry
        return out


class First(Last):
    """Value of the event with the smallest event time; ties go to the earlier offset.

    State: None or [event_ms, offset, value].
    """

    name = "first"

    @staticmethod
    def _wins(new: tuple[int, int], old: tuple[int, int]) -> bool:
        return new < old  # a full tie keeps the earlier arrival

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = column.valid_before[lo]  # the rank of the first valid value at or after lo
        present = column.valid_count(lo, hi) > 0
        at = column.valid_positions[np.where(present, first, 0)] if len(column.valid_positions) else lo
        return column.decode(column.values[np.where(present, at, 0)]), present

    def _picked(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return starts


class LastK(AggregationBase):
    """The fields of the `k` latest events, newest first.

    State: up to k [event_ms, offset, value], newest first.
    """

    counts_nulls = False
    needs_numbers = False
    newest_first = True

    def __init__(self, k: int) -> None:
        self.k = k
        self.name = f"last_k({k})"

    @property
    def label(self) -> str:
        return f"last{self.k}"

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        return pa.list_(field_type)

    def initial(self) -> list:
        return []

    def _ordered(self, entries: list[list]) -> list[list]:
        """Entries in the kept order, the first k; a stable sort keeps the earlier-listed of a full tie first."""
        return sorted(entries, key=_order_key, reverse=self.newest_first)[:self.k]

    def add(self, state: list, value: Any, event_ms: int, offset: int) -> list:
        # a new event is the later arrival: first among its full ties when newest come first, last otherwise
        entry = [event_ms, offset, value]
        return self._ordered([entry, *state] if self.newest_first else [*state, entry])

    def merge(self, older: list, newer: list) -> list:
        return self._ordered([*newer, *older] if self.newest_first else [*older, *newer])

    def combine(self, states: list) -> list:
        # panes and sessions never share an event time, so no full tie spans two states
        return self._ordered([entry for state in states for entry in state])

    def result(self, state: list) -> list:
        return [entry[2] for entry in state]

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first, stop = column.valid_before[lo].tolist(), column.valid_before[hi].tolist()
        positions, out = column.valid_positions, np.empty(len(lo), dtype=object)
        for i, (a, b) in enumerate(zip(first, stop, strict=True)):
            if self.newest_first:
                picked = positions[max(a, b - self.k):b][::-1]
            else:
                picked = positions[a:min(b, a + self.k)]
            out[i] = column.decode(column.values[picked]).tolist()
        return out, np.ones(len(lo), dtype=bool)

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        ranked, owner, starts, ends = _ranked(values, lo, hi)
        out: list = [[] for _ in range(len(lo))]
        for g, a, b in zip(owner[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
            picked = ranked[max(a, b - self.k):b][::-1] if self.newest_first else ranked[a:min(b, a + self.k)]
            out[g] = _entries(values, picked.tolist())
        return out


class FirstK(LastK):
    """The fields of the `k` earliest events, oldest first.

    State: up to k [event_ms, offset, value], oldest first.
    """

    newest_first = False

    def __init__(self, k: int) -> None:
        super().__init__(k)
        self.name = f"first_k({k})"

    @property
    def label(self) -> str:
        return f"first{self.k}"


class TopK(AggregationBase):
    """The `k` most frequent values as [value, count], by count descending, then value ascending; exact.

    State: [[value, count], ...] for every value seen, sorted by value (a function of the multiset).
    """

    counts_nulls = False
    needs_numbers = False

    def __init__(self, k: int) -> None:
        self.k = k
        self.name = f"top_k({k})"

    @property
    def label(self) -> str:
        return f"top{self.k}"

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        return pa.list_(pa.struct([("value", field_type), ("count", pa.int64())]))

    def initial(self) -> list:
        return []

    @staticmethod
    def _state(counts: Counter) -> list:
        return [[value, n] for value, n in sorted(counts.items())]

    def add(self, state: list, value: Any, event_ms: int, offset: int) -> list:
        return self.combine([state, [[value, 1]]])

    def merge(self, older: list, newer: list) -> list:
        return self.combine([older, newer])

    def combine(self, states: list) -> list:
        counts: Counter = Counter()
        for state in states:
            for value, n in state:
                counts[value] += n
        return self._state(counts)

    def result(self, state: list) -> list:
        ranked = sorted(state, key=lambda pair: -pair[1])  # stable: equal counts stay by value
        return [[value, n] for value, n in ranked[:self.k]]

    def over_ranges(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes, starts, lengths, present = gather_ranges(column, column.valid_codes, lo, hi)
        out = np.empty(len(lo), dtype=object)
        out[:] = [[] for _ in range(len(lo))]
        if not len(codes):
            return out, np.ones(len(lo), dtype=bool)
        width = column.distinct_values + 1
        segment = np.repeat(np.arange(len(starts), dtype=np.int64), lengths)
        pairs, counts = np.unique(segment * width + codes, return_counts=True)
        owner, code = pairs // width, pairs % width
        ranked = np.lexsort((code, -counts, owner))  # per range: count descending, then value ascending
        owner, code, counts = owner[ranked], code[ranked], counts[ranked]
        first = np.flatnonzero(np.append(True, owner[1:] != owner[:-1]))
        rank = np.arange(len(owner)) - np.repeat(first, np.diff(np.append(first, len(owner))))
        keep = rank < self.k
        ranges = np.flatnonzero(present)
        values = column.code_values[code[keep]].tolist()
        for r, value, n in zip(ranges[owner[keep]].tolist(), values, counts[keep].tolist(), strict=True):
            out[r].append([value, n])
        return out, np.ones(len(lo), dtype=bool)

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        objects = values.objects
        return [self._state(Counter(v for v in objects[a:b] if v is not None))
                for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
