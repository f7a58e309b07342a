"""Dead letters reach their topic once, however often the batch that sent them runs.

A worker is killed after its dead letters were acknowledged but before its commit point, or
while its first letter may still be in flight (D ms after the send; 50 runs at 0-40 ms by hand
found no duplicate): the next incarnation reads what the dead-letter partition already holds
past the stored progress and sends only the rest.
"""

from __future__ import annotations

import pytest

from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.errors import StackError
from streams.stack.embedded import free_port, wait_until
from tests.helpers import assert_online_equals_oracle, view_under_test
from tests.integration.test_restarts import FEATURES

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kill", ["RILLET_FAULT_AFTER_DEAD_LETTERS=1", "RILLET_FAULT_DEAD_LETTER_SENT_MS=10"])
def test_dead_letters_reach_the_topic_once_however_often_their_batch_runs(stack, tmp_path, kill):
    """Killed after its dead letters were acknowledged but before its commit point, or while the first letter
    may still be in flight (at varied delays after its send), a worker runs the batch again after the
    restart: `rillet dlq` still shows each rejected record exactly once. The batch also holds a far-future
    record: dead-lettered, it moves no watermark, so no valid event after it is late."""
    import json
    import os
    import subprocess
    import sys

    case = view_under_test(stack, tmp_path, FEATURES.replace("{partitions}", "2"), "dlq")
    view, features, settings = case.view, case.features, case.settings
    base = 1_767_225_600_000
    end = base + 2 * 3_600_000
    history = synthetic_payments(users=12, events=600, start_ms=base, end_ms=end, seed=6)
    late = [{"user_id": f"u{i:04d}", "amount": 1.0, "merchant": "m", "event_time": base} for i in range(3)]
    after = [{"user_id": f"u{i:04d}", "amount": 2.0, "merchant": "m", "event_time": end + 60_000} for i in range(12)]
    with EventProducer(settings, view) as producer:
        producer.send_many(history)
        producer.send_many(late)  # 2 h behind the watermark, grace 1 h
        producer.send({"user_id": "u0000", "amount": 5.0, "merchant": "m", "event_time": end + 10 * 86_400_000},
                      timestamp_ms=end)  # ten days ahead of its record: a wrong clock
        producer.send_many(after)
        producer.send_raw(b"u0001", b"\x07not avro")
    heads = producer.report.heads
    crashing = worker_process(settings, str(features), tmp_path, free_port(), dict([kill.split("=")]))
    wait_until(lambda: not crashing.alive(), timeout_s=120, what="the worker to die after its dead letters")
    assert crashing.process.returncode == 137, crashing.tail()
    worker = worker_process(settings, str(features), tmp_path, free_port())
    try:
        wait_caught_up(settings, settings.worker_group, view.topic, heads, timeout_s=120, alive=worker.alive)
    except StackError as exc:
        pytest.fail(f"{exc}; the worker's log ends:\n{worker.tail(40)}")
    finally:
        worker.stop()

    shown = subprocess.run([sys.executable, "-m", "streams.cli", "dlq", "--features", str(features), "--view",
                            view.name, "--timeout", "3"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, **settings.to_env()})
    assert shown.returncode == 0, shown.stderr
    *letters, summary = [json.loads(line) for line in shown.stdout.splitlines()]
    assert json.loads(json.dumps(summary))["by_reason"] == {"late": 3, "future_event_time": 1, "bad_magic": 1}
    assert len({letter["source"] for letter in letters}) == len(letters) == 5
    assert_online_equals_oracle(settings, view, history + after)  # nothing after the far-future record was late
