"""Point-in-time values: a view's features at many (entity, t) at once, from its event log.

The offline store keeps every aggregated event. Because a value at `t`
depends only on the entity's events at or before `t` (semantics.md), it is
exact at any `t` — between events, and however disordered the arrival was —
when computed from those events rather than from snapshots taken as they
arrived.

Sorted by (entity, event time, partition, offset), the events a window holds
at `t` are one contiguous range [lo, hi) of the log:

- `hi`: the entity's first event after `t`;
- tumbling and sliding: `lo` is the first event at or after the window start
  `floor(t/step)*step + step - size`;
- session: `lo` is where the session holding event `hi - 1` starts, the last
  point before it where two consecutive events are more than `gap` apart.

Two `searchsorted` calls find every range; each aggregation's `over_ranges`
(streams.aggregations.base) reduces them. The windows, aggregations and names come
from the view's compiled `ViewEngine`, the same one the worker and online
reads use. Pure: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streams.aggregations.columns import EventColumn, sorted_unique
from streams.kernel.engine import ViewEngine

__all__ = ["EventLog", "PointInTimeValues", "epoch_ms", "evaluate_at"]

# The view's value columns at each asked time: name -> (values, present).
PointInTimeValues = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class EventLog:
    """A view's aggregated events, sorted by (entity, event time, partition, offset), one per source event."""

    entity_labels: pa.Array  # entity code -> entity key
    codes: np.ndarray
    times: np.ndarray
    columns: dict[str, EventColumn]
    _session_starts: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_table(cls, table: pa.Table, fields: list[str]) -> EventLog:
        """From offline rows (`entity`, `event_timestamp`, `partition`, `offset`, fields).

        A row present twice (the same partition and offset) counts once.
        """
        entities = pc.dictionary_encode(table["entity"].combine_chunks().cast(pa.string()))
        codes = entities.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        times = epoch_ms(table["event_timestamp"])
        partition = table["partition"].to_numpy().astype(np.int64)
        offset = table["offset"].to_numpy().astype(np.int64)
        order, codes, times, partition, offset = _sort_log(codes, times, partition, offset)
        repeat = np.zeros(len(order), dtype=bool)
        repeat[1:] = (codes[1:] == codes[:-1]) & (partition[1:] == partition[:-1]) & (offset[1:] == offset[:-1])
        if repeat.any():
            order, codes, times = order[~repeat], codes[~repeat], times[~repeat]
        columns = {f: EventColumn.from_arrow(table[f]).take(order) for f in fields}
        return cls(entities.dictionary, codes, times, columns)

    def __len__(self) -> int:
        return len(self.times)

    def codes_of(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Each key's entity code; -1 for an entity with no events."""
        found = pc.index_in(keys.cast(pa.string()), value_set=self.entity_labels)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

    def session_starts(self, gap_ms: int) -> np.ndarray:
        """For each event, the index of the first event of its session (sessions of the full log)."""
        found = self._session_starts.get(gap_ms)
        if found is None:
            starts = np.ones(len(self.times), dtype=bool)
            starts[1:] = (self.codes[1:] != self.codes[:-1]) | (np.diff(self.times) > gap_ms)
            found = self._session_starts[gap_ms] = np.maximum.accumulate(np.where(starts, np.arange(len(starts)), 0))
        return found

    @cached_property
    def axis(self) -> _Axis:
        return _Axis(self.codes, self.times)


def _sort_log(codes: np.ndarray, times: np.ndarray, partition: np.ndarray,
              offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(order, codes, times, partition, offset), sorted by (entity, time, partition, offset).

    One sort of a packed (entity, time) int64 that carries partition and offset
    along (polars, on both cores: 10M rows in 0.8 s, against 1.6 s for numpy's
    argsort alone and ~1 s more for its four gathers); equal (entity, time)
    pairs are rare, so only those are sorted again by (partition, offset).
    """
    if not len(times):
        return (np.zeros(0, dtype=np.int64),) * 5
    first, span = int(times.min()), int(times.max()) - int(times.min()) + 1
    if (int(codes.max()) + 1) * span >= 2**62:
        order = np.lexsort((offset, partition, times, codes))
        return order, codes[order], times[order], partition[order], offset[order]
    import polars as pl  # imported on a join's first sort, not by every worker start

    frame = pl.DataFrame({"key": codes * span + (times - first), "partition": partition, "offset": offset})
    frame = frame.with_row_index("row").sort("key")
    order = frame["row"].to_numpy().astype(np.int64)
    key, partition, offset = (np.array(frame[c].to_numpy(), dtype=np.int64) for c in ("key", "partition", "offset"))
    tied = np.zeros(len(order), dtype=bool)
    same = key[1:] == key[:-1]
    tied[1:] |= same
    tied[:-1] |= same
    if tied.any():  # the order polars left among equal keys is not fixed: order them by (partition, offset)
        at = np.flatnonzero(tied)
        fix = at[np.lexsort((offset[at], partition[at], key[at]))]
        order[at], partition[at], offset[at] = order[fix], partition[fix], offset[fix]
    return order, key // span, key % span + first, partition, offset


class _Axis:
    """Packs (entity code, time) into one sortable int64, so one searchsorted finds a bound.

    Times are shifted to start at 1; when entities x span would not fit in 62
    bits, they are replaced by their rank among the log's distinct times.
    """

    def __init__(self, codes: np.ndarray, times: np.ndarray) -> None:
        first, last = (int(times.min()), int(times.max())) if len(times) else (0, 0)
        entities = int(codes.max()) + 1 if len(codes) else 1
        span = last - first + 3
        self.distinct: np.ndarray | None = None
        if entities * span < 2**62:
            self.base, self.width = first - 1, span
            position = times - self.base
        else:
            self.distinct = sorted_unique(times)
            self.width = len(self.distinct) + 2
            position = np.searchsorted(self.distinct, times) + 1
        self.keys = codes * self.width + position

    def _position(self, t: np.ndarray, *, inclusive: bool) -> np.ndarray:
        if self.distinct is None:
            return np.clip(t - self.base, 0, self.width - 1)
        side = "right" if inclusive else "left"
        return np.searchsorted(self.distinct, t, side=side) + (0 if inclusive else 1)

    def through(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Index just past the entity's last event at or before t."""
        return np.searchsorted(self.keys, codes * self.width + self._position(t, inclusive=True), side="right")

    def starting(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Index of the entity's first event at or after t."""
        return np.searchsorted(self.keys, codes * self.width + self._position(t, inclusive=False), side="left")


def evaluate_at(engine: ViewEngine, log: EventLog, codes: np.ndarray, t_ms: np.ndarray,
                names: list[str] | None = None) -> PointInTimeValues:
    """The value of each of `names` (default: all the view's) for entity `codes[i]` at `t_ms[i]`.

    Entities unknown to the log (code -1), or whose latest event at or before
    t is older than `t - ttl`, are absent in every column (semantics.md,
    "Missing and expired"). Callers pass queries sorted by (code, t) for speed.
    """
    wanted = [n for n in engine.value_names if names is None or n in names]
    codes, t_ms = np.asarray(codes, dtype=np.int64), np.asarray(t_ms, dtype=np.int64)
    if not len(log):
        return {name: (np.zeros(len(codes)), np.zeros(len(codes), dtype=bool)) for name in wanted}
    axis = log.axis
    hi = axis.through(codes, t_ms)
    first = np.searchsorted(axis.keys, codes * axis.width, side="left")
    last = np.maximum(hi - 1, 0)
    alive = (codes >= 0) & (hi > first) & (log.times[last] >= t_ms - engine.ttl_ms)
    out: PointInTimeValues = {}
    out_names = set(wanted)
    ranges: dict[tuple[str, int, int], np.ndarray] = {}

    def range_start(kind: str, group: int, panes: int) -> np.ndarray:
        key = (kind, group, panes)
        if key not in ranges:
            if kind == "pane":
                step = engine.grid_steps[group]
                ranges[key] = axis.starting(codes, (t_ms // step) * step + step - panes * step)
            else:
                ranges[key] = np.where(hi > first, log.session_starts(engine.session_gaps[group])[last], hi)
        return ranges[key]

    for output in engine.outputs:
        if output.name not in out_names:
            continue
        slot = (engine.grid_slots if output.kind == "pane" else engine.session_slots)[output.group][output.slot]
        lo = range_start(output.kind, output.group, output.panes)
        column = log.columns[slot.field] if slot.field is not None else None
        if output.agg.reads_time:
            values, present = output.agg.over_ranges_at(column, lo, hi, log.times, t_ms)
        else:
            values, present = output.agg.over_ranges(column, lo, hi)  # type: ignore[arg-type]
        out[output.name] = (values, present & alive)
    for s, gap in enumerate(engine.session_gaps):
        start_name, end_name, active_name = engine.session_columns[3 * s: 3 * s + 3]
        if not set(wanted) & {start_name, end_name, active_name}:
            continue
        start, end = log.times[np.minimum(range_start("session", s, 0), last)], log.times[last]
        out[start_name] = (start, alive)
        out[end_name] = (end, alive)
        out[active_name] = (t_ms - end <= gap, alive)
    return {name: out[name] for name in wanted}


def epoch_ms(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps (any unit) or integers as epoch milliseconds."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("ms", tz=column.type.tz), safe=False).cast(pa.int64())
    return column.to_numpy(zero_copy_only=False).astype(np.int64)
