"""Random bytes and mutated records among valid ones: the worker never stops, nothing vanishes.

Every record sent is either aggregated or in the dead-letter topic with a
reason, and the worker's counters add up to exactly what was sent.
"""

from __future__ import annotations

import random
import re
import urllib.request

import pytest

from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.stack.embedded import free_port
from tests.helpers import view_under_test

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Range, Session, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id", event_time="event_time",
                     ttl="1d", grace="10m", partitions=2, checks={{"amount": Range(0, 1_000_000)}},
                     features=[Feature("amount", agg, w) for agg in ("count", "sum", "stddev", "last")
                               for w in (Tumbling("5m"), Sliding("1h", "5m"), Session("30m"))]
                              + [Feature("merchant", "count_distinct", Sliding("1h", "5m"))])
"""


def mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    choice = rng.randrange(4)
    if choice == 0:  # flip a few bits anywhere (header included)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif choice == 1:  # cut short
        data = data[: rng.randrange(len(data))]
    elif choice == 2:  # garbage after the body
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    else:  # overwrite a run of the body
        start = rng.randrange(5, len(data))
        for i in range(start, min(len(data), start + 4)):
            data[i] = rng.randrange(256)
    return bytes(data)


def test_fuzzed_input_is_aggregated_or_dead_lettered_and_counts_add_up(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES, "fuzz")
    name, view, features, settings = case.name, case.view, case.features, case.settings
    rng = random.Random(1234)
    base = 1_767_225_600_000
    valid = synthetic_payments(users=50, events=1500, start_ms=base, end_ms=base + 2 * 3_600_000, seed=4)
    port = free_port()
    worker = worker_process(settings, str(features), tmp_path, port)
    try:
        with EventProducer(settings, view) as producer:
            for event in valid:
                producer.send(event)
                roll = rng.random()
                if roll < 0.1:
                    producer.send_raw(event["user_id"].encode(), bytes(rng.randrange(256)
                                                                       for _ in range(rng.randrange(0, 40))))
                elif roll < 0.3:
                    producer.send_raw(event["user_id"].encode(), mutate(rng, producer.encoder.encode(event)))
            producer.send_raw(b"u1", None)  # a tombstone
        sent = producer.report.sent
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=180,
                       alive=worker.alive)
        assert worker.alive()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        worker.stop()

    def total(metric: str) -> float:
        return sum(float(v) for v in re.findall(rf'^{metric}{{[^}}]*view="{name}"[^}}]*}} (\S+)$', metrics, re.M))

    aggregated = total("rillet_events_aggregated_total")
    dead = total("rillet_dead_lettered_total")
    series = re.findall(rf'rillet_dead_lettered_total{{reason="(\w+)",view="{name}"}} (\S+)', metrics)
    reasons = {reason for reason, count in series if float(count) > 0}
    assert total("rillet_events_in_total") == sent
    assert aggregated + dead == sent, (aggregated, dead, sent)
    assert aggregated > 0
    # a mutated record can decode with a far-future event time and move the watermark, making later
    # valid events late (semantics.md): they are in the DLQ as `late`, still counted, never lost
    assert {"truncated", "bad_magic", "undecodable"} <= reasons, reasons
