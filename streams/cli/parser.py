"""The `rillet` argument parser: every command, its options, and the types that check them (one line each)."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from streams.errors import NaiveTimeError
from streams.timeutil import iso_to_ms

__all__ = ["build_parser"]


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

def _duration_s(text: str) -> float:
    """An argparse type: a duration (`1h`, `30m`, `90s`, `0`) as seconds."""
    from streams.errors import DefinitionError
    from streams.timeutil import to_ms

    try:
        value = int(text) * 1000 if text.isdigit() else to_ms(text, what="duration")
    except (DefinitionError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 1h, 30m or 90s") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value / 1000

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
    what.add_argument("--view", help="every feature of this view (VIEW@candidate, VIEW@v2: of that version)")
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
    replay.add_argument("--candidate", action="store_true",
                        help="build a candidate: the workers keep it current beside the active version, reads "
                             "name it (view@candidate:feature), rillet promote switches to it")
    replay.add_argument("--keep-previous", type=_duration_s, default=0.0, metavar="DURATION",
                        help="at the switch, keep the replaced version current this long (1h, 30m) so that "
                             "rillet rollback is instant (default 0: retire it)")

    plan = sub.add_parser("plan", help="compare the features file with what is deployed: per view unchanged, "
                          "changed (which features) or new, the replay it needs; exit 0 nothing to do, "
                          "2 changes pending, 1 refused")
    plan.add_argument("--features", dest="sub_features", help="feature definitions file")
    plan.add_argument("--view", help="one view (default: every defined view)")
    plan.add_argument("--json", action="store_true", help="one JSON object per view")

    promote = sub.add_parser("promote", help="switch readers to a candidate version (atomic), keeping the "
                             "replaced version current for a rollback")
    promote.add_argument("--features", dest="sub_features", help="feature definitions file")
    promote.add_argument("--view", required=True)
    promote.add_argument("--version", type=_positive(int), default=None, help="default: the newest candidate")
    promote.add_argument("--keep-previous", type=_duration_s, default=3600.0, metavar="DURATION",
                         help="keep the replaced version current this long for rillet rollback (default 1h; "
                              "0: retire it at once)")

    rollback = sub.add_parser("rollback", help="switch readers back to the version kept by the last promotion")
    rollback.add_argument("--features", dest="sub_features", help="feature definitions file")
    rollback.add_argument("--view", required=True)

    diff = sub.add_parser("diff", help="compare two versions of a view on the same entities at the same time, "
                          "per feature (online; offline with --entities)")
    diff.add_argument("--features", dest="sub_features", help="feature definitions file")
    diff.add_argument("--view", required=True)
    diff.add_argument("--from", dest="from_version", default="active", metavar="VERSION",
                      help="a number, active, candidate or previous (default: active)")
    diff.add_argument("--to", dest="to_version", default="candidate", metavar="VERSION",
                      help="a number, active, candidate or previous (default: candidate)")
    diff.add_argument("--sample", type=_positive(int), default=1000,
                      help="online: entities compared, taken from the stored states (default 1000)")
    diff.add_argument("--all", action="store_true", help="online: every stored entity")
    diff.add_argument("--as-of", type=_parse_time_ms, help="online: the time compared (default: now)")
    diff.add_argument("--entities", help="offline: a training set's entity rows (Parquet or CSV with "
                      "event_timestamp): both versions joined at each row's time")
    diff.add_argument("--json", action="store_true", help="one JSON object per feature")

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

    versions = sub.add_parser("versions", help="list a view's versions and their roles ('versions gc' deletes "
                              "retired ones, 'versions retire --version N' stops keeping a candidate current)")
    versions.add_argument("action", nargs="?", choices=["list", "gc", "retire"], default="list")
    versions.add_argument("--version", type=_positive(int), default=None, help="retire: the version")
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
