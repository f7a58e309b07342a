"""The served-feature log: what online reads returned, sampled, on a topic, so that training/serving
skew can be measured (`rillet skew`) the way Chronon does: recompute each logged read offline
and compare.

Each record is one read of one view: when it was asked (`request_ms`), the explicit
`as_of` if any, the view and its version, and per sampled entity the time its values
were evaluated at (`read_ms`: `as_of`, or now, or the entity's latest event when the
clock trails it), its latest event time, and every value returned with its status.
Records are Avro in Confluent's wire format under the topic's registered schema.

`RILLET_SERVED_LOG_RATE` is the share of entity reads logged (0: off); the read
samples, puts the sampled rows on a queue and returns; a background thread encodes
them and hands them to the Kafka producer (which sends on its own thread).
"""

from __future__ import annotations

import io
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fastavro
import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from schemas.codec import CONFLUENT_HEADER
from sinks.online.statuses import status_of_value
from streams.broker.kafka_log import client_config
from streams.settings import Settings

__all__ = ["SCHEMA", "ServedLog", "land_served", "read_served"]

SCHEMA = {
    "type": "record", "name": "ServedRead", "namespace": "rillet",
    "doc": "One online read of one view, as rillet served it: the sampled entities and their values.",
    "fields": [
        {"name": "request_ms", "type": "long"},
        {"name": "as_of_ms", "type": ["null", "long"], "default": None},
        {"name": "view", "type": "string"},
        {"name": "version", "type": "int"},
        {"name": "features", "type": {"type": "array", "items": "string"}, "doc": "the feature names, in order"},
        {"name": "entities", "type": {"type": "array", "items": {
            "type": "record", "name": "ServedEntity", "fields": [
                {"name": "entity", "type": "string"},
                {"name": "read_ms", "type": "long", "doc": "the time the values were evaluated at"},
                {"name": "event_ms", "type": ["null", "long"], "default": None},
                {"name": "status", "type": "string", "doc": "PRESENT, NOT_FOUND or OUTSIDE_MAX_AGE"},
                {"name": "values", "type": "string",
                 "doc": "the values in feature order, as a JSON array (null, booleans, numbers, strings)"},
            ]}}},
    ],
}
_PARSED = fastavro.parse_schema(SCHEMA)
log = logging.getLogger("rillet.served_log")


class ServedLog:
    """Logs online reads to the served-feature topic from a background thread."""

    def __init__(self, settings: Settings, rate: float | None = None) -> None:
        from schemas.store import open_schema_store, subject_for
        from streams.broker.topics import ensure_topic

        self.rate = settings.served_log_rate if rate is None else rate
        self.topic = settings.served_log_topic
        ensure_topic(settings, self.topic)
        self.schema_id = open_schema_store(settings).register(subject_for(self.topic), SCHEMA)
        self._header = CONFLUENT_HEADER.pack(0, self.schema_id)
        self._producer = Producer(client_config(settings.bootstrap_servers, **{"linger.ms": 100}))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="rillet-served-log", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Whether to log this entity's read (the configured share of them)."""
        return self.rate >= 1.0 or random.random() < self.rate

    def record(self, request_ms: int, as_of_ms: int | None, view: str, version: int, features: list[str],
               entities: list[tuple[str, int, int | None, str, list[Any]]]) -> None:
        """Queue one read of one view: the feature names, and its sampled entities as (entity, read_ms,
        event_ms, status, values in feature order). Cheap: the log's thread encodes and sends."""
        if not entities:
            return
        with self._idle:
            self._pending += 1
        self._queue.put((request_ms, as_of_ms, view, version, features, entities))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            try:
                self._send(*item)
            except Exception as exc:  # a log that fails must never fail or stall a read
                log.warning('{"event": "served_log_failed", "error": "%s: %s"}', type(exc).__name__, exc)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _send(self, request_ms: int, as_of_ms: int | None, view: str, version: int, features: list[str],
              entities: list) -> None:
        """One record per read, values as a JSON array per entity: a record per value cost 5 us of
        encoding per value (11 ms for a read of 100 entities x 20 features); this, about 1 ms."""
        body = io.BytesIO()
        body.write(self._header)
        fastavro.schemaless_writer(body, _PARSED, {
            "request_ms": request_ms, "as_of_ms": as_of_ms, "view": view, "version": version, "features": features,
            "entities": [{"entity": entity, "read_ms": read_ms, "event_ms": event_ms, "status": status,
                          "values": json.dumps(values, default=str)}
                         for entity, read_ms, event_ms, status, values in entities],
        })
        while True:
            try:
                self._producer.produce(self.topic, key=view.encode(), value=body.getvalue())
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued read is encoded and delivered."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending and time.monotonic() < deadline:
                self._idle.wait(0.1)
        self._producer.flush(max(deadline - time.monotonic(), 0.1))

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(5)




