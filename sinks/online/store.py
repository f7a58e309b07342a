"""The Redis online store: one key per (view, version, entity) holding its window state.

Key layout (sinks.online.keys): `rillet:{view}:v{version}:e:{entity}` -> the engine's state bytes
(msgpack). Reads evaluate that state with the same engine `as_of` now or at an
explicit time, so the online value is the contract's value by construction.
Writes are whole states, never increments: writing the same state twice is
harmless, which makes replays and restarts idempotent. Each key expires after
the view's ttl plus its longest window (a value no read can still use).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aredis

from sinks.online.keys import epoch_key, events_key, live_key, online_key
from sinks.online.write_epochs import EPOCH_CAS, ReplicasBehindError, masters, replica_count
from sinks.redis_client import REDIS_DOWN, is_cluster
from streams.definitions.view import FeatureView
from streams.kernel.records import StateWrite
from streams.kernel.watermark import PartitionProgress

__all__ = ["OnlineStore", "aggregated_counts"]

log = logging.getLogger("rillet.online")

# KEYS: state keys; ARGV: their states, then the expiry in ms ('' for none). One call writes a batch's states on one
# server: in a pipeline of SETs, redis-py spent 28 us of the worker's CPU a key, with this 5 (1,000 states of 800 bytes)
_SET_STATES = """
local px = ARGV[#ARGV]
for i = 1, #KEYS do
  if px == '' then redis.call('SET', KEYS[i], ARGV[i]) else redis.call('SET', KEYS[i], ARGV[i], 'PX', px) end
end
return #KEYS
"""
_SET_CHUNK = 1000  # states a call writes


def aggregated_counts(progress: Iterable[tuple[int, PartitionProgress]]) -> dict[str, int]:
    """The `events_key` hash's fields: partition -> events aggregated from it (absolute, so idempotent)."""
    return {str(partition): entry.aggregated for partition, entry in progress}


class OnlineStore:
    """Writes entity states: async, pipelined, retried while Redis is down (reads: sinks.online.reads)."""

    def __init__(self, view: FeatureView, version: int = 1, *, replica_acks: int = 0, wait_timeout_ms: int = 1000,
                 on_wait: Callable[[float], None] | None = None) -> None:
        self.view = view
        self.version = version
        self.replica_acks, self.wait_timeout_ms, self.on_wait = replica_acks, wait_timeout_ms, on_wait
        # a lifetime window's state is the entity's whole history: it never expires
        self.expire_ms = None if view.has_lifetime else view.ttl_ms + view.longest_window_ms

    def key(self, entity: str) -> str:
        return online_key(self.view.name, self.version, entity)

    @property
    def events_key(self) -> str:
        """Hash: source partition -> events this version aggregated from it (`rillet versions`)."""
        return events_key(self.view.name, self.version)

    @property
    def live_key(self) -> str:
        """Hash: source partition -> "1" once Redis holds every state of that partition.

        Written with the states, so a Redis that comes back empty (no persistence) shows it
        by the markers it lost with them. A failover that lost only the last writes keeps
        the markers (written earlier, in one slot): the write epochs show it (`epoch_key`).
        """
        return live_key(self.view.name, self.version)

    def epoch_key(self, tag: str) -> str:
        return epoch_key(self.view.name, self.version, tag)

    async def write(self, client: aredis.Redis, writes: list[StateWrite],
                    progress: list[tuple[int, PartitionProgress]] = (), *,
                    epochs: list[tuple[int, int | None, int]] = (), max_wait_s: float = 60.0) -> None:
        """Write a batch of states (and each partition's aggregated count) in one pipeline per node; while
        Redis is down, or its replicas have not acknowledged the writes, wait and write again.

        Retrying never drops results: the batch is not acknowledged (its offsets
        not committed) until this returns. Counts are absolute, so a batch
        written twice after a crash counts once. `epochs`: (partition, progress
        stored before this batch or None, the batch's last offset), set on every
        master (sinks.online.write_epochs).
        """
        if not writes and not progress:
            return

        async def attempt() -> None:
            nodes = await masters(client)
            acks = {}
            if self.replica_acks:
                for node in nodes:
                    acks[node.name] = min(self.replica_acks, await replica_count(client, node))
            waits = [node for node in nodes if acks.get(node.name)]
            async with client.pipeline(transaction=False) as pipe:
                self.queue_states(client, pipe, [(self.key(w.entity), w.state) for w in writes])
                if progress:
                    pipe.hset(self.events_key, mapping=aggregated_counts(progress))
                for node in nodes:
                    for partition, stored, last in epochs:
                        pipe.eval(EPOCH_CAS, 1, self.epoch_key(node.tag), partition,
                                  "" if stored is None else stored, last)
                for node in waits:  # last on each node's connection: WAIT counts that connection's writes
                    target = {} if node.target is None else {"target_nodes": node.target}
                    pipe.execute_command("WAIT", acks[node.name], self.wait_timeout_ms, **target)
                started = time.perf_counter()
                results = await pipe.execute()
            if not waits:
                return
            if self.on_wait is not None:
                self.on_wait(time.perf_counter() - started)
            behind = {node.name: f"{got}/{acks[node.name]}" for node, got in zip(waits, results[-len(waits):],
                                                                                  strict=True)
                      if int(got) < acks[node.name]}
            if behind:
                raise ReplicasBehindError(f"replicas acknowledged {behind}")

        await self.retrying(attempt, max_wait_s)

    def queue_states(self, client: Any, pipe: Any, items: list[tuple[str, bytes]]) -> None:
        """Queue `SET key state [PX expiry]` for each (key, state) on `pipe`, an asyncio or a blocking one: a script
        call per thousand states on one server; on a cluster a SET each (a batch's keys spread over slots, and a
        script's must share one)."""
        if is_cluster(client):
            for key, blob in items:
                pipe.set(key, blob, px=self.expire_ms)
            return
        px = "" if self.expire_ms is None else self.expire_ms
        for lo in range(0, len(items), _SET_CHUNK):
            part = items[lo:lo + _SET_CHUNK]
            pipe.eval(_SET_STATES, len(part), *[key for key, _ in part], *[blob for _, blob in part], px)

    async def lost_partitions(self, client: aredis.Redis, stored: dict[int, int | None], *,
                              max_wait_s: float = 60.0) -> list[int]:
        """The partitions (of `stored`: partition -> the progress the worker stored) whose states a master
        lost: its live marker is gone (Redis came back empty), or a master's write epoch is behind the
        stored progress or missing (a failover to a replica that missed the last writes)."""
        partitions = sorted(stored)
        if not partitions:
            return []

        async def attempt() -> list[int]:
            nodes = await masters(client)
            async with client.pipeline(transaction=False) as pipe:
                pipe.hmget(self.live_key, [str(p) for p in partitions])
                for node in nodes:
                    pipe.hmget(self.epoch_key(node.tag), [str(p) for p in partitions])
                marks, *epochs = await pipe.execute()
            lost = {p for p, mark in zip(partitions, marks, strict=True) if mark is None}
            for row in epochs:
                lost |= {p for p, epoch in zip(partitions, row, strict=True)
                         if stored[p] is not None and (epoch is None or int(epoch) < stored[p])}
            return sorted(lost)

        return await self.retrying(attempt, max_wait_s)

    async def restore(self, client: aredis.Redis, states: list[tuple[str, bytes]], partitions: list[int], *,
                      epochs: dict[int, int | None] | None = None, chunk: int = 5_000,
                      max_wait_s: float = 60.0) -> None:
        """Write back every state of `partitions`, then mark them live again and set every master's write epoch
        to the progress the states hold (last, so a restore cut short is done again)."""
        for lo in range(0, len(states), chunk):
            part = states[lo:lo + chunk]

            async def attempt(part: list[tuple[str, bytes]] = part) -> None:
                async with client.pipeline(transaction=False) as pipe:
                    self.queue_states(client, pipe, [(self.key(entity), blob) for entity, blob in part])
                    await pipe.execute()

            await self.retrying(attempt, max_wait_s)
        if partitions:
            await self.retrying(lambda: client.hset(self.live_key, mapping={str(p): 1 for p in partitions}),
                                 max_wait_s)
        reached = {str(p): offset for p, offset in (epochs or {}).items() if offset is not None}
        if reached:
            for node in await masters(client):
                await self.retrying(lambda node=node: client.hset(self.epoch_key(node.tag), mapping=reached),
                                     max_wait_s)

    async def retrying(self, attempt: Any, max_wait_s: float = 60.0) -> Any:
        """Run `attempt()` until Redis answers: the worker waits out an outage, it never drops a batch."""
        delay = 0.05
        while True:
            try:
                return await attempt()
            except (ReplicasBehindError, *REDIS_DOWN) as exc:
                behind = isinstance(exc, ReplicasBehindError)  # written, but a failover could still lose it
                log.warning(
                    '{"event": "%s", "view": "%s", "retry_in_s": %.2f, "error": "%s"}',
                    "redis_replicas_behind" if behind else "redis_unavailable", self.view.name, delay,
                    exc if behind else type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_wait_s / 10)
