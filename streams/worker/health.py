"""What a worker says about each view partition it owns: metrics per batch, and health reports.

After each batch: events, lateness, dead letters, delay and lag to /metrics. Every second (a timer,
so an idle partition's freshness keeps growing): freshness and lag per partition to /metrics and,
as JSON, to the version's health hash in Redis, which `rillet status` and the console read; every
ten seconds a point of the console's charts. While the state is read back from the changelog, the
report says so instead, with what is left and when it will be done.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis

from sinks.online.keys import health_key, history_key
from sinks.redis_client import REDIS_DOWN
from streams.definitions.view import FeatureView
from streams.kernel.processor import BatchResult, SourceRecord
from streams.worker.metrics import WorkerMetrics
from streams.worker.state_table import TableWatermarks

__all__ = ["HISTORY_EVERY_MS", "HISTORY_KEPT", "HealthReporter"]

HISTORY_EVERY_MS = 10_000  # a point of the console's charts
HISTORY_KEPT = 10_000  # points per view version (about a day from a few workers)


class HealthReporter:
    """Metrics and health reports of one view version in one worker process."""

    def __init__(self, app: Any, view: FeatureView, version: int, worker_id: str, metrics: WorkerMetrics,
                 client: Any, watermarks: TableWatermarks, label: str | None = None) -> None:
        self.app, self.view, self.version, self.worker_id = app, view, version, worker_id
        self.label = label or view.name  # metrics' view label: `view@vN` for a version kept beside the own one
        self.metrics, self.redis, self.watermarks = metrics, client, watermarks
        self.last_event_ms = 0
        self._read_until: dict[int, tuple[int, int | None]] = {}  # partition -> (lag, last record's timestamp)
        self._advanced: dict[int, tuple[int, int]] = {}  # partition -> (last offset, wall ms it was reached)
        self._history_ms = 0

    def observe(self, records: list[SourceRecord], result: BatchResult, seconds: float) -> None:
        """A batch's counts, delay and lag, to /metrics."""
        m, name = self.metrics, self.label
        m.events_in.labels(name).inc(len(records))
        m.aggregated.labels(name).inc(result.counts["aggregated"])
        m.late.labels(name).inc(result.counts["late"])
        m.duplicates.labels(name).inc(result.counts["duplicate"])
        for letter in result.dead_letters:
            m.dead_lettered.labels(name, letter.reason).inc()
        if result.max_event_ms is not None:
            self.last_event_ms = max(self.last_event_ms, result.max_event_ms)
            m.last_event_ms.labels(name).set(self.last_event_ms)
            m.delay.labels(name).set(time.time() - self.last_event_ms / 1000)
        m.batch_seconds.labels(name).observe(seconds)
        last_read: dict[int, SourceRecord] = {}  # partition -> its record with the greatest offset
        for r in records:
            if r.partition not in last_read or r.offset > last_read[r.partition].offset:
                last_read[r.partition] = r
        for partition, record in last_read.items():
            offset = record.offset
            tp = next((tp for tp in self.app.consumer.assignment()
                       if tp.topic == self.view.topic and tp.partition == partition), None)
            head = self.app.consumer.highwater(tp) if tp is not None else None
            if head is not None:
                m.lag.labels(name, str(partition)).set(max(head - offset - 1, 0))
                self._read_until[partition] = (max(head - offset - 1, 0), record.timestamp_ms)

    async def report(self) -> None:
        """Freshness and lag per assigned partition, now: to /metrics, and to Redis for `rillet status`."""
        m, name, now_ms = self.metrics, self.label, int(time.time() * 1000)
        assigned = sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.view.topic)
        report = {}
        for partition in assigned:
            watermark = self.watermarks.get(partition)
            lag, stamp = self._read_until.get(partition, (0, None))
            waited_s = (now_ms - stamp) / 1000 if lag and stamp is not None else 0.0
            m.lag_seconds.labels(name, str(partition)).set(max(waited_s, 0.0))
            if watermark is not None:
                m.freshness.labels(name, str(partition)).set((now_ms - watermark) / 1000)
            last = self.watermarks.last_offset(partition)
            if self._advanced.get(partition, (None,))[0] != last:
                self._advanced[partition] = (last, now_ms)
            report[str(partition)] = json.dumps({
                "worker": self.worker_id, "at_ms": now_ms, "watermark_ms": watermark, "lag": lag,
                "lag_s": round(max(waited_s, 0.0), 3),
                # this view's own progress: `rillet status` measures its lag from it, and calls a view whose
                # progress stands still behind the head stalled, whatever the consumer group committed
                "next_offset": last + 1, "advanced_at_ms": self._advanced[partition][1]})
        if report and await self._publish(report):
            try:
                if now_ms - self._history_ms >= HISTORY_EVERY_MS:
                    progress = {str(p): [self.watermarks.entry(p).aggregated, self._read_until.get(p, (0, None))[0]]
                                for p in assigned}
                    entry = {"at_ms": now_ms, "partitions": json.dumps(progress)}
                    await asyncio.wait_for(self.redis.xadd(
                        history_key(self.view.name, self.version), entry, maxlen=HISTORY_KEPT, approximate=True), 1.0)
                    self._history_ms = now_ms
            except (TimeoutError, redis.RedisError, *REDIS_DOWN):
                pass  # Redis is down: the batches wait for it, and so does this report

    async def report_recovery(self, remaining: dict[int, int], rate: float) -> None:
        """While this view's state is read back from its changelog: per partition, what is left and when it
        will be done, to /metrics and to Redis (`rillet status` says RECOVERING with an ETA, not STALLED)."""
        now_ms, total = int(time.time() * 1000), sum(remaining.values())
        self.metrics.recovering.labels(self.label).set(1 if remaining else 0)
        self.metrics.recovery_remaining.labels(self.label).set(total)
        if not remaining:
            return
        report = {str(p): json.dumps({"worker": self.worker_id, "at_ms": now_ms, "recovering": True,
                                      "remaining": left, "rate": round(rate, 1),
                                      "eta_s": round(left / rate, 1) if rate > 0 else None})
                  for p, left in remaining.items()}
        await self._publish(report)

    async def _publish(self, report: dict[str, str]) -> bool:
        """Per-partition reports (JSON) into the version's health hash, which `rillet status` reads; False
        when Redis does not answer within a second (the report is skipped, never waited for)."""
        try:
            await asyncio.wait_for(self.redis.hset(health_key(self.view.name, self.version), mapping=report), 1.0)
        except (TimeoutError, redis.RedisError, *REDIS_DOWN):
            return False
        return True
