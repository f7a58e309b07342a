"""Avro in Confluent's wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

Encoding validates first, so a producer learns which field is wrong before
anything is sent. Decoding resolves the writer's schema (by id) against the
view's reader schema, so a producer may move to a compatible new version
without a worker restart.
"""

from __future__ import annotations

import io
import json
import struct
from datetime import datetime
from typing import Any

import fastavro
import numpy as np
from fastavro.validation import validate

from schemas.columnar import BlockDecoder
from schemas.store import SchemaStore, UnknownSchemaError, subject_for
from streams.definitions.entity_keys import keys_of
from streams.definitions.view import FeatureView
from streams.errors import EventDecodeError, InvalidEventError
from streams.kernel.engine import Event
from streams.kernel.records import DecodedEvents
from streams.timeutil import datetime_to_ms

__all__ = ["CONFLUENT_HEADER", "EventDecoder", "EventEncoder", "InvalidEventError"]

#: Confluent's wire format: a zero magic byte and the schema id (big-endian), then the Avro body
CONFLUENT_HEADER = struct.Struct(">bI")


class EventEncoder:
    """Turns event dicts into Confluent wire-format bytes for one view's topic."""

    def __init__(self, view: FeatureView, store: SchemaStore) -> None:
        self.view = view
        self._schema = fastavro.parse_schema(view.schema_json)
        self.schema_id = store.register(subject_for(view.topic), view.schema_json)
        self._header = CONFLUENT_HEADER.pack(0, self.schema_id)

    def encode(self, record: dict[str, Any]) -> bytes:
        """Validate and encode one event.

        Raises:
            InvalidEventError: naming the field and the problem.
        """
        try:
            validate(record, self._schema, raise_errors=True)
        except fastavro.validation.ValidationError as exc:
            problems = "; ".join(_describe(e) for e in exc.errors)
            raise InvalidEventError(f"{self.view.name} event does not match its schema: {problems}") from None
        out = io.BytesIO()
        out.write(self._header)
        fastavro.schemaless_writer(out, self._schema, record)
        return out.getvalue()

    def key(self, record: dict[str, Any]) -> bytes:
        return self.view.entity_key(record).encode()


def _describe(error: Any) -> str:
    text = str(error)
    # fastavro reports "<field path> is <value> of type <type> expected <schema>"
    return text.replace("\n", " ")


def _millis_as_longs(schema: Any) -> Any:
    """The schema with `timestamp-millis` read as the long it is on the wire: rillet wants epoch
    milliseconds, and a datetime made by fastavro and turned back cost 6 of a record's 14 us."""
    if isinstance(schema, dict):
        return {k: _millis_as_longs(v) for k, v in schema.items()
                if not (k == "logicalType" and v == "timestamp-millis")}
    if isinstance(schema, list):
        return [_millis_as_longs(v) for v in schema]
    return schema


