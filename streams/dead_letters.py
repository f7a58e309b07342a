"""Reading a dead-letter topic back: what was rejected, and why (`rillet dlq`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.kafka_log import client_config
from streams.settings import Settings

__all__ = ["read_dead_letters"]


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
            headers = {k.removeprefix("rillet."): v.decode(errors="replace") for k, v in (msg.headers() or [])}
            yield {
                "reason": headers.get("reason", "unknown"),
                "error": headers.get("error", ""),
                "source": f"{headers.get('source.topic', '?')}:{headers.get('source.partition', '?')}"
                          f"@{headers.get('source.offset', '?')}",
                "event_time_ms": int(headers["event_time_ms"]) if "event_time_ms" in headers else None,
                "watermark_ms": int(headers["watermark_ms"]) if "watermark_ms" in headers else None,
                "key": msg.key().decode(errors="replace") if msg.key() else None,
                "bytes": len(msg.value() or b""),
            }
    finally:
        consumer.close()
