"""Holes in a partition's delivery, found per batch and read back from the broker.

Faust can hand a stream a partition with records missing: when a worker joins,
its recovery resumes fetching the source partitions before it seeks them to the
committed offsets, and records fetched in that window can be dropped
(faust-streaming #596; seen here after restarts as acks 2225..2231, then 2241).
Two things then go wrong. Entity states are deduplicated by the last handled
offset of each partition, so once the record after the hole is applied, the
hole's records look handled and would be skipped if they ever came. And Faust
never commits past an offset it has not seen acknowledged, so the worker stalls.

So each batch is checked against the last handled offset of every partition
(`find_gaps`, pure); a hole's records are read straight from the broker
(`GapReader`) and put in front of the record after it (`fill_gaps`); once the
batch is done they are acknowledged to Faust like delivered ones. A hole with
no records in it (transaction markers, compaction) reads back empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from streams.broker.kafka_log import client_config
from streams.errors import StackError
from streams.kernel.processor import SourceRecord

__all__ = ["GapReader", "OffsetGap", "fill_gaps", "find_gaps"]


@dataclass(frozen=True, slots=True)
class OffsetGap:
    """Offsets `start` up to (not including) `end` of a partition were not delivered; `end` was."""

    topic: str
    partition: int
    start: int
    end: int


def find_gaps(records: list[SourceRecord], last_offset: Callable[[int], int]) -> list[OffsetGap]:
    """Holes between each partition's last handled offset (-1: none yet) and the records of a batch."""
    expected: dict[int, int] = {}
    gaps = []
    for record in records:
        next_offset = expected.get(record.partition)
        if next_offset is None:
            last = last_offset(record.partition)
            next_offset = last + 1 if last >= 0 else record.offset  # nothing handled yet: nothing to compare
        if record.offset > next_offset:
            gaps.append(OffsetGap(record.topic, record.partition, next_offset, record.offset))
        expected[record.partition] = max(next_offset, record.offset + 1)
    return gaps


def fill_gaps(records: list[SourceRecord], filled: dict[OffsetGap, list[SourceRecord]]) -> list[SourceRecord]:
    """The batch with each hole's records just before the record that came after the hole."""
    before = {(gap.partition, gap.end): found for gap, found in filled.items()}
    out: list[SourceRecord] = []
    for record in records:
        out.extend(before.pop((record.partition, record.offset), ()))
        out.append(record)
    return out


class GapReader:
    """Reads offset ranges of a partition with its own consumer: no group, nothing committed."""

    def __init__(self, bootstrap_servers: str, timeout_s: float = 30.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self._consumer = None

    def read(self, gap: OffsetGap) -> list[SourceRecord]:
        from confluent_kafka import Consumer, TopicPartition

        if self._consumer is None:
            self._consumer = Consumer(client_config(self.bootstrap_servers, **{
                "group.id": "rillet-gap-reader", "enable.auto.commit": False, "fetch.wait.max.ms": 50}))
        consumer = self._consumer
        consumer.assign([TopicPartition(gap.topic, gap.partition, gap.start)])
        found: list[SourceRecord] = []
        deadline = time.monotonic() + self.timeout_s
        try:
            while time.monotonic() < deadline:
                for msg in consumer.consume(gap.end - gap.start, timeout=0.2):
                    if msg.error():
                        continue
                    if msg.offset() >= gap.end:
                        return found
                    found.append(SourceRecord(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1],
                                              msg.key(), msg.value(), tuple(msg.headers() or ())))
                    if msg.offset() == gap.end - 1:
                        return found
        finally:
            consumer.unassign()
        raise StackError(f"could not read offsets {gap.start}..{gap.end - 1} of {gap.topic}[{gap.partition}] "
                         f"back from the broker within {self.timeout_s:.0f}s")

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
