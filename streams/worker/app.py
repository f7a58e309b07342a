"""The Faust app: one agent per view, window state in changelog-backed tables.

Faust does what it is good at here — partition assignment, tables with
changelogs, recovery, offset commits — while the windowing is rillet's own
kernel, driven by one `ViewAgent` per view (`streams.worker.agent`). The view
topics reach the agents a fetch at a time through the batch transport. Faust
runs at-least-once; states carry the last applied offset, so a re-delivered
event is skipped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.sensors import Monitor

from sinks.online.versions import live_group
from sinks.redis_client import connect_redis_async
from streams.broker.predecessors import remember_membership
from streams.broker.tansu import FAUST_GROUP_TIMING, recover_tables_to_the_true_end
from streams.definitions.view import FeatureView
from streams.kernel.collector import resume_collector
from streams.settings import Settings
from streams.worker import batch_transport
from streams.worker.agent import ViewAgent
from streams.worker.logs import log_event
from streams.worker.metrics import WorkerMetrics
from streams.worker.state_slot import claim_state_slot
from streams.worker.version_watch import VersionWatch

__all__ = ["build_app", "caught_up_is_alive", "resolve_versions"]


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


def resolve_versions(settings: Settings, views: list[FeatureView]) -> tuple[dict[str, list], dict[str, int]]:
    """Each view's versions this worker keeps current (active, candidates, a previous one: its own
    definition's among them), and each view's generation as read before them.

    Raises VersionMismatchError (saying to replay) when a view's definition is none of them.
    """
    from sinks.online.versions import VersionRegistry
    from sinks.redis_client import connect_redis

    registry = VersionRegistry(connect_redis(settings))
    kept, generations = {}, {}
    for view in views:
        generations[view.name] = registry.generation(view.name)  # first: a change after it is seen at once
        kept[view.name] = registry.for_worker(view)
    return kept, generations


def _definition_of(view: FeatureView, info: Any) -> FeatureView:
    """The definition a version is kept current with: this process's own, or the one stored with it."""
    from sinks.online.versions import view_from_spec

    return view if info.fingerprint == view.fingerprint else view_from_spec(info.spec)


WATCH_EVERY_S = 0.5
# how long after a rebalance each stored batch is committed at once (`after_batch` in build_app)
COMMIT_SOON_AFTER_REBALANCE_S = 5.0


