"""A Faust transport that hands each view topic's fetched records to the view as one batch.

Faust's stock consumer delivers one message at a time: for every record it races
the conductor's callback against flow control (four tasks, an `asyncio.wait`,
three cancellations), builds an Event, queues it on a channel and iterates it out
of a stream. A profile of an agent that does nothing put 78 us of main-thread time
on each record; rillet's engine wants the records of a fetch together anyway.

`BatchConsumer` is Faust's aiokafka consumer with one change, in the loop that
drains fetches: it takes aiokafka's records of a fetch as they are, with no Faust
Message per record (building, tracking and acknowledging one cost about 8 us a
record of the main thread). The records of a topic with a registered batch handler
(the view topics, `app.rillet_batch_handlers`) are handed over in one call,
partition after partition in offset order, then acknowledged together. The
changelogs of rillet's state tables (`app.rillet_batch_changelogs`), while Faust
recovers them or follows them as standbys, are written to the table a fetch at a
time too: Faust's recovery queues one Event per record and applies it through a
loop with per-record bookkeeping (about 14k records/s here), and even a Message
per record held a full read-back to 76-82k records/s; the batch write does what
that loop does (one `WriteBatch` per fetch, the recovery offsets, the
end-of-recovery signal) at 250k. Every other topic takes Faust's own path record
by record. A batch in a handler counts among Faust's unacknowledged messages and
its offsets are acknowledged as Faust's `ack` would each record's, so Faust's
commits see exactly the offsets handled and a rebalance waits for a batch in
flight; a batch fetched just as a rebalance stops the flow is not handed over,
and Faust seeks back to the committed offsets after it.

Registered through Faust's transport entry point (`faust.transports`, see
pyproject.toml): the worker's consumer URL is `rillet://host:port`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING, CONSUMER_WAIT_EMPTY
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode import Service
from mode.utils.futures import notify

from streams import faults
from streams.worker.state_table import write_changelog

__all__ = ["SCHEME", "BatchConsumer", "BatchHandler", "Transport"]

SCHEME = "rillet"
logger = logging.getLogger(__name__)

#: A view's handler: aiokafka's records of one fetch (at most the batch size), in offset order per partition.
BatchHandler = Callable[[list[Any]], Awaitable[None]]


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; the broker holds a fetch open for at most `app.rillet_fetch_wait_ms`
    (Faust builds its aiokafka consumer with 1,500 ms and no setting to change it)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.consumer.app, "rillet_fetch_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms  # noqa: SLF001 - read by aiokafka at start()
        return consumer

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        # Faust's checks that each partition is fetched and processed count "since start" from `time_started`,
        # which must be the assignment: a partition taken over minutes after the worker started had "Stream has
        # not started processing TP(...) (started 5.28 minutes ago)" at ERROR before its first batch came, and
        # a standby's "Aiokafka has not sent fetch request ... since start" likewise (1M failover bench)
        self.time_started = time.monotonic()
        await super().on_partitions_assigned(assigned, generation_id)

    def verify_recovery_event_path(self, now: float, tp: Any) -> None:
        """Faust's check that recovery fetches a changelog partition, only for partitions it still has records
        to read on: a standby copy already at the changelog's head gets no fetch response to show."""
        if recovery_fetch_expected(self.app.tables.recovery.active_remaining().get(tp)):
            super().verify_recovery_event_path(now, tp)


