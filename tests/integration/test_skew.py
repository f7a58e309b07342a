"""Training/serving skew, measured on real parts: online reads logged to the served-feature topic,
recomputed by the point-in-time join over the worker's offline log (`rillet skew`).

With nothing wrong, a few thousand logged reads give exactly 0 mismatches. Then two faults:
an entity's Redis key deleted (its reads serve nothing: "missing"), and the worker stopped
while an entity's events keep coming (its reads serve stale values: "mismatches" once the
worker is back and the offline log has the events). The report names both entities and
the features they touch, and exits 1.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sinks.observe.served_log import ServedLog
from sinks.online.keys import online_key
from sinks.online.reads import FeatureReader
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.stack.embedded import free_port
from tests.helpers import view_under_test

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Session, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="1d", grace="1h", partitions=2,
                     features=[Feature("amount", "sum", Tumbling("5m")),
                               Feature("amount", "count", Sliding("1h", "5m")),
                               Feature("amount", "max", Sliding("1h", "5m")),
                               Feature("merchant", "last", Session("10m")),
                               Feature("amount", "mean", Sliding("30m", "5m"))])
"""


def skew(settings, features, view, *extra):
    result = subprocess.run([sys.executable, "-m", "streams.cli", "skew", "--features", str(features),
                             "--view", view.name, *extra], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **settings.to_env()})
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, {line["feature"]: line for line in lines[:-1]}, lines[-1], result.stderr


def land(settings):
    result = subprocess.run([sys.executable, "-m", "streams.cli", "land-served", "--idle", "2"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, **settings.to_env()})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_skew_is_zero_when_nothing_is_wrong_and_names_what_a_fault_broke(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "skew", batch_size=100, batch_wait_ms=20)
    view, features = case.view, case.features
    settings = case.settings.with_(served_log_topic=f"served_{case.name}")
    now = int(time.time() * 1000)
    history = synthetic_payments(users=20, events=1500, start_ms=now - 3_000_000, end_ms=now - 1000, seed=8)
    users = sorted({e["user_id"] for e in history})
    port = free_port()
    worker = worker_process(settings, str(features), tmp_path, port)
    log = ServedLog(settings, rate=1.0)
    reader = FeatureReader([view], connect_redis(settings), served_log=log)
    refs = [f"{view.name}:*"]
    try:
        with EventProducer(settings, view) as producer:
            producer.send_many(history)
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                       alive=worker.alive)
        rng = random.Random(3)
        for _ in range(200):  # 200 reads of 10 entities: 2,000 logged entity reads
            reader.get_online_features(refs, [{"user_id": u} for u in rng.sample(users, 10)])
        log.flush()
        code, per_feature, summary, stderr = skew(settings, features, view)
        assert code == 0, stderr
        assert summary["reads"] == 2000 and summary["bad"] == 0
        assert summary["compared"] == 2000 * len(reader.engines[view.name].value_names)
        assert all(f["mismatches"] == f["missing"] == f["extra"] == 0 for f in per_feature.values())

        # fault 1: Redis loses one entity's state
        faults_from = int(time.time() * 1000)
        lost, lagging = users[3], users[5]
        connect_redis(settings).delete(online_key(view.name, 1, lost))
        for _ in range(5):
            reader.get_online_features(refs, [{"user_id": lost}])
        # fault 2: the worker stops while the entity's events keep coming; it serves stale values
        worker.stop()
        later = [{**history[0], "user_id": lagging, "amount": 40.0 + i, "event_time": int(time.time() * 1000) - 500}
                 for i in range(3)]
        with EventProducer(settings, view) as producer:
            producer.send_many(later)
        for _ in range(5):
            reader.get_online_features(refs, [{"user_id": lagging}])
        log.flush()
        worker = worker_process(settings, str(features), tmp_path, free_port())  # back: the log catches up
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                       alive=worker.alive)
        code, per_feature, summary, _ = skew(settings, features, view, "--since", str(faults_from), "--examples", "20",
                                             "--prometheus", str(tmp_path / "skew.prom"))
        landed = [land(settings) for _ in range(2)]  # the second run resumes where the first stopped
    finally:
        log.close()
        worker.stop()
    assert code == 1 and summary["reads"] == 10 and summary["bad"] > 0
    missing = {e["entity"] for f in per_feature.values() for e in f["examples"] if e["kind"] == "missing"}
    stale = {e["entity"] for f in per_feature.values() for e in f["examples"] if e["kind"] == "mismatches"}
    assert missing == {lost} and stale == {lagging}
    assert per_feature["amount_sum_5m"]["missing"] == 5 and per_feature["amount_sum_5m"]["mismatches"] == 5
    count = per_feature["amount_count_1h_every_5m"]
    assert count["mismatches"] == 5 and count["largest_error"] == 3
    assert [r["rows"] for r in landed] == [2010, 0]
    table = pq.ParquetDataset(settings.offline_root / "served").read()
    assert table.num_rows == 2010 and set(table["view"].to_pylist()) == {view.name}
    lost_rows = table.filter(pc.and_(pc.equal(table["entity"], lost), pc.equal(table["status"], "NOT_FOUND")))
    assert lost_rows.num_rows == 5 and json.loads(lost_rows["values"][0].as_py()) == [None] * len(
        lost_rows["features"][0].as_py())
    exposition = (tmp_path / "skew.prom").read_text()
    assert f'rillet_skew_mismatches{{view="{view.name}",feature="amount_count_1h_every_5m"}} 5.0' in exposition
