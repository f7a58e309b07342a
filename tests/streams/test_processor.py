"""The batch processor's dead-letter decisions: every record is aggregated or dead-lettered, with its reason."""

from __future__ import annotations

import struct

from schemas.codec import EventDecoder, EventEncoder
from streams.definitions import Feature, FeatureView, NotNull, Range
from streams.engine import ViewEngine
from streams.processor import SourceRecord, ViewProcessor
from streams.watermark import Watermarks
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
