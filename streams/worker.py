"""The Faust app: one agent per view, window state in changelog-backed tables.

Faust does what it is good at here — agents, partition assignment, tables
with changelogs, recovery, offset commits — while the windowing is rillet's
own engine. Each agent takes events in batches: a batch is decoded and
applied, then its entity states go to the table (one changelog record per
entity, on the source partition), Redis (one pipeline) and Parquet (one
file per date and partition), and only then does Faust ack the batch, so a
committed offset always has its results stored. Faust runs at-least-once;
states carry the last applied offset, so a re-delivered event is skipped.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import faust
import redis
from faust.sensors import Monitor
from faust.types import Message

from schemas.codec import EventDecoder
from schemas.store import SchemaStore
from sinks.keys import health_key, history_key
from sinks.offline import OfflineStore
from sinks.online import OnlineStore
from sinks.records import StateWrite
from sinks.redis_client import REDIS_DOWN, connect_redis_async, mget
from sinks.versions import live_group
from streams import batch_transport, faults
from streams.dead_letters import DeadLetterLog
from streams.definitions import FeatureView
from streams.errors import DEAD_LETTER_REASONS
from streams.kernel.engine import ViewEngine
from streams.kernel.processor import BatchResult, DeadLetter, SourceRecord, ViewProcessor, resume_collector
from streams.kernel.watermark import PROGRESS_KEY_PREFIX, PartitionProgress, Watermarks
from streams.metrics import WorkerMetrics
from streams.offset_gaps import GapReader, OffsetGap, fill_gaps, find_gaps
from streams.predecessors import remember_membership
from streams.settings import Settings
from streams.tansu import FAUST_GROUP_TIMING, recover_tables_to_the_true_end

__all__ = ["build_app", "state_table_name"]

log = logging.getLogger("rillet.worker")



def state_table_name(view: FeatureView, version: int = 1) -> str:
    return f"{view.name}-v{version}-state"


class _StateTable(faust.Table):
    """A view version's state table whose changelog is named by the worker group and the view version
    alone: `{RILLET_WORKER_GROUP}-{view}-v{n}-state-changelog`.

    Faust names a changelog after the app id, and the app id (the consumer group) changes when another
    view of the same workers is replayed (sinks.versions.live_group): a view untouched by that replay
    would then start from an empty changelog, its states and progress lost to the worker.
    """

    def __init__(self, app: faust.App, *, changelog_prefix: str, **kwargs: Any) -> None:
        self._changelog_prefix = changelog_prefix
        super().__init__(app, **kwargs)

    def _changelog_topic_name(self) -> str:
        return f"{self._changelog_prefix}-{self.name}-changelog"


def _put(data: Any, partition: int, key: bytes, value: bytes) -> None:
    """Set a table key in its source partition's store. Faust's RocksDB store takes the partition from the
    current stream event, and a batch handler has none: write to that partition's database directly."""
    db_for = getattr(data, "_db_for_partition", None)
    if db_for is None:  # the in-memory store: a dict
        data[key] = value
        return
    db_for(partition).put(key, value)
    data._key_index[key] = partition  # noqa: SLF001 - as the store's own _set keeps it


def _log_json(level: int, **fields: Any) -> None:
    log.log(level, json.dumps(fields, default=str))


class _TableWatermarks(Watermarks):
    """Partition progress kept in the state table, so it survives restarts and rebalances."""

    def __init__(self, table: faust.Table) -> None:
        super().__init__()
        self._table = table
        self.handed_over: dict[int, PartitionProgress] = {}  # a replay's progress, where the table has none

    @staticmethod
    def key(partition: int) -> bytes:
        return PROGRESS_KEY_PREFIX + str(partition).encode()

    @staticmethod
    def encode(entry: PartitionProgress) -> bytes:
        return entry.encode().encode()

    def stored_last_offset(self, partition: int) -> int | None:
        """The last offset the table's progress record covers: only written once a batch's sinks are done."""
        raw = self._table.data.get(self.key(partition))
        return None if raw is None else PartitionProgress.decode(raw).last_offset

    def _load(self, partition: int) -> PartitionProgress:
        raw = self._table.data.get(self.key(partition))
        if raw is None:
            return self.handed_over.get(partition, PartitionProgress(None, -1))
        return PartitionProgress.decode(raw)

    def forget(self) -> None:
        """Drop cached values: after a rebalance the table is the truth."""
        self._by_partition.clear()


