"""Where schema ids come from: a Confluent-compatible registry, or Redis when none is set.

Both give the Confluent wire format what it needs: a stable integer id per
(subject, schema) and the schema for an id. Subjects follow Confluent's
TopicNameStrategy: `<topic>-value`.
"""

from __future__ import annotations

import json
from typing import Protocol

import fastavro
import redis

from streams.errors import SchemaRegistrationError, UnknownSchemaError

__all__ = [
    "ConfluentSchemaStore",
    "RedisSchemaStore",
    "SchemaRegistrationError",
    "SchemaStore",
    "UnknownSchemaError",
    "canonical",
    "open_schema_store",
    "subject_for",
]


def subject_for(topic: str) -> str:
    """Confluent's TopicNameStrategy subject for a topic's values."""
    return f"{topic}-value"


def canonical(schema: dict | str) -> str:
    """Avro's Parsing Canonical Form: equal for schemas that read and write the same."""
    parsed = json.loads(schema) if isinstance(schema, str) else schema
    return fastavro.schema.to_parsing_canonical_form(fastavro.parse_schema(parsed))


class SchemaStore(Protocol):
    def register(self, subject: str, schema: dict) -> int: ...
    def schema_by_id(self, schema_id: int) -> dict: ...


class RedisSchemaStore:
    """Schema ids kept in Redis: one id per canonical schema, shared by all subjects.

    Keys: `rillet:schemas:next_id` (counter), `rillet:schemas:by_id` (id -> schema JSON),
    `rillet:schemas:by_canonical` (canonical form -> id), `rillet:schemas:subject:<s>`
    (list of ids, oldest first).
    """

    _NEXT = "rillet:schemas:next_id"
    _BY_ID = "rillet:schemas:by_id"
    _BY_CANONICAL = "rillet:schemas:by_canonical"

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._cache: dict[int, dict] = {}

    def register(self, subject: str, schema: dict) -> int:
        form = canonical(schema)
        existing = self._redis.hget(self._BY_CANONICAL, form)
        if existing is None:
            new_id = int(self._redis.incr(self._NEXT))
            # HSETNX: a concurrent registration of the same schema keeps the first id
            if self._redis.hsetnx(self._BY_CANONICAL, form, new_id):
                self._redis.hset(self._BY_ID, new_id, json.dumps(schema))
            existing = self._redis.hget(self._BY_CANONICAL, form)
        schema_id = int(existing)
        key = f"rillet:schemas:subject:{subject}"
        if str(schema_id).encode() not in self._redis.lrange(key, 0, -1):
            self._redis.rpush(key, schema_id)
        self._cache[schema_id] = schema
        return schema_id

    def subject_schemas(self, subject: str) -> list[dict]:
        """The schemas registered under `subject`, oldest first."""
        return [self.schema_by_id(int(i)) for i in self._redis.lrange(f"rillet:schemas:subject:{subject}", 0, -1)]

    def schema_by_id(self, schema_id: int) -> dict:
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        raw = self._redis.hget(self._BY_ID, schema_id)
        if raw is None:
            raise UnknownSchemaError(f"no schema is registered with id {schema_id}")
        schema = json.loads(raw)
        self._cache[schema_id] = schema
        return schema


class ConfluentSchemaStore:
    """A Confluent-compatible Schema Registry through confluent-kafka's own client."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient({"url": url})
        self._cache: dict[int, dict] = {}

    def register(self, subject: str, schema: dict) -> int:
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return self._client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
        except SchemaRegistryError as exc:
            raise SchemaRegistrationError(
                f"registry refused the schema for {subject} ({exc.http_status_code}): {exc.error_message}"
            ) from exc
        except Exception as exc:  # connection errors surface as requests/httpx errors
            raise SchemaRegistrationError(f"schema registry unreachable: {type(exc).__name__}") from exc

    def schema_by_id(self, schema_id: int) -> dict:
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = json.loads(self._client.get_schema(schema_id).schema_str)
        except SchemaRegistryError as exc:
            raise UnknownSchemaError(f"no schema is registered with id {schema_id}") from exc
        self._cache[schema_id] = schema
        return schema


def open_schema_store(settings) -> SchemaStore:  # settings: streams.settings.Settings
    """The registry when RILLET_SCHEMA_REGISTRY_URL is set, else the Redis-backed store."""
    if settings.schema_registry_url:
        return ConfluentSchemaStore(settings.schema_registry_url)
    from sinks.redis_client import connect_redis

    return RedisSchemaStore(connect_redis(settings))
