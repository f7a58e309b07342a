"""Redis connections from settings, with the password kept out of every message.

`RILLET_REDIS_URL` names one server (`redis://`, `rediss://`, `unix://`) or a Redis
Cluster (`redis+cluster://host:port,host:port`, `rediss+cluster://` for TLS): any of its
nodes is enough to find the rest. On a cluster the client is redis-py's `RedisCluster`,
and rillet never sends a command whose keys sit in different slots: a view's version
records share one slot (a hash tag), entity states spread by entity, and reads of many
states go through `mget`, which splits them by slot there.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aredis
import redis.asyncio.cluster as acluster
import redis.asyncio.connection as aconnection
import redis.cluster as cluster

from streams.settings import Settings

__all__ = [
    "REDIS_DOWN",
    "connect_redis",
    "connect_redis_async",
    "follow_ask_on_one_connection",
    "is_cluster",
    "lost_connection_is_an_outage",
    "mget",
]

#: What a Redis that does not answer raises: the server down or unreachable, or on a cluster, a
#: node down (slots not served) until it comes back or a replica takes over, or a slot moving
#: between nodes. redis-py 8.1's asyncio cluster client sends ASKING and the command on two pooled
#: connections, so a read of a key already migrated bounces until `ClusterError('TTL exhausted.')`
#: (tests/integration/test_cluster_migration.py keeps the reproduction): transient, like an outage.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, OSError, redis.exceptions.ClusterError,
    redis.exceptions.RedisClusterException, redis.exceptions.TryAgainError, redis.exceptions.AskError,
)


def is_cluster(url_or_client: Any) -> bool:
    """True for a cluster URL or a cluster client."""
    if isinstance(url_or_client, str):
        return urlsplit(url_or_client).scheme in ("redis+cluster", "rediss+cluster")
    return isinstance(url_or_client, cluster.RedisCluster | acluster.RedisCluster)


def mget(client: Any, keys: list[str]) -> Any:
    """MGET on one server; on a cluster, one MGET per slot (`mget_nonatomic`). A coroutine on async clients."""
    return client.mget_nonatomic(keys) if is_cluster(client) else client.mget(keys)


def _kwargs(settings: Settings) -> dict:
    kwargs: dict = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    if settings.redis_password:
        kwargs["password"] = settings.redis_password
    return kwargs


def _cluster_args(settings: Settings) -> tuple[list[tuple[str, int]], dict]:
    parts = urlsplit(settings.redis_url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    kwargs = _kwargs(settings)
    if ":" in userinfo and "password" not in kwargs:
        kwargs["password"] = unquote(userinfo.split(":", 1)[1])
    if parts.scheme.startswith("rediss"):
        kwargs["ssl"] = True
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.strip().rpartition(":")
        nodes.append((name or "127.0.0.1", int(port or 6379)))
    return nodes, kwargs


def connect_redis(settings: Settings) -> redis.Redis | cluster.RedisCluster:
    """A blocking client for reads and tools."""
    if is_cluster(settings.redis_url):
        nodes, kwargs = _cluster_args(settings)
        return cluster.RedisCluster(startup_nodes=[cluster.ClusterNode(h, p) for h, p in nodes], **kwargs)
    return redis.Redis.from_url(settings.redis_url, **_kwargs(settings))


_FIFO_ACQUIRE = acluster.ClusterNode.acquire_connection


def _acquire_latest(node: acluster.ClusterNode) -> Any:
    """The connection released last (LIFO), else what redis-py would do (a new one while under the limit)."""
    return node._free.pop() if node._free else _FIFO_ACQUIRE(node)  # noqa: SLF001 - see below


def follow_ask_on_one_connection() -> None:
    """Work around redis-py 8.1's asyncio cluster client losing ASK redirections.

    On ASK it sends `ASKING`, releases that connection, then sends the command on the
    connection it acquires next; the node's free list is a FIFO, so with two or more
    pooled connections the command goes on another one, which the importing node
    bounces back (`MOVED`) until `ClusterError('TTL exhausted.')`. Taking the most
    recently released connection instead (nothing runs between the two, no await) puts
    the command on ASKING's connection. Idempotent; applies to every asyncio cluster
    client (tests/integration/test_cluster_migration.py keeps the bug's reproduction,
    with redis-py's own order, so the release that fixes it shows).
    """
    acluster.ClusterNode.acquire_connection = _acquire_latest


_SEND_PACKED = aconnection.AbstractConnection._send_packed_command  # noqa: SLF001 - see lost_connection_is_an_outage


async def _send_on_open_connection(self: aconnection.AbstractConnection, command: Any) -> None:
    if self._writer is None:
        raise redis.ConnectionError("the connection closed while a command was being sent on it")
    await _SEND_PACKED(self, command)


def lost_connection_is_an_outage() -> None:
    """Make redis-py 8.1's asyncio client say ConnectionError when a node dies mid-command.

    When a cluster master is killed, the client can close a connection (another task saw the
    node go) while a command is about to be written on it; the write then raises
    `AttributeError: 'NoneType' object has no attribute 'writelines'`, which no outage handler
    recognises, so a worker's timer crashed the process instead of waiting the outage out.
    Idempotent; applies to every asyncio client (tests/sinks/test_redis_client.py reproduces it).
    """
    aconnection.AbstractConnection._send_packed_command = _send_on_open_connection  # noqa: SLF001


def connect_redis_async(settings: Settings, max_connections: int | None = None) -> aredis.Redis | acluster.RedisCluster:
    """An asyncio client, so a slow Redis never blocks the event loop.

    With `max_connections`, a burst of concurrent requests waits for a free
    connection instead of opening one each (which a busy Redis answers late).
    """
    lost_connection_is_an_outage()
    if is_cluster(settings.redis_url):
        follow_ask_on_one_connection()
        nodes, kwargs = _cluster_args(settings)
        if max_connections is not None:
            kwargs["max_connections"] = max_connections
        return acluster.RedisCluster(startup_nodes=[acluster.ClusterNode(h, p) for h, p in nodes], **kwargs)
    if max_connections is None:
        return aredis.Redis.from_url(settings.redis_url, **_kwargs(settings))
    pool = aredis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=max_connections, timeout=5,
                                                  **_kwargs(settings))
    return aredis.Redis(connection_pool=pool)
