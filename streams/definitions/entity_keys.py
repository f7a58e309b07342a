"""An entity's key text: one field's value, or a composite entity's fields as one string.

The key text names an entity everywhere rillet keeps or looks one up: the
Kafka record key, the Redis key, the offline log's `entity` column and the
engine's state maps. A single-field entity's key is the value as text
(`u42`, `42`). A composite entity (`entity=("user_id", "merchant")`) joins
its values, each as text, as a compact JSON array (`["u42","m7"]`): any
value round-trips, whatever characters it holds, and the same values always
give the same key, whichever path builds it (a producer, an online read, the
point-in-time join).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

__all__ = ["composite_key", "key_column", "key_of", "keys_of", "row_from_text", "split_key"]


def composite_key(values: Sequence[Any]) -> str:
    """The key text of a composite entity's values, in the view's field order."""
    return json.dumps([str(v) for v in values], ensure_ascii=False, separators=(",", ":"))


def split_key(fields: Sequence[str], key: str) -> dict[str, str]:
    """The field values a key text holds (as text), by field name: `composite_key`'s inverse."""
    if len(fields) == 1:
        return {fields[0]: key}
    return dict(zip(fields, json.loads(key), strict=True))


def key_of(fields: Sequence[str], row: Mapping[str, Any]) -> str:
    """The key text of the entity a record or an entity row names (every field present)."""
    return keys_of(fields, [[row[f]] for f in fields])[0]


def keys_of(fields: Sequence[str], columns: Sequence[Sequence[Any]]) -> list[str]:
    """The key text of each row, from the entity fields' values as columns (one per field, in `fields` order)."""
    if len(fields) == 1:
        return [str(value) for value in columns[0]]
    return [composite_key(parts) for parts in zip(*columns, strict=True)]


def key_column(fields: Sequence[str], table: pa.Table) -> pa.Array | pa.ChunkedArray:
    """The key text of each row of a table holding the entity's columns."""
    if len(fields) == 1:
        return table[fields[0]]
    columns = [table[f].cast(pa.string()).to_pylist() for f in fields]
    return pa.array([composite_key(parts) if None not in parts else None for parts in zip(*columns, strict=True)],
                    type=pa.string())


def row_from_text(fields: Sequence[str], text: str) -> dict[str, str]:
    """An entity row from what a person types: the value, or for a composite entity its values
    separated by commas (`u42,m7`) or as a JSON array (`["u42","m7"]`, for values holding commas).

    Raises:
        ValueError: the text holds a different number of values than the entity has fields.
    """
    if len(fields) == 1:
        return {fields[0]: text}
    if text.lstrip().startswith("["):
        try:
            parts = [str(p) for p in json.loads(text)]
        except (json.JSONDecodeError, TypeError):
            parts = []
    else:
        parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(fields):
        raise ValueError(f"entity {text!r}: give {len(fields)} values ({', '.join(fields)}) separated by commas, "
                         f"or as a JSON array")
    return dict(zip(fields, parts, strict=True))
