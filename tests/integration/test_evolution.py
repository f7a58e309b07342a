"""A producer moves to a compatible new schema version mid-stream; the running worker keeps going.

The worker resolves each record's writer schema (by its registry id) against
the view's reader schema, so v2 records (a field added with a default) are
read without a restart, and v1 and v2 records aggregate alike.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

import schemas
from sinks.online.reads import FeatureReader
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import worker_process
from streams.stack.embedded import free_port
from tests.helpers import view_under_test

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="1d", partitions=1, features=[Feature("amount", "sum", Tumbling("1h")),
                                                       Feature("amount", "count", Tumbling("1h"))])
"""


def test_compatible_new_writer_schema_mid_stream_needs_no_restart(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "evo")
    name, view, features, settings = case.name, case.view, case.features, case.settings
    v2_schema = json.loads((schemas.SCHEMA_DIR / "payment.avsc").read_text())
    v2_schema["fields"].append({"name": "channel", "type": "string", "default": "web"})
    v2_path = tmp_path / "payment_v2.avsc"
    v2_path.write_text(json.dumps(v2_schema))
    view_v2 = dataclasses.replace(view, schema=v2_path)  # same topic, newer writer schema

    base = 1_767_225_600_000
    worker = worker_process(settings, str(features), tmp_path, free_port())
    try:
        with EventProducer(settings, view) as v1:
            for i in range(5):
                v1.send({"user_id": "u1", "amount": 1.0, "merchant": "m", "event_time": base + i})
        with EventProducer(settings, view_v2) as v2:
            assert v2.encoder.schema_id != v1.encoder.schema_id
            for i in range(5, 10):
                v2.send({"user_id": "u1", "amount": 2.0, "merchant": "m", "event_time": base + i, "channel": "app"})
        heads = {p: max(v1.report.heads.get(p, 0), v2.report.heads.get(p, 0)) for p in (0,)}
        wait_caught_up(settings, settings.worker_group, view.topic, heads, timeout_s=120, alive=worker.alive)
        assert worker.alive()
    finally:
        worker.stop()
    row = FeatureReader([view], connect_redis(settings)).get_online_features(
        [f"{name}:*"], [{"user_id": "u1"}], as_of=base + 9).rows[0]
    assert row[f"{name}:amount_count_1h"] == 10
    assert row[f"{name}:amount_sum_1h"] == 15.0
