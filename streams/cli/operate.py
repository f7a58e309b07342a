"""Commands that operate a deployment: `replay`, `versions`, `status`, `restore`, `dlq`, `registry`, `schemas`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streams.cli.common import chosen_views, explicit_features_path, features_path_of, view_named
from streams.cli.progress import Progress
from streams.cli.read import _cannot_listen
from streams.errors import ConfigError
from streams.settings import Settings

__all__ = ["cmd_dlq", "cmd_registry", "cmd_replay", "cmd_restore", "cmd_schemas", "cmd_status", "cmd_versions"]


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from replay.run import Replay

    view = view_named(chosen_views(args, settings), args.view)
    if args.processes > 1 and args.partitions is not None:
        raise ConfigError("--processes splits the partitions itself: give it or --partitions, not both")
    if args.candidate and args.until_ms is not None:
        raise ConfigError("--candidate builds a version kept current to the head: leave out --until")
    replay = Replay(settings, view, from_ms=args.from_ms, until_ms=args.until_ms, batch_size=args.batch_size,
                    switch=not args.no_switch and args.partitions is None, partitions=args.partitions,
                    candidate=args.candidate, keep_s=args.keep_previous)
    if args.candidate:
        existing = [v.version for v in replay.registry.list(view.name)
                    if v.fingerprint == view.fingerprint and v.state in ("candidate", "active")]
        if existing:
            raise ConfigError(f"view {view.name}: v{existing[-1]} already has this definition and is kept current")
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

            path = str(Path(features_path_of(args, settings)).resolve())
            report = run_parallel(replay, path, args.processes, on_progress=show)
        else:
            report = replay.run(on_progress=show)
    summary = {"view": view.name, "version": report.version, "resumed": report.resumed,
               "records": report.counts["read"], "aggregated": report.counts["aggregated"],
               "late": report.counts["late"], "future_event_time": report.counts["future_event_time"],
               "dead_lettered": report.counts["dead_lettered"],
               "events_per_s": round(report.events_per_s), "seconds": round(time.monotonic() - started, 2),
               "switched": report.switched, "previous_version": report.switched_from, "candidate": report.candidate}
    print(json.dumps(summary))
    return 0

def cmd_versions(args: argparse.Namespace, settings: Settings) -> int:
    import shutil

    from sinks.observe.status import topic_heads, version_lag
    from sinks.offline.store import offline_dir
    from sinks.online.versions import VersionRegistry
    from sinks.redis_client import connect_redis

    views = [view_named(chosen_views(args, settings), args.view)] if args.view else chosen_views(args, settings)
    registry = VersionRegistry(connect_redis(settings))
    if args.action == "retire":
        if not args.view or args.version is None:
            raise ConfigError("versions retire: give --view and --version")
        registry.retire(views[0].name, args.version)
        print(json.dumps({"view": views[0].name, "retired": args.version}))
        return 0
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
                              "kept_until_ms": info.kept_until_ms,
                              "events": info.events, "lag": version_lag(settings, registry, view, info, heads)}))
    return 0

def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.observe.status import render, topic_heads, version_lag, view_status
    from sinks.online.versions import VersionRegistry
    from sinks.redis_client import connect_redis

    views = [view_named(chosen_views(args, settings), args.view)] if args.view else chosen_views(args, settings)
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

    from sinks.online.restore import restore_online

    view = view_named(chosen_views(args, settings), args.view)
    with Progress("restore", 0, "records") as progress:
        report = restore_online(settings, view, args.version,
                                on_progress=lambda done, total: progress.update(done, total=total))
    print(json.dumps(asdict(report)))
    return 0

def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from streams.broker.dead_letters import read_dead_letters

    view = view_named(chosen_views(args, settings), args.view)
    if args.limit < 0:
        raise ConfigError(f"--limit {args.limit}: must be 0 or more")
    counts: dict[str, int] = {}
    for i, letter in enumerate(read_dead_letters(settings, view.dlq_topic, idle_s=args.timeout)):
        counts[letter["reason"]] = counts.get(letter["reason"], 0) + 1
        if i < args.limit:
            print(json.dumps(letter))
    print(json.dumps({"topic": view.dlq_topic, "total": sum(counts.values()), "by_reason": counts}))
    return 0

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
    explicit = explicit_features_path(args)
    path = explicit or settings.features
    readers: dict[Path, list[tuple[str, str]]] = {}
    if explicit or Path(path).is_file():  # the default features file may be absent outside a checkout
        for view in chosen_views(args, settings):
            readers.setdefault(Path(view.schema).resolve(), []).append((subject_for(view.topic), view.name))
    problems, checked = check_folder(folder, args.base, settings.schema_registry_url, readers)
    for line in checked:
        print(line, file=sys.stderr)
    for problem in problems:
        print(problem)
    print(f"{len(checked)} subject(s) checked, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0
