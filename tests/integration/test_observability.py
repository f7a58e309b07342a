"""What an operator sees of a live worker: its metrics, the shipped alert rules and dashboard, and
`rillet status`.

A worker runs a view with a freshness target; the events include a late one and an
undecodable record. Every metric the alert rules and the Grafana dashboard name must
be on the worker's /metrics, and `rillet status` must report the version, the worker,
zero lag, freshness within the target and the last hour's dead letters by reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from sinks.observe.status import topic_heads, view_status
from sinks.online.versions import VersionRegistry
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.errors import DEAD_LETTER_REASONS
from streams.stack.embedded import free_port, wait_until
from tests.helpers import view_under_test

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy"
FEATURES = """
from streams import Feature, FeatureView, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="7d", grace="1m", freshness="30d", partitions=2,
                     features=[Feature("amount", "sum", Tumbling("5m")),
                               Feature("amount", "count", Sliding("1h", "5m"))])
"""


def metric_names(text: str) -> set[str]:
    return set(re.findall(r"\brillet_[a-z_]+[a-z]\b", text))


def exposed(exposition: str) -> set[str]:
    """Sample names on /metrics (counters as `_total`, histograms as `_bucket`, `_sum`, `_count`)."""
    return {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and not line.startswith("#")}


def test_alerts_dashboard_and_status_agree_with_a_live_worker(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "watch", batch_size=100, batch_wait_ms=20)
    view, settings = case.view, case.settings
    now = int(time.time() * 1000)
    history = synthetic_payments(users=10, events=200, start_ms=now - 600_000, end_ms=now, seed=4)
    port = free_port()
    worker = worker_process(settings, str(case.features), tmp_path, port)
    try:
        with EventProducer(settings, view) as producer:
            producer.send_many(history)
            producer.flush()
            producer.send_many([{**history[0], "event_time": now - 3_600_000}])  # an hour behind: late
            producer.send_raw(b"u1", b"\x00\x00\x00")  # undecodable: truncated
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                       alive=worker.alive)

        def metrics() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return response.read().decode()

        wait_until(lambda: "rillet_freshness_seconds{" in metrics() and "rillet_late_events_total{" in metrics(),
                   timeout_s=30, what="the worker's health report")
        on_worker = exposed(metrics())
        for reason in DEAD_LETTER_REASONS:  # every labelled series from the start, at 0 when nothing happened
            assert f'rillet_dead_lettered_total{{reason="{reason}",view="{view.name}"}}' in metrics(), reason
        assert f'rillet_dead_lettered_total{{reason="bad_magic",view="{view.name}"}} 0.0' in metrics()
        alerts = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
        rules = [rule for group in alerts["groups"] for rule in group["rules"]]
        assert {"RilletFreshnessPastTarget", "RilletConsumerLagGrowing", "RilletDeadLettersHigh"} <= \
            {r["alert"] for r in rules}
        dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
        named = metric_names(" ".join(r["expr"] for r in rules)) | metric_names(json.dumps(dashboard))
        assert len(named) >= 8
        missing = {name for name in named if name not in on_worker}
        assert not missing, f"named by the rules or the dashboard, absent on a live worker: {sorted(missing)}"

        status = subprocess.run([sys.executable, "-m", "streams.cli", "status", "--features", str(case.features),
                                 "--json", "--check"], capture_output=True, text=True, timeout=120,
                                env={**os.environ, **settings.to_env()})
        assert status.returncode == 0, status.stderr
        row = json.loads(status.stdout.strip().splitlines()[-1])
        assert (row["view"], row["version"], row["workers"], row["lag"], row["verdict"]) == (view.name, 1, 1, 0, "ok")
        assert row["partitions_reported"] == row["partitions"] == 2
        assert 0 <= row["freshness_s"] < 30 * 86_400 and row["freshness_target_s"] == 30 * 86_400
        assert row["dead_letters_1h"] == {"late": 1, "truncated": 1} and row["late_1h"] == 1
        table = subprocess.run([sys.executable, "-m", "streams.cli", "status", "--features", str(case.features)],
                               capture_output=True, text=True, timeout=120, env={**os.environ, **settings.to_env()})
        assert table.returncode == 0 and view.name in table.stdout and "late 1, truncated 1" in table.stdout

        # a healthy worker under steady traffic, past Faust's 10 s check that each partition is processed
        # (it cried "Stream has not started processing" at ERROR every 2.5 s with the batch transport): no ERROR
        started = time.monotonic()
        with EventProducer(settings, view) as producer:
            while time.monotonic() - started < 14:
                moment = int(time.time() * 1000)
                producer.send_many([{**e, "event_time": moment} for e in history[:20]])
                producer.flush()
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=60,
                       alive=worker.alive)
        errors = [line for line in worker.tail(100_000).splitlines() if "[ERROR]" in line or " ERROR " in line]
        assert not errors, errors[:3]
    finally:
        worker.stop()


def test_a_worker_reading_its_state_back_says_so_with_an_eta(stack, tmp_path):
    """A new machine (an empty state directory) reads the whole changelog back: `rillet status` says
    RECOVERING with what is left, /metrics has rillet_recovering and the remaining records, and the
    worker then carries on. Each changelog fetch is held 400 ms (a slow disk), so the recovery lasts
    seconds however fast this machine reads it back."""
    case = view_under_test(stack, tmp_path, FEATURES, "recover", batch_size=2000)
    view, settings = case.view, case.settings
    now = int(time.time() * 1000)
    history = [{**e, "user_id": f"r{i:06d}"} for i, e in enumerate(
        synthetic_payments(users=1, events=30_000, start_ms=now - 600_000, end_ms=now - 1000, seed=4))]
    worker = worker_process(settings, str(case.features), tmp_path, free_port())
    try:
        with EventProducer(settings, view) as producer:
            producer.send_many(history)
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=180,
                       alive=worker.alive)
    finally:
        worker.kill()
    fresh = settings.with_(state_dir=str(tmp_path / "new-machine"))
    port = free_port()
    worker = worker_process(fresh, str(case.features), tmp_path, port, {"RILLET_PAUSE_CHANGELOG_FETCH_MS": "400"})
    env = {**os.environ, **fresh.to_env()}

    def status() -> dict:
        shown = subprocess.run([sys.executable, "-m", "streams.cli", "status", "--features", str(case.features),
                                "--json"], capture_output=True, text=True, timeout=60, env=env)
        return json.loads(shown.stdout.strip().splitlines()[-1])

    def verdict_now() -> str:  # what `rillet status` computes, in process: the recovery lasts seconds
        registry = VersionRegistry(connect_redis(fresh))
        heads = topic_heads(fresh, view.topic)
        return view_status(fresh, view, registry, heads, None).verdict

    def recovering_on_metrics() -> bool:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return False
        return f'rillet_recovering{{view="{view.name}"}} 1.0' in text

    try:
        wait_until(recovering_on_metrics, timeout_s=120, what="rillet_recovering to be 1", interval_s=0.05)
        seen = wait_until(lambda: (lambda v: v if v.startswith("RECOVERING") else None)(verdict_now()),
                          timeout_s=30, what="rillet status to say the worker is recovering", interval_s=0.05)
        assert "records left" in seen, seen
        with EventProducer(settings, view) as producer:
            producer.send_many(history[:10])
        wait_caught_up(fresh, settings.worker_group, view.topic, producer.report.heads, timeout_s=300,
                       alive=worker.alive)
        wait_until(lambda: status()["verdict"] == "ok", timeout_s=60, what="the verdict to be ok again")
    finally:
        worker.stop()
