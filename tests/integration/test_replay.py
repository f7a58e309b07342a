"""Kappa replay on the real broker and Redis: rebuild into a new version, switch, resume after a crash.

- Adding an aggregation and replaying: reads come from the old version before
  the switch and from the new one after it, no read during the switch finds an
  entity missing, the new values equal the oracle, and a worker with the new
  definition takes over live processing exactly where the replay ended.
- Replaying the same history twice gives byte-identical online states and
  Parquet content; a replay killed between its Parquet write and its commit
  point, then run again, ends identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest

from sinks.online.reads import FeatureReader
from sinks.online.versions import VersionRegistry
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.definitions.view import load_views
from streams.stack.embedded import free_port, wait_until
from tests.helpers import WITH_CLUSTER, assert_online_equals_oracle, view_under_test
from tests.oracle import OEvent, close, value_at

pytestmark = pytest.mark.integration

BEFORE = """
from streams import Feature, FeatureView, Session, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="1d", grace="1h", partitions=2,
                     features=[Feature("amount", "sum", Tumbling("5m")),
                               Feature("amount", "count", Sliding("30m", "5m"))])
"""
AFTER = BEFORE.replace('Feature("amount", "count", Sliding("30m", "5m"))',
                       'Feature("amount", "count", Sliding("30m", "5m")), Feature("amount", "max", Session("10m"))')
BASE = 1_767_225_600_000


def rillet(settings, *args, env=None):
    full = {**os.environ, **settings.to_env(), **(env or {})}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, timeout=300,
                          env=full)


def oracle_rows(view, history, entity, t):
    events = [OEvent(e["user_id"], e["event_time"], {"amount": e["amount"]}, i) for i, e in enumerate(history)]
    return value_at(view, events, entity, t)


@WITH_CLUSTER
def test_replay_adds_a_feature_and_switches_without_a_gap(stack, tmp_path):
    case = view_under_test(stack, tmp_path, BEFORE, "rep")
    old_view, settings = case.view, case.settings
    history = synthetic_payments(users=25, events=3000, start_ms=BASE, end_ms=BASE + 3 * 3_600_000, seed=3)
    worker = worker_process(settings, str(case.features), tmp_path, free_port())
    try:
        with EventProducer(settings, old_view) as producer:
            producer.send_many(history[:2000])
        wait_caught_up(settings, settings.worker_group, old_view.topic, producer.report.heads, timeout_s=120,
                       alive=worker.alive)
        new_features = tmp_path / "features_v2.py"
        new_features.write_text(case.features.read_text().replace(
            'Feature("amount", "count", Sliding("30m", "5m"))',
            'Feature("amount", "count", Sliding("30m", "5m")), Feature("amount", "max", Session("10m"))'))
        [new_view] = load_views(new_features)
        assert new_view.fingerprint != old_view.fingerprint

        # a reader keeps reading every entity while the replay runs and switches
        users = sorted({e["user_id"] for e in history[:2000]})
        reader = FeatureReader([old_view], connect_redis(settings))
        seen_versions, missing, stop = [], [], threading.Event()

        def read_loop():
            while not stop.is_set():
                plan = reader.plan([f"{old_view.name}:amount_sum_5m"], [{"user_id": u} for u in users])
                [(version, blobs)] = reader.fetch(plan)
                seen_versions.append(version)
                missing.extend(u for u, b in zip(users, blobs, strict=True) if b is None)
                stop.wait(0.005)  # paced: a spinning reader took a core from the replay and the other tests

        thread = threading.Thread(target=read_loop, daemon=True)
        thread.start()
        dry = rillet(settings, "replay", "--features", str(new_features), "--view", new_view.name, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout.strip().splitlines()[-1])["records"] == 2000
        done = rillet(settings, "replay", "--features", str(new_features), "--view", new_view.name)
        stop.set()
        thread.join(10)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["switched"] and summary["version"] == 2 and summary["previous_version"] == 1
        assert "[replay]" in done.stderr and "records/s" in done.stderr  # the progress line
        assert not missing
        assert seen_versions[0] == 1 and seen_versions[-1] == 2
        assert seen_versions == sorted(seen_versions)  # old, then new: never back

        # the old worker stops at its next batch; a worker with the new definition takes over
        refused = rillet(settings, "worker", "--features", str(case.features))
        assert refused.returncode == 1 and "rillet replay" in refused.stderr.strip().splitlines()[-1]
        with EventProducer(settings, old_view) as producer:
            producer.send_many(history[2000:])
        wait_until(lambda: not worker.alive(), timeout_s=60, what="the old worker to stop")
        new_worker = worker_process(settings, str(new_features), tmp_path, free_port())
        try:
            group = f"{settings.worker_group}.{new_view.name}-v2"
            heads = producer.report.heads
            wait_caught_up(settings, group, new_view.topic, heads, timeout_s=120, alive=new_worker.alive)
        finally:
            new_worker.stop()
    finally:
        worker.stop()

    # every value, read through the pointer with the new definition, equals the oracle over all events
    reader = FeatureReader([new_view], connect_redis(settings))
    for user in sorted({e["user_id"] for e in history}):
        latest = max(e["event_time"] for e in history if e["user_id"] == user)
        row = reader.get_online_features([f"{new_view.name}:*"], [{"user_id": user}], as_of=latest).rows[0]
        for name, expected in oracle_rows(new_view, history, user, latest).items():
            assert close(row[f"{new_view.name}:{name}"], expected), (user, name)
    versions = {v.version: v.state for v in VersionRegistry(connect_redis(settings)).list(new_view.name)}
    assert versions == {1: "retired", 2: "active"}
    listed = rillet(settings, "versions", "--features", str(new_features), "--view", new_view.name)
    assert [json.loads(line)["state"] for line in listed.stdout.splitlines()] == ["retired", "active"]
    assert json.loads(listed.stdout.splitlines()[-1])["lag"] == 0
    gc = rillet(settings, "versions", "gc", "--features", str(new_features), "--view", new_view.name)
    assert json.loads(gc.stdout)["removed"] == []  # retired just now: reads in flight may still follow v1
    gc = rillet(settings, "versions", "gc", "--features", str(new_features), "--view", new_view.name,
                "--grace", "0")
    assert json.loads(gc.stdout)["removed"] == [1]
    assert not list(connect_redis(settings).scan_iter(f"rillet:{new_view.name}:v1:*"))  # states, counts, markers


def test_replays_are_identical_and_resume_after_a_crash(stack, tmp_path):
    case = view_under_test(stack, tmp_path, AFTER, "twice")
    view, settings = case.view, case.settings
    history = synthetic_payments(users=40, events=6000, start_ms=BASE, end_ms=BASE + 6 * 3_600_000, seed=9)
    with EventProducer(settings, view) as producer:
        producer.send_many(history)
    args = ["replay", "--features", str(case.features), "--view", view.name, "--batch-size", "700"]
    for _ in range(2):
        result = rillet(settings, *args)
        assert result.returncode == 0, result.stderr
    crashed = rillet(settings, *args, env={"RILLET_FAULT_REPLAY_AFTER_OFFLINE_WRITE": "4"})
    assert crashed.returncode == 137
    resumed = rillet(settings, *args)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["version"] == 3 and summary["resumed"] and 0 < summary["records"] < len(history)

    client = connect_redis(settings)
    users = sorted({e["user_id"] for e in history})
    states = {v: client.mget([f"rillet:{view.name}:v{v}:e:{u}" for u in users]) for v in (1, 2, 3)}
    assert all(states[1]) and states[1] == states[2] == states[3]
    tables = {}
    for v in (1, 2, 3):
        table = pq.ParquetDataset(settings.offline_root / f"view={view.name}" / f"version={v}").read()
        tables[v] = table.sort_by([("partition", "ascending"), ("offset", "ascending")])
    assert tables[1].num_rows == len(history)
    assert tables[1].equals(tables[2]) and tables[1].equals(tables[3])  # the crash wrote no row twice
    reader = FeatureReader([view], client)
    for user in users[:10]:
        latest = max(e["event_time"] for e in history if e["user_id"] == user)
        row = reader.get_online_features([f"{view.name}:*"], [{"user_id": user}], as_of=latest).rows[0]
        for name, expected in oracle_rows(view, history, user, latest).items():
            assert close(row[f"{view.name}:{name}"], expected), (user, name)


OTHER = """
from streams import Feature, FeatureView, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="1d", partitions=2, features=[Feature("amount", "count", Tumbling("5m"))])
"""


def test_first_version_by_replay_while_other_views_workers_hold_the_shared_group(stack, tmp_path):
    """A view that never had a worker is built by `rillet replay` while another view's worker is a live
    member of the configured group; its first workers then carry on where the replay ended, and
    `rillet versions` counts what the replay and the live worker aggregated."""
    case = view_under_test(stack, tmp_path, BEFORE, "first")
    view, settings = case.view, case.settings
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = view_under_test(stack, other_dir, OTHER, "other")
    other_settings = other.settings.with_(worker_group=settings.worker_group)  # the same, shared group
    history = synthetic_payments(users=20, events=1500, start_ms=BASE, end_ms=BASE + 2 * 3_600_000, seed=5)
    other_worker = worker_process(other_settings, str(other.features), other_dir, free_port())
    try:
        with EventProducer(other_settings, other.view) as producer:
            producer.send_many(history[:100])
        wait_caught_up(other_settings, settings.worker_group, other.view.topic, producer.report.heads,
                       timeout_s=120, alive=other_worker.alive)  # a live member of the shared group
        with EventProducer(settings, view) as producer:
            producer.send_many(history[:1000])
        for _ in range(2):  # the second run finds the version active and builds the next one
            done = rillet(settings, "replay", "--features", str(case.features), "--view", view.name)
            assert done.returncode == 0, done.stderr
            assert "Traceback" not in done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["switched"] and summary["version"] == 2 and summary["previous_version"] == 1
        assert other_worker.alive()

        worker = worker_process(settings, str(case.features), tmp_path, free_port())
        try:
            with EventProducer(settings, view) as producer:
                producer.send_many(history[1000:])
            group = f"{settings.worker_group}.{view.name}-v2"
            wait_caught_up(settings, group, view.topic, producer.report.heads, timeout_s=120, alive=worker.alive)
        finally:
            worker.stop()
    finally:
        other_worker.stop()
    assert_online_equals_oracle(settings, view, history)
    listed = [json.loads(line) for line in rillet(settings, "versions", "--features", str(case.features),
                                                  "--view", view.name).stdout.splitlines()]
    assert [(v["version"], v["state"], v["events"]) for v in listed] == [(1, "retired", 1000),
                                                                         (2, "active", len(history))]
    assert listed[-1]["lag"] == 0


def test_a_refused_hand_over_commit_loses_and_doubles_nothing(stack, tmp_path):
    """Should the version's group have a member when the replay hands over (Kafka refuses the commit),
    its workers start from the replay's progress record instead: no event is applied or logged twice."""
    case = view_under_test(stack, tmp_path, BEFORE, "refused")
    view, settings = case.view, case.settings
    history = synthetic_payments(users=15, events=1200, start_ms=BASE, end_ms=BASE + 2 * 3_600_000, seed=8)
    with EventProducer(settings, view) as producer:
        producer.send_many(history[:800])
    # as Kafka refuses a commit from outside a group that has members
    done = rillet(settings, "replay", "--features", str(case.features), "--view", view.name,
                  env={"RILLET_SKIP_HANDOVER_COMMIT": "1"})
    assert done.returncode == 0, done.stderr
    assert "handover_commit_refused" in done.stderr
    worker = worker_process(settings, str(case.features), tmp_path, free_port())
    try:
        with EventProducer(settings, view) as producer:
            producer.send_many(history[800:])
        wait_caught_up(settings, f"{settings.worker_group}.{view.name}-v1", view.topic, producer.report.heads,
                       timeout_s=120, alive=worker.alive)
    finally:
        worker.stop()
    table = pq.ParquetDataset(settings.offline_root / f"view={view.name}" / "version=1").read()
    assert table.num_rows == len(history)  # the replay's 800 rows and the worker's 400, none twice
    assert_online_equals_oracle(settings, view, history)


