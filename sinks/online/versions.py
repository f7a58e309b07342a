"""Versions of a view: numbered builds of its definition, and the active pointer readers follow.

Redis layout (built in sinks.online.keys), beside the online keys `rillet:{view}:v{n}:e:{entity}`:

    rillet:{{view}}:versions      hash: version -> JSON record (below)
    rillet:{{view}}:active        the active version's number
    rillet:{view}:v{n}:progress   hash: partition -> "watermark,last offset,aggregated" (a replay's commit point)
    rillet:{view}:v{n}:events     hash: partition -> events aggregated (replay and live workers)

A record holds the definition's fingerprint, its state (`building`, `active`,
`retired`), when it was created and switched, events processed, and the
definition itself (`spec`), so that a reader holding another definition can
still evaluate the active version's states. The switch is one MULTI/EXEC: the
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
    health_key,
    history_key,
    live_key,
    progress_key,
    version_pattern,
    versions_key,
)
from streams.definitions.view import DEFAULT_MAX_FUTURE, Feature, FeatureView
from streams.errors import RilletError, UnknownFeatureError, VersionMismatchError
from streams.windows import Lifetime, Session, Sliding, Tumbling

__all__ = ["VersionInfo", "VersionMismatchError", "VersionRegistry", "live_group", "view_from_spec", "view_spec"]

BUILDING, ACTIVE, RETIRED = "building", "active", "retired"
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def live_group(worker_group: str, versions: dict[str, VersionInfo]) -> str:
    """The consumer group (and Faust app id) of live workers for these views at these versions.

    A version its first worker created keeps the configured group. A version a
    replay built, the first one included, gets a group of its own: the replay
    sets its offsets where it ended, which Kafka only allows in a group with no
    live member, and the configured group may have members (other views'
    workers, or this view's old-version workers).
    """
    rebuilt = sorted(f"{view}-v{info.version}" for view, info in versions.items() if info.replay)
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
            "schema": str(view.schema),
            "features": [[f.name, f.field, f.aggregation, window(f.window)] for f in view.features]}


def view_from_spec(spec: dict[str, Any]) -> FeatureView:
    """The FeatureView a version was built with (for evaluating its states; its schema file may be gone)."""
    kinds = {"session": Session, "sliding": Sliding, "tumbling": Tumbling, "lifetime": Lifetime}
    features = [Feature(fld, agg, kinds[w[0]](*w[1:]), name=name) for name, fld, agg, w in spec["features"]]
    return FeatureView(spec["name"], spec["topic"], spec["schema"], spec["entity"], features,
                       ttl=spec["ttl_ms"], grace=spec["grace_ms"], event_time=spec["event_time"],
                       max_future=spec.get("max_future_ms", DEFAULT_MAX_FUTURE))


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

    def for_worker(self, view: FeatureView) -> int:
        """The version a live worker of this definition writes: the active one, if it is this definition.

        The first worker of a view creates version 1. Raises VersionMismatchError
        (saying to replay) when the active version was built from another definition.
        """
        first = VersionInfo(1, view.fingerprint, ACTIVE, _now_ms(), view_spec(view))
        if self.redis.hsetnx(self.versions_key(view.name), "1", first.to_json()):
            self.redis.setnx(self.active_key(view.name), 1)
        active = self.active(view.name) or 1
        info = self.get(view.name, active)
        if info is not None and info.fingerprint != view.fingerprint:
            building = [v.version for v in self.list(view.name)
                        if v.fingerprint == view.fingerprint and v.state == BUILDING]
            hint = (f"version {building[-1]} has this definition and is being built: let its replay finish"
                    if building else f"build it with: rillet replay --view {view.name}")
            raise VersionMismatchError(
                f"view {view.name}: this definition (fingerprint {view.fingerprint}) is not the active "
                f"version {active}'s ({info.fingerprint}); a worker only writes the active version; {hint}")
        return active

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

    def switch(self, view: str, version: int) -> int | None:
        """Make `version` active and retire the one before, atomically. Returns the old active version."""
        key, active_key = self.versions_key(view), self.active_key(view)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key, active_key)
                    old = pipe.get(active_key)
                    new = VersionInfo(**json.loads(pipe.hget(key, str(version))))
                    retired = VersionInfo(**json.loads(pipe.hget(key, old))) if old else None
                    new.state, new.switched_ms = ACTIVE, _now_ms()
                    pipe.multi()
                    pipe.set(active_key, version)
                    pipe.hset(key, str(version), new.to_json())
                    if retired is not None and retired.version != version:
                        retired.state, retired.retired_ms = RETIRED, _now_ms()
                        pipe.hset(key, str(retired.version), retired.to_json())
                    pipe.execute()
                    return int(old) if old else None
                except redis.WatchError:
                    continue

    def recreate(self, view: FeatureView, version: int, replayed: bool = False) -> bool:
        """Put back a version's record and the active pointer after Redis lost them (nothing already there
        is changed). Returns True when the record was missing."""
        info = VersionInfo(version, view.fingerprint, ACTIVE, _now_ms(), view_spec(view),
                           replay={"recreated": True} if replayed else {})
        missing = bool(self.redis.hsetnx(self.versions_key(view.name), str(version), info.to_json()))
        self.redis.setnx(self.active_key(view.name), version)
        return missing

    def gc(self, view: str, grace_s: float = GC_GRACE_S) -> list[int]:
        """Delete versions retired more than `grace_s` ago: their online keys, progress and records.

        The grace covers reads in flight: on a cluster a read takes the pointer first and the
        states after, so a read that took it just before a switch still reads the old states.
        """
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