def recovery_fetch_expected(remaining: int | None) -> bool:
    """Whether recovery must be fetching a partition: it has changelog records left to read there."""
    return bool(remaining)


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering view topics a batch per fetch (module docstring)."""

    #: changelog records written to active partitions since the recovery began (for its closing log line)
    rillet_recovered = 0

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek_to_committed(self) -> dict[Any, int | None]:
        """Seek to the committed offsets, then back to where a view still has to read from, if earlier.

        The views' own progress decides (`app.rillet_start_offsets`: partition -> next offset, None for
        the beginning): several views may read one topic under one commit, and a view may be new to the
        group. Faust calls this after every rebalance, once the tables are recovered; the offsets
        returned become the read offsets below which fetched records are dropped.
        """
        committed: dict[Any, int | None] = dict(await super().seek_to_committed())
        starts = getattr(self.app, "rillet_start_offsets", None)
        if starts is None:
            return committed
        wanted = await starts(self.assignment())
        #: partitions whose read offset is not what the group has committed: Faust takes the returned offset
        #: for its last commit, so `streams.worker.app` commits these once even with no new record to read
        self.rillet_unsynced: set[tuple[str, int]] = set()
        for tp, start in wanted.items():
            have = next((offset for key, offset in committed.items() if tuple(key) == tuple(tp)), None)
            if start is None and have is not None and have > 0:
                await self._thread.seek_to_beginning(faust_aiokafka.ensure_aiokafka_TP(tp))
                committed[tp] = None
            elif start is not None and (have is None or have < 0 or start < have):
                await self.seek(tp, start)
                committed[tp] = start
                self.rillet_unsynced.add((tp.topic, tp.partition))
        return committed

    async def _drain_messages(self, fetcher: Any) -> None:
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set  # noqa: SLF001 - as Faust's own loop reads it
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await self.sleep(0)  # as Faust's loop: getmany may not yield to the event loop
                if not self.should_stop:
                    records, active_partitions = await self._wait_next_records(1.0)
                    if records and not self.should_stop:
                        await self._take_fetch(records, active_partitions)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _take_fetch(self, records: dict[Any, list[Any]], active_partitions: set[Any] | None) -> None:
        """One fetch (partition -> aiokafka records): the changelogs being recovered are written to their tables,
        the view topics go to their handlers, both with no Message per record; other topics take Faust's path."""
        if not self.flow_active:
            try:  # as Faust's getmany: a fetch that lands while the flow is stopped is dropped and re-read
                await self.perform_seek()
            except Exception as exc:
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        handlers: dict[str, BatchHandler] = getattr(self.app, "rillet_batch_handlers", {})
        batch_changelogs: frozenset[str] = getattr(self.app, "rillet_batch_changelogs", frozenset())
        recovery = self.app.tables.recovery
        read_offset = self._read_offset
        track_end = self.app.monitor.track_tp_end_offset
        generation_id = self.app.consumer_generation_id
        rest: dict[Any, list[Any]] = {}
        changes = 0
        for tp, fetched in records.items():
            if not fetched or (active_partitions is not None and tp not in active_partitions
                               and tp not in self._buffered_partitions):
                continue
            track_end(tp, self.highwater(tp))
            if tp.topic in batch_changelogs and (tp in recovery.active_tps or tp in recovery.standby_tps):
                await faults.paused("changelog_fetch")  # tests: a recovery slow enough to watch
                applied = apply_changelog_records(recovery, tp, unread(fetched, read_offset[tp]))
                read_offset[tp] = fetched[-1].offset
                changes += 1
                if tp in recovery.active_tps:
                    self.rillet_recovered += applied
            else:
                rest[tp] = fetched
        if changes and end_recovery_when_done(recovery):
            seconds = time.monotonic() - (recovery._recovery_started_at or time.monotonic())  # noqa: SLF001
            logger.info("state read back from the changelogs: %d records in %.1f s (%.0f records/s)",
                        self.rillet_recovered, seconds, self.rillet_recovered / max(seconds, 1e-9))
            self.rillet_recovered = 0
        if rest:
            await self._take_records(rest, generation_id, handlers)

    async def _take_records(self, records: dict[Any, list[Any]], generation_id: int,
                            handlers: dict[str, BatchHandler]) -> None:
        """View topics: each topic's records of the fetch to its handler, partition after partition. Other topics:
        Faust's `getmany` loop (round robin over topics, a Message per record)."""
        read_offset = self._read_offset
        batches: dict[str, list[Any]] = {}
        others: dict[Any, list[Any]] = {}
        for tp, fetched in records.items():
            if tp.topic not in handlers:
                others[tp] = fetched
                continue
            fresh = unread(fetched, read_offset[tp])
            if fresh:
                batches.setdefault(tp.topic, []).extend(fresh)
                read_offset[tp] = fresh[-1].offset
        if others:
            await self._take_messages(others, generation_id)
        batch_size: int = getattr(self.app, "rillet_batch_size", 2000)
        for topic, batch in batches.items():
            await self._deliver(handlers[topic], batch, batch_size)

    async def _take_messages(self, records: dict[Any, list[Any]], generation_id: int) -> None:
        """Faust's own path for a topic with no batch handler: a Message per record, to the conductor's callback."""
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break
            offset, last_read = record.offset, read_offset[tp]
            if last_read is not None and offset < last_read:
                continue  # read already: Faust drops it too
            message = to_message(tp, record)
            if last_read and offset - last_read > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, last_read + 1, offset)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            read_offset[tp] = offset

    @Service.transitions_to(CONSUMER_WAIT_EMPTY)
    async def wait_empty(self) -> None:
        """Faust's wait for the records in flight to be acknowledged (a rebalance and a stop wait for it), without
        its full `gc.collect()` each round: that only cleared records dropped unacknowledged from Faust's weak
        set, which this consumer discards itself, and with 1M states in memory it took 0.8 s a round, held
        the event loop and delayed every takeover by it."""
        while not self.should_stop and self._unacked_messages:
            await self.commit()
            if not self._unacked_messages:
                break
            await self._wait_for_ack(timeout=1)
            self._clean_unacked_messages()
        await self.commit_and_end_transactions()

    async def _deliver(self, handler: BatchHandler, records: list[Any], batch_size: int) -> None:
        """Hand the records over in batches of at most `batch_size`, acknowledging each batch after it.

        While a batch is in the handler, a marker stands for it among Faust's unacknowledged messages, so a
        rebalance or a stop waits for it (`wait_empty`), as it would for each record's Message.
        """
        for lo in range(0, len(records), batch_size):
            if not self.flow_active:  # a rebalance began: Faust seeks back to the committed offsets after it
                return
            batch = records[lo:lo + batch_size]
            in_flight = _InFlight()
            self._unacked_messages.add(in_flight)
            try:
                await handler(batch)
            finally:
                self._unacked_messages.discard(in_flight)
            hidden = faults.skipped("acknowledgement", len(batch))  # tests: acks Faust never sees
            self.ack_records([record for i, record in enumerate(batch) if i not in hidden] if hidden else batch)
            inbound = self.app.monitor.stream_inbound_time
            if inbound is not None:
                # Faust's livelock check reads it: one handler serves every partition of the topic, so a batch
                # handled is the topic's stream processing. A partition waiting its turn in a backlog (the
                # fetcher drains one partition's buffer before the next) is behind, not stuck; a view partition
                # that stops advancing shows as STALLED in `rillet status`, from the view's own progress.
                now, topic = time.monotonic(), batch[0].topic
                for tp in self.assignment():
                    if tp.topic == topic:
                        inbound[tp] = now
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()

    def ack_records(self, records: list[Any]) -> None:
        """Acknowledge handled records (anything with `topic`, `partition`, `offset`), as Faust's `ack` does each
        record's Message: the offsets go to the acked list Faust commits from, once each, none below its commit."""
        by_tp: dict[TP, list[int]] = {}
        for record in records:
            by_tp.setdefault(TP(record.topic, record.partition), []).append(record.offset)
        with ack_lock:
            for tp, offsets in by_tp.items():
                if not self.app.topics.acks_enabled_for(tp.topic):
                    continue
                committed, index = self._committed_offset[tp], self._acked_index[tp]
                fresh = [offset for offset in offsets
                         if (committed is None or offset >= committed) and offset not in index]
                index.update(fresh)
                self._acked[tp].extend(fresh)
                self._n_acked += len(fresh)
            notify(self._waiting_for_ack)


