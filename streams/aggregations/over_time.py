"""Aggregations whose value moves with the read time: age and decayed_sum (lifetime windows only).

Their partial state is a function of the events, like every other; the value
is computed from it at read time `t` (`result_at`), so an online read decays
between events exactly as the point-in-time join does at the same `t`.

decayed_sum(h) at t is Σ v·2^(-(t - e)/h). Summing the terms as of a moving
reference would round differently on every path, so each event's term is
taken against a fixed anchor, the start of its 256-half-life stretch of time
(`anchor = floor(e / 256h)·256h`, a factor 2^((e - anchor)/h) below 2^256),
and each anchor's terms are kept as an exact two-double sum (`exact_sum`, as
`sum` keeps floats). The value at t decays each anchor's sum by
2^(-(t - anchor)/h) and adds them correctly rounded (`math.fsum`), so it is a
function of the events and t alone: the same bits on every path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from streams.aggregations.base import AggregationBase
from streams.aggregations.columns import EventColumn, FieldGroups
from streams.aggregations.numeric import exact_sum

__all__ = ["Age", "DecayedSum"]

_ANCHOR_HALF_LIVES = 256


class Age(AggregationBase):
    """t minus the entity's first event time (window: Lifetime). State: the first event time, or None."""

    name = "age"
    counts_nulls = True  # every event counts: age has no field
    needs_numbers = False
    needs_field = False
    takes_field = False
    lifetime_only = True
    reads_time = True

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        return pa.int64()

    def initial(self) -> Any:
        return None

    def add(self, state: Any, value: Any, event_ms: int, offset: int) -> Any:
        return event_ms if state is None or event_ms < state else state

    def merge(self, older: Any, newer: Any) -> Any:
        return self.combine([older, newer])

    def combine(self, states: list) -> Any:
        present = [s for s in states if s is not None]
        return min(present) if present else None

    def result_at(self, state: Any, t_ms: int) -> int | None:
        return None if state is None else t_ms - state

    def over_ranges_at(self, column: EventColumn | None, lo: np.ndarray, hi: np.ndarray, times: np.ndarray,
                       t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        present = hi > lo
        return np.where(present, t_ms - times[np.where(present, lo, 0)], 0), present

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        return np.minimum.reduceat(values.event_ms, lo).tolist() if len(lo) else []


class DecayedSum(AggregationBase):
    """Σ value·2^(-(t - event_time)/half_life) over the entity's events at or before t (window: Lifetime).

    State: [[anchor_ms, hi, lo], ...] by anchor, each anchor's terms as an exact two-double sum.
    """

    counts_nulls = False
    needs_numbers = True
    lifetime_only = True
    reads_time = True

    def __init__(self, half_life_ms: int, text: str) -> None:
        self.half_life_ms = half_life_ms
        self.span_ms = _ANCHOR_HALF_LIVES * half_life_ms
        self.name = f"decayed_sum({text})"
        self._text = text

    @property
    def label(self) -> str:
        return f"decayed_sum_{self._text}"

    def output_type(self, field_type: pa.DataType) -> pa.DataType:
        return pa.float64()

    def _anchor(self, event_ms: Any) -> Any:
        """The start of the 256-half-life stretch an event time (or an array of them) falls in."""
        return event_ms // self.span_ms * self.span_ms

    def _term(self, value: Any, event_ms: int, anchor: int) -> float:
        return value * 2.0 ** ((event_ms - anchor) / self.half_life_ms)

    def initial(self) -> list:
        return []

    def add(self, state: list, value: Any, event_ms: int, offset: int) -> list:
        anchor = self._anchor(event_ms)
        return self.combine([state, [[anchor, self._term(value, event_ms, anchor), 0.0]]])

    def merge(self, older: list, newer: list) -> list:
        return self.combine([older, newer])

    def combine(self, states: list) -> list:
        parts: dict[int, list] = {}
        for state in states:
            for anchor, hi, lo in state:
                parts.setdefault(anchor, []).extend((hi, lo))
        return [[anchor, *exact_sum(parts[anchor])] for anchor in sorted(parts)]

    def result_at(self, state: list, t_ms: int) -> float:
        """Each anchor's sum decayed to t, added correctly rounded; 0.0 for no events."""
        h = self.half_life_ms
        return math.fsum([part * 2.0 ** (-(t_ms - anchor) / h) for anchor, hi, lo in state for part in (hi, lo)])

    def group_partials(self, values: FieldGroups, lo: np.ndarray, hi: np.ndarray) -> list:
        objects, event_ms = values.objects, values.event_ms.tolist()
        out = []
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            parts: dict[int, list] = {}
            for i in range(a, b):
                if objects[i] is not None:
                    anchor = self._anchor(event_ms[i])
                    parts.setdefault(anchor, []).append(self._term(objects[i], event_ms[i], anchor))
            out.append([[anchor, *exact_sum(parts[anchor])] for anchor in sorted(parts)])
        return out

    def over_ranges_at(self, column: EventColumn, lo: np.ndarray, hi: np.ndarray, times: np.ndarray,
                       t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lifetime ranges (each starts at its entity's first event): every anchor's exact sum over the
        range, from whole-anchor totals computed once per log and the last anchor's sum up to hi."""
        terms, starts, totals = self._log_terms(column, times, lo)
        out = np.zeros(len(lo))
        for i, (a, b, t) in enumerate(zip(lo.tolist(), hi.tolist(), t_ms.tolist(), strict=True)):
            if b <= a:
                continue
            first = int(np.searchsorted(starts, a, side="right")) - 1
            last = int(np.searchsorted(starts, b - 1, side="right")) - 1
            state = [totals[s] for s in range(first, last)]
            tail = starts[last]
            state.append([self._anchor(int(times[tail])), *exact_sum(terms[tail:b])])
            out[i] = self.result_at(state, t)
        return out, np.ones(len(lo), dtype=bool)

    def _log_terms(self, column: EventColumn, times: np.ndarray, lo: np.ndarray
                   ) -> tuple[list[float], np.ndarray, list[list]]:
        """Each logged event's term against its anchor (0.0 for a null), where each run of one entity's
        events in one anchor starts, and each run's [anchor, hi, lo]; computed once per log and half-life."""
        key = ("decayed_sum", self.half_life_ms)
        found = column.memo.get(key)
        if found is None:
            anchors = self._anchor(times)
            values = column.values.tolist()
            terms = [self._term(v, e, a) if ok else 0.0
                     for v, e, a, ok in zip(values, times.tolist(), anchors.tolist(), column.valid.tolist(),
                                            strict=True)]
            found = column.memo[key] = (terms, anchors)
        terms, anchors = found
        # a run starts where the anchor changes or a range (an entity's history) starts
        breaks = np.zeros(len(terms) + 1, dtype=bool)
        breaks[0] = True
        breaks[1:-1] = anchors[1:] != anchors[:-1]
        breaks[lo] = True
        starts = np.flatnonzero(breaks[:-1])
        ends = np.append(starts[1:], len(terms))
        totals = [[int(anchors[s]), *exact_sum(terms[s:e])] for s, e in zip(starts.tolist(), ends.tolist(),
                                                                                strict=True)]
        return terms, starts, totals
