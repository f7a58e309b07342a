"""Quix Streams computing one hopping-window sum over the same Avro events.

    python -m bench.quix_hopping TOPIC EXPECTED   (prints `DONE first_ts last_ts count`)
"""

from __future__ import annotations

import io
import json
import os
import sys

import fastavro
from quixstreams import Application
from quixstreams.models.topics.manager import TopicManager

from bench.done_counter import DoneCounter
from schemas import SCHEMA_DIR

_derive = TopicManager.derive_topic_config.__func__


def _derive_with_retention(cls, topics):
    """Shim: Tansu reports only the configs a client set, so `retention.ms` may be absent.

    Quix 3.28 reads it to size its changelog topics; Kafka's default (-1, keep
    forever, as Tansu does) stands in for it.
    """
    for topic in topics:
        topic.broker_config.extra_config.setdefault("retention.ms", "-1")
    return _derive(cls, topics)


TopicManager.derive_topic_config = classmethod(_derive_with_retention)

topic_name, expected = sys.argv[1], int(sys.argv[2])
schema = fastavro.parse_schema(json.loads((SCHEMA_DIR / "payment.avsc").read_text()))
app = Application(broker_address=os.environ["RILLET_BOOTSTRAP_SERVERS"], consumer_group=f"quix-{os.getpid()}",
                  auto_offset_reset="earliest", state_dir=f"/tmp/quix-state-{os.getpid()}",
                  consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                                         "fetch.wait.max.ms": 50})
counter = DoneCounter(expected)


def decode(raw: bytes) -> dict:
    return fastavro.schemaless_reader(io.BytesIO(raw[5:]), schema)


def count(value: dict) -> dict:
    counter.tick()
    return value


def event_time(value, headers, timestamp, timestamp_type) -> int:
    return timestamp


topic = app.topic(topic_name, value_deserializer="bytes", key_deserializer="bytes", timestamp_extractor=event_time)
sdf = app.dataframe(topic).apply(decode).apply(count)
sdf = sdf.apply(lambda v: v["amount"] or 0.0).hopping_window(duration_ms=3_600_000, step_ms=300_000).sum().current()

if __name__ == "__main__":
    app.run()
