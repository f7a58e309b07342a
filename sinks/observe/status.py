"""`rillet status`: one line per view — version, workers, lag, freshness against its target, and
the dead letters and late events of the last hour.

Everything comes from where rillet already keeps it: the version records and the
workers' health reports in Redis (each worker writes, every second, per partition
it owns: its newest applied event time, lag and the time of the report), the
consumer group's commits and the partition heads in the broker, and the dead-letter
topic (late events are dead letters with the reason `late`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from streams.broker.kafka_log import client_config
from streams.definitions.view import FeatureView
from streams.settings import Settings
from streams.timeutil import duration_label

__all__ = ["ViewStatus", "render", "stalled_partitions", "topic_heads", "version_lag", "view_status"]

HOUR_MS = 3_600_000
REPORT_STALE_MS = 30_000  # a partition whose last health report is older has no live worker
STALLED_MS = 30_000  # a partition behind its head whose view's progress stood still this long is stalled


@dataclass
class ViewStatus:
    view: str
    version: int | None
    state: str  # active, building (only a replay's version so far), or none
    building: int | None  # a newer version a replay is building
    kept: list[dict[str, Any]]  # other versions the workers keep current: {version, role, lag, kept_until_ms}
    workers: int
    partitions_reported: int
    partitions: int
    lag: int | None  # records not yet applied by the active version's workers
    freshness_s: float | None  # wall clock minus the oldest partition's newest applied event
    freshness_target_s: float | None
    verdict: str  # ok, STALE (past the target), STALLED (behind, not moving), NO WORKERS, or - (nothing to judge)
    dead_letters_1h: dict[str, int]

    @property
    def late_1h(self) -> int:
        return self.dead_letters_1h.get("late", 0)


def view_status(settings: Settings, view: FeatureView, registry: Any, heads: dict[int, int],
                lag: int | None, now_ms: int | None = None) -> ViewStatus:
    """One view's status from Redis (versions, health reports) and the broker (dead letters)."""
    from sinks.online.keys import health_key
    from streams.broker.dead_letters import dead_letters_since

    now_ms = now_ms or int(time.time() * 1000)
    versions = registry.list(view.name)
    active = next((v for v in versions if v.state == "active"), None)
    building = next((v.version for v in reversed(versions) if v.state == "building"), None)
    kept = [{"version": v.version, "role": v.state, "lag": reported_lag(registry, view.name, v.version, heads),
             "kept_until_ms": v.kept_until_ms} for v in versions if v.state in ("candidate", "previous")]
    reports = {}
    if active is not None:
        for partition, raw in registry.redis.hgetall(health_key(view.name, active.version)).items():
            report = json.loads(raw)
            if now_ms - report["at_ms"] <= REPORT_STALE_MS:
                reports[int(partition)] = report
    watermarks = [r["watermark_ms"] for r in reports.values() if r.get("watermark_ms") is not None]
    freshness = (now_ms - min(watermarks)) / 1000 if watermarks and len(reports) == len(heads) else None
    target = view.freshness_ms / 1000 if view.freshness_ms is not None else None
    stalled = stalled_partitions(reports, heads, now_ms)
    recovering = [r for r in reports.values() if r.get("recovering")]
    if active is None:
        verdict = "-"
    elif recovering:  # reading its state back: it will process again, and says when
        left = sum(r["remaining"] for r in recovering)
        etas = [r["eta_s"] for r in recovering if r.get("eta_s") is not None]
        verdict = f"RECOVERING ({left:,} records left" + (f", about {_age(max(etas))})" if etas else ")")
    elif not reports:
        verdict = "NO WORKERS"
    elif len(reports) < len(heads):
        verdict = f"NO WORKER FOR {len(heads) - len(reports)} PARTITION(S)"
    elif stalled:
        verdict = f"STALLED ON {len(stalled)} PARTITION(S)"
    elif target is not None and freshness is not None:
        verdict = "ok" if freshness <= target else "STALE"
    else:
        verdict = "ok"
    return ViewStatus(
        view=view.name, version=active.version if active else None, state="active" if active else "none",
        building=building, kept=kept, workers=len({r["worker"] for r in reports.values()}),
        partitions_reported=len(reports),
        partitions=len(heads), lag=lag, freshness_s=round(freshness, 3) if freshness is not None else None,
        freshness_target_s=target, verdict=verdict,
        dead_letters_1h=dead_letters_since(settings, view.dlq_topic, now_ms - HOUR_MS))


