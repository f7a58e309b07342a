"""The point-in-time join's evaluation of entity rows against an event log, free of any engine that
distributes it: the in-process join (sinks.offline.join) and each Dask task (sinks.offline.dask_join)
run the same functions, so their results are the same bits.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import pyarrow as pa

from sinks.offline.store import TIMESTAMP_TYPE, field_type, source_fields
from streams.aggregations.catalog import get_aggregation
from streams.definitions.view import FeatureView
from streams.kernel.engine import ViewEngine
from streams.kernel.point_in_time import EventLog, PointInTimeValues, evaluate_at

__all__ = ["empty_log", "evaluate_rows", "output_column", "value_type"]



def evaluate_rows(view: FeatureView, log: EventLog, entities: pa.Array | pa.ChunkedArray, t_ms: np.ndarray,
                  names: list[str], *, chunk_rows: int = 250_000, threads: int = 1,
                  on_chunk: Callable[[int], None] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each feature's (values, present) at each row's time, in the rows' order, from `log`.

    `log` must hold every event of the rows' entities (it may hold others): the whole
    view's log in process, or one partition's share of it on a Dask worker. Free of
    any distribution engine, so any of them can run it per partition. The rows are
    evaluated in chunks (each row's value depends on its own ranges of the log only, so
    chunking changes no bit); with `threads` > 1 the chunks run at once in as many of this
    process's threads, reading the one log: NumPy's sorts, searches and reductions release
    the GIL, so the cores share the work.
    """
    engine = ViewEngine(view)
    codes = log.codes_of(entities)
    order = np.lexsort((t_ms, codes))
    size = max(1, min(chunk_rows, -(-len(order) // max(threads, 1))))
    chunks = [order[lo:lo + size] for lo in range(0, len(order), size)]

    def evaluate(chunk: np.ndarray) -> PointInTimeValues:
        return evaluate_at(engine, log, codes[chunk], t_ms[chunk], names)

    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in names}
    with ThreadPoolExecutor(threads) if threads > 1 and len(chunks) > 1 else nullcontext() as pool:
        evaluated = pool.map(evaluate, chunks) if pool is not None else map(evaluate, chunks)
        for chunk, found in zip(chunks, evaluated, strict=True):
            for name, pair in found.items():
                parts[name].append(pair)
            if on_chunk:
                on_chunk(len(chunk))
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    out = {}
    for name in names:
        values = np.concatenate([v for v, _ in parts[name]])[back] if parts[name] else np.array([])
        present = np.concatenate([p for _, p in parts[name]])[back] if parts[name] else np.array([], dtype=bool)
        out[name] = (values, present)
    return out


def output_column(view: FeatureView, engine: ViewEngine, name: str, found: tuple[np.ndarray, np.ndarray]) -> pa.Array:
    """One output column, null where absent, typed from the definition."""
    values, present = found
    kind = value_type(view, engine, name)
    if not present.any():  # nothing known of these entities (an empty store): nulls of the feature's type
        return pa.nulls(len(present), type=kind)
    if pa.types.is_timestamp(kind):
        return pa.array(values.astype(np.int64), type=pa.int64(), mask=~present).cast(kind)
    if pa.types.is_integer(kind) and values.dtype.kind == "f":
        values = np.where(present, values, 0).astype(np.int64)
    if pa.types.is_list(kind):  # last_k, first_k, top_k: Python lists per row (top_k's pairs as structs)
        pairs = pa.types.is_struct(kind.value_type)
        rows = [(([{"value": v, "count": n} for v, n in row] if pairs else row) if p else None)
                for row, p in zip(values.tolist(), present.tolist(), strict=True)]
        return pa.array(rows, type=kind)
    return pa.array(values, type=kind, mask=~present, from_pandas=False)


def value_type(view: FeatureView, engine: ViewEngine, name: str) -> pa.DataType:
    if name in engine.session_columns:
        return pa.bool_() if name.endswith("_active") else TIMESTAMP_TYPE
    feature = next(f for f in view.features if f.name == name)
    return get_aggregation(feature.aggregation).output_type(
        field_type(view, feature.field) if feature.field is not None else pa.int64())


def empty_log(view: FeatureView) -> pa.Table:
    """A view's event log with no events, typed as the offline store types it."""
    return pa.table({name: pa.array([], type) for name, type in empty_log_types(view)})


def empty_log_types(view: FeatureView) -> list[tuple[str, pa.DataType]]:
    return [("entity", pa.string()), ("event_timestamp", TIMESTAMP_TYPE), ("partition", pa.int32()),
            ("offset", pa.int64())] + [(f, field_type(view, f)) for f in source_fields(view)]
