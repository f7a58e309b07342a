"""check_pair / check against cases from the published suites.

Confluent's AvroCompatibilityTest (schema1..schema8 and its mode tests) and
Apache Avro's TestSchemaCompatibility (promotions, unions, enums, fixed,
names, aliases, arrays, maps, recursion), restated as JSON.
"""

from __future__ import annotations

import json

import pytest

from schemas.compatibility import InvalidSchemaError, Mode, check, check_pair


def record(*fields, name="myrecord"):
    return {"type": "record", "name": name, "fields": list(fields)}


F1 = {"type": "string", "name": "f1"}
# Confluent AvroCompatibilityTest
schema1 = record(F1)
schema2 = record(F1, {"type": "string", "name": "f2", "default": "foo"})
schema3 = record(F1, {"type": "string", "name": "f2"})
schema4 = record({"type": "string", "name": "f1_new", "aliases": ["f1"]})
schema6 = record({"type": ["null", "string"], "name": "f1", "doc": "doc of f1"})
schema7 = record({"type": ["null", "string", "int"], "name": "f1", "doc": "doc of f1"})
schema8 = record(F1, {"type": "string", "name": "f2", "default": "foo"},
                 {"type": "string", "name": "f3", "default": "bar"})


@pytest.mark.parametrize(("new", "previous", "mode", "ok"), [
    (schema2, [schema1], "BACKWARD", True),    # adding a field with a default
    (schema3, [schema1], "BACKWARD", False),   # adding a field without a default
    (schema4, [schema1], "BACKWARD", True),    # renaming a field with an alias
    (schema6, [schema1], "BACKWARD", True),    # evolving a field type to a union
    (schema1, [schema6], "BACKWARD", False),   # removing a type from a union
    (schema7, [schema6], "BACKWARD", True),    # adding a type to a union
    (schema6, [schema7], "BACKWARD", False),   # removing a type from a union
    (schema3, [schema1, schema2], "BACKWARD", True),              # latest only
    (schema3, [schema1, schema2], "BACKWARD_TRANSITIVE", False),  # all versions
    (schema2, [schema1], "FORWARD", True),     # adding a field
    (schema3, [schema1], "FORWARD", True),
    (schema1, [schema2], "FORWARD", True),     # removing a field with a default
    (schema1, [schema3], "FORWARD", False),    # removing a field without a default
    (schema1, [schema3, schema2], "FORWARD", True),
    (schema1, [schema3, schema2], "FORWARD_TRANSITIVE", False),
    (schema2, [schema1], "FULL", True),
    (schema3, [schema1], "FULL", False),
    (schema8, [schema1, schema2], "FULL", True),
    (schema8, [schema1, schema2], "FULL_TRANSITIVE", True),
    (schema3, [schema1], "NONE", True),
    (schema3, [], "BACKWARD", True),           # an empty history is compatible
])
def test_confluent_modes(new, previous, mode, ok):
    assert (check(new, previous, Mode(mode)) == []) is ok


ENUM_AB = {"type": "enum", "name": "E", "symbols": ["A", "B"]}
ENUM_ABC = {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}
ENUM_AB_DEFAULT_A = {"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "A"}
LONG_LIST = {"type": "record", "name": "LongList",
             "fields": [{"name": "value", "type": "long"}, {"name": "next", "type": ["null", "LongList"]}]}


@pytest.mark.parametrize(("reader", "writer", "ok"), [
    # Apache Avro TestSchemaCompatibility: promotions
    ("long", "int", True), ("int", "long", False), ("float", "long", True), ("double", "float", True),
    ("float", "double", False), ("string", "bytes", True), ("bytes", "string", True), ("int", "string", False),
    # arrays and maps resolve their items / values
    ({"type": "array", "items": "long"}, {"type": "array", "items": "int"}, True),
    ({"type": "array", "items": "int"}, {"type": "array", "items": "long"}, False),
    ({"type": "map", "values": "long"}, {"type": "map", "values": "int"}, True),
    ({"type": "map", "values": "string"}, {"type": "map", "values": "int"}, False),
    # unions
    (["int", "string"], "int", True), ("int", ["int", "string"], False), (["null", "int"], "null", True),
    (["long", "string"], ["int", "string"], True),
    # enums: the reader must know every symbol the writer may write, or have a default
    (ENUM_ABC, ENUM_AB, True), (ENUM_AB, ENUM_ABC, False), (ENUM_AB_DEFAULT_A, ENUM_ABC, True),
    # fixed
    ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 4}, True),
    ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 8}, False),
    # names: unqualified match, aliases
    (record(name="a.b.R"), record(name="R"), True),
    (record(name="R2"), record(name="R"), False),
    ({**record(name="R2"), "aliases": ["R"]}, record(name="R"), True),
    # record fields: reader defaults fill in what the writer lacks; extra writer fields are skipped
    (record({"name": "x", "type": "int", "default": 0}), record(), True),
    (record(), record({"name": "x", "type": "int"}), True),
    # recursive types
    (LONG_LIST, LONG_LIST, True),
])
def test_avro_reader_writer_rules(reader, writer, ok):
    assert (check_pair(reader, writer) == []) is ok


