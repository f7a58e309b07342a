"""Workarounds for the local Tansu broker, each small, named and off on Kafka.

docs/local-broker.md lists each difference and what rillet does about it.
"""

from __future__ import annotations

import time
from typing import Any

from streams.broker.kafka_log import client_config

__all__ = [
    "FAUST_GROUP_TIMING",
    "LIBRDKAFKA_GROUP_TIMING",
    "fetch_high_watermarks",
    "recover_tables_to_the_true_end",
    "shorten_faust_fetch_wait",
]

#: A JoinGroup round takes about session.timeout / 2 on Tansu: keep it short.
FAUST_GROUP_TIMING: dict[str, Any] = {
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 20.0,
    # ListOffsets LATEST is wrong on Tansu: Faust's recovery check would raise.
    "recovery_consistency_check": False,
}

LIBRDKAFKA_GROUP_TIMING: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "partition.assignment.strategy": "range",
}

_patched_wait_ms: int | None = None


def shorten_faust_fetch_wait(wait_ms: int = 50) -> None:
    """Tansu's fetch long-poll sleeps about fetch_max_wait/2; Faust hard-codes 1500 ms.

    Faust builds its aiokafka consumer with fetch_max_wait_ms=1500 and no
    setting to change it; this sets the consumer's value right after it is
    created and before it starts (aiokafka reads it in `start()`).
    """
    global _patched_wait_ms
    from faust.transport.drivers import aiokafka as faust_aiokafka

    thread = faust_aiokafka.AIOKafkaConsumerThread
    if _patched_wait_ms is None:
        original = thread._create_worker_consumer  # noqa: SLF001 - the one patch point

        def _create_worker_consumer(self: Any, transport: Any) -> Any:
            consumer = original(self, transport)
            consumer._fetch_max_wait_ms = _patched_wait_ms  # noqa: SLF001 - read by aiokafka at start()
            return consumer

        thread._create_worker_consumer = _create_worker_consumer  # noqa: SLF001
    _patched_wait_ms = wait_ms


def fetch_high_watermarks(bootstrap_servers: str, partitions: list[Any], timeout_s: float = 5.0) -> dict[Any, int]:
    """The true end offset of each (topic, partition): the high watermark a Fetch response carries.

    Tansu's ListOffsets LATEST answers the base offset of the last batch + 1
    (10+10+7 records: 21, not 27); a fetch from just below that reports the
    real head. Partitions not answered in time are left out.
    """
    from confluent_kafka import Consumer, TopicPartition

    if not partitions:
        return {}
    consumer = Consumer(client_config(bootstrap_servers, **{"group.id": "rillet-high-watermark-probe",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10}))
    try:
        reported = {tp: consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout_s)[1]
                    for tp in partitions}
        consumer.assign([TopicPartition(tp.topic, tp.partition, max(reported[tp] - 1, 0)) for tp in partitions])
        found: dict[Any, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(found) < len(partitions) and time.monotonic() < deadline:
            consumer.poll(0.05)
            for tp in partitions:
                high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)[1]
                if high >= 0:
                    found[tp] = high
        return found
    finally:
        consumer.close()


_true_highwaters_for: str | None = None


def recover_tables_to_the_true_end(bootstrap_servers: str) -> None:
    """Faust recovers a table by reading its changelog up to `end_offsets()`, which on Tansu stops
    short of the last changelog batch: states in it would be lost while their source offsets are
    already committed. This makes Faust's highwaters (used by recovery) the fetched true ends."""
    global _true_highwaters_for
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka

    thread = faust_aiokafka.AIOKafkaConsumerThread
    if _true_highwaters_for is None:
        reported_highwaters = thread._highwaters  # noqa: SLF001 - the one patch point

        async def _highwaters(self: Any, partitions: list[Any]) -> Any:
            reported = await reported_highwaters(self, partitions)
            true = await asyncio.to_thread(fetch_high_watermarks, _true_highwaters_for, list(partitions))
            return {tp: max(reported.get(tp, 0), true.get(tp, 0)) for tp in partitions}

        thread._highwaters = _highwaters  # noqa: SLF001
    _true_highwaters_for = bootstrap_servers