class EventDecoder:
    """Turns wire-format bytes into validated events for one view; failures name a DLQ reason.

    A batch (`decode_batch`) decodes the records of each writer schema as one Avro block into columns
    (`schemas.columnar`), and checks them column by column; a record alone (`decode`) goes through the same
    checks as a batch of one. Records a block cannot decode exactly, and those written with another
    schema than the view's own (resolved by fastavro), decode one at a time.
    """

    def __init__(self, view: FeatureView, store: SchemaStore) -> None:
        self.view = view
        self._store = store
        self._reader = fastavro.parse_schema(_millis_as_longs(view.schema_json))
        self._reader_text = json.dumps(view.schema_json, sort_keys=True)
        self._writers: dict[int, tuple[Any, Any, BlockDecoder | None]] = {}  # id -> (writer, reader or None, block)
        self._fields = list(dict.fromkeys(f.field for f in view.features if f.field is not None))
        self._read = list(dict.fromkeys((*view.entity_fields, *([view.event_time] if view.event_time else []),
                                         *view.checks, *self._fields)))  # every field a check or a feature reads

    def _writer(self, schema_id: int) -> tuple[Any, Any, BlockDecoder | None]:
        """The writer schema of an id, compiled once, the reader schema to resolve it to, and its block decoder.

        The reader is None when the producer wrote with the view's own schema: resolution then does
        nothing, and skipping it decodes in 3.1 instead of 5.0 us a record; only such records decode as
        blocks (a block decoder reads the writer's columns and does not resolve).
        """
        found = self._writers.get(schema_id)
        if found is None:
            try:
                raw = self._store.schema_by_id(schema_id)
            except UnknownSchemaError as exc:
                raise EventDecodeError("unknown_schema", str(exc)) from None
            same = json.dumps(raw, sort_keys=True) == self._reader_text
            plain = _millis_as_longs(raw)
            found = self._writers[schema_id] = (
                fastavro.parse_schema(plain), None if same else self._reader, BlockDecoder(plain) if same else None)
        return found

    def decode(self, raw: bytes | None, timestamp_ms: int | None, partition: int, offset: int) -> Event:
        """One record's bytes to an `Event`.

        Raises:
            EventDecodeError: with the reason the dead-letter topic records.
        """
        return self.to_event(self._record(raw), timestamp_ms, partition, offset)

    def _record(self, raw: bytes | None) -> dict:
        """One record's bytes to the dict fastavro decodes (resolved to the view's schema)."""
        if raw is None or len(raw) < 5:
            size = 0 if raw is None else len(raw)
            raise EventDecodeError("truncated", f"{size} bytes is shorter than the 5-byte header")
        magic, schema_id = CONFLUENT_HEADER.unpack_from(raw)
        if magic != 0:
            raise EventDecodeError("bad_magic", f"magic byte is {magic}, expected 0 (Confluent wire format)")
        writer, reader, _ = self._writer(schema_id)
        body = io.BytesIO(raw)
        body.seek(5)
        try:
            record = fastavro.schemaless_reader(body, writer, reader)
        except EOFError:
            raise EventDecodeError("truncated", "the Avro body ends early") from None
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise EventDecodeError("undecodable", f"{type(exc).__name__}: {exc}") from None
        if body.tell() != len(raw):
            raise EventDecodeError("undecodable", f"{len(raw) - body.tell()} bytes left after the Avro body")
        return record

    def to_event(self, record: dict, timestamp_ms: int | None, partition: int, offset: int) -> Event:
        """Check a decoded record against the view's needs and data-contract rules (`decode_batch`'s checks).

        Raises:
            EventDecodeError: with the reason the dead-letter topic records.
        """
        decoded = self._checked([0], {name: [record.get(name)] for name in self._read}, [timestamp_ms], [])
        if decoded.failures:
            raise decoded.failures[0][1]
        values = {name: column[0] for name, column in decoded.fields.items()}
        return Event(decoded.entities[0], int(decoded.event_ms[0]), values, partition, offset)

    def decode_batch(self, values: list[bytes | None], timestamps: list[int | None]) -> DecodedEvents:
        """Records' bytes to the events they hold, as columns, and a reason for each record that holds none."""
        by_schema: dict[int, list[int]] = {}
        alone: list[int] = []
        for i, raw in enumerate(values):
            if raw is not None and len(raw) >= 5 and raw[0] == 0:
                by_schema.setdefault(int.from_bytes(raw[1:5], "big"), []).append(i)
            else:
                alone.append(i)
        parts: list[tuple[list[int], dict[str, list]]] = []
        for schema_id, indices in by_schema.items():
            try:
                block = self._writer(schema_id)[2]
            except EventDecodeError:
                block = None
            columns = None if block is None else block.decode([values[i][5:] for i in indices], self._read)
            if columns is None:
                alone.extend(indices)
            else:
                parts.append((indices, columns))
        failures: list[tuple[int, EventDecodeError]] = []
        if alone:
            alone.sort()
            decoded, records = [], []
            for i in alone:
                try:
                    records.append(self._record(values[i]))
                    decoded.append(i)
                except EventDecodeError as exc:
                    failures.append((i, exc))
            parts.append((decoded, {name: [r.get(name) for r in records] for name in self._read}))
        indices, columns = _concatenated(parts, self._read)
        return self._checked(indices, columns, [timestamps[i] for i in indices], failures)

    def _checked(self, indices: list[int], columns: dict[str, list], timestamps: list[int | None],
                 failures: list[tuple[int, EventDecodeError]]) -> DecodedEvents:
        """The decoded records that are events of this view: an entity, an event time, and every
        data-contract rule kept; each other record fails with the first of these it breaks."""
        view, failed = self.view, {}
        for name in view.entity_fields:
            for row, value in enumerate(columns[name]):
                if (value is None or value == "") and row not in failed:
                    failed[row] = EventDecodeError("missing_entity", f"field {name!r} is missing or null")
        event_ms = timestamps if view.event_time is None else [
            datetime_to_ms(v) if isinstance(v, datetime) else v for v in columns[view.event_time]]
        for row, ms in enumerate(event_ms):
            if (ms is None or ms < 0) and row not in failed:
                failed[row] = EventDecodeError(
                    "missing_event_time", f"field {view.event_time or 'record timestamp'!r} is missing or null")
        for name, rule in view.checks.items():
            for row, value in enumerate(columns[name]):
                if row not in failed:
                    problem = rule.violation(value)
                    if problem:
                        failed[row] = EventDecodeError(rule.reason, f"field {name!r}: {problem}")
        keep = [row for row in range(len(indices)) if row not in failed] if failed else range(len(indices))
        failures = sorted([*failures, *((indices[row], error) for row, error in failed.items())], key=lambda f: f[0])
        entities = keys_of(view.entity_fields, [[columns[name][row] for row in keep] for name in view.entity_fields])
        return DecodedEvents(
            [indices[row] for row in keep], entities,
            np.fromiter((int(event_ms[row]) for row in keep), np.int64, len(keep)),
            {name: [columns[name][row] for row in keep] for name in self._fields}, failures)


def _concatenated(parts: list[tuple[list[int], dict[str, list]]], names: list[str]) -> tuple[list[int], dict]:
    """Parts of a batch (record indices and their columns) as one, in record order."""
    if len(parts) == 1:
        return parts[0]
    indices = [i for part, _ in parts for i in part]
    order = sorted(range(len(indices)), key=indices.__getitem__)
    merged = {name: [v for _, columns in parts for v in columns[name]] for name in names}
    return [indices[k] for k in order], {name: [column[k] for k in order] for name, column in merged.items()}