def test_a_replay_in_two_processes_equals_one_and_switches_once(stack, tmp_path):
    """`--processes 2` splits the partitions between two replays of the same version; the states and
    Parquet rows equal a one-process replay's, and readers switch once, after both shares are done."""
    case = view_under_test(stack, tmp_path, AFTER.replace("partitions=2", "partitions=4"), "par")
    view, settings = case.view, case.settings
    history = synthetic_payments(users=30, events=4000, start_ms=BASE, end_ms=BASE + 4 * 3_600_000, seed=12)
    with EventProducer(settings, view) as producer:
        producer.send_many(history)
    base = ["replay", "--features", str(case.features), "--view", view.name, "--batch-size", "500"]
    two = rillet(settings, *base, "--processes", "2")
    assert two.returncode == 0, two.stderr
    summary = json.loads(two.stdout.strip().splitlines()[-1])
    assert (summary["version"], summary["records"], summary["aggregated"], summary["switched"]) == \
        (1, len(history), len(history), True)
    one = rillet(settings, *base)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout.strip().splitlines()[-1])["previous_version"] == 1

    client = connect_redis(settings)
    users = sorted({e["user_id"] for e in history})
    assert client.mget([f"rillet:{view.name}:v1:e:{u}" for u in users]) == \
        client.mget([f"rillet:{view.name}:v2:e:{u}" for u in users])
    tables = [pq.ParquetDataset(settings.offline_root / f"view={view.name}" / f"version={v}").read()
              .sort_by([("partition", "ascending"), ("offset", "ascending")]) for v in (1, 2)]
    assert tables[0].num_rows == len(history) and tables[0].equals(tables[1])
    assert VersionRegistry(client).get(view.name, 1).events == len(history)

    refused = rillet(settings, *base, "--processes", "2", "--partitions", "0")
    assert refused.returncode == 1 and "not both" in refused.stderr
