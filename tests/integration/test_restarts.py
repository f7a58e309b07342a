"""A worker SIGKILLed mid-stream, again and again, ends with exactly the oracle's values.

Each kill comes once the process has read a random share of what is left
(its `rillet_events_in_total`), so most kills land while it is still working.

Faust runs at-least-once: after a kill, everything since the last committed
offset is delivered again, while the table restored from its changelog may
already hold some of those events. Entity states carry the last applied
offset, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import random
import urllib.request

import pyarrow.parquet as pq
import pytest

from sinks.offline.store import read_offline
from streams.broker.lag import committed_offsets, wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.errors import StackError
from streams.stack.embedded import free_port, wait_until
from streams.worker.probe import worker_health, worker_metric
from tests.helpers import WITH_CLUSTER, assert_online_equals_oracle, view_under_test

pytestmark = pytest.mark.integration

FEATURES = """
from streams import Feature, FeatureView, Session, Sliding, Tumbling
{name} = FeatureView(name="{name}", topic="{name}", schema="{schema}", entity="user_id",
                     event_time="event_time", ttl="1d", grace="1h", partitions={partitions},
                     features=[Feature("amount", agg, w) for agg in ("count", "sum", "max", "last")
                               for w in (Tumbling("5m"), Sliding("30m", "5m"), Session("10m"))])
