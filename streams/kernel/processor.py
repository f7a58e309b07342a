"""One batch of source records through decode, lateness, the engine: no I/O.

The worker (and later the replay) hand in raw records plus a way to read
stored state; they get back named outputs to write: entity states, the
aggregated events for the offline log, dead letters and counts. Keeping this pure is what lets every driver
share it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.codec import EventDecoder
from sinks.records import LoggedEvent, StateWrite
from streams.errors import EventDecodeError
from streams.kernel.engine import EntityState, ViewEngine
from streams.kernel.watermark import Watermarks

__all__ = ["BatchResult", "DeadLetter", "SourceRecord", "ViewProcessor"]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A record as read from the broker, before decoding."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


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
    rows: list[LoggedEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    max_event_ms: int | None = None


class ViewProcessor:
    """Applies batches of one view's source records to entity states."""

    def __init__(self, engine: ViewEngine, decoder: EventDecoder, watermarks: Watermarks) -> None:
        self.engine = engine
        self.decoder = decoder
        self.watermarks = watermarks

    def process(
        self,
        records: list[SourceRecord],
        load_state: Callable[[str], bytes | None],
        now_ms: int,
        *,
        with_rows: bool = True,
        until_ms: int | None = None,
    ) -> BatchResult:
        """Decode, drop late events to the DLQ, apply the rest; state is read once per entity.

        `until_ms` (replays up to a time) leaves out events after it, as if never sent.
        """
        engine, result = self.engine, BatchResult()
        states, counts = result.states, result.counts
        progress = self.watermarks
        for record in records:
            if progress.handled(record.partition, record.offset):
                counts["duplicate"] += 1
                continue
            progress.mark(record.partition, record.offset)
            try:
                event = self.decoder.decode(record.value, record.timestamp_ms, record.partition, record.offset)
            except EventDecodeError as exc:
                result.dead_letters.append(DeadLetter(record, exc.reason, exc.message))
                counts["dead_lettered"] += 1
                continue
            if until_ms is not None and event.event_ms > until_ms:
                counts["after_until"] += 1
                continue
            if engine.is_from_future(event.event_ms, record.timestamp_ms):
                result.dead_letters.append(DeadLetter(
                    record, "future_event_time",
                    f"event time {event.event_ms} is more than max_future {engine.view.max_future_ms} ms "
                    f"after the record's timestamp {record.timestamp_ms}",
                    event.event_ms,
                ))
                counts["future_event_time"] += 1
                continue
            watermark = self.watermarks.get(record.partition)
            if engine.is_late(event.event_ms, watermark):
                result.dead_letters.append(DeadLetter(
                    record, "late",
                    f"event time {event.event_ms} is more than grace {engine.grace_ms} ms "
                    f"behind the watermark {watermark}",
                    event.event_ms, watermark,
                ))
                counts["late"] += 1
                continue
            watermark = self.watermarks.advance(record.partition, event.event_ms)
            held = states.get(event.entity)
            state = held[1] if held else engine.decode(load_state(event.entity))
            applied = engine.apply(state, event, watermark)
            if applied is None:
                counts["duplicate"] += 1
                continue
            states[event.entity] = (record.partition, applied)
            counts["aggregated"] += 1
            progress.count_aggregated(record.partition)
            if result.max_event_ms is None or event.event_ms > result.max_event_ms:
                result.max_event_ms = event.event_ms
            if with_rows:
                # created = when the record entered the topic: the same in the live worker and in any replay
                created = record.timestamp_ms if record.timestamp_ms is not None else now_ms
                result.rows.append(LoggedEvent(
                    event.entity, event.event_ms, created, record.partition, record.offset, event.values,
                ))
        return result

    def state_writes(self, result: BatchResult) -> list[StateWrite]:
        return [
            StateWrite(entity, self.engine.encode(state), state.latest_ms)
            for entity, (_, state) in result.states.items()
        ]
