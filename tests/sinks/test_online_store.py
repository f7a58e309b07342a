"""The online store's writes on a real server: every state of a batch, with its expiry, in any number of calls."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
import redis

from sinks.online.store import OnlineStore
from sinks.redis_client import connect_redis_async
from streams.definitions.view import Feature, FeatureView
from streams.kernel.records import StateWrite
from streams.windows import Lifetime, Tumbling
from tests.helpers import write_schema


@pytest.mark.parametrize("window", [Tumbling("5m"), Lifetime()], ids=["expiring", "lifetime"])
def test_a_batch_of_states_is_written_whole_with_its_expiry(stack, tmp_path, window) -> None:
    view = FeatureView(f"store{uuid.uuid4().hex[:8]}", "t", write_schema(tmp_path), "entity",
                       [Feature("x", "sum", window)], ttl="1h")
    store = OnlineStore(view, 3)
    writes = [StateWrite(f"e{i}", os.urandom(i % 300), i) for i in range(2_345)]  # three calls of at most 1,000

    async def write() -> None:
        client = connect_redis_async(stack.settings)
        try:
            await store.write(client, writes)
        finally:
            await client.aclose()

    asyncio.run(write())
    client = redis.Redis.from_url(stack.settings.redis_url)
    try:
        keys = [store.key(w.entity) for w in writes]
        assert client.mget(keys) == [w.state for w in writes]
        ttls = {client.pttl(keys[0]), client.pttl(keys[-1])}
        if store.expire_ms is None:
            assert ttls == {-1}
        else:
            assert all(store.expire_ms - 60_000 < t <= store.expire_ms for t in ttls)
    finally:
        client.delete(*keys)
        client.close()
