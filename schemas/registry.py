"""An embedded, Confluent-compatible Schema Registry: `rillet registry` (started by `rillet up`).

Implements the part of Confluent's REST API that Confluent's clients and rillet
use: subjects and versions, schemas by global id, global and per-subject
compatibility config, the compatibility test endpoints, 409 on an incompatible
registration and 422 on an invalid schema, with Confluent's error codes and
bodies. Only AVRO. The state is a JSON file rewritten atomically on every
change, so ids survive a restart.

`RegistryState` holds the rules and knows no HTTP; `make_app` is the HTTP edge.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from schemas.compatibility import InvalidSchemaError, Mode, check, check_pair
from schemas.registry_openapi import registry_openapi
from streams.errors import RegistryError
from streams.http_body import BodyError, read_json_body

__all__ = ["RegistryError", "RegistryState", "make_app", "serve"]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def _identity(schema: dict | list | str) -> str:
    """Two registrations are the same schema when their JSON is equal (docs and defaults count)."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


@dataclass
class RegistryState:
    """Subjects, versions, global ids and compatibility config; persisted to `path` when given."""

    path: Path | None = None
    next_id: int = 1
    schemas: dict[int, str] = field(default_factory=dict)          # id -> schema text
    ids: dict[str, int] = field(default_factory=dict)              # identity -> id
    subjects: dict[str, list[dict]] = field(default_factory=dict)  # subject -> [{version, id, deleted}]
    compatibility: str = "BACKWARD"
    subject_compatibility: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------ persistence
    @classmethod
    def load(cls, path: Path) -> RegistryState:
        if not path.exists():
            return cls(path=path)
        data = json.loads(path.read_text())
        state = cls(path=path, next_id=data["next_id"], compatibility=data["compatibility"],
                    schemas={int(k): v for k, v in data["schemas"].items()},
                    subjects=data["subjects"], subject_compatibility=data["subject_compatibility"])
        state.ids = {_identity(json.loads(text)): schema_id for schema_id, text in state.schemas.items()}
        return state

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as handle:
            json.dump({"next_id": self.next_id, "compatibility": self.compatibility, "schemas": self.schemas,
                       "subjects": self.subjects, "subject_compatibility": self.subject_compatibility}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    # ------------------------------------------------------------------ reads
    def live_versions(self, subject: str) -> list[dict]:
        versions = [v for v in self.subjects.get(subject, []) if not v["deleted"]]
        if not versions:
            raise _subject_not_found(subject)
        return versions

    def version(self, subject: str, version: str | int) -> dict:
        versions = self.live_versions(subject)
        if str(version) in ("latest", "-1"):
            return versions[-1]
        try:
            number = _strict_int(str(version))
        except ValueError:
            raise RegistryError(422, 42202, f"The specified version '{version}' is not a valid version id. "
                                "Allowed values are between [1, 2^31-1] and the string \"latest\"") from None
        for entry in versions:
            if entry["version"] == number:
                return entry
        raise RegistryError(404, 40402, f"Version {number} not found.")

    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self.schemas:
            raise RegistryError(404, 40403, f"Schema {schema_id} not found")
        return self.schemas[schema_id]

    def mode_of(self, subject: str) -> Mode:
        return Mode(self.subject_compatibility.get(subject, self.compatibility))

    # ---------------------------------------------------------------- changes
    @staticmethod
    def parse(body: dict) -> tuple[Any, str]:
        kind = body.get("schemaType", "AVRO") or "AVRO"
        if kind != "AVRO":
            raise RegistryError(422, 42201, f"schemaType {kind} is not supported; this registry keeps AVRO only")
        text = body.get("schema")
        if not isinstance(text, str):
            raise RegistryError(422, 42201, "Either the input schema or one its references is invalid: no schema")
        if body.get("references"):
            raise RegistryError(422, 42201, "Schema references are not supported by this registry: inline the "
                                "referenced types in the schema")
        try:
            parsed = json.loads(text)
            check_pair(parsed, parsed)  # full Avro parse, defaults checked against their types
        except (ValueError, InvalidSchemaError) as exc:
            raise RegistryError(422, 42201, f"Either the input schema or one its references is invalid: {exc}") \
                from None
        except RecursionError:
            raise RegistryError(422, 42201, "Either the input schema or one its references is invalid: "
                                "nested too deeply") from None
        return parsed, text

    def register(self, subject: str, body: dict) -> dict:
        """Register under `subject`; the same schema again returns its existing id and version."""
        parsed, text = self.parse(body)
        identity = _identity(parsed)
        existing_id = self.ids.get(identity)
        live = [v for v in self.subjects.get(subject, []) if not v["deleted"]]
        for entry in live:
            if entry["id"] == existing_id:
                return {"id": existing_id, "version": entry["version"], "subject": subject, "schema": text}
        problems = _checked(parsed, [json.loads(self.schemas[v["id"]]) for v in live], self.mode_of(subject))
        if problems:
            details = "; ".join(str(p) for p in problems)
            raise RegistryError(409, 409, f"Schema being registered is incompatible with an earlier schema for "
                                f"subject \"{subject}\", details: [{details}]")
        if existing_id is None:
            existing_id = self.next_id
            self.next_id += 1
            self.schemas[existing_id] = text
            self.ids[identity] = existing_id
        all_versions = self.subjects.setdefault(subject, [])
        number = max((v["version"] for v in all_versions), default=0) + 1
        all_versions.append({"version": number, "id": existing_id, "deleted": False})
        self.save()
        return {"id": existing_id, "version": number, "subject": subject, "schema": text}

    def lookup(self, subject: str, body: dict) -> dict:
        parsed, text = self.parse(body)
        schema_id = self.ids.get(_identity(parsed))
        for entry in self.live_versions(subject):
            if entry["id"] == schema_id:
                return {"subject": subject, "id": schema_id, "version": entry["version"], "schema": text}
        raise RegistryError(404, 40403, "Schema not found")

    def test(self, subject: str, body: dict, version: str | None) -> list[str]:
        """Problems of a candidate against one version (or, with None, the versions its mode compares)."""
        parsed, _ = self.parse(body)
        if subject not in self.subjects or not any(not v["deleted"] for v in self.subjects[subject]):
            if version is None:
                return []
            raise _subject_not_found(subject)
        mode = self.mode_of(subject)
        if version is None:
            previous = [json.loads(self.schemas[v["id"]]) for v in self.live_versions(subject)]
        else:
            previous = [json.loads(self.schemas[self.version(subject, version)["id"]])]
            mode = Mode(mode.value.removesuffix("_TRANSITIVE"))
        return [str(p) for p in _checked(parsed, previous, mode)]

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        versions = self.subjects.get(subject)
        if not versions:
            raise _subject_not_found(subject)
        numbers = [v["version"] for v in versions if permanent or not v["deleted"]]
        if permanent:
            del self.subjects[subject]
        else:
            for v in versions:
                v["deleted"] = True
        self.save()
        return numbers

    def set_compatibility(self, subject: str | None, level: Any) -> str:
        """Set a level; anything but one of the level names (a missing key, null, a typo) is refused,
        never read as NONE, which would turn checking off."""
        try:
            if not isinstance(level, str):
                raise ValueError(level)
            mode = Mode(level.upper())
        except ValueError:
            raise RegistryError(422, 42203, "Invalid compatibility level. Valid values are none, backward, "
                                "forward, full, backward_transitive, forward_transitive, and full_transitive"
                                ) from None
        if subject is None:
            self.compatibility = mode.value
        else:
            self.subject_compatibility[subject] = mode.value
        self.save()
        return mode.value


def make_app(state: RegistryState) -> web.Application:
    """The HTTP edge: routes, JSON bodies, Confluent's content type and error bodies."""
    routes = web.RouteTableDef()

    def reply(data: Any, status: int = 200) -> web.Response:
        return web.Response(text=json.dumps(data), status=status, content_type=CONTENT_TYPE.split(";")[0])

    async def body(request: web.Request) -> dict:
        try:
            data = await read_json_body(request)
        except BodyError as exc:
            raise RegistryError(exc.status if exc.status != 400 else 422, 42201 if exc.status == 400
                                else exc.status * 100, f"request body: {exc.message}") from None
        if not isinstance(data, dict):
            raise RegistryError(422, 42201, "request body must be a JSON object")
        return data

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except RegistryError as exc:
            return reply({"error_code": exc.error_code, "message": exc.message}, exc.status)

    @routes.get("/")
    async def root(request: web.Request) -> web.Response:
        return reply({})

    @routes.get("/openapi.json")
    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(registry_openapi())

    @routes.get("/schemas/types")
    async def types(request: web.Request) -> web.Response:
        return reply(["AVRO"])

    @routes.get("/schemas/ids/{id}")
    async def by_id(request: web.Request) -> web.Response:
        return reply({"schema": state.schema_by_id(_int(request.match_info["id"]))})

    @routes.get("/schemas/ids/{id}/schema")
    async def raw_by_id(request: web.Request) -> web.Response:
        return reply(json.loads(state.schema_by_id(_int(request.match_info["id"]))))

    @routes.get("/subjects")
    async def subjects(request: web.Request) -> web.Response:
        return reply(sorted(s for s, vs in state.subjects.items() if any(not v["deleted"] for v in vs)))

    @routes.get("/subjects/{subject}/versions")
    async def versions(request: web.Request) -> web.Response:
        return reply([v["version"] for v in state.live_versions(request.match_info["subject"])])

    @routes.post("/subjects/{subject}/versions")
    async def register(request: web.Request) -> web.Response:
        return reply(state.register(request.match_info["subject"], await body(request)))

    @routes.get("/subjects/{subject}/versions/{version}")
    async def get_version(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        entry = state.version(subject, request.match_info["version"])
        return reply({"subject": subject, "version": entry["version"], "id": entry["id"],
                      "schema": state.schemas[entry["id"]]})

    @routes.get("/subjects/{subject}/versions/{version}/schema")
    async def get_version_schema(request: web.Request) -> web.Response:
        entry = state.version(request.match_info["subject"], request.match_info["version"])
        return reply(json.loads(state.schemas[entry["id"]]))

    @routes.post("/subjects/{subject}")
    async def lookup(request: web.Request) -> web.Response:
        return reply(state.lookup(request.match_info["subject"], await body(request)))

    @routes.delete("/subjects/{subject}")
    async def delete_subject(request: web.Request) -> web.Response:
        permanent = request.query.get("permanent", "false").lower() == "true"
        return reply(state.delete_subject(request.match_info["subject"], permanent))

    @routes.post("/compatibility/subjects/{subject}/versions/{version}")
    async def test_version(request: web.Request) -> web.Response:
        problems = state.test(request.match_info["subject"], await body(request), request.match_info["version"])
        return reply(_verdict(problems, request))

    @routes.post("/compatibility/subjects/{subject}/versions")
    async def test_all(request: web.Request) -> web.Response:
        problems = state.test(request.match_info["subject"], await body(request), None)
        return reply(_verdict(problems, request))

    @routes.get("/config")
    async def get_config(request: web.Request) -> web.Response:
        return reply({"compatibilityLevel": state.compatibility})

    @routes.put("/config")
    async def put_config(request: web.Request) -> web.Response:
        return reply({"compatibility": state.set_compatibility(None, (await body(request)).get("compatibility"))})

    @routes.get("/config/{subject}")
    async def get_subject_config(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        if subject in state.subject_compatibility:
            return reply({"compatibilityLevel": state.subject_compatibility[subject]})
        if request.query.get("defaultToGlobal", "false").lower() == "true":
            return reply({"compatibilityLevel": state.compatibility})
        raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")

    @routes.put("/config/{subject}")
    async def put_subject_config(request: web.Request) -> web.Response:
        level = (await body(request)).get("compatibility")
        return reply({"compatibility": state.set_compatibility(request.match_info["subject"], level)})

    app = web.Application(middlewares=[errors])
    app.add_routes(routes)
    return app


def _strict_int(text: str) -> int:
    """Plain ASCII digits only: `int()` would also take "٣" (3), "1_0" (10) and " 7"."""
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise ValueError(text)
    return int(text)


def _int(text: str) -> int:
    try:
        return _strict_int(text)
    except ValueError:
        raise RegistryError(404, 40403, f"Schema {text} not found") from None


def _checked(new: Any, previous: list, mode: Mode) -> list:
    try:
        return check(new, previous, mode)
    except RecursionError:
        raise RegistryError(422, 42201, "Either the input schema or one its references is invalid: "
                            "nested too deeply") from None


def _verdict(problems: list[str], request: web.Request) -> dict:
    out: dict[str, Any] = {"is_compatible": not problems}
    if request.query.get("verbose", "false").lower() == "true":
        out["messages"] = problems
    return out


def serve(host: str, port: int, path: Path) -> None:
    """Run the registry until interrupted (Ctrl-C / SIGTERM)."""
    web.run_app(make_app(RegistryState.load(path)), host=host, port=port, print=None, access_log=None,
                keepalive_timeout=15, shutdown_timeout=5)  # an idle client neither holds a connection nor a stop
