"""`ViewEngine.steady_until`: no value of a state changes before the time it names.

Online reads reuse an evaluation until then (sinks.online.value_cache), so a time
it names too late would serve a stale value: every value is compared at points
between the read time and it, on random histories and read times on and around
window edges.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.definitions.view import Feature, FeatureView
from streams.kernel.engine import Event, ViewEngine
from streams.windows import Lifetime, Session, Sliding, Tumbling
from tests.helpers import write_schema

AGGS = ["count", "sum", "mean", "min", "max", "last", "stddev", "count_distinct", "first", "last_k(3)", "top_k(2)",
        "approx_percentile(0.5)"]
WINDOWS = [Tumbling(1000), Sliding(3000, 1000), Sliding(2000, 500), Session(700), Session(1500), Lifetime()]


@functools.cache
def make_view(ttl: int, with_time: bool = False) -> FeatureView:
    schema = write_schema(Path(tempfile.mkdtemp(prefix="rillet-test-")))
    features = [Feature("x", agg, w) for agg in AGGS for w in WINDOWS]
    if with_time:
        features.append(Feature(None, "age", Lifetime()))
    return FeatureView("t", "t", schema, "entity", features, ttl=ttl, grace=100_000, event_time="ts")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    times=st.lists(st.one_of(st.integers(0, 40).map(lambda k: k * 100), st.integers(0, 8000)), min_size=1,
                   max_size=25),
    xs=st.lists(st.one_of(st.none(), st.floats(0, 1000, allow_nan=False)), min_size=25, max_size=25),
    ttl=st.sampled_from([2500, 100_000]),
    after=st.lists(st.one_of(st.integers(0, 40).map(lambda k: k * 100), st.integers(0, 9000)), min_size=1,
                   max_size=5),
)
def test_no_value_changes_before_steady_until(times, xs, ttl, after):
    engine = ViewEngine(make_view(ttl))
    state = None
    for offset, (t, x) in enumerate(zip(times, xs, strict=False)):
        state = engine.apply(state, Event("a", t, {"x": x}, 0, offset), max(times)) or state
    assert state is not None
    for delta in after:
        t = state.latest_ms + delta
        until = engine.steady_until(state, t)
        assert until is not None and until > t
        values = engine.as_of(state, t)
        for probe in {t + 1, (t + until) // 2, until - 1}:
            if t <= probe < until:
                assert engine.as_of(state, probe) == values, (t, probe, until)


def test_a_value_that_moves_with_time_is_never_steady():
    engine = ViewEngine(make_view(100_000, with_time=True))
    state = engine.apply(None, Event("a", 1000, {"x": 1.0}, 0, 0), 1000)
    assert state is not None and engine.steady_until(state, 1000) is None
