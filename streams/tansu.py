"""Workarounds for the local Tansu broker, each small, named and off on Kafka.

See ../shared/broker-notes.md for the measurements behind each one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FAUST_GROUP_TIMING", "LIBRDKAFKA_GROUP_TIMING", "shorten_faust_fetch_wait"]

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
