"""The Redis online store, the Parquet offline store, and reads from both.

The names below load on first use (PEP 562): a worker needs the stores, not the point-in-time join, and
importing everything here cost every worker and command 0.2 s at start.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "FeatureReader": "sinks.online.reads", "OfflineReader": "sinks.offline.join", "OfflineStore": "sinks.offline.store",
    "OnlineResponse": "sinks.online.reads", "OnlineStore": "sinks.online.store", "online_key": "sinks.online.keys",
    "read_offline": "sinks.offline.store",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'sinks' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
