"""The window engine: per-entity state in, feature values out. Pure: no I/O, no clock.

One engine serves every path (architecture.md): the live worker and the
replay hand it batches (`apply_batch`, columnar: per group of events, not per
event); the online read calls `as_of`, and the offline join evaluates the same
compiled outputs over ranges of the event log (`streams.kernel.point_in_time`).
The state of one entity is an `EntityState`; it is stored as the bytes
`encode` returns (in the Faust changelog and in Redis) and read back with
`decode`.

Layout of the state, compiled from the view's features:

- *grids*: one per distinct step (`Tumbling(size)` has step = size). A grid
  keeps one pane per step holding one partial aggregate per (field,
  aggregation) used on that grid, and only the panes a value at `t >= latest`
  can still reach.
- *session sets*: one per distinct gap: the sessions, oldest first, each as
  `[start_ms, end_ms, partials]`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.aggregations.base import Aggregation
from streams.aggregations.catalog import get_aggregation
from streams.aggregations.columns import BatchField, FieldGroups
from streams.definitions.view import FeatureView
from streams.errors import AsOfTooEarlyError, StateLayoutError
from streams.kernel.state_bytes import PaneBytes, pack_state, unpack_head, unpack_state
from streams.windows import Session
from streams.windows.session import merge_into_sessions

__all__ = [
    "NO_WATERMARK",
    "AsOfTooEarlyError",
    "EntityState",
    "Event",
    "EventBatch",
    "StateLayoutError",
    "ViewEngine",
]

_FORMAT = 1
NO_WATERMARK = -(2**62)  # below any event time: a partition with no watermark yet


@dataclass(slots=True)
class Event:
    """One decoded, validated event, with where it came from."""

    entity: str
    event_ms: int
    values: dict[str, Any]
    partition: int = 0
    offset: int = 0


@dataclass(slots=True)
class EventBatch:
    """A batch's events that passed decode and lateness, in arrival order, as columns."""

    entities: list[str]
    event_ms: np.ndarray  # int64, like the three below
    partitions: np.ndarray
    offsets: np.ndarray
    watermarks: np.ndarray  # each event's partition watermark, this event included
    fields: dict[str, list]  # each field the view reads: one value per event, None for null

    def __len__(self) -> int:
        return len(self.entities)

    @classmethod
    def of(cls, events: list[Event], fields: list[str]) -> EventBatch:
        """The batch of these events; watermarks are zero until the caller fills them in."""
        return cls(
            [e.entity for e in events],
            np.fromiter([e.event_ms for e in events], np.int64, len(events)),
            np.fromiter([e.partition for e in events], np.int64, len(events)),
            np.fromiter([e.offset for e in events], np.int64, len(events)),
            np.zeros(len(events), dtype=np.int64),
            {f: [e.values.get(f) for e in events] for f in fields},
        )

    def take(self, indices: np.ndarray) -> EventBatch:
        picked = indices.tolist()
        return EventBatch(
            [self.entities[i] for i in picked], self.event_ms[indices], self.partitions[indices],
            self.offsets[indices], self.watermarks[indices],
            {f: [column[i] for i in picked] for f, column in self.fields.items()},
        )


@dataclass(slots=True)
class EntityState:
    """Everything the engine keeps for one entity; `encode`/`decode` turn it into bytes."""

    latest_ms: int
    partition: int
    offset: int
    grids: list[dict[int, list]]
    sessions: list[list[list]]
    pane_bytes: PaneBytes | None = field(default=None, compare=False, repr=False)  # streams.kernel.state_bytes


@dataclass(frozen=True, slots=True)
class _Slot:
    field: str | None
    agg: Aggregation


@dataclass(frozen=True, slots=True)
class _Output:
    name: str
    kind: str  # "pane" | "session"
    group: int  # grid or session-set index
    slot: int
    panes: int  # how many panes the window spans (pane outputs)
    agg: Aggregation  # reads the slot's state: the slot's own, or one reading a shared state (a quantile)

    def value(self, partial: Any, t_ms: int) -> Any:
        return self.agg.result_at(partial, t_ms) if self.agg.reads_time else self.agg.result(partial)


