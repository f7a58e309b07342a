"""Commands that read features: `get`, `historical`, `serve`, `skew`, `land-served`."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streams.cli.common import chosen_views, loaded_definitions, parse_pairs, version_pins, view_named
from streams.cli.progress import Progress
from streams.errors import ConfigError, StackError
from streams.settings import Settings

__all__ = ["cmd_get", "cmd_historical", "cmd_land_served", "cmd_serve", "cmd_skew"]


def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.online.reads import FeatureReader
    from sinks.online.statuses import value_status
    from sinks.redis_client import connect_redis
    from streams.definitions.entity_keys import row_from_text

    definitions = loaded_definitions(args, settings)
    if args.service:
        views, refs = definitions.views, []
    else:
        name = args.view.partition("@")[0]  # `--view payments@candidate`, `--view payments@v2`
        views, refs = [view_named(definitions.views, name)], [f"{args.view}:*"]
    reader = FeatureReader(views, connect_redis(settings), services=definitions.services,
                           derived=definitions.derived)
    empty = reader.plan(refs, [], service=args.service)
    fields = list(dict.fromkeys(f for name in empty.wanted for f in reader.views[name].entity_fields))
    inputs = list(dict.fromkeys(name for d in empty.derived for name in d.request_inputs))
    try:
        rows = [parse_pairs(e) if "=" in e else row_from_text(fields, e) for e in args.entity]
    except ValueError as exc:
        raise ConfigError(f"--entity: {exc}") from None
    for row in rows:
        unknown = [name for name in row if name not in fields and name not in inputs]
        if unknown:
            raise ConfigError(f"--entity: no field {unknown[0]!r} here; entity fields: {', '.join(fields)}"
                              + (f"; request inputs: {', '.join(inputs)}" if inputs else ""))
    response = reader.get_online_features(refs, rows, as_of=args.as_of, service=args.service)
    out = []
    for i, (asked, row, stamps) in enumerate(zip(rows, response.rows, response.event_timestamps, strict=True)):
        latest = max((s for s in stamps.values() if s is not None), default=None)
        shown = {name: row.pop(name) for name in fields if name in row}
        features = {k: v for k, v in row.items() if k not in asked}
        statuses = {k: response.derived_statuses[k][i] if k in response.derived_statuses
                    else value_status(v, stamps.get(k), v is not None or stamps.get(k) is not None)
                    for k, v in features.items()}
        label = (lambda k: k.split(":", 1)[1]) if args.view else (lambda k: k)
        entry = {**shown, "event_timestamp_ms": latest, "features": {label(k): v for k, v in features.items()}}
        unusual = {label(k): status for k, status in statuses.items() if status != "PRESENT"}
        if unusual:  # a null says nothing of why: an ERROR (a derived function raised) must be seen
            entry["status"] = unusual
        out.append(entry)
    print(json.dumps(out[0] if len(out) == 1 else out, indent=2))
    return 0

def cmd_historical(args: argparse.Namespace, settings: Settings) -> int:
    import time

    import pyarrow.parquet as pq

    from sinks.offline.join import VERSIONS_METADATA, OfflineReader, read_entity_file
    from sinks.redis_client import connect_redis

    definitions = loaded_definitions(args, settings)
    views = definitions.views
    refs = [r.strip() for group in args.refs for r in group.split(",") if r.strip()]
    if not refs and not args.service:
        raise ConfigError("historical: give --select view:feature (or view:*), or --service NAME")
    if not args.out.endswith(".parquet"):
        raise ConfigError(f"--out {args.out!r}: write a .parquet file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise ConfigError(f"--out {args.out!r}: folder {os.path.dirname(os.path.abspath(args.out))!r} does not exist")
    pins = version_pins(args.versions, views)
    entities = read_entity_file(args.entities)
    started = time.monotonic()
    reader = OfflineReader(views, settings.offline_root, services=definitions.services, derived=definitions.derived,
                           client=connect_redis(settings))
    with _dask_cluster(args) as cluster, Progress("historical", entities.num_rows, "rows") as progress:
        joined = reader.get_historical_features(entities, refs, service=args.service,
                                                full_feature_names=args.full_feature_names,
                                                on_progress=lambda done, total: progress.update(done, total=total),
                                                cluster=cluster, versions=pins,
                                                source=f"entity file {args.entities}")
    pq.write_table(joined, args.out)
    read = json.loads(joined.schema.metadata[VERSIONS_METADATA])
    print(f"{joined.num_rows:,} rows x {joined.num_columns - entities.num_columns} features -> {args.out} "
          f"in {time.monotonic() - started:.1f}s; versions read: "
          f"{', '.join(f'{view}@v{version}' for view, version in read.items())}", file=sys.stderr)
    return 0

@contextlib.contextmanager
def _dask_cluster(args: argparse.Namespace) -> Iterator[Any]:
    """The Dask client `historical` joins on: a scheduler's (--dask), a local cluster's (--workers), or None."""
    if not args.dask and not args.workers:
        yield None
        return
    if args.dask and args.workers:
        raise ConfigError("give --dask (a running scheduler) or --workers (a local cluster), not both")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--dask and --workers need Dask: pip install 'rillet[dask]'") from None
    if args.dask:
        try:
            client = Client(args.dask, timeout="10s")
        except OSError as exc:
            raise StackError(f"no Dask scheduler answers at {args.dask}: {exc}") from None
        with client:
            yield client
        return
    logging.getLogger("distributed").setLevel(logging.WARNING)  # Dask's per-worker INFO lines are not news here
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.WARNING) as local, Client(local) as client:
        yield client

def cmd_skew(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.observe.served_log import read_served
    from sinks.observe.skew import measure_skew, prometheus_text

    view = view_named(chosen_views(args, settings), args.view)
    served = list(read_served(settings, since_ms=args.since, until_ms=args.until, view=view.name))
    report = measure_skew(view, settings.offline_root, served, examples=args.examples)
    for feature in report.features:
        print(json.dumps({"view": view.name, **feature.__dict__}))
    summary = {k: v for k, v in report.to_dict().items() if k != "features"}
    print(json.dumps(summary))
    if args.prometheus:
        Path(args.prometheus).write_text(prometheus_text(report))
    if served:
        from sinks.online.keys import skew_key
        from sinks.redis_client import connect_redis

        connect_redis(settings).set(skew_key(view.name), json.dumps({**report.to_dict(), "since_ms": args.since,
                                                                    "until_ms": args.until}))  # the console shows it
    if not served:
        print(f"no logged reads of {view.name} in {settings.served_log_topic}: set RILLET_SERVED_LOG_RATE on the "
              "readers (rillet serve, get_online_features)", file=sys.stderr)
    return 1 if report.mismatch_rate > args.threshold else 0

def cmd_land_served(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.observe.served_log import land_served

    rows = land_served(settings, idle_s=args.idle)
    print(json.dumps({"topic": settings.served_log_topic, "rows": rows,
                      "path": str(settings.offline_root / "served")}))
    return 0

def _served_log(settings: Settings) -> Any:
    """The served-feature log when RILLET_SERVED_LOG_RATE asks for one, else None."""
    if settings.served_log_rate <= 0:
        return None
    from sinks.observe.served_log import ServedLog

    return ServedLog(settings)

def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop
    from aiohttp import web

    from sinks.online.reads import FeatureReader
    from sinks.redis_client import connect_redis, connect_redis_async
    from sinks.serve.http_api import make_app

    definitions = loaded_definitions(args, settings)
    views = definitions.views
    if args.workers > 1:
        _check_port_free(args.host, args.port)
        first = _fork_servers(args.workers)  # every process serves the same port (SO_REUSEPORT)
    else:
        first = True
    uvloop.install()
    from sinks.serve.console import Console

    served_log = _served_log(settings)
    app = make_app(FeatureReader(views, connect_redis(settings), served_log=served_log,
                                 services=definitions.services, derived=definitions.derived,
                                 value_cache=settings.read_value_cache),
                   connect_redis_async(settings, max_connections=32), max_entities=args.max_entities,
                   console=Console(settings, views, connect_redis(settings)))
    if served_log is not None:
        async def flush_served_log(_app: Any) -> None:
            served_log.close()  # what was served before the stop reaches the topic

        app.on_cleanup.append(flush_served_log)
    ready = (f"serving {', '.join(v.name for v in views)} on http://{args.host}:{args.port} "
             f"(POST /features/online, GET /openapi.json, the console at /), {args.workers} process(es)")
    try:  # the line is printed once the port is bound, not before
        web.run_app(app, host=args.host, port=args.port, print=lambda _: first and print(ready, flush=True),
                    access_log=None, reuse_port=args.workers > 1 or None,
                    keepalive_timeout=15, shutdown_timeout=5)  # idle connections close; a stop is quick
    except OSError as exc:
        raise _cannot_listen(exc, args.host, args.port) from None
    return 0

def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise _cannot_listen(exc, host, port) from None

def _fork_servers(count: int) -> bool:
    """Fork `count - 1` server processes before any client or loop exists; each dies with the first.
    Returns True in the first process (the one that prints), False in the others."""
    import ctypes

    for _ in range(count - 1):
        if os.fork() == 0:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            return False
    return True

def _cannot_listen(exc: OSError, host: str, port: int) -> ConfigError:
    """One line for a server that could not bind its port (serve, registry)."""
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"port {port} on {host} is in use; pick another with --port")
    return ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}")
