"""Online reads: `get_online_features`, Feast-style, evaluated by the one engine.

Values come from the stored window state evaluated `as_of` now (or an explicit
time at or after the entity's latest event), so a sliding window decays
between events exactly as semantics.md says.

Reads follow each view's active-version pointer (sinks.online.versions): on one
server, one Lua script per view reads the pointer and that version's keys
together; on a Redis Cluster, where the states spread over slots no script can
span, the pointers first and then that version's states (the retired version's
states outlive any such read: `versions gc` waits a grace period). Either way a
read during a replay's switch sees the old version or the new one, never a mix.
A version built from another definition than the reader's is evaluated with
that version's own definition, stored with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
import redis.asyncio as aredis

from sinks.online.keys import STATE_INFIX, online_key, state_prefix
from sinks.online.statuses import entity_status, status_of_value, value_status
from sinks.online.value_cache import ValueCache
from sinks.redis_client import is_cluster, mget
from streams.definitions.derived import REQUEST_PREFIX, DerivedFeature
from streams.definitions.entity_keys import composite_key
from streams.definitions.services import FeatureService, Selection, find_service, select
from streams.definitions.view import FeatureView
from streams.errors import UnknownFeatureError, choices
from streams.kernel.engine import ViewEngine


class ReadLog(Protocol):
    """Where sampled reads are logged for the skew check (`sinks.observe.served_log.ServedLog`)."""

    rate: float

    def sampled(self) -> bool: ...

    def record(self, request_ms: int, as_of_ms: int | None, view: str, version: int, features: list[str],
               entities: list) -> None: ...

__all__ = ["FeatureReader", "OnlineResponse", "ReadPlan", "entity_status", "resolve_features", "status_of_value",
           "value_status"]


def resolve_features(engines: dict[str, ViewEngine], features: list[str]) -> dict[str, list[str]]:
    """`["payments:amount_sum_5m", "payments:*"]` -> {view: [value names]}; errors name what is unknown."""
    wanted: dict[str, list[str]] = {}
    for ref in features:
        view_name, sep, name = ref.partition(":")
        if not sep or not name:
            raise UnknownFeatureError(f"feature reference {ref!r}: write it as view:feature")
        engine = engines.get(view_name)
        if engine is None:
            raise UnknownFeatureError(
                f"unknown view {view_name!r} in {ref!r}; {choices(view_name, sorted(engines), 'views')}"
            )
        names = engine.value_names if name == "*" else [name]
        for n in names:
            if n not in engine.value_names:
                raise UnknownFeatureError(
                    f"view {view_name!r} has no feature {n!r}; {choices(n, engine.value_names)}"
                )
            wanted.setdefault(view_name, [])
            if n not in wanted[view_name]:
                wanted[view_name].append(n)
    return wanted


@dataclass
class OnlineResponse:
    """Rows in the order asked, each with its entity key and `{view}:{feature}` values."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    event_timestamps: list[dict[str, int | None]] = field(default_factory=list)
    derived_statuses: dict[str, list[str]] = field(default_factory=dict)  # derived feature -> status per row

    def to_dict(self) -> dict[str, list[Any]]:
        """Column-oriented, like Feast's `OnlineResponse.to_dict()`."""
        columns: dict[str, list[Any]] = {}
        for row in self.rows:
            for name, value in row.items():
                columns.setdefault(name, []).append(value)
        return columns


@dataclass(frozen=True)
class ReadPlan:
    """What a read needs: the value names per view, the rows asked for, and the entities per view."""

    wanted: dict[str, list[str]]  # every value read, derived inputs included
    entity_rows: list[dict[str, Any]]
    keys: list[tuple[str, list[str]]]  # (view, entity ids)
    derived: list[DerivedFeature] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # `view:feature` read only as derived inputs
    pins: dict[str, int] = field(default_factory=dict)  # view -> the version a reference named (`view@v2:f`)

    @property
    def feature_names(self) -> list[str]:
        """The names a response shows, in order: references, then derived features."""
        hidden = set(self.hidden)
        refs = [f"{view}:{name}" for view, names in self.wanted.items() for name in names]
        return [ref for ref in refs if ref not in hidden] + [d.name for d in self.derived]


# KEYS[1]: the view's active pointer; ARGV[1], ARGV[2]: a state key's text before and after the version
# (sinks.online.keys); ARGV[3..]: entities. Returns {version, {state or false, ...}}; MGET runs in slices (Lua's
# unpack has a stack limit).
_READ_ACTIVE = """
local v = redis.call('GET', KEYS[1]) or '1'
local out = {}
local n = #ARGV - 2
for first = 3, #ARGV, 4000 do
  local keys = {}
  for i = first, math.min(first + 3999, #ARGV) do keys[#keys + 1] = ARGV[1] .. v .. ARGV[2] .. ARGV[i] end
  local got = redis.call('MGET', unpack(keys))
  for i = 1, #keys do out[#out + 1] = got[i] end
end
return {v, out, n}
"""

