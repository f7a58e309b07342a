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


def connect_redis_async(settings: Settings) -> aredis.Redis:
    """An asyncio client for the worker, so a slow Redis never blocks the event loop."""
    return aredis.Redis.from_url(settings.redis_url, **_kwargs(settings))
