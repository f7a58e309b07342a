"""One batch of source records through decode, lateness, the engine: no I/O.

The worker (and later the replay) hand in raw records plus a way to read
stored state; they get back named outputs to write: entity states, the
aggregated events for the offline log, dead letters and counts. Keeping this pure is what lets every driver
share it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from streams.kernel.collector import pause_collector
from streams.kernel.engine import NO_WATERMARK, EntityState, Event, EventBatch, ViewEngine
from streams.kernel.records import DecodedEvents, EventRows, SourceBatch, SourceRecord, StateWrite
from streams.kernel.watermark import Watermarks

__all__ = ["BatchResult", "DeadLetter", "Decoder", "SourceBatch", "SourceRecord", "ViewProcessor"]


class Decoder(Protocol):
    """Turns one record's bytes into an `Event` (`schemas.codec.EventDecoder` is the one in use): the kernel
    gets the decoder handed in, so it depends on no wire format and does no I/O to look schemas up."""

    def decode(self, raw: bytes | None, timestamp_ms: int | None, partition: int, offset: int) -> Event:
        """Raises `EventDecodeError` (with a dead-letter reason) for a record that is not a valid event."""
        ...

    def decode_batch(self, values: list[bytes | None], timestamps: list[int | None]) -> DecodedEvents:
        """Many records' bytes at once: the events as columns, and a reason for each record that holds none."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that was not aggregated, and why: goes to `<topic>.dlq` with its original bytes."""

    record: SourceRecord
    reason: str
    error: str
    event_ms: int | None = None
    watermark_ms: int | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            ("rillet.reason", self.reason.encode()),
            ("rillet.error", self.error.encode()[:1000]),
            ("rillet.source.topic", self.record.topic.encode()),
            ("rillet.source.partition", str(self.record.partition).encode()),
            ("rillet.source.offset", str(self.record.offset).encode()),
        ]
        if self.event_ms is not None:
            out.append(("rillet.event_time_ms", str(self.event_ms).encode()))
        if self.watermark_ms is not None:
            out.append(("rillet.watermark_ms", str(self.watermark_ms).encode()))
        return out


@dataclass(slots=True)
class BatchResult:
    """What a batch produced; `states` holds one final state per touched entity."""

    states: dict[str, tuple[int, EntityState]] = field(default_factory=dict)
    rows: EventRows = field(default_factory=EventRows.empty)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    max_event_ms: int | None = None