class _InFlight:
    """A batch in a handler, among Faust's unacknowledged messages (a weak set: the batch holds it)."""

    acked = False
    refcount = 1

    def __repr__(self) -> str:
        return "<a view batch in its handler>"


def unread(fetched: list[Any], last_read: int | None) -> list[Any]:
    """The records of a partition's fetch (offset order) from `last_read` on: Faust drops those below it."""
    if last_read is None or not fetched or fetched[0].offset >= last_read:
        return fetched
    return [record for record in fetched if record.offset >= last_read]


def apply_changelog_records(recovery: Any, tp: Any, records: list[Any]) -> int:
    """Write one fetch of a changelog partition (offset order) to its table, as Faust's recovery loop would
    record by record.

    Records at or below the offset recovery has reached are skipped (as Faust skips them); the
    offset recovery has reached becomes the last record's, so `active_remaining()` counts down.
    Returns the number of records written.
    """
    offsets = recovery.active_offsets if tp in recovery.active_tps else recovery.standby_offsets
    seen = offsets.get(tp)
    fresh = records if seen is None or not records or records[0].offset > seen else [
        record for record in records if record.offset > seen]
    if not fresh:
        return 0
    write_changelog(recovery.tp_to_table[tp], tp, fresh)
    offsets[tp] = fresh[-1].offset
    return len(fresh)


def end_recovery_when_done(recovery: Any) -> bool:
    """Signal the end of recovery once every active partition is read to its end.

    Faust's recovery loop checks this after each record it takes from its queue; the batch write
    bypasses the queue, so it checks here (otherwise the loop would notice only after its 5 s timeout).
    """
    if recovery.in_recovery and not recovery.need_recovery():
        recovery.flush_buffers()
        recovery._set_recovery_ended()  # noqa: SLF001 - the step Faust's loop takes at the end
        recovery.signal_recovery_end.set()
        return True
    return False


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the batch consumer."""

    Consumer = BatchConsumer
