"""The `rillet` command line: up, worker, publish, get, historical, serve, dlq, demo, schemas, registry.

A bad argument or a failure the user can fix prints one line and exits
non-zero (2 for usage, 1 for runtime); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from streams.errors import ConfigError, NaiveTimeError, RilletError, StackError
from streams.progress import Progress
from streams.settings import Settings, redact_url
from streams.timeutil import iso_to_ms

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, and a record of its flags and sub-commands to name a misspelled flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # "--feat" must not silently mean "--features"
        self.flags: set[str] = set()
        self.commands: dict[str, _Parser] = {}
        super().__init__(*args, **kwargs)

    def _add_action(self, action: argparse.Action) -> argparse.Action:
        self.flags.update(action.option_strings)  # flags of argument groups too
        return super()._add_action(action)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rillet: error: {message} (see 'rillet {self.prog.split()[-1]} --help')\n"
                  if " " in self.prog else f"rillet: error: {message} (see 'rillet --help')\n")

    def check_flags(self, argv: list[str]) -> None:
        """Name the first unknown `--flag` (argparse would first complain that --view is missing)."""
        import difflib

        parser, allowed = self, set(self.flags)
        for token in argv:
            if token == "--":
                return
            if not token.startswith("--"):
                if token in parser.commands:
                    parser = parser.commands[token]
                    allowed |= parser.flags
                continue
            flag = token.split("=", 1)[0]
            if flag not in allowed:
                close = difflib.get_close_matches(flag, sorted(allowed), n=1)
                parser.error(f"unknown flag {flag}" + (f" (did you mean {close[0]}?)" if close else ""))


def _parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or ISO-8601 with a timezone."""
    if text.isdigit():
        return int(text)
    try:
        return iso_to_ms(text)
    except NaiveTimeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither epoch ms nor an ISO-8601 time") from None


def _port(text: str) -> int:
    """A TCP port, 1-65535 (0: any free port, where a command allows it)."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return int(text)


def _not_negative(text: str) -> float:
    """An argparse type: a number of seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _positive(kind: type) -> Any:
    """An argparse type: a number of `kind` above zero."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
        return value

    return parse


def _partition_list(text: str) -> list[int]:
    """`0,2,5` -> [0, 2, 5]."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of partition numbers such as 0,2")
    return sorted({int(p) for p in parts})