def read_served(settings: Settings, *, since_ms: int = 0, until_ms: int | None = None, view: str | None = None,
                idle_s: float = 3.0) -> Iterator[dict]:
    """The logged reads with `since_ms <= request_ms <= until_ms` (of one view, if given), read from the
    topic's start until `idle_s` pass without a record."""
    consumer = Consumer(client_config(settings.bootstrap_servers, **{
        "group.id": f"rillet-skew-{uuid.uuid4()}", "enable.auto.commit": False}))
    try:
        metadata = consumer.list_topics(settings.served_log_topic, timeout=10).topics.get(settings.served_log_topic)
        if metadata is None or metadata.error:
            return
        consumer.assign([TopicPartition(settings.served_log_topic, p, OFFSET_BEGINNING)
                         for p in sorted(metadata.partitions)])
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() or not msg.value():
                    continue
                last = time.monotonic()
                body = io.BytesIO(msg.value())
                body.seek(5)
                read = fastavro.schemaless_reader(body, _PARSED, None)
                if read["request_ms"] < since_ms or (until_ms is not None and read["request_ms"] > until_ms):
                    continue
                if view is None or read["view"] == view:
                    for served in read["entities"]:  # one entity of one read, as `measure_skew` takes them
                        values = json.loads(served["values"])
                        yield {"request_ms": read["request_ms"], "as_of_ms": read["as_of_ms"], "view": read["view"],
                               "version": read["version"], "entity": served["entity"], "read_ms": served["read_ms"],
                               "event_ms": served["event_ms"],
                               "features": [{"name": name, "value": value,
                                             "status": status_of_value(served["status"], value)}
                                            for name, value in zip(read["features"], values, strict=True)]}
    finally:
        consumer.close()


LANDER_GROUP = "rillet-served-lander"

SERVED_ROWS = pa.schema([
    ("request_ms", pa.int64()), ("as_of_ms", pa.int64()), ("view", pa.string()), ("version", pa.int32()),
    ("entity", pa.string()), ("read_ms", pa.int64()), ("event_ms", pa.int64()), ("status", pa.string()),
    ("features", pa.list_(pa.string())), ("values", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
])


def land_served(settings: Settings, *, idle_s: float = 3.0) -> int:
    """Copy the served-feature log into the offline store as Parquet, one row per entity of a read:
    `{offline}/served/date=YYYY-MM-DD/part-{partition}-{first}-{last}.parquet` (the request's UTC date).

    A consumer group (`rillet-served-lander`) remembers how far it got; a file is published
    (temp file, fsync, rename) before its offsets are committed, and named by its offset
    range, so a lander killed in between writes the same file again, not a second copy.
    Returns the rows landed.
    """
    from sinks.offline.store import publish

    topic = settings.served_log_topic
    consumer = Consumer(client_config(settings.bootstrap_servers, **{
        "group.id": LANDER_GROUP, "enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    landed = 0
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error:
            return 0
        # assigned, not subscribed: one lander needs no group membership, only the group's commits
        committed = consumer.committed([TopicPartition(topic, p) for p in sorted(metadata.partitions)], timeout=10)
        consumer.assign([TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                         for tp in committed])
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            messages = [m for m in consumer.consume(5000, timeout=0.5) if not m.error() and m.value()]
            if not messages:
                continue
            last = time.monotonic()
            by_file: dict[tuple[str, int], list] = {}
            for msg in messages:
                body = io.BytesIO(msg.value())
                body.seek(5)
                read = fastavro.schemaless_reader(body, _PARSED, None)
                day = time.strftime("%Y-%m-%d", time.gmtime(read["request_ms"] / 1000))
                for served in read["entities"]:
                    by_file.setdefault((day, msg.partition()), []).append({
                        "request_ms": read["request_ms"], "as_of_ms": read["as_of_ms"], "view": read["view"],
                        "version": read["version"], "entity": served["entity"], "read_ms": served["read_ms"],
                        "event_ms": served["event_ms"], "status": served["status"], "features": read["features"],
                        "values": served["values"], "partition": msg.partition(), "offset": msg.offset()})
            for (day, partition), rows in sorted(by_file.items()):
                first, last_offset = rows[0]["offset"], rows[-1]["offset"]
                name = f"part-{partition}-{first:012d}-{last_offset:012d}.parquet"
                publish(pa.Table.from_pylist(rows, schema=SERVED_ROWS),
                        settings.offline_root / "served" / f"date={day}" / name)
                landed += len(rows)
            ends: dict[int, int] = {}
            for msg in messages:
                ends[msg.partition()] = max(ends.get(msg.partition(), -1), msg.offset() + 1)
            consumer.commit(offsets=[TopicPartition(topic, p, end) for p, end in ends.items()], asynchronous=False)
    finally:
        consumer.close()
    return landed
