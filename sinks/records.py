"""Named records that cross the boundary between the engine and the sinks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["LoggedEvent", "StateWrite"]


@dataclass(frozen=True, slots=True)
class StateWrite:
    """An entity's whole window state after a batch: what the online store keeps."""

    entity: str
    state: bytes
    latest_ms: int


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One offline row: an aggregated event, with the fields the view's features read.

    (`partition`, `offset`) identify the event, so a row written twice after a
    restart is recognised as one; `created_ms` is the record's timestamp, when the
    event entered the topic (so a replay writes the same rows as the live worker).
    """

    entity: str
    event_ms: int
    created_ms: int
    partition: int
    offset: int
    values: dict[str, Any]
