"""Versions of a view: numbered builds of its definition, and the active pointer readers follow.

Redis layout (built in sinks.online.keys), beside the online keys `rillet:{view}:v{n}:e:{entity}`:

    rillet:{{view}}:versions      hash: version -> JSON record (below)
    rillet:{{view}}:active        the active version's number
    rillet:{view}:v{n}:progress   hash: partition -> "watermark,last offset,aggregated" (a replay's commit point)
    rillet:{view}:v{n}:events     hash: partition -> events aggregated (replay and live workers)

A record holds the definition's fingerprint, its role (below), when it was created
and switched, events processed, and the definition itself (`spec`, complete enough
to rebuild the view: a reader holding another definition evaluates a version's
states with it, and a worker keeps a version current with it).

Roles: `building` (a replay is writing it), `candidate` (built and kept current by
the workers beside the active one, read only when a reference names it),
`active` (what reads follow), `previous` (the version a promotion replaced, kept
current until `kept_until_ms` so that a rollback is instant and exact) and
`retired` (no longer written; `gc` deletes it). Every change of roles bumps
`rillet:{{view}}:generation` in the same transaction: workers compare it before
each batch and restart when the versions they must keep current changed. The switch is one MULTI/EXEC: the
pointer and both records change together (the braces are a hash tag: on a Redis
Cluster both keys sit in one slot, so the transaction is allowed there). A reader
reads the pointer and the states in one script on one server, or the pointer and
then that version's states on a cluster (sinks.online.reads): either way it sees one
version, never a mix. `gc` deletes a retired version only after a grace period
past its retirement, longer than any read in flight that may still follow its
pointer.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from sinks.online.keys import (
    active_key,
    events_key,
    generation_key,
    health_key,
    history_key,
    live_key,
    progress_key,
    version_pattern,
    versions_key,
)
from streams.definitions.view import DEFAULT_MAX_FUTURE, Feature, FeatureView, NotNull, Range
from streams.errors import ConfigError, RilletError, UnknownFeatureError, VersionMismatchError
from streams.windows import Lifetime, Session, Sliding, Tumbling

__all__ = ["ACTIVE", "BUILDING", "CANDIDATE", "KEPT", "PREVIOUS", "RETIRED", "ROLES", "VersionInfo",
           "VersionMismatchError", "VersionRegistry", "live_group", "view_from_spec", "view_spec"]

BUILDING, CANDIDATE, ACTIVE, PREVIOUS, RETIRED = "building", "candidate", "active", "previous", "retired"
KEPT = (ACTIVE, CANDIDATE, PREVIOUS)  # the roles workers keep current
ROLES = (CANDIDATE, ACTIVE, PREVIOUS)  # what a reference may name instead of a number: `view@candidate:f`
GC_GRACE_S = 60.0  # a retired version's states outlive any read that may still follow its old pointer


@dataclass
class VersionInfo:
    version: int
    fingerprint: str
    state: str
    created_ms: int
    spec: dict[str, Any] = field(default_factory=dict)
    events: int = 0
    switched_ms: int | None = None
    retired_ms: int | None = None
    replay: dict[str, Any] = field(default_factory=dict)  # how a replay built it: from, until, offsets
    kept_until_ms: int | None = None  # a previous version: kept current (for a rollback) until then

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def kept(self) -> bool:
        """Whether workers keep this version current."""
        return self.state in KEPT

    def time_up(self, now_ms: int) -> bool:
        """A previous version whose time for a rollback is up (the registry retires it)."""
        return self.state == PREVIOUS and (self.kept_until_ms or 0) <= now_ms


def live_group(worker_group: str, versions: dict[str, list[VersionInfo]]) -> str:
    """The consumer group (and Faust app id) of live workers for these views at these versions.

    A version its first worker created keeps the configured group. A version a
    replay built, the first one included, gets a group of its own: the replay
    sets its offsets where it ended, which Kafka only allows in a group with no
    live member, and the configured group may have members (other views'
    workers, or this view's old-version workers).
    """
    rebuilt = sorted(f"{view}-v{info.version}" for view, infos in versions.items() for info in infos if info.replay)
    return ".".join([worker_group, *rebuilt])


def view_spec(view: FeatureView) -> dict[str, Any]:
    """What evaluating a view's stored states needs, as JSON."""
    def window(w: Any) -> list:
        if isinstance(w, Session):
            return ["session", w.gap_ms]
        if isinstance(w, Sliding):
            return ["sliding", w.size_ms, w.step_ms]
        if isinstance(w, Lifetime):
            return ["lifetime"]
        return ["tumbling", w.size_ms]

    return {"name": view.name, "topic": view.topic, "entity": list(view.entity_fields) if len(view.entity_fields) > 1
            else view.entity, "event_time": view.event_time,
            "ttl_ms": view.ttl_ms, "grace_ms": view.grace_ms, "max_future_ms": view.max_future_ms,
            "schema": str(view.schema), "schema_json": view.schema_json,
            "checks": {name: (["range", rule.low, rule.high] if isinstance(rule, Range) else ["not_null"])
                       for name, rule in sorted(view.checks.items())},
            "partitions": view.partitions, "freshness_ms": view.freshness_ms,
            "features": [[f.name, f.field, f.aggregation, window(f.window)] for f in view.features]}


def view_from_spec(spec: dict[str, Any]) -> FeatureView:
    """The FeatureView a version was built with (for evaluating its states; its schema file may be gone)."""
    kinds = {"session": Session, "sliding": Sliding, "tumbling": Tumbling, "lifetime": Lifetime}
    features = [Feature(fld, agg, kinds[w[0]](*w[1:]), name=name) for name, fld, agg, w in spec["features"]]
    checks = {name: Range(rule[1], rule[2]) if rule[0] == "range" else NotNull()
              for name, rule in spec.get("checks", {}).items()}
    entity = tuple(spec["entity"]) if isinstance(spec["entity"], list) else spec["entity"]
    view = FeatureView(spec["name"], spec["topic"], spec["schema"], entity, features,
                       ttl=spec["ttl_ms"], grace=spec["grace_ms"], event_time=spec["event_time"], checks=checks,
                       max_future=spec.get("max_future_ms", DEFAULT_MAX_FUTURE), partitions=spec.get("partitions"),
                       freshness=spec.get("freshness_ms"))
    if "schema_json" in spec:  # the schema as built: its file may have changed or gone since
        view.__dict__["schema_json"] = spec["schema_json"]
    return view


class VersionRegistry:
    """A view's versions and active pointer, in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    versions_key = staticmethod(versions_key)
    active_key = staticmethod(active_key)
    progress_key = staticmethod(progress_key)

    def list(self, view: str) -> list[VersionInfo]:
        raw = self.redis.hgetall(self.versions_key(view))
        return sorted((self._with_events(view, VersionInfo(**json.loads(v))) for v in raw.values()),
                      key=lambda i: i.version)

    def get(self, view: str, version: int) -> VersionInfo | None:
        raw = self.redis.hget(self.versions_key(view), str(version))
        return self._with_events(view, VersionInfo(**json.loads(raw))) if raw else None

    def _with_events(self, view: str, info: VersionInfo) -> VersionInfo:
        """`events`: what the version aggregated, replay and live workers together, summed over partitions
        (each partition's count is written beside its states, exact across restarts)."""
        info.events = sum(int(n) for n in self.redis.hvals(events_key(view, info.version)))
        return info

    def require(self, view: str, version: int) -> VersionInfo:
        """A version a read names: an error naming the versions that exist, never nulls (gc removes retired
        ones). Raises UnknownFeatureError."""
        info = self.get(view, version)
        if info is None:
            known = ", ".join(f"v{v.version}" for v in self.list(view)) or "(none)"
            raise UnknownFeatureError(f"view {view} has no version {version} (never built, or removed by rillet "
                                      f"versions gc); versions: {known}")
        return info

    def active(self, view: str) -> int | None:
        raw = self.redis.get(self.active_key(view))
        return int(raw) if raw is not None else None

    def save(self, view: str, info: VersionInfo) -> None:
        self.redis.hset(self.versions_key(view), str(info.version), info.to_json())

    def kept(self, view: str) -> list[VersionInfo]:
        """The versions workers keep current (active, candidates, a previous one not yet expired), oldest first."""
        self.expire_kept(view)
        return [info for info in self.list(view) if info.kept]

    def for_worker(self, view: FeatureView) -> list[VersionInfo]:
        """The versions a live worker of this definition keeps current: every kept version of the view.

        The first worker of a view creates version 1, active. Raises VersionMismatchError (saying
        how to build it) when this definition is none of them: a worker never writes a version
        built from another definition unless that version is kept beside its own.
        """
        first = VersionInfo(1, view.fingerprint, ACTIVE, _now_ms(), view_spec(view))
        if self.redis.hsetnx(self.versions_key(view.name), "1", first.to_json()):
            self.redis.setnx(self.active_key(view.name), 1)
        kept = self.kept(view.name)
        if not any(info.fingerprint == view.fingerprint for info in kept):
            active = self.active(view.name) or 1
            info = self.get(view.name, active)
            building = [v.version for v in self.list(view.name)
                        if v.fingerprint == view.fingerprint and v.state == BUILDING]
            hint = (f"version {building[-1]} has this definition and is being built: let its replay finish"
                    if building else f"build it beside the live one with: rillet replay --view {view.name} "
                    f"--candidate (or build and switch at once: rillet replay --view {view.name})")
            raise VersionMismatchError(
                f"view {view.name}: this definition (fingerprint {view.fingerprint}) is not the active "
                f"version {active}'s ({info.fingerprint if info else '?'}) nor a candidate's; a worker only "
                f"writes versions kept current; {hint}")
        return kept

    def start_build(self, view: FeatureView, replay: dict[str, Any]) -> tuple[VersionInfo, bool]:
        """The version a replay of this definition builds: an unfinished one to resume, or a new one.

        Returns (version, resumed).
        """
        versions = self.list(view.name)
        for info in reversed(versions):
            if info.state == BUILDING and info.fingerprint == view.fingerprint:
                return info, True
        number = max((v.version for v in versions), default=0) + 1
        info = VersionInfo(number, view.fingerprint, BUILDING, _now_ms(), view_spec(view), replay=replay)
        if not self.redis.hsetnx(self.versions_key(view.name), str(number), info.to_json()):
            raise RilletError(f"view {view.name}: version {number} was created meanwhile; run the replay again")
        return info, False

    def resolve(self, view: str, pin: int | str) -> int:
        """The version a reference names: a number (`view@v2`) or a role (`view@candidate`, `@active`,
        `@previous`). Raises UnknownFeatureError naming the versions there are."""
        if isinstance(pin, int):
            return self.require(view, pin).version
        if pin == ACTIVE:
            return self.active(view) or 1
        now = _now_ms()  # a read writes nothing: a version whose time is up is only passed over
        found = sorted((i for i in self._records(view) if i.state == pin and not i.time_up(now)),
                       key=lambda i: i.version)
        if not found:
            known = ", ".join(f"v{v.version} {v.state}" for v in self.list(view)) or "(none)"
            raise UnknownFeatureError(f"view {view} has no {pin} version (versions: {known})")
        return found[-1].version

    def mark_candidate(self, view: str, version: int) -> None:
        """A built version becomes a candidate: workers keep it current beside the active one."""
        def change(records: dict[int, VersionInfo], active: int | None) -> tuple[None, int | None, list]:
            info = _named(view, records, version)
            if info.state != BUILDING:
                raise ConfigError(f"view {view}: version {version} is {info.state}, not building")
            info.state = CANDIDATE
            return None, active, [info]

        self._change(view, change)

    def promote(self, view: str, version: int | None = None, keep_s: float = 0.0) -> tuple[int | None, int]:
        """Make a version active (the newest candidate by default) in one transaction; the one it replaces is
        kept current for `keep_s` seconds (a `previous` version, for `rollback`), or retired at once when 0.
        Returns (the version replaced, the version now active)."""
        def change(records: dict[int, VersionInfo], active: int | None) -> tuple[Any, int | None, list]:
            if version is None:
                candidates = [i for i in records.values() if i.state == CANDIDATE]
                if not candidates:
                    raise ConfigError(f"view {view} has no candidate to promote; build one with: "
                                      f"rillet replay --view {view} --candidate")
                target = max(candidates, key=lambda i: i.version)
            else:
                target = _named(view, records, version)
            if target.state == RETIRED:
                raise ConfigError(f"view {view}: version {target.version} is retired and its states are stale; "
                                  f"build it again with rillet replay")
            if target.version == active:
                return (active, active), active, []
            now = _now_ms()
            changed = [target]
            for info in records.values():
                if info.state == PREVIOUS and info.version != target.version:  # one version kept for rollback
                    info.state, info.retired_ms, info.kept_until_ms = RETIRED, now, None
                    changed.append(info)
            old = records.get(active) if active is not None else None
            if old is not None:
                if keep_s > 0:
                    old.state, old.kept_until_ms = PREVIOUS, now + int(keep_s * 1000)
                else:
                    old.state, old.retired_ms = RETIRED, now
                changed.append(old)
            target.state, target.switched_ms, target.kept_until_ms = ACTIVE, now, None
            return (active, target.version), target.version, changed

        return self._change(view, change)

    def rollback(self, view: str) -> tuple[int, int]:
        """Make the previous version active again; the version it replaces stays current as a candidate
        (promote it again, or retire it). Returns (the version rolled back from, the version now active)."""
        self.expire_kept(view)

        def change(records: dict[int, VersionInfo], active: int | None) -> tuple[Any, int | None, list]:
            previous = [i for i in records.values() if i.state == PREVIOUS]
            if not previous:
                raise ConfigError(f"view {view} has no version kept for rollback (promote with --keep-previous; "
                                  f"a kept version is retired once its time is up)")
            target, now = previous[-1], _now_ms()
            target.state, target.switched_ms, target.kept_until_ms = ACTIVE, now, None
            changed = [target]
            old = records.get(active) if active is not None else None
            if old is not None and old.version != target.version:
                old.state = CANDIDATE
                changed.append(old)
            return (active, target.version), target.version, changed

        return self._change(view, change)

    def retire(self, view: str, version: int) -> None:
        """Stop keeping a candidate (or a previous, or an abandoned build) current; gc deletes it later."""
        def change(records: dict[int, VersionInfo], active: int | None) -> tuple[None, int | None, list]:
            info = _named(view, records, version)
            if info.version == active:
                raise ConfigError(f"view {view}: version {version} is active; promote another first")
            if info.state == RETIRED:
                return None, active, []
            info.state, info.retired_ms, info.kept_until_ms = RETIRED, _now_ms(), None
            return None, active, [info]

        self._change(view, change)

    def expire_kept(self, view: str) -> list[int]:
        """Retire previous versions whose time for a rollback is up. Returns them."""
        now = _now_ms()
        if not any(i.time_up(now) for i in self._records(view)):
            return []

        def change(records: dict[int, VersionInfo], active: int | None) -> tuple[list[int], int | None, list]:
            due = [i for i in records.values() if i.time_up(now)]
            for info in due:
                info.state, info.retired_ms, info.kept_until_ms = RETIRED, now, None
            return [i.version for i in due], active, due

        return self._change(view, change)

    def record_replay_rate(self, view: str, version: int, events_per_s: float) -> None:
        """What the replay that built a version read per second (`rillet plan` estimates the next one with it)."""
        def change(records: dict[int, VersionInfo], active: int | None) -> tuple[None, int | None, list]:
            info = _named(view, records, version)
            info.replay = {**info.replay, "events_per_s": round(events_per_s)}
            return None, active, [info]

        self._change(view, change)

    def generation(self, view: str) -> int:
        return int(self.redis.get(generation_key(view)) or 0)

    def _records(self, view: str) -> list[VersionInfo]:
        return [VersionInfo(**json.loads(v)) for v in self.redis.hvals(self.versions_key(view))]

    def _change(self, view: str, change: Any) -> Any:
        """Apply `change(records, active) -> (result, new active, records changed)` in one transaction with a
        bump of the view's generation (the keys share a hash tag: one slot on a cluster)."""
        key, active_key = self.versions_key(view), self.active_key(view)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key, active_key)
                    records = {int(k): VersionInfo(**json.loads(v)) for k, v in pipe.hgetall(key).items()}
                    raw = pipe.get(active_key)
                    active = int(raw) if raw is not None else None
                    result, new_active, changed = change(records, active)
                    if not changed and new_active == active:
                        pipe.reset()
                        return result
                    pipe.multi()
                    if new_active != active and new_active is not None:
                        pipe.set(active_key, new_active)
                    for info in changed:
                        pipe.hset(key, str(info.version), info.to_json())
                    pipe.incr(generation_key(view))
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue

    def recreate(self, view: FeatureView, version: int, replayed: bool = False, state: str = ACTIVE,
                 active: int | None = None) -> bool:
        """Put back a version's record and the active pointer after Redis lost them (nothing already there
        is changed): with the role the worker last saw, and the pointer on the version it last saw active.
        Returns True when the record was missing."""
        info = VersionInfo(version, view.fingerprint, state, _now_ms(), view_spec(view),
                           replay={"recreated": True} if replayed else {})
        missing = bool(self.redis.hsetnx(self.versions_key(view.name), str(version), info.to_json()))
        pointer = active if active is not None else (version if state == ACTIVE else None)
        if pointer is not None:
            self.redis.setnx(self.active_key(view.name), pointer)
        return missing

    def gc(self, view: str, grace_s: float = GC_GRACE_S) -> list[int]:
        """Delete versions retired more than `grace_s` ago: their online keys, progress and records.

        The grace covers reads in flight: on a cluster a read takes the pointer first and the
        states after, so a read that took it just before a switch still reads the old states.
        """
        self.expire_kept(view)
        removed = []
        for info in self.list(view):
            if info.state != RETIRED or (info.retired_ms or 0) > _now_ms() - grace_s * 1000:
                continue
            for what in ("e:*", "epoch*"):  # states, and one write-epoch hash per master (sinks.online.write_epochs)
                pattern = version_pattern(view, info.version, what)
                for batch in _batched(self.redis.scan_iter(pattern, count=1000), 1000):
                    self.redis.unlink(*batch)
            self.redis.delete(self.progress_key(view, info.version), events_key(view, info.version),
                              live_key(view, info.version), health_key(view, info.version),
                              history_key(view, info.version))
            self.redis.hdel(self.versions_key(view), str(info.version))
            removed.append(info.version)
        return removed


def _named(view: str, records: dict[int, VersionInfo], version: int) -> VersionInfo:
    info = records.get(version)
    if info is None:
        known = ", ".join(f"v{v} {i.state}" for v, i in sorted(records.items())) or "(none)"
        raise UnknownFeatureError(f"view {view} has no version {version} (versions: {known})")
    return info


def _batched(items: Any, size: int) -> Any:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _now_ms() -> int:
    return int(time.time() * 1000)
