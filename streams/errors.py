"""The one exception root of rillet, and every error rillet raises on purpose, whatever the layer.

Each error also inherits the builtin it means, so callers that only know
Python's own exceptions still catch it (httpx and attrs do the same).
"""

from __future__ import annotations

__all__ = [
    "DEAD_LETTER_REASONS",
    "AsOfTooEarlyError",
    "BodyError",
    "ConfigError",
    "DefinitionError",
    "EventDecodeError",
    "InvalidEventError",
    "InvalidSchemaError",
    "NaiveTimeError",
    "RegistryError",
    "ReplicasBehindError",
    "RequestInputError",
    "RilletError",
    "SchemaRegistrationError",
    "StackError",
    "StateLayoutError",
    "UnknownFeatureError",
    "UnknownSchemaError",
    "VersionMismatchError",
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


# ---- raised by one room each; defined here so that every error has one root and one home


class AsOfTooEarlyError(RilletError, ValueError):
    """`as_of` asked for a time before the entity's latest processed event."""


class StateLayoutError(RilletError, ValueError):
    """Stored state was written by a different feature definition (replay into a new version)."""


class BodyError(RilletError, ValueError):
    """Why a request body could not be read as JSON, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class VersionMismatchError(RilletError, RuntimeError):
    """A worker's definition is not the view's active version: it must not write there."""


class ReplicasBehindError(RilletError, RuntimeError):
    """Fewer replicas acknowledged a batch's writes than required: write it again before committing."""


class InvalidSchemaError(RilletError, ValueError):
    """The text is not a valid Avro schema."""


class InvalidEventError(RilletError, ValueError):
    """An event does not match its schema; the message names the field."""


class RegistryError(RilletError):
    """A Confluent-style error: HTTP status, `error_code` and message (carried to the response body)."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


class UnknownSchemaError(RilletError, LookupError):
    """No schema is registered under that id."""


class SchemaRegistrationError(RilletError, ValueError):
    """The registry refused a schema (incompatible: 409, invalid: 422) or could not be reached."""
