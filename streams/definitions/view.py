"""Feature definitions: frozen dataclasses that validate themselves.

A `FeatureView` is one source topic, one entity, a list of `Feature`s, a TTL
and a grace period for late events (semantics.md, "Terms"). The runtime
logic lives in `streams.kernel.engine`, built from these definitions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from streams.aggregations.catalog import get_aggregation
from streams.definitions.entity_keys import key_of
from streams.errors import DefinitionError
from streams.timeutil import duration_label, to_ms
from streams.windows import Lifetime, Session, Sliding, Tumbling, Window

__all__ = ["DEFAULT_MAX_FUTURE", "Feature", "FeatureView", "NotNull", "Range", "check_against_schema", "load_views"]


DEFAULT_MAX_FUTURE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class NotNull:
    """A data-contract rule: the field must be present; a null sends the event to the DLQ."""

    reason = "null_value"

    def violation(self, value: object) -> str | None:
        return "is null, and the view needs a value" if value is None else None


@dataclass(frozen=True, slots=True)
class Range:
    """A data-contract rule: the field must lie in [low, high] when present (a null passes)."""

    low: float
    high: float
    reason = "out_of_range"

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise DefinitionError(f"Range({self.low}, {self.high}): low is above high")

    def violation(self, value: float | None) -> str | None:
        """Why `value` breaks the rule, or None; NaN is outside every range."""
        if value is not None and not (self.low <= value <= self.high):
            return f"{value!r} is outside [{self.low}, {self.high}]"
        return None


@dataclass(frozen=True, slots=True)
class Feature:
    """`aggregation(field)` over `window`; named `{field}_{aggregation}_{window}` by default.

    `aggregation` is a name, with its parameter where it takes one: `"sum"`, `"last_k(5)"`,
    `"top_k(3)"`, `"approx_percentile(0.99)"` (named `amount_p99_1h`), `"decayed_sum(1h)"`.
    `field` may be None for `count` (count events) and `age` (time since the entity's first event).
    """

    field: str | None
    aggregation: str
    window: Window
    name: str = ""

    def __post_init__(self) -> None:
        agg = get_aggregation(self.aggregation)
        written = self.as_written
        object.__setattr__(self, "aggregation", agg.name)  # the canonical spelling: "last_k( 5 )" is "last_k(5)"
        if self.field is None and agg.needs_field:
            raise DefinitionError(f"{written}: {agg.name} needs a field (only count and age may omit it)")
        if self.field is not None and not agg.takes_field:
            raise DefinitionError(f"{written}: {agg.name} takes no field; write Feature(None, "
                                  f"{self.aggregation!r}, ...)")
        if not isinstance(self.window, Tumbling | Sliding | Session | Lifetime):
            raise DefinitionError(f"{written}: the window must be Tumbling, Sliding, Session or Lifetime")
        if agg.lifetime_only and not isinstance(self.window, Lifetime):
            raise DefinitionError(f"{written}: {agg.name} is defined over the entity's whole history; "
                                  f"use Lifetime() as its window")
        if not self.name:
            prefix = f"{self.field}_" if self.field else ""
            object.__setattr__(self, "name", f"{prefix}{agg.label}_{self.window.label}")

    @property
    def as_written(self) -> str:
        """The feature as the user wrote it, for error messages: `Feature(None, 'age', Sliding("1h", "5m"))`."""
        window = getattr(self.window, "as_written", repr(self.window))
        return f"Feature({self.field!r}, {self.aggregation!r}, {window})"


@dataclass(frozen=True)
class FeatureView:
    """A source topic + an entity + features + TTL + grace.

    Args:
        name: the view's name, used in keys, paths and `{view}:{feature}` references.
        topic: the Kafka topic its events are read from.
        schema: the Avro schema file (`.avsc`) the events are read with.
        entity: the event field that identifies the entity (also the record key), or a tuple of fields
            for a composite entity (`("user_id", "merchant")`: one state per pair; its key text is
            `streams.definitions.entity_keys.composite_key` of the values).
        features: the features to compute.
        ttl: an entity whose latest event is older than `t - ttl` reads as missing.
        grace: how far behind the partition watermark an event may be and still count.
        event_time: the event field holding epoch milliseconds; None: the record timestamp.
        checks: data-contract rules per field, e.g. `{"amount": Range(0, 1e6), "merchant": NotNull()}`.
        partitions: partitions of the topic when rillet creates it.
        max_future: how far an event's time may lie after its record's timestamp; past it the event
            goes to the DLQ (`future_event_time`) and does not move the watermark, so one record with
            a corrupt time or a wrong clock cannot make every later event late.
        freshness: the target for how far the newest applied event may trail the wall clock; workers
            export it beside the measured freshness (alerts compare the two) and `rillet status`
            flags a view past it. It changes no value, so not the fingerprint either.
    """

    name: str
    topic: str
    schema: str | Path
    entity: str | tuple[str, ...]
    features: tuple[Feature, ...]
    ttl: timedelta | int | str = timedelta(days=1)
    grace: timedelta | int | str = timedelta(0)
    event_time: str | None = None
    checks: dict[str, Range | NotNull] = field(default_factory=dict)
    partitions: int | None = None
    max_future: timedelta | int | str = DEFAULT_MAX_FUTURE
    freshness: timedelta | int | str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise DefinitionError(f"FeatureView name {self.name!r}: use letters, digits and _")
        object.__setattr__(self, "features", tuple(self.features))
        if isinstance(self.entity, list | tuple):
            fields = tuple(self.entity)
            if not fields or not all(isinstance(f, str) and f for f in fields) or len(set(fields)) != len(fields):
                raise DefinitionError(f"FeatureView {self.name}: entity must name distinct fields, got {self.entity!r}")
            object.__setattr__(self, "entity", fields[0] if len(fields) == 1 else fields)
        elif not isinstance(self.entity, str) or not self.entity:
            raise DefinitionError(f"FeatureView {self.name}: entity must be a field name or a tuple of them")
        if not self.features:
            raise DefinitionError(f"FeatureView {self.name}: needs at least one feature")
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(f"FeatureView {self.name}: feature names repeat: {dupes}")
        object.__setattr__(self, "ttl", to_ms(self.ttl, what=f"{self.name}.ttl"))
        object.__setattr__(self, "grace", to_ms(self.grace, what=f"{self.name}.grace"))
        if self.ttl <= 0:
            raise DefinitionError(f"FeatureView {self.name}: ttl must be positive")
        if self.grace < 0:
            raise DefinitionError(f"FeatureView {self.name}: grace cannot be negative")
        object.__setattr__(self, "max_future", to_ms(self.max_future, what=f"{self.name}.max_future"))
        if self.max_future < 0:
            raise DefinitionError(f"FeatureView {self.name}: max_future cannot be negative")
        if self.freshness is not None:
            object.__setattr__(self, "freshness", to_ms(self.freshness, what=f"{self.name}.freshness"))
            if self.freshness <= 0:
                raise DefinitionError(f"FeatureView {self.name}: freshness must be positive")
        object.__setattr__(self, "schema", Path(self.schema))

    @property
    def ttl_ms(self) -> int:
        return self.ttl  # type: ignore[return-value]

    @property
    def grace_ms(self) -> int:
        return self.grace  # type: ignore[return-value]

    @property
    def max_future_ms(self) -> int:
        return self.max_future  # type: ignore[return-value]

    @property
    def freshness_ms(self) -> int | None:
        return self.freshness  # type: ignore[return-value]

    @property
    def entity_fields(self) -> tuple[str, ...]:
        """The fields that name the entity: one, or several for a composite entity."""
        return self.entity if isinstance(self.entity, tuple) else (self.entity,)

    def entity_key(self, row: Mapping[str, Any]) -> str:
        """The key text of the entity a record or entity row names (`streams.definitions.entity_keys`)."""
        return key_of(self.entity_fields, row)

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def has_lifetime(self) -> bool:
        """A lifetime window reaches back to the entity's first event: its state never expires."""
        return any(isinstance(f.window, Lifetime) for f in self.features)

    @property
    def longest_window_ms(self) -> int:
        """How far back a value can reach: the largest window size or session gap."""
        return max(
            f.window.gap_ms if isinstance(f.window, Session) else f.window.size_ms
            for f in self.features
        )

    @cached_property
    def session_columns(self) -> list[str]:
        """Start, end and active of each session gap, in the order the features first use the gaps."""
        gaps = dict.fromkeys(f.window.gap_ms for f in self.features if isinstance(f.window, Session))
        return [f"session_{Session(gap).label.removeprefix('session_')}_{part}"
                for gap in gaps for part in ("start", "end", "active")]

    @cached_property
    def value_names(self) -> list[str]:
        """Every value the view answers with: its features in order, then its session columns."""
        return [f.name for f in self.features] + self.session_columns

    @cached_property
    def schema_json(self) -> dict:
        try:
            return json.loads(Path(self.schema).read_text())
        except OSError as exc:
            raise DefinitionError(f"FeatureView {self.name}: cannot read schema {self.schema}: {exc.strerror or exc} "
                                  "(a relative schema path is resolved against the features file's folder)") from None
        except json.JSONDecodeError as exc:
            raise DefinitionError(f"FeatureView {self.name}: schema {self.schema} is not JSON: {exc}") from exc

    @property
    def fingerprint(self) -> str:
        """A hash of everything that changes values: features, ttl, grace, entity, schema."""
        spec = {
            "entity": list(self.entity) if isinstance(self.entity, tuple) else self.entity,
            "event_time": self.event_time,
            "ttl_ms": self.ttl_ms,
            "grace_ms": self.grace_ms,
            "features": [
                [f.name, f.field, f.aggregation, type(f.window).__name__, repr(f.window)]
                for f in self.features
            ],
            "checks": {k: repr(v) for k, v in sorted(self.checks.items())},
            "schema": self.schema_json,
        }
        if self.max_future_ms != to_ms(DEFAULT_MAX_FUTURE):  # the default keeps existing fingerprints
            spec["max_future_ms"] = self.max_future_ms
        blob = json.dumps(spec, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe(self) -> str:
        windows = sorted({f.window.label for f in self.features})
        return (
            f"{self.name}: topic {self.topic}, entity {', '.join(self.entity_fields)}, {len(self.features)} features "
            f"over {', '.join(windows)}, ttl {duration_label(self.ttl_ms)}, "
            f"grace {duration_label(self.grace_ms)}"
        )


def definitions_module_name(path: str | Path) -> str:
    """The module a definitions file is imported as (`load_views`), where its other objects are found."""
    return f"rillet_features_{hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:8]}"


def load_views(path: str | Path) -> list[FeatureView]:
    """Import a definitions file and return the FeatureViews it defines, in order.

    Relative schema paths are resolved against the definitions file's folder.
    """
    path = Path(path)
    if path.is_dir():
        raise DefinitionError(f"feature definitions file {str(path)!r} is a directory; name the .py file in it")
    if not path.is_file():
        raise DefinitionError(f"feature definitions file {str(path)!r} does not exist")
    module_name = definitions_module_name(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DefinitionError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError as exc:
        raise DefinitionError(f"{path}:{_line_in(path, exc)}: {exc}") from exc
    except SyntaxError as exc:
        raise DefinitionError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:  # the user's code failed to import: say where, not how deep
        raise DefinitionError(f"{path}:{_line_in(path, exc)}: {type(exc).__name__}: {exc}") from None
    views = [v for v in vars(module).values() if isinstance(v, FeatureView)]
    if not views:
        raise DefinitionError(f"{path} defines no FeatureView")
    resolved = []
    for view in views:
        schema = Path(view.schema)
        if not schema.is_absolute():
            schema = (path.parent / schema).resolve()
        object.__setattr__(view, "schema", schema)
        view.__dict__.pop("schema_json", None)
        resolved.append(view)
    names = [v.name for v in resolved]
    if len(set(names)) != len(names):
        raise DefinitionError(f"{path}: view names repeat: {names}")
    for view in resolved:
        check_against_schema(view)
    return resolved


_NUMBERS = {"int", "long", "float", "double"}
_TIMES = {"int", "long"}  # epoch milliseconds, with or without a timestamp-millis logical type


def _base_types(avro_type: object) -> set[str]:
    """The Avro types a field's values can have, unions unwrapped and null left out."""
    if isinstance(avro_type, list):
        return set().union(*(_base_types(t) for t in avro_type))
    if isinstance(avro_type, dict):
        return _base_types(avro_type.get("type"))
    return set() if avro_type == "null" else {str(avro_type)}


def _may_be_null(avro_type: object) -> bool:
    if isinstance(avro_type, list):
        return any(_may_be_null(t) for t in avro_type)
    return avro_type == "null"


def check_against_schema(view: FeatureView) -> None:
    """Refuse a definition its schema cannot feed: a field the schema lacks, or sum/mean/stddev over text.

    Without this a misspelled field loads fine and reads as null forever.

    Raises:
        DefinitionError: naming the view, the feature and the field, and the fields that exist.
    """
    schema = view.schema_json
    fields = {f["name"]: _base_types(f["type"]) for f in schema.get("fields", [])} if isinstance(schema, dict) else {}
    where = f"schema {Path(view.schema).name}"
    listed = f"its fields: {', '.join(fields) or '(none)'}"

    def lacks(what: str, name: str) -> DefinitionError:
        return DefinitionError(f"view {view.name}: {what} {name!r}, which is not a field of {where}; {listed}")

    for name in view.entity_fields:
        if name not in fields:
            raise lacks("entity", name)
    if len(view.entity_fields) > 1:  # a composite key needs every part, and the time is not an identity
        nullable = {f["name"] for f in schema.get("fields", []) if _may_be_null(f["type"])}
        for name in view.entity_fields:
            if name == view.event_time:
                raise DefinitionError(f"view {view.name}: entity {view.entity!r} names the event_time field "
                                      f"{name!r}; an entity is who the events are about, not when")
            if name in nullable:
                raise DefinitionError(f"view {view.name}: entity {view.entity!r} names {name!r}, which may be null "
                                      f"in {where}; every part of a composite entity must be a required field")
    if view.event_time is not None:
        if view.event_time not in fields:
            raise lacks("event_time", view.event_time)
        if not fields[view.event_time] or not fields[view.event_time] <= _TIMES:
            raise DefinitionError(f"view {view.name}: event_time {view.event_time!r} is "
                                  f"{'/'.join(sorted(fields[view.event_time]))} in {where}; it must be a long "
                                  "(epoch milliseconds, e.g. logicalType timestamp-millis)")
    for feature in view.features:
        if feature.field is None:
            continue
        if feature.field not in fields:
            raise lacks(f"feature {feature.name} reads field", feature.field)
        if get_aggregation(feature.aggregation).needs_numbers and not fields[feature.field] <= _NUMBERS:
            raise DefinitionError(
                f"view {view.name}: feature {feature.name}: {feature.aggregation} needs a number, but field "
                f"{feature.field!r} is {'/'.join(sorted(fields[feature.field]))} in {where}")
    for name in view.checks:
        if name not in fields:
            raise lacks("check on field", name)


def _line_in(path: Path, exc: BaseException) -> str:
    """The line of the definitions file where `exc` was raised (its deepest frame in that file)."""
    import traceback

    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    return str(lines[-1]) if lines else "?"
