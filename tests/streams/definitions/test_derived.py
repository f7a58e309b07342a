"""Derived features: request inputs are typed, and converted the same way on every path."""

from __future__ import annotations

import pytest

from streams.definitions.derived import derived
from streams.definitions.services import pinned_versions, select
from streams.errors import DefinitionError, RequestInputError


def test_request_inputs_take_their_type_from_the_annotation_or_the_declaration():
    @derived(inputs=["v:a", "request:amount"])
    def by_annotation(a, amount: float):
        return amount

    @derived(inputs=["v:a", "request:n:int", "request:flag:bool", "request:tag:str"])
    def by_declaration(a, n, flag, tag):
        return n

    assert by_annotation.request_types == {"amount": float}
    assert by_annotation.inputs == ("v:a", "request:amount")
    assert by_declaration.request_types == {"n": int, "flag": bool, "tag": str}
    assert by_declaration.request_inputs == ["n", "flag", "tag"]
    # JSON numbers, CLI text and CSV cells give the same values
    assert by_annotation.request_values("amount", [12.5, "12.5", " 12.5", 12, None]) == [12.5, 12.5, 12.5, 12.0, None]
    assert by_declaration.request_values("n", ["7", 7, 7.0]) == [7, 7, 7]
    assert by_declaration.request_values("flag", ["true", "0", True]) == [True, False, True]
    assert by_declaration.request_values("tag", ["x"]) == ["x"]


@pytest.mark.parametrize(("name", "values", "needle"), [
    ("n", ["7", "seven"], "row 1 has 'seven', which is not a int"),
    ("n", [7.5], "row 0 has 7.5"),
    ("flag", ["maybe"], "'maybe'"),
    ("tag", [3], "row 0 has 3, which is not a str"),
])
def test_a_value_that_does_not_convert_names_the_input(name, values, needle):
    @derived(inputs=["request:n:int", "request:flag:bool", "request:tag:str"])
    def f(n, flag, tag):
        return n

    with pytest.raises(RequestInputError, match=f"request input {name!r} of derived feature f") as caught:
        f.request_values(name, values)
    assert needle in str(caught.value)


def test_an_untyped_request_input_is_refused_at_definition():
    with pytest.raises(DefinitionError, match=r"request input 'amount' needs a type: annotate its parameter"):
        derived(inputs=["v:a", "request:amount"], name="untyped")(lambda a, amount: a)
    with pytest.raises(DefinitionError, match=r"'decimal' is not one"):
        derived(inputs=["request:amount:decimal"], name="oddly")(lambda amount: amount)


def test_version_pins_in_references():
    assert pinned_versions(["payments@v2:amount_sum_5m", "payments@v2:*", "logins:n"]) == (
        ["payments:amount_sum_5m", "payments:*", "logins:n"], {"payments": 2})
    assert select(["payments@v3:*"], None, {}).pins == {"payments": 3}
    with pytest.raises(KeyError, match="pinned to two versions"):
        pinned_versions(["payments@v2:a", "payments@v3:b"])
    with pytest.raises(KeyError, match=r"write a version as view@v<number>:feature"):
        pinned_versions(["payments@latest:a"])
