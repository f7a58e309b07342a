"""A read value's status, as Feast names them: the same words online, over HTTP, in `rillet get` and in
the served-feature log."""

from __future__ import annotations

from typing import Any

__all__ = ["entity_status", "status_of_value", "value_status"]


def entity_status(stamp: int | None, known: bool) -> str:
    """An entity's status, as Feast names them: unknown, past its ttl, or present."""
    if not known:
        return "NOT_FOUND"
    return "OUTSIDE_MAX_AGE" if stamp is None else "PRESENT"


def status_of_value(status: str, value: Any) -> str:
    """A value's status from its entity's: a null of a present entity is NULL_VALUE."""
    return "NULL_VALUE" if status == "PRESENT" and value is None else status


def value_status(value: Any, stamp: int | None, known: bool) -> str:
    """A value's status, as Feast names them: the entity unknown, past its ttl, a null, or a value."""
    return status_of_value(entity_status(stamp, known), value)
