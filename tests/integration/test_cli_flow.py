"""The user's path on real parts: `rillet publish` a JSONL file, a worker, `rillet get`; `rillet up` stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from streams.broker.lag import wait_caught_up
from streams.broker.topics import partition_counts
from streams.cli.demo import worker_process
from streams.stack.embedded import broker_answers, free_port, wait_until
from tests.helpers import view_under_test

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id",
                     event_time="event_time", ttl="1d", partitions=2,
                     features=[Feature("amount", "sum", Tumbling("5m")),
                               Feature("amount", "count", Sliding("10m", "5m")),
                               Feature("merchant", "last", Tumbling("5m"))])
"""


def run_cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **settings.to_env()})


def test_publish_then_get(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "cli")
    name, features, settings = case.name, case.features, case.settings
    base = 1_767_225_600_000
    events = [{"user_id": "u1", "amount": 10.0, "merchant": "a", "event_time": base},
              {"user_id": "u1", "amount": 2.5, "merchant": "b", "event_time": base + 60_000},
              {"user_id": "u2", "amount": None, "merchant": "c", "event_time": base + 400_000}]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in events) + "\n")

    published = run_cli(settings, "publish", "--features", str(features), "--view", name, "--file", str(source))
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["sent"] == 3
    assert "HTTP Request" not in published.stderr  # no log line per registry call (httpx, httpx2)
    assert partition_counts(settings)[name] == 2

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"user_id": "u1", "amount": "ten", "merchant": "a", "event_time": base}) + "\n")
    refused = run_cli(settings, "publish", "--features", str(features), "--view", name, "--file", str(bad))
    assert refused.returncode == 1 and "amount" in refused.stderr and "Traceback" not in refused.stderr

    port = free_port()
    worker = worker_process(settings, str(features), tmp_path, port)
    try:
        heads = _heads(settings, name)
        wait_caught_up(settings, settings.worker_group, name, heads, timeout_s=120, alive=worker.alive)
    finally:
        worker.stop()

    got = run_cli(settings, "get", "--features", str(features), "--view", name, "--entity", "u1",
                  "--as-of", str(base + 60_000))
    assert got.returncode == 0, got.stderr
    out = json.loads(got.stdout)
    assert out["features"] == {"amount_sum_5m": 12.5, "amount_count_10m_every_5m": 2, "merchant_last_5m": "b"}
    assert out["event_timestamp_ms"] == base + 60_000

    later = run_cli(settings, "get", "--features", str(features), "--view", name, "--entity", "u1",
                    "--as-of", str(base + 300_000))  # tumbling window rolled over; sliding still holds both
    assert json.loads(later.stdout)["features"] == {"amount_sum_5m": 0, "amount_count_10m_every_5m": 2,
                                                    "merchant_last_5m": None}
    missing = run_cli(settings, "get", "--features", str(features), "--view", name, "--entity", "nobody")
    assert set(json.loads(missing.stdout)["features"].values()) == {None}

    # u2's event had no amount: fine. Nothing was dead-lettered, so `rillet dlq` says so
    dlq = run_cli(settings, "dlq", "--features", str(features), "--view", name, "--timeout", "2")
    assert dlq.returncode == 0, dlq.stderr
    assert json.loads(dlq.stdout.strip().splitlines()[-1]) == {"topic": f"{name}.dlq", "total": 0, "by_reason": {}}


def _heads(settings, topic: str) -> dict[int, int]:
    """Partition heads from a fetch's high watermark (Tansu's ListOffsets is wrong)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"h-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    heads = {}
    try:
        for p in range(partition_counts(settings)[topic]):
            consumer.assign([TopicPartition(topic, p, 0)])
            consumer.poll(2.0)
            heads[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1]
    finally:
        consumer.close()
    return heads


def test_up_starts_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {**os.environ, "RILLET_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "up"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        wait_until(lambda: broker_answers(f"127.0.0.1:{port}"), timeout_s=60, what="rillet up's broker")
        # its own Valkey keeps an append-only file, so restarting it loses nothing
        wait_until(lambda: any((tmp_path / "data" / "stack").glob("appendonly*")), timeout_s=30,
                   what="the embedded Valkey's append-only file")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"RILLET_BOOTSTRAP_SERVERS=127.0.0.1:{port}" in out
    assert not broker_answers(f"127.0.0.1:{port}")


def _records_in(settings, topic: str) -> int:
    from collections import namedtuple

    from streams.broker.tansu import fetch_high_watermarks

    tp = namedtuple("tp", "topic partition")
    return sum(fetch_high_watermarks(settings.bootstrap_servers,
                                     [tp(topic, p) for p in range(partition_counts(settings)[topic])]).values())


def test_publish_is_all_or_nothing(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "pub")
    name, features, settings = case.name, case.features, case.settings
    good = [json.dumps({"user_id": f"u{i}", "amount": 1.0, "merchant": "m", "event_time": 1_767_225_600_000 + i})
            for i in range(2)]
    bad_schema = json.dumps({"user_id": "u9", "amount": "ten", "merchant": "m", "event_time": 1})
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join([*good, bad_schema]) + "\n")

    for _ in range(2):  # a retry of a refused file sends nothing either
        refused = run_cli(settings, "publish", "--features", str(features), "--view", name, "--file", str(source))
        assert refused.returncode == 1
        [line] = refused.stderr.strip().splitlines()
        assert f"{source}:3:" in line and "amount" in line and "nothing was sent" in line, line
    assert _records_in(settings, name) == 0

    source.write_text("\n".join([good[0], "{not json", bad_schema, good[1]]) + "\n")
    skipped = run_cli(settings, "publish", "--features", str(features), "--view", name, "--file", str(source),
                      "--skip-invalid")
    assert skipped.returncode == 0, skipped.stderr
    report = json.loads(skipped.stdout)
    assert (report["lines"], report["sent"], report["invalid"]) == (4, 2, 2), report
    assert f"{source}:2: not JSON" in report["errors"][0] and f"{source}:3:" in report["errors"][1]
    assert _records_in(settings, name) == 2


def test_the_demo_prints_no_warning_no_noise_no_traceback(tmp_path):
    """`make run` is a new user's first minute: every line it prints is rillet's own."""
    from pathlib import Path

    features = Path(__file__).resolve().parents[2] / "examples" / "payments" / "features.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RILLET_")}
    demo = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--features", str(features), "--events",
                           "2000", "--users", "100"], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    output = demo.stdout + demo.stderr
    for noise in ("Warning", "WARNING", "Traceback", "HTTP Request", "FAIL", "\r"):
        assert noise not in output, (noise, output)
    assert "1 malformed record" in output and "payments.dlq" in output
    assert "/metrics" not in output  # the worker is gone when the demo ends: no dead URL
    assert all(line.startswith(("[", "Features", " ", "amount", "merchant", "session")) or not line.strip()
               for line in demo.stdout.splitlines()), demo.stdout
