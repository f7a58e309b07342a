"""Version roles on a real server: candidates, promotion with a kept previous version, rollback, retirement,
expiry, and the generation every change bumps (workers restart on it); and a version's stored definition
rebuilding the view exactly (its workers keep it current with it)."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from sinks.online.versions import VersionRegistry, view_from_spec, view_spec
from streams.definitions.changes import compare_views
from streams.definitions.services import pinned_versions
from streams.definitions.view import Feature, FeatureView, NotNull, Range
from streams.errors import ConfigError, UnknownFeatureError, VersionMismatchError
from streams.windows import Lifetime, Session, Sliding, Tumbling
from tests.helpers import write_schema


def _view(tmp_path, name: str, *features: Feature, **kwargs) -> FeatureView:
    return FeatureView(name, "t", write_schema(tmp_path), "entity", list(features), ttl="1h", **kwargs)


@pytest.fixture
def registry(stack):
    client = redis.Redis.from_url(stack.settings.redis_url)
    yield VersionRegistry(client)
    client.close()


def test_candidate_promote_rollback_and_retire(registry, tmp_path) -> None:
    name = f"roles{uuid.uuid4().hex[:8]}"
    v1 = _view(tmp_path, name, Feature("x", "sum", Tumbling("5m")))
    v2 = _view(tmp_path, name, Feature("x", "sum", Tumbling("10m")))
    assert [i.version for i in registry.for_worker(v1)] == [1]
    with pytest.raises(VersionMismatchError, match="--candidate"):
        registry.for_worker(v2)  # not kept: a worker of it would write a version nobody built
    info, resumed = registry.start_build(v2, {"from": None})
    assert (info.version, resumed) == (2, False)
    generation = registry.generation(name)
    registry.mark_candidate(name, 2)
    assert registry.generation(name) == generation + 1
    assert [i.version for i in registry.for_worker(v2)] == [1, 2]  # a worker of either keeps both current
    assert registry.resolve(name, "candidate") == 2 and registry.resolve(name, "active") == 1
    with pytest.raises(ConfigError, match="no version kept for rollback"):
        registry.rollback(name)

    assert registry.promote(name, keep_s=3600) == (1, 2)
    states = {i.version: i.state for i in registry.list(name)}
    assert states == {1: "previous", 2: "active"} and registry.active(name) == 2
    assert registry.resolve(name, "previous") == 1
    assert registry.gc(name, grace_s=0) == []  # a version kept for rollback is never removed

    assert registry.rollback(name) == (2, 1)
    assert {i.version: i.state for i in registry.list(name)} == {1: "active", 2: "candidate"}
    with pytest.raises(ConfigError, match="is active"):
        registry.retire(name, 1)
    registry.retire(name, 2)
    assert [i.version for i in registry.kept(name)] == [1]
    assert registry.gc(name, grace_s=0) == [2]
    with pytest.raises(UnknownFeatureError, match="no candidate version"):
        registry.resolve(name, "candidate")


def test_a_kept_version_retires_when_its_time_is_up(registry, tmp_path) -> None:
    name = f"expiry{uuid.uuid4().hex[:8]}"
    v1 = _view(tmp_path, name, Feature("x", "sum", Tumbling("5m")))
    registry.for_worker(v1)
    registry.start_build(_view(tmp_path, name, Feature("x", "max", Tumbling("5m"))), {})
    registry.promote(name, 2, keep_s=0.05)
    assert registry.get(name, 1).state == "previous"
    time.sleep(0.1)  # the kept time itself is what is tested here
    generation = registry.generation(name)
    assert registry.expire_kept(name) == [1]
    assert registry.get(name, 1).state == "retired" and registry.generation(name) == generation + 1
    with pytest.raises(ConfigError, match="retired"):
        registry.promote(name, 1)


def test_a_stored_definition_rebuilds_the_view_exactly(tmp_path) -> None:
    view = FeatureView("spec", "t", write_schema(tmp_path), ("entity", "x"),
                       [Feature("x", "sum", Tumbling("5m"), name="spend"), Feature(None, "count", Sliding("1h", "5m")),
                        Feature("x", "max", Session("10m")), Feature("x", "last_k(3)", Lifetime())],
                       ttl="2h", grace="1m", checks={"x": Range(0, 100), "entity": NotNull()}, partitions=3,
                       freshness="30s", max_future="1h")
    rebuilt = view_from_spec(view_spec(view))
    assert rebuilt.fingerprint == view.fingerprint
    assert (rebuilt.checks, rebuilt.partitions, rebuilt.freshness_ms) == (view.checks, 3, 30_000)
    (tmp_path / "event.avsc").unlink()  # a version outlives its schema file: it keeps the schema it was built with
    assert view_from_spec(view_spec(view)).schema_json == view.schema_json


def test_compare_views_names_each_change(tmp_path) -> None:
    before = _view(tmp_path, "c", Feature("x", "sum", Tumbling("5m"), name="spend"),
                   Feature("x", "count", Tumbling("5m")), Feature("x", "min", Tumbling("5m")))
    after = _view(tmp_path, "c", Feature("x", "sum", Tumbling("10m"), name="spend"),
                  Feature("x", "count", Tumbling("5m")), Feature("x", "max", Tumbling("5m")))
    change = compare_views(before, after)
    assert change.added == ["x_max_5m"] and change.removed == ["x_min_5m"] and change.settings == []
    assert change.redefined == [{"feature": "spend", "before": before.features[0].as_written,
                                 "after": after.features[0].as_written}]
    assert change.unchanged_features(after) == ["x_count_5m"]
    wider = compare_views(before, _view(tmp_path, "c", *before.features, grace="5m"))
    assert wider.settings == ["grace 0d -> 5m"] and wider.unchanged_features(before) == []
    assert not compare_views(before, before).changed


def test_a_reference_names_a_version_by_number_or_role() -> None:
    refs, pins = pinned_versions(["p@candidate:a", "q@v3:*", "r:b"])
    assert refs == ["p:a", "q:*", "r:b"] and pins == {"p": "candidate", "q": 3}
    with pytest.raises(UnknownFeatureError, match="@candidate"):
        pinned_versions(["p@newest:a"])
    with pytest.raises(UnknownFeatureError, match="two versions"):
        pinned_versions(["p@candidate:a", "p@v1:b"])
