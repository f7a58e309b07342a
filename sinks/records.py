"""Named records that cross the boundary between the engine and the sinks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FeatureRow", "StateWrite"]


@dataclass(frozen=True, slots=True)
class StateWrite:
    """An entity's whole window state after a batch: what the online store keeps."""

    entity: str
    state: bytes
    latest_ms: int


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One offline row: an entity's feature values right after one source event.

    `feature_ms` is the time the values hold at (the entity's latest event time
    after applying the event); (`partition`, `offset`) identify the event, so a
    row written twice after a restart is recognised as one.
    """

    entity: str
    feature_ms: int
    event_ms: int
    created_ms: int
    partition: int
    offset: int
    values: dict[str, Any]
