"""The one exception root of rillet, and the errors every layer shares.

Each error also inherits the builtin it means, so callers that only know
Python's own exceptions still catch it (httpx and attrs do the same).
"""

from __future__ import annotations

__all__ = [
    "DEAD_LETTER_REASONS",
    "ConfigError",
    "DefinitionError",
    "EventDecodeError",
    "NaiveTimeError",
    "RequestInputError",
    "RilletError",
    "StackError",
    "UnknownFeatureError",
    "choices",
]


def choices(name: str, options: list[str] | tuple[str, ...], what: str = "it has") -> str:
    """`did you mean 'x'? it has: a, b, c`: the close matches first, so a typo is one glance away."""
    import difflib

    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.6)
    listed = f"{what}: {', '.join(options) or '(none)'}"
    return (f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "") + listed


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


#: Every reason a record goes to the dead-letter topic: the worker exports a counter for each from its start.
DEAD_LETTER_REASONS = ("unknown_schema", "truncated", "bad_magic", "undecodable", "missing_entity",
                       "missing_event_time", "null_value", "out_of_range", "future_event_time", "late")


class EventDecodeError(RilletError, ValueError):
    """An event could not be turned into a valid record; `reason` is its DLQ reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
