"""Redis connections from settings, with the password kept out of every message."""

from __future__ import annotations

import redis
import redis.asyncio as aredis

from streams.settings import Settings

__all__ = ["connect_redis", "connect_redis_async"]


def _kwargs(settings: Settings) -> dict:
    kwargs: dict = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    if settings.redis_password:
        kwargs["password"] = settings.redis_password
    return kwargs


def connect_redis(settings: Settings) -> redis.Redis:
    """A blocking client for reads and tools."""
    return redis.Redis.from_url(settings.redis_url, **_kwargs(settings))


def connect_redis_async(settings: Settings, max_connections: int | None = None) -> aredis.Redis:
    """An asyncio client, so a slow Redis never blocks the event loop.

    With `max_connections`, a burst of concurrent requests waits for a free
    connection instead of opening one each (which a busy Redis answers late).
    """
    if max_connections is None:
        return aredis.Redis.from_url(settings.redis_url, **_kwargs(settings))
    pool = aredis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=max_connections, timeout=5,
                                                  **_kwargs(settings))
    return aredis.Redis(connection_pool=pool)
