"""The Parquet offline store: the log of aggregated events, hive-partitioned by view, version and date.

Layout (readable by pyarrow, pandas and DuckDB without rillet):

    {RILLET_OFFLINE_PATH}/view={view}/version={n}/date={YYYY-MM-DD}/part-{partition}-{first}-{last}.parquet

Columns: `entity`, `event_timestamp`, `created_timestamp` (when the event
entered the topic: its record timestamp), `partition`, `offset`, then one column per source field
the view's features read. `date` is the event's UTC date.

It keeps events, not feature values: each event that the worker aggregated
(decoded, valid, not late), once. Feature values at any time come from the
point-in-time join (`sinks.offline.join`), which evaluates the windows over
this log and is therefore exact at any `t`, between events and however
disordered the events arrived; snapshots taken as events arrived could be
neither.

A file is written to a hidden temporary name, fsynced, then renamed into
place, so a reader never sees half a file. No reader sees a row twice. A
file holds one source partition's rows from one batch and is named by its
offset range. A batch's file is published before the batch's changelog
commit point, so after a crash some rows past that point may already be on
disk. The worker asks `offsets_written_after` for them and leaves them out
when it writes, so each event has exactly one row. Files are never deleted:
any row on disk came from an event whose state changes may already be durable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from streams.definitions.view import FeatureView
from streams.kernel.records import EventRows
from streams.timeutil import utc_from_ms

__all__ = [
    "OfflineStore",
    "event_log_schema",
    "field_type",
    "offline_dir",
    "publish",
    "read_offline",
    "scan_offline",
    "source_fields",
    "stored_versions",
]

_AVRO_TO_ARROW = {
    "int": pa.int64(), "long": pa.int64(), "float": pa.float64(), "double": pa.float64(),
    "string": pa.string(), "boolean": pa.bool_(),
}
#: how every event time is typed in Parquet and in the join's output
TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")
_DAY_MS = 86_400_000


def field_type(view: FeatureView, field: str | None) -> pa.DataType:
    for f in view.schema_json.get("fields", []):
        if f["name"] == field:
            kinds = f["type"] if isinstance(f["type"], list) else [f["type"]]
            for kind in kinds:
                name = kind.get("type") if isinstance(kind, dict) else kind
                if name in _AVRO_TO_ARROW:
                    return _AVRO_TO_ARROW[name]
    return pa.string()


def source_fields(view: FeatureView) -> list[str]:
    """The event fields the view's features read, in definition order."""
    return list(dict.fromkeys(f.field for f in view.features if f.field is not None))


def event_log_schema(view: FeatureView) -> pa.Schema:
    """The Arrow schema of a view's offline rows."""
    columns = [
        pa.field("entity", pa.string(), nullable=False),
        pa.field("event_timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("created_timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
    ]
    columns += [pa.field(name, field_type(view, name)) for name in source_fields(view)]
    return pa.schema(columns)


def offline_dir(root: str | Path, view: str, version: int | None = None) -> Path:
    """The one place an offline path is built: `{root}/view={view}` (all versions) or `.../version={n}`."""
    base = Path(root) / f"view={view}"
    return base if version is None else base / f"version={version}"


def stored_versions(root: str | Path, view: str) -> list[int]:
    """The versions of `view` that have a folder in the offline store, oldest first."""
    base = offline_dir(root, view)
    found = [p.name.removeprefix("version=") for p in base.glob("version=*")] if base.is_dir() else []
    return sorted(int(v) for v in found if v.isdigit())


class OfflineStore:
    """Writes batches of logged events as atomically published Parquet files."""

    def __init__(self, root: str | Path, view: FeatureView, version: int = 1) -> None:
        self.root = Path(root)
        self.view = view
        self.version = version
        self.schema = event_log_schema(view)
        self.base = offline_dir(self.root, view.name, version)

    def write(self, rows: EventRows) -> list[Path]:
        """Write rows, one file per (event date, source partition), named by the batch's offset range."""
        if not len(rows):
            return []
        table = self._to_table(rows)
        day = rows.event_ms // _DAY_MS  # the UTC day by integer division: no datetime per event
        order = np.lexsort((np.arange(len(rows)), rows.partition, day))
        key_day, key_partition = day[order], rows.partition[order]
        starts = np.flatnonzero(np.append(True, (key_day[1:] != key_day[:-1])
                                          | (key_partition[1:] != key_partition[:-1])))
        written = []
        for lo, hi in zip(starts.tolist(), np.append(starts[1:], len(order)).tolist(), strict=True):
            group = order[lo:hi]
            date = utc_from_ms(int(key_day[lo]) * _DAY_MS).date().isoformat()
            offsets = rows.offset[group]
            name = f"part-{int(key_partition[lo])}-{int(offsets.min()):012d}-{int(offsets.max()):012d}.parquet"
            written.append(publish(table.take(pa.array(group)), self.base / f"date={date}" / name))
        return written

    def offsets_written_after(self, partition: int, committed_offset: int) -> set[int]:
        """Offsets of this partition already in files past its last committed offset."""
        found: set[int] = set()
        for path in self.base.glob(f"date=*/part-{partition}-*.parquet"):
            last = int(path.stem.split("-")[3])
            if last > committed_offset:
                offsets = pq.read_table(path, columns=["offset"])["offset"].to_pylist()
                found.update(o for o in offsets if o > committed_offset)
        return found

    def _to_table(self, rows: EventRows) -> pa.Table:
        columns = [
            pa.array(rows.entity, type=pa.string()),
            pa.array(rows.event_ms, type=pa.int64()).cast(TIMESTAMP_TYPE),
            pa.array(rows.created_ms, type=pa.int64()).cast(TIMESTAMP_TYPE),
            pa.array(rows.partition, type=pa.int64()).cast(pa.int32()),
            pa.array(rows.offset, type=pa.int64()),
        ]
        for name in self.schema.names[5:]:
            values = rows.values.get(name)
            kind = self.schema.field(name).type
            columns.append(pa.nulls(len(rows), kind) if values is None else pa.array(values, type=kind))
        return pa.Table.from_arrays(columns, schema=self.schema)


def publish(table: pa.Table, path: Path) -> Path:
    """Write to a hidden temporary file, fsync, rename: readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "wb") as handle:
        pq.write_table(table, handle, compression="zstd", row_group_size=128 * 1024)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def read_offline(root: str | Path, view: str, version: int = 1, columns: list[str] | None = None) -> pa.Table:
    """All offline rows of a view version, one per source event, ordered by (partition, offset)."""
    table = scan_offline(root, view, version, columns)
    if table.num_rows == 0:
        return table
    table = table.sort_by([("partition", "ascending"), ("offset", "ascending")])
    partition = table["partition"].to_numpy().astype(np.int64)
    offset = table["offset"].to_numpy()
    keep = np.ones(table.num_rows, dtype=bool)
    keep[1:] = (partition[1:] != partition[:-1]) | (offset[1:] != offset[:-1])
    return table.filter(pa.array(keep))


def scan_offline(root: str | Path, view: str, version: int = 1, columns: list[str] | None = None) -> pa.Table:
    """The raw rows of a view version's files, in no particular order (an empty table when none)."""
    base = offline_dir(root, view, version)
    files = sorted(str(p) for p in base.glob("date=*/part-*.parquet")) if base.exists() else []
    if not files:
        return pa.table({})
    dataset = ds.dataset(files, format="parquet")  # the hive keys are in the path; the rows carry the rest
    return dataset.to_table(columns=columns)
