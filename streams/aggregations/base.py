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

from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from streams.aggregations.columns import EventColumn, FieldGroups

__all__ = ["Aggregation", "AggregationBase", "FoldMerge", "fold_groups"]


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


class FoldMerge:
    """`combine` as a left fold of `merge`: right for every aggregation, fastest for none."""

    def combine(self, states: list) -> Any:
        out = self.initial()  # type: ignore[attr-defined]
        for state in states:
            out = self.merge(out, state)  # type: ignore[attr-defined]
        return out
