"""The Redis client's behaviour when a node dies under it, on a real server."""

from __future__ import annotations

import asyncio

import pytest
import redis

from sinks.redis_client import REDIS_DOWN, connect_redis_async


def test_a_command_on_a_connection_closed_under_it_is_an_outage(stack) -> None:
    """redis-py 8.1 raised AttributeError ('NoneType' has no attribute 'writelines') when another task
    closed a connection (its node died) just before a command was written on it; no outage handler
    knew it, so a worker's health timer crashed the process in the cluster master-kill test."""

    async def scenario() -> None:
        client = connect_redis_async(stack.settings)
        try:
            assert await client.ping()
            connection = await client.connection_pool.get_connection()
            await connection.disconnect()  # what the task that saw the node go does
            with pytest.raises(REDIS_DOWN) as raised:
                await connection._send_packed_command([b"*1\r\n$4\r\nPING\r\n"])
            assert isinstance(raised.value, redis.ConnectionError)
            await client.connection_pool.release(connection)
        finally:
            await client.aclose()

    asyncio.run(scenario())
