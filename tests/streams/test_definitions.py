from __future__ import annotations

from datetime import timedelta

import pytest

from streams import Feature, FeatureView, Session, Sliding, Tumbling, load_views
from streams.errors import DefinitionError
from tests.helpers import write_schema


def test_feature_default_names():
    assert Feature("amount", "sum", Tumbling(timedelta(minutes=5))).name == "amount_sum_5m"
    assert Feature("amount", "mean", Sliding("1h", "5m")).name == "amount_mean_1h_every_5m"
    assert Feature("amount", "count", Session("30m")).name == "amount_count_session_30m"


@pytest.mark.parametrize(("make", "needle"), [
    (lambda: Sliding("1h", "7m"), "whole multiple"),
    (lambda: Tumbling(0), "positive"),
    (lambda: Tumbling("5 minutes"), "not a duration"),
    (lambda: Feature("amount", "median", Tumbling("5m")), "does not exist"),
    (lambda: Feature(None, "sum", Tumbling("5m")), "needs a field"),
])
def test_bad_definitions_name_the_problem(make, needle):
    with pytest.raises(DefinitionError, match=needle):
        make()


def test_view_checks(tmp_path):
    schema = write_schema(tmp_path)
    f = Feature("x", "sum", Tumbling("1m"))
    with pytest.raises(DefinitionError, match="repeat"):
        FeatureView("v", "t", schema, "entity", [f, f])
    with pytest.raises(DefinitionError, match="at least one"):
        FeatureView("v", "t", schema, "entity", [])
    view = FeatureView("v", "t", schema, "entity", [f], ttl="1h", grace="30s")
    assert (view.ttl_ms, view.grace_ms, view.dlq_topic) == (3_600_000, 30_000, "t.dlq")


def test_fingerprint_changes_with_the_definition(tmp_path):
    schema = write_schema(tmp_path)
    a = FeatureView("v", "t", schema, "entity", [Feature("x", "sum", Tumbling("1m"))])
    b = FeatureView("v", "t", schema, "entity", [Feature("x", "sum", Tumbling("2m"))])
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == FeatureView("v", "t", schema, "entity", [Feature("x", "sum", Tumbling("1m"))]).fingerprint


def test_example_view_loads():
    [view] = load_views("examples/payments/features.py")
    assert view.name == "payments" and view.schema.is_file()
