"""`rillet serve`: online features over HTTP, in the shape of Feast's feature server.

    POST /features/online
    {"features": ["payments:amount_sum_5m"], "entities": {"user_id": ["u1", "u2"]}, "as_of": 1767225600000}

    -> {"metadata": {"feature_names": ["user_id", "payments:amount_sum_5m"]},
        "results": [{"values": ["u1", "u2"], "statuses": [...], "event_timestamps": [...]},
                    {"values": [12.5, null], "statuses": ["PRESENT", "NOT_FOUND"], "event_timestamps": [...]}]}

Results are column-oriented, one per name in `metadata.feature_names`, as
Feast returns them. Statuses: PRESENT, NULL_VALUE (the entity is known, its
window is empty or null), NOT_FOUND (never seen), OUTSIDE_MAX_AGE (older than
the view's ttl). A bad request gets a 4xx whose `message` names the problem.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as aredis
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from sinks.online.reads import FeatureReader
from sinks.online.statuses import entity_status, status_of_value
from sinks.redis_client import REDIS_DOWN
from streams.definitions.entity_keys import row_from_text
from streams.errors import RequestInputError, UnknownFeatureError
from streams.http_body import BodyError, read_json_body
from streams.kernel.engine import AsOfTooEarlyError
from streams.timeutil import format_ms, iso_to_ms

if TYPE_CHECKING:
    from sinks.serve.console import Console

__all__ = ["OPENAPI", "make_app", "openapi_document"]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _parse_request(body: Any, max_entities: int
                   ) -> tuple[list[str], str | None, list[str], list[dict[str, Any]], int | None]:
    """(features, feature service, entity keys, entity rows, as_of) from a request body; every problem is a
    4xx naming it."""
    if not isinstance(body, dict):
        raise _BadRequest(400, "the body must be a JSON object with 'features' and 'entities'")
    service = body.get("feature_service")
    if service is not None and not isinstance(service, str):
        raise _BadRequest(400, "'feature_service' must be a feature service's name")
    features = body.get("features", [] if service else None)
    if not isinstance(features, list) or not (features or service) or not all(isinstance(f, str) for f in features):
        raise _BadRequest(400, "'features' must be a non-empty list of 'view:feature' strings and derived feature "
                          "names (or give 'feature_service')")
    entities = body.get("entities")
    if not isinstance(entities, dict) or not entities:
        raise _BadRequest(400, "'entities' must be an object mapping each entity key to a list of values")
    columns = {}
    for key, values in entities.items():
        if not isinstance(values, list):
            raise _BadRequest(400, f"'entities.{key}' must be a list of values")
        for i, value in enumerate(values):
            if value is None or not isinstance(value, str | int | float):  # bool is an int: a request input may be one
                raise _BadRequest(400, f"'entities.{key}[{i}]' is {json.dumps(value)}: give a string or a number")
        columns[key] = values
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise _BadRequest(400, f"'entities' lists differ in length: {sorted(lengths)}")
    count = lengths.pop()
    if count > max_entities:
        raise _BadRequest(400, f"{count} entities in one request; at most {max_entities} "
                          "(rillet serve --max-entities): split the request")
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    return features, service, list(columns), rows, _parse_as_of(body.get("as_of"))


def _parse_as_of(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return iso_to_ms(value)
        except ValueError:  # a naive time too (NaiveTimeError is a ValueError)
            pass
    raise _BadRequest(400, "'as_of' must be epoch milliseconds or an ISO-8601 time with a timezone")


def make_app(reader: FeatureReader, client: aredis.Redis, *, max_entities: int = 10_000,
             body_timeout_s: float = 10.0, console: Console | None = None) -> web.Application:
    """The HTTP edge over a FeatureReader; every read is one pipelined round trip to Redis.

    Args:
        max_entities: the most entities one request may ask for (a 400 beyond), so one huge request
            cannot hold every other client up.
        body_timeout_s: how long a client may take to send its body (a 408 after).
    """
    routes = web.RouteTableDef()
    registry = CollectorRegistry()
    latency = Histogram("rillet_serve_request_seconds", "Time to answer POST /features/online, by status",
                        ["status"], registry=registry,
                        buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
    derived_errors = Counter("rillet_derived_errors", "Rows whose derived feature function raised (a null with "
                             "status ERROR)", ["feature"], registry=registry)
    service_versions = {name: service.fingerprint(reader.views, reader.derived)
                        for name, service in reader.services.items()}

    @web.middleware
    async def timed(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        if request.path == "/features/online":
            latency.labels(str(response.status)).observe(time.perf_counter() - started)
        return response

    def reply(data: Any, status: int = 200) -> web.Response:
        headers = {"Retry-After": "1"} if status == 503 else None  # an outage or a slot moving: try again soon
        try:
            body = orjson.dumps(data)  # 6x the standard library's encoder: 11% of a request's CPU was json.dumps
        except TypeError:  # an integer beyond 64 bits, which orjson refuses: the standard library writes it
            body = json.dumps(data).encode()
        return web.Response(body=body, status=status, content_type="application/json", headers=headers)

    @routes.post("/features/online")
    async def online(request: web.Request) -> web.Response:
        try:
            try:
                body = await read_json_body(request, body_timeout_s)
            except BodyError as exc:
                raise _BadRequest(exc.status, exc.message) from None
            features, service, entity_keys, rows, as_of = _parse_request(body, max_entities)
            plan = reader.plan(features, rows, service=service)
        except _BadRequest as exc:
            return reply({"error": "bad_request", "message": exc.message}, exc.status)
        except UnknownFeatureError as exc:
            status = 400 if "entity row" in str(exc) else 404
            return reply({"error": "bad_request" if status == 400 else "not_found", "message": str(exc)}, status)
        except RequestInputError as exc:
            return reply({"error": "bad_request", "message": str(exc)}, 400)
        try:
            fetched = await reader.fetch_async(client, plan)
            response = reader.evaluate(plan, fetched, as_of)
        except AsOfTooEarlyError as exc:
            return reply({"error": "as_of_too_early", "message": str(exc)}, 422)
        except REDIS_DOWN:
            return reply({"error": "unavailable", "message": "the online store does not answer"}, 503)
        known = {view: [blob is not None for blob in view_blobs]
                 for (view, _keys), (_version, view_blobs) in zip(plan.keys, fetched, strict=True)}
        refs = plan.feature_names
        formatted: dict[int | None, str | None] = {}  # an entity's features share one timestamp: format it once

        def stamp_text(ms: int | None) -> str | None:
            text = formatted.get(ms)
            if text is None and ms is not None:
                text = formatted[ms] = format_ms(ms)
            return text

        per_view: dict[str, tuple[list[str], list[str | None]]] = {}  # view -> entity statuses, event times
        results = [{"values": [row[key] for row in rows], "statuses": ["PRESENT"] * len(rows),
                    "event_timestamps": [None] * len(rows)} for key in entity_keys]
        for ref in refs:
            values = [row[ref] for row in response.rows]
            if ref in response.derived_statuses:  # a derived feature: computed now, no event time of its own
                derived_errors.labels(ref).inc(response.derived_statuses[ref].count("ERROR"))
                results.append({"values": values, "statuses": response.derived_statuses[ref],
                                "event_timestamps": [None] * len(values)})
                continue
            view = ref.split(":", 1)[0]
            entities = per_view.get(view)
            if entities is None:  # a view's features share their entities' statuses and event times
                stamps = [stamps[ref] for stamps in response.event_timestamps]
                entities = per_view[view] = ([entity_status(s, k) for s, k in zip(stamps, known[view], strict=True)],
                                             [stamp_text(s) for s in stamps])
            results.append({
                "values": values,
                "statuses": [status_of_value(status, v) for status, v in zip(entities[0], values, strict=True)],
                "event_timestamps": entities[1],
            })
        metadata: dict[str, Any] = {"feature_names": entity_keys + refs}
        if service:
            metadata["feature_service"] = {"name": service, "version": service_versions[service]}
        return reply({"metadata": metadata, "results": results})

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        try:
            await client.ping()
        except REDIS_DOWN:
            return reply({"status": "unavailable", "online_store": "down", "pid": os.getpid()}, 503)
        return reply({"status": "ok", "views": sorted(reader.views), "pid": os.getpid()})

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    refs = [f"{name}:{feature}" for name, engine in reader.engines.items() for feature in ["*", *engine.value_names]]
    entity_fields = sorted({f for view in reader.views.values() for f in view.entity_fields})
    document = openapi_document(max_entities, refs + sorted(reader.derived), entity_fields, sorted(reader.services))

    @routes.get("/openapi.json")
    async def openapi(request: web.Request) -> web.Response:
        return reply(document)

    if console is not None:
        async def lookup(query: Any) -> dict[str, Any]:
            """One entity's features now and as of a time, for the console's lookup box."""
            view, entity, as_of_text = query.get("view", ""), query.get("entity", "").strip(), query.get("as_of", "")
            try:
                as_of = None
                if as_of_text.strip():
                    as_of = int(as_of_text) if as_of_text.strip().isdigit() else iso_to_ms(as_of_text.strip())
                refs = [f"{view}:*"]
                names = reader.resolve(refs)[view]
                plan = reader.plan(refs, [row_from_text(reader.views[view].entity_fields, entity)])
                fetched = await reader.fetch_async(client, plan)
                now = reader.evaluate(plan, fetched).rows[0]
                then = reader.evaluate(plan, fetched, as_of).rows[0] if as_of is not None else {}
            except (UnknownFeatureError, AsOfTooEarlyError, ValueError) as exc:
                return {"error": str(exc), "view": view, "entity": entity, "as_of": as_of_text}
            except REDIS_DOWN:
                return {"error": "the online store does not answer", "view": view, "entity": entity,
                        "as_of": as_of_text}
            return {"view": view, "entity": entity, "as_of": as_of_text,
                    "rows": [(n, now.get(f"{view}:{n}"), then.get(f"{view}:{n}")) for n in names]}

        @routes.get("/")
        async def page(request: web.Request) -> web.Response:
            found = await lookup(request.query) if request.query.get("entity") else None
            figures = await asyncio.to_thread(console.figures)
            return web.Response(text=console.render(figures, found), content_type="text/html")

        @routes.get("/console.json")
        async def console_json(request: web.Request) -> web.Response:
            return reply(await asyncio.to_thread(console.figures))

    app = web.Application(middlewares=[timed])
    app.add_routes(routes)
    return app


_ERROR = {"type": "object", "required": ["error", "message"],
          "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "rillet online features", "version": "1"},
    "paths": {
        "/features/online": {"post": {
            "summary": "Feature values of many entities, as of now or `as_of`, in one round trip",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["features", "entities"],
                "properties": {
                    "features": {"type": "array", "minItems": 1, "items": {"type": "string"},
                                 "example": ["payments:amount_sum_5m"]},
                    "feature_service": {"type": "string", "description": "a feature service: its features too"},
                    "entities": {"type": "object", "minProperties": 1,
                                 "additionalProperties": {"type": "array", "items": {  # keys, request inputs
                                     "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}},
                                 "example": {"user_id": ["u0001", "u0002"]}},
                    "as_of": {"nullable": True,
                              "oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]},
                }}}}},
            "responses": {
                "200": {"description": "Column-oriented results, one per name in metadata.feature_names",
                        "content": {"application/json": {"schema": {
                            "type": "object", "required": ["metadata", "results"],
                            "properties": {
                                "metadata": {"type": "object", "properties": {
                                    "feature_names": {"type": "array", "items": {"type": "string"}},
                                    "feature_service": {"type": "object", "properties": {
                                        "name": {"type": "string"}, "version": {"type": "string"}}}}},
                                "results": {"type": "array", "items": {"type": "object", "properties": {
                                    "values": {"type": "array", "items": {}},
                                    "statuses": {"type": "array", "items": {"type": "string", "enum": [
                                        "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE", "ERROR"]}},
                                    "event_timestamps": {"type": "array",
                                                         "items": {"type": "string", "nullable": True}},
                                }}},
                            }}}}},
                "400": {"description": "Malformed body, missing entity key, or more entities than --max-entities",
                        "content": {"application/json": {"schema": _ERROR}}},
                "404": {"description": "Unknown view or feature", "content": {"application/json": {"schema": _ERROR}}},
                "408": {"description": "The body did not arrive in time",
                        "content": {"application/json": {"schema": _ERROR}}},
                "415": {"description": "A charset other than one Python knows",
                        "content": {"application/json": {"schema": _ERROR}}},
                "422": {"description": "as_of earlier than an entity's latest event",
                        "content": {"application/json": {"schema": _ERROR}}},
                "503": {"description": "The online store does not answer",
                        "content": {"application/json": {"schema": _ERROR}}},
            },
        }},
        "/metrics": {"get": {"summary": "Prometheus metrics: rillet_serve_request_seconds by status",
                             "responses": {"200": {"description": "text exposition format"}}}},
        "/health": {"get": {"summary": "Liveness and online-store reachability",
                            "responses": {"200": {"description": "ok"}, "503": {"description": "Redis down"}}}},
    },
}


def openapi_document(max_entities: int, features: list[str] | None = None,
                     entity_keys: list[str] | None = None, services: list[str] | None = None) -> dict[str, Any]:
    """The OpenAPI document of a server that accepts at most `max_entities` per request, naming the
    feature references and entity keys it serves (so clients and fuzzers know the valid ones)."""
    document = json.loads(json.dumps(OPENAPI))
    body = document["paths"]["/features/online"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    entities = body["properties"]["entities"]
    entities["additionalProperties"]["maxItems"] = max_entities
    if features:
        body["properties"]["features"]["items"]["enum"] = features
        body["properties"]["features"]["example"] = features[:1]
    if services:
        body["properties"]["feature_service"]["enum"] = services
    if entity_keys:
        entities["properties"] = {key: dict(entities["additionalProperties"]) for key in entity_keys}
        entities["example"] = {entity_keys[0]: ["u0001", "u0002"]}
    return document
