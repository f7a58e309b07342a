"""The batch processor's dead-letter decisions: every record is aggregated or dead-lettered, with its reason."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import EventDecoder, EventEncoder
from streams.definitions.view import Feature, FeatureView, NotNull, Range
from streams.kernel.engine import ViewEngine
from streams.kernel.processor import SourceBatch, SourceRecord, ViewProcessor
from streams.kernel.watermark import Watermarks
from streams.windows import Tumbling
from tests.helpers import MemorySchemaStore, write_schema


def test_each_bad_record_gets_its_reason(tmp_path):
    view = FeatureView("v", "t", write_schema(tmp_path), "entity", [Feature("x", "sum", Tumbling("1m"))],
                       event_time="ts", grace="1m", checks={"x": Range(0, 100), "tag": NotNull()})
    store = MemorySchemaStore()
    encode = EventEncoder(view, store).encode
    good = {"entity": "a", "x": 1.0, "tag": "t", "ts": 600_000}
    values = [
        encode(good),                                                    # aggregated
        encode({**good, "tag": None}),                                   # null_value
        encode({**good, "x": float("nan")}),                             # out_of_range (NaN is outside)
        encode({**good, "x": 101.0}),                                    # out_of_range
        encode({**good, "entity": ""}),                                  # missing_entity
        encode({**good, "ts": 0}),                                       # late: 10 min behind, grace 1 min
        b"\x00" + struct.pack(">I", 99) + b"\x02",                       # unknown_schema
        b"\x05" + encode(good)[1:],                                      # bad_magic
        encode(good)[:7],                                                # truncated
        encode(good) + b"\x00\x01",                                      # undecodable (bytes left over)
    ]
    records = [SourceRecord("t", 0, i, None, b"a", v) for i, v in enumerate(values)]
    processor = ViewProcessor(ViewEngine(view), EventDecoder(view, store), Watermarks())
    result = processor.process(records, lambda entity: None, now_ms=0)
    reasons = [letter.reason for letter in result.dead_letters]
    assert reasons == ["null_value", "out_of_range", "out_of_range", "missing_entity", "late", "unknown_schema",
                       "bad_magic", "truncated", "undecodable"]
    assert result.counts["aggregated"] == 1
    assert result.counts["aggregated"] + len(result.dead_letters) == len(records)
    late = next(letter for letter in result.dead_letters if letter.reason == "late")
    headers = dict(late.headers())
    assert headers["rillet.event_time_ms"] == b"0" and headers["rillet.watermark_ms"] == b"600000"
    assert headers["rillet.source.offset"] == b"5"


def test_a_far_future_record_is_dead_lettered_and_moves_no_watermark(tmp_path):
    """One corrupt event time must not make every later valid event of its partition late."""
    view = FeatureView("v", "t", write_schema(tmp_path), "entity", [Feature("x", "count", Tumbling("1m"))],
                       event_time="ts", grace="1m", max_future="1h")
    store = MemorySchemaStore()
    encode = EventEncoder(view, store).encode
    hour, base = 3_600_000, 1_767_225_600_000

    def record(offset: int, ts: int, record_ms: int | None) -> SourceRecord:
        return SourceRecord("t", 0, offset, record_ms, b"a", encode({"entity": "a", "x": 1.0, "ts": ts}))

    records = [record(0, base, base),
               record(1, base + 10 * 24 * hour, base + 1),     # ten days ahead of its record: future
               record(2, base + 60_000, base + 60_000),        # valid, and not late
               record(3, base + 2 + hour, base + 2),           # exactly max_future ahead: counts
               record(4, base + 10 * 24 * hour, None)]         # no record time to judge by: counts
    engine = ViewEngine(view)
    processor = ViewProcessor(engine, EventDecoder(view, store), Watermarks())
    result = processor.process(records[:4], lambda entity: None, now_ms=0)
    assert [(d.reason, d.record.offset) for d in result.dead_letters] == [("future_event_time", 1)]
    assert "max_future 3600000 ms" in result.dead_letters[0].error
    assert result.counts["aggregated"] == 3 and result.counts["late"] == 0
    assert processor.watermarks.get(0) == base + 2 + hour
    later = processor.process(records[4:], lambda entity: engine.encode(result.states["a"][1]), now_ms=0)
    assert later.counts["aggregated"] == 1 and not later.dead_letters


def test_max_future_keeps_the_default_fingerprint(tmp_path):
    schema = write_schema(tmp_path)
    features = [Feature("x", "count", Tumbling("1m"))]
    plain = FeatureView("v", "t", schema, "entity", features, event_time="ts")
    assert FeatureView("v", "t", schema, "entity", features, event_time="ts", max_future="1d").fingerprint \
        == plain.fingerprint
    assert FeatureView("v", "t", schema, "entity", features, event_time="ts", max_future="1h").fingerprint \
        != plain.fingerprint


def test_a_hot_state_is_used_only_while_the_store_holds_the_bytes_it_was_written_as(tmp_path):
    """States kept decoded between batches give exactly what decoding the store gives: when the store's
    bytes change under the processor (a rebalance brought another worker's state, a restore), or a
    batch's states were never written, the stored bytes decide."""
    view = FeatureView("v", "t", write_schema(tmp_path), "entity",
                       [Feature("x", "sum", Tumbling("1m")), Feature("x", "count", Tumbling("5m"))], event_time="ts")
    store = MemorySchemaStore()
    encode = EventEncoder(view, store).encode
    base = 1_767_225_600_000

    def batch(first: int, n: int) -> list[SourceRecord]:
        events = [{"entity": "ab"[o % 2], "x": float(o), "ts": base + o * 1000} for o in range(first, first + n)]
        return [SourceRecord("t", 0, first + i, None, b"a", encode(e)) for i, e in enumerate(events)]

    runs = []
    for hot_states in (0, 100):
        processor = ViewProcessor(ViewEngine(view), EventDecoder(view, store), Watermarks(), hot_states=hot_states)
        stored: dict[str, bytes] = {}
        writes = []
        for first in range(0, 60, 10):
            result = processor.process(batch(first, 10), stored.get, now_ms=0)
            if first == 20:
                continue  # states never written: the store still holds the older bytes
            for write in processor.state_writes(result):
                stored[write.entity] = write.state
                writes.append((write.entity, write.state))
            if first == 30:
                stored["a"] = writes[0][1]  # another copy of a's state arrives in the store
        runs.append(writes)
        assert len(processor._hot) <= hot_states
    assert runs[0] == runs[1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 30)), max_size=40),
       st.dictionaries(st.integers(0, 2), st.integers(-1, 20), max_size=3))
