"""A join allocates from the system allocator while it runs and leaves the process's pool as it found it."""

from __future__ import annotations

import threading

import pyarrow as pa

from sinks.offline.join import OfflineReader
from sinks.offline.memory import system_allocator
from tests.sinks.offline.test_historical import entity_rows, store  # noqa: F401  (store: a fixture)


def test_a_join_runs_on_the_system_allocator_and_restores_the_default(store, monkeypatch):  # noqa: F811
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    view, _, events, tmp_path = store
    rows = entity_rows(events)
    entity_df = pa.table({"user_id": [u for u, _ in rows], "event_timestamp": [t for _, t in rows]})
    before = pa.default_memory_pool().backend_name
    seen: list[str] = []
    OfflineReader([view], tmp_path / "offline").get_historical_features(
        entity_df, ["payments:*"], chunk_rows=64,
        on_progress=lambda done, total: seen.append(pa.default_memory_pool().backend_name))
    assert seen and set(seen) == {"system"}
    assert pa.default_memory_pool().backend_name == before


def test_overlapping_joins_in_threads_restore_the_default_when_the_last_ends(monkeypatch):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    before = pa.default_memory_pool().backend_name
    inside, release = threading.Event(), threading.Event()

    def other_join() -> None:
        with system_allocator():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_join)
    with system_allocator():
        thread.start()
        assert inside.wait(10)
    assert pa.default_memory_pool().backend_name == "system"  # the other join still runs
    release.set()
    thread.join(10)
    assert pa.default_memory_pool().backend_name == before


def test_a_pool_the_user_chose_is_left_alone(monkeypatch):
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    before = pa.default_memory_pool().backend_name
    with system_allocator():
        assert pa.default_memory_pool().backend_name == before
