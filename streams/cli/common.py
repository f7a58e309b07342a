"""What several commands share: loading the features file, picking views, pinned versions."""

from __future__ import annotations

import argparse
from typing import Any

from streams.errors import ConfigError
from streams.settings import Settings

__all__ = ["chosen_views", "explicit_features_path", "features_path_of", "loaded_definitions", "parse_pairs",
           "version_pins", "view_named"]


def chosen_views(args: argparse.Namespace, settings: Settings) -> list:
    return loaded_definitions(args, settings).views  # services and derived features are checked too

def loaded_definitions(args: argparse.Namespace, settings: Settings) -> Any:
    from streams.definitions.services import load_definitions

    return load_definitions(features_path_of(args, settings))

def parse_pairs(text: str) -> dict[str, str]:
    """`user_id=u1,amount=12.5` as an entity row (values as text)."""
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() for p in pairs):
        raise ValueError(f"{text!r}: write field=value pairs separated by commas")
    return {k.strip(): v.strip() for k, v in pairs}

def features_path_of(args: argparse.Namespace, settings: Settings) -> str:
    """The features file a command uses: its own --features, the global one, or RILLET_FEATURES."""
    return explicit_features_path(args) or settings.features

def explicit_features_path(args: argparse.Namespace) -> str | None:
    return getattr(args, "sub_features", None) or args.features

def view_named(views: list, name: str) -> Any:
    for view in views:
        if view.name == name:
            return view
    raise ConfigError(f"no view named {name!r}; defined: {', '.join(v.name for v in views)}")

def version_pins(given: list[str], views: list[Any]) -> dict[str, int]:
    """`--version payments:2` (repeatable) -> {"payments": 2}."""
    pins: dict[str, int] = {}
    names = {v.name for v in views}
    for text in given:
        view, _, number = text.rpartition(":")
        if not view or not number.removeprefix("v").isdigit():
            raise ConfigError(f"--version {text!r}: write VIEW:N, e.g. --version payments:2")
        if view not in names:
            raise ConfigError(f"--version {text!r}: no view {view!r}; views: {', '.join(sorted(names))}")
        pins[view] = int(number.removeprefix("v"))
    return pins
