"""Writes the online store may still lose, and writes it has lost: replica acknowledgement and write epochs.

Redis replication is asynchronous. A master that dies before its replicas received
its last writes is replaced by a replica that serves older states, and nothing in
the states says so. Two defences, on one Redis and on every master of a cluster:

- **Acknowledgement before the commit point.** Each batch's pipeline to a node ends
  with `WAIT n`, on the connection that wrote (WAIT counts that connection's
  writes), where `n` is `RILLET_REDIS_REPLICA_ACKS` capped by the replicas the
  node has attached now. A batch whose writes fewer replicas acknowledged is
  written again, never committed: a failover can then only lose writes whose
  source offsets are not committed, and are read again.
- **A write epoch per node and source partition**, checked before every batch.
  Each batch sets, on every master, `epoch[p]` = the last source offset of
  partition `p` it wrote, but only when the master's epoch is not behind the
  worker's stored progress (a compare-and-set in Lua, so a master that lost
  writes cannot be papered over by the next batch). A master whose `epoch[p]` is
  behind the progress the worker stored for `p`, or missing, lost writes: the
  worker writes back every state its table holds for `p`, as for an empty Redis.

On a cluster, a master's epoch key carries a hash tag of a slot it serves, so it
lives on that master (keys: `sinks.online.store.epoch_key`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.crc import key_slot

from streams.errors import ReplicasBehindError

__all__ = ["EPOCH_CAS", "Node", "ReplicasBehindError", "masters", "replica_count", "tag_for_slot"]

#: KEYS[1] the epoch hash; ARGV: partition, the progress the worker stored before this batch ('' for none), the
#: batch's last offset. Sets the epoch unless the node is behind that progress (it lost writes: leave it behind).
EPOCH_CAS = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and (not current or tonumber(current) < tonumber(ARGV[2])) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class Node:
    """A master to write epochs to: the cluster node (None on one Redis) and the hash tag that lands there."""

    target: Any
    tag: str
    name: str


_TAGS: dict[int, str] = {}


def tag_for_slot(slot: int) -> str:
    """A short text whose hash slot is `slot` (searched once per slot, then cached)."""
    if slot not in _TAGS:
        i = 0
        while key_slot(str(i).encode()) != slot:
            i += 1
        _TAGS[slot] = str(i)
    return _TAGS[slot]


_MASTERS: dict[int, list[Node]] = {}


async def masters(client: Any) -> list[Node]:
    """The masters a batch writes epochs to: one per cluster master (by a slot it serves now), or the one
    server. Recomputed when the cluster client's slot map changes."""
    manager = getattr(client, "nodes_manager", None)
    if manager is None:
        return [Node(None, "", "single")]
    if not manager.slots_cache:
        await client.initialize()  # a client that has sent nothing yet has no slot map
    slots = manager.slots_cache
    cached = _MASTERS.get(id(slots))
    if cached is None:
        first: dict[str, int] = {}
        for slot in sorted(slots):
            if slots[slot]:
                first.setdefault(slots[slot][0].name, slot)
        cached = [Node(manager.nodes_cache[name], tag_for_slot(slot), name) for name, slot in sorted(first.items())]
        _MASTERS.clear()
        _MASTERS[id(slots)] = cached
    return cached


_REPLICAS: dict[str, tuple[int, float]] = {}
REPLICAS_FRESH_S = 5.0


async def replica_count(client: Any, node: Node) -> int:
    """Replicas attached to `node` now (INFO replication; cached for a few seconds)."""
    cached = _REPLICAS.get(node.name)
    if cached is not None and time.monotonic() - cached[1] < REPLICAS_FRESH_S:
        return cached[0]
    if node.target is None:
        info = await client.info("replication")
    else:
        info = await client.info("replication", target_nodes=node.target)
        info = info.get(node.name, info) if isinstance(info, dict) and node.name in info else info
    count = int(info.get("connected_slaves", 0))
    _REPLICAS[node.name] = (count, time.monotonic())
    return count
