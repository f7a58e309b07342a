"""The engine (through the batch processor) against the brute-force oracle, on random histories.

Random events for a few entities, delivered out of order (some beyond grace,
which must be dropped as late), processed in random batch splits with the
state encoded and decoded between batches as the worker does, then every
feature is compared with the oracle at times on and around window edges.
"""

from __future__ import annotations

import functools
import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.codec import EventDecoder, EventEncoder
from streams.definitions.view import Feature, FeatureView
from streams.kernel.engine import ViewEngine
from streams.kernel.processor import SourceRecord, ViewProcessor
from streams.kernel.watermark import Watermarks
from streams.windows import Lifetime, Session, Sliding, Tumbling
from tests.helpers import MemorySchemaStore, write_schema
from tests.oracle import OEvent, close, late_mask, value_at

AGGS = ["count", "sum", "mean", "min", "max", "last", "stddev", "count_distinct",
        "first", "last_k(3)", "first_k(2)", "top_k(2)", "approx_percentile(0.5)", "approx_percentile(0.9)"]
WINDOWS = [Tumbling(1000), Sliding(3000, 1000), Sliding(2000, 500), Session(700), Lifetime()]
EXACT = ("approx_percentile", "top_k")  # the same number on every path, not merely within 1e-9


@functools.cache
def make_view(grace: int, ttl: int) -> FeatureView:
    schema = write_schema(Path(tempfile.mkdtemp(prefix="rillet-test-")))
    features = [Feature("x", agg, w) for agg in AGGS for w in WINDOWS]
    features += [Feature("tag", "count_distinct", WINDOWS[1]), Feature("tag", "last", WINDOWS[3])]
    features += [Feature("tag", agg, w) for agg in ("first", "last_k(2)", "top_k(2)") for w in WINDOWS[3:]]
    features += [Feature(None, "age", Lifetime()), Feature("x", "decayed_sum(1000)", Lifetime()),
                 Feature("x", "decayed_sum(300)", Lifetime())]
    return FeatureView("t", "t", schema, "entity", features, ttl=ttl, grace=grace, event_time="ts")


event_st = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    # a coarse grid makes exact window edges and exact session gaps common
    st.one_of(st.integers(0, 40).map(lambda k: k * 100), st.integers(0, 8000)),
    st.one_of(st.none(), st.integers(-50, 100).map(float), st.floats(0, 1000, allow_nan=False)),
    st.one_of(st.none(), st.sampled_from(["p", "q", "r", "s"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.lists(event_st, min_size=1, max_size=40),
    grace=st.sampled_from([0, 300, 1500, 10_000]),
    ttl=st.sampled_from([2500, 100_000]),
    cuts=st.lists(st.integers(1, 40), max_size=4),
    probes=st.lists(st.integers(0, 4000), min_size=1, max_size=6),
    sweep=st.booleans(),
)
# Expiry at its bound: `a` is swept when c moves the watermark to 1600, and its next
# event at 1600 must still see the one at 0 inside the 3 s sliding window.
@example(raw=[("a", 0, 1.0, None), ("c", 1600, 1.0, None), ("a", 1600, 1.0, None)], grace=0, ttl=100_000,
         cuts=[], probes=[0], sweep=True)
@example(raw=[("a", 0, 1.0, None), ("c", 3001, 1.0, None), ("a", 3001, 1.0, None)], grace=0, ttl=100_000,
         cuts=[], probes=[0], sweep=True)
def test_engine_matches_oracle(raw, grace, ttl, cuts, probes, sweep):
    """With `sweep`, states the engine calls droppable are deleted between batches, as the worker does."""
    view = make_view(grace, ttl)
    store = MemorySchemaStore()
    encoder, engine = EventEncoder(view, store), ViewEngine(view)
    partitions = {"a": 0, "b": 1, "c": 0}
    arrivals = [OEvent(ent, t, {"x": x, "tag": tag}, i) for i, (ent, t, x, tag) in enumerate(raw)]
    late = late_mask(arrivals, grace, lambda e: partitions[e.entity])
    kept = [e for e, is_late in zip(arrivals, late, strict=True) if not is_late]

    records = [
        SourceRecord("t", partitions[e.entity], e.offset, None, e.entity.encode(),
                     encoder.encode({"entity": e.entity, "x": e.values["x"], "tag": e.values["tag"], "ts": e.t}))
        for e in arrivals
    ]
    processor = ViewProcessor(engine, EventDecoder(view, store), Watermarks())
    stored: dict[str, bytes] = {}
    # a sweep runs between batches: with `sweep`, every record is its own batch
    cut_points = {0, len(records), *[c for c in cuts if c < len(records)]}
    bounds = list(range(len(records) + 1)) if sweep else sorted(cut_points)
    dropped = 0
    for lo, hi in itertools.pairwise(bounds):
        result = processor.process(records[lo:hi], stored.get, now_ms=0)
        dropped += result.counts["late"]
        for w in processor.state_writes(result):
            stored[w.entity] = w.state
        if sweep:
            for entity in list(stored):
                state = engine.decode(stored[entity])
                if engine.droppable(state.latest_ms, processor.watermarks.get(partitions[entity])):
                    del stored[entity]
    assert dropped == sum(late)

    exact = {f.name for f in view.features if f.aggregation.startswith(EXACT)}
    for entity in {e.entity for e in kept}:
        if entity not in stored:
            assert sweep  # only a sweep removes state; reads then come from the online store
            continue
        state = engine.decode(stored[entity])
        latest = max(e.t for e in kept if e.entity == entity)
        assert state.latest_ms == latest
        times = {latest, latest + ttl, latest + ttl + 1, latest + 700, latest + 701}
        times |= {latest + p for p in probes}
        times |= {((latest + p) // 500) * 500 + d for p in probes for d in (-1, 0, 1)}
        for t in sorted(x for x in times if x >= latest):
            got = engine.as_of(state, t)
            want = value_at(view, kept, entity, t)
            for name, expected in want.items():
                same = got[name] == expected if name in exact else close(got[name], expected)
                assert same, (entity, t, name, got[name], expected)
