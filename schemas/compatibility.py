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

from streams.errors import InvalidSchemaError

__all__ = ["Incompatibility", "InvalidSchemaError", "Mode", "check", "check_pair"]


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
        data = _unqualify(data)
        parsed = avro.schema.parse(json.dumps(data))
    except json.JSONDecodeError as exc:
        raise InvalidSchemaError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidSchemaError("nested too deeply to check") from None
    except (avro.errors.SchemaParseException, avro.errors.AvroException, TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"not a valid Avro schema: {exc}") from None
    problem = _bad_default(data, {}, "")
    if problem:
        raise InvalidSchemaError(f"not a valid Avro schema: {problem}")
    return data, parsed


_DEFAULT_CHECKS: dict[str, Any] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**31 <= v < 2**31,
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63,
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "double": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bytes": lambda v: isinstance(v, str),
    "string": lambda v: isinstance(v, str),
}


def _bad_default(schema: Any, named: dict[str, Any], path: str) -> str | None:
    """The first field default that does not match its type (a union's default matches its first branch),
    as Avro's own parser and Confluent refuse them; None when every default fits."""
    if isinstance(schema, list):
        return next((p for branch in schema if (p := _bad_default(branch, named, path))), None)
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind in ("record", "error", "enum", "fixed") and isinstance(schema.get("name"), str):
        named[schema["name"]] = schema
    if kind in ("record", "error"):
        for field in schema.get("fields", []):
            where = f"{path}/fields/{field.get('name')}"
            found = _bad_default(field.get("type"), named, where)
            if found:
                return found
            if "default" in field and not _default_fits(field["default"], field.get("type"), named):
                return f"{where}/default: {json.dumps(field['default'])} is not a {_type_name(field.get('type'))}"
        return None
    if kind == "array":
        return _bad_default(schema.get("items"), named, f"{path}/items")
    if kind == "map":
        return _bad_default(schema.get("values"), named, f"{path}/values")
    return None


def _default_fits(value: Any, schema: Any, named: dict[str, Any]) -> bool:
    if isinstance(schema, list):
        return bool(schema) and _default_fits(value, schema[0], named)
    if isinstance(schema, str):
        if schema in _DEFAULT_CHECKS:
            return _DEFAULT_CHECKS[schema](value)
        return schema not in named or _default_fits(value, named[schema], named)
    if not isinstance(schema, dict):
        return True
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _DEFAULT_CHECKS:  # a logical type too: the underlying type's rule
        return _DEFAULT_CHECKS[kind](value)
    if kind == "enum":
        return value in schema.get("symbols", [])
    if kind == "fixed":
        return isinstance(value, str) and len(value) == schema.get("size")
    if kind == "array":
        return isinstance(value, list) and all(_default_fits(v, schema.get("items"), named) for v in value)
    if kind == "map":
        return isinstance(value, dict) and all(_default_fits(v, schema.get("values"), named) for v in value.values())
    if kind in ("record", "error"):
        return isinstance(value, dict) and all(
            _default_fits(value[f["name"]], f.get("type"), named) if f.get("name") in value else "default" in f
            for f in schema.get("fields", []))
    return True


def _type_name(schema: Any) -> str:
    if isinstance(schema, list):
        return f"{_type_name(schema[0])} (a union's default is of its first type)" if schema else "union"
    if isinstance(schema, dict):
        return str(schema.get("type"))
    return str(schema)


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
