"""The walking skeleton on real parts: producer -> broker -> worker process -> Redis + Parquet.

A known history (out of order within grace, late events, malformed records)
goes through the real Tansu broker to a real `rillet worker` process. The
values in Redis and in the Parquet files must equal the oracle's, computed
independently from the events; every record is either aggregated or in the
dead-letter topic with its reason.
"""

from __future__ import annotations

import json
import random
import re
import urllib.request
from collections import Counter

import pytest

from sinks.offline.store import read_offline
from sinks.online.reads import FeatureReader
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import worker_process
from streams.stack.embedded import free_port, wait_until
from tests.helpers import WITH_CLUSTER, consume, decode_payment, read_topic, view_under_test
from tests.oracle import OEvent, close, late_mask, value_at

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Range, Session, Sliding, Tumbling

w5 = Tumbling("5m")
h1 = Sliding("1h", "5m")
s30 = Session("30m")
{name} = FeatureView(
    name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
    ttl="1d", grace="2m", checks={{"amount": Range(0, 1_000_000)}}, partitions=2,
    features=[Feature("amount", agg, w) for agg in
              ("count", "sum", "mean", "min", "max", "last", "stddev") for w in (w5, h1, s30)]
             + [Feature("merchant", "count_distinct", h1), Feature("merchant", "last", s30)],
)
"""


def make_history(seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    base = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    events, t = [], base
    for _ in range(300):
        t += rng.randrange(0, 90_000)
        jitter = rng.choice([0, 0, 0, -30_000, -100_000])  # within the 2 min grace
        events.append({"user_id": f"u{rng.randrange(6)}", "merchant": f"m{rng.randrange(5)}",
                       "amount": None if rng.random() < 0.05 else round(rng.uniform(1, 500), 2),
                       "event_time": t + jitter})
    events.insert(150, dict(events[149], event_time=events[149]["event_time"] - 10 * 60_000))  # late
    events.insert(200, dict(events[199], event_time=events[199]["event_time"] - 30 * 60_000))  # late
    return events


@WITH_CLUSTER
def test_worker_computes_exact_values_in_redis_and_parquet(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "pay", state_sweep_ms=0)
    view, features_file, settings = case.view, case.features, case.settings
    history = make_history()
    port = free_port()
    worker = worker_process(settings, str(features_file), tmp_path, port)
    try:
        with EventProducer(settings, view) as producer:
            for event in history:
                producer.send(event)
            producer.send_raw(b"u1", b"\x01garbage")                       # bad magic byte
            producer.send_raw(b"u1", b"\x00\x00\x00")                      # truncated header
            producer.send(dict(history[0], user_id=""))                    # missing entity
            producer.send(dict(history[0], amount=2_000_000.0))           # outside the declared range
            far = history[-1]["event_time"] + 86_400_000                  # a day later, from new users on
            for i in range(8):                                             # both partitions: every older
                producer.send(dict(history[-1], user_id=f"n{i}", event_time=far))  # state becomes droppable
        heads = producer.report.heads
        wait_caught_up(settings, settings.worker_group, view.topic, heads, timeout_s=180, alive=worker.alive)
        # the day-later events moved every watermark past the old states: the worker drops them, between
        # batches once its expiry index is read from the table
        wait_until(lambda: _states_expired(port, view.name) >= 1, timeout_s=60, what="states expired")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        worker.stop()
    assert not worker.alive()

    # The oracle, from the records as the broker holds them, decoded independently of rillet.
    records = read_topic(settings, view.topic, sum(heads.values()))
    arrivals = []
    for partition, offset, raw in records:
        event = decode_payment(raw)
        if event is None or not event["user_id"] or (event["amount"] or 0) > 1_000_000:
            continue
        arrivals.append((partition, OEvent(event["user_id"], event["event_time"],
                                           {"amount": event["amount"], "merchant": event["merchant"]}, offset)))
    partition_of = {id(e): p for p, e in arrivals}
    events = [e for _, e in arrivals]
    late = late_mask(events, view.grace_ms, lambda e: partition_of[id(e)])
    kept = [e for e, is_late in zip(events, late, strict=True) if not is_late]
    assert sum(late) >= 2

    # Online: every entity, at its latest event and later (windows decay between events).
    reader = FeatureReader([view], connect_redis(settings))
    for entity in sorted({e.entity for e in kept}):
        latest = max(e.t for e in kept if e.entity == entity)
        for t in (latest, latest + 4 * 60_000, latest + 31 * 60_000, latest + 2 * 3_600_000):
            row = reader.get_online_features([f"{view.name}:*"], [{"user_id": entity}], as_of=t).rows[0]
            want = value_at(view, kept, entity, t)
            for feature, expected in want.items():
                assert close(row[f"{view.name}:{feature}"], expected), (entity, t, feature)

    # Offline: the log of aggregated events, each exactly once (values at any time: test_consistency).
    rows = read_offline(settings.offline_root, view.name).to_pylist()
    logged = sorted((r["entity"], int(r["event_timestamp"].timestamp() * 1000), r["offset"], r["amount"],
                     r["merchant"]) for r in rows)
    assert logged == sorted((e.entity, e.t, e.offset, e.values["amount"], e.values["merchant"]) for e in kept)

    # Dead letters: each bad record, with its reason; the counts add up.
    reasons = Counter(_dlq_reasons(settings, view.dlq_topic, expected=4 + sum(late)))
    assert reasons == Counter({"bad_magic": 1, "truncated": 1, "missing_entity": 1, "out_of_range": 1,
                               "late": sum(late)})
    assert len(kept) + sum(reasons.values()) == sum(heads.values())
    shown = _rillet_dlq(settings, features_file, view.name)
    assert shown["by_reason"] == dict(reasons) and shown["total"] == sum(reasons.values())
    assert f'rillet_dead_lettered_total{{reason="late",view="{view.name}"}} {float(sum(late))}' in metrics
    # the worker dropped old states (above), yet every value read right (Redis keeps its own ttl)


def _states_expired(port: int, view_name: str) -> float:
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    expired = re.search(rf'rillet_states_expired_total{{view="{view_name}"}} (\S+)', metrics)
    return float(expired.group(1)) if expired else 0.0


def _rillet_dlq(settings, features_file, view_name: str) -> dict:
    """`rillet dlq`'s closing summary line, run as a user would."""
    import os
    import subprocess
    import sys


    result = subprocess.run([sys.executable, "-m", "streams.cli", "dlq", "--features", str(features_file),
                             "--view", view_name, "--limit", "3", "--timeout", "3"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, **settings.to_env()})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4  # three records, then the summary
    return json.loads(lines[-1])


def _dlq_reasons(settings, topic: str, expected: int) -> list[str]:
    reasons = []
    for msg in consume(settings, topic, expected):
        headers = dict(msg.headers() or [])
        assert headers["rillet.source.topic"].decode() == topic.removesuffix(".dlq")
        assert msg.value() is not None or headers["rillet.reason"] == b"truncated"
        reasons.append(headers["rillet.reason"].decode())
    return reasons
