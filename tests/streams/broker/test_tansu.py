"""The local-broker workarounds do what broker-notes.md says they must, on the real broker."""

from __future__ import annotations

import uuid
from collections import namedtuple

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.broker.tansu import fetch_high_watermarks

TP = namedtuple("TP", "topic partition")


@pytest.mark.integration
def test_true_end_offsets_past_the_last_batch(stack):
    bootstrap = stack.settings.bootstrap_servers
    topic = f"hw_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until its futures resolve
    for future in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        future.result()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    for size in (10, 10, 7):  # three batches: Tansu's ListOffsets answers 21 here
        for _ in range(size):
            producer.produce(topic, partition=0, value=b"x")
        producer.flush()
    assert fetch_high_watermarks(bootstrap, [TP(topic, 0), TP(topic, 1)]) == {TP(topic, 0): 27, TP(topic, 1): 0}
