"""online (as_of) == offline point-in-time == oracle, on the real worker, broker and Redis.

A random history (bursts, long pauses, nulls, disorder within grace, late
events) for many users goes through Tansu to a `rillet worker` process. Then,
for every window x aggregation:

- the point-in-time join, over the Parquet the worker wrote, equals the oracle
  at many times per user: on, just before and just after events, at window
  edges, between events, before the first event and past the ttl;
- the online read (Redis, `as_of` at or after each user's latest event) equals
  the join and the oracle at the same times.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from sinks.offline.join import OfflineReader
from sinks.online.reads import FeatureReader
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import worker_process
from streams.stack.embedded import free_port
from tests.helpers import WITH_CLUSTER, decode_payment, read_topic, view_under_test
from tests.oracle import OEvent, close, late_mask, value_at

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Lifetime, Session, Sliding, Tumbling

windows = (Tumbling("5m"), Sliding("1h", "10m"), Session("15m"), Lifetime())
{name} = FeatureView(
    name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
    ttl="3h", grace="3m", partitions=2,
    features=[Feature("amount", agg, w) for agg in
              ("count", "sum", "mean", "min", "max", "last", "stddev", "count_distinct", "first", "last_k(3)",
               "first_k(2)", "top_k(2)", "approx_percentile(0.5)", "approx_percentile(0.99)") for w in windows]
             + [Feature("merchant", agg, w) for agg in ("count_distinct", "last", "min", "top_k(2)", "last_k(2)")
                for w in windows]
             + [Feature(None, "age", Lifetime()), Feature("amount", "decayed_sum(10m)", Lifetime())],
)
"""
MINUTE = 60_000


def random_history(seed: int) -> list[dict]:
    """Per user: bursts and pauses (some longer than the ttl), nulls, and disorder within and beyond grace."""
    rng = random.Random(seed)
    base = 1_767_225_600_000
    events = []
    for user in range(24):
        t = base + rng.randrange(0, 30 * MINUTE)
        for _ in range(rng.randrange(1, 40)):
            t += rng.randrange(0, rng.choice([2, 20, 300]) * MINUTE)
            amount = None if rng.random() < 0.1 else rng.choice([round(rng.uniform(0, 900), 2), 5.0])
            events.append({"user_id": f"u{user}", "merchant": rng.choice(["m1", "m2", "m3", "m4"]),
                           "amount": amount, "event_time": t})
    events.sort(key=lambda e: e["event_time"])
    for i in range(len(events)):  # disorder: swap some neighbours, and pull some events back in time
        if rng.random() < 0.2 and i + 1 < len(events):
            events[i], events[i + 1] = events[i + 1], events[i]
        if rng.random() < 0.05:
            back = rng.choice([1, 2, 10]) * MINUTE  # 10 minutes is beyond grace: late, when it is behind
            events[i] = dict(events[i], event_time=events[i]["event_time"] - back)
    return events


def probe_times(rng: random.Random, times: list[int], ttl: int) -> list[int]:
    out = {times[0] - 1, times[-1] + ttl, times[-1] + ttl + 1}
    for t in rng.sample(times, min(len(times), 8)):
        out |= {t - 1, t, t + 1, (t // (5 * MINUTE)) * 5 * MINUTE - 1, (t // (10 * MINUTE)) * 10 * MINUTE,
                t + 15 * MINUTE, t + 15 * MINUTE + 1, t + rng.randrange(0, 2 * 60 * MINUTE)}
    return sorted(out)


@WITH_CLUSTER
def test_online_equals_offline_point_in_time_equals_oracle(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "cons", state_sweep_ms=0)
    view, settings = case.view, case.settings
    history = random_history(seed=17)
    worker = worker_process(settings, str(case.features), tmp_path, free_port())
    try:
        with EventProducer(settings, view) as producer:
            producer.send_many(history)
        heads = producer.report.heads
        wait_caught_up(settings, settings.worker_group, view.topic, heads, timeout_s=180, alive=worker.alive)
    finally:
        worker.stop()

    # The oracle's events: what the broker holds, in partition order, minus what semantics.md calls late.
    arrivals = []
    for partition, offset, raw in read_topic(settings, view.topic, sum(heads.values())):
        e = decode_payment(raw)
        arrivals.append((partition, OEvent(e["user_id"], e["event_time"],
                                           {"amount": e["amount"], "merchant": e["merchant"]}, offset)))
    partition_of = {id(e): p for p, e in arrivals}
    late = late_mask([e for _, e in arrivals], view.grace_ms, lambda e: partition_of[id(e)])
    kept = [e for (_, e), is_late in zip(arrivals, late, strict=True) if not is_late]
    assert sum(late) >= 1 and len(kept) > 300

    rng = random.Random(4)
    users = sorted({e.entity for e in kept})
    queries = [(u, t) for u in users for t in probe_times(rng, sorted(e.t for e in kept if e.entity == u), view.ttl_ms)]
    queries += [("nobody", queries[0][1])]
    entity_df = pa.table({"user_id": [u for u, _ in queries],
                          "event_timestamp": pa.array([t for _, t in queries], pa.timestamp("ms", tz="UTC"))})
    joined = OfflineReader([view], settings.offline_root).get_historical_features(entity_df, [f"{view.name}:*"])
    assert joined.num_rows == len(queries)
    assert joined.column("user_id").to_pylist() == [u for u, _ in queries]  # the caller's row order

    online = FeatureReader([view], connect_redis(settings))
    latest = {u: max(e.t for e in kept if e.entity == u) for u in users}
    checked_online = 0
    # exact: the oracle's bucket rule and counts are the contract's own; online and offline are the same bits
    exact = {f.name for f in view.features if f.aggregation.startswith(("approx_percentile", "top_k"))}
    same_bits = exact | {f.name for f in view.features if f.aggregation.startswith("decayed_sum")}
    for i, (user, t) in enumerate(queries):
        want = value_at(view, kept, user, t)
        offline = {name: _py(joined.column(name)[i]) for name in want}
        for name, expected in want.items():
            same = offline[name] == expected if name in exact else close(offline[name], expected)
            assert same, ("offline", user, t, name, offline[name], expected)
        if user in latest and t >= latest[user]:
            row = online.get_online_features([f"{view.name}:*"], [{"user_id": user}], as_of=t).rows[0]
            for name in want:
                got = row[f"{view.name}:{name}"]
                same = got == offline[name] if name in same_bits else close(got, offline[name])
                assert same, ("online", user, t, name, got, offline[name])
            checked_online += 1
    assert checked_online >= len(users)


def _py(scalar: pa.Scalar):
    value = scalar.as_py()
    if isinstance(value, list) and value and isinstance(value[0], dict):  # top_k's structs: [value, count]
        return [[pair["value"], pair["count"]] for pair in value]
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return value.item() if isinstance(value, np.generic) else value
