"""A Redis Cluster failover that loses writes, induced exactly, on a 3-master, 3-replica cluster.

Replication is asynchronous. A master's replica is frozen (SIGSTOP), a stage of events is
published, the master is SIGKILLed and the replica is promoted. Two ways, with the defaults:

- **frozen**: the replica is still attached, so the worker's writes wait for its
  acknowledgement (`WAIT`, `redis_replicas_behind`) and the stage is never committed: after
  the failover the worker writes it again, to the promoted replica;
- **cut**: the master also drops the replica's link (`CLIENT KILL TYPE replica`), as a network
  cut does, so it has no replica to wait for and the stage is committed on the master alone.
  The promoted replica's write epochs are behind the worker's progress: it notices on the
  node itself and writes back every state of those partitions from its table
  (`redis_restored`). Before write epochs, 7 of 60 accounts stayed wrong here.

Either way every value equals the oracle at the end, with no later event to repair it.
"""

from __future__ import annotations

import os
import signal

import pytest

from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.errors import StackError
from streams.stack.embedded import free_port, wait_until
from streams.stack.redis_cluster import LocalRedisCluster
from tests.helpers import assert_online_equals_oracle, view_under_test

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="1d", grace="1h", partitions=2,
                     features=[Feature("amount", "sum", Tumbling("5m")),
                               Feature("amount", "count", Sliding("1h", "5m")),
                               Feature("amount", "last", Tumbling("1h"))])
"""
BASE = 1_767_225_600_000


@pytest.fixture(scope="module")
def replicated_cluster(tmp_path_factory):
    """One 3-master, 3-replica cluster for both cases: each fails over a master of its own."""
    with LocalRedisCluster(3, tmp_path_factory.mktemp("replicated"), replicas=1) as cluster:
        yield cluster


@pytest.mark.parametrize(("link", "master"), [("frozen", 0), ("cut", 1)])
def test_a_failover_to_a_replica_that_missed_the_last_writes_loses_nothing(stack, tmp_path, replicated_cluster,
                                                                           link, master):
    if stack.settings.broker_flavor != "tansu":
        pytest.skip("runs on the embedded broker with a cluster of its own")
    history = synthetic_payments(users=60, events=2400, start_ms=BASE, end_ms=BASE + 4 * 3_600_000, seed=21)
    first, second = history[:1200], history[1200:]
    cluster = replicated_cluster
    case = view_under_test(stack, tmp_path, FEATURES, "failover", redis_url=cluster.url, batch_size=200,
                           batch_wait_ms=20)
    view, settings = case.view, case.settings
    worker = worker_process(settings, str(case.features), tmp_path, free_port())
    replica = cluster.replica_of(master)
    frozen = cluster.processes[replica].process.pid
    try:
        with EventProducer(settings, view) as producer:
            producer.send_many(first)
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                       alive=worker.alive)
        os.kill(frozen, signal.SIGSTOP)  # the replica stops reading its master's writes
        if link == "cut":
            cluster.client(master).execute_command("CLIENT", "KILL", "TYPE", "replica")
            wait_until(lambda: cluster.client(master).info("replication")["connected_slaves"] == 0,
                       timeout_s=10, what="the master to drop its replica")
        try:
            with EventProducer(settings, view) as producer:
                producer.send_many(second)
            heads = producer.report.heads
            if link == "frozen":  # the stage reached the master, unacknowledged: nothing of it may be committed
                wait_until(lambda: "redis_replicas_behind" in worker.tail(300), timeout_s=60,
                           what="the worker to wait for the frozen replica")
            else:  # committed, and on the master only
                wait_caught_up(settings, settings.worker_group, view.topic, heads, timeout_s=120,
                               alive=worker.alive)
            cluster.kill_node(master)
        finally:
            os.kill(frozen, signal.SIGCONT)
        wait_until(lambda: cluster.client(replica).info("replication").get("role") == "master", timeout_s=60,
                   what="the replica to be promoted", interval_s=0.2)
        cluster.wait_ok(60)
        wait_caught_up(settings, settings.worker_group, view.topic, heads, timeout_s=180, alive=worker.alive)
        if link == "cut":
            try:
                wait_until(lambda: "redis_restored" in worker.tail(400), timeout_s=60,
                           what="the worker to notice the promoted replica's lost writes")
            except StackError as exc:  # seen once under a full run's load: keep what the worker said
                raise AssertionError(f"{exc}; the worker's log ends:\n{worker.tail(60)}") from None
    finally:
        worker.stop()
    assert_online_equals_oracle(settings, view, history)
