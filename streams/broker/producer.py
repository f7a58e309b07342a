"""`EventProducer`: validated Avro events, Confluent wire format, keyed by entity.

For producer apps. Each event is checked against the view's schema before
it is sent (the error names the field); the producer is idempotent and
`flush()` waits for every delivery report, returning how many were sent and
how many failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from schemas.codec import EventEncoder, InvalidEventError
from schemas.store import SchemaStore, open_schema_store
from streams.broker.kafka_log import client_config
from streams.definitions.view import FeatureView
from streams.errors import RilletError
from streams.settings import Settings

__all__ = ["DeliveryReport", "EncodedEvent", "EventProducer", "PreparedFile"]


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """One event validated and encoded, ready to send: nothing about it can fail any more but delivery."""

    key: bytes
    value: bytes
    timestamp_ms: int | None


@dataclass
class PreparedFile:
    """A JSON-lines file checked whole before anything is sent: its events, and each bad line's problem."""

    events: list[EncodedEvent] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # "file:line: problem", in file order
    lines: int = 0


@dataclass
class DeliveryReport:
    """Counts after a flush; `heads` is, per partition, one past the last offset delivered."""

    sent: int = 0
    failed: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)
    heads: dict[int, int] = field(default_factory=dict)


class EventProducer:
    """Publishes one view's events; use as a context manager or call `flush()` at the end."""

    def __init__(self, settings: Settings, view: FeatureView, *, store: SchemaStore | None = None,
                 extra_config: dict[str, Any] | None = None) -> None:
        from streams.broker.topics import ensure_topics

        self.view = view
        self.encoder = EventEncoder(view, store or open_schema_store(settings))
        ensure_topics(settings, [view])  # an auto-created topic would get the broker's default partitions
        config = {
            **client_config(settings.bootstrap_servers),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,  # one-record batches cost ~100x more per message on Tansu
            "compression.type": "none",
            "queue.buffering.max.messages": 1_000_000,
        }
        config.update(extra_config or {})
        self._producer = Producer(config)
        self.report = DeliveryReport()

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.report.failed += 1
            if len(self.report.errors) < 20:
                self.report.errors.append(str(err))
        else:
            self.report.sent += 1
            p = msg.partition()
            self.report.heads[p] = max(self.report.heads.get(p, 0), msg.offset() + 1)

    def encode(self, event: dict[str, Any], *, timestamp_ms: int | None = None) -> EncodedEvent:
        """Validate and encode one event; the record timestamp defaults to its event time.

        Raises:
            InvalidEventError: the event does not match the schema.
        """
        if not isinstance(event, dict):
            raise InvalidEventError(f"{self.view.name} event must be a JSON object, got {type(event).__name__}")
        value = self.encoder.encode(event)
        if timestamp_ms is None and self.view.event_time and isinstance(event.get(self.view.event_time), int):
            timestamp_ms = event[self.view.event_time]
        return EncodedEvent(self.encoder.key(event), value, timestamp_ms)

    def send(self, event: dict[str, Any], *, timestamp_ms: int | None = None) -> None:
        """Validate, encode and queue one event.

        Raises:
            InvalidEventError: the event does not match the schema (nothing is sent).
        """
        self.send_encoded(self.encode(event, timestamp_ms=timestamp_ms))

    def send_encoded(self, event: EncodedEvent) -> None:
        """Queue an event `encode` already checked."""
        kwargs: dict[str, Any] = {} if event.timestamp_ms is None else {"timestamp": event.timestamp_ms}
        self._produce(event.key, event.value, **kwargs)

    def prepare_jsonl(self, path: str | Path) -> PreparedFile:
        """Read, validate and encode a whole JSON-lines file before sending any of it (`rillet publish`).

        A file is all or nothing: a caller sends `events` only when `invalid` is empty, or
        when told to skip bad lines, so a retry after fixing a line never sends the rest twice.
        """
        prepared = PreparedFile()
        for where, event in _jsonl(path):
            prepared.lines += 1
            if isinstance(event, InvalidEventError):
                prepared.invalid.append(str(event))
                continue
            try:
                prepared.events.append(self.encode(event))
            except InvalidEventError as exc:
                prepared.invalid.append(f"{where}: {exc}")
        return prepared

    def send_raw(self, key: bytes | None, value: bytes | None) -> None:
        """Send bytes as they are (tests and tools: e.g. to exercise the dead-letter path)."""
        self._produce(key, value)

    def _produce(self, key: bytes | None, value: bytes | None, **kwargs: Any) -> None:
        """Queue one record; while the local queue is full, serve delivery reports and retry."""
        while True:
            try:
                self._producer.produce(self.view.topic, value=value, key=key, on_delivery=self._on_delivery, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def send_many(self, events: Iterable[dict[str, Any]], *, skip_invalid: bool = False) -> None:
        """All or nothing: every event is encoded before any is sent.

        Raises:
            InvalidEventError: the first invalid event, unless `skip_invalid` (then counted); nothing is sent.
        """
        ready = []
        for event in events:
            try:
                ready.append(self.encode(event))
            except InvalidEventError as exc:
                if not skip_invalid:
                    raise
                self.report.invalid += 1
                if len(self.report.errors) < 20:
                    self.report.errors.append(str(exc))
        for encoded in ready:
            self.send_encoded(encoded)

    def flush(self, timeout_s: float = 60.0) -> DeliveryReport:
        """Wait for every delivery report."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise RilletError(f"{remaining} events still undelivered after {timeout_s:.0f}s")
        return self.report

    def close(self) -> DeliveryReport:
        """Flush, then release the client (its connections close now, not at garbage collection)."""
        report = self.flush()
        self._producer = None  # type: ignore[assignment]
        return report

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any] | InvalidEventError]]:
    """("file:line", event) per non-blank line; a line that is not JSON gives an error in its place."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                where = f"{path}:{number}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield where, InvalidEventError(f"{where}: not JSON: {exc.msg} (column {exc.colno})")
