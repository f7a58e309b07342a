"""The worker's structured log lines: one JSON object per event, under the `rillet.worker` logger."""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["log_event"]

log = logging.getLogger("rillet.worker")


def log_event(level: int, **fields: Any) -> None:
    """One JSON line: `event` names what happened, the other fields say where and how much."""
    log.log(level, json.dumps(fields, default=str))
