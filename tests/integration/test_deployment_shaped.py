"""A deployment, not a feature alone: three views on two topics, a service across them, two workers on one
host, a replay of one view while events keep coming, training data before and after, `versions gc`, skew.

Two views read the payments topic (`pay` by user, `pair` by user and merchant), one reads clicks; the
service `svc_<name>` takes features of all three and a derived feature with a typed request input.
Two `rillet worker` processes on this host share the partitions. Every value is checked against the
repo's oracle (the contract, computed independently):

- online through the service, before and after the replay of `pay` (which adds a feature);
- `rillet historical` from a CSV (the request input as text) before the switch (v1 everywhere) and
  after it (pay v2, the others v1: the output says which), and `--version pay:1` after gc is one line;
- `rillet status` calls every view ok with lag 0; `rillet skew` finds 0 mismatches over reads made
  throughout, and after gc counts the reads of the removed version instead of comparing them.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid

import pyarrow.parquet as pq
import pytest

from sinks.observe.served_log import ServedLog
from sinks.observe.status import topic_heads
from sinks.offline.join import VERSIONS_METADATA
from sinks.online.reads import FeatureReader
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import worker_process
from streams.definitions.entity_keys import composite_key
from streams.definitions.services import load_definitions
from streams.kernel.engine import AsOfTooEarlyError
from streams.stack.embedded import free_port, wait_until
from tests.oracle import OEvent, close, value_at

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureService, FeatureView, Sliding, Tumbling, derived

pay = FeatureView(name="{name}_pay", topic="{name}_payments", schema="{schema}", entity="user_id",
                  event_time="event_time", ttl="3h", partitions=2,
                  features=[Feature("amount", "sum", Tumbling("5m")), Feature("amount", "count", Sliding("30m", "5m"))])
pair = FeatureView(name="{name}_pair", topic="{name}_payments", schema="{schema}", entity=("user_id", "merchant"),
                   event_time="event_time", ttl="3h", partitions=2,
                   features=[Feature("amount", "sum", Sliding("1h", "10m"))])
clicks = FeatureView(name="{name}_clicks", topic="{name}_clicks", schema="{schema}", entity="user_id",
                     event_time="event_time", ttl="3h", partitions=2,
                     features=[Feature("amount", "count", Tumbling("10m")),
                               Feature("merchant", "last", Sliding("1h", "10m"))])


@derived(inputs=["{name}_pair:amount_sum_1h_every_10m", "request:amount"])
def share(pair_sum, amount: float):
    return amount / (pair_sum + amount)  # a text amount would raise here: request inputs arrive typed


service = FeatureService("svc_{name}", ["{name}_pay:*", "{name}_pair:*", "{name}_clicks:*", share])
"""
NEW_FEATURE = 'Feature("amount", "count", Sliding("30m", "5m"))'
MINUTE = 60_000


def rillet(settings, *args):
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **settings.to_env()})


def events_between(rng: random.Random, start: int, end: int, n: int) -> list[dict]:
    """n events at distinct, ordered times in [start, end): none is late."""
    times = sorted(rng.sample(range(start, end), n))
    return [{"user_id": f"u{rng.randrange(6)}", "merchant": f"m{rng.randrange(3)}",
             "amount": None if rng.random() < 0.05 else round(rng.uniform(1, 300), 2), "event_time": t}
            for t in times]


class Oracle:
    """The contract's values of the service over the events published so far."""

    def __init__(self, views) -> None:
        self.views = {v.name.rsplit("_", 1)[1]: v for v in views}
        self.payments: list[dict] = []
        self.clicks: list[dict] = []

    def row(self, user: str, merchant: str, amount: float, t: int) -> dict:
        def oevents(events, key):
            return [OEvent(key(e), e["event_time"], e, i) for i, e in enumerate(events)]

        want = {}
        for short, events, entity, key in (
                ("pay", self.payments, user, lambda e: e["user_id"]),
                ("pair", self.payments, composite_key([user, merchant]),
                 lambda e: composite_key([e["user_id"], e["merchant"]])),
                ("clicks", self.clicks, user, lambda e: e["user_id"])):
            view = self.views[short]
            for feature, value in value_at(view, oevents(events, key), entity, t).items():
                want[f"{view.name}:{feature}"] = value
        pair_sum = want[f"{self.views['pair'].name}:amount_sum_1h_every_10m"]
        want["share"] = None if pair_sum is None else amount / (pair_sum + amount)
        return want


