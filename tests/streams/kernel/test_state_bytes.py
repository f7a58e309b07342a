"""A state packed again after a batch is, byte for byte, the state packed whole.

The engine keeps each pane's bytes from a state's last packing and packs only
the panes a batch changed (streams.kernel.state_bytes). The worker stores and
compares these bytes (hot states, the changelog, replays that must write what
the live worker wrote), so reusing a pane's bytes must never show: after every
batch, of random histories over every aggregation and window kind, each state
written is compared with `msgpack.packb` over the whole decoded-in-memory state.
"""

from __future__ import annotations

import itertools

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import EventDecoder, EventEncoder
from streams.kernel.engine import ViewEngine
from streams.kernel.processor import SourceRecord, ViewProcessor
from streams.kernel.watermark import Watermarks
from tests.helpers import MemorySchemaStore
from tests.streams.kernel.test_engine_oracle import event_st, make_view


def _whole(engine: ViewEngine, state) -> bytes:
    return msgpack.packb([1, engine.layout_id, state.latest_ms, state.partition, state.offset, state.grids,
                          state.sessions], use_bin_type=True)


# mostly in time order, a few events a batch: the same panes are touched again batch after batch
step_st = st.tuples(st.sampled_from(["a", "b"]), st.integers(-300, 700),
                    st.one_of(st.none(), st.floats(0, 1000, allow_nan=False)),
                    st.one_of(st.none(), st.sampled_from("pqr")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step_st, min_size=1, max_size=80), grace=st.sampled_from([0, 1500, 10_000]),
       sizes=st.lists(st.integers(1, 6), min_size=1, max_size=30), shuffled=st.lists(event_st, max_size=20))
def test_each_written_state_is_the_whole_state_packed(steps, grace, sizes, shuffled):
    view = make_view(grace, 100_000)
    store = MemorySchemaStore()
    encoder, engine = EventEncoder(view, store), ViewEngine(view)
    t, raw = 0, []
    for ent, dt, x, tag in steps:
        t = max(0, t + dt)
        raw.append((ent, t, x, tag))
    raw += shuffled  # and some out of order (late ones are dropped)
    records = [SourceRecord("t", i % 2, i, None, ent.encode(),
                            encoder.encode({"entity": ent, "x": x, "tag": tag, "ts": t}))
               for i, (ent, t, x, tag) in enumerate(raw)]
    processor = ViewProcessor(engine, EventDecoder(view, store), Watermarks())
    stored: dict[str, bytes] = {}
    bounds = [0]
    for size in itertools.cycle(sizes):
        if bounds[-1] >= len(records):
            break
        bounds.append(min(bounds[-1] + size, len(records)))
    for lo, hi in itertools.pairwise(bounds):
        result = processor.process(records[lo:hi], stored.get, now_ms=0)
        for write in processor.state_writes(result):
            state = result.states[write.entity][1]
            assert write.state == _whole(engine, state), write.entity
            assert engine.decode(write.state) == state
            stored[write.entity] = write.state
