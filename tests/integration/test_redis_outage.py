"""A Redis outage mid-stream: the worker waits and retries, then catches up; nothing is dropped.

The worker's Redis (a Valkey of the test's own) is frozen with SIGSTOP, which
hangs every connection as a dead host would, while events keep arriving; no
batch can commit its offsets. After SIGCONT the worker catches up and every
value equals the oracle.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from sinks.offline.store import read_offline
from sinks.online.versions import VersionRegistry
from sinks.redis_client import connect_redis
from streams.broker.lag import committed_offsets, wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.stack.embedded import EmbeddedStack, free_port, redis_answers, wait_until
from streams.worker.probe import worker_metric
from tests.helpers import assert_online_equals_oracle, view_under_test

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="1d", grace="1h", partitions=1, features=[Feature("amount", "sum", Tumbling("5m")),
                                                       Feature("amount", "count", Sliding("1h", "5m"))])
"""


def test_worker_rides_out_a_redis_outage(stack, tmp_path):
    with EmbeddedStack(stack.settings, broker_port=None, redis="embedded", workdir=tmp_path / "own-redis") as own:
        valkey = next(p for p in own.processes if p.name == "redis")
        case = view_under_test(own, tmp_path, FEATURES, "outage", batch_size=100, batch_wait_ms=20)
        view, settings = case.view, case.settings
        base = 1_767_225_600_000
        history = synthetic_payments(users=10, events=600, start_ms=base, end_ms=base + 3_600_000, seed=9)
        worker = worker_process(settings, str(case.features), tmp_path, free_port())
        try:
            with EventProducer(settings, view) as producer:
                producer.send_many(history[:300])
            wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                           alive=worker.alive)
            os.kill(valkey.process.pid, signal.SIGSTOP)  # the outage begins
            try:
                with EventProducer(settings.with_(schema_registry_url=stack.settings.schema_registry_url),
                                   view) as second:
                    second.send_many(history[300:])
                stalled = committed_offsets(settings, settings.worker_group, view.topic, [0])[0]
                wait_until(lambda: "redis_unavailable" in worker.tail(200), timeout_s=60,
                           what="the worker to notice the outage")
                assert committed_offsets(settings, settings.worker_group, view.topic, [0])[0] == stalled
                assert worker.alive()
            finally:
                os.kill(valkey.process.pid, signal.SIGCONT)  # ... and ends
            wait_caught_up(settings, settings.worker_group, view.topic, {0: len(history)}, timeout_s=180,
                           alive=worker.alive)
        finally:
            worker.stop()
        assert_online_equals_oracle(settings, view, history)


def test_a_redis_that_comes_back_empty_is_healed_from_the_table(stack, tmp_path):
    """Redis killed and restarted empty (no persistence, or a failover that lost writes): with no new
    event, every entity reads its oracle value again, written back from the worker's table."""
    with EmbeddedStack(stack.settings, broker_port=None, redis="embedded", workdir=tmp_path / "own-redis") as own:
        valkey = next(p for p in own.processes if p.name == "redis")
        case = view_under_test(own, tmp_path, FEATURES, "heal", batch_size=100, batch_wait_ms=20)
        view, settings = case.view, case.settings
        base = 1_767_225_600_000
        history = synthetic_payments(users=25, events=500, start_ms=base, end_ms=base + 3_600_000, seed=4)
        port = free_port()
        worker = worker_process(settings, str(case.features), tmp_path, port)
        try:
            with EventProducer(settings, view) as producer:
                producer.send_many(history)
            wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                           alive=worker.alive)
            assert worker_metric(port, "rillet_states_restored_total", view.name) == 0  # a first start restores none
            valkey.kill()
            valkey.start()  # the same port, nothing on disk: empty
            wait_until(lambda: redis_answers(settings.redis_url), timeout_s=30, what="Valkey to restart")
            wait_until(lambda: worker_metric(port, "rillet_states_restored_total", view.name), timeout_s=60,
                       what="the worker to restore Redis")
            assert worker_metric(port, "rillet_states_restored_total", view.name) == 25
            assert "redis_restored" in worker.tail(400)
        finally:
            worker.stop()
        assert_online_equals_oracle(settings, view, history)

        # with no worker running, `rillet restore` does the same from the changelog alone
        valkey.kill()
        valkey.start()
        wait_until(lambda: redis_answers(settings.redis_url), timeout_s=30, what="Valkey to restart")
        restored = subprocess.run([sys.executable, "-m", "streams.cli", "restore", "--features", str(case.features),
                                   "--view", view.name], capture_output=True, text=True, timeout=120,
                                  env={**os.environ, **settings.to_env()})
        assert restored.returncode == 0, restored.stderr
        report = json.loads(restored.stdout)
        assert (report["version"], report["states"], report["partitions"]) == (1, 25, [0])
        assert report["recreated_version_record"]  # Redis had lost it with the states
        assert VersionRegistry(connect_redis(settings)).active(view.name) == 1
        assert_online_equals_oracle(settings, view, history)


@pytest.mark.parametrize("stack", ["cluster"], indirect=True)
def test_a_cluster_master_killed_mid_stream_stalls_the_worker_and_loses_nothing(stack, tmp_path):
    """One of the three masters is SIGKILLed while events arrive: the worker cannot write that node's
    slots, so its batch waits and retries (no offset commits); the node is restarted (its append-only
    file brings its keys and slots back, as persistence or a promoted replica would) and the worker
    goes on. Every value equals the oracle, each event has one Parquet row."""
    cluster = stack.redis_cluster
    case = view_under_test(stack, tmp_path, FEATURES, "node", batch_size=100, batch_wait_ms=20)
    view, settings = case.view, case.settings
    base = 1_767_225_600_000
    history = synthetic_payments(users=30, events=900, start_ms=base, end_ms=base + 3_600_000, seed=21)
    worker = worker_process(settings, str(case.features), tmp_path, free_port())
    try:
        with EventProducer(settings, view) as producer:
            producer.send_many(history[:450])
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                       alive=worker.alive)
        cluster.kill_node(1)  # a third of the slots now have no master
        try:
            with EventProducer(settings, view) as second:
                second.send_many(history[450:])
            stalled = committed_offsets(settings, settings.worker_group, view.topic, [0])[0]
            wait_until(lambda: "redis_unavailable" in worker.tail(200), timeout_s=60,
                       what="the worker to notice the node is gone")
            assert committed_offsets(settings, settings.worker_group, view.topic, [0])[0] == stalled < len(history)
            assert worker.alive()
        finally:
            cluster.start_node(1)
            cluster.wait_ok()
        wait_caught_up(settings, settings.worker_group, view.topic, {0: len(history)}, timeout_s=180,
                       alive=worker.alive)
    finally:
        worker.stop()
    assert_online_equals_oracle(settings, view, history)
    rows = read_offline(settings.offline_root, view.name)
    assert rows.num_rows == len(history)