def check_online(reader, service, oracle, keys, t) -> None:
    rows = [{"user_id": u, "merchant": m, "amount": 12.5} for u, m in keys]
    got = reader.get_online_features([], rows, as_of=t, service=service).rows
    for asked, row in zip(rows, got, strict=True):
        for ref, value in oracle.row(asked["user_id"], asked["merchant"], 12.5, t).items():
            assert close(row[ref], value), (asked, ref, row[ref], value)


def check_historical(settings, path, service, oracle, tmp_path, probes, tag, *extra) -> dict:
    """`rillet historical` over a CSV of probes (amount written as text); returns the versions it read."""
    entities = tmp_path / f"entities_{tag}.csv"
    with entities.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["user_id", "merchant", "amount", "event_timestamp"])
        for user, merchant, amount, t in probes:
            out.writerow([user, merchant, f"{amount}", t])
    target = tmp_path / f"training_{tag}.parquet"
    result = rillet(settings, "historical", "--features", str(path), "--entities", str(entities), "--service",
                    service, "--full-feature-names", "--out", str(target), *extra)
    assert result.returncode == 0, result.stderr
    table = pq.read_table(target)
    for i, (user, merchant, amount, t) in enumerate(probes):
        for ref, value in oracle.row(user, merchant, amount, t).items():
            got = table.column(ref.replace(":", "__"))[i].as_py()
            assert close(got, value), (tag, user, merchant, t, ref, got, value)
    return json.loads(table.schema.metadata[VERSIONS_METADATA])