"""


@WITH_CLUSTER
def test_sigkill_restarts_lose_nothing_and_count_nothing_twice(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES.replace("{partitions}", "3"), "kill",
                           batch_size=100, batch_wait_ms=20)
    view, features, settings = case.view, case.features, case.settings
    base = 1_767_225_600_000
    history = synthetic_payments(users=40, events=6000, start_ms=base, end_ms=base + 6 * 3_600_000, seed=11)
    with EventProducer(settings, view) as producer:
        producer.send_many(history)
    heads, total = producer.report.heads, producer.report.sent
    rng = random.Random(5)

    kills = mid_stream = 0
    for step in range(1, 6):
        port = free_port()
        worker = worker_process(settings, str(features), tmp_path, port)
        def committed() -> int:
            return sum(min(c, heads.get(p, 0)) for p, c in
                       committed_offsets(settings, settings.worker_group, view.topic, sorted(heads)).items())

        # mid-stream: once this process has read a random share of what is left past the commit (it starts
        # there, or later where its table's progress is ahead of the commit: then it may finish first)
        threshold = rng.randrange(1, max(2, (total - committed()) // 6))

        def read_enough(at_least: int = threshold, worker=worker, port=port) -> bool:
            return (worker_metric(port, "rillet_events_in_total") >= at_least or not worker.alive()
                    or committed() >= total)

        try:
            wait_until(read_enough, timeout_s=120, what=f"the worker to read {threshold} events", interval_s=0.02)
        except StackError as exc:
            pytest.fail(f"{exc} (restart {step}); the worker's log ends:\n{worker.tail(40)}")
        assert worker.alive(), worker.tail()
        left = total - committed()
        worker.kill()
        kills += 1
        mid_stream += left > 0
    worker = worker_process(settings, str(features), tmp_path, free_port())
    try:
        wait_caught_up(settings, settings.worker_group, view.topic, heads, timeout_s=180, alive=worker.alive)
    except StackError as exc:
        pytest.fail(f"{exc} (after {kills} kills); the worker's log ends:\n{worker.tail(60)}")
    finally:
        worker.stop()
    assert kills == 5 and mid_stream >= 3, (kills, mid_stream)

    assert_online_equals_oracle(settings, view, history)
    # one row per event in the files themselves, as any Parquet reader sees them (no dedupe)
    raw = pq.ParquetDataset(settings.offline_root / f"view={view.name}" / "version=1").read()
    assert raw.num_rows == total
    pairs = set(zip(raw["partition"].to_pylist(), raw["offset"].to_pylist(), strict=True))
    assert len(pairs) == total
    assert read_offline(settings.offline_root, view.name).num_rows == total


def test_records_the_stream_skipped_are_read_back_and_applied_in_order(stack, tmp_path):
    """Faust can drop records while a worker joins (faust-streaming #596); a failpoint drops 12.

    Without reading them back they would be lost (later offsets make them look
    handled) and the commit would never pass them.
    """
    case = view_under_test(stack, tmp_path, FEATURES.replace("{partitions}", "3"), "skip", batch_size=100)
    view, features, settings = case.view, case.features, case.settings
    base = 1_767_225_600_000
    history = synthetic_payments(users=20, events=1500, start_ms=base, end_ms=base + 2 * 3_600_000, seed=4)
    with EventProducer(settings, view) as producer:
        producer.send_many(history)
    port = free_port()
    worker = worker_process(settings, str(features), tmp_path, port, {"RILLET_SKIP_DELIVERED_RECORD": "150-161"})
    try:
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                       alive=worker.alive)
        read_back = worker_metric(port, "rillet_offsets_read_back_total", view.name)
    except StackError as exc:
        pytest.fail(f"{exc}; the worker's log ends:\n{worker.tail(40)}")
    finally:
        worker.stop()
    assert_online_equals_oracle(settings, view, history)
    assert read_back == 12
    assert read_offline(settings.offline_root, view.name).num_rows == len(history)


def test_offsets_faust_never_saw_acknowledged_are_committed_from_the_table_progress(stack, tmp_path):
    """Faust commits only behind an unbroken run of acks; a hole (faust-streaming #596) stalled a
    worker that had applied everything. A failpoint hides 5 acks from Faust; the commit still reaches the head."""
    case = view_under_test(stack, tmp_path, FEATURES.replace("{partitions}", "2"), "acks", batch_size=100)
    view, features, settings = case.view, case.features, case.settings
    base = 1_767_225_600_000
    history = synthetic_payments(users=10, events=600, start_ms=base, end_ms=base + 3_600_000, seed=8)
    with EventProducer(settings, view) as producer:
        producer.send_many(history)
    worker = worker_process(settings, str(features), tmp_path, free_port(), {"RILLET_SKIP_ACKNOWLEDGEMENT": "40-44"})
    try:
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=60,
                       alive=worker.alive)
    except StackError as exc:
        pytest.fail(f"{exc}; the worker's log ends:\n{worker.tail(20)}")
    finally:
        worker.stop()
    assert_online_equals_oracle(settings, view, history)


def test_two_workers_split_the_partitions_and_agree_with_one(stack, tmp_path):
    case = view_under_test(stack, tmp_path, FEATURES.replace("{partitions}", "4"), "pair")
    name, view, features, settings = case.name, case.view, case.features, case.settings
    base = 1_767_225_600_000
    history = synthetic_payments(users=30, events=3000, start_ms=base, end_ms=base + 3 * 3_600_000, seed=2)
    ports = [free_port(), free_port()]
    workers = [worker_process(settings, str(features), tmp_path, port) for port in ports]
    try:
        def assigned(port: int) -> set[str]:
            return {a for a in worker_health(port).get("assigned", []) if a.startswith(f"{name}:")}

        wait_until(lambda: len(assigned(ports[0]) | assigned(ports[1])) == 4
                   and all(assigned(p) for p in ports), timeout_s=120, what="both workers to own partitions")
        split = [assigned(p) for p in ports]
        with EventProducer(settings, view) as producer:
            producer.send_many(history)
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                       alive=lambda: all(w.alive() for w in workers))
    finally:
        for worker in workers:
            worker.stop()
    assert not split[0] & split[1]

    assert_online_equals_oracle(settings, view, history)
    assert read_offline(settings.offline_root, view.name).num_rows == len(history)


def standby_lag(port: int) -> float | None:
    """The sum of `rillet_standby_behind_records` over the worker's standby partitions; None before it reports."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            lines = [line for line in response.read().decode().splitlines()
                     if line.startswith("rillet_standby_behind_records{")]
    except OSError:
        return None
    return sum(float(line.split()[-1]) for line in lines) if lines else None


@pytest.mark.parametrize("standbys", [0, 1])
def test_rebalances_mid_stream_lose_nothing_and_count_nothing_twice(stack, tmp_path, standbys):
    """The batch transport under rebalances: a second worker joins while events keep coming, then the
    first is SIGKILLed while it reads and the second takes its partitions, restoring their tables
    from the changelog (or, with a standby replica, from the copy it kept). Every value ends as the
    oracle's, and each event has one Parquet row."""
    case = view_under_test(stack, tmp_path, FEATURES.replace("{partitions}", "4"), "rebalance",
                           batch_size=100, batch_wait_ms=20, standby_replicas=standbys)
    name, view, features, settings = case.name, case.view, case.features, case.settings
    base = 1_767_225_600_000
    history = synthetic_payments(users=40, events=9000, start_ms=base, end_ms=base + 6 * 3_600_000, seed=17)
    thirds = [history[:3000], history[3000:6000], history[6000:]]
    ports = [free_port(), free_port()]

    def read(port: int) -> int:
        return worker_metric(port, "rillet_events_in_total")

    def assigned(port: int) -> set[str]:
        return {a for a in worker_health(port).get("assigned", []) if a.startswith(f"{name}:")}

    producer = EventProducer(settings, view)
    first = worker_process(settings, str(features), tmp_path, ports[0])
    workers = [first]
    try:
        producer.send_many(thirds[0])
        producer.flush()
        wait_until(lambda: read(ports[0]) >= 500 or not first.alive(), timeout_s=120,
                   what="the first worker to read events", interval_s=0.01)
        second = worker_process(settings, str(features), tmp_path, ports[1])  # joins: a rebalance
        workers.append(second)
        producer.send_many(thirds[1])  # arriving while the group rebalances
        producer.flush()
        wait_until(lambda: (assigned(ports[1]) and assigned(ports[0])) or not second.alive() or not first.alive(),
                   timeout_s=120, what="both workers to own partitions")
        if standbys:  # two live workers on one machine, each a standby of the other's partitions: both keep going
            wait_until(lambda: "Starting standby partitions" in second.tail(400) or not second.alive(),
                       timeout_s=60, what="the second worker to follow its standby partitions")
            wait_until(lambda: standby_lag(ports[1]) is not None or not second.alive(), timeout_s=30,
                       what="the second worker to report how far its standby copies trail")
            assert second.alive() and first.alive(), "a worker stopped: " + second.tail(30)
        before = read(ports[0])
        producer.send_many(thirds[2])
        producer.flush()
        wait_until(lambda: read(ports[0]) > before or not first.alive(), timeout_s=120,
                   what="the first worker to read the last third", interval_s=0.005)
        first.kill()  # while it reads: its partitions move to the second worker
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=180,
                       alive=second.alive)
    except StackError as exc:
        pytest.fail(f"{exc}; the workers' logs end:\n" + "\n---\n".join(w.tail(40) for w in workers))
    finally:
        producer.close()
        for worker in workers:
            worker.stop()
    total = len(history)
    assert producer.report.sent == total

    assert_online_equals_oracle(settings, view, history)
    raw = pq.ParquetDataset(settings.offline_root / f"view={view.name}" / "version=1").read()
    pairs = set(zip(raw["partition"].to_pylist(), raw["offset"].to_pylist(), strict=True))
    assert raw.num_rows == total and len(pairs) == total


