"""The expiry sweep reads a stored state's partition and latest event time from the head of its bytes."""

from __future__ import annotations

import pytest

from streams.definitions.view import Feature, FeatureView
from streams.errors import StateLayoutError
from streams.kernel.engine import EntityState, ViewEngine
from streams.windows import Session, Tumbling
from tests.helpers import write_schema


def test_position_of_reads_what_decode_reads(tmp_path) -> None:
    view = FeatureView("pos", "t", write_schema(tmp_path), "entity",
                       [Feature("x", "sum", Tumbling("5m")), Feature("x", "max", Session("10m"))], ttl="1h")
    engine = ViewEngine(view)
    blob = engine.encode(EntityState(1_767_225_600_123, 3, 41, [{5: [1.5, 2]}], [[[1, 2, [3.0]]]]))
    decoded = engine.decode(blob)
    assert engine.position_of(blob) == (decoded.partition, decoded.latest_ms) == (3, 1_767_225_600_123)
    other = ViewEngine(FeatureView("pos", "t", view.schema, "entity", [Feature("x", "min", Tumbling("5m"))],
                                   ttl="1h"))
    with pytest.raises(StateLayoutError):
        other.position_of(blob)
