"""Holes in a partition's delivery: found against the last handled offsets, filled in order."""

from __future__ import annotations

import pytest

from streams.broker.offset_gaps import GapReader, OffsetGap, fill_gaps, find_gaps
from streams.kernel.processor import SourceRecord


def rec(partition: int, offset: int, topic: str = "t") -> SourceRecord:
    return SourceRecord(topic, partition, offset, 0, b"k", f"{partition}:{offset}".encode())


def test_no_gap_when_each_partition_continues_where_it_stopped():
    batch = [rec(0, 5), rec(1, 0), rec(0, 6), rec(1, 1)]
    assert find_gaps(batch, {0: 4, 1: -1}.__getitem__) == []


def test_redelivered_records_are_not_gaps():
    assert find_gaps([rec(0, 2), rec(0, 3), rec(0, 4), rec(0, 5)], lambda p: 4) == []


def test_a_hole_at_the_start_and_one_inside_a_batch():
    batch = [rec(0, 9), rec(1, 3), rec(0, 10), rec(0, 14), rec(1, 4)]
    gaps = find_gaps(batch, {0: 6, 1: 2}.__getitem__)
    assert gaps == [OffsetGap("t", 0, 7, 9), OffsetGap("t", 0, 11, 14)]


def test_nothing_handled_yet_takes_the_first_record_as_the_start():
    assert find_gaps([rec(2, 40), rec(2, 41)], lambda p: -1) == []
    assert find_gaps([rec(2, 40), rec(2, 43)], lambda p: -1) == [OffsetGap("t", 2, 41, 43)]


def test_fill_puts_each_hole_before_the_record_after_it():
    batch = [rec(0, 9), rec(1, 3), rec(0, 12)]
    gaps = find_gaps(batch, {0: 6, 1: 2}.__getitem__)
    filled = fill_gaps(batch, {gap: [rec(gap.partition, o) for o in range(gap.start, gap.end)] for gap in gaps})
    assert [(r.partition, r.offset) for r in filled] == [(0, 7), (0, 8), (0, 9), (1, 3), (0, 10), (0, 11), (0, 12)]
    assert find_gaps(filled, {0: 6, 1: 2}.__getitem__) == []


@pytest.mark.integration
def test_reader_reads_a_range_back_from_the_broker(stack):
    import uuid

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"gaps_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.settings.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": stack.settings.bootstrap_servers, "linger.ms": 5})
    for i in range(30):
        producer.produce(topic, key=b"k", value=str(i).encode(), partition=1, headers=[("h", str(i).encode())])
    producer.flush(10)
    reader = GapReader(stack.settings.bootstrap_servers)
    try:
        found = reader.read(OffsetGap(topic, 1, 7, 19))
        assert [(r.offset, r.value, r.headers) for r in found] == [
            (o, str(o).encode(), (("h", str(o).encode()),)) for o in range(7, 19)]
        assert [r.offset for r in reader.read(OffsetGap(topic, 1, 28, 29))] == [28]
    finally:
        reader.close()
