"""A version a replay built, taken over by the live worker.

A replayed version starts with its states in Redis and its progress in the replay's record, not in
the worker's table: `Handover` reads them from there until the table has them. (What a worker does
when the versions it keeps current change: `streams.worker.version_watch`.)
"""

from __future__ import annotations

from typing import Any

from sinks.online.store import OnlineStore
from sinks.redis_client import mget
from streams.definitions.view import FeatureView
from streams.kernel.processor import SourceRecord
from streams.kernel.watermark import PartitionProgress
from streams.worker.state_table import TableWatermarks

__all__ = ["Handover"]


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
