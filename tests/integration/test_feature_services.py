"""A composite-key view and a feature service with derived features, end to end on real parts.

Two views read the same payments (published to two topics): `pair` keyed on
(user_id, merchant), `user` keyed on user_id. A feature service lists
features of both and two derived features: one takes a request-time input,
one raises for some rows. Through a real worker, Tansu and Redis:

- the online read of the service (one round trip) equals the oracle, the
  derived values equal their function applied to the oracle's values, and a
  raising row is a null with status ERROR, not a failed read;
- the HTTP answer for the service agrees with the Python read, statuses included;
- the point-in-time join of the service over the Parquet the worker wrote equals
  the oracle at times between events, derived features and request inputs included.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import urllib.request
import uuid

import pyarrow as pa
import pytest

from sinks.offline.join import OfflineReader
from sinks.online.reads import FeatureReader
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import worker_process
from streams.definitions.derived import errors as derived_errors
from streams.definitions.entity_keys import composite_key
from streams.definitions.services import load_definitions
from streams.stack.embedded import free_port, port_open, wait_until
from tests.helpers import WITH_CLUSTER
from tests.oracle import OEvent, close, value_at

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureService, FeatureView, Lifetime, Sliding, derived

hour = Sliding("1h", "10m")
pair = FeatureView(
    name="{name}_pair", topic="{name}_pair", schema="{schema}", entity=("user_id", "merchant"),
    event_time="event_time", ttl="3h", partitions=2,
    features=[Feature("amount", "sum", hour), Feature("amount", "count", hour), Feature("amount", "last_k(2)", hour),
              Feature("amount", "count", Lifetime())],
)
user = FeatureView(
    name="{name}_user", topic="{name}_user", schema="{schema}", entity="user_id", event_time="event_time",
    ttl="3h", partitions=2,
    features=[Feature("amount", "sum", hour), Feature("merchant", "top_k(2)", hour),
              Feature("amount", "approx_percentile(0.9)", Lifetime())],
)


@derived(inputs=["{name}_pair:amount_sum_1h_every_10m", "{name}_user:amount_sum_1h_every_10m", "request:amount"])
def merchant_share(pair_sum, user_sum, amount: float):
    return (pair_sum + float(amount)) / (user_sum + float(amount))


@derived(inputs=["{name}_pair:amount_count_1h_every_10m"])
def fails_when_quiet(count):
    return 1 / (count or 0)  # raises for a pair with no payment in the hour


service = FeatureService("fraud_{name}", ["{name}_pair:*", "{name}_user:merchant_top2_1h_every_10m",
                                          "{name}_user:amount_p90_lifetime", merchant_share, "fails_when_quiet"])
"""
MINUTE = 60_000


def history(seed: int) -> list[dict]:
    rng = random.Random(seed)
    t, events = 1_767_225_600_000, []
    for _ in range(300):
        t += rng.randrange(1, 6 * MINUTE)  # distinct, ordered times: no event is late
        events.append({"user_id": f"u{rng.randrange(6)}", "merchant": f"m{rng.randrange(3)}",
                       "amount": None if rng.random() < 0.1 else round(rng.uniform(1, 500), 2), "event_time": t})
    return events


