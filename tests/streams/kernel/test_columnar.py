"""The columnar kernel: a batch of many events leaves the same states as the same events one at a time.

`apply_batch` groups a batch by (entity, pane) and (entity, session run) and
reduces each group with the aggregations' vectorized `group_partials`. Feeding
every record as its own batch is the event-at-a-time engine (each group holds
one event and `group_partials` is one `add`); random batch cuts of the same
history must leave equal states, pane by pane and session by session, and
equal values. The oracle test (test_engine_oracle) holds both to semantics.md.
"""

from __future__ import annotations

import itertools
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import EventDecoder, EventEncoder
from streams.kernel.engine import ViewEngine
from streams.kernel.processor import SourceRecord, ViewProcessor
from streams.kernel.watermark import Watermarks
from tests.helpers import MemorySchemaStore
from tests.streams.kernel.test_engine_oracle import event_st, make_view


def same(a, b) -> bool:
    """Equal states: floats within the contract's tolerance (sums may round differently), all else exact."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(
            a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def run(view, records, bounds):
    store = MemorySchemaStore()
    EventEncoder(view, store)
    engine = ViewEngine(view)
    processor = ViewProcessor(engine, EventDecoder(view, store), Watermarks())
    stored: dict[str, bytes] = {}
    counts = []
    for lo, hi in itertools.pairwise(bounds):
        result = processor.process(records[lo:hi], stored.get, now_ms=0)
        counts.append(result.counts)
        for write in processor.state_writes(result):
            stored[write.entity] = write.state
    total = sum(counts, start=counts[0].__class__())
    return engine, {e: engine.decode(b) for e, b in stored.items()}, total, processor.watermarks.items()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.lists(event_st, min_size=1, max_size=60),
    grace=st.sampled_from([0, 300, 1500, 10_000]),
    cuts=st.lists(st.integers(1, 60), max_size=3),
    redelivered=st.integers(0, 10),
)
def test_a_batch_of_many_equals_batches_of_one(raw, grace, cuts, redelivered):
    """Including re-delivered records (a restart mid-stream) and events on two partitions."""
    view = make_view(grace, 100_000)
    store = MemorySchemaStore()
    encoder = EventEncoder(view, store)
    partitions = {"a": 0, "b": 1, "c": 0}
    records = [
        SourceRecord("t", partitions[ent], i, None, ent.encode(),
                     encoder.encode({"entity": ent, "x": x, "tag": tag, "ts": t}))
        for i, (ent, t, x, tag) in enumerate(raw)
    ]
    records += records[:redelivered]  # delivered again after the rest: each must count once
    one_at_a_time = run(view, records, range(len(records) + 1))
    cut = sorted({0, len(records), *[c for c in cuts if c < len(records)]})
    batched = run(view, records, cut)

    engine, want, want_counts, want_progress = one_at_a_time
    _, got, got_counts, got_progress = batched
    assert got_counts == want_counts
    assert got_progress == want_progress
    assert got.keys() == want.keys()
    for entity in want:
        a, b = got[entity], want[entity]
        assert (a.latest_ms, a.partition, a.offset) == (b.latest_ms, b.partition, b.offset)
        assert same(a.grids, b.grids), entity
        assert same(a.sessions, b.sessions), entity
        for t in (b.latest_ms, b.latest_ms + 999, b.latest_ms + 5000):
            assert same(engine.as_of(a, t), engine.as_of(b, t))