Fetched = list[tuple[int, list[bytes | None]]]  # per view in the plan: (version read, one state per entity)


class FeatureReader:
    """Reads features of the given views from the online store, following each view's active version."""

    def __init__(self, views: list[FeatureView], client: redis.Redis, version: int | None = None,
                 served_log: ReadLog | None = None, services: dict[str, FeatureService] | None = None,
                 derived: dict[str, DerivedFeature] | None = None, value_cache: int = 16_384) -> None:
        self.views = {v.name: v for v in views}
        self.services = services or {}
        self.derived = derived or {}
        self.served_log = served_log if served_log is not None and served_log.rate > 0 else None
        self.engines = {v.name: ViewEngine(v) for v in views}
        self.redis = client
        self.version = version  # None: follow the active pointer
        self.value_cache = ValueCache(value_cache)  # states' values while they cannot change (0: none kept)
        self._resolved: dict[tuple[str, ...], dict[str, list[str]]] = {}
        self._selections: dict[tuple[Any, str | None], Selection] = {}
        self._version_engines: dict[tuple[str, int], ViewEngine] = {}
        self._script = client.register_script(_READ_ACTIVE)
        self._async_scripts: dict[int, Any] = {}

    def resolve(self, features: list[str]) -> dict[str, list[str]]:
        """`["payments:amount_sum_5m", "payments:*"]` -> {view: [value names]}, checked (and cached)."""
        key = tuple(features)
        cached = self._resolved.get(key)
        if cached is None:
            cached = self._resolve(features)
            if len(self._resolved) < 1024:
                self._resolved[key] = cached
        return cached

    def _resolve(self, features: list[str]) -> dict[str, list[str]]:
        return resolve_features(self.engines, features)

    def plan(self, features: list[str], entity_rows: list[dict[str, Any]], *, service: str | None = None) -> ReadPlan:
        """Which keys to read for these features (and a service's) and entity rows; errors name the missing piece."""
        selection = self._select(features, service)
        pins = {view_name: self._check_version(view_name, version) for view_name, version in selection.pins.items()
                if view_name in self.engines}
        if pins:  # a pinned version's own definition names its features (`view@v1:*`, a feature it alone has)
            engines = {**self.engines, **{name: self.engine_for(name, version) for name, version in pins.items()}}
            wanted = resolve_features(engines, selection.references)
            shown = resolve_features(engines, selection.outputs) if selection.outputs else {}
        else:
            wanted = self.resolve(selection.references)
            shown = self.resolve(selection.outputs) if selection.outputs else {}
        hidden = [f"{view}:{n}" for view, names in wanted.items() for n in names if n not in shown.get(view, [])]
        typed: dict[str, list[Any]] = {}  # request input -> its values as its declared type, per row
        for d in selection.derived:
            for name in d.request_inputs:
                for i, row in enumerate(entity_rows):
                    if name not in row:
                        raise UnknownFeatureError(f"entity row {i} has no {name!r} (a request input of derived "
                                                  f"feature {d.name})")
                if name not in typed:
                    typed[name] = d.request_values(name, [row[name] for row in entity_rows], "entity row")
        if typed:
            entity_rows = [{**row, **{name: values[i] for name, values in typed.items()}}
                           for i, row in enumerate(entity_rows)]
        keys: list[tuple[str, list[str]]] = []
        for view_name in wanted:
            view = self.views[view_name]
            fields, entities = view.entity_fields, []
            for i, row in enumerate(entity_rows):
                for name in fields:
                    if name not in row:
                        raise UnknownFeatureError(f"entity row {i} has no {name!r} (needed by view {view_name})")
                if len(fields) == 1:
                    entities.append(_entity_text(row[fields[0]], i, fields[0]))
                else:
                    entities.append(composite_key([_entity_text(row[name], i, name) for name in fields]))
            keys.append((view_name, entities))
        return ReadPlan(wanted, entity_rows, keys, selection.derived, hidden,
                        {name: version for name, version in pins.items() if name in wanted})

    def _select(self, features: list[Any], service: str | None) -> Selection:
        """`services.select` of a request's features, kept per distinct request (a serving path asks for the same
        lists again and again: 60 us of a 450 us read)."""
        key = (tuple(features or ()), service)
        try:
            found = self._selections.get(key)
        except TypeError:  # an unhashable item: select it every time
            key, found = None, None
        if found is None:
            found = select(list(features or []), find_service(self.services, service) if service else None,
                           self.derived)
            if key is not None and len(self._selections) < 1024:
                self._selections[key] = found
        return found

    def _check_version(self, view_name: str, version: int | str) -> int:
        """The number of a version a reference names, which must exist (gc removes retired ones): an error,
        never nulls. A role (`candidate`) is looked up at each read: a promotion moves it."""
        from sinks.online.versions import VersionRegistry

        if isinstance(version, int) and (view_name, version) in self._version_engines:
            return version
        return VersionRegistry(self.redis).resolve(view_name, version)

    def _script_args(self, view_name: str, entities: list[str]) -> tuple[list[str], list[str]]:
        from sinks.online.versions import VersionRegistry

        return [VersionRegistry.active_key(view_name)], [state_prefix(view_name), STATE_INFIX, *entities]

    def fetch(self, plan: ReadPlan) -> Fetched:
        """The states of the plan's entities, each view's from one version: one round trip (two on a
        cluster: the pointers, then the states)."""
        if self.version is not None or plan.pins or is_cluster(self.redis):
            pointers = None if self.version is not None else mget(self.redis, self._pointer_keys(plan))
            return [(version, [blob or None for blob in mget(self.redis, _state_keys(view, version, entities))])
                    for (view, entities), version in zip(plan.keys, self._versions(plan, pointers), strict=True)]
        if len(plan.keys) == 1:
            keys, args = self._script_args(*plan.keys[0])
            return [_fetched(self._script(keys=keys, args=args))]
        pipe = self.redis.pipeline(transaction=False)
        for view_name, entities in plan.keys:
            keys, args = self._script_args(view_name, entities)
            self._script(keys=keys, args=args, client=pipe)
        return [_fetched(reply) for reply in pipe.execute()]

    async def fetch_async(self, client: aredis.Redis, plan: ReadPlan) -> Fetched:
        """`fetch` on an asyncio client (one pipelined round trip; two on a cluster)."""
        if self.version is not None or plan.pins or is_cluster(client):
            pointers = None if self.version is not None else await mget(client, self._pointer_keys(plan))
            out = []
            for (view, entities), version in zip(plan.keys, self._versions(plan, pointers), strict=True):
                blobs = await mget(client, _state_keys(view, version, entities))
                out.append((version, [blob or None for blob in blobs]))
            return out
        script = self._async_scripts.get(id(client))
        if script is None:
            script = self._async_scripts[id(client)] = client.register_script(_READ_ACTIVE)
        if len(plan.keys) == 1:
            keys, args = self._script_args(*plan.keys[0])
            return [_fetched(await script(keys=keys, args=args))]
        async with client.pipeline(transaction=False) as pipe:
            for view_name, entities in plan.keys:
                keys, args = self._script_args(view_name, entities)
                await script(keys=keys, args=args, client=pipe)
            return [_fetched(reply) for reply in await pipe.execute()]

    @staticmethod
    def _pointer_keys(plan: ReadPlan) -> list[str]:
        from sinks.online.versions import VersionRegistry

        return [VersionRegistry.active_key(view) for view, _ in plan.keys]

    def _versions(self, plan: ReadPlan, pointers: list | None) -> list[int]:
        """Each view's version to read: the one its reference named, the reader's pinned one, or the active
        pointer's (1 before any)."""
        if pointers is None:
            pointers = [None] * len(plan.keys)
        return [plan.pins.get(view) or self.version or (int(p) if p else 1)
                for (view, _), p in zip(plan.keys, pointers, strict=True)]

    def engine_for(self, view_name: str, version: int) -> ViewEngine:
        """The engine that evaluates a version's states: this reader's, or the one the version was built with."""
        engine = self._version_engines.get((view_name, version))
        if engine is None:
            from sinks.online.versions import VersionRegistry, view_from_spec

            info = VersionRegistry(self.redis).get(view_name, version)
            mine = self.engines[view_name]
            if info is None or info.fingerprint == self.views[view_name].fingerprint or not info.spec:
                engine = mine
            else:
                engine = ViewEngine(view_from_spec(info.spec))
            self._version_engines[(view_name, version)] = engine
        return engine

    def evaluate(self, plan: ReadPlan, fetched: Fetched, as_of: int | None = None) -> OnlineResponse:
        """Evaluate the fetched states with the engine, as of now or `as_of` (epoch ms)."""
        now_ms = int(time.time() * 1000)
        t_ms = now_ms if as_of is None else as_of
        rows = plan.entity_rows
        response = OnlineResponse(rows=[{} for _ in rows], event_timestamps=[{} for _ in rows])
        for (view_name, keys), (version, blobs) in zip(plan.keys, fetched, strict=True):
            engine, fields = self.engine_for(view_name, version), self.views[view_name].entity_fields
            wanted = [(f"{view_name}:{name}", name) for name in plan.wanted[view_name]]
            logged: list | None = [] if self.served_log is not None else None
            for i, blob in enumerate(blobs):
                values, latest, read_ms = self._values(engine, blob, t_ms, as_of is None)
                row, stamps = response.rows[i], response.event_timestamps[i]
                for name in fields:
                    row[name] = rows[i][name]
                stamp = None if latest is None or latest < t_ms - engine.ttl_ms else latest  # engine.expired
                for ref, name in wanted:
                    row[ref] = values.get(name)  # a feature the version lacks: null
                    stamps[ref] = stamp
                if logged is not None and self.served_log.sampled():  # type: ignore[union-attr]
                    logged.append((keys[i], read_ms, latest, entity_status(stamp, latest is not None),
                                   [values.get(name) for name in plan.wanted[view_name]]))
            if logged:
                self.served_log.record(now_ms, as_of, view_name, version, plan.wanted[view_name],  # type: ignore[union-attr]
                                       logged)
        if plan.derived or plan.hidden:
            _add_derived(plan, response)
        return response

    def _values(self, engine: ViewEngine, blob: bytes | None, t_ms: int, now: bool) -> tuple[dict, int | None, int]:
        """(values, latest event time or None, the time read) of one stored state at `t_ms`; "now" may trail
        an entity's latest event by clock skew: it is read as of that event. Kept values are reused while
        they cannot have changed (sinks.online.value_cache)."""
        if blob is None:
            return engine.as_of(None, t_ms), None, t_ms
        kept = self.value_cache.get(engine, blob) if self.value_cache.entries else None
        if kept is not None:
            read_ms = max(t_ms, kept.latest_ms) if now else t_ms
            if kept.start <= read_ms < kept.until:
                return kept.values, kept.latest_ms, read_ms
        state = engine.decode(blob)
        assert state is not None
        read_ms = max(t_ms, state.latest_ms) if now else t_ms
        values = engine.as_of(state, read_ms)
        if self.value_cache.entries:
            self.value_cache.keep(engine, blob, values, state.latest_ms, read_ms, engine.steady_until(state, read_ms))
        return values, state.latest_ms, read_ms

    def get_online_features(self, features: list[str], entity_rows: list[dict[str, Any]],
                            as_of: int | None = None, *, service: str | None = None) -> OnlineResponse:
        """The features of each entity row, as of now or `as_of` (epoch ms): one round trip.

        Args:
            features: `view:feature` references (`view:*` for all of a view) and derived feature names.
            entity_rows: one dict per entity, holding each view's entity field(s) and the request inputs
                of the derived features asked for.
            as_of: epoch milliseconds; not earlier than each entity's latest event.
            service: a feature service's name: its features are read too, in the same round trip.
        """
        plan = self.plan(features, entity_rows, service=service)
        if not entity_rows:
            return OnlineResponse()
        return self.evaluate(plan, self.fetch(plan), as_of)

    async def get_online_features_async(self, client: aredis.Redis, features: list[str],
                                        entity_rows: list[dict[str, Any]], as_of: int | None = None, *,
                                        service: str | None = None) -> OnlineResponse:
        """`get_online_features` for asyncio servers, on an asyncio Redis client."""
        plan = self.plan(features, entity_rows, service=service)
        if not entity_rows:
            return OnlineResponse()
        return self.evaluate(plan, await self.fetch_async(client, plan), as_of)


