"""The embedded registry, driven over HTTP by confluent-kafka's own client, serializer and deserializer."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from streams.stack.embedded import free_port
from tests.helpers import RegistryProcess

V1 = {"type": "record", "name": "Payment", "namespace": "t",
      "fields": [{"name": "user_id", "type": "string"}, {"name": "amount", "type": "double"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "merchant", "type": "string", "default": ""}]}
BAD = {**V1, "fields": [{"name": "user_id", "type": "string"}, {"name": "amount", "type": "string"}]}


@pytest.fixture
def registry(tmp_path):
    running = RegistryProcess(tmp_path / "registry.json").start()
    yield running
    running.stop()


def avro(schema):
    return Schema(json.dumps(schema), "AVRO")


def test_register_fetch_evolve_and_refuse(registry):
    client = registry.client()
    first = client.register_schema("payments-value", avro(V1))
    assert client.register_schema("payments-value", avro(V1)) == first          # same schema, same id
    assert json.loads(client.get_schema(first).schema_str) == V1
    assert client.test_compatibility("payments-value", avro(V2)) is True
    assert client.test_compatibility("payments-value", avro(BAD)) is False
    second = client.register_schema("payments-value", avro(V2))
    assert second != first
    assert client.get_latest_version("payments-value").version == 2
    assert client.get_subjects() == ["payments-value"]
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("payments-value", avro(BAD))
    assert refused.value.http_status_code == 409 and refused.value.error_code == 409
    assert "/fields/amount/type" in refused.value.error_message
    with pytest.raises(SchemaRegistryError) as invalid:
        client.register_schema("other-value", Schema('{"type": "record"}', "AVRO"))
    assert invalid.value.http_status_code == 422 and invalid.value.error_code == 42201
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_schema(999)
    assert missing.value.http_status_code == 404 and missing.value.error_code == 40403


def test_config_global_and_per_subject(registry):
    client = registry.client()
    assert client.get_compatibility() == "BACKWARD"
    client.register_schema("s-value", avro(V1))
    client.set_compatibility("s-value", "NONE")
    assert client.get_compatibility("s-value") == "NONE"
    client.register_schema("s-value", avro(BAD))  # NONE accepts anything
    with pytest.raises(SchemaRegistryError) as bad_level:
        client.set_compatibility(level="SIDEWAYS")
    assert bad_level.value.error_code == 42203


def test_ids_survive_a_restart_and_serdes_round_trip(tmp_path):
    registry = RegistryProcess(tmp_path / "registry.json").start()
    try:
        serializer = AvroSerializer(registry.client(), json.dumps(V1))
        payload = serializer({"user_id": "u1", "amount": 2.5},
                             SerializationContext("payments", MessageField.VALUE))
        first_id = registry.client().get_latest_version("payments-value").schema_id
    finally:
        registry.stop()
    registry = RegistryProcess(tmp_path / "registry.json")
    registry.port = free_port()
    registry.start()
    try:
        client = registry.client()
        assert client.get_latest_version("payments-value").schema_id == first_id
        assert client.register_schema("payments-value", avro(V2)) == first_id + 1
        record = AvroDeserializer(client)(payload, SerializationContext("payments", MessageField.VALUE))
        assert record == {"user_id": "u1", "amount": 2.5}
    finally:
        registry.stop()