def test_a_record_is_new_when_above_its_partitions_highest_offset_handled_before_it(tmp_path_factory, arrivals,
                                                                                    stored):
    """The columnar re-delivery rule agrees with taking the records one at a time, stored progress first."""
    view = FeatureView("v", "t", write_schema(tmp_path_factory.mktemp("s")), "entity",
                       [Feature("x", "sum", Tumbling("1m"))], event_time="ts")
    watermarks = Watermarks()
    for partition, offset in stored.items():
        watermarks.mark(partition, offset)
    processor = ViewProcessor(ViewEngine(view), EventDecoder(view, MemorySchemaStore()), watermarks)
    batch = SourceBatch.of([SourceRecord("t", p, o, None, None, b"") for p, o in arrivals])
    highest = {p: stored.get(p, -1) for p in range(3)}
    expected = []
    for partition, offset in arrivals:
        expected.append(offset > highest[partition])
        highest[partition] = max(highest[partition], offset)
    assert processor._not_handled(batch).tolist() == expected
    assert all(watermarks.last_offset(p) == highest[p] for p in range(3))


def test_a_source_batch_gives_back_each_record_and_holds_one_topic() -> None:
    records = [SourceRecord("t", 1, 7, 5, b"k", b"v", (("h", b"1"),)), SourceRecord("t", 0, 3, None, None, None)]
    batch = SourceBatch.of(records)
    assert [batch.record(i) for i in range(len(batch))] == records
    assert batch.take(np.array([1])).record(0) == records[1]
    with pytest.raises(ValueError, match="one topic"):
        SourceBatch.of([*records, SourceRecord("u", 0, 1, None, None, None)])