def build_app(settings: Settings, views: list[FeatureView]) -> faust.App:
    """A Faust app with one batch agent per view; run it with `faust.Worker(app)`."""
    from schemas.store import open_schema_store
    from streams.broker.topics import partition_counts

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
    versions, generations = resolve_versions(settings, views)
    datadir = claim_state_slot(settings.state_dir)  # a directory of this process's own (RocksDB locks files)
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
        datadir=str(datadir),
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        producer_linger=0.005,
        # Faust's check that each assigned partition is processed: the batch transport feeds its monitor, so
        # its ERROR means a stuck stream, and a stuck stream shows in 10 s instead of 5 min
        stream_processing_timeout=10.0,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4 * settings.batch_size, 4096),
        # a fetch hands over at most a batch: with no cap, one fetch of a backlog held hundreds of thousands
        # of records as Python objects while its batches ran, which every full collection walked (the event
        # loop stood still up to 2 s at 1M states), and its last partitions waited behind the first ones
        broker_max_poll_records=settings.batch_size,
        # a partition's fetch brings up to this much: the consumer fetches a partition again only once its
        # records are handed over, so under load each fetch's round trip was a gap between batches (60-250 ms
        # on Tansu); 8 MB against Faust's 1 MB: 26.1k against 23.1k events/s (bench.throughput, medians of 3)
        consumer_max_fetch_size=settings.fetch_bytes,
        Monitor=QuietMonitor,
        **extra,
    )
    metrics = WorkerMetrics()
    store = open_schema_store(settings)
    # The table's changelog must be co-partitioned with the source topic as it really is.
    actual = partition_counts(settings)
    agents = [
        ViewAgent(app, _definition_of(view, info), settings, store, metrics,
                  actual.get(view.topic, view.partitions or settings.partitions), info.version,
                  replayed=bool(info.replay), dlq_partitions=actual.get(view.dlq_topic),
                  own=info.fingerprint == view.fingerprint)
        for view in views for info in versions[view.name]
    ]
    watch = VersionWatch(connect_redis_async(settings), versions,
                         {view.name: next(i.version for i in versions[view.name] if i.fingerprint == view.fingerprint)
                          for view in views}, generations, settings.state_dir)
    for agent in agents:
        agent.healer.versions = watch
    by_topic: dict[str, list[ViewAgent]] = {}
    for agent in agents:
        by_topic.setdefault(agent.view.topic, []).append(agent)
    for readers in by_topic.values():
        app.topics.add(readers[0].source)  # subscribed; its records go to the agents through the batch transport
    # Any number of views may read one topic: each fetch goes to every one of them, one after the other, and
    # is acknowledged once all have stored it. Each view keeps its own progress; commits take the least.
    # for a few seconds after a rebalance each batch is committed as soon as it is stored, not at the next tick of
    # the commit timer: a takeover is back at steady lag up to a second sooner (bench.restart)
    commit_soon = {"until": 0.0}

    async def after_batch() -> None:
        if time.monotonic() < commit_soon["until"]:
            await _commit_handled(app, agents)

    app.rillet_batch_handlers = {topic: _each_view(readers, watch, after_batch)  # type: ignore[attr-defined]
                                 for topic, readers in by_topic.items()}
    app.rillet_start_offsets = functools.partial(_start_offsets, by_topic)  # type: ignore[attr-defined]
    # the state tables' changelogs are read back a fetch at a time on recovery (see streams.worker.batch_transport)
    app.rillet_batch_changelogs = frozenset(agent.changelog.topic for agent in agents)  # type: ignore[attr-defined]
    app.rillet_batch_size = settings.batch_size  # type: ignore[attr-defined]
    # Tansu's fetch long-poll sleeps about half the wait even with records ready: keep it short there
    wait_ms = min(settings.batch_wait_ms, 50) if settings.is_tansu else settings.batch_wait_ms
    app.rillet_fetch_wait_ms = wait_ms  # type: ignore[attr-defined]

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
        commit_soon["until"] = time.monotonic() + COMMIT_SOON_AFTER_REBALANCE_S
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
        log_event(logging.INFO, event="rebalance", assigned=assigned)

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
            report_standbys()
            caught_up_is_alive(app.monitor.stream_inbound_time, app.consumer.assignment(), app.consumer.highwater,
                               by_topic, time.monotonic())

    view_of_changelog = {agent.changelog.topic: agent.label for agent in agents}

    def report_standbys() -> None:
        """How far each standby copy held here trails its changelog's head (`rillet_standby_behind_records`)."""
        recovery = app.tables.recovery
        metrics.standby_behind.clear()
        for tp in list(recovery.standby_tps):
            head = app.consumer.highwater(tp) if tp.topic in view_of_changelog else None
            if head is not None:
                applied = recovery.standby_offsets.get(tp, -1)
                metrics.standby_behind.labels(view_of_changelog[tp.topic], str(tp.partition)).set(
                    max(head - applied - 1, 0))

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
                changelog = agent.changelog.topic
                await agent.report_recovery({tp.partition: max(n, 0) for tp, n in remaining.items()
                                             if tp.topic == changelog}, rate)
            if not remaining and not app.rebalancing:
                return

    @app.on_partitions_assigned.connect
    async def watch_recovery(sender: Any, assigned: Any = None, **kwargs: Any) -> None:
        coordinator = app.consumer._thread._consumer._coordinator  # noqa: SLF001 - aiokafka's, under Faust's
        remember_membership(settings.state_dir, coordinator.group_id, coordinator.member_id)
        # Faust's livelock check measures a partition with no batch yet from the process's start: a partition
        # taken over from a dead worker minutes later logged "has not started processing" before its first
        # batch could run. Its stream starts now.
        inbound, now = app.monitor.stream_inbound_time, time.monotonic()
        for tp in assigned or ():
            if tp.topic in by_topic:
                inbound[tp] = now
        task = getattr(app, "rillet_recovery_watch", None)
        if task is None or task.done():
            app.rillet_recovery_watch = asyncio.ensure_future(report_recovery())  # type: ignore[attr-defined]

    @app.timer(1.0)
    async def heal_redis() -> None:
        await watch.check()  # an idle worker too: a promotion, a candidate or a retirement changes what it runs
        due = watch.due_to_expire()
        if due:  # a previous version's time for a rollback is up: retire it (every worker sees it)
            await asyncio.to_thread(_expire_kept, settings, due)
        for agent in agents:
            await agent.heal_redis()
            await agent.sweep_when_due()

    app.rillet_metrics = metrics  # type: ignore[attr-defined]
    app.rillet_agents = agents  # type: ignore[attr-defined]
    return app


def caught_up_is_alive(inbound: Any, assignment: Any, highwater: Any, by_topic: dict[str, list[ViewAgent]],
                       now: float) -> list[Any]:
    """Tell Faust's livelock check that a view partition every view has read to its head is alive.

    The check logs ERROR when a partition's head is past its position and nothing came in for 10 s.
    After a quiet spell the last inbound time is old, so records arriving in the instant before their
    fetch returned read as a stalled stream (seen at 1M states: "last inbound 22.15 seconds ago").
    An idle stream that has read everything is processing; marked every second, the check measures
    from when records were there to read. Returns the partitions marked.
    """
    if inbound is None:
        return []
    marked = []
    for tp in assignment:
        readers = by_topic.get(tp.topic)
        head = highwater(tp) if readers else None
        if head is not None and all(a.watermarks.last_offset(tp.partition) + 1 >= head for a in readers):
            inbound[tp] = now
            marked.append(tp)
    return marked


def _expire_kept(settings: Settings, views: list[str]) -> None:
    from sinks.online.versions import VersionRegistry
    from sinks.redis_client import connect_redis

    client = connect_redis(settings)
    try:
        for view in views:
            VersionRegistry(client).expire_kept(view)
    except Exception as exc:  # Redis down: the next tick tries again
        log_event(logging.WARNING, event="expire_kept_failed", views=views, error=f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


def _each_view(readers: list[ViewAgent], watch: VersionWatch,
               after: Callable[[], Awaitable[None]]) -> batch_transport.BatchHandler:
    """One topic's batch handler: the batch goes to each view (and version) reading the topic, in turn, once
    the process has checked that the versions it keeps current are still the ones (it restarts otherwise);
    then `after`."""

    async def handle(fetched: list[Any]) -> None:
        await watch.check()
        for agent in readers:
            await agent.handle(fetched)
        await after()

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
