"""The Redis online store: one key per (view, version, entity) holding its window state.

Key layout: `rillet:{view}:v{version}:e:{entity}` -> the engine's state bytes
(msgpack). Reads evaluate that state with the same engine `as_of` now or at an
explicit time, so the online value is the contract's value by construction.
Writes are whole states, never increments: writing the same state twice is
harmless, which makes replays and restarts idempotent. Each key expires after
the view's ttl plus its longest window (a value no read can still use).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aredis

from sinks.records import StateWrite
from sinks.redis_client import REDIS_DOWN
from streams.definitions import FeatureView
from streams.kernel.watermark import PartitionProgress

__all__ = ["OnlineStore", "aggregated_counts", "events_key", "health_key", "history_key", "live_key", "online_key",
           "skew_key"]

log = logging.getLogger("rillet.online")


def online_key(view: str, version: int, entity: str) -> str:
    return f"rillet:{view}:v{version}:e:{entity}"


def events_key(view: str, version: int) -> str:
    return f"rillet:{view}:v{version}:events"


def live_key(view: str, version: int) -> str:
    return f"rillet:{view}:v{version}:live"


def health_key(view: str, version: int) -> str:
    """Hash: source partition -> the worker's last health report on it (JSON; `rillet status` reads it)."""
    return f"rillet:{view}:v{version}:health"


def history_key(view: str, version: int) -> str:
    """Stream: each worker's progress every 10 s (per partition: events aggregated, lag), for the console's
    charts; trimmed to about a day."""
    return f"rillet:{view}:v{version}:history"


def skew_key(view: str) -> str:
    """String: the latest `rillet skew` report of a view (JSON), for the console."""
    return f"rillet:{view}:skew"


def aggregated_counts(progress: Iterable[tuple[int, PartitionProgress]]) -> dict[str, int]:
    """The `events_key` hash's fields: partition -> events aggregated from it (absolute, so idempotent)."""
    return {str(partition): entry.aggregated for partition, entry in progress}


class OnlineStore:
    """Writes entity states: async, pipelined, retried while Redis is down (reads: sinks.reads)."""

    def __init__(self, view: FeatureView, version: int = 1) -> None:
        self.view = view
        self.version = version
        # a lifetime window's state is the entity's whole history: it never expires
        self.expire_ms = None if view.has_lifetime else view.ttl_ms + view.longest_window_ms

    def key(self, entity: str) -> str:
        return online_key(self.view.name, self.version, entity)

    @property
    def events_key(self) -> str:
        """Hash: source partition -> events this version aggregated from it (`rillet versions`)."""
        return events_key(self.view.name, self.version)

    @property
    def live_key(self) -> str:
        """Hash: source partition -> "1" once Redis holds every state of that partition.

        Written with the states, so a Redis that comes back empty (no persistence) shows it
        by the markers it lost with them. Not a failover that lost only the last writes: the
        markers were written earlier, in one slot, and survive (issue 21).
        """
        return live_key(self.view.name, self.version)

    async def write(self, client: aredis.Redis, writes: list[StateWrite],
                    progress: list[tuple[int, PartitionProgress]] = (), *, max_wait_s: float = 60.0) -> None:
        """Write a batch of states (and each partition's aggregated count) in one pipeline; while Redis
        is down, wait and retry.

        Retrying never drops results: the batch is not acknowledged (its offsets
        not committed) until this returns. Counts are absolute, so a batch
        written twice after a crash counts once.
        """
        if not writes and not progress:
            return

        async def attempt() -> None:
            async with client.pipeline(transaction=False) as pipe:
                for w in writes:
                    pipe.set(self.key(w.entity), w.state, px=self.expire_ms)
                if progress:
                    pipe.hset(self.events_key, mapping=aggregated_counts(progress))
                await pipe.execute()

        await self.retrying(attempt, max_wait_s)

    async def unmarked(self, client: aredis.Redis, partitions: list[int], *, max_wait_s: float = 60.0) -> list[int]:
        """The partitions among `partitions` whose states Redis may have lost (their live marker is gone)."""
        if not partitions:
            return []

        async def attempt() -> list[int]:
            marks = await client.hmget(self.live_key, [str(p) for p in partitions])
            return [p for p, mark in zip(partitions, marks, strict=True) if mark is None]

        return await self.retrying(attempt, max_wait_s)

    async def restore(self, client: aredis.Redis, states: list[tuple[str, bytes]], partitions: list[int], *,
                      chunk: int = 5_000, max_wait_s: float = 60.0) -> None:
        """Write back every state of `partitions`, then mark them live again (last, so a restore cut short
        is done again)."""
        for lo in range(0, len(states), chunk):
            part = states[lo:lo + chunk]

            async def attempt(part: list[tuple[str, bytes]] = part) -> None:
                async with client.pipeline(transaction=False) as pipe:
                    for entity, blob in part:
                        pipe.set(self.key(entity), blob, px=self.expire_ms)
                    await pipe.execute()

            await self.retrying(attempt, max_wait_s)
        if partitions:
            await self.retrying(lambda: client.hset(self.live_key, mapping={str(p): 1 for p in partitions}),
                                 max_wait_s)

    async def retrying(self, attempt: Any, max_wait_s: float = 60.0) -> Any:
        """Run `attempt()` until Redis answers: the worker waits out an outage, it never drops a batch."""
        delay = 0.05
        while True:
            try:
                return await attempt()
            except REDIS_DOWN as exc:
                log.warning(
                    '{"event": "redis_unavailable", "view": "%s", "retry_in_s": %.2f, "error": "%s"}',
                    self.view.name, delay, type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_wait_s / 10)
