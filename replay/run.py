"""`rillet replay`: recompute a view from its topic into a new version, then switch readers to it.

The batch path: no Faust, no changelog. A confluent-kafka consumer reads the
assigned partitions in large batches; the same `ViewProcessor` (decode,
lateness, window engine) the live worker runs applies them to states held in
memory; each batch's Parquet rows are published, then its states and the
per-partition progress are written to Redis in one MULTI/EXEC — the replay's
commit point. A replay stopped anywhere (Ctrl-C, SIGKILL) and run again
resumes from that progress: states come back from Redis, Parquet rows already
published past it are not written twice, and re-read events are skipped by
the same per-partition and per-entity offsets the worker uses.

When every partition has reached the head, the replay hands its offsets to
the new version's live consumer group and switches the active pointer
(`sinks.online.versions`), keeping the version it replaced current for a
rollback when asked to (`keep_s`). With `candidate` it switches nothing: the
version becomes a candidate, which the workers keep current beside the active
one until `rillet promote` (or `rillet versions retire`). With `--until` it stops at that event time and does not
switch: a backfill for training data. Dead letters are only counted: the live
worker already sent each one to the DLQ.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from schemas.codec import EventDecoder
from schemas.store import open_schema_store
from sinks.offline.store import OfflineStore
from sinks.online.store import OnlineStore, aggregated_counts
from sinks.online.versions import BUILDING, VersionInfo, VersionRegistry, live_group
from sinks.redis_client import connect_redis
from streams import faults
from streams.broker.kafka_log import client_config
from streams.broker.tansu import fetch_high_watermarks
from streams.definitions.view import FeatureView
from streams.errors import EventDecodeError, RilletError
from streams.kernel.collector import resume_collector
from streams.kernel.engine import ViewEngine
from streams.kernel.processor import SourceBatch, ViewProcessor
from streams.kernel.watermark import PartitionProgress, Watermarks
from streams.settings import Settings

__all__ = ["PartitionRange", "Replay", "ReplayReport"]

log = logging.getLogger("rillet.replay")
_TP = namedtuple("_TP", "topic partition")


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int  # first offset to read
    end: int  # the head when planned (exclusive)

    @property
    def records(self) -> int:
        return max(self.end - self.start, 0)


@dataclass
class ReplayReport:
    version: int
    resumed: bool
    ranges: list[PartitionRange]
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    switched_from: int | None = None
    switched: bool = False
    candidate: bool = False  # built as a candidate: the workers keep it current; nothing switched

    @property
    def events_per_s(self) -> float:
        return self.counts["read"] / self.seconds if self.seconds else 0.0


Progress = Callable[[int, int, float], None]  # (records read, records planned, events/s)


class Replay:
    """One replay of one view, with its definition as loaded now."""

    def __init__(self, settings: Settings, view: FeatureView, *, from_ms: int | None = None,
                 until_ms: int | None = None, batch_size: int = 50_000, switch: bool = True,
                 partitions: list[int] | None = None, candidate: bool = False, keep_s: float = 0.0) -> None:
        self.settings, self.view = settings, view
        self.partitions = None if partitions is None else set(partitions)  # a share of the topic (parallel replays)
        self.from_ms, self.until_ms = from_ms, until_ms
        self.batch_size = batch_size
        self.switch = switch and until_ms is None
        self.candidate, self.keep_s = candidate, keep_s
        self.redis = connect_redis(settings)
        self.registry = VersionRegistry(self.redis)
        self.engine = ViewEngine(view)

    # ----------------------------------------------------------------- planning
    def plan(self, progress: dict[int, PartitionProgress] | None = None) -> list[PartitionRange]:
        """Per partition: where reading starts (resumed progress, the offset for --from, or the start) and the head."""
        from confluent_kafka import Consumer

        consumer = Consumer(self._consumer_config("rillet-replay-plan"))
        try:
            metadata = consumer.list_topics(self.view.topic, timeout=10).topics.get(self.view.topic)
            if metadata is None or metadata.error is not None or not metadata.partitions:
                raise RilletError(f"view {self.view.name}: topic {self.view.topic!r} does not exist")
            partitions = sorted(p for p in metadata.partitions if self.partitions is None or p in self.partitions)
            if self.partitions is not None and len(partitions) != len(self.partitions):
                missing = sorted(self.partitions - set(metadata.partitions))
                raise RilletError(f"view {self.view.name}: topic {self.view.topic!r} has no partition {missing}")
            heads = fetch_high_watermarks(self.settings.bootstrap_servers,
                                          [_TP(self.view.topic, p) for p in partitions])
            ranges = []
            for p in partitions:
                head = heads.get(_TP(self.view.topic, p), 0)
                low = consumer.get_watermark_offsets(_tp(self.view.topic, p), timeout=10)[0]
                start = max(low, 0)
                if self.from_ms is not None:
                    # windows reaching back before --from must be complete: start where event time
                    # reaches from - longest window - grace (grace: events that far out of order)
                    target = self.from_ms - self.view.longest_window_ms - self.view.grace_ms
                    start = self._first_offset_at(consumer, p, start, head, target)
                if progress and p in progress:
                    start = max(start, progress[p].last_offset + 1)
                ranges.append(PartitionRange(p, start, head))
            return ranges
        finally:
            consumer.close()

    def _first_offset_at(self, consumer, partition: int, low: int, high: int, target_ms: int) -> int:
        """The first offset whose event time is at or after target_ms, by binary search over offsets.

        The local broker's offsets_for_times ignores record timestamps, so the search
        reads event times itself; it works the same on Kafka. Event time rises with
        offset up to grace, which the target already allows for.
        """
        decoder = EventDecoder(self.view, open_schema_store(self.settings))
        while low < high:
            mid = (low + high) // 2
            record = self._read_one(consumer, partition, mid)
            if record is None:
                high = mid
                continue
            try:
                event_ms = decoder.decode(record.value(), record.timestamp()[1], partition, record.offset()).event_ms
            except EventDecodeError:
                event_ms = record.timestamp()[1]
            if event_ms < target_ms:
                low = record.offset() + 1
            else:
                high = mid
        return low

    def _read_one(self, consumer, partition: int, offset: int):
        consumer.assign([_tp(self.view.topic, partition, offset)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                return msg
        return None

    # ------------------------------------------------------------------ running
    def run(self, *, on_progress: Progress | None = None, dry_run: bool = False,
            stop_after: int | None = None) -> ReplayReport:
        """Replay to the head (or --until), then switch; `stop_after` records ends early (tests, partial runs)."""
        try:
            return self._run(on_progress=on_progress, dry_run=dry_run, stop_after=stop_after)
        finally:
            resume_collector()  # the batches paused it (streams.kernel.processor)

    def _run(self, *, on_progress: Progress | None, dry_run: bool, stop_after: int | None) -> ReplayReport:
        if dry_run:
            return ReplayReport(version=0, resumed=False, ranges=self.plan())
        info, resumed = self.registry.start_build(self.view, {"from": self.from_ms, "until": self.until_ms})
        progress = self.load_progress(info.version)
        ranges = self.plan(progress)
        report = ReplayReport(info.version, resumed, ranges)
        started = time.monotonic()
        planned = sum(r.records for r in ranges)
        states: dict[str, bytes] = {}  # entity -> its state after the last batch
        watermarks = Watermarks(progress)
        processor = ViewProcessor(self.engine, EventDecoder(self.view, open_schema_store(self.settings)), watermarks)
        online = OnlineStore(self.view, info.version)
        offline = OfflineStore(self.settings.offline_root, self.view, info.version)
        on_disk = {r.partition: offline.offsets_written_after(r.partition, watermarks.last_offset(r.partition))
                   for r in ranges}

        # A resumed replay's earlier states are in Redis, behind the progress it committed. A partition with
        # none starts from its beginning, and any state a crash left there without progress is built again:
        # the shares of `--processes N` (each a resumed build of the parent's new version) skip a GET an entity
        earlier = resumed and any(r.partition in progress for r in ranges)

        def load_state(entity: str) -> bytes | None:
            found = states.get(entity)
            if found is None and earlier:
                found = self.redis.get(online.key(entity))
            return found

        from confluent_kafka import Consumer

        consumer = Consumer(self._consumer_config(f"rillet-replay-{self.view.name}-v{info.version}"))
        pending = {r.partition: r for r in ranges if r.records}
        consumer.assign([_tp(self.view.topic, r.partition, r.start) for r in pending.values()])
        try:
            while pending and (stop_after is None or report.counts["read"] < stop_after):
                records = self._source_batch(consumer.consume(self.batch_size, timeout=0.5), pending)
                if not len(records):
                    continue
                self._apply(records, processor, states, load_state, online, offline, on_disk, info, report)
                report.counts["read"] += len(records)
                if on_progress:
                    on_progress(report.counts["read"], planned, report.counts["read"] / (time.monotonic() - started))
        finally:
            consumer.close()
        report.seconds = time.monotonic() - started
        info = self.registry.get(self.view.name, info.version) or info
        if not pending and self.switch:
            self.finish(info, report)
        return report

    def _source_batch(self, messages: list, pending: dict[int, PartitionRange]) -> SourceBatch:
        """A fetch as columns, without the records past each partition's planned end; a partition whose last
        planned record is in it is done (taken out of `pending`)."""
        messages = [msg for msg in messages if msg.error() is None]
        partitions = np.fromiter((msg.partition() for msg in messages), dtype=np.int64, count=len(messages))
        offsets = np.fromiter((msg.offset() for msg in messages), dtype=np.int64, count=len(messages))
        planned = np.zeros(len(messages), dtype=bool)
        for partition in np.unique(partitions).tolist():
            where = partitions == partition
            end = pending.get(partition)
            if end is not None:
                planned |= where & (offsets < end.end)
                if (offsets[where] == end.end - 1).any():
                    del pending[partition]
        batch = SourceBatch(self.view.topic, partitions, offsets, [msg.timestamp()[1] for msg in messages],
                            [msg.key() for msg in messages], [msg.value() for msg in messages])
        return batch if planned.all() else batch.take(np.flatnonzero(planned))

    def finish(self, info: VersionInfo, report: ReplayReport) -> None:
        """At the head: make the version a candidate, or hand every partition's progress (whichever process
        replayed it) to the live group and switch."""
        if report.seconds and report.counts["read"]:  # `rillet plan` estimates a replay's time from it
            self.registry.record_replay_rate(self.view.name, info.version, report.events_per_s)
        if self.candidate:
            if info.state == BUILDING:
                self.registry.mark_candidate(self.view.name, info.version)
            report.candidate = True
            return
        report.switched_from = self._hand_over_and_switch(info, Watermarks(self.load_progress(info.version)))
        report.switched = True

    def _apply(self, records, processor: ViewProcessor, states, load_state, online: OnlineStore,
               offline: OfflineStore, on_disk: dict[int, set[int]], info: VersionInfo, report: ReplayReport) -> None:
        """One batch: engine, Parquet, then states + progress in one Redis transaction (the commit point)."""
        result = processor.process(records, load_state, int(time.time() * 1000), until_ms=self.until_ms)
        report.counts.update(result.counts)
        rows = result.rows.without(on_disk)
        if rows:
            offline.write(rows)
        faults.hit("replay_after_offline_write")  # crash tests: Parquet published, progress not yet
        writes = processor.state_writes(result)
        for w in writes:
            states[w.entity] = w.state
        # States first, progress last: the progress is the commit point. Not one transaction, which
        # a Redis Cluster refuses across slots: after a crash between the two, the batch is read
        # again and every state already holds its events (each state keeps its last offset)
        with self.redis.pipeline(transaction=False) as pipe:
            online.queue_states(self.redis, pipe, [(online.key(w.entity), w.state) for w in writes])
            pipe.execute()
        progress = processor.watermarks.items()
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(online.events_key, mapping=aggregated_counts(progress))
            pipe.hset(VersionRegistry.progress_key(self.view.name, info.version),
                      mapping={str(p): entry.encode() for p, entry in progress})
            pipe.execute()

    def load_progress(self, version: int) -> dict[int, PartitionProgress]:
        """Each partition's progress in a version's build, as the replays committed it."""
        raw = self.redis.hgetall(VersionRegistry.progress_key(self.view.name, version))
        return {int(partition): PartitionProgress.decode(value) for partition, value in raw.items()}

    def _hand_over_and_switch(self, info: VersionInfo, watermarks: Watermarks) -> int | None:
        """The new version's live workers start where the replay ended; then readers switch to it.

        The offsets go to the version's own consumer group, which no worker has
        joined yet (a worker refuses to start on a version that is not active). Should
        the broker refuse them anyway (a member joined meanwhile), nothing is lost: the
        workers read the replay's progress record from Redis and skip every record up
        to it, so the commit only saves them re-reading that far.
        """
        from confluent_kafka import Consumer, KafkaException

        group = live_group(self.settings.worker_group, {self.view.name: [info]})
        offsets = [_tp(self.view.topic, p, entry.last_offset + 1) for p, entry in watermarks.items()
                   if entry.last_offset >= 0]
        refused = "RILLET_SKIP_HANDOVER_COMMIT (tests)" if faults.skipped("handover_commit", 1) else None
        if offsets and refused is None:
            consumer = Consumer(self._consumer_config(group))
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                refused = exc.args[0].str()
            finally:
                consumer.close()
        if refused:
            log.warning(json.dumps({"event": "handover_commit_refused", "view": self.view.name,
                                    "version": info.version, "group": group, "error": refused,
                                    "message": "workers start from the replay's progress record instead"}))
        return self.registry.promote(self.view.name, info.version, keep_s=self.keep_s)[0]

    def _consumer_config(self, group: str) -> dict:
        config = {**client_config(self.settings.bootstrap_servers), "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "fetch.wait.max.ms": 50, "queued.max.messages.kbytes": 262_144,
                  "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024}
        return config


def _tp(topic: str, partition: int, offset: int | None = None):
    from confluent_kafka import TopicPartition

    return TopicPartition(topic, partition) if offset is None else TopicPartition(topic, partition, offset)

