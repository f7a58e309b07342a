"""Training data: `get_historical_features`, the point-in-time join over the offline event log.

For each entity row (the view's entity key and an `event_timestamp`) it gives
every asked feature's value at that row's time, as semantics.md defines it:
never using an event after that time, ttl respected, exact between events.
The values come from `streams.kernel.point_in_time` over the view's logged events,
the same compiled engine the worker and online reads use; rows are sorted and
evaluated in vectorized chunks, with progress reported after each.
"""

from __future__ import annotations

import csv as _csv
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from sinks.offline.join_rows import empty_log, evaluate_rows, output_column
from sinks.offline.memory import system_allocator
from sinks.offline.store import TIMESTAMP_TYPE, offline_dir, scan_offline, source_fields, stored_versions
from sinks.online.reads import resolve_features
from streams.definitions.derived import REQUEST_PREFIX, DerivedFeature
from streams.definitions.entity_keys import key_column
from streams.definitions.services import FeatureService, find_service, select
from streams.definitions.view import FeatureView
from streams.errors import ConfigError, UnknownFeatureError
from streams.kernel.engine import ViewEngine
from streams.kernel.point_in_time import EventLog, epoch_ms
from streams.timeutil import iso_to_ms

__all__ = ["TIMESTAMP_COLUMN", "VERSIONS_METADATA", "OfflineReader", "empty_log", "evaluate_rows", "online_form",
           "read_entity_file"]

TIMESTAMP_COLUMN = "event_timestamp"
VERSIONS_METADATA = b"rillet.versions"  # schema metadata of a joined table: JSON {view: version read}
_LOG_COLUMNS = ["entity", "event_timestamp", "partition", "offset"]

Progress = Callable[[int, int], None]