def _parse_from(text: str) -> int | None:
    return None if text == "earliest" else _parse_time_ms(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rillet", description="Streaming feature pipeline: windowed features "
                     "in event time, online in Redis, offline in Parquet.")
    parser.add_argument("--features", help="feature definitions file (default: $RILLET_FEATURES "
                        "or examples/payments/features.py)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = sub.choices

    up = sub.add_parser("up", help="start the embedded broker (Tansu) and Redis (Valkey if none answers)")
    up.add_argument("--broker-port", type=_port, default=None, help="broker port (default: RILLET_BOOTSTRAP_SERVERS)")
    up.add_argument("--redis", choices=["auto", "embedded", "external"], default="auto",
                    help="auto: the Redis at RILLET_REDIS_URL when that is set and answers, else an embedded "
                    "Valkey (append-only file under data/stack); embedded: always Valkey; external: must answer")

    worker = sub.add_parser("worker", help="run a stream worker for the defined views")
    worker.add_argument("--features", dest="sub_features", help="feature definitions file")
    worker.add_argument("--web-port", type=_port, help="port for /health and /metrics")

    publish = sub.add_parser("publish", help="publish JSON-lines events as Avro to a view's topic")
    publish.add_argument("--features", dest="sub_features", help="feature definitions file")
    publish.add_argument("--view", required=True)
    publish.add_argument("--file", required=True, help="JSON lines, one event per line")
    publish.add_argument("--skip-invalid", action="store_true", help="count invalid events and go on")

    get = sub.add_parser("get", help="print an entity's features as JSON")
    get.add_argument("--features", dest="sub_features", help="feature definitions file")
    what = get.add_mutually_exclusive_group(required=True)
    what.add_argument("--view", help="every feature of this view")
    what.add_argument("--service", help="a feature service's features, derived ones included")
    get.add_argument("--entity", required=True, action="append",
                     help="entity id (repeatable); a composite entity's values separated by commas: u1,m7; "
                          "or field=value pairs: user_id=u1,amount=12.5 (request inputs of derived features too)")
    get.add_argument("--as-of", type=_parse_time_ms, help="epoch ms or ISO-8601 (default: now)")

    historical = sub.add_parser("historical", help="point-in-time join: features at each entity row's time, "
                                "from the offline store, into a Parquet file")
    historical.add_argument("--features", dest="sub_features", help="feature definitions file")
    historical.add_argument("--entities", required=True, help="Parquet or CSV file: the entity column(s) and "
                            "event_timestamp (epoch ms or ISO-8601 with a timezone; a CSV may mix them)")
    historical.add_argument("--select", dest="refs", action="append", default=[],
                            help="view:feature, view:* or a derived feature (comma-separated, repeatable)")
    historical.add_argument("--service", help="a feature service: its features (with --select: those too)")
    historical.add_argument("--out", required=True, help="Parquet file to write")
    historical.add_argument("--full-feature-names", action="store_true", help="name columns view__feature")
    historical.add_argument("--version", dest="versions", action="append", default=[], metavar="VIEW:N",
                            help="read version N of VIEW (default: each view's active version)")
    historical.add_argument("--dask", metavar="ADDRESS", help="run the join on this Dask scheduler's workers "
                            "(tcp://host:8786); the offline store must be on storage they all read")
    historical.add_argument("--workers", type=_positive(int), metavar="N",
                            help="run the join on a local Dask cluster of N worker processes")

    replay = sub.add_parser("replay", help="recompute a view from its topic into a new version, then switch to it")
    replay.add_argument("--features", dest="sub_features", help="feature definitions file")
    replay.add_argument("--view", required=True)
    replay.add_argument("--from", dest="from_ms", type=_parse_from, default=None,
                        help="earliest (default) or a time (epoch ms or ISO-8601): values from then on are exact")
    replay.add_argument("--until", dest="until_ms", type=_parse_time_ms, default=None,
                        help="stop at this event time (a backfill: no switch)")
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed and stop")
    replay.add_argument("--processes", type=_positive(int), default=1,
                        help="replay in N processes, each a share of the partitions; switch once at the end")
    replay.add_argument("--partitions", type=_partition_list, default=None,
                        help="replay only these partitions (e.g. 0,2): one machine's share; with --no-switch")
    replay.add_argument("--no-switch", action="store_true",
                        help="build, but leave the switch to a final run without --partitions")
    replay.add_argument("--batch-size", type=_positive(int), default=50_000)

    status = sub.add_parser("status", help="one line per view: version, workers, lag, freshness against its "
                            "target, dead letters and late events in the last hour")
    status.add_argument("--features", dest="sub_features", help="feature definitions file")
    status.add_argument("--view", help="one view (default: every defined view)")
    status.add_argument("--json", action="store_true", help="one JSON object per view")
    status.add_argument("--check", action="store_true",
                        help="exit 1 when a view is past its freshness target or has partitions no worker reports")

    skew = sub.add_parser("skew", help="training/serving skew: recompute every logged online read with the "
                          "point-in-time join and compare, per feature (needs RILLET_SERVED_LOG_RATE > 0 on readers)")
    skew.add_argument("--features", dest="sub_features", help="feature definitions file")
    skew.add_argument("--view", required=True, help="the view to check")
    skew.add_argument("--since", type=_parse_time_ms, default=0, help="reads at or after this time (epoch ms or ISO)")
    skew.add_argument("--until", type=_parse_time_ms, default=None, help="reads at or before this time")
    skew.add_argument("--threshold", type=_not_negative, default=0.0,
                      help="exit 1 when the share of compared values that differ is above this (default 0)")
    skew.add_argument("--examples", type=int, default=5, help="examples kept per feature")
    skew.add_argument("--prometheus", metavar="FILE", help="also write the figures as Prometheus metrics to FILE")

    land = sub.add_parser("land-served", help="copy the served-feature log into the offline store as Parquet "
                          "({offline}/served/date=.../), from where the last run stopped")
    land.add_argument("--idle", type=_not_negative, default=3.0, metavar="SECONDS",
                      help="stop after this long without a new record (default 3)")

    versions = sub.add_parser("versions", help="list a view's versions (or 'versions gc' to delete retired ones)")
    versions.add_argument("action", nargs="?", choices=["list", "gc"], default="list")
    versions.add_argument("--features", dest="sub_features", help="feature definitions file")
    versions.add_argument("--view", help="one view (default: every defined view)")
    versions.add_argument("--grace", type=_not_negative, default=60.0, metavar="SECONDS",
                          help="gc: only versions retired at least this long ago (reads in flight may still "
                               "follow the old pointer; default 60)")

    restore = sub.add_parser("restore", help="write a view's states back to Redis from the workers' changelog "
                             "(after Redis lost data)")
    restore.add_argument("--features", dest="sub_features", help="feature definitions file")
    restore.add_argument("--view", required=True)
    restore.add_argument("--version", type=int, default=None, help="default: the active version")

    dlq = sub.add_parser("dlq", help="show what went to a view's dead-letter topic, and why")
    dlq.add_argument("--features", dest="sub_features", help="feature definitions file")
    dlq.add_argument("--view", required=True)
    dlq.add_argument("--limit", type=int, default=20, help="records to print (0: only the counts)")
    dlq.add_argument("--timeout", type=_positive(float), default=5.0,
                     help="seconds without a new record that end the read")

    serve = sub.add_parser("serve", help="serve online features over HTTP (POST /features/online)")
    serve.add_argument("--features", dest="sub_features", help="feature definitions file")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=6566)
    serve.add_argument("--max-entities", type=_positive(int), default=10_000,
                       help="most entities one request may ask for")
    serve.add_argument("--workers", type=_positive(int), default=1,
                       help="server processes sharing the port (one per core)")

    registry = sub.add_parser("registry", help="run the embedded Confluent-compatible schema registry")
    registry.add_argument("--host", default="127.0.0.1")
    registry.add_argument("--port", type=_port, default=8081)
    registry.add_argument("--data", default="data/registry.json", help="where the registry keeps its state")

    schemas_cmd = sub.add_parser("schemas", help="schema tools")
    schemas_sub = schemas_cmd.add_subparsers(dest="schemas_command", required=True, parser_class=_Parser)
    schemas_cmd.commands = schemas_sub.choices
    schemas_check = schemas_sub.add_parser("check", help="check every .avsc against its earlier versions in git")
    schemas_check.add_argument("--features", dest="sub_features", help="feature definitions file: each schema "
                               "is checked as <topic>-value for the views that read it")
    schemas_check.add_argument("--dir", default=None, help="folder of .avsc files (default: the schemas package)")
    schemas_check.add_argument("--base", default=None, help="git ref of history to compare with "
                               "(default: the merge-base with main)")

    demo = sub.add_parser("demo", help="embedded stack + worker + synthetic payments, then print features")
    demo.add_argument("--features", dest="sub_features", help="feature definitions file")
    demo.add_argument("--users", type=_positive(int), default=1000)
    demo.add_argument("--events", type=_positive(int), default=20000)
    demo.add_argument("--hours", type=_positive(float), default=3.0, help="simulated hours of history, ending now")
    demo.add_argument("--follow", action="store_true", help="keep everything running until Ctrl-C")
    return parser


