"""The OpenAPI document of the embedded registry (`GET /openapi.json`): what it serves, for clients and
for the fuzz tests that check every answer against it."""

from __future__ import annotations

from typing import Any

__all__ = ["registry_openapi"]

_TYPE = "application/vnd.schemaregistry.v1+json"
_ERROR = {"type": "object", "required": ["error_code", "message"],
          "properties": {"error_code": {"type": "integer"}, "message": {"type": "string"}}}
_LEVEL = {"type": "string", "enum": ["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
                                     "FULL", "FULL_TRANSITIVE"]}
_SCHEMA_BODY = {"type": "object", "required": ["schema"], "properties": {
    "schema": {"type": "string", "description": "the Avro schema, as JSON text"},
    "schemaType": {"type": "string", "enum": ["AVRO"]},
    "references": {"type": "array", "maxItems": 0, "description": "not supported: inline referenced types"}}}
_SUBJECT = {"name": "subject", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_VERSION = {"name": "version", "in": "path", "required": True,
            "schema": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["latest"]}]}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


def _json(schema: dict, description: str = "ok") -> dict:
    return {"description": description, "content": {_TYPE: {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    return {str(s): _json(_ERROR, "error, with Confluent's error_code") for s in statuses}


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}, _TYPE: {"schema": schema}}}


def registry_openapi() -> dict[str, Any]:
    """The document, built fresh (callers may change their copy)."""
    version_record = {"type": "object", "required": ["subject", "version", "id", "schema"], "properties": {
        "subject": {"type": "string"}, "version": {"type": "integer"}, "id": {"type": "integer"},
        "schema": {"type": "string"}}}
    verdict = {"type": "object", "required": ["is_compatible"], "properties": {
        "is_compatible": {"type": "boolean"}, "messages": {"type": "array", "items": {"type": "string"}}}}
    verbose = {"name": "verbose", "in": "query", "required": False, "schema": {"type": "boolean"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "rillet embedded schema registry (Confluent-compatible, AVRO only)", "version": "1"},
        "paths": {
            "/": {"get": {"responses": {"200": _json({"type": "object"})}}},
            "/schemas/types": {"get": {"responses": {"200": _json({"type": "array", "items": {"type": "string"}})}}},
            "/schemas/ids/{id}": {"get": {"parameters": [_ID], "responses": {
                "200": _json({"type": "object", "required": ["schema"],
                              "properties": {"schema": {"type": "string"}}}), **_errors(404)}}},
            "/schemas/ids/{id}/schema": {"get": {"parameters": [_ID], "responses": {
                "200": _json({}), **_errors(404)}}},
            "/subjects": {"get": {"responses": {"200": _json({"type": "array", "items": {"type": "string"}})}}},
            "/subjects/{subject}": {
                "post": {"parameters": [_SUBJECT], "requestBody": _body(_SCHEMA_BODY), "responses": {
                    "200": _json(version_record), **_errors(400, 404, 408, 415, 422)}},
                "delete": {"parameters": [_SUBJECT, {"name": "permanent", "in": "query", "required": False,
                                                     "schema": {"type": "boolean"}}], "responses": {
                    "200": _json({"type": "array", "items": {"type": "integer"}}), **_errors(404)}}},
            "/subjects/{subject}/versions": {
                "get": {"parameters": [_SUBJECT], "responses": {
                    "200": _json({"type": "array", "items": {"type": "integer"}}), **_errors(404)}},
                "post": {"parameters": [_SUBJECT], "requestBody": _body(_SCHEMA_BODY), "responses": {
                    "200": _json({"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}),
                    **_errors(400, 408, 409, 415, 422)}}},
            "/subjects/{subject}/versions/{version}": {"get": {"parameters": [_SUBJECT, _VERSION], "responses": {
                "200": _json(version_record), **_errors(404, 422)}}},
            "/subjects/{subject}/versions/{version}/schema": {"get": {
                "parameters": [_SUBJECT, _VERSION], "responses": {"200": _json({}), **_errors(404, 422)}}},
            "/compatibility/subjects/{subject}/versions/{version}": {"post": {
                "parameters": [_SUBJECT, _VERSION, verbose], "requestBody": _body(_SCHEMA_BODY), "responses": {
                    "200": _json(verdict), **_errors(400, 404, 408, 415, 422)}}},
            "/compatibility/subjects/{subject}/versions": {"post": {
                "parameters": [_SUBJECT, verbose], "requestBody": _body(_SCHEMA_BODY), "responses": {
                    "200": _json(verdict), **_errors(400, 404, 408, 415, 422)}}},
            "/config": {
                "get": {"responses": {"200": _json({"type": "object", "required": ["compatibilityLevel"],
                                                    "properties": {"compatibilityLevel": _LEVEL}})}},
                "put": {"requestBody": _body({"type": "object", "required": ["compatibility"],
                                              "properties": {"compatibility": _LEVEL}}), "responses": {
                    "200": _json({"type": "object", "required": ["compatibility"],
                                  "properties": {"compatibility": _LEVEL}}), **_errors(400, 408, 415, 422)}}},
            "/config/{subject}": {
                "get": {"parameters": [_SUBJECT, {"name": "defaultToGlobal", "in": "query", "required": False,
                                                  "schema": {"type": "boolean"}}], "responses": {
                    "200": _json({"type": "object", "required": ["compatibilityLevel"],
                                  "properties": {"compatibilityLevel": _LEVEL}}), **_errors(404)}},
                "put": {"parameters": [_SUBJECT], "requestBody": _body(
                    {"type": "object", "required": ["compatibility"], "properties": {"compatibility": _LEVEL}}),
                    "responses": {"200": _json({"type": "object", "required": ["compatibility"],
                                                "properties": {"compatibility": _LEVEL}}),
                                  **_errors(400, 408, 415, 422)}}},
        },
    }
