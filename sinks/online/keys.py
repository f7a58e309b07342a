"""Every Redis key rillet's pipeline writes, built here and nowhere else.

    rillet:{view}:v{n}:e:{entity}      string  an entity's window state (the engine's bytes)
    rillet:{view}:v{n}:events          hash    source partition -> events aggregated (absolute)
    rillet:{view}:v{n}:live            hash    source partition -> 1 once Redis holds all its states
    rillet:{view}:v{n}:epoch[:{tag}]   hash    per master: source partition -> last offset written there
    rillet:{view}:v{n}:health          hash    source partition -> a worker's last health report (JSON)
    rillet:{view}:v{n}:history         stream  each worker's progress every 10 s (the console's charts)
    rillet:{view}:v{n}:progress        hash    a replay's progress per partition (its hand-over)
    rillet:{{view}}:versions           hash    version -> its record (JSON)
    rillet:{{view}}:active             string  the version reads follow
    rillet:{{view}}:generation         integer bumped by every change of the versions' roles
    rillet:{view}:skew                 string  the latest `rillet skew` report (JSON)

The registry's three keys share a hash tag, so one Lua call on a cluster can switch them
together. The online read's Lua script builds state keys from `state_prefix` and
`STATE_INFIX`, which it is given, so it writes no key of its own. (The schema store
that stands in for a registry keeps its own `rillet:schemas:*` keys: schemas/store.py.)
"""

from __future__ import annotations

__all__ = ["STATE_INFIX", "active_key", "epoch_key", "events_key", "generation_key", "health_key", "history_key",
           "live_key", "online_key", "progress_key", "skew_key", "state_prefix", "version_pattern", "versions_key"]

STATE_INFIX = ":e:"


def state_prefix(view: str) -> str:
    """What every version's state keys of `view` start with, up to the version number."""
    return f"rillet:{view}:v"


def online_key(view: str, version: int | str, entity: str) -> str:
    return f"{state_prefix(view)}{version}{STATE_INFIX}{entity}"


def version_pattern(view: str, version: int, what: str) -> str:
    """A SCAN pattern for one version's keys of a kind: `e:*` (states), `epoch*` (epoch hashes)."""
    return f"rillet:{view}:v{version}:{what}"


def events_key(view: str, version: int) -> str:
    return f"rillet:{view}:v{version}:events"


def live_key(view: str, version: int) -> str:
    return f"rillet:{view}:v{version}:live"


def epoch_key(view: str, version: int, tag: str = "") -> str:
    """On a cluster, `tag` is a hash tag of a slot the master serves, so the key lives there."""
    return f"rillet:{view}:v{version}:epoch" + (f":{{{tag}}}" if tag else "")


def health_key(view: str, version: int) -> str:
    return f"rillet:{view}:v{version}:health"


def history_key(view: str, version: int) -> str:
    return f"rillet:{view}:v{version}:history"


def progress_key(view: str, version: int) -> str:
    return f"rillet:{view}:v{version}:progress"


def versions_key(view: str) -> str:
    return f"rillet:{{{view}}}:versions"


def active_key(view: str) -> str:
    return f"rillet:{{{view}}}:active"


def skew_key(view: str) -> str:
    return f"rillet:{view}:skew"


def generation_key(view: str) -> str:
    return f"rillet:{{{view}}}:generation"
