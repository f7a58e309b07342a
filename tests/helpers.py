"""Test helpers shared by unit and integration tests (no mocks of the broker or Redis)."""

from __future__ import annotations

import functools
import io
import json
import textwrap
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer

from schemas.store import canonical


class MemorySchemaStore:
    """Schema ids in a dict: the registry's contract without a server, for pure unit tests."""

    def __init__(self) -> None:
        self.by_id: dict[int, dict] = {}
        self.ids: dict[str, int] = {}

    def register(self, subject: str, schema: dict) -> int:
        form = canonical(schema)
        if form not in self.ids:
            self.ids[form] = len(self.ids) + 1
            self.by_id[self.ids[form]] = schema
        return self.ids[form]

    def schema_by_id(self, schema_id: int) -> dict:
        from schemas.store import UnknownSchemaError

        if schema_id not in self.by_id:
            raise UnknownSchemaError(f"no schema is registered with id {schema_id}")
        return self.by_id[schema_id]


EVENT_SCHEMA = {
    "type": "record",
    "name": "TestEvent",
    "fields": [
        {"name": "entity", "type": "string"},
        {"name": "x", "type": ["null", "double"], "default": None},
        {"name": "tag", "type": ["null", "string"], "default": None},
        {"name": "ts", "type": "long"},
    ],
}


def write_schema(folder: Path, schema: dict = EVENT_SCHEMA) -> Path:
    path = folder / "event.avsc"
    path.write_text(json.dumps(schema))
    return path


class RegistryProcess:
    """`rillet registry` as a child process on a free port, with its state in `data`."""

    def __init__(self, data: Path) -> None:
        from streams.stack.embedded import free_port

        self.data, self.port, self.proc = data, free_port(), None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RegistryProcess:
        import subprocess
        import sys

        from streams.stack.embedded import port_open, wait_until

        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "registry", "--port", str(self.port),
                                      "--data", str(self.data)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.data.with_suffix(".log"), "ab"))
        wait_until(lambda: port_open("127.0.0.1", self.port), timeout_s=30, what="the registry")
        return self

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def client(self):
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return SchemaRegistryClient({"url": self.url})


@dataclass
class ViewUnderTest:
    """A uniquely named view written from a template, and settings that isolate its test."""

    name: str
    view: Any
    features: Path
    settings: Any


def view_under_test(stack: Any, tmp_path: Path, template: str, prefix: str, **settings_changes: Any) -> ViewUnderTest:
    """Write `template` (with `{name}` and `{schema}`) as a features file, load it, and derive settings
    whose offline path, state dir and worker group belong to this test alone."""
    from schemas import SCHEMA_DIR
    from streams.definitions.view import load_views

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    features = tmp_path / "features.py"
    features.write_text(textwrap.dedent(template.format(name=name, schema=SCHEMA_DIR / "payment.avsc")))
    [view] = load_views(features)
    settings = stack.settings.with_(offline_path=str(tmp_path / "offline"), state_dir=str(tmp_path / "state"),
                                    worker_group=f"g-{name}", **settings_changes)
    return ViewUnderTest(name, view, features, settings)


def assert_online_equals_oracle(settings: Any, view: Any, history: list[dict]) -> None:
    """Every entity's online values, read at its latest event, equal the oracle's over `history`
    (payment events, none late): the check the crash, outage and scale-out tests share."""
    from sinks.online.reads import FeatureReader
    from sinks.redis_client import connect_redis
    from tests.oracle import OEvent, close, value_at

    events = [OEvent(e["user_id"], e["event_time"], {"amount": e["amount"]}, i) for i, e in enumerate(history)]
    reader = FeatureReader([view], connect_redis(settings))
    for entity in sorted({e.entity for e in events}):
        latest = max(e.t for e in events if e.entity == entity)
        row = reader.get_online_features([f"{view.name}:*"], [{"user_id": entity}], as_of=latest).rows[0]
        for feature, expected in value_at(view, events, entity, latest).items():
            got = row[f"{view.name}:{feature}"]
            assert close(got, expected), (entity, feature, got, expected)


@functools.cache
def _payment_schema() -> Any:
    import schemas

    return fastavro.parse_schema(json.loads((schemas.SCHEMA_DIR / "payment.avsc").read_text()))


def decode_payment(raw: bytes) -> dict | None:
    """A payment decoded independently of rillet (Avro after a 5-byte header); None when malformed."""
    if len(raw) < 5 or raw[0] != 0:
        return None
    try:
        record = fastavro.schemaless_reader(io.BytesIO(raw[5:]), _payment_schema())
    except Exception:
        return None
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    record["event_time"] = (record["event_time"] - epoch) // timedelta(milliseconds=1)
    return record


def consumer_from_start(settings, prefix: str) -> Consumer:
    return Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"{prefix}-{uuid.uuid4()}",
                     "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                     "heartbeat.interval.ms": 1000, "partition.assignment.strategy": "range"})


def consume(settings, topic: str, total: int) -> list:
    """The first `total` records of a topic, read by a fresh consumer group from the start."""
    consumer = consumer_from_start(settings, "check")
    consumer.subscribe([topic])
    out = []
    try:
        while len(out) < total:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                out.append(msg)
    finally:
        consumer.close()
    return out


def read_topic(settings, topic: str, total: int) -> list[tuple[int, int, bytes]]:
    """Every record of a topic as (partition, offset, value), in offset order per partition."""
    return sorted((m.partition(), m.offset(), m.value()) for m in consume(settings, topic, total))


#: Runs a test that takes `stack` on a three-master Redis Cluster as well as on one Redis.
WITH_CLUSTER = pytest.mark.parametrize("stack", ["embedded", "cluster", "containers"], indirect=True)
