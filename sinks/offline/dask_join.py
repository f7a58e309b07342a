"""The point-in-time join on a Dask cluster: entity rows and the event log split by a hash of the entity.

Stage 1, one task per group of the view's Parquet files: read them (only the columns
the view reads) and split their events into P partitions by a hash of the entity.
Stage 2, one task per partition: its entity rows against its share of the events,
with `sinks.offline.join.evaluate_rows`, the function the in-process join runs, so
every value is the same, bit for bit (an entity's events all land in its partition,
and each range is reduced the same way wherever it lies in a log). The driver puts
the partitions' columns back in the caller's row order.

A stage-2 task holds one partition's events and rows, so a join larger than one
machine's memory runs when P is large enough; Dask moves stage 1's pieces to the
worker of their partition (and spills them to disk under memory pressure). The files
must be readable by every worker: a shared or object-store path.

The two task functions take and return Arrow tables and NumPy arrays and import
nothing from Dask: another engine (Spark's `mapInArrow`, Ray) could drive them.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sinks.offline.memory import system_allocator
from sinks.offline.store import source_fields
from streams.definitions.view import FeatureView
from streams.kernel.point_in_time import EventLog

__all__ = ["dask_evaluate_rows", "entity_partitions", "join_partition", "read_and_split"]

_LOG_COLUMNS = ["entity", "event_timestamp", "partition", "offset"]


def entity_partitions(entities: pa.Array | pa.ChunkedArray, partitions: int) -> np.ndarray:
    """Each entity's partition: a hash of its key text, the same in every process (unlike `hash()`)."""
    if isinstance(entities, pa.ChunkedArray):
        entities = entities.combine_chunks()
    encoded = pc.dictionary_encode(entities.cast(pa.string()))
    labels = encoded.dictionary.to_pylist()
    by_label = np.fromiter(
        (int.from_bytes(blake2b(label.encode(), digest_size=8).digest(), "little") % partitions for label in labels),
        dtype=np.int64, count=len(labels))
    indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return by_label[indices] if len(labels) else np.zeros(len(indices), dtype=np.int64)


@system_allocator()
def read_and_split(files: list[str], columns: list[str], partitions: int) -> list[pa.Table]:
    """Stage 1: the events in `files`, one table per entity partition."""
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files]) if files else None
    if table is None or table.num_rows == 0:
        return [None] * partitions  # type: ignore[list-item]
    owner = entity_partitions(table["entity"], partitions)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(partitions + 1))
    return [table.take(pa.array(order[bounds[p]:bounds[p + 1]])) if bounds[p + 1] > bounds[p] else None
            for p in range(partitions)]


@system_allocator()
def join_partition(view: FeatureView, names: list[str], rows: pa.Table, *pieces: pa.Table | None
                   ) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Stage 2: one partition's rows (`entity`, `t_ms`, `row`) against its events; returns the row
    numbers and each feature's (values, present) in that order."""
    from sinks.offline.join_rows import empty_log, evaluate_rows

    present = [p for p in pieces if p is not None]
    table = pa.concat_tables(present) if present else empty_log(view)
    log = EventLog.from_table(table, source_fields(view))
    found = evaluate_rows(view, log, rows["entity"], rows["t_ms"].to_numpy(), names)
    return rows["row"].to_numpy(), found


def _piece(pieces: list[pa.Table | None], partition: int) -> pa.Table | None:
    return pieces[partition]


def dask_evaluate_rows(cluster: Any, view: FeatureView, files: list[str], entities: pa.Array | pa.ChunkedArray,
                       t_ms: np.ndarray, names: list[str], *, partitions: int | None = None,
                       on_chunk: Callable[[int], None] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`evaluate_rows` for the whole log, run on a Dask cluster (a `distributed.Client` or an address)."""
    from distributed import Client, as_completed

    client = cluster if isinstance(cluster, Client) else Client(cluster)
    try:
        if partitions is None:
            partitions = max(1, 2 * len(client.scheduler_info(n_workers=-1)["workers"]))
        columns = _LOG_COLUMNS + source_fields(view)
        groups = [files[i::partitions] for i in range(min(partitions, len(files)))]
        split = [client.submit(read_and_split, group, columns, partitions, pure=False) for group in groups]
        owner = entity_partitions(entities, partitions)
        if isinstance(entities, pa.ChunkedArray):
            entities = entities.combine_chunks()
        joins = []
        for p in range(partitions):
            mine = np.flatnonzero(owner == p)
            if not len(mine):
                continue
            rows = pa.table({"entity": entities.take(pa.array(mine)), "t_ms": t_ms[mine], "row": mine})
            [rows_future] = client.scatter([rows])  # data goes to the workers, not into the task graph
            pieces = [client.submit(_piece, s, p, pure=False) for s in split]
            joins.append(client.submit(join_partition, view, names, rows_future, *pieces, pure=False))
        results = []
        for future in as_completed(joins):
            row_ids, found = future.result()
            results.append((row_ids, found))
            if on_chunk:
                on_chunk(len(row_ids))
    finally:
        if client is not cluster:
            client.close()
    if not results:
        return {name: (np.array([]), np.array([], dtype=bool)) for name in names}
    back = np.argsort(np.concatenate([ids for ids, _ in results]), kind="stable")
    return {name: (np.concatenate([found[name][0] for _, found in results])[back],
                   np.concatenate([found[name][1] for _, found in results])[back]) for name in names}