def _views(args: argparse.Namespace, settings: Settings) -> list:
    return _definitions(args, settings).views  # services and derived features are checked too


def _definitions(args: argparse.Namespace, settings: Settings) -> Any:
    from streams.services import load_definitions

    return load_definitions(_features_path(args, settings))


def _pairs(text: str) -> dict[str, str]:
    """`user_id=u1,amount=12.5` as an entity row (values as text)."""
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() for p in pairs):
        raise ValueError(f"{text!r}: write field=value pairs separated by commas")
    return {k.strip(): v.strip() for k, v in pairs}


def _features_path(args: argparse.Namespace, settings: Settings) -> str:
    """The features file a command uses: its own --features, the global one, or RILLET_FEATURES."""
    return _explicit_features(args) or settings.features


def _explicit_features(args: argparse.Namespace) -> str | None:
    return getattr(args, "sub_features", None) or args.features


def _view(views: list, name: str) -> Any:
    for view in views:
        if view.name == name:
            return view
    raise ConfigError(f"no view named {name!r}; defined: {', '.join(v.name for v in views)}")


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from streams.stack import EmbeddedStack

    stopped = threading.Event()  # handlers first: a signal during start-up must still clean up
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    mode = args.redis
    if mode == "auto" and not os.environ.get("RILLET_REDIS_URL"):
        mode = "embedded"  # a Redis that merely answers on the default port is somebody else's: never fill it
    stack = EmbeddedStack(settings, broker_port=args.broker_port, redis=mode, workdir="data/stack",
                          registry=True, persist_redis=True)
    stack.start()
    for note in stack.notes:
        print(note)
    print(f"export RILLET_BOOTSTRAP_SERVERS={stack.settings.bootstrap_servers}")
    print(f"export RILLET_REDIS_URL={redact_url(stack.settings.redis_url)}")
    if stack.settings.schema_registry_url:
        print(f"export RILLET_SCHEMA_REGISTRY_URL={stack.settings.schema_registry_url}")
    print("running; Ctrl-C stops what was started", flush=True)
    try:
        while not stopped.wait(0.5):
            if any(not p.alive() for p in stack.processes):
                dead = [p.name for p in stack.processes if not p.alive()]
                print(f"rillet: error: {', '.join(dead)} exited", file=sys.stderr)
                return 1
    finally:
        stack.close()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import faust
    import uvloop

    from streams.predecessors import forget_dead_predecessors
    from streams.topics import ensure_topics
    from streams.worker import build_app

    uvloop.install()  # Faust's per-event path runs on the event loop: uvloop made it 1.3x faster
    if args.web_port:
        settings = settings.with_(web_port=args.web_port)
    settings = _free_web_port(settings, explicit=bool(args.web_port) or "RILLET_WEB_PORT" in os.environ)
    views = _views(args, settings)
    ensure_topics(settings, views)
    removed = forget_dead_predecessors(settings.state_dir, settings.bootstrap_servers)
    if removed:  # a restart on this machine: the group rebalances now, not when the dead member's session ends
        logging.getLogger("rillet").info(json.dumps({"event": "dead_predecessors_removed", "members": removed}))
    logging.getLogger("rillet").info(json.dumps({"event": "worker_start", "views": [v.describe() for v in views],
                                                 "settings": settings.safe_view()}))
    app = build_app(settings, views)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()  # exits the process when stopped
    return 0


