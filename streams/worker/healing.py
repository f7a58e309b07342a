"""Redis healing: when Redis lost a worker's partitions, the worker writes them back from its table.

Redis may come back empty (a restart without persistence) or fail over to a replica that missed
the last writes. Either way the partitions' live markers or write epochs tell (`OnlineStore.
lost_partitions`), and every state the table holds for them is written back before any batch
commits. States the worker already expired by the contract's rule stay forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sinks.online.store import OnlineStore
from streams.definitions.view import FeatureView
from streams.kernel.engine import ViewEngine
from streams.kernel.watermark import PROGRESS_KEY_PREFIX
from streams.settings import Settings
from streams.worker.logs import log_event
from streams.worker.metrics import WorkerMetrics
from streams.worker.state_table import TableWatermarks

__all__ = ["RedisHealer"]


class RedisHealer:
    """Writes a view version's lost partitions back to Redis from the state table."""

    def __init__(self, app: Any, view: FeatureView, version: int, replayed: bool, settings: Settings,
                 engine: ViewEngine, table: Any, watermarks: TableWatermarks, online: OnlineStore, client: Any,
                 metrics: WorkerMetrics) -> None:
        self.app, self.view, self.version, self.replayed, self.settings = app, view, version, replayed, settings
        self.engine, self.table, self.watermarks, self.online, self.redis = engine, table, watermarks, online, client
        self.metrics = metrics
        self.versions: Any = None  # the process's VersionWatch (build_app sets it)

    async def heal(self) -> int:
        """Write back every state of the partitions Redis lost; returns how many states were written."""
        assigned = sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.view.topic)
        stored = {p: self.watermarks.stored_last_offset(p) for p in assigned}
        missing = await self.online.lost_partitions(self.redis, stored)
        if not missing:
            return 0
        started, wanted = time.perf_counter(), set(missing)
        await asyncio.to_thread(self._recreate_version_record)  # lost with the states, if Redis lost everything

        def held() -> list[tuple[str, bytes]]:  # every state decoded: off the event loop
            return [(key.decode(), blob) for key, blob in list(self.table.data.items())
                    if not key.startswith(PROGRESS_KEY_PREFIX) and self.engine.decode(blob).partition in wanted]

        states = await asyncio.to_thread(held)
        await self.online.restore(self.redis, states, missing, epochs={p: stored[p] for p in missing})
        if not states:  # a first start, or nothing held: only the markers were missing
            return 0
        self.metrics.restored.labels(self.view.name).inc(len(states))
        log_event(logging.WARNING, event="redis_restored", view=self.view.name, version=self.version,
                  partitions=missing, states=len(states), seconds=round(time.perf_counter() - started, 3),
                  message="Redis had lost these partitions' states: written back from the table")
        return len(states)

    def _recreate_version_record(self) -> None:
        from sinks.online.versions import VersionRegistry
        from sinks.redis_client import connect_redis

        client = connect_redis(self.settings)
        watch = self.versions  # the roles this process last saw: a candidate must not come back as active
        state = watch.role(self.view.name, self.version) if watch is not None else "active"
        active = watch.active(self.view.name) if watch is not None else None
        try:
            VersionRegistry(client).recreate(self.view, self.version, self.replayed, state=state, active=active)
        finally:
            client.close()
