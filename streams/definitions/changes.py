"""What changed between two definitions of a view, in the user's own terms (for `rillet plan`).

Pure: two FeatureViews in, a ViewChange out. Features are matched by name; a feature whose
field, aggregation or window differs is redefined, shown as written before and after. The
view-wide settings that change values (entity, event time, ttl, grace, max_future, checks,
schema) are listed apart: any of them changes every feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.definitions.view import Feature, FeatureView
from streams.timeutil import duration_label

__all__ = ["ViewChange", "compare_views"]


@dataclass(frozen=True)
class ViewChange:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    redefined: list[dict[str, str]] = field(default_factory=list)  # {"feature", "before", "after"}
    settings: list[str] = field(default_factory=list)  # view-wide changes, e.g. "ttl 1d -> 2d"

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.redefined or self.settings)

    def unchanged_features(self, after: FeatureView) -> list[str]:
        """The features whose values a new version must reproduce exactly (nothing view-wide changed)."""
        if self.settings:
            return []
        touched = {r["feature"] for r in self.redefined} | set(self.added)
        return [f.name for f in after.features if f.name not in touched]

    def to_dict(self) -> dict:
        return {"added": self.added, "removed": self.removed, "redefined": self.redefined, "settings": self.settings}


def _written(feature: Feature) -> tuple:
    return feature.field, feature.aggregation, type(feature.window).__name__, repr(feature.window)


def compare_views(before: FeatureView, after: FeatureView) -> ViewChange:
    old = {f.name: f for f in before.features}
    new = {f.name: f for f in after.features}
    added = [name for name in new if name not in old]
    removed = [name for name in old if name not in new]
    redefined = [{"feature": name, "before": old[name].as_written, "after": new[name].as_written}
                 for name in new if name in old and _written(old[name]) != _written(new[name])]
    settings = []
    for what, a, b in (("entity", before.entity, after.entity), ("event_time", before.event_time, after.event_time)):
        if a != b:
            settings.append(f"{what} {a!r} -> {b!r}")
    for what, a, b in (("ttl", before.ttl_ms, after.ttl_ms), ("grace", before.grace_ms, after.grace_ms),
                       ("max_future", before.max_future_ms, after.max_future_ms)):
        if a != b:
            settings.append(f"{what} {duration_label(a)} -> {duration_label(b)}")
    if {k: repr(v) for k, v in before.checks.items()} != {k: repr(v) for k, v in after.checks.items()}:
        settings.append(f"checks {_checks(before)} -> {_checks(after)}")
    if before.schema_json != after.schema_json:
        settings.append(f"schema: {_schema_change(before.schema_json, after.schema_json)}")
    return ViewChange(added, removed, redefined, settings)


def _checks(view: FeatureView) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in sorted(view.checks.items())) + "}"


def _schema_change(before: dict, after: dict) -> str:
    old = {f["name"]: f for f in before.get("fields", [])}
    new = {f["name"]: f for f in after.get("fields", [])}
    parts = [f"+{name}" for name in new if name not in old] + [f"-{name}" for name in old if name not in new]
    parts += [f"~{name}" for name in new if name in old and new[name] != old[name]]
    return ", ".join(parts) or "record attributes changed"
