"""Training/serving skew: every logged online read recomputed by the point-in-time join, compared.

For each read in the served-feature log (`sinks.observe.served_log`) the join evaluates the same
view version's features for the same entity at the same time (`read_ms`, the time the
online read evaluated at). Per feature it counts the reads compared, mismatches (beyond
the contract's float tolerance, semantics.md), missing values (the join has one, the
read served none) and extra ones (the other way round), the largest error, and keeps a
few examples. With nothing wrong every count but `compared` is 0: online and offline
are the same definition evaluated over the same events. A read served while the worker
lagged, or after Redis lost a state, shows up here, named by feature and entity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from sinks.offline.join import OfflineReader, online_form
from streams.definitions.entity_keys import split_key
from streams.definitions.view import FeatureView
from streams.errors import UnknownFeatureError

__all__ = ["FeatureSkew", "SkewReport", "measure_skew", "prometheus_text"]

REL_TOLERANCE = 1e-9  # semantics.md: floating-point results agree to a relative 1e-9
SKETCH_TOLERANCE = 0.02  # count_distinct online is a HyperLogLog above its exact limit: within 2%
SKETCH_EXACT_LIMIT = 4096


@dataclass
class FeatureSkew:
    feature: str
    compared: int = 0
    mismatches: int = 0
    missing: int = 0
    extra: int = 0
    largest_error: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return self.mismatches + self.missing + self.extra


@dataclass
class SkewReport:
    view: str
    reads: int
    features: list[FeatureSkew]
    removed_versions: dict[int, int] = field(default_factory=dict)  # version gc removed -> its reads not compared

    @property
    def compared(self) -> int:
        return sum(f.compared for f in self.features)

    @property
    def bad(self) -> int:
        return sum(f.bad for f in self.features)

    @property
    def mismatch_rate(self) -> float:
        return self.bad / self.compared if self.compared else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view, "reads": self.reads, "compared": self.compared, "bad": self.bad,
                "mismatch_rate": self.mismatch_rate, "removed_versions": self.removed_versions,
                "features": [asdict(f) for f in self.features]}


def measure_skew(view: FeatureView, offline_root: Any, served: list[dict], *, examples: int = 5) -> SkewReport:
    """Compare each logged read of `view` with the point-in-time join at the same time, per feature."""
    aggregation = {f.name: f.aggregation for f in view.features}
    by_version: dict[int, list[dict]] = {}
    for record in served:
        by_version.setdefault(record["version"], []).append(record)
    skews: dict[str, FeatureSkew] = {}
    removed: dict[int, int] = {}
    for version, records in sorted(by_version.items()):
        reader = OfflineReader([view], offline_root, version=version)
        try:
            reader.version_of(view.name)  # each read is compared with the log of the version it served
        except UnknownFeatureError:
            removed[version] = len(records)  # `versions gc` deleted its log: nothing left to compare with
            continue
        names = sorted({v["name"] for r in records for v in r["features"]} & set(reader.engines[view.name].value_names))
        if not names:
            continue
        parts = [split_key(view.entity_fields, r["entity"]) for r in records]
        rows = pa.table({**{f: [p[f] for p in parts] for f in view.entity_fields},
                         "event_timestamp": pa.array([r["read_ms"] for r in records], pa.int64())})
        joined = reader.get_historical_features(rows, [f"{view.name}:{n}" for n in names])
        offline = {n: joined.column(n).to_pylist() for n in names}
        for i, record in enumerate(records):
            for served_value in record["features"]:
                name = served_value["name"]
                if name not in offline:
                    continue
                skew = skews.setdefault(name, FeatureSkew(name))
                skew.compared += 1
                online, want = served_value["value"], online_form(offline[name][i])
                verdict, error = _compare(online, want, aggregation.get(name))
                if verdict == "ok":
                    continue
                setattr(skew, verdict, getattr(skew, verdict) + 1)
                skew.largest_error = max(skew.largest_error, error)
                if len(skew.examples) < examples:
                    skew.examples.append({"entity": record["entity"], "read_ms": record["read_ms"], "kind": verdict,
                                          "online": online, "offline": want, "status": served_value["status"]})
    return SkewReport(view.name, len(served), [skews[n] for n in sorted(skews)], removed)


def _compare(online: Any, offline: Any, aggregation: str | None) -> tuple[str, float]:
    """("ok" | "mismatches" | "missing" | "extra", the error's size)."""
    if online is None and offline is None:
        return "ok", 0.0
    if online is None:
        return "missing", 0.0
    if offline is None:
        return "extra", 0.0
    if isinstance(online, bool | str | list) or isinstance(offline, bool | str | list):
        return ("ok", 0.0) if online == offline else ("mismatches", 0.0)  # no size to a wrong string or list
    error = abs(float(online) - float(offline))
    tolerance = REL_TOLERANCE
    if aggregation == "count_distinct" and max(abs(online), abs(offline)) > SKETCH_EXACT_LIMIT:
        tolerance = SKETCH_TOLERANCE
    if math.isclose(float(online), float(offline), rel_tol=tolerance, abs_tol=REL_TOLERANCE):
        return "ok", 0.0
    return "mismatches", error


def prometheus_text(report: SkewReport) -> str:
    """The report as Prometheus exposition (for node_exporter's textfile collector, or a push)."""
    lines = []
    for metric, doc in (("compared", "Logged online values compared with the point-in-time join"),
                        ("mismatches", "Values that differ beyond the contract's tolerance"),
                        ("missing", "Values the join has and the online read did not serve"),
                        ("extra", "Values the online read served and the join does not have"),
                        ("largest_error", "Largest absolute difference of a mismatching number")):
        lines += [f"# HELP rillet_skew_{metric} {doc}", f"# TYPE rillet_skew_{metric} gauge"]
        for f in report.features:
            value = float(getattr(f, metric))
            lines.append(f'rillet_skew_{metric}{{view="{report.view}",feature="{f.feature}"}} {value!r}')
    return "\n".join(lines) + "\n"
