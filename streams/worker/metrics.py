"""Prometheus metrics of a worker, served at /metrics on its web port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["WorkerMetrics"]


class WorkerMetrics:
    """The counters and gauges one worker process exposes (its own registry, so tests can read it)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "rillet_events_in", "Source records read, per view", ["view"], registry=r)
        self.aggregated = Counter(
            "rillet_events_aggregated", "Events applied to window state", ["view"], registry=r)
        self.dead_lettered = Counter(
            "rillet_dead_lettered", "Records sent to the DLQ, by reason", ["view", "reason"], registry=r)
        self.late = Counter(
            "rillet_late_events", "Events later than watermark - grace", ["view"], registry=r)
        self.duplicates = Counter(
            "rillet_duplicate_events", "Re-delivered events skipped (already applied)", ["view"], registry=r)
        self.read_back = Counter(
            "rillet_offsets_read_back", "Records the stream skipped, read back from the broker", ["view"], registry=r)
        self.restored = Counter(
            "rillet_states_restored", "Entity states written back to a Redis that had lost them", ["view"],
            registry=r)
        self.expired = Counter(
            "rillet_states_expired", "Entity states dropped: no new event can reach them", ["view"], registry=r)
        self.lag = Gauge(
            "rillet_consumer_lag", "Records behind the partition head", ["view", "partition"], registry=r)
        self.last_event_ms = Gauge(
            "rillet_last_event_time_ms", "Greatest event time processed", ["view"], registry=r)
        self.delay = Gauge(
            "rillet_processing_delay_seconds", "Wall clock minus the greatest event time seen", ["view"], registry=r)
        self.freshness = Gauge(
            "rillet_freshness_seconds", "Wall clock minus the newest event time applied, per partition",
            ["view", "partition"], registry=r)
        self.freshness_target = Gauge(
            "rillet_freshness_target_seconds", "The view's declared freshness target (absent: none declared)",
            ["view"], registry=r)
        self.lag_seconds = Gauge(
            "rillet_consumer_lag_seconds", "While records wait: wall clock minus the last read record's timestamp",
            ["view", "partition"], registry=r)
        self.replica_wait = Histogram(
            "rillet_redis_replica_wait_seconds", "A batch's write and WAIT for its replicas' acknowledgement",
            ["view"], registry=r)
        self.recovering = Gauge(
            "rillet_recovering", "1 while the worker rebuilds a view's state from its changelog", ["view"], registry=r)
        self.recovery_remaining = Gauge(
            "rillet_recovery_remaining_records", "Changelog records still to read before processing resumes",
            ["view"], registry=r)
        self.standby_behind = Gauge(
            "rillet_standby_behind_records", "Changelog records a standby copy held here has still to apply: "
            "what a failover to this worker would read before it processes", ["view", "partition"], registry=r)
        self.recovery_rate = Gauge(
            "rillet_recovery_records_per_second", "How fast the changelog is read back", registry=r)
        self.timer_drift = Histogram(
            "rillet_timer_drift_seconds", "How late a 0.5 s timer wakes: time the event loop was held",
            registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0))
        self.timer_drift_max = Gauge(
            "rillet_timer_drift_max_seconds", "The latest any timer woke since the worker started", registry=r)
        self.batch_seconds = Histogram(
            "rillet_batch_seconds", "Time to process and sink one batch", ["view"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
