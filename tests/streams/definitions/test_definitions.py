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


def test_new_aggregation_names():
    from streams import Lifetime

    hour = Sliding("1h", "5m")
    assert Feature("amount", "approx_percentile(0.99)", hour).name == "amount_p99_1h_every_5m"
    assert Feature("amount", "approx_percentile(0.999)", hour).name == "amount_p99_9_1h_every_5m"
    assert Feature("amount", "last_k( 5 )", hour).aggregation == "last_k(5)"  # one spelling: one slot, one fingerprint
    assert Feature("merchant", "top_k(3)", Lifetime()).name == "merchant_top3_lifetime"
    assert Feature("merchant", "first_k(2)", hour).name == "merchant_first2_1h_every_5m"
    assert Feature(None, "age", Lifetime()).name == "age_lifetime"
    assert Feature("amount", "decayed_sum(1h)", Lifetime()).name == "amount_decayed_sum_1h_lifetime"


@pytest.mark.parametrize(("make", "needle"), [
    (lambda: Feature("amount", "top_k(0)", Tumbling("5m")), "k must be a whole number from 1 to 1000"),
    (lambda: Feature("amount", "approx_percentile(0)", Tumbling("5m")), r"q must be a number in \(0, 1\]"),
    (lambda: Feature("amount", "decayed_sum(0)", Tumbling("5m")), "half-life must be positive"),
    (lambda: Feature(None, "age", Tumbling("5m")),
     r"^Feature\(None, 'age', Tumbling\(\"5m\"\)\): age is defined over the entity's whole history; "
     r"use Lifetime\(\) as its window$"),
    (lambda: Feature(None, "age", Sliding("1h", "5m")), r"^Feature\(None, 'age', Sliding\(\"1h\", \"5m\"\)\)"),
    (lambda: __import__("streams").Lifetime("1h"), r"^Lifetime\('1h'\): a lifetime window takes no size"),
    (lambda: Feature("amount", "age", __import__("streams").Lifetime()), "takes no field"),
    (lambda: Feature("amount", "median(3)", Tumbling("5m")), "does not exist"),
])
def test_bad_parameters_name_the_problem(make, needle):
    with pytest.raises(DefinitionError, match=needle):
        make()


def test_composite_entities(tmp_path):
    from streams.definitions.entity_keys import composite_key, key_column, row_from_text, split_key

    schema = write_schema(tmp_path)
    view = FeatureView("v", "t", schema, ["entity", "tag"], [Feature("x", "sum", Tumbling("1m"))])
    assert view.entity == ("entity", "tag") and view.entity_fields == ("entity", "tag")
    key = view.entity_key({"entity": "a,\"b", "tag": 7, "x": 1.0})
    assert key == composite_key(["a,\"b", "7"])
    assert split_key(view.entity_fields, key) == {"entity": "a,\"b", "tag": "7"}
    single = FeatureView("s", "t", schema, ("entity",), [Feature("x", "sum", Tumbling("1m"))])
    assert single.entity == "entity" and single.entity_key({"entity": 42}) == "42"
    import pyarrow as pa

    table = pa.table({"entity": ["a,\"b", "c"], "tag": [7, 8]})
    assert key_column(view.entity_fields, table).to_pylist() == [key, composite_key(["c", "8"])]
    assert row_from_text(view.entity_fields, "u1, m7") == {"entity": "u1", "tag": "m7"}
    assert row_from_text(view.entity_fields, '["a,b", "c"]') == {"entity": "a,b", "tag": "c"}
    with pytest.raises(ValueError, match="give 2 values"):
        row_from_text(view.entity_fields, "u1")
    with pytest.raises(DefinitionError, match="distinct fields"):
        FeatureView("v", "t", schema, ("entity", "entity"), [Feature("x", "sum", Tumbling("1m"))])


def test_derived_features_evaluate_and_fail_per_row():
    from streams.definitions.derived import derived, errors

    @derived(inputs=["v:a", "v:b"])
    def ratio(a, b):
        return a / b

    before = errors["ratio"]
    values, statuses = ratio.evaluate([[1.0, 1.0, None, 2.0], [2.0, 0.0, 1.0, float("inf")]])
    assert values == [0.5, None, None, 0.0] and statuses == ["PRESENT", "ERROR", "ERROR", "PRESENT"]
    assert errors["ratio"] - before == 2

    @derived(inputs=["v:a", "request:b"], vectorized=True, name="scaled")
    def scaled(a, b: int):
        return a * b

    values, statuses = scaled.evaluate([[1.0, None, 3.0], [2, 2, 2]])
    assert values == [2.0, None, 6.0] and statuses == ["PRESENT", "NULL_VALUE", "PRESENT"]
    assert scaled.request_inputs == ["b"] and scaled.feature_inputs == ["v:a"]
    with pytest.raises(DefinitionError, match="neither 'view:feature'"):
        derived(inputs=["just_a_name"], name="bad")(lambda x: x)


def test_every_dead_letter_reason_the_code_names_is_exported_from_the_start():
    """The worker exports a zero series per reason in DEAD_LETTER_REASONS; a new reason must be listed there."""
    import re
    from pathlib import Path

    from streams.definitions.view import NotNull, Range
    from streams.errors import DEAD_LETTER_REASONS

    root = Path(__file__).resolve().parents[3]
    named = set(re.findall(r'EventDecodeError\(\s*"(\w+)"', (root / "schemas" / "codec.py").read_text()))
    named |= set(re.findall(r'DeadLetter\(\s*record[^,]*,\s*"(\w+)"',
                            (root / "streams" / "kernel" / "processor.py").read_text()))
    named |= {NotNull.reason, Range.reason}
    assert len(named) >= 9 and named <= set(DEAD_LETTER_REASONS), named - set(DEAD_LETTER_REASONS)