def test_three_views_two_topics_two_workers_a_replay_gc_and_skew(stack, tmp_path):
    from schemas import SCHEMA_DIR

    name = f"dep{uuid.uuid4().hex[:6]}"
    path = tmp_path / "features.py"
    path.write_text(FEATURES.format(name=name, schema=SCHEMA_DIR / "payment.avsc"))
    definitions = load_definitions(path)
    pay, pair, clicks = definitions.views
    service = f"svc_{name}"
    settings = stack.settings.with_(offline_path=str(tmp_path / "offline"), state_dir=str(tmp_path / "state"),
                                    worker_group=f"g-{name}", served_log_topic=f"served_{name}",
                                    batch_size=100, batch_wait_ms=20)
    rng = random.Random(11)
    now = int(time.time() * 1000)
    split, end = now - 2 * 60 * MINUTE, now - MINUTE
    oracle = Oracle(definitions.views)
    first_payments = events_between(rng, now - 5 * 60 * MINUTE, split, 300)
    first_clicks = events_between(rng, now - 5 * 60 * MINUTE, split, 150)
    later_payments = events_between(rng, split, end, 200)
    later_clicks = events_between(rng, split, end, 100)
    keys = sorted({(e["user_id"], e["merchant"]) for e in first_payments + later_payments})
    log = ServedLog(settings, rate=1.0)

    def probes(start: int, stop: int) -> list[tuple]:
        """Training rows: a known pair, a request amount, a time between `start` and `stop`."""
        return [(*rng.choice(keys), round(rng.uniform(1, 50), 1), rng.randrange(start, stop)) for _ in range(60)]

    def statuses(features) -> set[tuple]:
        """`rillet status --json`: (view, version, lag, verdict) per view."""
        lines = rillet(settings, "status", "--features", str(features), "--json").stdout.splitlines()
        return {(s["view"], s["version"], s["lag"], s["verdict"]) for s in map(json.loads, lines)}
    workers = [worker_process(settings, str(path), tmp_path, free_port()) for _ in range(2)]  # two on one host
    try:
        with EventProducer(settings, pay) as payments, EventProducer(settings, clicks) as click_producer:
            payments.send_many(first_payments)
            click_producer.send_many(first_clicks)
        oracle.payments += first_payments
        oracle.clicks += first_clicks
        for topic, heads in ((pay.topic, payments.report.heads), (clicks.topic, click_producer.report.heads)):
            wait_caught_up(settings, settings.worker_group, topic, heads, timeout_s=180,
                           alive=lambda: all(w.alive() for w in workers))

        # phase 1: every view of the service has its values, online and in training data (all v1)
        reader = FeatureReader(definitions.views, connect_redis(settings), services=definitions.services,
                               derived=definitions.derived, served_log=log)
        check_online(reader, service, oracle, keys, split)
        versions = check_historical(settings, path, service, oracle, tmp_path, probes(now - 5 * 60 * MINUTE, split),
                                    "before")
        assert versions == {pay.name: 1, pair.name: 1, clicks.name: 1}
        assert statuses(path) == {(pay.name, 1, 0, "ok"), (pair.name, 1, 0, "ok"), (clicks.name, 1, 0, "ok")}

        # phase 2: pay gets a new feature and is replayed while events keep coming and readers read
        new_path = tmp_path / "features_v2.py"
        new_path.write_text(path.read_text().replace(
            NEW_FEATURE, NEW_FEATURE + ', Feature("amount", "max", Tumbling("10m"))'))
        new_definitions = load_definitions(new_path)
        stop = threading.Event()

        def keep_publishing():
            with EventProducer(settings, pay) as p, EventProducer(settings, clicks) as c:
                for i in range(0, 200, 20):
                    p.send_many(later_payments[i:i + 20])
                    c.send_many(later_clicks[i // 2:i // 2 + 10])

        def keep_reading():
            """Reads at the end of phase 1 of every pair not yet touched by phase 2 (an online read answers
            for times at or after an entity's latest event), so skew compares them with no race."""
            readable = list(keys)
            while not stop.is_set() and readable:
                for key in list(readable):
                    try:
                        reader.get_online_features([], [{"user_id": key[0], "merchant": key[1], "amount": 12.5}],
                                                   as_of=split, service=service)
                    except AsOfTooEarlyError:
                        readable.remove(key)
                stop.wait(0.005)  # paced: a spinning reader took a core from the replay and the workers

        threads = [threading.Thread(target=keep_publishing), threading.Thread(target=keep_reading, daemon=True)]
        for thread in threads:
            thread.start()
        replayed = rillet(settings, "replay", "--features", str(new_path), "--view", pay.name)
        threads[0].join(120)
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout.strip().splitlines()[-1])["version"] == 2
        oracle.payments += later_payments
        oracle.clicks += later_clicks
        for worker in workers:  # the old definition's workers stop by themselves (exit code 3)
            wait_until(lambda w=worker: not w.alive(), timeout_s=60, what="an old worker to stop")
        stop.set()
        threads[1].join(30)
        workers = [worker_process(settings, str(new_path), tmp_path, free_port()) for _ in range(2)]
        group = f"{settings.worker_group}.{pay.name}-v2"
        for topic in (pay.topic, clicks.topic):
            wait_caught_up(settings, group, topic, topic_heads(settings, topic), timeout_s=180,
                           alive=lambda: all(w.alive() for w in workers))

        # phase 3: the new version and the untouched views agree with the contract everywhere
        new_pay = new_definitions.views[0]
        oracle.views["pay"] = new_pay
        reader = FeatureReader(new_definitions.views, connect_redis(settings), services=new_definitions.services,
                               derived=new_definitions.derived, served_log=log)
        check_online(reader, service, oracle, keys, end)
        assert f"{pay.name}:amount_max_10m" in reader.get_online_features([], [{"user_id": "u0", "merchant": "m0",
                                                                              "amount": 1.0}], service=service).rows[0]
        versions = check_historical(settings, new_path, service, oracle, tmp_path,
                                    probes(now - 5 * 60 * MINUTE, end), "after")
        assert versions == {pay.name: 2, pair.name: 1, clicks.name: 1}
        assert statuses(new_path) == {(pay.name, 2, 0, "ok"), (pair.name, 1, 0, "ok"), (clicks.name, 1, 0, "ok")}
    finally:
        for worker in workers:
            worker.stop()
        log.flush()
        log.close()

    # skew over every read made, of both versions of pay: none differs from the training data
    for view in new_definitions.views:
        result = rillet(settings, "skew", "--features", str(new_path), "--view", view.name)
        summary = json.loads(result.stdout.splitlines()[-1])
        assert result.returncode == 0 and summary["bad"] == 0 and summary["compared"] > 0, (view.name, summary)

    # gc removes pay v1: reading it is one line, and skew counts its reads instead of comparing them
    gc = rillet(settings, "versions", "gc", "--features", str(new_path), "--view", pay.name, "--grace", "0")
    assert json.loads(gc.stdout)["removed"] == [1], gc.stderr
    refused = rillet(settings, "historical", "--features", str(new_path), "--entities",
                     str(tmp_path / "entities_after.csv"), "--service", service, "--out", str(tmp_path / "x.parquet"),
                     "--version", f"{pay.name}:1")
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "Traceback" not in refused.stderr and "version 1" in refused.stderr
    result = rillet(settings, "skew", "--features", str(new_path), "--view", pay.name)
    summary = json.loads(result.stdout.splitlines()[-1])
    assert result.returncode == 0 and summary["bad"] == 0 and summary["removed_versions"].get("1", 0) > 0, summary
