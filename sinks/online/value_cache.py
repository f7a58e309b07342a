"""Values an online read evaluated, kept while they cannot change.

Between an entity's events its values change only at pane boundaries, when a
session's gap runs out and at the ttl (`ViewEngine.steady_until`). A state read
again before then, byte for byte the same, has the same values: the reader
keeps them, keyed by the state's bytes, and a hot entity is decoded and
evaluated once per pane instead of once per read (11 us to decode and 26 us to
evaluate 20 features of the read bench's states). A new event writes new bytes,
so a changed state is never answered from here; views whose values move with
time itself (an age, a decayed sum) are never kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["CachedValues", "ValueCache"]

_SCALARS = frozenset({type(None), bool, int, float, str})


class CachedValues:
    """An entity's values and latest event time, good for reads at `start <= t < until`."""

    __slots__ = ("latest_ms", "start", "until", "values")

    def __init__(self, values: dict[str, Any], latest_ms: int, start: int, until: int) -> None:
        self.values, self.latest_ms, self.start, self.until = values, latest_ms, start, until


class ValueCache:
    """At most `entries` states' values, the least recently read dropped first; 0 keeps none."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.hits = self.misses = 0
        self._held: OrderedDict[tuple[int, bytes], CachedValues] = OrderedDict()

    def get(self, engine: Any, blob: bytes) -> CachedValues | None:
        """What an earlier read of these bytes evaluated (check its `start` and `until` against the read time)."""
        found = self._held.get((id(engine), blob))
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._held.move_to_end((id(engine), blob))
        return found

    def keep(self, engine: Any, blob: bytes, values: dict[str, Any], latest_ms: int, read_ms: int,
             until: int | None) -> None:
        """Keep the values read at `read_ms` until `until` (`ViewEngine.steady_until`; None: never). Values
        holding lists (last-k, top-k) are not kept, so no caller can change what the next read gets."""
        if not self.entries or until is None or not all(type(v) in _SCALARS for v in values.values()):
            return
        self._held[(id(engine), blob)] = CachedValues(values, latest_ms, read_ms, until)
        if len(self._held) > self.entries:
            self._held.popitem(last=False)