class ViewAgent:
    """Runs one view's batches against the table and the two stores."""

    def __init__(self, app: faust.App, view: FeatureView, settings: Settings, store: SchemaStore,
                 metrics: WorkerMetrics, partitions: int, version: int = 1, replayed: bool = False,
                 dlq_partitions: int | None = None) -> None:
        self.app, self.view, self.settings, self.metrics = app, view, settings, metrics
        self.version = version
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
        self.table = app.tables.add(_StateTable(
            app, changelog_prefix=settings.worker_group, name=state_table_name(view, version), default=None,
            schema=raw, key_type=bytes, value_type=bytes, partitions=partitions, beacon=app.tables.beacon))
        self.watermarks = _TableWatermarks(self.table)
        self._from_redis: dict[str, bytes] = {}
        self._handover_loaded = False
        self._lock = asyncio.Lock()
        self.processor = ViewProcessor(self.engine, EventDecoder(view, store), self.watermarks)
        self.online = OnlineStore(view, version, replica_acks=settings.redis_replica_acks,
                                  on_wait=metrics.replica_wait.labels(view.name).observe)
        self.offline = OfflineStore(settings.offline_root, view, version)
        self.redis = connect_redis_async(settings)
        self.gap_reader = GapReader(settings.bootstrap_servers)
        self.last_event_ms = 0
        self._read_until: dict[int, tuple[int, int | None]] = {}  # partition -> (lag, last record's timestamp)
        self._history_ms = 0
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        if view.freshness_ms is not None:
            metrics.freshness_target.labels(view.name).set(view.freshness_ms / 1000)
        for counter in (metrics.events_in, metrics.aggregated, metrics.late, metrics.duplicates, metrics.read_back,
                        metrics.restored, metrics.expired):
            counter.labels(view.name)  # on /metrics from the start, at 0: alert rules see a series, not a gap
        for reason in DEAD_LETTER_REASONS:
            metrics.dead_lettered.labels(view.name, reason)
        self._latest: dict[bytes, tuple[int, int]] | None = None  # entity key -> (partition, latest_ms)
        self._offline_seen: dict[int, set[int]] = {}  # partition -> offsets already on disk past its commit
        self._dlq_seen: dict[int, set[int]] = {}  # partition -> offsets already dead-lettered past its commit
        self.dlq_log = DeadLetterLog(settings.bootstrap_servers, view.dlq_topic)
        self.dlq_partitions = dlq_partitions or partitions
        self._last_sweep = time.monotonic()
        self.peers: list[ViewAgent] = []  # every view of this worker process (build_app sets it)
        self._advanced: dict[int, tuple[int, int]] = {}  # partition -> (last offset, wall ms it was reached)

    def load_state(self, entity: str) -> bytes | None:
        found = self.table.data.get(entity.encode())
        if found is None and self._from_redis:
            found = self._from_redis.get(entity)
        return found

    async def _retired_views(self) -> list[str]:
        """The views of this process (`self.peers`) a replay switched to another version since it started.

        Every view's pointer is checked, not only this view's: a process that went on serving
        the other views of its definitions file would do so in a consumer group the
        new-definition workers have left, and both would write those views' states and rows.
        """
        from sinks.versions import VersionRegistry

        peers = self.peers or [self]
        try:
            pointers = await asyncio.wait_for(
                mget(self.redis, [VersionRegistry.active_key(a.view.name) for a in peers]), 1.0)
        except (TimeoutError, redis.RedisError, *REDIS_DOWN):
            return []  # Redis is down: the sink writes wait and retry, and this check runs again next batch
        return [f"{a.view.name} v{a.version} -> v{int(p)}" for a, p in zip(peers, pointers, strict=True)
                if p is not None and int(p) != a.version]

    async def exit_if_retired(self) -> None:
        """Stop the process at once (exit code 3) when a replay switched any of its views: before a batch,
        which stays unacknowledged, and every second while idle (a timer)."""
        retired = await self._retired_views()
        if retired:
            _log_json(logging.ERROR, event="version_retired", view=self.view.name, version=self.version,
                      retired=retired,
                      message="a replay switched a view of this worker to a new version; restart workers with "
                              "the new definitions")
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(3)  # Faust would only restart a crashed agent

    async def start_offset(self, partition: int) -> int | None:
        """Where this view must resume reading a partition: past the last offset its own progress covers
        (its table, or a replay's hand-over), or None (from the beginning) when it has none."""
        if self.replayed:
            await self.load_handover()
        last = self.watermarks.entry(partition).last_offset
        return last + 1 if last >= 0 else None

    async def load_handover(self) -> None:
        """A replayed version's progress per partition (watermark, last offset, count), read once, before
        anything judges a record: where the table has no progress yet, this is where the replay ended."""
        from sinks.versions import VersionRegistry

        if self._handover_loaded:
            return
        raw = await self.online.retrying(
            lambda: self.redis.hgetall(VersionRegistry.progress_key(self.view.name, self.version)))
        for partition, value in raw.items():
            self.watermarks.handed_over[int(partition)] = PartitionProgress.decode(value)
        self.watermarks.forget()  # nothing read before this may stand
        self._handover_loaded = True

    async def _prefetch_replayed(self, records: list[SourceRecord]) -> None:
        """States of a replayed version that this table does not hold yet, read from Redis in one MGET."""
        missing = sorted({r.key.decode() for r in records if r.key and r.key not in self.table.data})
        keys = [self.online.key(e) for e in missing]
        blobs = await self.online.retrying(lambda: mget(self.redis, keys)) if missing else []
        self._from_redis = {e: b for e, b in zip(missing, blobs, strict=True) if b is not None}

    async def handle(self, messages: list[Message]) -> None:
        """One batch of source records, as the batch transport fetched them; never at the same time
        as a Redis restore (it writes states from the table). A batch that fails stops the process:
        nothing of it was acknowledged, so a restart takes it again from the last commit."""
        try:
            async with self._lock:
                await self._heal_redis()
                await self._handle(messages)
        except Exception as exc:
            _log_json(logging.ERROR, event="batch_failed", view=self.view.name, error=f"{type(exc).__name__}: {exc}")
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(1)

    async def heal_redis(self) -> int:
        """Restore what Redis lost (a timer calls this, so a quiet worker heals too)."""
        if self.app.rebalancing or self._lock.locked():
            return 0
        async with self._lock:
            return await self._heal_redis()

    async def _heal_redis(self) -> int:
        """If Redis lost this worker's partitions (their live markers are gone: it restarted empty; or a
        master's write epoch is behind the stored progress: a failover to a replica that missed the last
        writes, sinks.write_epochs), write back every state the table holds for them before any batch commits.

        States the worker already expired by the contract's rule stay forgotten.
        """
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
        _log_json(logging.WARNING, event="redis_restored", view=self.view.name, version=self.version,
                  partitions=missing, states=len(states), seconds=round(time.perf_counter() - started, 3),
                  message="Redis had lost these partitions' states: written back from the table")
        return len(states)

    def _recreate_version_record(self) -> None:
        from sinks.redis_client import connect_redis
        from sinks.versions import VersionRegistry

        client = connect_redis(self.settings)
        try:
            VersionRegistry(client).recreate(self.view, self.version, self.replayed)
        finally:
            client.close()

    async def _handle(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        await self.exit_if_retired()
        if self.replayed:
            await self.load_handover()
        records = [
            SourceRecord(
                m.topic, m.partition, m.offset,
                int(m.timestamp * 1000) if m.timestamp else None, m.key, m.value,
                tuple(m.headers) if m.headers else (),
            )
            for m in messages
        ]
        for i in faults.skipped("acknowledgement", len(messages)):  # tests: Faust never sees these acks
            messages[i].acked = True
        lost = faults.skipped("delivered_record", len(records))  # tests: a delivery that drops records
        if lost:
            records = [r for i, r in enumerate(records) if i not in lost]
        gaps = find_gaps(records, self.watermarks.last_offset)
        if gaps:
            records = await self._fill_gaps(records, gaps)
        self._from_redis = {}
        if self.replayed:
            await self._prefetch_replayed(records)
        for partition in {r.partition for r in records} - self._offline_seen.keys():
            # first batch of this partition since assignment: rows and dead letters a crashed batch
            # wrote past the commit point are already out, and must not be written twice
            self._offline_seen[partition] = self.offline.offsets_written_after(
                partition, self.watermarks.last_offset(partition))
            self._dlq_seen[partition] = await self._dead_letters_already_sent(partition)
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
        if await self._send_dead_letters(result.dead_letters):
            faults.hit("after_dead_letters")  # crash tests: dead letters acknowledged, changelog not yet
        self._store_in_table(result, writes)
        if time.monotonic() - self._last_sweep >= self.settings.state_sweep_ms / 1000:
            await self.expire_states()
        for gap in gaps:  # read and handled here, so Faust may commit past them
            for offset in range(gap.start, gap.end):
                self.app.consumer.ack(Message(gap.topic, gap.partition, offset, 0.0, 0, None, None, None, None))
        self._observe(records, result, time.perf_counter() - started)

    async def _dead_letters_already_sent(self, partition: int) -> set[int]:
        """Source offsets past this partition's stored progress that already have a dead letter (a batch
        that crashed before its commit point sent them). Reads from where the letters had reached at the
        last commit; with nothing committed yet (a first batch may crash too), from the start, once."""
        entry = self.watermarks.entry(partition)
        found, head = await asyncio.to_thread(
            self.dlq_log.sources_after, partition % self.dlq_partitions, entry.dlq_next, self.view.topic,
            partition, entry.last_offset)
        self.watermarks.dead_letters_reach(partition, head)  # scanned up to here: the next restart starts there
        return found

    async def _send_dead_letters(self, letters: list[DeadLetter]) -> int:
        """A sink too, sent and acknowledged before the commit point; each letter once, however often its
        batch is retried: to the dead-letter partition of its source partition, skipping any already there."""
        pending = []
        for letter in letters:
            source = letter.record
            if source.offset in self._dlq_seen.get(source.partition, ()):
                continue
            sent = await self.dlq.send(key=source.key, value=source.value, headers=letter.headers(),
                                       partition=source.partition % self.dlq_partitions)
            faults.hit_later("dead_letter_sent")  # crash tests: killed while the letter may be in flight
            pending.append((source.partition, sent))
            _log_json(logging.WARNING, event="dead_letter", view=self.view.name, reason=letter.reason,
                      partition=source.partition, offset=source.offset, error=letter.error)
        for partition, sent in pending:
            delivered = await sent
            self.watermarks.dead_letters_reach(partition, delivered.offset + 1)
        return len(pending)

    async def _fill_gaps(self, records: list[SourceRecord], gaps: list[OffsetGap]) -> list[SourceRecord]:
        filled = {gap: await asyncio.to_thread(self.gap_reader.read, gap) for gap in gaps}
        for gap, found in filled.items():
            _log_json(logging.WARNING, event="offsets_read_back", view=self.view.name, partition=gap.partition,
                      first=gap.start, last=gap.end - 1, records=len(found),
                      message="the stream skipped these offsets; read them from the broker and applied them in order")
        self.metrics.read_back.labels(self.view.name).inc(sum(len(found) for found in filled.values()))
        return fill_gaps(records, filled)

    def _store_in_table(self, result: BatchResult, writes: list[StateWrite]) -> None:
        """One changelog record per touched entity, then per partition's progress, on the source partition.

        Progress goes last: records of one partition arrive in order, so once the
        progress record is durable, so are the entity states before it.
        """
        data = self.table.data
        for write in writes:
            partition = result.states[write.entity][0]
            key = write.entity.encode()
            _put(data, partition, key, write.state)
            self.table.send_changelog(partition, key, write.state)
            if self._latest is not None:
                self._latest[key] = (partition, write.latest_ms)
        for partition, entry in self.watermarks.items():
            key, value = self.watermarks.key(partition), self.watermarks.encode(entry)
            if data.get(key) != value:
                _put(data, partition, key, value)
                self.table.send_changelog(partition, key, value)

    def forget(self) -> None:
        """After a rebalance the table is the truth: drop what this process cached."""
        self.watermarks.forget()
        self._latest = None
        self._offline_seen.clear()
        self._dlq_seen.clear()

    async def expire_states(self) -> int:
        """Drop (with a changelog tombstone) entity states the engine says no new event can reach. Finding
        them reads every state (decoding them all the first time): off the event loop, between batches."""
        self._last_sweep = time.monotonic()
        data = self.table.data

        def droppable() -> list[tuple[bytes, int]]:
            if self._latest is None:
                latest = {}
                for key, blob in list(data.items()):
                    if not key.startswith(PROGRESS_KEY_PREFIX):
                        state = self.engine.decode(blob)
                        latest[key] = (state.partition, state.latest_ms)
                self._latest = latest
            return [(key, partition) for key, (partition, latest_ms) in list(self._latest.items())
                    if self.engine.droppable(latest_ms, self.watermarks.get(partition))]

        dropped = 0
        for key, partition in await asyncio.to_thread(droppable):
            del self._latest[key]
            if key in data:
                del data[key]
                self.table.send_changelog(partition, key, None)
                dropped += 1
        self.metrics.expired.labels(self.view.name).inc(dropped)
        return dropped

    def _observe(self, records: list[SourceRecord], result: BatchResult, seconds: float) -> None:
        m, name = self.metrics, self.view.name
        m.events_in.labels(name).inc(len(records))
        m.aggregated.labels(name).inc(result.counts["aggregated"])
        m.late.labels(name).inc(result.counts["late"])
        m.duplicates.labels(name).inc(result.counts["duplicate"])
        for letter in result.dead_letters:
            m.dead_lettered.labels(name, letter.reason).inc()
        if result.max_event_ms is not None:
            self.last_event_ms = max(self.last_event_ms, result.max_event_ms)
            m.last_event_ms.labels(name).set(self.last_event_ms)
            m.delay.labels(name).set(time.time() - self.last_event_ms / 1000)
        m.batch_seconds.labels(name).observe(seconds)
        last_read: dict[int, SourceRecord] = {}  # partition -> its record with the greatest offset
        for r in records:
            if r.partition not in last_read or r.offset > last_read[r.partition].offset:
                last_read[r.partition] = r
        for partition, record in last_read.items():
            offset = record.offset
            tp = next((tp for tp in self.app.consumer.assignment()
                       if tp.topic == self.view.topic and tp.partition == partition), None)
            head = self.app.consumer.highwater(tp) if tp is not None else None
            if head is not None:
                m.lag.labels(name, str(partition)).set(max(head - offset - 1, 0))
                self._read_until[partition] = (max(head - offset - 1, 0), record.timestamp_ms)

    async def report_health(self) -> None:
        """Freshness and lag per assigned partition, now: to /metrics, and to Redis for `rillet status`.

        A timer calls this, so an idle partition's freshness keeps growing between batches.
        """
        m, name, now_ms = self.metrics, self.view.name, int(time.time() * 1000)
        assigned = sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.view.topic)
        report = {}
        for partition in assigned:
            watermark = self.watermarks.get(partition)
            lag, stamp = self._read_until.get(partition, (0, None))
            waited_s = (now_ms - stamp) / 1000 if lag and stamp is not None else 0.0
            m.lag_seconds.labels(name, str(partition)).set(max(waited_s, 0.0))
            if watermark is not None:
                m.freshness.labels(name, str(partition)).set((now_ms - watermark) / 1000)
            last = self.watermarks.last_offset(partition)
            if self._advanced.get(partition, (None,))[0] != last:
                self._advanced[partition] = (last, now_ms)
            report[str(partition)] = json.dumps({
                "worker": self.worker_id, "at_ms": now_ms, "watermark_ms": watermark, "lag": lag,
                "lag_s": round(max(waited_s, 0.0), 3),
                # this view's own progress: `rillet status` measures its lag from it, and calls a view whose
                # progress stands still behind the head stalled, whatever the consumer group committed
                "next_offset": last + 1, "advanced_at_ms": self._advanced[partition][1]})
        if report and await self._publish_health(report):
            try:
                if now_ms - self._history_ms >= HISTORY_EVERY_MS:
                    progress = {str(p): [self.watermarks.entry(p).aggregated, self._read_until.get(p, (0, None))[0]]
                                for p in assigned}
                    await asyncio.wait_for(self.redis.xadd(
                        history_key(name, self.version), {"at_ms": now_ms, "partitions": json.dumps(progress)},
                        maxlen=HISTORY_KEPT, approximate=True), 1.0)
                    self._history_ms = now_ms
            except (TimeoutError, redis.RedisError, *REDIS_DOWN):
                pass  # Redis is down: the batches wait for it, and so does this report

    async def _publish_health(self, report: dict[str, str]) -> bool:
        """Per-partition reports (JSON) into the version's health hash, which `rillet status` reads; False
        when Redis does not answer within a second (the report is skipped, never waited for)."""
        try:
            await asyncio.wait_for(self.redis.hset(health_key(self.view.name, self.version), mapping=report), 1.0)
        except (TimeoutError, redis.RedisError, *REDIS_DOWN):
            return False
        return True

    async def report_recovery(self, remaining: dict[int, int], rate: float) -> None:
        """While this view's state is read back from its changelog: per partition, what is left and when it
        will be done, to /metrics and to Redis (`rillet status` says RECOVERING with an ETA, not STALLED)."""
        now_ms, total = int(time.time() * 1000), sum(remaining.values())
        self.metrics.recovering.labels(self.view.name).set(1 if remaining else 0)
        self.metrics.recovery_remaining.labels(self.view.name).set(total)
        if not remaining:
            return
        report = {str(p): json.dumps({"worker": self.worker_id, "at_ms": now_ms, "recovering": True,
                                      "remaining": left, "rate": round(rate, 1),
                                      "eta_s": round(left / rate, 1) if rate > 0 else None})
                  for p, left in remaining.items()}
        await self._publish_health(report)


