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

import redis
import redis.asyncio as aredis

from sinks.records import StateWrite
from streams.definitions import FeatureView
from streams.watermark import PartitionProgress

__all__ = ["OnlineStore", "events_key", "online_key"]

log = logging.getLogger("rillet.online")


def online_key(view: str, version: int, entity: str) -> str:
    return f"rillet:{view}:v{version}:e:{entity}"


def events_key(view: str, version: int) -> str:
    return f"rillet:{view}:v{version}:events"


class OnlineStore:
    """Writes entity states: async, pipelined, retried while Redis is down (reads: sinks.reads)."""

    def __init__(self, view: FeatureView, version: int = 1) -> None:
        self.view = view
        self.version = version
        self.expire_ms = view.ttl_ms + view.longest_window_ms

    def key(self, entity: str) -> str:
        return online_key(self.view.name, self.version, entity)

    @property
    def events_key(self) -> str:
        """Hash: source partition -> events this version aggregated from it (`rillet versions`)."""
        return events_key(self.view.name, self.version)

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
        delay = 0.05
        while True:
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for w in writes:
                        pipe.set(self.key(w.entity), w.state, px=self.expire_ms)
                    if progress:
                        pipe.hset(self.events_key, mapping={str(p): e.aggregated for p, e in progress})
                    await pipe.execute()
                return
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning(
                    '{"event": "redis_unavailable", "view": "%s", "retry_in_s": %.2f, "error": "%s"}',
                    self.view.name, delay, type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_wait_s / 10)
