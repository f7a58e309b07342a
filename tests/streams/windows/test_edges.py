"""Window edges, as scenario tables: just inside, exactly on and just outside each edge.

    tumbling 1s:   [0 ............ 999][1000 ......... 1999]
    sliding 3s/1s: value at t covers [floor(t/1s)*1s - 2s, t]
    session 700ms: events at most 700 ms apart share a session
"""

from __future__ import annotations

import pytest

from streams.definitions.view import Feature, FeatureView
from streams.kernel.engine import Event, ViewEngine
from streams.windows import Session, Sliding, Tumbling
from tests.helpers import write_schema


def engine_for(tmp_path, window, grace=10_000):
    view = FeatureView("e", "e", write_schema(tmp_path), "entity", [Feature("x", "count", window)],
                       ttl=1_000_000, grace=grace)
    return ViewEngine(view)


def run(engine, times, t):
    state, watermark = None, None
    for offset, time_ms in enumerate(times):
        watermark = time_ms if watermark is None else max(watermark, time_ms)
        state = engine.apply(state, Event("a", time_ms, {"x": 1.0}, 0, offset), watermark)
    return engine.as_of(state, t)


@pytest.mark.parametrize(("times", "t", "count"), [
    ([999], 999, 1),      # just inside the first window
    ([999], 1000, 0),     # exactly on the next window's start: a new, empty window
    ([1000], 1000, 1),    # exactly on the start: included (start is inclusive)
    ([999, 1000], 1000, 1),
    ([1999], 2000, 0),
])
def test_tumbling_edges(tmp_path, times, t, count):
    engine = engine_for(tmp_path, Tumbling(1000))
    assert run(engine, times, t)["x_count_1s"] == count


@pytest.mark.parametrize(("times", "t", "count"), [
    ([0], 2999, 1),       # t in step 2: window [0, t]
    ([0], 3000, 0),       # step 3 starts: window [1000, t], event 0 fell out
    ([1000], 3999, 1),    # just inside the oldest step
    ([1000], 4000, 0),    # exactly when its step leaves the window
    ([999, 1000], 3000, 1),
])
def test_sliding_edges(tmp_path, times, t, count):
    engine = engine_for(tmp_path, Sliding(3000, 1000))
    assert run(engine, times, t)["x_count_3s_every_1s"] == count


@pytest.mark.parametrize(("times", "count", "start"), [
    ([0, 700], 2, 0),          # exactly gap apart: one session
    ([0, 701], 1, 701),        # just over the gap: a new session
    ([700, 0], 2, 0),          # late event exactly gap before: joins
    ([701, 0], 1, 701),        # late event just over gap before: its own older session
    ([0, 1400, 700], 3, 0),    # late event bridges two sessions into one
    ([0, 1401, 701], 2, 701),  # late event joins the newer one only (701 from 0: too far)
])
def test_session_edges(tmp_path, times, count, start):
    engine = engine_for(tmp_path, Session(700))
    values = run(engine, times, max(times))
    assert values["x_count_session_700ms"] == count
    assert values["session_700ms_start"] == start


def test_session_active_flag(tmp_path):
    engine = engine_for(tmp_path, Session(700))
    assert run(engine, [0], 700)["session_700ms_active"] is True
    assert run(engine, [0], 701)["session_700ms_active"] is False
