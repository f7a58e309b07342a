"""The window engine: per-entity state in, feature values out. Pure: no I/O, no clock.

One engine serves every path (architecture.md): the live worker and the
replay call `apply` per event; the online read and the offline join call
`as_of`. The state of one entity is an `EntityState`; it is stored as the
bytes `encode` returns (in the Faust changelog and in Redis) and read back
with `decode`.

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
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

import msgpack

from streams.definitions import FeatureView
from streams.errors import RilletError
from streams.kernel.aggregations import Aggregation, get_aggregation
from streams.kernel.windows import Session

__all__ = [
    "AsOfTooEarlyError",
    "EntityState",
    "Event",
    "StateLayoutError",
    "ViewEngine",
]

_FORMAT = 1


class AsOfTooEarlyError(RilletError, ValueError):
    """`as_of` asked for a time before the entity's latest processed event."""


class StateLayoutError(RilletError, ValueError):
    """Stored state was written by a different feature definition (replay into a new version)."""


@dataclass(slots=True)
class Event:
    """One decoded, validated event, with where it came from."""

    entity: str
    event_ms: int
    values: dict[str, Any]
    partition: int = 0
    offset: int = 0


@dataclass(slots=True)
class EntityState:
    """Everything the engine keeps for one entity; `encode`/`decode` turn it into bytes."""

    latest_ms: int
    partition: int
    offset: int
    grids: list[dict[int, list]]
    sessions: list[list[list]]


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
        for feature in view.features:
            self._compile(feature.name, feature.field, feature.aggregation, feature.window)
        self.session_columns = [
            f"session_{label}_{part}"
            for label in (
                Session(gap).label.removeprefix("session_") for gap in self.session_gaps
            )
            for part in ("start", "end", "active")
        ]
        self.value_names = [o.name for o in self.outputs] + self.session_columns
        layout = repr((self.grid_steps, self.grid_keep, self.session_gaps,
                       [[(s.field, s.agg.name) for s in g] for g in self.grid_slots],
                       [[(s.field, s.agg.name) for s in g] for g in self.session_slots]))
        self.layout_id = hashlib.sha256(layout.encode()).hexdigest()[:8]

    # ----------------------------------------------------------------- compile
    def _compile(self, name: str, field: str | None, agg_name: str, window: Any) -> None:
        agg = get_aggregation(agg_name)
        slot = _Slot(field, agg)
        if isinstance(window, Session):
            if window.gap_ms not in self.session_gaps:
                self.session_gaps.append(window.gap_ms)
                self.session_slots.append([])
            group = self.session_gaps.index(window.gap_ms)
            slots = self.session_slots[group]
            if slot not in slots:
                slots.append(slot)
            self.outputs.append(_Output(name, "session", group, slots.index(slot), 0))
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
        self.outputs.append(_Output(name, "pane", group, slots.index(slot), panes))

    # ------------------------------------------------------------------- apply
    def is_late(self, event_ms: int, watermark_ms: int | None) -> bool:
        """Late: earlier than the partition watermark minus grace (semantics.md, "Lateness")."""
        return watermark_ms is not None and event_ms < watermark_ms - self.grace_ms

    def is_from_future(self, event_ms: int, record_ms: int | None) -> bool:
        """From the future: later than its record's timestamp by more than max_future ("Lateness").

        A record without a timestamp cannot be judged, and passes.
        """
        return record_ms is not None and event_ms - record_ms > self.view.max_future_ms

    def apply(self, state: EntityState | None, event: Event, watermark_ms: int) -> EntityState | None:
        """Add one non-late event to an entity's state.

        Returns the updated state, or None when the event was already applied
        (same partition, offset not greater): re-delivered events after a
        restart are skipped, so at-least-once delivery counts each event once.
        `watermark_ms` is the partition watermark including this event; it
        bounds which sessions a future non-late event could still touch.
        """
        if state is None:
            state = EntityState(
                latest_ms=event.event_ms, partition=event.partition, offset=-1,
                grids=[{} for _ in self.grid_steps], sessions=[[] for _ in self.session_gaps],
            )
        elif state.partition == event.partition and event.offset <= state.offset:
            return None
        state.partition, state.offset = event.partition, event.offset
        if event.event_ms > state.latest_ms:
            state.latest_ms = event.event_ms
        for g, step in enumerate(self.grid_steps):
            self._add_to_grid(state.grids[g], g, step, state.latest_ms, event)
        for s, gap in enumerate(self.session_gaps):
            horizon = watermark_ms - self.grace_ms - gap
            state.sessions[s] = self._add_to_sessions(state.sessions[s], s, gap, horizon, event)
        return state

    def _add_to_grid(self, panes: dict[int, list], g: int, step: int, latest: int, event: Event) -> None:
        oldest_needed = latest // step - self.grid_keep[g] + 1
        index = event.event_ms // step
        if index >= oldest_needed:
            pane = panes.get(index)
            if pane is None:
                pane = panes[index] = [slot.agg.initial() for slot in self.grid_slots[g]]
            self._add_to_partials(pane, self.grid_slots[g], event)
        for old in [i for i in panes if i < oldest_needed]:
            del panes[old]

    @staticmethod
    def _add_to_partials(partials: list, slots: list[_Slot], event: Event) -> None:
        values, ms, offset = event.values, event.event_ms, event.offset
        for i, slot in enumerate(slots):
            value = values.get(slot.field) if slot.field is not None else None
            if value is None and not slot.agg.counts_nulls:
                continue
            partials[i] = slot.agg.add(partials[i], value, ms, offset)

    def _add_to_sessions(self, sessions: list[list], s: int, gap: int, horizon: int, event: Event) -> list[list]:
        x = event.event_ms
        slots = self.session_slots[s]
        fresh = [slot.agg.initial() for slot in slots]
        self._add_to_partials(fresh, slots, event)
        merged = [x, x, fresh]
        starts = [sess[0] for sess in sessions]
        # sessions are disjoint and sorted, so those within gap of x are contiguous
        lo = bisect_left(starts, x - gap)
        while lo > 0 and sessions[lo - 1][1] >= x - gap:
            lo -= 1
        hi = lo
        while hi < len(sessions) and sessions[hi][0] <= x + gap:
            hi += 1
        for sess in sessions[lo:hi]:
            merged = [
                min(sess[0], merged[0]), max(sess[1], merged[1]),
                [slot.agg.merge(a, b) for slot, a, b in zip(slots, sess[2], merged[2], strict=True)],
            ]
        out = [*sessions[:lo], merged, *sessions[hi:]]
        last = out[-1]
        return [sess for sess in out if sess is last or sess[1] >= horizon]

    def droppable(self, latest_ms: int, watermark_ms: int | None) -> bool:
        """True when an entity's state can no longer affect any value a new event would produce.

        Any future non-late event is at least `watermark - grace`; a window (or a
        session gap) reaching back from it cannot reach an entity whose latest event
        is older than that minus the longest window, so the state would start fresh
        anyway. Reads of the old values come from the online store, which expires
        on its own (ttl + longest window).
        """
        if watermark_ms is None:
            return False
        return latest_ms < watermark_ms - self.grace_ms - self.view.longest_window_ms

    # ------------------------------------------------------------------- as_of
    def expired(self, state: EntityState | None, t_ms: int) -> bool:
        """Missing: never seen, or the latest event is older than `t - ttl` (Feast's TTL rule)."""
        return state is None or state.latest_ms < t_ms - self.ttl_ms

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
                values[out.name] = self.grid_slots[out.group][out.slot].agg.result(partials[out.slot])
            else:
                last = state.sessions[out.group][-1]
                values[out.name] = self.session_slots[out.group][out.slot].agg.result(last[2][out.slot])
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
        return [slot.agg.combine([pane[i] for pane in panes]) for i, slot in enumerate(self.grid_slots[g])]

    # ------------------------------------------------------------ persistence
    def encode(self, state: EntityState) -> bytes:
        """Bytes for the changelog and Redis; `decode` reverses it."""
        return msgpack.packb(
            [_FORMAT, self.layout_id, state.latest_ms, state.partition, state.offset,
             state.grids, state.sessions],
            use_bin_type=True,
        )

    def decode(self, blob: bytes | None) -> EntityState | None:
        """The state `encode` wrote, or None for no blob.

        Raises:
            StateLayoutError: the blob was written by another feature definition.
        """
        if blob is None:
            return None
        fmt, layout, latest, partition, offset, grids, sessions = msgpack.unpackb(
            blob, raw=False, strict_map_key=False
        )
        if fmt != _FORMAT or layout != self.layout_id:
            raise StateLayoutError(
                f"view {self.view.name}: stored state has layout {layout}, this definition has "
                f"{self.layout_id}; the definition changed: replay the view into a new version"
            )
        return EntityState(latest, partition, offset, grids, sessions)
