"""Online reads: `get_online_features`, Feast-style, evaluated by the one engine.

Values come from the stored window state evaluated `as_of` now (or an explicit
time at or after the entity's latest event), so a sliding window decays
between events exactly as semantics.md says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aredis

from sinks.online import OnlineStore
from streams.definitions import FeatureView
from streams.engine import ViewEngine
from streams.errors import UnknownFeatureError

__all__ = ["FeatureReader", "OnlineResponse", "ReadPlan"]


@dataclass
class OnlineResponse:
    """Rows in the order asked, each with its entity key and `{view}:{feature}` values."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    event_timestamps: list[dict[str, int | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[Any]]:
        """Column-oriented, like Feast's `OnlineResponse.to_dict()`."""
        columns: dict[str, list[Any]] = {}
        for row in self.rows:
            for name, value in row.items():
                columns.setdefault(name, []).append(value)
        return columns


@dataclass(frozen=True)
class ReadPlan:
    """What a read needs: the value names per view, the rows asked for, and the keys per view."""

    wanted: dict[str, list[str]]
    entity_rows: list[dict[str, Any]]
    keys: list[tuple[str, list[str]]]


class FeatureReader:
    """Reads features of the given views from the online store."""

    def __init__(self, views: list[FeatureView], client: redis.Redis, version: int = 1) -> None:
        self.views = {v.name: v for v in views}
        self.engines = {v.name: ViewEngine(v) for v in views}
        self.stores = {v.name: OnlineStore(v, version) for v in views}
        self.redis = client
        self._resolved: dict[tuple[str, ...], dict[str, list[str]]] = {}

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
        wanted: dict[str, list[str]] = {}
        for ref in features:
            view_name, sep, name = ref.partition(":")
            if not sep or not name:
                raise UnknownFeatureError(f"feature reference {ref!r}: write it as view:feature")
            engine = self.engines.get(view_name)
            if engine is None:
                raise UnknownFeatureError(
                    f"unknown view {view_name!r} in {ref!r}; views: {', '.join(sorted(self.engines))}"
                )
            names = engine.value_names if name == "*" else [name]
            for n in names:
                if n not in engine.value_names:
                    raise UnknownFeatureError(
                        f"view {view_name!r} has no feature {n!r}; it has: {', '.join(engine.value_names)}"
                    )
                wanted.setdefault(view_name, [])
                if n not in wanted[view_name]:
                    wanted[view_name].append(n)
        return wanted

    def plan(self, features: list[str], entity_rows: list[dict[str, Any]]) -> ReadPlan:
        """Which keys to read for these features and entity rows; errors name the missing piece."""
        wanted = self.resolve(features)
        keys: list[tuple[str, list[str]]] = []
        for view_name in wanted:
            view = self.views[view_name]
            entities = []
            for i, row in enumerate(entity_rows):
                if view.entity not in row:
                    raise UnknownFeatureError(f"entity row {i} has no {view.entity!r} (needed by view {view_name})")
                entities.append(str(row[view.entity]))
            keys.append((view_name, [self.stores[view_name].key(e) for e in entities]))
        return ReadPlan(wanted, entity_rows, keys)

    def evaluate(self, plan: ReadPlan, blobs_per_view: list[list[bytes | None]],
                 as_of: int | None = None) -> OnlineResponse:
        """Evaluate the fetched states with the engine, as of now or `as_of` (epoch ms)."""
        t_ms = int(time.time() * 1000) if as_of is None else as_of
        rows = plan.entity_rows
        response = OnlineResponse(rows=[{} for _ in rows], event_timestamps=[{} for _ in rows])
        for (view_name, _keys), blobs in zip(plan.keys, blobs_per_view, strict=True):
            engine, view = self.engines[view_name], self.views[view_name]
            for i, blob in enumerate(blobs):
                state = engine.decode(blob)
                # "now" may trail an entity's latest event by clock skew: read it as of that event
                values = engine.as_of(state, max(t_ms, state.latest_ms) if as_of is None and state else t_ms)
                row = response.rows[i]
                row[view.entity] = rows[i][view.entity]
                stamp = None if engine.expired(state, t_ms) else state.latest_ms
                for name in plan.wanted[view_name]:
                    row[f"{view_name}:{name}"] = values[name]
                    response.event_timestamps[i][f"{view_name}:{name}"] = stamp
        return response

    def get_online_features(self, features: list[str], entity_rows: list[dict[str, Any]],
                            as_of: int | None = None) -> OnlineResponse:
        """The features of each entity row, as of now or `as_of` (epoch ms): one round trip.

        Args:
            features: `view:feature` references (`view:*` for all of a view).
            entity_rows: one dict per entity, holding each view's entity field.
            as_of: epoch milliseconds; not earlier than each entity's latest event.
        """
        plan = self.plan(features, entity_rows)
        if not entity_rows:
            return OnlineResponse()
        if len(plan.keys) == 1:  # one view: a plain MGET, no pipeline object
            return self.evaluate(plan, [self.redis.mget(plan.keys[0][1])], as_of)
        pipe = self.redis.pipeline(transaction=False)
        for _view, keys in plan.keys:
            pipe.mget(keys)
        return self.evaluate(plan, pipe.execute(), as_of)

    async def get_online_features_async(self, client: aredis.Redis, features: list[str],
                                        entity_rows: list[dict[str, Any]], as_of: int | None = None) -> OnlineResponse:
        """`get_online_features` for asyncio servers, on an asyncio Redis client."""
        plan = self.plan(features, entity_rows)
        if not entity_rows:
            return OnlineResponse()
        async with client.pipeline(transaction=False) as pipe:
            for _view, keys in plan.keys:
                pipe.mget(keys)
            blobs = await pipe.execute()
        return self.evaluate(plan, blobs, as_of)
