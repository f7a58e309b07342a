"""Commands that change features safely: `plan`, `promote`, `rollback`, `diff` (README: "Changing features").

The workflow: `plan` says what the features file changes against what is deployed; `replay --candidate`
builds the new version beside the live one (the workers keep it current); reads name it
(`view@candidate:feature`); `diff` compares it with the live one; `promote` switches readers to it and
keeps the replaced version current for a while, so that `rollback` is instant and exact.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from streams.cli.common import chosen_views, loaded_definitions, view_named
from streams.errors import ConfigError
from streams.settings import Settings

__all__ = ["cmd_diff", "cmd_plan", "cmd_promote", "cmd_rollback", "version_of"]

NOTHING, PENDING, REFUSED = 0, 2, 1  # plan's exit codes (terraform plan -detailed-exitcode's convention)


def version_of(registry: Any, view: str, text: str) -> int:
    """A version as a command names it: a number (`2`, `v2`) or a role (active, candidate, previous)."""
    from sinks.online.versions import ROLES

    number = text.removeprefix("v")
    if number.isdigit():
        return registry.resolve(view, int(number))
    if text not in ROLES:
        raise ConfigError(f"version {text!r}: give a number or one of {', '.join(ROLES)}")
    return registry.resolve(view, text)


def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.compatibility import check
    from schemas.history import deployed_schemas
    from schemas.store import subject_for
    from sinks.observe.status import topic_heads
    from sinks.online.versions import ACTIVE, BUILDING, CANDIDATE, VersionRegistry, view_from_spec
    from sinks.redis_client import connect_redis
    from streams.definitions.changes import compare_views

    definitions = loaded_definitions(args, settings)
    views = [view_named(definitions.views, args.view)] if args.view else definitions.views
    registry = VersionRegistry(connect_redis(settings))
    worst = NOTHING
    for view in views:
        versions = registry.list(view.name)
        active = next((v for v in versions if v.state == ACTIVE), None)
        subject = subject_for(view.topic)
        schemas, level = deployed_schemas(settings, subject)
        problems = check(view.schema_json, schemas, level)
        entry: dict[str, Any] = {"view": view.name, "fingerprint": view.fingerprint,
                                 "schema": {"subject": subject, "level": level, "compatible": not problems,
                                            "problems": [str(p) for p in problems]}}
        mine = [v for v in versions if v.fingerprint == view.fingerprint]
        if active is None:
            entry.update(status="new", action="start workers: the first creates version 1")
        elif active.fingerprint == view.fingerprint:
            entry.update(status="unchanged", version=active.version)
        else:
            change = compare_views(view_from_spec(active.spec), view)
            entry.update(status="changed", active=active.version, changes=change.to_dict(),
                         unchanged_features=change.unchanged_features(view))
            ready = next((v for v in reversed(mine) if v.state == CANDIDATE), None)
            building = next((v for v in reversed(mine) if v.state == BUILDING), None)
            if ready is not None:
                entry["action"] = f"candidate v{ready.version} has this definition: rillet promote --view {view.name}"
            elif building is not None:
                entry["action"] = f"v{building.version} is being built: let rillet replay --view {view.name} finish"
            else:
                entry["action"] = f"rillet replay --view {view.name} --candidate"
                entry["replay"] = _replay_cost(settings, view.topic, versions, topic_heads)
        entry["services"] = _services_touched(definitions, view.name, entry)
        if problems:
            entry["status"] = "refused"
            entry["action"] = f"the schema breaks {subject}'s {level} compatibility: fix it first"
        code = REFUSED if problems else PENDING if entry["status"] in ("new", "changed") else NOTHING
        worst = REFUSED if REFUSED in (worst, code) else max(worst, code)
        print(json.dumps(entry) if args.json else _plan_text(entry))
    return worst


def _replay_cost(settings: Settings, topic: str, versions: list, topic_heads: Any) -> dict[str, Any]:
    """Events a replay reads (the topic's records) and the time at this deployment's last measured replay rate."""
    records = sum(topic_heads(settings, topic).values())
    rates = [v.replay.get("events_per_s") for v in versions if v.replay.get("events_per_s")]
    seconds = round(records / rates[-1], 1) if rates else None
    return {"records": records, "events_per_s": rates[-1] if rates else None, "seconds": seconds}


def _services_touched(definitions: Any, view: str, entry: dict[str, Any]) -> list[str]:
    """Services reading a feature of this view that the plan changes (every one of the view's, for a view-wide
    change; a removed feature a service reads breaks it, which `load_definitions` already refuses)."""
    changes = entry.get("changes")
    if not changes:
        return []
    touched = {r["feature"] for r in changes["redefined"]} | set(changes["removed"])
    wide = bool(changes["settings"])
    from streams.definitions.services import select

    out = []
    for name, service in sorted(definitions.services.items()):
        for ref in select(list(service.features), None, definitions.derived).references:  # derived inputs too
            head, _, feature = ref.partition(":")
            if head.partition("@")[0] == view and (wide or feature == "*" or feature in touched):
                out.append(name)
                break
    return out


def _plan_text(entry: dict[str, Any]) -> str:
    lines = [f"{entry['view']}: {entry['status']}" + (f" (v{entry['version']})" if "version" in entry else "")]
    changes = entry.get("changes") or {}
    for name in changes.get("added", []):
        lines.append(f"  + {name}")
    for name in changes.get("removed", []):
        lines.append(f"  - {name}")
    for r in changes.get("redefined", []):
        lines.append(f"  ~ {r['feature']}: {r['before']} -> {r['after']}")
    for s in changes.get("settings", []):
        lines.append(f"  ~ {s} (every feature)")
    if changes:
        lines.append(f"  unchanged: {', '.join(entry['unchanged_features']) or '(none)'}")
    cost = entry.get("replay")
    if cost:
        eta = f", about {cost['seconds']} s at {cost['events_per_s']:,} events/s" if cost["seconds"] else ""
        lines.append(f"  replay reads {cost['records']:,} records{eta}")
    schema = entry["schema"]
    lines.append(f"  schema {schema['subject']} ({schema['level']}): "
                 + ("compatible" if schema["compatible"] else "; ".join(schema["problems"])))
    if entry["services"]:
        lines.append(f"  services changed: {', '.join(entry['services'])}")
    if entry.get("action"):
        lines.append(f"  next: {entry['action']}")
    return "\n".join(lines)


def cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.online.versions import VersionRegistry
    from sinks.redis_client import connect_redis

    view = view_named(chosen_views(args, settings), args.view)
    registry = VersionRegistry(connect_redis(settings))
    old, new = registry.promote(view.name, args.version, keep_s=args.keep_previous)
    kept = registry.get(view.name, old) if old is not None and old != new else None
    print(json.dumps({"view": view.name, "active": new, "previous": old,
                      "previous_state": kept.state if kept else None,
                      "kept_until_ms": kept.kept_until_ms if kept else None}))
    return 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.online.versions import VersionRegistry
    from sinks.redis_client import connect_redis

    view = view_named(chosen_views(args, settings), args.view)
    old, new = VersionRegistry(connect_redis(settings)).rollback(view.name)
    print(json.dumps({"view": view.name, "active": new, "rolled_back": old,
                      "message": f"v{old} stays current as a candidate: promote it again, or "
                                 f"rillet versions retire --view {view.name} --version {old}"}))
    return 0


def cmd_diff(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.observe.version_diff import diff_offline, diff_online, sample_entities
    from sinks.offline.join import read_entity_file
    from sinks.online.versions import VersionRegistry, view_from_spec
    from sinks.redis_client import connect_redis

    view = view_named(chosen_views(args, settings), args.view)
    client = connect_redis(settings)
    registry = VersionRegistry(client)
    versions = (version_of(registry, view.name, args.from_version), version_of(registry, view.name, args.to_version))
    if versions[0] == versions[1]:
        raise ConfigError(f"--from and --to both name v{versions[0]}")
    infos = [registry.require(view.name, v) for v in versions]
    definitions = tuple(view if i.fingerprint == view.fingerprint else view_from_spec(i.spec) for i in infos)
    if args.entities:
        report = diff_offline(settings.offline_root, client, view.name, versions, definitions,  # type: ignore[arg-type]
                              read_entity_file(args.entities))
    else:
        entities = sample_entities(client, view.name, versions, None if args.all else args.sample)
        report = diff_online(client, view.name, versions, definitions, entities, args.as_of)  # type: ignore[arg-type]
    for feature in report.features:
        row = {"view": view.name, "from": versions[0], "to": versions[1], "where": report.where, **feature.to_dict()}
        if args.json:
            print(json.dumps(row, default=str))
        else:
            print(_diff_text(feature))
    summary = {"view": view.name, "from": versions[0], "to": versions[1], "where": report.where,
               "entities": report.entities, "skipped": report.skipped,
               "changed": [f.feature for f in report.features if f.status == "changed"],
               "added": [f.feature for f in report.features if f.status == "added"],
               "removed": [f.feature for f in report.features if f.status == "removed"],
               "unexpected": report.unexpected}
    print(json.dumps(summary))
    if report.unexpected:
        print(f"rillet: error: {', '.join(report.unexpected)} changed between v{versions[0]} and v{versions[1]} "
              "although the definition did not: a bug, please report it", file=sys.stderr)
        return 1
    return 0


def _diff_text(f: Any) -> str:
    if f.status in ("added", "removed", "equal"):
        return f"{f.feature}: {f.status}" + (f" ({f.compared:,} values, {f.null_in_both:,} null in both)"
                                             if f.status == "equal" else "")
    figures = [f"{f.changed:,} of {f.compared:,} changed ({f.share_changed:.1%})"]
    if f.max_abs_diff is not None:
        figures.append(f"mean |diff| {f.mean_abs_diff:.6g}, largest {f.max_abs_diff:.6g}")
    if f.nulls_gained or f.nulls_lost:
        figures.append(f"nulls +{f.nulls_gained} -{f.nulls_lost}")
    return f"{f.feature}: {f.status}: " + "; ".join(figures)
