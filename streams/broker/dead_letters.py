"""Reading a dead-letter topic back: what was rejected, and why (`rillet dlq`), and which source
records a partition of it already holds (so a retried batch sends no dead letter twice)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.broker.kafka_log import client_config
from streams.settings import Settings

__all__ = ["DeadLetterLog", "dead_letters_since", "latest_dead_letters", "read_dead_letters"]


def read_dead_letters(settings: Settings, topic: str, *, idle_s: float = 5.0) -> Iterator[dict]:
    """Every record of `topic` from the start, as a dict of its rillet headers, until `idle_s` pass
    without a new one. Partitions are assigned directly (no group to join, nothing committed)."""
    consumer = Consumer(client_config(settings.bootstrap_servers, **{
                         "group.id": f"rillet-dlq-reader-{uuid.uuid4()}", "enable.auto.commit": False}))
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    partitions = sorted(metadata.partitions) if metadata is not None and not metadata.error else []
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            last = time.monotonic()
            letter = _letter(msg)
            yield {**letter, "key": msg.key().decode(errors="replace") if msg.key() else None,
                   "bytes": len(msg.value() or b"")}
    finally:
        consumer.close()


def _letter(msg: Any) -> dict:
    """A dead letter's rillet headers: why it was rejected, and where it came from."""
    headers = {k.removeprefix("rillet."): v.decode(errors="replace") for k, v in (msg.headers() or [])}
    return {
        "reason": headers.get("reason", "unknown"),
        "error": headers.get("error", ""),
        "source": f"{headers.get('source.topic', '?')}:{headers.get('source.partition', '?')}"
                  f"@{headers.get('source.offset', '?')}",
        "event_time_ms": int(headers["event_time_ms"]) if "event_time_ms" in headers else None,
        "watermark_ms": int(headers["watermark_ms"]) if "watermark_ms" in headers else None,
    }


def _read_to_heads(settings: Settings, topic: str, starts: Callable[[Consumer, list[TopicPartition],
                   dict[int, int]], dict[int, int]], timeout_s: float) -> Iterator[Any]:
    """The records of every partition of `topic` from `starts(consumer, partitions, heads)` (partition
    -> first offset) up to the partition heads as they were when it began, or until `timeout_s`."""
    from streams.broker.tansu import fetch_high_watermarks

    consumer = Consumer(client_config(settings.bootstrap_servers, **{
        "group.id": f"rillet-dlq-scan-{uuid.uuid4()}", "enable.auto.commit": False, "fetch.wait.max.ms": 50,
        "auto.offset.reset": "earliest"}))  # a start the retention already deleted: from the first kept record
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error:
            return
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        heads = {tp.partition: head for tp, head in
                 fetch_high_watermarks(settings.bootstrap_servers, partitions, timeout_s).items()}
        position = {p: min(max(start, 0), heads.get(p, 0)) for p, start in starts(consumer, partitions, heads).items()}
        todo = {p: heads.get(p, 0) for p in position if position[p] < heads.get(p, 0)}
        if not todo:
            return
        consumer.assign([TopicPartition(topic, p, position[p]) for p in todo])
        deadline = time.monotonic() + timeout_s
        while any(position[p] < todo[p] for p in todo) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error():
                    continue
                position[msg.partition()] = msg.offset() + 1
                yield msg
    finally:
        consumer.close()


def dead_letters_since(settings: Settings, topic: str, since_ms: int, *, timeout_s: float = 10.0) -> dict[str, int]:
    """How many dead letters `topic` received since `since_ms` (their record time), by reason.

    Starts each partition at the first offset at or after that time (the broker's time
    index), so an old, long dead-letter topic is not read from its start."""
    def starts(consumer: Consumer, partitions: list[TopicPartition], heads: dict[int, int]) -> dict[int, int]:
        try:
            found = consumer.offsets_for_times([TopicPartition(topic, tp.partition, since_ms) for tp in partitions],
                                               timeout=timeout_s)
        except Exception:  # a broker without a time index: read from the start, filter by record time
            return {tp.partition: 0 for tp in partitions}
        # -1: no record at or after the time (nothing to read)
        return {tp.partition: tp.offset if tp.offset >= 0 else heads.get(tp.partition, 0) for tp in found}

    counts: dict[str, int] = {}
    for msg in _read_to_heads(settings, topic, starts, timeout_s):
        kind, stamp = msg.timestamp()
        if kind and stamp < since_ms:
            continue
        reason = dict(msg.headers() or []).get("rillet.reason", b"unknown").decode(errors="replace")
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def latest_dead_letters(settings: Settings, topic: str, count: int, *, timeout_s: float = 5.0) -> list[dict]:
    """The newest `count` dead letters of `topic` (newest first): reason, error, source, record time."""
    def starts(consumer: Consumer, partitions: list[TopicPartition], heads: dict[int, int]) -> dict[int, int]:
        return {p: head - count for p, head in heads.items()}

    found = [{**_letter(msg), "timestamp_ms": msg.timestamp()[1] if msg.timestamp()[0] else None}
             for msg in _read_to_heads(settings, topic, starts, timeout_s)]
    return sorted(found, key=lambda d: d["timestamp_ms"] or 0, reverse=True)[:count]


class DeadLetterLog:
    """What one dead-letter partition already holds past a point: the worker's defence against sending
    a dead letter twice when a batch is retried after a crash (the Parquet log has the same defence).

    The worker sends the dead letters of source partition `p` to dead-letter partition
    `p % partitions` and keeps, with each partition's progress, the dead-letter offset its
    letters reached. After a restart it reads that partition from there: every letter found
    for a source offset it is about to judge again was sent before the crash.
    """

    def __init__(self, bootstrap_servers: str, topic: str, timeout_s: float = 10.0) -> None:
        self.bootstrap_servers, self.topic, self.timeout_s = bootstrap_servers, topic, timeout_s

    def sources_after(self, partition: int, start: int, source_topic: str, source_partition: int,
                      after_offset: int) -> tuple[set[int], int]:
        """Source offsets above `after_offset` that dead-letter `partition` holds from `start` on,
        and that partition's head (where the next letter will go)."""
        from streams.broker.tansu import fetch_high_watermarks

        tp = TopicPartition(self.topic, partition)
        head = fetch_high_watermarks(self.bootstrap_servers, [tp], self.timeout_s).get(tp, 0)
        found: set[int] = set()
        start = max(start, 0)
        if head <= start:
            return found, head
        consumer = Consumer(client_config(self.bootstrap_servers, **{
            "group.id": f"rillet-dlq-check-{uuid.uuid4()}", "enable.auto.commit": False, "fetch.wait.max.ms": 50}))
        try:
            consumer.assign([TopicPartition(self.topic, partition, start)])
            position, deadline = start, time.monotonic() + self.timeout_s
            while position < head:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.topic}[{partition}] could not be read up to {head} in "
                                       f"{self.timeout_s:.0f}s")
                for msg in consumer.consume(1000, timeout=0.2):
                    if msg.error():
                        continue
                    position = msg.offset() + 1
                    headers = dict(msg.headers() or [])
                    if (headers.get("rillet.source.topic", b"").decode() == source_topic
                            and headers.get("rillet.source.partition") == str(source_partition).encode()):
                        offset = int(headers.get("rillet.source.offset", b"-1"))
                        if offset > after_offset:
                            found.add(offset)
        finally:
            consumer.close()
        return found, head
