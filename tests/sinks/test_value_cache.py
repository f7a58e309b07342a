"""Online reads that reuse kept values answer exactly what a read without them does, on a real server:
across pane boundaries, session gaps and the ttl, and after a new event rewrites the state."""

from __future__ import annotations

import asyncio
import uuid

import redis

from sinks.online.reads import FeatureReader
from sinks.online.store import OnlineStore
from sinks.redis_client import connect_redis_async
from streams.definitions.view import Feature, FeatureView
from streams.kernel.engine import Event, ViewEngine
from streams.kernel.records import StateWrite
from streams.windows import Session, Sliding, Tumbling
from tests.helpers import write_schema

BASE = 1_767_225_600_000


def _store(stack, view: FeatureView, states: dict) -> None:
    engine = ViewEngine(view)

    async def write() -> None:
        client = connect_redis_async(stack.settings)
        try:
            await OnlineStore(view).write(client, [StateWrite(e, engine.encode(s), s.latest_ms)
                                                   for e, s in states.items()])
        finally:
            await client.aclose()

    asyncio.run(write())


def test_kept_values_equal_fresh_reads_at_every_time(stack, tmp_path):
    view = FeatureView(f"cache{uuid.uuid4().hex[:8]}", "t", write_schema(tmp_path), "entity",
                       [Feature("x", agg, w) for agg in ("count", "sum", "max", "mean")
                        for w in (Tumbling(1000), Sliding(3000, 1000), Session(700))], ttl=5000)
    engine = ViewEngine(view)
    state = None
    for offset, t in enumerate((100, 900, 1400, 2950)):
        state = engine.apply(state, Event("a", BASE + t, {"x": float(offset + 1)}, 0, offset), BASE + t)
    _store(stack, view, {"a": state})
    client = redis.Redis.from_url(stack.settings.redis_url)
    try:
        kept, fresh = FeatureReader([view], client), FeatureReader([view], client, value_cache=0)
        refs, rows = [f"{view.name}:*"], [{"entity": "a"}]
        # on, just before and just after each pane edge, the session's gap and the ttl; each time twice
        times = sorted({BASE + t + d for t in (2950, 3000, 3650, 4000, 5000, 6000, 7950) for d in (-1, 0, 1)
                        if t + d >= 2950})
        for t in [*times, *times]:
            assert kept.get_online_features(refs, rows, as_of=t).rows == \
                fresh.get_online_features(refs, rows, as_of=t).rows, t
        assert kept.value_cache.hits > 0  # the second pass was answered from kept values
        state = engine.apply(state, Event("a", BASE + 8000, {"x": 10.0}, 0, 9), BASE + 8000)
        _store(stack, view, {"a": state})  # a new event: new bytes, new values
        for t in (BASE + 8000, BASE + 8500):
            assert kept.get_online_features(refs, rows, as_of=t).rows == \
                fresh.get_online_features(refs, rows, as_of=t).rows
    finally:
        client.delete(*client.keys(f"*{view.name}*"))
        client.close()


def test_a_list_value_is_never_shared_between_reads(stack, tmp_path):
    """A caller that changes a last-k list it got back cannot change what the next read answers."""
    view = FeatureView(f"cache{uuid.uuid4().hex[:8]}", "t", write_schema(tmp_path), "entity",
                       [Feature("x", "last_k(2)", Tumbling(1000))], ttl=5000)
    engine = ViewEngine(view)
    _store(stack, view, {"a": engine.apply(None, Event("a", BASE + 100, {"x": 1.0}, 0, 0), BASE + 100)})
    client = redis.Redis.from_url(stack.settings.redis_url)
    try:
        reader, ref = FeatureReader([view], client), f"{view.name}:x_last2_1s"
        first = reader.get_online_features([ref], [{"entity": "a"}], as_of=BASE + 200).rows[0][ref]
        first.append(99.0)
        assert reader.get_online_features([ref], [{"entity": "a"}], as_of=BASE + 200).rows[0][ref] == [1.0]
    finally:
        client.delete(*client.keys(f"*{view.name}*"))
        client.close()