HISTORY_EVERY_MS = 10_000  # a point of the console's charts
HISTORY_KEPT = 10_000  # points per view version (about a day from a few workers)


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-event and per-table-access bookkeeping, which nobody reads here
    (rillet has its own /metrics): the do-nothing agent ran 1.16x faster without the Monitor. What
    Faust itself asks of the Monitor (end offsets, rebalance and commit hooks) is kept."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None


def resolve_versions(settings: Settings, views: list[FeatureView]) -> dict[str, Any]:
    """Each view's version this worker writes: the active one, which must be its definition.

    Raises VersionMismatchError (saying to replay) otherwise.
    """
    from sinks.redis_client import connect_redis
    from sinks.versions import VersionRegistry

    registry = VersionRegistry(connect_redis(settings))
    out = {}
    for view in views:
        out[view.name] = registry.get(view.name, registry.for_worker(view))
    return out


WATCH_EVERY_S = 0.5


def build_app(settings: Settings, views: list[FeatureView]) -> faust.App:
    """A Faust app with one batch agent per view; run it with `faust.Worker(app)`."""
    from schemas.store import open_schema_store
    from streams.topics import partition_counts

    extra: dict[str, Any] = {}
    if settings.is_tansu:
        extra.update(FAUST_GROUP_TIMING)
        recover_tables_to_the_true_end(settings.bootstrap_servers)
    # a dead worker's partitions move once its session ends; heartbeats at a sixth of it (at most 1 s) let the
    # survivors hear of the rebalance within a fraction of it
    extra.update(broker_session_timeout=settings.session_timeout_s,
                 broker_heartbeat_interval=min(1.0, settings.session_timeout_s / 6))
    brokers = [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")]
    consumers = [f"{batch_transport.SCHEME}://{server.strip()}" for server in settings.bootstrap_servers.split(",")]
    versions = resolve_versions(settings, views)
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)  # Faust refuses a missing data dir
    app = faust.App(
        live_group(settings.worker_group, versions),
        broker=brokers,
        broker_consumer=consumers,  # the batch transport: view topics arrive a fetch at a time
        store="rocksdb://" if settings.state_store == "rocksdb" else "memory://",
        autodiscover=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=settings.standby_replicas,
        datadir=settings.state_dir,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        producer_linger=0.005,
        # Faust's check that each assigned partition is processed: the batch transport feeds its monitor, so
        # its ERROR means a stuck stream, and a stuck stream shows in 10 s instead of 5 min
        stream_processing_timeout=10.0,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4 * settings.batch_size, 4096),
        Monitor=QuietMonitor,
        **extra,
    )
    metrics = WorkerMetrics()
    store = open_schema_store(settings)
    # The table's changelog must be co-partitioned with the source topic as it really is.
    actual = partition_counts(settings)
    agents = [
        ViewAgent(app, view, settings, store, metrics, actual.get(view.topic, view.partitions or settings.partitions),
                  versions[view.name].version, replayed=bool(versions[view.name].replay),
                  dlq_partitions=actual.get(view.dlq_topic))
        for view in views
    ]
    by_topic: dict[str, list[ViewAgent]] = {}
    for agent in agents:
        agent.peers = agents
        by_topic.setdefault(agent.view.topic, []).append(agent)
    for readers in by_topic.values():
        app.topics.add(readers[0].source)  # subscribed; its records go to the agents through the batch transport
    # Any number of views may read one topic: each fetch goes to every one of them, one after the other, and
    # is acknowledged once all have stored it. Each view keeps its own progress; commits take the least.
    app.rillet_batch_handlers = {topic: _each_view(readers) for topic, readers in by_topic.items()}  # type: ignore[attr-defined]
    app.rillet_start_offsets = functools.partial(_start_offsets, by_topic)  # type: ignore[attr-defined]
    # the state tables' changelogs are read back a fetch at a time on recovery (see streams.batch_transport)
    app.rillet_batch_changelogs = frozenset(agent.table.changelog_topic.get_topic_name()  # type: ignore[attr-defined]
                                            for agent in agents)
    app.rillet_batch_size = settings.batch_size  # type: ignore[attr-defined]
    # Tansu's fetch long-poll sleeps about half the wait even with records ready: keep it short there
    wait_ms = min(settings.batch_wait_ms, 50) if settings.is_tansu else settings.batch_wait_ms
    app.rillet_fetch_wait_ms = wait_ms  # type: ignore[attr-defined]

    @app.task
    async def hold_a_batch_of_changelog_records() -> None:
        # Faust's producer buffer flushes every 100 messages by default; a batch writes
        # up to one changelog record per entity, so let it hold a whole batch.
        app.producer.buffer.max_messages = max(app.producer.buffer.max_messages, 2 * settings.batch_size)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type="text/plain")

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
        return web.json({"status": "ok", "views": [a.view.name for a in agents], "assigned": assigned})

    @app.on_rebalance_complete.connect
    async def on_rebalance(sender: Any, **kwargs: Any) -> None:
        for agent in agents:
            agent.forget()
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
        _log_json(logging.INFO, event="rebalance", assigned=assigned)

    @app.timer(1.0)  # as often as Faust commits (broker_commit_interval)
    async def commit_handled_offsets() -> None:
        await _commit_handled(app, agents)

    woke: dict[str, float | None] = {"at": None, "worst": 0.0}  # from the first tick: start-up is not drift

    @app.timer(WATCH_EVERY_S)
    async def watch_event_loop() -> None:
        """How late this timer wakes: the event loop's drift, which heartbeats and commits suffer too."""
        now = time.monotonic()
        last, woke["at"] = woke["at"], now
        if last is None:
            return
        drift = max(now - last - WATCH_EVERY_S, 0.0)
        metrics.timer_drift.observe(drift)
        if drift > woke["worst"]:
            woke["worst"] = drift
            metrics.timer_drift_max.set(drift)

    @app.timer(1.0)
    async def report_health() -> None:
        resume_collector()  # paused while batches run: at least once a second it runs (streams.kernel.processor)
        if not app.rebalancing:
            for agent in agents:
                await agent.report_health()

    async def report_recovery() -> None:
        """Recovery progress from Faust's recovery service, every half second until it is done (Faust's timers
        start only once the worker is ready): remaining changelog records per view partition, and the rate."""
        recovery = app.tables.recovery
        last_total, last_at = None, time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            remaining = recovery.active_remaining() if recovery.in_recovery else {}
            now, total = time.monotonic(), sum(max(n, 0) for n in remaining.values())
            rate = max(last_total - total, 0) / max(now - last_at, 1e-9) if last_total is not None else 0.0
            last_total, last_at = total, now
            metrics.recovery_rate.set(rate)
            for agent in agents:
                changelog = agent.table._changelog_topic_name()  # noqa: SLF001 - ours (_StateTable)
                await agent.report_recovery({tp.partition: max(n, 0) for tp, n in remaining.items()
                                             if tp.topic == changelog}, rate)
            if not remaining and not app.rebalancing:
                return

    @app.on_partitions_assigned.connect
    async def watch_recovery(sender: Any, assigned: Any = None, **kwargs: Any) -> None:
        coordinator = app.consumer._thread._consumer._coordinator  # noqa: SLF001 - aiokafka's, under Faust's
        remember_membership(settings.state_dir, coordinator.group_id, coordinator.member_id)
        task = getattr(app, "rillet_recovery_watch", None)
        if task is None or task.done():
            app.rillet_recovery_watch = asyncio.ensure_future(report_recovery())  # type: ignore[attr-defined]

    @app.timer(1.0)
    async def heal_redis() -> None:
        await agents[0].exit_if_retired()  # an idle worker too: new-definition workers may be starting
        for agent in agents:
            await agent.heal_redis()

    app.rillet_metrics = metrics  # type: ignore[attr-defined]
    app.rillet_agents = agents  # type: ignore[attr-defined]
    return app


