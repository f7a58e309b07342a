"""`rillet diff`: two versions of a view compared on the same entities at the same time, per feature.

Online, each entity's state of both versions is read from Redis and evaluated with each version's
own definition at one time `t`. A state records the offset of the last event it applied, so an
entity whose two states stand at different offsets (one version's workers a batch behind) is
read again, and left out when still apart (counted as `skipped`). Offline, both versions are
joined at each row of a training set. Each evaluation is the kernel's: nothing is recomputed here.

Per feature: equal, changed (share changed, mean and largest absolute difference of numbers,
nulls gained and lost), added or removed. A feature whose definition did not change must compare
equal exactly; one that does not is a bug, reported as `UNEXPECTED`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sinks.online.keys import online_key, version_pattern
from sinks.redis_client import mget
from streams.definitions.changes import compare_views
from streams.definitions.view import FeatureView
from streams.kernel.engine import ViewEngine

__all__ = ["FeatureDiff", "VersionDiff", "compare_columns", "diff_offline", "diff_online"]


@dataclass
class FeatureDiff:
    feature: str
    status: str  # equal, changed, added, removed, UNEXPECTED (changed, but its definition did not)
    compared: int = 0
    changed: int = 0
    mean_abs_diff: float | None = None
    max_abs_diff: float | None = None
    nulls_gained: int = 0
    nulls_lost: int = 0
    null_in_both: int = 0  # many of these: the time compared may lie past the entities' ttl (try --as-of)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def share_changed(self) -> float:
        return self.changed / self.compared if self.compared else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "status": self.status, "compared": self.compared, "changed": self.changed,
                "share_changed": round(self.share_changed, 6), "mean_abs_diff": self.mean_abs_diff,
                "max_abs_diff": self.max_abs_diff, "nulls_gained": self.nulls_gained,
                "nulls_lost": self.nulls_lost, "null_in_both": self.null_in_both, "examples": self.examples}


@dataclass
class VersionDiff:
    view: str
    before: int
    after: int
    where: str  # online or offline
    entities: int = 0
    skipped: int = 0  # online: entities whose versions stood at different offsets
    features: list[FeatureDiff] = field(default_factory=list)

    @property
    def unexpected(self) -> list[str]:
        return [f.feature for f in self.features if f.status == "UNEXPECTED"]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_columns(name: str, before: list[Any], after: list[Any], keys: list[str], expected_equal: bool,
                    examples: int = 3) -> FeatureDiff:
    """One feature's values in two versions, row by row."""
    diff = FeatureDiff(name, "equal", compared=len(before))
    gaps: list[float] = []
    for key, a, b in zip(keys, before, after, strict=True):
        if _same(a, b):
            diff.null_in_both += a is None
            continue
        diff.changed += 1
        if a is not None and b is None:
            diff.nulls_gained += 1
        elif a is None and b is not None:
            diff.nulls_lost += 1
        elif isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
            gap = abs(float(b) - float(a))
            if not math.isnan(gap):
                gaps.append(gap)
        if len(diff.examples) < examples:
            diff.examples.append({"entity": key, "before": a, "after": b})
    if gaps:
        diff.mean_abs_diff, diff.max_abs_diff = sum(gaps) / len(gaps), max(gaps)
    if diff.changed:
        diff.status = "UNEXPECTED" if expected_equal else "changed"
    return diff


def _features(before: FeatureView, after: FeatureView) -> tuple[list[str], list[str], list[str], set[str]]:
    """(compared, added, removed, expected equal) value names."""
    old, new = before.value_names, after.value_names
    change = compare_views(before, after)
    same = set(change.unchanged_features(after))
    return [n for n in new if n in old], [n for n in new if n not in old], [n for n in old if n not in new], same


def _assemble(view: str, versions: tuple[int, int], where: str, before: FeatureView, after: FeatureView,
              keys: list[str], rows: tuple[list[dict], list[dict]]) -> VersionDiff:
    compared, added, removed, same = _features(before, after)
    out = VersionDiff(view, versions[0], versions[1], where, entities=len(keys))
    for name in compared:
        out.features.append(compare_columns(name, [r.get(name) for r in rows[0]], [r.get(name) for r in rows[1]],
                                            keys, expected_equal=name in same))
    out.features += [FeatureDiff(n, "added", compared=len(keys)) for n in added]
    out.features += [FeatureDiff(n, "removed", compared=len(keys)) for n in removed]
    return out


def sample_entities(client: Any, view: str, versions: Iterable[int], limit: int | None) -> list[str]:
    """Entity keys stored in either version (at most `limit`, None: all), from a SCAN of their state keys."""
    found: dict[str, None] = {}
    for version in versions:
        prefix = version_pattern(view, version, "e:")
        for key in client.scan_iter(match=prefix + "*", count=1000):
            text = key.decode() if isinstance(key, bytes) else key
            found[text[len(prefix):]] = None
            if limit is not None and len(found) >= limit:
                return list(found)
    return list(found)


def diff_online(client: Any, view: str, versions: tuple[int, int], definitions: tuple[FeatureView, FeatureView],
                entities: list[str], as_of: int | None = None, rounds: int = 5) -> VersionDiff:
    """Both versions' values of `entities` at `as_of` (default now), read from Redis."""
    engines = tuple(ViewEngine(d) for d in definitions)
    pending, done = list(entities), {}
    for attempt in range(rounds):
        states = [[e.decode(b) for b in mget(client, [online_key(view, v, k) for k in pending])]
                  for e, v in zip(engines, versions, strict=True)]
        apart = []
        for i, key in enumerate(pending):
            a, b = states[0][i], states[1][i]
            if a is not None and b is not None and (a.partition, a.offset) != (b.partition, b.offset):
                apart.append(key)
            else:
                done[key] = (a, b)
        pending = apart
        if not pending or attempt == rounds - 1:
            break
        time.sleep(0.2 * (attempt + 1))  # a batch of the version behind lands within a commit interval
    keys = [k for k in entities if k in done]
    now = int(time.time() * 1000)
    rows: tuple[list[dict], list[dict]] = ([], [])
    for key in keys:
        pair = done[key]
        latest = max((s.latest_ms for s in pair if s is not None), default=0)
        t = as_of if as_of is not None else max(now, latest)
        for side, (engine, state) in enumerate(zip(engines, pair, strict=True)):
            rows[side].append(engine.as_of(state, t))
    out = _assemble(view, versions, "online", *definitions, keys, rows)
    out.skipped = len(pending)
    return out


def diff_offline(offline_root: Any, client: Any, view: str, versions: tuple[int, int],
                 definitions: tuple[FeatureView, FeatureView], entity_rows: Any) -> VersionDiff:
    """Both versions joined at each row of a training set (`entity_rows`: a pyarrow table)."""
    from sinks.offline.join import OfflineReader

    rows: tuple[list[dict], list[dict]] = ([], [])
    for side, (version, definition) in enumerate(zip(versions, definitions, strict=True)):
        reader = OfflineReader([definition], offline_root, version=version, client=client)
        names = definition.value_names
        joined = reader.get_historical_features(entity_rows, [f"{view}:*"], full_feature_names=True)
        columns = {n: joined[f"{view}__{n}"].to_pylist() for n in names}
        rows[side].extend({n: columns[n][i] for n in names} for i in range(joined.num_rows))
    fields = definitions[1].entity_fields
    keys = [",".join(str(entity_rows[f][i].as_py()) for f in fields) + f"@{entity_rows['event_timestamp'][i].as_py()}"
            for i in range(entity_rows.num_rows)]
    return _assemble(view, versions, "offline", *definitions, keys, rows)
