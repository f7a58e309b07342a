"""The vectorized point-in-time evaluation against the brute-force oracle, on random histories.

Every window x aggregation, at times on, between and around events and window
edges, including times before an entity's first event, after its ttl, and in
the middle of a disordered history: the offline value must be exact at any t.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.definitions.view import Feature, FeatureView
from streams.kernel.engine import ViewEngine
from streams.kernel.point_in_time import EventLog, evaluate_at
from streams.windows import Lifetime, Session, Sliding, Tumbling
from tests.helpers import write_schema
from tests.oracle import OEvent, close, value_at

AGGS = ["count", "sum", "mean", "min", "max", "last", "stddev", "count_distinct",
        "first", "last_k(3)", "first_k(2)", "top_k(2)", "approx_percentile(0.5)", "approx_percentile(0.9)"]
WINDOWS = [Tumbling(1000), Sliding(3000, 1000), Sliding(2000, 500), Session(700), Lifetime()]
EXACT = ("approx_percentile", "top_k")  # the same number on every path, not merely within 1e-9


@functools.cache
def make_view(ttl: int) -> FeatureView:
    schema = write_schema(Path(tempfile.mkdtemp(prefix="rillet-test-")))
    features = [Feature("x", agg, w) for agg in AGGS for w in WINDOWS]
    features += [Feature("tag", agg, w) for agg in ("count_distinct", "last", "min", "max") for w in WINDOWS[1:4:2]]
    features += [Feature("tag", agg, w) for agg in ("first", "last_k(2)", "top_k(2)") for w in WINDOWS[3:]]
    features += [Feature(None, "age", Lifetime()), Feature("x", "decayed_sum(1000)", Lifetime()),
                 Feature("x", "decayed_sum(300)", Lifetime())]
    return FeatureView("t", "t", schema, "entity", features, ttl=ttl, event_time="ts")


def log_table(events: list[OEvent], partitions: dict[str, int]) -> pa.Table:
    return pa.table({
        "entity": [e.entity for e in events],
        "event_timestamp": pa.array([e.t for e in events], pa.timestamp("ms", tz="UTC")),
        "partition": pa.array([partitions[e.entity] for e in events], pa.int32()),
        "offset": pa.array([e.offset for e in events], pa.int64()),
        "x": pa.array([e.values["x"] for e in events], pa.float64()),
        "tag": pa.array([e.values["tag"] for e in events], pa.string()),
    })


event_st = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.one_of(st.integers(0, 40).map(lambda k: k * 100), st.integers(0, 8000)),
    st.one_of(st.none(), st.integers(-50, 100).map(float), st.floats(-1e6, 1e6, allow_nan=False)),
    st.one_of(st.none(), st.sampled_from(["p", "q", "r", "s"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.lists(event_st, min_size=0, max_size=40),
    ttl=st.sampled_from([2500, 100_000]),
    probes=st.lists(st.integers(-500, 12_000), min_size=1, max_size=12),
    shuffle=st.randoms(use_true_random=False),
    duplicate=st.booleans(),
)
@example(raw=[("a", 0, 1e6, None), ("a", 1, -1e6, None), ("a", 2, 1e-3, None)], ttl=100_000, probes=[2],
         shuffle=None, duplicate=False)
def test_point_in_time_matches_oracle(raw, ttl, probes, shuffle, duplicate):
    view = make_view(ttl)
    engine = ViewEngine(view)
    partitions = {"a": 0, "b": 1, "c": 0}
    events = [OEvent(ent, t, {"x": x, "tag": tag}, i) for i, (ent, t, x, tag) in enumerate(raw)]
    rows = list(events)
    if shuffle is not None:
        shuffle.shuffle(rows)  # files come back in any order
    if duplicate and rows:
        rows.append(rows[0])  # a row on disk twice counts once
    log = EventLog.from_table(log_table(rows, partitions), ["x", "tag"])

    times = {p for p in probes} | {e.t + d for e in events for d in (-1, 0, 1, 700, 701)}
    times |= {((p // 500) * 500) + d for p in probes for d in (-1, 0)}
    queries = [(entity, t) for entity in ("a", "b", "c", "zz") for t in sorted(times)]
    codes = log.codes_of(pa.array([q[0] for q in queries]))
    order = np.lexsort((np.array([q[1] for q in queries]), codes))
    got = evaluate_at(engine, log, codes[order], np.array([q[1] for q in queries])[order])
    exact = {f.name for f in view.features if f.aggregation.startswith(EXACT)}
    for position, i in enumerate(order):
        entity, t = queries[i]
        want = value_at(view, events, entity, t)
        for name, expected in want.items():
            values, present = got[name]
            value = values[position] if present[position] else None
            value = value.item() if isinstance(value, np.generic) else value
            same = value == expected if name in exact else close(value, expected)
            assert same, (entity, t, name, value, expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 2), st.integers(0, 40)),
                max_size=300))
def test_the_log_order_is_entity_time_partition_offset_whatever_the_first_sort_leaves_among_ties(rows):
    """Few entities and times: most (entity, time) pairs are tied, and only the fix-up orders them."""
    from streams.kernel.point_in_time import _sort_log

    codes, times, partition, offset = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True)) \
        if rows else (np.zeros(0, dtype=np.int64),) * 4
    order, *in_order = _sort_log(codes, times, partition, offset)
    expected = np.lexsort((offset, partition, times, codes))
    keys = list(zip(codes[order], times[order], partition[order], offset[order], strict=True))
    assert keys == list(zip(codes[expected], times[expected], partition[expected], offset[expected], strict=True))
    assert list(zip(*in_order, strict=True)) == keys  # the sorted columns it returns are the rows of `order`