def _free_web_port(settings: Settings, *, explicit: bool) -> Settings:
    """The worker's web port: the configured one, or, where the default is taken (a second worker on this
    host), a free one, said in the log. A port the user chose that is taken is a one-line error."""
    import socket

    def free(port: int) -> bool:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: TIME_WAIT is free
            try:
                probe.bind((settings.web_host, port))
            except OSError:
                return False
        return True

    if free(settings.web_port):
        return settings
    if explicit:
        raise ConfigError(f"RILLET_WEB_PORT={settings.web_port}: the port is taken on {settings.web_host} (another "
                          "worker?); set RILLET_WEB_PORT to a free port, or leave it unset to have one picked")
    with socket.socket() as probe:
        probe.bind((settings.web_host, 0))
        port = probe.getsockname()[1]
    logging.getLogger("rillet").warning(json.dumps({
        "event": "web_port_taken", "taken": settings.web_port, "web_port": port,
        "message": f"port {settings.web_port} is taken (another worker on this host?): /health and /metrics "
                   f"are on port {port}; set RILLET_WEB_PORT to choose"}))
    return settings.with_(web_port=port)


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from streams.producer import EventProducer
    from streams.topics import ensure_topics

    view = _view(_views(args, settings), args.view)
    if os.path.isdir(args.file):
        raise ConfigError(f"--file {args.file!r} is a directory; name a JSON-lines file")
    if not os.path.isfile(args.file):
        raise ConfigError(f"--file {args.file!r} does not exist")
    ensure_topics(settings, [view])
    with EventProducer(settings, view) as producer:
        prepared = producer.prepare_jsonl(args.file)  # the whole file is checked before anything is sent
        if prepared.invalid and not args.skip_invalid:
            more = f" (and {len(prepared.invalid) - 1} more bad lines)" if len(prepared.invalid) > 1 else ""
            raise ConfigError(f"{prepared.invalid[0]}{more}; nothing was sent: fix the file, "
                              "or --skip-invalid to send the valid lines")
        for event in prepared.events:
            producer.send_encoded(event)
    report = producer.report
    print(json.dumps({"view": view.name, "topic": view.topic, "lines": prepared.lines, "sent": report.sent,
                      "failed": report.failed, "invalid": len(prepared.invalid), "errors": prepared.invalid[:5]
                      + report.errors[:5]}))
    if report.failed:
        print(f"rillet: error: {report.failed} of {len(prepared.events)} events were not delivered "
              f"({report.errors[0] if report.errors else 'no reason given'}); {report.sent} were", file=sys.stderr)
        return 1
    return 0