def _add_derived(plan: ReadPlan, response: OnlineResponse) -> None:
    """Compute the derived features from the read values and the rows' request inputs, then drop the
    values read only as their inputs."""
    rows, asked = response.rows, plan.entity_rows
    for d in plan.derived:
        columns = [[asked[i][ref.removeprefix(REQUEST_PREFIX)] for i in range(len(rows))]
                   if ref.startswith(REQUEST_PREFIX) else [row.get(ref) for row in rows] for ref in d.inputs]
        values, statuses = d.evaluate(columns)
        for row, value in zip(rows, values, strict=True):
            row[d.name] = value
        response.derived_statuses[d.name] = statuses
    for ref in plan.hidden:
        for row, stamps in zip(rows, response.event_timestamps, strict=True):
            row.pop(ref, None)
            stamps.pop(ref, None)


def _state_keys(view: str, version: int, entities: list[str]) -> list[str]:
    return [online_key(view, version, e) for e in entities]


def _fetched(reply: list) -> tuple[int, list[bytes | None]]:
    version, blobs, _count = reply
    return int(version), [blob or None for blob in blobs]


def _entity_text(value: Any, row: int, name: str) -> str:
    """An entity value as its key text: a string or an integer, which must encode as UTF-8 (a lone
    surrogate cannot be a Redis key, nor any record key a producer sent)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UnknownFeatureError(f"entity row {row}: {name} must be a string or an integer, "
                                  f"not {type(value).__name__}")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnknownFeatureError(f"entity row {row}: {name} is not valid UTF-8 text") from None
    return text
