"""A version a replay built, taken over by the live worker; and a worker whose version a replay retired.

A replayed version starts with its states in Redis and its progress in the replay's record, not in
the worker's table: `Handover` reads them from there until the table has them. And once a replay
switches any view of this process to a new version, the process must stop: it would otherwise go
on writing that view beside the workers running the new definitions.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import redis

from sinks.online.store import OnlineStore
from sinks.redis_client import REDIS_DOWN, mget
from streams.definitions.view import FeatureView
from streams.kernel.processor import SourceRecord
from streams.kernel.watermark import PartitionProgress
from streams.worker.logs import log_event
from streams.worker.state_table import TableWatermarks

__all__ = ["Handover", "exit_if_retired"]


class Handover:
    """A replayed version's progress and states, read from Redis where the table has none yet."""

    def __init__(self, view: FeatureView, version: int, online: OnlineStore, client: Any,
                 watermarks: TableWatermarks) -> None:
        self.view, self.version, self.online, self.redis, self.watermarks = view, version, online, client, watermarks
        self.from_redis: dict[str, bytes] = {}  # this batch's states that only Redis holds
        self._loaded = False

    async def load(self) -> None:
        """The replay's progress per partition (watermark, last offset, count), read once, before anything
        judges a record: where the table has no progress yet, this is where the replay ended."""
        from sinks.online.versions import VersionRegistry

        if self._loaded:
            return
        raw = await self.online.retrying(
            lambda: self.redis.hgetall(VersionRegistry.progress_key(self.view.name, self.version)))
        for partition, value in raw.items():
            self.watermarks.handed_over[int(partition)] = PartitionProgress.decode(value)
        self.watermarks.forget()  # nothing read before this may stand
        self._loaded = True

    async def prefetch(self, records: list[SourceRecord], held: Any) -> None:
        """States of the batch's entities that the table (`held`) does not hold yet, read in one MGET."""
        missing = sorted({r.key.decode() for r in records if r.key and r.key not in held})
        keys = [self.online.key(e) for e in missing]
        blobs = await self.online.retrying(lambda: mget(self.redis, keys)) if missing else []
        self.from_redis = {e: b for e, b in zip(missing, blobs, strict=True) if b is not None}


async def _retired(client: Any, views: list[tuple[str, int]]) -> list[str]:
    """The (view, version) pairs of this process a replay switched to another version since it started.

    Every view's pointer is checked, not only one: a process that went on serving the other views of
    its definitions file would do so in a consumer group the new-definition workers have left, and
    both would write those views' states and rows.
    """
    from sinks.online.versions import VersionRegistry

    try:
        pointers = await asyncio.wait_for(mget(client, [VersionRegistry.active_key(name) for name, _ in views]), 1.0)
    except (TimeoutError, redis.RedisError, *REDIS_DOWN):
        return []  # Redis is down: the sink writes wait and retry, and this check runs again next batch
    return [f"{name} v{version} -> v{int(p)}" for (name, version), p in zip(views, pointers, strict=True)
            if p is not None and int(p) != version]


async def exit_if_retired(client: Any, views: list[tuple[str, int]], checked_by: tuple[str, int]) -> None:
    """Stop the process at once (exit code 3) when a replay switched any of its views: before a batch,
    which stays unacknowledged, and every second while idle (a timer)."""
    retired = await _retired(client, views)
    if retired:
        log_event(logging.ERROR, event="version_retired", view=checked_by[0], version=checked_by[1],
                  retired=retired,
                  message="a replay switched a view of this worker to a new version; restart workers with "
                          "the new definitions")
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(3)  # Faust would only restart a crashed agent