_NEVER = 2**63 - 1  # `steady_until` of an expired state


class ViewEngine:
    """The compiled form of one FeatureView: applies events and evaluates values."""

    def __init__(self, view: FeatureView) -> None:
        self.view = view
        self.ttl_ms = view.ttl_ms
        self.grace_ms = view.grace_ms
        self.grid_steps: list[int] = []
        self.grid_keep: list[int] = []  # panes kept = the widest window on the grid
        self.grid_slots: list[list[_Slot]] = []
        self.session_gaps: list[int] = []
        self.session_slots: list[list[_Slot]] = []
        self.outputs: list[_Output] = []
        self.fields = list(dict.fromkeys(f.field for f in view.features if f.field is not None))
        for feature in view.features:
            self._compile(feature.name, feature.field, feature.aggregation, feature.window)
        self.session_columns = view.session_columns
        self.value_names = view.value_names
        assert [o.name for o in self.outputs] == [f.name for f in view.features]
        self.reads_time = any(o.agg.reads_time for o in self.outputs)  # a value moves between events
        layout = repr((self.grid_steps, self.grid_keep, self.session_gaps,
                       [[(s.field, s.agg.name) for s in g] for g in self.grid_slots],
                       [[(s.field, s.agg.name) for s in g] for g in self.session_slots]))
        self.layout_id = hashlib.sha256(layout.encode()).hexdigest()[:8]

    # ----------------------------------------------------------------- compile
    def _compile(self, name: str, field: str | None, agg_name: str, window: Any) -> None:
        agg = get_aggregation(agg_name)
        slot = _Slot(field, agg.state_agg)
        if isinstance(window, Session):
            if window.gap_ms not in self.session_gaps:
                self.session_gaps.append(window.gap_ms)
                self.session_slots.append([])
            group = self.session_gaps.index(window.gap_ms)
            slots = self.session_slots[group]
            if slot not in slots:
                slots.append(slot)
            self.outputs.append(_Output(name, "session", group, slots.index(slot), 0, agg))
            return
        step, panes = window.step_ms, window.size_ms // window.step_ms
        if step not in self.grid_steps:
            self.grid_steps.append(step)
            self.grid_keep.append(panes)
            self.grid_slots.append([])
        group = self.grid_steps.index(step)
        self.grid_keep[group] = max(self.grid_keep[group], panes)
        slots = self.grid_slots[group]
        if slot not in slots:
            slots.append(slot)
        self.outputs.append(_Output(name, "pane", group, slots.index(slot), panes, agg))

    # ------------------------------------------------------------------- apply
    def late(self, event_ms: np.ndarray, watermarks_before: np.ndarray) -> np.ndarray:
        """Which events are late: earlier than their partition's watermark before them minus grace
        (semantics.md, "Lateness"); `NO_WATERMARK` marks a partition with none yet."""
        return (watermarks_before > NO_WATERMARK) & (event_ms < watermarks_before - self.grace_ms)

    def from_future(self, event_ms: np.ndarray, record_ms: np.ndarray, stamped: np.ndarray) -> np.ndarray:
        """Which events are from the future: later than their record's timestamp by more than max_future
        ("Lateness"). A record without a timestamp (`stamped` false) cannot be judged, and passes."""
        return stamped & (event_ms - record_ms > self.view.max_future_ms)

    def apply(self, state: EntityState | None, event: Event, watermark_ms: int) -> EntityState | None:
        """Add one non-late event to an entity's state: `apply_batch` with a batch of one.

        Returns the updated state, or None when the event was already applied.
        """
        states = {event.entity: state}
        batch = EventBatch.of([event], self.fields)
        batch.watermarks[0] = watermark_ms
        applied = self.apply_batch(states, batch)
        return states[event.entity] if applied[0] else None

    def apply_batch(self, states: dict[str, EntityState | None], batch: EventBatch) -> np.ndarray:
        """Add a batch of non-late events, in arrival order, to their entities' states (updated in `states`).

        Returns which events were applied. An event is skipped when the entity's
        state already holds it (same partition, offset not greater): re-delivered
        events after a restart are counted once.

        The work is columnar: the events are grouped by (entity, pane) and by
        (entity, session run), each aggregation reduces every group at once
        (`group_partials`), and the group partials are merged into the stored
        ones, so Python-level work is per group, not per event and feature. The
        result equals adding the events one at a time in arrival order: panes a
        newer event pushed out of reach stay out (the entity's final latest event
        decides what is kept, and it only grows), and sessions are merged run by
        run in time order, so a run can bridge two stored sessions, as an event can.
        """
        applied = np.ones(len(batch), dtype=bool)
        if not len(batch):
            return applied
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(e, len(index)) for e in batch.entities), np.int64, len(batch))
        names = list(index)
        held = [states.get(name) for name in names]
        applied[self._already_held(held, codes, batch)] = False
        kept = np.flatnonzero(applied)
        if not len(kept):
            return applied
        code, event_ms = codes[kept], batch.event_ms[kept]
        kept_list, offsets_kept = kept.tolist(), batch.offsets[kept]
        fields: dict[str | None, BatchField] = {None: BatchField([None] * len(kept_list), event_ms, offsets_kept)}
        for f in self.fields:  # (None: a `count` of events names no field)
            column = batch.fields.get(f)
            values = [None] * len(kept_list) if column is None else [column[i] for i in kept_list]
            fields[f] = BatchField(values, event_ms, offsets_kept)
        by_entity = np.argsort(code, kind="stable")
        first = np.flatnonzero(np.append(True, code[by_entity][1:] != code[by_entity][:-1]))
        touched = code[by_entity][first].tolist()
        newest = np.maximum.reduceat(event_ms[by_entity], first).tolist()
        last = by_entity[np.append(first[1:], len(kept)) - 1]  # each entity's last applied event
        partitions, offsets = batch.partitions[kept][last].tolist(), batch.offsets[kept][last].tolist()
        latest = np.zeros(len(names), dtype=np.int64)
        for c, ms, partition, offset in zip(touched, newest, partitions, offsets, strict=True):
            state = held[c]
            if state is None:
                state = held[c] = EntityState(ms, partition, offset, [{} for _ in self.grid_steps],
                                              [[] for _ in self.session_gaps])
            else:
                state.latest_ms = max(state.latest_ms, ms)
                state.partition, state.offset = partition, offset
            latest[c] = state.latest_ms
            states[names[c]] = state
        for g in range(len(self.grid_steps)):
            self._apply_to_grid(g, held, touched, code, event_ms, latest, fields)
        horizon_base = batch.watermarks[kept][last] - self.grace_ms
        for s in range(len(self.session_gaps)):
            self._apply_to_sessions(s, held, touched, code, event_ms, horizon_base, fields)
        return applied

    @staticmethod
    def _already_held(held: list, codes: np.ndarray, batch: EventBatch) -> np.ndarray:
        """Events an entity's stored state already holds: while an entity's events are on the stored
        partition at or below the stored offset (until its first new event: later ones are new)."""
        stored_partition = np.array([-1 if s is None else s.partition for s in held], dtype=np.int64)
        stored_offset = np.array([-1 if s is None else s.offset for s in held], dtype=np.int64)
        order = np.argsort(codes, kind="stable")
        entity = codes[order]
        old = (batch.partitions[order] == stored_partition[entity]) & (batch.offsets[order] <= stored_offset[entity])
        if not old.any():
            return np.zeros(0, dtype=np.int64)
        new_so_far = np.cumsum(~old)
        starts = np.flatnonzero(np.append(True, entity[1:] != entity[:-1]))
        before = (new_so_far - ~old)[starts]  # new events counted before each entity's first
        owner = np.cumsum(np.append(True, entity[1:] != entity[:-1])) - 1
        return order[old & (new_so_far == before[owner])]

    def _partials(self, slots: list[_Slot], fields: dict[str | None, BatchField], order: np.ndarray,
                  lo: np.ndarray, hi: np.ndarray) -> list[tuple]:
        """Per group [lo, hi) of the events in `order`: one partial per slot (a tuple per group)."""
        grouped: dict[str | None, FieldGroups] = {}
        per_slot = []
        for slot in slots:
            values = grouped.get(slot.field)
            if values is None:
                values = grouped[slot.field] = fields[slot.field].grouped(order)
            per_slot.append(slot.agg.group_partials(values, lo, hi))
        return list(zip(*per_slot, strict=True))

    def _apply_to_grid(self, g: int, held: list, touched: list[int], code: np.ndarray, event_ms: np.ndarray,
                       latest: np.ndarray, fields: dict[str | None, BatchField]) -> None:
        step, keep, slots = self.grid_steps[g], self.grid_keep[g], self.grid_slots[g]
        pane = event_ms // step
        oldest_needed = latest // step - keep + 1  # per entity code
        admitted = np.flatnonzero(pane >= oldest_needed[code])
        if len(admitted):
            order = admitted[np.lexsort((admitted, pane[admitted], code[admitted]))]
            c, p = code[order], pane[order]
            lo = np.flatnonzero(np.append(True, (c[1:] != c[:-1]) | (p[1:] != p[:-1])))
            hi = np.append(lo[1:], len(order))
            aggs = [slot.agg for slot in slots]
            for entity, index, partials in zip(c[lo].tolist(), p[lo].tolist(),
                                               self._partials(slots, fields, order, lo, hi), strict=True):
                state = held[entity]
                if state.pane_bytes is not None:  # the pane changes: its kept bytes are stale
                    state.pane_bytes[g].pop(index, None)
                panes = state.grids[g]
                pane_partials = panes.get(index)
                if pane_partials is None:
                    panes[index] = list(partials)
                else:
                    for i, agg in enumerate(aggs):
                        pane_partials[i] = agg.merge(pane_partials[i], partials[i])
        for entity, oldest in zip(touched, oldest_needed[touched].tolist(), strict=True):
            panes = held[entity].grids[g]
            for old in [i for i in panes if i < oldest]:
                del panes[old]

    def _apply_to_sessions(self, s: int, held: list, touched: list[int], code: np.ndarray, event_ms: np.ndarray,
                           horizon_base: np.ndarray, fields: dict[str | None, BatchField]) -> None:
        gap, slots = self.session_gaps[s], self.session_slots[s]
        order = np.lexsort((np.arange(len(code)), event_ms, code))
        c, ms = code[order], event_ms[order]
        lo = np.flatnonzero(np.append(True, (c[1:] != c[:-1]) | (ms[1:] - ms[:-1] > gap)))
        hi = np.append(lo[1:], len(order))
        aggs = [slot.agg for slot in slots]
        for entity, start, end, partials in zip(c[lo].tolist(), ms[lo].tolist(), ms[hi - 1].tolist(),
                                                self._partials(slots, fields, order, lo, hi), strict=True):
            state = held[entity]
            state.sessions[s] = merge_into_sessions(state.sessions[s], aggs, gap, start, end, list(partials))
        for entity, base in zip(touched, horizon_base.tolist(), strict=True):
            sessions = held[entity].sessions[s]
            horizon, newest = base - gap, sessions[-1]
            held[entity].sessions[s] = [sess for sess in sessions if sess is newest or sess[1] >= horizon]

    def droppable(self, latest_ms: int, watermark_ms: int | None) -> bool:
        """True when an entity's state can no longer affect any value a new event would produce.

        Any future non-late event is at least `watermark - grace`; a window (or a
        session gap) reaching back from it cannot reach an entity whose latest event
        is older than that minus the longest window, so the state would start fresh
        anyway. Reads of the old values come from the online store, which expires
        on its own (ttl + longest window).
        """
        cutoff = self.drop_cutoff(watermark_ms)
        return cutoff is not None and latest_ms < cutoff

    def drop_cutoff(self, watermark_ms: int | None) -> int | None:
        """States whose latest event is older than this are `droppable` (None: no watermark, nothing is)."""
        return None if watermark_ms is None else watermark_ms - self.grace_ms - self.view.longest_window_ms

    # ------------------------------------------------------------------- as_of
    def expired(self, state: EntityState | None, t_ms: int) -> bool:
        """Missing: never seen, or the latest event is older than `t - ttl` (Feast's TTL rule)."""
        return state is None or state.latest_ms < t_ms - self.ttl_ms

    def steady_until(self, state: EntityState, t_ms: int) -> int | None:
        """When a value of `state` may first differ from its value at `t_ms` (a pane boundary, a session's gap
        running out, the ttl); None if one moves with time itself (an age). Reads reuse values until then."""
        if self.reads_time:
            return None
        if t_ms >= (until := state.latest_ms + self.ttl_ms + 1):  # expired: no change until another event
            return _NEVER
        for step in self.grid_steps:
            until = min(until, (t_ms // step + 1) * step)
        for s, gap in enumerate(self.session_gaps):
            if t_ms - state.sessions[s][-1][1] <= gap:
                until = min(until, state.sessions[s][-1][1] + gap + 1)
        return until

    def as_of(self, state: EntityState | None, t_ms: int) -> dict[str, Any]:
        """Every feature's value at `t_ms` (semantics.md); all None when missing or expired.

        Raises:
            AsOfTooEarlyError: `t_ms` is before the entity's latest processed event,
                whose effect on earlier times the state no longer holds.
        """
        if self.expired(state, t_ms):
            return dict.fromkeys(self.value_names)
        assert state is not None
        if t_ms < state.latest_ms:
            raise AsOfTooEarlyError(
                f"as_of {t_ms} is before the entity's latest event {state.latest_ms}; "
                "online reads answer for times at or after it"
            )
        merged: dict[tuple[int, int], list] = {}
        values: dict[str, Any] = {}
        for out in self.outputs:
            if out.kind == "pane":
                key = (out.group, out.panes)
                partials = merged.get(key)
                if partials is None:
                    partials = merged[key] = self._merge_panes(state, out.group, out.panes, t_ms)
                values[out.name] = out.value(partials[out.slot], t_ms)
            else:
                values[out.name] = out.value(state.sessions[out.group][-1][2][out.slot], t_ms)
        for s, gap in enumerate(self.session_gaps):
            start, end = state.sessions[s][-1][0], state.sessions[s][-1][1]
            base = 3 * s
            values[self.session_columns[base]] = start
            values[self.session_columns[base + 1]] = end
            values[self.session_columns[base + 2]] = t_ms - end <= gap
        return values

    def _merge_panes(self, state: EntityState, g: int, count: int, t_ms: int) -> list:
        """The partials of the `count` panes ending with the one holding `t_ms`, combined per slot."""
        newest = t_ms // self.grid_steps[g]
        oldest = newest - count + 1
        panes = [pane for index, pane in state.grids[g].items() if oldest <= index <= newest]
        if len(panes) == 1:
            return panes[0]
        # each slot's partials across the panes, transposed in C (28 -> 26.5 us a read)
        across = zip(*panes, strict=True) if panes else [[]] * len(self.grid_slots[g])
        return [slot.agg.combine(partials) for slot, partials in zip(self.grid_slots[g], across, strict=True)]

    # ------------------------------------------------------------ persistence
    def encode(self, state: EntityState) -> bytes:
        """Bytes for the changelog and Redis; `decode` reverses it."""
        return pack_state(_FORMAT, self.layout_id, state)

    def position_of(self, blob: bytes) -> tuple[int, int]:
        """(partition, latest_ms) of a stored state from the head of its bytes, its panes not decoded: what the
        expiry sweep needs of every state (2.5x faster than `decode` on a small one). Raises StateLayoutError."""
        latest, partition = unpack_head(blob, self._check_layout)
        return partition, latest

    def decode(self, blob: bytes | None) -> EntityState | None:
        """The state `encode` wrote, or None for no blob.

        Raises:
            StateLayoutError: the blob was written by another feature definition.
        """
        if blob is None:
            return None
        fmt, layout, latest, partition, offset, grids, sessions = unpack_state(blob)
        self._check_layout(fmt, layout)
        return EntityState(latest, partition, offset, grids, sessions)

    def _check_layout(self, fmt: int, layout: str) -> None:
        if fmt != _FORMAT or layout != self.layout_id:
            raise StateLayoutError(f"view {self.view.name}: stored state has layout {layout}, this definition has "
                                   f"{self.layout_id}; the definition changed: replay the view into a new version")