@WITH_CLUSTER
def test_composite_view_and_service_online_http_and_offline(stack, tmp_path):
    from schemas import SCHEMA_DIR

    name = f"svc{uuid.uuid4().hex[:6]}"
    path = tmp_path / "features.py"
    path.write_text(FEATURES.format(name=name, schema=SCHEMA_DIR / "payment.avsc"))
    definitions = load_definitions(path)
    pair, user = definitions.views
    service = f"fraud_{name}"
    settings = stack.settings.with_(offline_path=str(tmp_path / "offline"), state_dir=str(tmp_path / "state"),
                                    worker_group=f"g-{name}")
    events = history(5)
    worker = worker_process(settings, str(path), tmp_path, free_port())
    try:
        for view in (pair, user):
            with EventProducer(settings, view) as producer:
                producer.send_many(events)
            wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=180,
                           alive=worker.alive)
    finally:
        worker.stop()

    pair_events = [OEvent(composite_key([e["user_id"], e["merchant"]]), e["event_time"], e, i)
                   for i, e in enumerate(events)]
    user_events = [OEvent(e["user_id"], e["event_time"], e, i) for i, e in enumerate(events)]

    def expected(user_id: str, merchant: str, amount: float, t: int) -> dict:
        p = value_at(pair, pair_events, composite_key([user_id, merchant]), t)
        u = value_at(user, user_events, user_id, t)
        want = {f"{pair.name}:{k}": v for k, v in p.items()}
        want[f"{user.name}:merchant_top2_1h_every_10m"] = u["merchant_top2_1h_every_10m"]
        want[f"{user.name}:amount_p90_lifetime"] = u["amount_p90_lifetime"]
        both = p["amount_sum_1h_every_10m"], u["amount_sum_1h_every_10m"]
        want["merchant_share"] = None if None in both else (both[0] + amount) / (both[1] + amount)
        want["fails_when_quiet"] = 1 / p["amount_count_1h_every_10m"] if p["amount_count_1h_every_10m"] else None
        return want

    # online, at each pair's latest event and later: one read of the whole service
    latest = {}
    for e in events:
        latest[(e["user_id"], e["merchant"])] = max(latest.get((e["user_id"], e["merchant"]), 0), e["event_time"])
    end = max(latest.values())
    rows = [{"user_id": u, "merchant": m, "amount": 10.0} for u, m in sorted(latest)]
    reader = FeatureReader(definitions.views, connect_redis(settings), services=definitions.services,
                           derived=definitions.derived)
    errors_before = derived_errors["fails_when_quiet"]
    response = reader.get_online_features([], rows, as_of=end + 50 * MINUTE, service=service)
    saw_error = 0
    for row, asked in zip(response.rows, rows, strict=True):
        want = expected(asked["user_id"], asked["merchant"], 10.0, end + 50 * MINUTE)
        assert set(want) <= set(row)
        for key, value in want.items():
            assert close(row[key], value), (asked, key, row[key], value)
        assert f"{pair.name}:amount_count_1h_every_10m" in row  # asked through pair:*, so shown
        assert f"{user.name}:amount_sum_1h_every_10m" not in row  # read only as merchant_share's input
    for status, row in zip(response.derived_statuses["fails_when_quiet"], response.rows, strict=True):
        count = row[f"{pair.name}:amount_count_1h_every_10m"]
        assert status == ("ERROR" if not count else "PRESENT")  # null: an expired pair
        saw_error += status == "ERROR"
    assert saw_error >= 1 and derived_errors["fails_when_quiet"] - errors_before == saw_error

    # HTTP: the same read from `rillet serve`, statuses and the service's version included
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--features", str(path), "--port",
                               str(port)], env={**os.environ, **settings.to_env()}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout_s=30, what="rillet serve")
        body = json.dumps({"feature_service": service, "as_of": end + 50 * MINUTE,
                           "entities": {k: [r[k] for r in rows] for k in ("user_id", "merchant", "amount")}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/features/online", data=body,
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.terminate()
        server.wait(10)
    assert f'rillet_derived_errors_total{{feature="fails_when_quiet"}} {float(saw_error)}' in metrics
    names = answer["metadata"]["feature_names"]
    assert answer["metadata"]["feature_service"]["name"] == service
    for name, result in zip(names, answer["results"], strict=True):
        if name in ("user_id", "merchant", "amount"):
            continue
        assert result["values"] == [row[name] for row in response.rows], name
        if name in response.derived_statuses:
            assert result["statuses"] == response.derived_statuses[name]

    # offline: the service's point-in-time join at times between events, request input as a column
    rng = random.Random(9)
    probes = sorted(rng.sample(range(events[0]["event_time"], end + 2 * 3_600_000), 150))
    keys = [rng.choice(sorted(latest)) for _ in probes]
    amounts = [round(rng.uniform(0, 50), 1) for _ in probes]
    entity_df = pa.table({"user_id": [k[0] for k in keys], "merchant": [k[1] for k in keys], "amount": amounts,
                          "event_timestamp": pa.array(probes, pa.timestamp("ms", tz="UTC"))})
    offline = OfflineReader(definitions.views, settings.offline_root, services=definitions.services,
                            derived=definitions.derived)
    joined = offline.get_historical_features(entity_df, service=service, full_feature_names=True)
    for i, (key, t, amount) in enumerate(zip(keys, probes, amounts, strict=True)):
        want = expected(key[0], key[1], amount, t)
        for ref, value in want.items():
            column = ref.replace(":", "__")
            got = joined.column(column)[i].as_py()
            if isinstance(got, list) and got and isinstance(got[0], dict):
                got = [[p["value"], p["count"]] for p in got]
            assert close(got, value), (key, t, ref, got, value)