def test_problems_name_the_field_path_and_the_rule():
    reader = record({"name": "user", "type": "string"},
                    {"name": "address", "type": record({"name": "zip", "type": "int"}, name="Address")})
    writer = record({"name": "user", "type": "string"},
                    {"name": "address", "type": record({"name": "zip", "type": "string"}, name="Address")})
    [problem] = check_pair(reader, writer)
    assert problem.path == "/fields/address/type/fields/zip/type"
    assert problem.rule == "type_mismatch"
    assert "string" in problem.message and "int" in problem.message


def test_several_problems_each_at_its_own_path():
    reader = record({"name": "a", "type": "int"}, {"name": "b", "type": "string"}, {"name": "c", "type": "long"})
    writer = record({"name": "a", "type": "string"}, {"name": "b", "type": "string"})
    problems = {p.path: p.rule for p in check_pair(reader, writer)}
    assert problems == {"/fields/a/type": "type_mismatch", "/fields/c": "reader_field_missing_default_value"}


def test_schemas_as_json_text_and_invalid_ones():
    assert check_pair(json.dumps(schema2), json.dumps(schema1)) == []
    with pytest.raises(InvalidSchemaError, match="not JSON"):
        check_pair("{nope", schema1)
    with pytest.raises(InvalidSchemaError, match="not a valid Avro schema"):
        check_pair({"type": "record", "name": "R"}, schema1)


def test_the_direction_is_in_the_message():
    [problem] = check(schema3, [schema1], "BACKWARD")
    assert problem.path == "/fields/f2"
    assert "cannot read data written with version 1" in problem.message


# Karapace tests/unit/test_avro_compatibility.py: its own cases beyond Confluent's and Avro's
KARAPACE_FIELD_TYPES = [
    {"type": "array", "items": "string", "name": "fn"},
    {"type": "record", "name": "fn", "fields": [{"type": "string", "name": "inner_rec"}]},
    {"type": "enum", "name": "fn", "symbols": ["foo", "bar", "baz"]},
    {"type": "fixed", "size": 16, "name": "fn", "aliases": ["testalias"]},
    "string",
    {"type": "map", "values": "int", "name": "fn"},
]


@pytest.mark.parametrize("field_type", KARAPACE_FIELD_TYPES)
def test_karapace_union_to_simple(field_type):
    writer = {"type": "record", "name": "name", "namespace": "namespace",
              "fields": [{"type": field_type, "name": "fn"}]}
    reader = {"type": "record", "name": "name", "namespace": "namespace",
              "fields": [{"type": ["null", field_type], "name": "fn"}]}
    assert check_pair(reader, writer) == []


def test_karapace_optional_field_added():
    fields = [{"type": "string", "name": "provider"}, {"type": ["null", "string"], "name": "name", "default": None},
              {"type": ["null", "double"], "name": "price", "default": None}]
    writer = {"type": "record", "name": "CA", "namespace": "ns1", "fields": fields}
    reader = {**writer, "fields": [*fields, {"type": ["null", "string"], "name": "status_date", "default": None}]}
    assert check_pair(reader, writer) == []


def test_karapace_enum_default_change_is_backward_compatible():
    assert check({"type": "enum", "name": "test_default", "symbols": ["A"], "default": "A"},
                 [{"type": "enum", "name": "test_default", "symbols": ["A"]}], "BACKWARD") == []


def test_karapace_inner_record_namespace_does_not_matter():
    def outer(namespace):
        inner = {"type": "record", "name": "InnerRecord1", "namespace": namespace,
                 "fields": [{"name": "a", "type": "int"}]}
        return {"type": "record", "name": "Record1",
                "fields": [{"name": "f1", "type": ["null", {"type": "array", "items": inner}]}]}

    assert check_pair(outer("ns1"), outer("ns2")) == []
