"""`rillet restore`: rebuild a version's online states from the workers' changelog, not the raw events.

The changelog holds one record per entity state (and per partition's progress),
so reading it is fast, needs no topic retention of the events, and gives the
very bytes the workers wrote. The last record of each key wins; a tombstone
(an expired state) removes it, as the contract allows. States go back to Redis
under the same version's keys, so a reader never sees a mix of versions, and
each partition's live marker is set last (a restore cut short is run again).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sinks.online.store import OnlineStore, aggregated_counts
from sinks.online.versions import VersionRegistry
from sinks.redis_client import connect_redis, connect_redis_async
from streams.broker.kafka_log import client_config
from streams.definitions.view import FeatureView
from streams.errors import RilletError
from streams.kernel.watermark import PROGRESS_KEY_PREFIX, PartitionProgress
from streams.settings import Settings

__all__ = ["RestoreReport", "changelogs", "restore_online"]


@dataclass
class RestoreReport:
    view: str
    version: int
    topics: list[str]
    records: int
    states: int
    partitions: list[int]
    seconds: float
    recreated_version_record: bool = False


def changelogs(settings: Settings, view: FeatureView) -> dict[int, list[str]]:
    """Per version of `view`, its state table's changelog topics: `{app id}-{view}-v{n}-state-changelog`,
    where the app id is the workers' consumer group (the configured one, or with replayed versions'
    suffixes). One metadata request."""
    import re

    from confluent_kafka.admin import AdminClient

    pattern = re.compile(rf"-{re.escape(view.name)}-v(\d+)-state-changelog$")
    found: dict[int, list[str]] = {}
    for topic in sorted(AdminClient(client_config(settings.bootstrap_servers)).list_topics(timeout=10).topics):
        match = pattern.search(topic)
        if match and topic.startswith(settings.worker_group):
            found.setdefault(int(match.group(1)), []).append(topic)
    return found


def restore_online(settings: Settings, view: FeatureView, version: int | None = None, *,
                   on_progress: Callable[[int, int], None] | None = None) -> RestoreReport:
    """Write every live state of `view` (its active version by default) from the changelog back to Redis.

    Raises:
        RilletError: the view has no such version, or no changelog to restore from.
    """
    started = time.monotonic()
    registry = VersionRegistry(connect_redis(settings))
    recreated = False
    found = changelogs(settings, view)
    if not registry.list(view.name):  # Redis lost the version records too: the changelogs name the versions
        version = version or max(found, default=None)
        if version is None:
            raise RilletError(f"view {view.name}: Redis holds no version of it and no changelog names one")
        recreated = registry.recreate(view, version, replayed=version != 1)
    version = version or registry.active(view.name)
    if version is None or registry.get(view.name, version) is None:
        which = f"version {version}" if version else "active version"
        raise RilletError(f"view {view.name}: no {which} to restore (see rillet versions)")
    topics = found.get(version, [])
    if not topics:
        raise RilletError(f"view {view.name} v{version}: no changelog topic ending in "
                          f"-{view.name}-v{version}-state-changelog under group {settings.worker_group!r}; "
                          "a version only a replay wrote has its states in Redis alone: replay it instead")
    states, progress, records = _read_changelogs(settings, topics, on_progress)
    partitions = sorted(progress)
    online = OnlineStore(view, version)

    async def write() -> None:
        client = connect_redis_async(settings)
        try:
            await online.restore(client, sorted(states.items()), partitions)
            if progress:
                await client.hset(online.events_key, mapping=aggregated_counts(progress.items()))
        finally:
            await client.aclose()

    asyncio.run(write())
    return RestoreReport(view.name, version, topics, records, len(states), partitions,
                         round(time.monotonic() - started, 3), recreated)


def _read_changelogs(settings: Settings, topics: list[str],
                     on_progress: Callable[[int, int], None] | None) -> tuple[dict, dict, int]:
    """Last value per key over every partition of `topics`: entity states, and progress per partition."""
    from collections import namedtuple

    from confluent_kafka import Consumer, TopicPartition

    from streams.broker.tansu import fetch_high_watermarks

    consumer = Consumer(client_config(settings.bootstrap_servers, **{
        "group.id": f"rillet-restore-{uuid.uuid4()}", "enable.auto.commit": False, "fetch.wait.max.ms": 50,
        "queued.max.messages.kbytes": 262_144}))
    tp = namedtuple("tp", "topic partition")
    try:
        wanted = [tp(t, p) for t in topics for p in sorted(consumer.list_topics(t, timeout=10).topics[t].partitions)]
        ends = fetch_high_watermarks(settings.bootstrap_servers, wanted)
        heads = {(k.topic, k.partition): v for k, v in ends.items() if v}
        total = sum(heads.values())
        consumer.assign([TopicPartition(t, p, 0) for (t, p) in heads])
        states: dict[str, bytes] = {}
        progress: dict[int, PartitionProgress] = {}
        read, pending, last_seen = 0, dict(heads), time.monotonic()
        while pending:
            if time.monotonic() - last_seen > 30:
                raise RilletError(f"changelog {sorted(pending)} stopped short of its head for 30 s")
            for msg in consumer.consume(10_000, timeout=0.5):
                last_seen = time.monotonic()
                if msg.error():
                    continue
                read += 1
                key, value = msg.key(), msg.value()
                if key.startswith(PROGRESS_KEY_PREFIX):
                    if value is not None:
                        progress[int(key[len(PROGRESS_KEY_PREFIX):])] = PartitionProgress.decode(value)
                elif value is None:
                    states.pop(key.decode(), None)
                else:
                    states[key.decode()] = value
                where = (msg.topic(), msg.partition())
                if where in pending and msg.offset() >= pending[where] - 1:
                    del pending[where]
            if on_progress:
                on_progress(read, total)
    finally:
        consumer.close()
    return states, progress, read