def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.reads import FeatureReader
    from sinks.redis_client import connect_redis
    from sinks.statuses import value_status
    from streams.entity_keys import row_from_text

    definitions = _definitions(args, settings)
    if args.service:
        views, refs = definitions.views, []
    else:
        views, refs = [_view(definitions.views, args.view)], [f"{args.view}:*"]
    reader = FeatureReader(views, connect_redis(settings), services=definitions.services,
                           derived=definitions.derived)
    empty = reader.plan(refs, [], service=args.service)
    fields = list(dict.fromkeys(f for name in empty.wanted for f in reader.views[name].entity_fields))
    inputs = list(dict.fromkeys(name for d in empty.derived for name in d.request_inputs))
    try:
        rows = [_pairs(e) if "=" in e else row_from_text(fields, e) for e in args.entity]
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


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo import run_demo

    path = _features_path(args, settings)
    views = _views(args, settings)
    return run_demo(settings, views, path, users=args.users, events=args.events, hours=args.hours,
                    follow=args.follow)


def cmd_historical(args: argparse.Namespace, settings: Settings) -> int:
    import time

    import pyarrow.parquet as pq

    from sinks.historical import VERSIONS_METADATA, OfflineReader, read_entity_file
    from sinks.redis_client import connect_redis

    definitions = _definitions(args, settings)
    views = definitions.views
    refs = [r.strip() for group in args.refs for r in group.split(",") if r.strip()]
    if not refs and not args.service:
        raise ConfigError("historical: give --select view:feature (or view:*), or --service NAME")
    if not args.out.endswith(".parquet"):
        raise ConfigError(f"--out {args.out!r}: write a .parquet file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise ConfigError(f"--out {args.out!r}: folder {os.path.dirname(os.path.abspath(args.out))!r} does not exist")
    pins = _version_pins(args.versions, views)
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


def _version_pins(given: list[str], views: list[Any]) -> dict[str, int]:
    """`--version payments:2` (repeatable) -> {"payments": 2}."""
    pins: dict[str, int] = {}
    names = {v.name for v in views}
    for text in given:
        view, _, number = text.rpartition(":")
        if not view or not number.removeprefix("v").isdigit():
            raise ConfigError(f"--version {text!r}: write VIEW:N, e.g. --version payments:2")
        if view not in names:
            raise ConfigError(f"--version {text!r}: no view {view!r}; views: {', '.join(sorted(names))}")
        pins[view] = int(number.removeprefix("v"))
    return pins


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


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from replay.run import Replay

    view = _view(_views(args, settings), args.view)
    if args.processes > 1 and args.partitions is not None:
        raise ConfigError("--processes splits the partitions itself: give it or --partitions, not both")
    replay = Replay(settings, view, from_ms=args.from_ms, until_ms=args.until_ms, batch_size=args.batch_size,
                    switch=not args.no_switch and args.partitions is None, partitions=args.partitions)
    if args.dry_run:
        report = replay.run(dry_run=True)
        for r in report.ranges:
            print(json.dumps({"topic": view.topic, "partition": r.partition, "from_offset": r.start,
                              "to_offset": r.end, "records": r.records}))
        print(json.dumps({"view": view.name, "fingerprint": view.fingerprint,
                          "records": sum(r.records for r in report.ranges), "dry_run": True}))
        return 0
    started = time.monotonic()
    with Progress("replay", 0, "records") as progress:
        def show(done: int, total: int, rate: float) -> None:
            progress.update(done, total=total, extra=f"lag {max(total - done, 0):,}")

        if args.processes > 1:
            from pathlib import Path

            from replay.parallel import run_parallel

            path = str(Path(_features_path(args, settings)).resolve())
            report = run_parallel(replay, path, args.processes, on_progress=show)
        else:
            report = replay.run(on_progress=show)
    summary = {"view": view.name, "version": report.version, "resumed": report.resumed,
               "records": report.counts["read"], "aggregated": report.counts["aggregated"],
               "late": report.counts["late"], "future_event_time": report.counts["future_event_time"],
               "dead_lettered": report.counts["dead_lettered"],
               "events_per_s": round(report.events_per_s), "seconds": round(time.monotonic() - started, 2),
               "switched": report.switched, "previous_version": report.switched_from}
    print(json.dumps(summary))
    return 0


def cmd_versions(args: argparse.Namespace, settings: Settings) -> int:
    import shutil

    from sinks.offline import offline_dir
    from sinks.redis_client import connect_redis
    from sinks.versions import VersionRegistry
    from streams.status import topic_heads, version_lag

    views = [_view(_views(args, settings), args.view)] if args.view else _views(args, settings)
    registry = VersionRegistry(connect_redis(settings))
    for view in views:
        if args.action == "gc":
            removed = registry.gc(view.name, grace_s=args.grace)
            for version in removed:
                shutil.rmtree(offline_dir(settings.offline_root, view.name, version), ignore_errors=True)
            print(json.dumps({"view": view.name, "removed": removed}))
            continue
        listed = registry.list(view.name)
        if not listed:
            print(json.dumps({"view": view.name, "versions": [],
                              "message": "no version yet: start a worker, or build one with rillet replay"}))
            continue
        heads = topic_heads(settings, view.topic)
        for info in listed:
            print(json.dumps({"view": view.name, "version": info.version, "state": info.state,
                              "fingerprint": info.fingerprint, "definition": info.fingerprint == view.fingerprint,
                              "created_ms": info.created_ms, "switched_ms": info.switched_ms,
                              "events": info.events, "lag": version_lag(settings, registry, view, info, heads)}))
    return 0


def cmd_skew(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.served_log import read_served
    from sinks.skew import measure_skew, prometheus_text

    view = _view(_views(args, settings), args.view)
    served = list(read_served(settings, since_ms=args.since, until_ms=args.until, view=view.name))
    report = measure_skew(view, settings.offline_root, served, examples=args.examples)
    for feature in report.features:
        print(json.dumps({"view": view.name, **feature.__dict__}))
    summary = {k: v for k, v in report.to_dict().items() if k != "features"}
    print(json.dumps(summary))
    if args.prometheus:
        Path(args.prometheus).write_text(prometheus_text(report))
    if served:
        from sinks.keys import skew_key
        from sinks.redis_client import connect_redis

        connect_redis(settings).set(skew_key(view.name), json.dumps({**report.to_dict(), "since_ms": args.since,
                                                                    "until_ms": args.until}))  # the console shows it
    if not served:
        print(f"no logged reads of {view.name} in {settings.served_log_topic}: set RILLET_SERVED_LOG_RATE on the "
              "readers (rillet serve, get_online_features)", file=sys.stderr)
    return 1 if report.mismatch_rate > args.threshold else 0


def cmd_land_served(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.served_log import land_served

    rows = land_served(settings, idle_s=args.idle)
    print(json.dumps({"topic": settings.served_log_topic, "rows": rows,
                      "path": str(settings.offline_root / "served")}))
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.redis_client import connect_redis
    from sinks.versions import VersionRegistry
    from streams.status import render, topic_heads, version_lag, view_status

    views = [_view(_views(args, settings), args.view)] if args.view else _views(args, settings)
    registry = VersionRegistry(connect_redis(settings))
    rows = []
    for view in views:
        heads = topic_heads(settings, view.topic)
        active = next((v for v in registry.list(view.name) if v.state == "active"), None)
        lag = version_lag(settings, registry, view, active, heads) if active else None
        rows.append(view_status(settings, view, registry, heads, lag))
    print(render(rows, as_json=args.json))
    return 1 if args.check and any(r.verdict not in ("ok", "-") for r in rows) else 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from sinks.restore import restore_online

    view = _view(_views(args, settings), args.view)
    with Progress("restore", 0, "records") as progress:
        report = restore_online(settings, view, args.version,
                                on_progress=lambda done, total: progress.update(done, total=total))
    print(json.dumps(asdict(report)))
    return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dead_letters import read_dead_letters

    view = _view(_views(args, settings), args.view)
    if args.limit < 0:
        raise ConfigError(f"--limit {args.limit}: must be 0 or more")
    counts: dict[str, int] = {}
    for i, letter in enumerate(read_dead_letters(settings, view.dlq_topic, idle_s=args.timeout)):
        counts[letter["reason"]] = counts.get(letter["reason"], 0) + 1
        if i < args.limit:
            print(json.dumps(letter))
    print(json.dumps({"topic": view.dlq_topic, "total": sum(counts.values()), "by_reason": counts}))
    return 0


def _served_log(settings: Settings) -> Any:
    """The served-feature log when RILLET_SERVED_LOG_RATE asks for one, else None."""
    if settings.served_log_rate <= 0:
        return None
    from sinks.served_log import ServedLog

    return ServedLog(settings)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop
    from aiohttp import web

    from sinks.http_api import make_app
    from sinks.reads import FeatureReader
    from sinks.redis_client import connect_redis, connect_redis_async

    definitions = _definitions(args, settings)
    views = definitions.views
    if args.workers > 1:
        _check_port_free(args.host, args.port)
        first = _fork_servers(args.workers)  # every process serves the same port (SO_REUSEPORT)
    else:
        first = True
    uvloop.install()
    from sinks.console import Console

    served_log = _served_log(settings)
    app = make_app(FeatureReader(views, connect_redis(settings), served_log=served_log,
                                 services=definitions.services, derived=definitions.derived),
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


def cmd_registry(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from schemas.registry import serve

    print(f"schema registry on http://{args.host}:{args.port} (state in {args.data})", flush=True)
    try:
        serve(args.host, args.port, Path(args.data))
    except OSError as exc:
        raise _cannot_listen(exc, args.host, args.port) from None
    return 0


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from schemas import SCHEMA_DIR
    from schemas.history import check_folder
    from schemas.store import subject_for

    folder = Path(args.dir) if args.dir else SCHEMA_DIR
    if not folder.is_dir():
        raise ConfigError(f"--dir {str(folder)!r} is not a folder")
    explicit = _explicit_features(args)
    path = explicit or settings.features
    readers: dict[Path, list[tuple[str, str]]] = {}
    if explicit or Path(path).is_file():  # the default features file may be absent outside a checkout
        for view in _views(args, settings):
            readers.setdefault(Path(view.schema).resolve(), []).append((subject_for(view.topic), view.name))
    problems, checked = check_folder(folder, args.base, settings.schema_registry_url, readers)
    for line in checked:
        print(line, file=sys.stderr)
    for problem in problems:
        print(problem)
    print(f"{len(checked)} subject(s) checked, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


COMMANDS = {"up": cmd_up, "worker": cmd_worker, "publish": cmd_publish, "get": cmd_get, "demo": cmd_demo,
            "schemas": cmd_schemas, "registry": cmd_registry, "serve": cmd_serve,
            "dlq": cmd_dlq, "restore": cmd_restore, "historical": cmd_historical, "replay": cmd_replay,
            "versions": cmd_versions, "status": cmd_status, "skew": cmd_skew,
            "land-served": cmd_land_served}


def main(argv: list[str] | None = None) -> int:
    # confluent-kafka's registry client imports authlib's deprecated httpx integration: not ours to fix
    warnings.filterwarnings("ignore", message=".*httpx module is deprecated.*")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    parser.check_flags(argv)
    args = parser.parse_args(argv)
    settings = None
    try:
        settings = Settings.from_env()
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
        for chatty in ("httpx", "httpx2", "httpcore"):  # one INFO line per registry request is noise
            logging.getLogger(chatty).setLevel(logging.WARNING)
        return COMMANDS[args.command](args, settings)
    except RilletError as exc:
        print(f"rillet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rillet: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = _service_failure(exc, settings)
        if message is None:
            raise  # a bug: the traceback is wanted
        print(f"rillet: error: {message}", file=sys.stderr)
        return 1


def _service_failure(exc: Exception, settings: Settings | None) -> str | None:
    """One line for a service that is down or refuses, whichever command met it; None for anything else."""
    import redis
    from confluent_kafka import KafkaException

    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        where = redact_url(settings.redis_url) if settings else "RILLET_REDIS_URL"
        reason = str(exc).split(". ")[0].strip() or type(exc).__name__
        return (f"Redis at {where} does not answer ({reason}); start it (rillet up) or point "
                "RILLET_REDIS_URL at one")
    if isinstance(exc, redis.AuthenticationError | redis.ResponseError):
        return f"Redis refused the request: {exc}"
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else exc
        where = settings.bootstrap_servers if settings else "RILLET_BOOTSTRAP_SERVERS"
        text = error.str() if hasattr(error, "str") else str(error)
        return f"broker at {where}: {text}"
    return None


if __name__ == "__main__":
    sys.exit(main())
