"""Feature services: a named, versioned set of features across views, read as one unit.

    fraud_v3 = FeatureService("fraud_v3", ["payments:amount_sum_5m", "logins:*", amount_vs_hour_mean])

A service lists `view:feature` references (`view:*` for a whole view) and
derived features (the object, or its name). Online it is one read: every
view's states come in one round trip to Redis, then the derived features are
computed; offline it is one point-in-time join. Its `fingerprint` changes
whenever anything that changes its values does (a view's definition, a
derived function's code), so a model can record which version it was
trained on and a server can say which one it answers with.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streams.definitions.derived import DerivedFeature
from streams.definitions.view import FeatureView, definitions_module_name, load_views
from streams.errors import DefinitionError, UnknownFeatureError, choices

__all__ = ["Definitions", "FeatureService", "Selection", "find_service", "load_definitions", "pinned_versions",
           "select"]


@dataclass(frozen=True)
class FeatureService:
    """A named set of feature references and derived features."""

    name: str
    features: tuple[str | DerivedFeature, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise DefinitionError(f"FeatureService name {self.name!r}: use letters, digits and _")
        object.__setattr__(self, "features", tuple(self.features))
        if not self.features:
            raise DefinitionError(f"FeatureService {self.name}: needs at least one feature")
        for item in self.features:
            if not isinstance(item, str | DerivedFeature):
                raise DefinitionError(f"FeatureService {self.name}: {item!r} is neither 'view:feature' nor a "
                                      "derived feature")

    def fingerprint(self, views: dict[str, FeatureView], derived: dict[str, DerivedFeature]) -> str:
        """A hash of everything that changes the service's values: its list, its views' definitions and
        its derived functions' code."""
        picked = select(list(self.features), None, derived)
        spec = {
            "features": picked.outputs,
            "views": {name: views[name].fingerprint for name in sorted({r.partition(":")[0] for r in
                                                                         picked.outputs + picked.inputs})
                      if name in views},
            "derived": [[d.name, list(d.inputs), d.vectorized, _code_hash(d.function)] for d in picked.derived],
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _code_hash(function: Callable) -> str:
    code = getattr(function, "__code__", None)
    if code is None:
        return repr(function)
    return hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Selection:
    """What a read asks for: feature references shown, derived features, and the references read only
    as derived inputs (not shown unless asked for)."""

    outputs: list[str]
    derived: list[DerivedFeature]
    inputs: list[str]
    pins: dict[str, int | str] = field(default_factory=dict)  # view -> version named (`view@v2:f`, `view@candidate:f`)

    @property
    def references(self) -> list[str]:
        return self.outputs + [ref for ref in self.inputs if ref not in self.outputs]


def select(features: list[str | DerivedFeature], service: FeatureService | None,
           derived: dict[str, DerivedFeature]) -> Selection:
    """Split a feature list (and a service's) into references and derived features.

    Raises:
        UnknownFeatureError: a name that is neither `view:feature` nor a derived feature.
    """
    items = [*features, *(service.features if service else ())]
    outputs: list[str] = []
    picked: list[DerivedFeature] = []
    for item in items:
        if isinstance(item, DerivedFeature):
            found: DerivedFeature | None = item
        elif ":" in item:
            if item not in outputs:
                outputs.append(item)
            continue
        else:
            found = derived.get(item)
            if found is None:
                raise UnknownFeatureError(f"{item!r} is neither view:feature nor a derived feature; "
                                          f"{choices(str(item), sorted(derived), 'derived features')}")
        if found not in picked:
            picked.append(found)
    inputs = [ref for d in picked for ref in d.feature_inputs]
    outputs, pins = pinned_versions(outputs)
    return Selection(list(dict.fromkeys(outputs)), picked, list(dict.fromkeys(inputs)), pins)


VERSION_ROLES = ("candidate", "active", "previous")  # sinks.online.versions.ROLES: what a pin may name


def pinned_versions(refs: list[str]) -> tuple[list[str], dict[str, int | str]]:
    """Split version pins out of references: `payments@v2:amount_sum_5m` reads version 2 of `payments`,
    `payments@candidate:amount_sum_5m` its candidate (a role, resolved to a number at the read).

    Returns the references without their pins (`payments:amount_sum_5m`) and {view: version or role}.

    Raises:
        UnknownFeatureError: a pin that is neither `@v<number>` nor a role, or one view pinned to two versions.
    """
    plain: list[str] = []
    pins: dict[str, int | str] = {}
    for ref in refs:
        head, sep, name = ref.partition(":")
        view, at, pin = head.partition("@")
        if at:
            if pin in VERSION_ROLES:
                version: int | str = pin
            elif pin.startswith("v") and pin[1:].isdigit() and int(pin[1:]) > 0:
                version = int(pin[1:])
            else:
                raise UnknownFeatureError(f"feature reference {ref!r}: write a version as view@v<number>:feature "
                                          f"or view@candidate:feature (or @active, @previous), "
                                          f"e.g. {view}@v2:{name or '*'}")
            if pins.setdefault(view, version) != version:
                raise UnknownFeatureError(f"view {view} is pinned to two versions ({pins[view]} and {version}); "
                                          "one read takes one version of a view")
        plain.append(f"{view}{sep}{name}")
    return plain, pins


@dataclass(frozen=True)
class Definitions:
    """Everything a definitions file declares."""

    views: list[FeatureView]
    services: dict[str, FeatureService]
    derived: dict[str, DerivedFeature]

    def service(self, name: str) -> FeatureService:
        return find_service(self.services, name)


def find_service(services: dict[str, FeatureService], name: str) -> FeatureService:
    """The service called `name`; the error lists those that exist."""
    found = services.get(name)
    if found is None:
        raise UnknownFeatureError(f"no feature service {name!r}; {choices(name, sorted(services), 'defined')}")
    return found


def load_definitions(path: str | Path) -> Definitions:
    """The views, feature services and derived features a definitions file declares, checked: every
    reference of a service or a derived input names a view's feature.

    Raises:
        DefinitionError: one line naming the service or derived feature and the reference.
    """
    views = load_views(path)
    module = sys.modules[definitions_module_name(path)]
    services = {s.name: s for s in vars(module).values() if isinstance(s, FeatureService)}
    derived = {d.name: d for d in vars(module).values() if isinstance(d, DerivedFeature)}
    for service in services.values():
        derived.update({d.name: d for d in service.features if isinstance(d, DerivedFeature)})
    by_name = {v.name: v for v in views}
    for d in derived.values():
        _check_references(f"derived feature {d.name}", d.feature_inputs, by_name)
    for service in services.values():
        try:
            picked = select(list(service.features), None, derived)
        except UnknownFeatureError as exc:
            raise DefinitionError(f"{path}: FeatureService {service.name}: {exc}") from None
        _check_references(f"FeatureService {service.name}", picked.outputs, by_name)
    return Definitions(views, services, derived)


def _check_references(owner: str, refs: list[str], views: dict[str, FeatureView]) -> None:
    names: dict[str, list[str]] = {}
    for ref in refs:
        view_name, _, name = ref.partition(":")
        view = views.get(view_name)
        if view is None:
            raise DefinitionError(f"{owner}: {ref!r} names no view; {choices(view_name, sorted(views), 'views')}")
        if view_name not in names:
            names[view_name] = view.value_names
        if name != "*" and name not in names[view_name]:
            raise DefinitionError(f"{owner}: view {view_name} has no feature {name!r}; "
                                  f"{choices(name, names[view_name])}")
