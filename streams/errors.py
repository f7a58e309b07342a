"""The one exception root of rillet, and the errors every layer shares.

Each error also inherits the builtin it means, so callers that only know
Python's own exceptions still catch it (httpx and attrs do the same).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DefinitionError",
    "EventDecodeError",
    "NaiveTimeError",
    "RequestInputError",
    "RilletError",
    "StackError",
    "UnknownFeatureError",
]


class RilletError(Exception):
    """Root of every error rillet raises on purpose."""


class DefinitionError(RilletError, ValueError):
    """A feature view, feature or window definition is invalid."""


class ConfigError(RilletError, ValueError):
    """A setting or command-line argument is invalid."""


class StackError(RilletError, RuntimeError):
    """The embedded broker or Redis could not be started or reached."""


class NaiveTimeError(RilletError, ValueError):
    """A time without a timezone: rillet never reads one as UTC silently."""


class RequestInputError(RilletError, ValueError):
    """A request input of a derived feature is missing or does not convert to its declared type."""


class UnknownFeatureError(RilletError, KeyError):
    """A read named a view or feature that is not defined."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text.
        return str(self.args[0]) if self.args else "unknown feature"


class EventDecodeError(RilletError, ValueError):
    """An event could not be turned into a valid record; `reason` is its DLQ reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
