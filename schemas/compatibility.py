"""Schema compatibility: may data written with one schema be read with another?

Two entry points: `check_pair(reader, writer)` and `check(new, previous, mode)`
with Confluent Schema Registry's modes. The rules are Apache Avro's
reader/writer resolution, as Confluent applies them; the checking itself is
Apache Avro's own `avro.compatibility` checker, wrapped to report each
problem at a path of field names (`/fields/amount/type`) in words a
producer-app developer can act on. Logical types do not matter; named types
match by unqualified name.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import avro.compatibility
import avro.errors
import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
)

from streams.errors import RilletError

__all__ = ["Incompatibility", "InvalidSchemaError", "Mode", "check", "check_pair"]


class InvalidSchemaError(RilletError, ValueError):
    """The text is not a valid Avro schema."""


class Mode(StrEnum):
    """Confluent Schema Registry compatibility modes."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason data written with the writer schema cannot be read with the reader schema."""

    path: str
    message: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


_NAMED = {"record", "enum", "fixed", "error"}


def _unqualify(node: Any) -> Any:
    """Split dotted names into name + namespace, so names compare unqualified (as Confluent does)."""
    if isinstance(node, list):
        return [_unqualify(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _unqualify(v) for k, v in node.items()}
    kind, name = out.get("type"), out.get("name")
    if isinstance(kind, str) and kind in _NAMED and isinstance(name, str) and "." in name:
        namespace, _, name = out["name"].rpartition(".")
        out["name"], out["namespace"] = name, namespace
    return out


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _load(schema: dict | str | list) -> tuple[Any, avro.schema.Schema]:
    try:
        if isinstance(schema, str):
            data = schema if schema in _PRIMITIVES else json.loads(schema)  # "long" as well as '"long"'
        else:
            data = copy.deepcopy(schema)
    except json.JSONDecodeError as exc:
        raise InvalidSchemaError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    data = _unqualify(data)
    try:
        return data, avro.schema.parse(json.dumps(data))
    except (avro.errors.SchemaParseException, avro.errors.AvroException, TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"not a valid Avro schema: {exc}") from None


def _named_path(location: str, reader: Any) -> str:
    """`/fields/1/type` -> `/fields/amount/type`, walking the reader schema's JSON."""
    parts = [p for p in location.split("/") if p]
    out, node = [], reader
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(node, str) or node is None:
            out.extend(parts[i:])
            break
        if part == "fields" and i + 1 < len(parts) and isinstance(node, dict) and parts[i + 1].isdigit():
            fields = node.get("fields", [])
            index = int(parts[i + 1])
            field = fields[index] if index < len(fields) else {"name": parts[i + 1]}
            out += ["fields", field["name"]]
            node = field
            i += 2
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part) if part in ("type", "items", "values") else node
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        i += 1
    return "/" + "/".join(out)


def _explain(rule: SchemaIncompatibilityType, raw: str) -> str:
    if rule is SchemaIncompatibilityType.reader_field_missing_default_value:
        return (f"field '{raw}' is read but has no default, so records written without it cannot be read; "
                "give it a default")
    if rule is SchemaIncompatibilityType.type_mismatch:
        text = raw.replace("reader type: ", "").replace(" not compatible with writer type: ", "|")
        reader_type, _, writer_type = text.partition("|")
        return (f"type changed: values written as {writer_type} cannot be read as {reader_type} "
                "(only int->long->float->double and string<->bytes promote)")
    if rule is SchemaIncompatibilityType.missing_enum_symbols:
        return (f"enum symbols {raw} can be written but the reader lacks them and has no enum default; "
                "keep the symbols or give the enum a default")
    if rule is SchemaIncompatibilityType.missing_union_branch:
        return f"{raw.replace('reader union lacking writer type', 'the reading union has no branch for')}"
    if rule is SchemaIncompatibilityType.fixed_size_mismatch:
        return f"fixed size changed ({raw}): fixed values cannot be resized"
    if rule is SchemaIncompatibilityType.name_mismatch:
        return f"named type renamed ({raw.replace('expected: ', 'written as ')}); add the old name as an alias"
    return raw


_recording = threading.Lock()


def _checked(reader: avro.schema.Schema, writer: avro.schema.Schema) -> tuple[Any, list[tuple]]:
    """Run Avro's checker, also recording each (rule, message, location) as it is created.

    Avro's result keeps messages and locations as separate sets, which loses
    which message belongs where once there are several; recording them at
    creation keeps each problem whole.
    """
    created: list[tuple] = []
    original = avro.compatibility.incompatible

    def recording(rule: Any, message: str, location: list[str]) -> Any:
        result = original(rule, message, location)
        created.append((rule, message, next(iter(result.locations))))
        return result

    with _recording:
        avro.compatibility.incompatible = recording
        try:
            result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
        finally:
            avro.compatibility.incompatible = original
    return result, created


def check_pair(reader: dict | str, writer: dict | str) -> list[Incompatibility]:
    """Empty when data written with `writer` can be read with `reader`.

    Raises:
        InvalidSchemaError: either schema is not valid Avro.
    """
    reader_json, reader_schema = _load(reader)
    _, writer_schema = _load(writer)
    result, created = _checked(reader_schema, writer_schema)
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    out, seen = [], set()
    for rule, raw, location in created:  # keep those in the verdict, not union branches merely tried
        if rule in result.incompatibilities and raw in result.messages and location in result.locations:
            problem = Incompatibility(_named_path(location, reader_json), _explain(rule, raw), rule.value)
            if problem not in seen:
                seen.add(problem)
                out.append(problem)
    return out


def check(new: dict | str, previous: list[dict | str], mode: Mode | str = Mode.BACKWARD) -> list[Incompatibility]:
    """Problems of `new` against `previous` (oldest first) under a Confluent compatibility mode.

    Non-transitive modes compare with the latest version only; an empty history is compatible.
    """
    mode = Mode(mode.upper() if isinstance(mode, str) else mode)
    if mode is Mode.NONE or not previous:
        return []
    transitive = mode.value.endswith("_TRANSITIVE")
    against = list(enumerate(previous, 1)) if transitive else [(len(previous), previous[-1])]
    base = mode.value.removesuffix("_TRANSITIVE")
    problems: list[Incompatibility] = []
    for version, old in against:
        if base in ("BACKWARD", "FULL"):
            problems += [Incompatibility(p.path, f"the new schema cannot read data written with version "
                                         f"{version}: {p.message}", p.rule) for p in check_pair(new, old)]
        if base in ("FORWARD", "FULL"):
            problems += [Incompatibility(p.path, f"version {version} cannot read data written with the new "
                                         f"schema: {p.message}", p.rule) for p in check_pair(old, new)]
    return problems
