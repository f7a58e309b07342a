"""One view version in a worker: its batches through the kernel into the table, Redis and Parquet.

A batch is decoded and applied off the event loop, then its entity states go to Redis (one
pipeline) and Parquet (one file per date and partition), its dead letters to their topic, and
last to the table (one changelog record per entity, on the source partition): the changelog is
the batch's commit point, and only then does Faust acknowledge the batch. The agent holds its
collaborators: the hand-over from a replay, Redis healing, dead-letter sending and health.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import faust

from schemas.codec import EventDecoder
from schemas.store import SchemaStore
from sinks.offline.store import OfflineStore
from sinks.online.store import OnlineStore
from sinks.redis_client import connect_redis_async
from streams import faults
from streams.broker.dead_letters import DeadLetterLog
from streams.broker.offset_gaps import GapReader, OffsetGap, fill_gaps, find_gaps
from streams.definitions.view import FeatureView
from streams.errors import DEAD_LETTER_REASONS
from streams.kernel.engine import ViewEngine
from streams.kernel.processor import BatchResult, SourceRecord, ViewProcessor
from streams.kernel.records import StateWrite
from streams.kernel.watermark import PROGRESS_KEY_PREFIX
from streams.settings import Settings
from streams.worker.dead_letter_sender import DeadLetterSender
from streams.worker.expiry_index import ExpiryIndex
from streams.worker.handover import Handover
from streams.worker.healing import RedisHealer
from streams.worker.health import HealthReporter
from streams.worker.logs import log_event
from streams.worker.metrics import WorkerMetrics
from streams.worker.state_table import ChangelogWriter, StateTable, TableWatermarks, put_states, state_table_name

__all__ = ["ViewAgent"]


class ViewAgent:
    """Runs one view's batches against the table and the two stores."""

    def __init__(self, app: faust.App, view: FeatureView, settings: Settings, store: SchemaStore,
                 metrics: WorkerMetrics, partitions: int, version: int = 1, replayed: bool = False,
                 dlq_partitions: int | None = None, own: bool = True) -> None:
        self.app, self.view, self.settings, self.metrics = app, view, settings, metrics
        self.version = version
        # The version of this process's own definition sends the view's dead letters and names its metrics;
        # another version kept current beside it (a candidate, a previous one) counts its letters, as a
        # replay does, and its metrics carry `view@vN`: one letter per bad record, one series per version.
        self.own = own
        self.label = view.name if own else f"{view.name}@v{version}"
        # A version a replay built starts with its states in Redis and its progress in the
        # replay's record, not in this table: read them from there until the table has them.
        self.replayed = replayed
        self.engine = ViewEngine(view)
        self.source = app.topic(view.topic, key_serializer="raw", value_serializer="raw",
                                partitions=partitions, internal=False)
        self.dlq = app.topic(view.dlq_topic, key_serializer="raw", value_serializer="raw",
                             partitions=partitions)
        # key_type/value_type=bytes is what makes Faust use raw bytes on *recovery* too;
        # the schema alone only covers writes (a restarted worker would json-decode msgpack).
        raw = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        self.table = app.tables.add(StateTable(
            app, changelog_prefix=settings.worker_group, name=state_table_name(view, version), default=None,
            schema=raw, key_type=bytes, value_type=bytes, partitions=partitions, beacon=app.tables.beacon))
        self.watermarks = TableWatermarks(self.table)
        self.changelog = ChangelogWriter(app, self.table)
        self._lock = asyncio.Lock()
        self.processor = ViewProcessor(self.engine, EventDecoder(view, store), self.watermarks,
                                       hot_states=settings.hot_states)
        self.online = OnlineStore(view, version, replica_acks=settings.redis_replica_acks,
                                  on_wait=metrics.replica_wait.labels(self.label).observe)
        self.offline = OfflineStore(settings.offline_root, view, version)
        self.redis = connect_redis_async(settings)
        self.gap_reader = GapReader(settings.bootstrap_servers)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.handover = Handover(view, version, self.online, self.redis, self.watermarks)
        self.healer = RedisHealer(app, view, version, replayed, settings, self.engine, self.table, self.watermarks,
                                  self.online, self.redis, metrics)
        self.health = HealthReporter(app, view, version, self.worker_id, metrics, self.redis, self.watermarks,
                                     label=self.label)
        if view.freshness_ms is not None:
            metrics.freshness_target.labels(self.label).set(view.freshness_ms / 1000)
        for counter in (metrics.events_in, metrics.aggregated, metrics.late, metrics.duplicates, metrics.read_back,
                        metrics.restored, metrics.expired):
            counter.labels(self.label)  # on /metrics from the start, at 0: alert rules see a series, not a gap
        for reason in DEAD_LETTER_REASONS:
            metrics.dead_lettered.labels(self.label, reason)
        self._expiry = self._new_expiry_index()
        self._expiry_build: asyncio.Future | None = None
        self._offline_seen: dict[int, set[int]] = {}  # partition -> offsets already on disk past its commit
        self.dead_letters = DeadLetterSender(self.dlq, DeadLetterLog(settings.bootstrap_servers, view.dlq_topic),
                                             view.name, view.topic, dlq_partitions or partitions, self.watermarks)
        self._last_sweep = time.monotonic()

    def load_state(self, entity: str) -> bytes | None:
        found = self.table.data.get(entity.encode())
        if found is None and self.handover.from_redis:
            found = self.handover.from_redis.get(entity)
        return found

    async def start_offset(self, partition: int) -> int | None:
        """Where this view must resume reading a partition: past the last offset its own progress covers
        (its table, or a replay's hand-over), or None (from the beginning) when it has none."""
        if self.replayed:
            await self.handover.load()
        last = self.watermarks.entry(partition).last_offset
        return last + 1 if last >= 0 else None

    async def handle(self, fetched: list[Any]) -> None:
        """One batch of source records, as the batch transport fetched them; never at the same time
        as a Redis restore (it writes states from the table). A batch that fails stops the process:
        nothing of it was acknowledged, so a restart takes it again from the last commit."""
        try:
            async with self._lock:
                await self.healer.heal()
                await self._handle(fetched)
        except Exception as exc:
            log_event(logging.ERROR, event="batch_failed", view=self.view.name, error=f"{type(exc).__name__}: {exc}")
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(1)

    async def heal_redis(self) -> int:
        """Restore what Redis lost (a timer calls this, so a quiet worker heals too)."""
        if self.app.rebalancing or self._lock.locked():
            return 0
        async with self._lock:
            return await self.healer.heal()

    async def _handle(self, fetched: list[Any]) -> None:
        started = time.perf_counter()
        if self.replayed:
            await self.handover.load()
        records = [
            SourceRecord(r.topic, r.partition, r.offset, r.timestamp or None, r.key, r.value,
                         tuple(r.headers) if r.headers else ())
            for r in fetched
        ]
        lost = faults.skipped("delivered_record", len(records))  # tests: a delivery that drops records
        if lost:
            records = [r for i, r in enumerate(records) if i not in lost]
        gaps = find_gaps(records, self.watermarks.last_offset)
        if gaps:
            records = await self._fill_gaps(records, gaps)
        self.handover.from_redis = {}
        if self.replayed:
            await self.handover.prefetch(records, self.table.data)
        first = sorted({r.partition for r in records} - self._offline_seen.keys())
        for partition in first:
            # first batch of this partition since assignment: rows and dead letters a crashed batch
            # wrote past the commit point are already out, and must not be written twice
            self._offline_seen[partition] = self.offline.offsets_written_after(
                partition, self.watermarks.last_offset(partition))
        # each partition's dead-letter check asks the broker (about 70 ms here): all at once, not in turn
        if self.own:
            await asyncio.gather(*(self.dead_letters.read_sent(partition) for partition in first))
        # the batch's CPU work runs off the event loop, so heartbeats, commits, health reports and Faust's
        # timers keep time while it runs (a batch held the loop for seconds: timers woke 0.5-2 s late)
        result = await asyncio.to_thread(self.processor.process, records, self.load_state, int(time.time() * 1000))
        seen = self._offline_seen
        result.rows = result.rows.without(seen)
        # Sinks first, changelog last: the changelog is the batch's commit point. A crash
        # before it re-processes the batch, rewriting the same Redis states and Parquet rows.
        writes = await asyncio.to_thread(self.processor.state_writes, result)  # encoded once: Redis and changelog
        epochs = [(p, self.watermarks.stored_last_offset(p), self.watermarks.last_offset(p))
                  for p in sorted({r.partition for r in records})]
        await asyncio.gather(
            self.online.write(self.redis, writes, self.watermarks.items(), epochs=epochs),
            asyncio.to_thread(self.offline.write, result.rows) if result.rows else asyncio.sleep(0),
        )
        faults.hit("after_offline_write")  # crash tests: Parquet published, changelog not yet
        if self.own and await self.dead_letters.send(result.dead_letters):
            faults.hit("after_dead_letters")  # crash tests: dead letters acknowledged, changelog not yet
        await self._store_in_table(result, writes)
        if self._sweep_due():
            await self.expire_states()
        for gap in gaps:  # read and handled here, so Faust may commit past them
            self.app.consumer.ack_records([SourceRecord(gap.topic, gap.partition, offset, None, None, None)
                                           for offset in range(gap.start, gap.end)])
        self.health.observe(records, result, time.perf_counter() - started)

    async def _fill_gaps(self, records: list[SourceRecord], gaps: list[OffsetGap]) -> list[SourceRecord]:
        filled = {gap: await asyncio.to_thread(self.gap_reader.read, gap) for gap in gaps}
        for gap, found in filled.items():
            log_event(logging.WARNING, event="offsets_read_back", view=self.view.name, partition=gap.partition,
                      first=gap.start, last=gap.end - 1, records=len(found),
                      message="the stream skipped these offsets; read them from the broker and applied them in order")
        self.metrics.read_back.labels(self.label).inc(sum(len(found) for found in filled.values()))
        return fill_gaps(records, filled)

    async def _store_in_table(self, result: BatchResult, writes: list[StateWrite]) -> None:
        """One changelog record per touched entity, then per partition's progress, on the source partition.

        Progress goes last: records of one partition arrive in order, so once the
        progress record is durable, so are the entity states before it.
        """
        data = self.table.data
        changes: list[tuple[int, bytes, bytes | None]] = []
        for write in writes:
            partition = result.states[write.entity][0]
            key = write.entity.encode()
            changes.append((partition, key, write.state))
            self._expiry.note(key, partition, write.latest_ms)
        for partition, entry in self.watermarks.items():
            key, value = self.watermarks.key(partition), self.watermarks.encode(entry)
            if data.get(key) != value:
                changes.append((partition, key, value))
        put_states(data, changes)  # type: ignore[arg-type]
        await self.changelog.send(changes)

    def forget(self) -> None:
        """After a rebalance the table is the truth: drop what this process cached.

        The expiry index is read again from the table, a sweep interval later and off the batch path: read
        on the batch that takes partitions over, it had held that batch's acknowledgement (and the failover).
        """
        self.watermarks.forget()
        self._expiry = self._new_expiry_index()
        self._last_sweep = time.monotonic()
        self._offline_seen.clear()
        self.dead_letters.forget()

    def _new_expiry_index(self) -> ExpiryIndex:
        # a state is dropped at most a bucket late: an eighth of how long a state stays reachable
        return ExpiryIndex((self.engine.grace_ms + self.view.longest_window_ms) // 8 or 1000)

    def _sweep_due(self) -> bool:
        return time.monotonic() - self._last_sweep >= self.settings.state_sweep_ms / 1000

    async def sweep_when_due(self) -> int:
        """The expiry sweep between batches too (a timer calls this): a quiet worker drops states as well."""
        if self.app.rebalancing or self._lock.locked() or not self._sweep_due():
            return 0
        async with self._lock:
            return await self.expire_states()

    async def expire_states(self) -> int:
        """Drop (with a changelog tombstone) entity states the engine says no new event can reach.

        The index (`ExpiryIndex`) names the candidates; each is checked against its current bytes, off the
        event loop. Until the index is built from the table (in a thread, not awaited: the batch that
        started it is acknowledged at once), nothing is dropped."""
        self._last_sweep = time.monotonic()
        index, data, engine, watermarks = self._expiry, self.table.data, self.engine, self.watermarks
        if not index.built:
            self._build_expiry_index()
            return 0

        def confirmed() -> list[tuple[int, bytes]]:
            out = []
            for key, _ in index.due(lambda partition: engine.drop_cutoff(watermarks.get(partition))):
                blob = data.get(key)
                if blob is None:
                    continue
                partition, latest_ms = engine.position_of(blob)
                if engine.droppable(latest_ms, watermarks.get(partition)):
                    out.append((partition, key))
                else:  # written since it was noted
                    index.note(key, partition, latest_ms)
            return out

        tombstones: list[tuple[int, bytes, bytes | None]] = []
        for partition, key in await asyncio.to_thread(confirmed):
            if key in data:
                del data[key]
                tombstones.append((partition, key, None))
        await self.changelog.send(tombstones)
        self.metrics.expired.labels(self.label).inc(len(tombstones))
        return len(tombstones)

    def _build_expiry_index(self) -> None:
        """Read every state's partition and latest event time from the table, in a thread, into an index of its
        own; batches meanwhile note into a fresh live one, taken in when the read is done."""
        build = self._expiry_build
        if build is not None and not build.done():
            return
        if build is not None and not build.cancelled() and build.exception() is not None:
            log_event(logging.WARNING, event="expiry_index_failed", view=self.view.name,
                      error=f"{type(build.exception()).__name__}: {build.exception()}",
                      message="no state is dropped until the index is read again at the next sweep")
        data, engine, read_into = self.table.data, self.engine, self._new_expiry_index()
        memory = getattr(data, "data", None)
        self._expiry = since = self._new_expiry_index()  # what batches write from here on

        def read() -> None:
            # the in-memory store's dict is copied in one step: iterated while a batch writes, it would fail
            items = list(memory.items()) if isinstance(memory, dict) else data.items()
            read_into.note_all(items, engine.position_of, lambda key: key.startswith(PROGRESS_KEY_PREFIX))

        def done(future: asyncio.Future) -> None:
            if not future.cancelled() and future.exception() is None and self._expiry is since:
                self._expiry = read_into.take_newer(since)  # on the loop: no batch writes in between

        self._expiry_build = asyncio.ensure_future(asyncio.to_thread(read))
        self._expiry_build.add_done_callback(done)

    async def report_health(self) -> None:
        await self.health.report()

    async def report_recovery(self, remaining: dict[int, int], rate: float) -> None:
        await self.health.report_recovery(remaining, rate)
