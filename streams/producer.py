"""`EventProducer`: validated Avro events, Confluent wire format, keyed by entity.

For producer apps. Each event is checked against the view's schema before
it is sent (the error names the field); the producer is idempotent and
`flush()` waits for every delivery report, returning how many were sent and
how many failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from schemas.codec import EventEncoder, InvalidEventError
from schemas.store import SchemaStore, open_schema_store
from streams.definitions import FeatureView
from streams.errors import RilletError
from streams.kafka_log import client_config
from streams.settings import Settings

__all__ = ["DeliveryReport", "EventProducer", "read_jsonl"]


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
        from streams.topics import ensure_topics

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

    def send(self, event: dict[str, Any], *, timestamp_ms: int | None = None) -> None:
        """Validate, encode and queue one event.

        Raises:
            InvalidEventError: the event does not match the schema (nothing is sent).
        """
        value = self.encoder.encode(event)
        kwargs: dict[str, Any] = {}
        if timestamp_ms is None and self.view.event_time and isinstance(event.get(self.view.event_time), int):
            timestamp_ms = event[self.view.event_time]
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        self._produce(self.encoder.key(event), value, **kwargs)

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
        for event in events:
            try:
                self.send(event)
            except InvalidEventError as exc:
                if not skip_invalid:
                    raise
                self.report.invalid += 1
                if len(self.report.errors) < 20:
                    self.report.errors.append(str(exc))

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


def read_jsonl(path: str | Path) -> Iterable[dict[str, Any]]:
    """Events from a JSON-lines file; the error names the line."""
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidEventError(f"{path}:{number}: not JSON: {exc.msg}") from None