def _each_view(readers: list[ViewAgent]) -> batch_transport.BatchHandler:
    """One topic's batch handler: the batch goes to each view reading the topic, in turn."""
    if len(readers) == 1:
        return readers[0].handle

    async def handle(messages: list[Message]) -> None:
        for agent in readers:
            await agent.handle(messages)

    return handle


async def _start_offsets(by_topic: dict[str, list[ViewAgent]], partitions: Any) -> dict[Any, int | None]:
    """Where each assigned view-topic partition must be read from: the least of its views' own positions
    (None: from the beginning, for a view with no progress there yet).

    The batch transport seeks there after each rebalance, so a view added to a deployment, a view
    whose version a replay built, or a view behind the group's commit (the group was renamed by a
    replay of another view) reads everything it has not stored; views ahead skip those records.
    """
    out: dict[Any, int | None] = {}
    for tp in partitions:
        readers = by_topic.get(tp.topic)
        if readers:
            starts = [await agent.start_offset(tp.partition) for agent in readers]
            out[tp] = None if None in starts else min(starts)
    return out


async def _commit_handled(app: faust.App, agents: list[ViewAgent]) -> None:
    """Commit each source partition up to the table's progress record, beside Faust's own commits.

    Faust commits only offsets it saw acknowledged, without holes. Records it drops
    while a worker joins (faust-streaming #596) leave a hole that never closes: seen
    here as a worker that had applied every record (the table's progress at the
    head) yet stayed hundreds of offsets behind on its commit until timeouts. The
    progress record is written after a batch's sinks and dead letters, so every
    offset up to it is handled, and committing there is safe.
    """
    if app.rebalancing:  # tables may be half restored; Faust seeks to the committed offsets after it
        return
    consumer = app.consumer
    by_topic: dict[str, list[ViewAgent]] = {}
    for agent in agents:
        by_topic.setdefault(agent.view.topic, []).append(agent)
    offsets = {}
    for tp in consumer.assignment():
        readers = by_topic.get(tp.topic)
        if not readers:
            continue
        stored = [agent.watermarks.stored_last_offset(tp.partition) for agent in readers]
        if None in stored:
            continue  # a view that has stored nothing here yet: committing would pass what it must still read
        last = min(stored)  # never past any view's own progress
        committed = consumer._committed_offset.get(tp)  # noqa: SLF001 - Faust's record of its last commit
        unsynced = (tp.topic, tp.partition) in getattr(consumer, "rillet_unsynced", ())
        if committed is None or last + 1 > committed or unsynced:
            offsets[tp] = last + 1
    if offsets:
        if await consumer._commit_offsets(offsets):  # noqa: SLF001 - flushes the producer (changelog) first
            for tp in offsets:
                getattr(consumer, "rillet_unsynced", set()).discard((tp.topic, tp.partition))