def test_a_restart_on_the_same_machine_removes_the_dead_workers_membership(stack, tmp_path):
    """A SIGKILLed worker's membership outlives it until its session times out; the worker started
    after it on the same state directory asks the coordinator to remove it at once (and only it)."""
    import json
    from pathlib import Path

    case = view_under_test(stack, tmp_path, FEATURES.replace("{partitions}", "2"), "heir")
    view, features, settings = case.view, case.features, case.settings
    port = free_port()
    first = worker_process(settings, str(features), tmp_path, port)
    try:
        wait_until(lambda: any(a.startswith(f"{view.topic}:") for a in worker_health(port).get("assigned", [])),
                   timeout_s=120, what="the first worker to own the topic")
        folder = Path(settings.state_dir) / "group-members"
        recorded = wait_until(lambda: list(folder.glob("*.json")), timeout_s=30,
                              what="the worker to record its membership")
        assert len(recorded) == 1, recorded
        member = json.loads(recorded[0].read_text())["member_id"]
    finally:
        first.kill()
    heir = worker_process(settings, str(features), tmp_path, free_port())
    try:
        line = wait_until(lambda: next((ln for ln in heir.tail(200).splitlines()
                                        if "dead_predecessors_removed" in ln), None) or not heir.alive(),
                          timeout_s=60, what="the new worker to remove its predecessor")
        assert heir.alive(), heir.tail()
        assert json.loads(line[line.index("{"):])["members"] == [member]
        with EventProducer(settings, view) as producer:
            producer.send_many(synthetic_payments(users=5, events=50, start_ms=1_767_225_600_000,
                                                  end_ms=1_767_229_200_000))
        wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=120,
                       alive=heir.alive)
    finally:
        heir.stop()
