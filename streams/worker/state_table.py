"""The view's state table: Faust's table with rillet's changelog name, raw bytes, and the partition progress.

Each view version keeps its entity states and, beside them, one progress record per source
partition (`TableWatermarks`) in one changelog-backed table: the changelog is the batch's commit
point, and a restarted worker reads both back from it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.types import TP

from streams.definitions.view import FeatureView
from streams.kernel.watermark import PROGRESS_KEY_PREFIX, PartitionProgress, Watermarks

__all__ = ["ChangelogWriter", "StateTable", "TableWatermarks", "put_states", "state_table_name", "write_changelog"]


def state_table_name(view: FeatureView, version: int = 1) -> str:
    return f"{view.name}-v{version}-state"


class StateTable(faust.Table):
    """A view version's state table whose changelog is named by the worker group and the view version
    alone: `{RILLET_WORKER_GROUP}-{view}-v{n}-state-changelog`.

    Faust names a changelog after the app id, and the app id (the consumer group) changes when another
    view of the same workers is replayed (sinks.online.versions.live_group): a view untouched by that replay
    would then start from an empty changelog, its states and progress lost to the worker.
    """

    def __init__(self, app: faust.App, *, changelog_prefix: str, **kwargs: Any) -> None:
        self._changelog_prefix = changelog_prefix
        super().__init__(app, **kwargs)

    def _changelog_topic_name(self) -> str:
        return f"{self._changelog_prefix}-{self.name}-changelog"


def put_states(data: Any, changes: list[tuple[int, bytes, bytes]]) -> None:
    """Set table keys, each in its source partition's store, in one write per partition. Faust's RocksDB store
    takes the partition from the current stream event, and a batch handler has none: write to each partition's
    database directly, a `WriteBatch` at a time as Faust's own changelog recovery does (a put per key cost
    more than the batch's processing with 2,000 new entities a second)."""
    db_for = getattr(data, "_db_for_partition", None)
    if db_for is None:  # the in-memory store: a dict
        for _, key, value in changes:
            data[key] = value
        return
    from rocksdict import WriteBatch

    batches: dict[int, Any] = {}
    index = data._key_index  # noqa: SLF001 - as the store's own _set keeps it
    for partition, key, value in changes:
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = WriteBatch(raw_mode=True)
        batch.put(key, value)
        index[key] = partition
    for partition, batch in batches.items():
        db_for(partition).write(batch)


def write_changelog(table: Any, tp: TP, records: list[Any]) -> None:
    """Apply changelog records (aiokafka's, offset order) of one partition to the table's store, as Faust's
    `apply_changelog_batch` does but from the records themselves: no Event per record (recovery read 1M
    records back at 76-82k records/s with one; the main thread spent most of it building them).

    RocksDB: one `WriteBatch`, then the persisted offset, from which a restart on this machine reads on.
    """
    data = table.data
    db_for = getattr(data, "_db_for_partition", None)
    if db_for is None:  # the in-memory store keeps its own key bookkeeping: hand it Faust's shape
        table.apply_changelog_batch([_ChangelogEvent(tp, record) for record in records])
        return
    from rocksdict import WriteBatch

    batch = WriteBatch(raw_mode=True)
    put, delete = batch.put, batch.delete
    for record in records:
        if record.value is None:
            delete(record.key)
        else:
            put(record.key, record.value)
    db_for(tp.partition).write(batch)
    data.set_persisted_offset(tp, records[-1].offset)


class _ChangelogEvent:
    """What a Faust store's `apply_changelog_batch` reads of a changelog Event and its message."""

    __slots__ = ("key", "offset", "partition", "tp", "value")

    def __init__(self, tp: TP, record: Any) -> None:
        self.tp, self.partition, self.offset = tp, tp.partition, record.offset
        self.key, self.value = record.key, record.value

    @property
    def message(self) -> _ChangelogEvent:
        return self


class TableWatermarks(Watermarks):
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


#: changelog records appended between two yields to the event loop: `producer.send` rarely waits, and a batch of
#: 8,000 new entities held the loop for 90-500 ms in one go (timers, heartbeats and commits behind it)
YIELD_EVERY = 1000


class ChangelogWriter:
    """Sends a batch's changelog records straight to the producer, remembering per partition what RocksDB holds.

    Faust's `Table.send_changelog` builds a message, a future and a callback per record and queues it
    for a background task (about 80 us of the event loop's time a record: 14% of a saturated worker's
    main thread in a profile at 1M states). Here each record is appended to aiokafka's accumulator
    directly; the commit still flushes the producer first (Faust's `_commit_offsets`), so no offset is
    committed past a changelog record that is not stored. As Faust's own callback does, the last
    record sent to each partition, once acknowledged, sets the store's persisted offset, from which a
    restart on the same machine reads the changelog (the in-memory store ignores it).
    """

    def __init__(self, app: faust.App, table: faust.Table) -> None:
        self.app, self.table = app, table
        self.topic = table.changelog_topic.get_topic_name()

    async def send(self, changes: list[tuple[int, bytes, bytes | None]]) -> None:
        """`changes`: (partition, key, value or None for a tombstone), in the order they must be applied."""
        if not changes:
            return
        producer = self.app.producer._ensure_producer()  # noqa: SLF001 - aiokafka's, as Faust's send uses it
        last: dict[int, Any] = {}
        for i, (partition, key, value) in enumerate(changes, 1):
            last[partition] = await producer.send(self.topic, value, key=key, partition=partition)
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        for future in last.values():
            future.add_done_callback(self._persisted)

    def _persisted(self, future: Any) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # not stored: a restart reads the changelog from the previous persisted offset, as it must
        sent = future.result()
        self.table.data.set_persisted_offset(TP(sent.topic, sent.partition), sent.offset)
