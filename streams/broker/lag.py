"""Consumer lag from committed offsets: how the demo and tests wait for a worker.

Partition heads must come from somewhere the local broker reports right: a
producer's delivery reports (`DeliveryReport.heads`) or a fetch's high
watermark. Tansu's ListOffsets LATEST is wrong (broker-notes.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from streams.broker.kafka_log import client_config
from streams.errors import StackError
from streams.settings import Settings

__all__ = ["committed_offsets", "wait_caught_up"]


def committed_offsets(settings: Settings, group: str, topic: str, partitions: list[int]) -> dict[int, int]:
    """The group's committed offset per partition (0 where none is committed)."""
    consumer = Consumer(client_config(settings.bootstrap_servers, **{"group.id": group, "enable.auto.commit": False}))
    try:
        result = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in result}


def wait_caught_up(settings: Settings, group: str, topic: str, heads: dict[int, int], *,
                   timeout_s: float = 300.0,
                   on_progress: Callable[[int, int], None] | None = None,
                   alive: Callable[[], bool] | None = None) -> float:
    """Block until `group` has committed up to `heads` on every partition; returns seconds waited.

    `on_progress(done, total)` is called on every poll; `alive()` returning
    False (the worker died) stops the wait with an error.
    """
    started = time.monotonic()
    total = sum(heads.values())
    while True:
        committed = committed_offsets(settings, group, topic, sorted(heads))
        done = sum(min(committed.get(p, 0), head) for p, head in heads.items())
        if on_progress:
            on_progress(done, total)
        if done >= total:
            return time.monotonic() - started
        if alive is not None and not alive():
            raise StackError(f"the worker stopped with {total - done} events still unprocessed")
        if time.monotonic() - started > timeout_s:
            raise StackError(f"worker still {total - done} events behind after {timeout_s:.0f}s")
        time.sleep(0.2)
