"""A batch decoded as Avro blocks gives exactly what decoding its records one at a time gives: the same
events with the same values, and the same dead-letter reason for each bad record, whatever the mix."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import EventDecoder, EventEncoder
from streams.cli.demo import synthetic_payments
from streams.definitions.view import Feature, FeatureView, Range, Tumbling
from streams.errors import EventDecodeError
from tests.integration.test_fuzz import mutate

SCHEMA = {"type": "record", "name": "Payment", "namespace": "t", "fields": [
    {"name": "user_id", "type": "string"},
    {"name": "amount", "type": ["null", "double"], "default": None},
    {"name": "merchant", "type": "string"},
    {"name": "flagged", "type": "boolean", "default": False},
    {"name": "count", "type": ["int", "null"], "default": 0},
    {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
]}
EVOLVED = {**SCHEMA, "fields": [*SCHEMA["fields"][:3], *SCHEMA["fields"][4:]]}  # a writer without `flagged`


class Ids:
    def __init__(self) -> None:
        self.schemas: dict[int, dict] = {}

    def register(self, subject: str, schema: dict) -> int:
        for known, text in self.schemas.items():
            if text == schema:
                return known
        self.schemas[len(self.schemas) + 1] = schema
        return len(self.schemas)

    def schema_by_id(self, schema_id: int) -> dict:
        from schemas.store import UnknownSchemaError

        if schema_id not in self.schemas:
            raise UnknownSchemaError(f"schema id {schema_id} is not registered")
        return self.schemas[schema_id]


def view_with(schema: dict) -> FeatureView:
    folder = Path(tempfile.mkdtemp(prefix="block-decode-"))
    path = folder / "schema.avsc"
    path.write_text(json.dumps(schema))
    return FeatureView(name="pay", topic="pay", schema=str(path), entity="user_id", event_time="event_time",
                       ttl="1d", checks={"amount": Range(0, 100)},
                       features=[Feature("amount", "sum", Tumbling("5m")), Feature("count", "sum", Tumbling("5m")),
                                 Feature("flagged", "last", Tumbling("5m"))])


def one_at_a_time(decoder: EventDecoder, values: list, stamps: list) -> list:
    out = []
    for value, stamp in zip(values, stamps, strict=True):
        try:
            event = decoder.decode(value, stamp, 0, 0)
            out.append(("event", event.entity, event.event_ms, event.values))
        except EventDecodeError as exc:
            out.append(("failure", exc.reason, exc.message))
    return out


def batched(decoder: EventDecoder, values: list, stamps: list) -> list:
    decoded = decoder.decode_batch(values, stamps)
    out: list = [None] * len(values)
    for k, i in enumerate(decoded.positions):
        out[i] = ("event", decoded.entities[k], int(decoded.event_ms[k]),
                  {name: column[k] for name, column in decoded.fields.items()})
    for i, error in decoded.failures:
        assert out[i] is None, "a record both decoded and failed"
        out[i] = ("failure", error.reason, error.message)
    return out


def encoded_records(seed: int, n: int) -> tuple[EventDecoder, list[bytes]]:
    ids = Ids()
    view, evolved = view_with(SCHEMA), view_with(EVOLVED)
    rng = random.Random(seed)
    encoders = [EventEncoder(view, ids), EventEncoder(evolved, ids)]
    values = []
    for e in synthetic_payments(users=20, events=n, start_ms=1_767_225_600_000, end_ms=1_767_229_200_000, seed=seed):
        e = {**e, "flagged": rng.random() < 0.3, "count": rng.choice([None, 0, 1, -5, 2**31 - 1, -(2**31)])}
        if rng.random() < 0.1:
            e["amount"] = rng.choice([None, 150.0, -1.0, float("nan")])
        if rng.random() < 0.05:
            e["user_id"] = ""
        encoder = encoders[1] if rng.random() < 0.15 else encoders[0]
        values.append(encoder.encode({k: v for k, v in e.items() if k != "flagged" or encoder is encoders[0]}))
    return EventDecoder(view, ids), values


def equal(a: list, b: list) -> bool:
    """Equal, with NaN equal to itself (a NaN amount fails its range check, but compare values anyway)."""
    return repr(a) == repr(b)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), corrupt=st.floats(0, 0.3))
def test_block_decoding_equals_decoding_one_record_at_a_time(seed: int, corrupt: float) -> None:
    decoder, values = encoded_records(seed, 300)
    rng = random.Random(seed)
    values = [mutate(rng, v) if rng.random() < corrupt else v for v in values]
    values[rng.randrange(len(values))] = None  # a tombstone
    stamps = [None if rng.random() < 0.1 else 1_767_225_600_000 + i for i in range(len(values))]
    assert equal(batched(decoder, values, stamps), one_at_a_time(decoder, values, stamps))


def test_a_clean_batch_decodes_as_a_block() -> None:
    """The fast path is taken (not only the fallback): a clean batch with the view's schema decodes
    without reading any record alone."""
    decoder, values = encoded_records(7, 500)
    own = [v for v in values if v[1:5] == (1).to_bytes(4, "big")]
    calls = []
    decoder._record = lambda raw: calls.append(raw)  # type: ignore[method-assign]
    decoded = decoder.decode_batch(own, [None] * len(own))
    assert calls == [] and len(decoded) + len(decoded.failures) == len(own) and len(decoded) > len(own) // 2