class ViewProcessor:
    """Applies batches of one view's source records to entity states."""

    def __init__(self, engine: ViewEngine, decoder: Decoder, watermarks: Watermarks, hot_states: int = 100_000) -> None:
        self.engine = engine
        self.decoder = decoder
        self.watermarks = watermarks
        self.hot_states = hot_states
        # entity -> (its stored bytes, those bytes decoded), most recently written last: a state read by the next
        # batch is not decoded again while the store still holds exactly these bytes (the bytes are the
        # durable form, this is the working one); one in a batch's hands is taken out until it is written. An
        # OrderedDict: evicting the oldest of a plain dict (`next(iter(d))` after deleting from its front) scans
        # the deleted slots each time, and with new entities every batch that held the GIL for seconds
        self._hot: OrderedDict[str, tuple[bytes, EntityState]] = OrderedDict()

    def process(
        self,
        records: list[SourceRecord] | SourceBatch,
        load_state: Callable[[str], bytes | None],
        now_ms: int,
        *,
        with_rows: bool = True,
        until_ms: int | None = None,
    ) -> BatchResult:
        """Decode, drop late events to the DLQ, apply the rest as one batch; state is read once per entity.

        The records come as columns (`SourceBatch`; a list of records is turned into one), the decoder reads
        them as columns (`Decoder.decode_batch`), and everything after it is columnar too: re-deliveries
        are those at or below each partition's running highest offset, each event's watermark is a running
        maximum per partition in arrival order, the late ones are those below it by more than grace, and
        the engine applies the rest at once. `until_ms` (replays up to a time) leaves out events after it,
        as if never sent.
        """
        pause_collector()
        source = records if isinstance(records, SourceBatch) else SourceBatch.of(records)
        return self._process(source, load_state, now_ms, with_rows, until_ms)

    def _process(self, source: SourceBatch, load_state: Callable[[str], bytes | None], now_ms: int,
                 with_rows: bool, until_ms: int | None) -> BatchResult:
        engine, result = self.engine, BatchResult()
        counts = result.counts
        new = self._not_handled(source)
        counts["duplicate"] += len(source) - int(new.sum())
        fresh = source if new.all() else source.take(np.flatnonzero(new))
        stamps = fresh.timestamps
        decoded = self.decoder.decode_batch(fresh.values, stamps)
        letters: list[tuple[int, DeadLetter]] = [  # (index in fresh, letter): sent in record order
            (i, DeadLetter(fresh.record(i), error.reason, error.message)) for i, error in decoded.failures]
        counts["dead_lettered"] += len(decoded.failures)
        positions = np.array(decoded.positions, dtype=np.int64)
        event_ms = decoded.event_ms
        keep = np.ones(len(positions), dtype=bool)
        if until_ms is not None:
            after = event_ms > until_ms
            counts["after_until"] += int(after.sum())
            keep &= ~after
        at_events = [stamps[i] for i in decoded.positions]
        stamped = np.array([ms is not None for ms in at_events], dtype=bool)
        record_ms = np.array([ms or 0 for ms in at_events], dtype=np.int64)
        future = keep & engine.from_future(event_ms, record_ms, stamped)
        for k in np.flatnonzero(future).tolist():
            record, ms = fresh.record(int(positions[k])), int(event_ms[k])
            letters.append((int(positions[k]), DeadLetter(
                record, "future_event_time",
                f"event time {ms} is more than max_future {engine.view.max_future_ms} ms "
                f"after the record's timestamp {record.timestamp_ms}", ms)))
        counts["future_event_time"] += int(future.sum())
        keep &= ~future
        if keep.any():
            kept = np.flatnonzero(keep)
            at = positions[kept]
            batch = EventBatch(
                [decoded.entities[k] for k in kept.tolist()], event_ms[kept], fresh.partitions[at],
                fresh.offsets[at], np.zeros(len(kept), dtype=np.int64),
                {f: [column[k] for k in kept.tolist()] for f, column in decoded.fields.items()},
            )
            batch, kept_positions = self._drop_late(batch, at.tolist(), fresh, letters, counts)
            self._apply(batch, kept_positions, fresh, load_state, now_ms, with_rows, result)
        result.dead_letters = [letter for _, letter in sorted(letters, key=lambda pair: pair[0])]
        return result

    def _not_handled(self, source: SourceBatch) -> np.ndarray:
        """Which records are new: above their partition's highest offset handled before them (the stored one,
        then the batch's own, in arrival order); marks them handled."""
        new = np.ones(len(source), dtype=bool)
        for partition in np.unique(source.partitions).tolist():
            where = np.flatnonzero(source.partitions == partition)
            offsets = source.offsets[where]
            last = self.watermarks.last_offset(partition)
            before = np.maximum.accumulate(np.concatenate(([last], offsets)))
            new[where] = offsets > before[:-1]
            self.watermarks.mark(partition, int(before[-1]))
        return new

    def _drop_late(self, batch: EventBatch, positions: list[int], records: SourceBatch,
                   letters: list[tuple[int, DeadLetter]], counts: Counter) -> tuple[EventBatch, list[int]]:
        """The batch without its late events, which become dead letters (semantics.md, "Lateness")."""
        grace = self.engine.grace_ms
        before = self._watermarks(batch)
        late = self.engine.late(batch.event_ms, before)
        if not late.any():
            return batch, positions
        for i in np.flatnonzero(late).tolist():
            event_ms, watermark = int(batch.event_ms[i]), int(before[i])
            letters.append((positions[i], DeadLetter(
                records.record(positions[i]), "late",
                f"event time {event_ms} is more than grace {grace} ms behind the watermark {watermark}",
                event_ms, watermark,
            )))
        counts["late"] += int(late.sum())
        on_time = np.flatnonzero(~late)
        return batch.take(on_time), [positions[i] for i in on_time.tolist()]

    def _apply(self, batch: EventBatch, positions: list[int], records: SourceBatch,
               load_state: Callable[[str], bytes | None], now_ms: int, with_rows: bool, result: BatchResult) -> None:
        engine, counts, held = self.engine, result.counts, result.states
        if not len(batch):
            return
        states: dict[str, EntityState | None] = {}
        for entity in dict.fromkeys(batch.entities):
            found = held.get(entity)
            states[entity] = found[1] if found else self._load(entity, load_state)
        applied = engine.apply_batch(states, batch)
        done = np.flatnonzero(applied)
        counts["duplicate"] += len(batch) - len(done)
        counts["aggregated"] += len(done)
        # The progress counts every event past it, also those a state already held: they were applied
        # by a batch whose progress record was lost in a crash, and their count with it
        for partition, n in Counter(batch.partitions.tolist()).items():
            self.watermarks.count_aggregated(partition, n)
        if not len(done):
            return
        partitions = batch.partitions[done].tolist()
        entities = [batch.entities[i] for i in done.tolist()]
        for entity, partition in zip(entities, partitions, strict=True):  # the last event's partition stays
            held[entity] = (partition, states[entity])
        newest = int(batch.event_ms[done].max())
        if result.max_event_ms is None or newest > result.max_event_ms:
            result.max_event_ms = newest
        if with_rows:
            # created = when the record entered the topic: the same in the live worker and in any replay
            stamps = [records.timestamps[positions[i]] for i in done.tolist()]
            created = np.array([now_ms if t is None else t for t in stamps], dtype=np.int64)
            applied_only = batch if len(done) == len(batch) else batch.take(done)
            result.rows = EventRows(applied_only.entities, applied_only.event_ms, created, applied_only.partitions,
                                    applied_only.offsets, applied_only.fields)

    def _watermarks(self, batch: EventBatch) -> np.ndarray:
        """Each event's partition watermark before it (`NO_WATERMARK` for none yet); fills in the batch's
        watermarks after each event and advances the stored ones: a running maximum per partition."""
        before = np.empty(len(batch), dtype=np.int64)
        for partition in np.unique(batch.partitions).tolist():
            where = np.flatnonzero(batch.partitions == partition)
            start = self.watermarks.get(partition)
            running = np.maximum.accumulate(np.concatenate((
                [NO_WATERMARK if start is None else start], batch.event_ms[where])))
            before[where] = running[:-1]
            batch.watermarks[where] = running[1:]
            self.watermarks.advance(partition, int(running[-1]))
        return before

    def _load(self, entity: str, load_state: Callable[[str], bytes | None]) -> EntityState | None:
        """An entity's stored state, decoded: the hot copy when the store holds the bytes it was written as."""
        blob = load_state(entity)
        hot = self._hot.pop(entity, None)
        if hot is not None and blob is not None and hot[0] == blob:
            return hot[1]
        return self.engine.decode(blob)

    def state_writes(self, result: BatchResult) -> list[StateWrite]:
        """The batch's states as the bytes to store; each stays hot (decoded) for the next batch."""
        pause_collector()
        writes, hot, encode = [], self._hot, self.engine.encode
        for entity, (_, state) in result.states.items():
            blob = encode(state)
            writes.append(StateWrite(entity, blob, state.latest_ms))
            hot[entity] = (blob, state)
        while len(hot) > self.hot_states:
            hot.popitem(last=False)
        return writes