class OfflineReader:
    """Point-in-time joins against the offline store of the given views."""

    def __init__(self, views: list[FeatureView], offline_root: str | Path, version: int | None = None,
                 services: dict[str, FeatureService] | None = None,
                 derived: dict[str, DerivedFeature] | None = None, *, client: Any = None) -> None:
        """
        Args:
            views: the views the joins may read.
            offline_root: the offline store's root.
            version: read this version of every view; None (the default) reads each view's active
                version, as the online reads do.
            services: feature services by name.
            derived: derived features by name.
            client: a Redis client, where the active-version pointers are; without one, the active
                version is the only one in the offline store (several there: an error asking for
                `client=` or a `view@vN:feature` reference).
        """
        self.views = {v.name: v for v in views}
        self.services = services or {}
        self.derived = derived or {}
        self.engines = {v.name: ViewEngine(v) for v in views}
        self.root = Path(offline_root)
        self.version = version
        self.client = client
        self._logs: dict[tuple[str, int], tuple[int, EventLog]] = {}

    def version_of(self, view_name: str, pinned: int | str | None = None) -> int:
        """The version a join reads of a view: `pinned` (a `view@vN` reference), the reader's version, or the
        active one.

        Raises:
            UnknownFeatureError: a named version that does not exist (never built, or removed by gc).
            ConfigError: no Redis client and several versions in the offline store.
        """
        from sinks.online.versions import VersionRegistry

        registry = VersionRegistry(self.client) if self.client is not None else None
        named = pinned or self.version
        if isinstance(named, str):  # a role: `view@candidate:feature`
            if registry is None:
                raise ConfigError(f"{view_name}@{named}: naming a version by its role needs client= (a Redis "
                                  f"client, where the roles are)")
            return registry.resolve(view_name, named)
        if named is not None:
            if registry is not None:
                registry.require(view_name, named)
            elif named not in self._stored(view_name):
                raise UnknownFeatureError(f"view {view_name} has no version {named} in the offline store; versions: "
                                          f"{', '.join(f'v{v}' for v in self._stored(view_name)) or '(none)'}")
            return named
        if registry is not None:
            return registry.active(view_name) or 1
        stored = self._stored(view_name)
        if len(stored) > 1:
            raise ConfigError(f"view {view_name} has versions {', '.join(f'v{v}' for v in stored)} in the offline "
                              f"store: pass client= (a Redis client, to read the active one) or name one "
                              f"({view_name}@v{stored[-1]}:...)")
        return stored[0] if stored else 1

    def _stored(self, view_name: str) -> list[int]:
        return stored_versions(self.root, view_name)

    def event_log(self, view_name: str, version: int | None = None) -> EventLog:
        """The view version's logged events, sorted for the join (re-read when files were added)."""
        view = self.views[view_name]
        version = version if version is not None else self.version_of(view_name)
        table = scan_offline(self.root, view.name, version, _LOG_COLUMNS + source_fields(view))
        cached = self._logs.get((view_name, version))
        if cached and cached[0] == table.num_rows:
            return cached[1]
        if table.num_rows == 0:
            table = empty_log(view)
        log = EventLog.from_table(table, source_fields(view))
        self._logs[(view_name, version)] = (table.num_rows, log)
        return log

    @system_allocator()
    def get_historical_features(self, entity_df: Any, features: list[str] | None = None, *,
                                service: str | None = None,
                                full_feature_names: bool = False, on_progress: Progress | None = None,
                                chunk_rows: int = 250_000, threads: int | None = None, cluster: Any = None,
                                partitions: int | None = None,
                                versions: dict[str, int] | None = None, source: str = "entity_df") -> Any:
        """`entity_df` with one column per feature: its value at each row's `event_timestamp`.

        Args:
            entity_df: a pyarrow Table or pandas DataFrame holding each view's entity
                column (every field of a composite entity) and `event_timestamp` (a timestamp,
                or epoch milliseconds).
            features: `view:feature` references (`view:*` for all of a view) and derived feature names;
                a derived feature's request inputs are columns of `entity_df`.
            service: a feature service's name: its features too.
            full_feature_names: name columns `view__feature` (default: `feature`).
            on_progress: called with (rows done, rows in all) as the join goes.
            threads: the in-process join evaluates chunks of rows in this many threads at once (default: one
                per core); the values are the same with any number.
            cluster: a Dask `distributed.Client` (or a scheduler address): the join runs on its
                workers, the entity rows and the event log split by a hash of the entity
                (`sinks.offline.dask_join`); the offline store must be where every worker reads
                it. None: in this process. Same rows, values and order either way.
            partitions: how many entity partitions the Dask join makes (default: 2 per worker).
            versions: {view: version} to read (as `view@vN:feature` references do); other views: their
                active version.
            source: what errors call the entity rows (the CLI names its entity file).

        Returns the same kind of table as given, rows in their original order; which version of each view
        the columns came from is in its metadata (`VERSIONS_METADATA` of a pyarrow table's schema, kept in
        Parquet files; `attrs["rillet_versions"]` of a pandas frame).
        """
        selection = select(list(features or []), find_service(self.services, service) if service else None,
                           self.derived)
        wanted = resolve_features(self.engines, selection.references)
        shown = resolve_features(self.engines, selection.outputs) if selection.outputs else {}
        table, as_pandas = _as_arrow(entity_df)
        for d in selection.derived:
            for name in d.request_inputs:
                if name not in table.column_names:
                    raise UnknownFeatureError(f"{source} has no {name!r} column (a request input of derived "
                                              f"feature {d.name})")
        if TIMESTAMP_COLUMN not in table.column_names:
            raise UnknownFeatureError(f"{source} has no {TIMESTAMP_COLUMN!r} column; it has: "
                                      f"{', '.join(table.column_names)}")
        stamps = table[TIMESTAMP_COLUMN]
        if not (pa.types.is_timestamp(stamps.type) or pa.types.is_integer(stamps.type)):
            raise ConfigError(f"{source}.{TIMESTAMP_COLUMN} is {stamps.type}; give timestamps or epoch milliseconds")
        if stamps.null_count:
            raise ConfigError(f"{source}.{TIMESTAMP_COLUMN} has {stamps.null_count} null(s); every row needs a time")
        t_ms = epoch_ms(stamps)
        done, passes = [0], max(len(wanted), 1)  # each view's features are one pass over the rows

        def advance(rows: int) -> None:
            done[0] += rows
            if on_progress:
                on_progress(done[0] // passes, table.num_rows)

        out = table
        inputs: dict[str, pa.Array] = {}
        pins = {**selection.pins, **(versions or {})}
        versions = {view_name: self.version_of(view_name, pins.get(view_name)) for view_name in wanted}
        for view_name, names in wanted.items():
            view, engine, version = self.views[view_name], self.engines[view_name], versions[view_name]
            for name in view.entity_fields:
                if name not in table.column_names:
                    raise UnknownFeatureError(f"{source} has no {name!r} column (needed by view {view_name})")
            keys = key_column(view.entity_fields, table)  # a composite entity's key text, as the worker keys it
            if cluster is None:
                found = evaluate_rows(view, self.event_log(view_name, version), keys, t_ms, names,
                                      chunk_rows=chunk_rows, threads=threads or os.cpu_count() or 1,
                                      on_chunk=advance)
            else:
                from sinks.offline.dask_join import dask_evaluate_rows

                found = dask_evaluate_rows(cluster, view, self.offline_files(view_name, version), keys, t_ms,
                                           names, partitions=partitions, on_chunk=advance)
            for name in names:
                column = output_column(view, engine, name, found[name])
                inputs[f"{view_name}:{name}"] = column
                if name not in shown.get(view_name, []):
                    continue  # read only as a derived feature's input
                label = f"{view_name}__{name}" if full_feature_names else name
                if label in out.column_names:
                    raise ConfigError(f"column {label!r} would appear twice; pass full_feature_names=True")
                out = out.append_column(label, column)
        for d in selection.derived:
            columns = [d.request_values(ref.removeprefix(REQUEST_PREFIX),
                                        table[ref.removeprefix(REQUEST_PREFIX)].to_pylist(), f"{source} row")
                       if ref.startswith(REQUEST_PREFIX)
                       else [online_form(v) for v in inputs[ref].to_pylist()] for ref in d.inputs]
            values, _ = d.evaluate(columns)
            if d.name in out.column_names:
                raise ConfigError(f"column {d.name!r} would appear twice; rename the derived feature")
            out = out.append_column(d.name, pa.array(values))
        # which version of each view the columns came from: in the table's metadata (kept in Parquet)
        out = out.replace_schema_metadata({**(out.schema.metadata or {}),
                                           VERSIONS_METADATA: json.dumps(versions, sort_keys=True).encode()})
        if not as_pandas:
            return out
        frame = out.to_pandas()
        frame.attrs["rillet_versions"] = versions
        return frame

    def offline_files(self, view_name: str, version: int | None = None) -> list[str]:
        """The view version's Parquet files, as paths every worker of a cluster can open (shared storage)."""
        import pyarrow.dataset as ds

        version = version if version is not None else self.version_of(view_name)
        base = offline_dir(self.root, view_name, version)
        if not base.is_dir():
            return []
        return sorted(ds.dataset(base, format="parquet", partitioning="hive").files)


def online_form(value: Any) -> Any:
    """A joined value as the online read gives it: timestamps as epoch milliseconds, top_k's structs as
    [value, count] pairs (derived features take their inputs so; skew compares so)."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, list):
        return [[v["value"], v["count"]] if isinstance(v, dict) else v for v in value]
    return value


def read_entity_file(path: str | Path) -> pa.Table:
    """An entity table from Parquet or CSV.

    In a CSV every column is read as text (entity ids stay ids, `007` stays `007`),
    and `event_timestamp` may mix epoch milliseconds (`1767225600000`) and ISO-8601
    times with a timezone (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00+01:00`).

    Raises:
        ConfigError: a missing or unreadable file, or a time that is neither form (naming its line).
    """
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"entity file {str(source)!r} does not exist")
    try:
        if source.suffix == ".parquet":
            return pq.read_table(source)
        if source.suffix == ".csv":
            with open(source, newline="") as handle:
                header = next(_csv.reader(handle), [])
            table = csv.read_csv(source, convert_options=csv.ConvertOptions(
                column_types={name: pa.string() for name in header}))
            if TIMESTAMP_COLUMN in table.column_names:
                index = table.column_names.index(TIMESTAMP_COLUMN)
                parsed = _parse_times(table[TIMESTAMP_COLUMN].to_pylist(), source)
                stamps = pa.array(parsed, pa.int64()).cast(TIMESTAMP_TYPE)
                table = table.set_column(index, TIMESTAMP_COLUMN, stamps)
            return table
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"entity file {str(source)!r} cannot be read: {exc}") from None
    raise ConfigError(f"entity file {str(source)!r}: use a .parquet or .csv file")


def _parse_times(values: list[str | None], source: Path) -> list[int]:
    """Epoch milliseconds from text that is either epoch ms or ISO-8601 with a timezone."""
    out: list[int] = []
    for line, text in enumerate(values, 2):  # line 1 is the header
        text = (text or "").strip()
        if text.isdigit():
            out.append(int(text))
            continue
        try:
            out.append(iso_to_ms(text))
        except ValueError:  # a naive time too (NaiveTimeError is a ValueError)
            raise ConfigError(f"{source}:{line}: {TIMESTAMP_COLUMN} {text!r} is neither epoch milliseconds nor an "
                              "ISO-8601 time with a timezone (e.g. 2026-01-01T00:00:00Z)") from None
    return out


def _as_arrow(entity_df: Any) -> tuple[pa.Table, bool]:
    if isinstance(entity_df, pa.Table):
        return entity_df, False
    if type(entity_df).__module__.startswith("pandas"):
        return pa.Table.from_pandas(entity_df, preserve_index=False), True
    raise ConfigError(f"entity_df must be a pyarrow Table or a pandas DataFrame, not {type(entity_df).__name__}")