def stalled_partitions(reports: dict[int, dict], heads: dict[int, int], now_ms: int) -> list[int]:
    """Partitions whose head is past the view's own progress, which has not moved for STALLED_MS: the view
    is not processing them, whatever its worker or the consumer group say (a view the worker never hands
    its records to looks alive in every other figure)."""
    out = []
    for partition, report in reports.items():
        next_offset, since = report.get("next_offset"), report.get("advanced_at_ms")
        if next_offset is None or since is None:
            continue  # a report from a worker of an older release
        if heads.get(partition, 0) > next_offset and now_ms - since > STALLED_MS:
            out.append(partition)
    return sorted(out)


def reported_lag(registry: Any, view: str, version: int, heads: dict[int, int]) -> int | None:
    """Records past the version's own progress, from its workers' live health reports (None without them)."""
    from sinks.online.keys import health_key

    now_ms = int(time.time() * 1000)
    reports = [json.loads(raw) | {"partition": int(p)}
               for p, raw in registry.redis.hgetall(health_key(view, version)).items()]
    nexts = {r["partition"]: r["next_offset"] for r in reports
             if "next_offset" in r and now_ms - r["at_ms"] <= REPORT_STALE_MS}
    if not nexts:
        return None
    return sum(max(head - nexts.get(p, 0), 0) for p, head in heads.items())


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def render(rows: list[ViewStatus], *, as_json: bool = False) -> str:
    """A table (or JSON lines) of the views' status."""
    if as_json:
        return "\n".join(json.dumps({**asdict(r), "late_1h": r.late_1h}) for r in rows)
    header = ["view", "version", "workers", "lag", "freshness", "target", "status", "dead letters 1h", "late 1h"]
    lines = [header]
    for r in rows:
        version = "-" if r.version is None else f"v{r.version}" + (f" (v{r.building} building)" if r.building else "")
        for k in r.kept:  # candidates and a version kept for rollback, with their lag
            version += f" (v{k['version']} {k['role']}, lag {'-' if k['lag'] is None else format(k['lag'], ',')})"
        lines.append([
            r.view, version, f"{r.workers} ({r.partitions_reported}/{r.partitions} partitions)",
            "-" if r.lag is None else f"{r.lag:,}",
            "-" if r.freshness_s is None else _age(r.freshness_s),
            "-" if r.freshness_target_s is None else duration_label(int(r.freshness_target_s * 1000)),
            r.verdict,
            ", ".join(f"{k} {v:,}" for k, v in sorted(r.dead_letters_1h.items())) or "0",
            f"{r.late_1h:,}",
        ])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in lines)


def topic_heads(settings: Settings, topic: str) -> dict[int, int]:
    from collections import namedtuple

    from confluent_kafka.admin import AdminClient

    from streams.broker.tansu import fetch_high_watermarks

    meta = AdminClient(client_config(settings.bootstrap_servers)).list_topics(topic, timeout=10)
    tp = namedtuple("tp", "topic partition")
    partitions = [tp(topic, p) for p in sorted(meta.topics[topic].partitions)] if topic in meta.topics else []
    return {k.partition: v for k, v in fetch_high_watermarks(settings.bootstrap_servers, partitions).items()}


def version_lag(settings: Settings, registry: Any, view: Any, info: Any, heads: dict[int, int]) -> int | None:
    """Records not yet in the version: past its workers' progress (or its live group's commits, with no worker
    reporting) when active, past the replay's progress while building."""
    from sinks.online.versions import live_group
    from streams.broker.lag import committed_offsets

    if info.state == "retired" or not heads:
        return None
    if info.state == "building":
        from streams.kernel.watermark import PartitionProgress

        raw = registry.redis.hgetall(registry.progress_key(view.name, info.version))
        done = {int(p): PartitionProgress.decode(v).last_offset + 1 for p, v in raw.items()}
    else:
        # the version's own progress, as its workers report it: a group's commit covers every view its
        # workers serve, and the group is named by all of their versions
        lag = reported_lag(registry, view.name, info.version, heads)
        if lag is not None:
            return lag
        done = committed_offsets(settings, live_group(settings.worker_group, {view.name: [info]}),
                                 view.topic, sorted(heads))
    return sum(max(head - max(done.get(p, 0), 0), 0) for p, head in heads.items())
