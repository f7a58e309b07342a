"""A bounded soak: steady producers for minutes, a worker and Redis killed along the way.

    python -m bench.soak [--minutes 4] [--rate 1500] [--users 5000]

Two workers run the payments view on 4 partitions while a producer sends
`rate` events/s with event times at the wall clock. A third of the way in,
one worker is SIGKILLed and started again; two thirds in, Redis is SIGKILLed
and comes back empty (the workers heal it from their tables). Every 10 s it
prints the events sent and committed, the lag, each worker's resident memory
and its peak (state must not grow without bound: expiry by event time), and
the states restored. At the end it waits for the workers to catch up and
checks a sample of entities against the brute-force oracle, as of their
latest event.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

from sinks.online.reads import FeatureReader
from sinks.redis_client import connect_redis
from streams.broker.lag import committed_offsets, wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import worker_process
from streams.definitions.view import load_views
from streams.settings import Settings
from streams.stack.embedded import EmbeddedStack, ManagedProcess, free_port, redis_answers, wait_until
from streams.worker.probe import worker_metric

FEATURES = Path(__file__).resolve().parent.parent / "examples" / "payments" / "features.py"


def memory_mb(process: ManagedProcess) -> tuple[float, float]:
    """(resident, peak resident) of a live process, in MB, from /proc."""
    if not process.alive() or process.process is None:
        return 0.0, 0.0
    fields = {}
    for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["VmHWM"][0]) / 1024


class SteadyProducer(threading.Thread):
    """Sends `rate` payments a second, event time = now (a few seconds of disorder), until stopped."""

    def __init__(self, settings: Settings, view, rate: int, users: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.view, self.rate, self.users = settings, view, rate, users
        self.sent: list[dict] = []
        self.stop = threading.Event()
        self.heads: dict[int, int] = {}

    def run(self) -> None:
        rng = random.Random(11)
        with EventProducer(self.settings, self.view) as producer:
            started, n = time.monotonic(), 0
            while not self.stop.is_set():
                due = int((time.monotonic() - started) * self.rate)
                for _ in range(due - n):
                    now_ms = int(time.time() * 1000) - rng.randrange(0, 5_000)
                    event = {"user_id": f"u{rng.randrange(self.users):05d}", "merchant": f"m{rng.randrange(300):03d}",
                             "amount": round(rng.lognormvariate(3.0, 1.0), 2), "event_time": now_ms}
                    producer.send(event)
                    self.sent.append(event)
                n = max(n, due)
                time.sleep(0.01)
        self.heads = producer.report.heads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--rate", type=int, default=1500, help="events per second")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--sample", type=int, default=300, help="entities checked against the oracle")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rillet-soak-"))
    seconds = args.minutes * 60
    with EmbeddedStack(Settings.from_env(), broker_port=0, redis="embedded", workdir=workdir / "stack",
                       registry=True) as stack:
        settings = stack.settings.with_(offline_path=str(workdir / "offline"), state_dir=str(workdir / "state"),
                                        worker_group="soak", partitions=4)
        features = workdir / "features.py"
        shutil.copy(FEATURES, features)
        features.write_text(features.read_text().replace('"../../schemas/payment.avsc"',
                                                         repr(str(FEATURES.parents[2] / "schemas" / "payment.avsc"))))
        [view] = load_views(features)
        valkey = next(p for p in stack.processes if p.name == "redis")
        ports = [free_port(), free_port()]
        workers = [worker_process(settings, str(features), workdir, port) for port in ports]
        peaks = [0.0, 0.0]
        producer = SteadyProducer(settings, view, args.rate, args.users)
        print(f"soak: {args.minutes:g} min at {args.rate:,} events/s, {args.users:,} users, 2 workers, 4 partitions")
        print(f"{'t (s)':>6} {'sent':>9} {'committed':>10} {'lag':>7} {'w1 MB':>7} {'w2 MB':>7} {'restored':>9}  event")
        producer.start()
        started, next_line = time.monotonic(), 0.0
        events_done = {"kill worker": seconds / 3, "kill redis": 2 * seconds / 3}
        max_lag = 0
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                note = ""
                if elapsed >= events_done.get("kill worker", float("inf")):
                    del events_done["kill worker"]
                    workers[0].kill()
                    ports[0] = free_port()
                    workers[0] = worker_process(settings, str(features), workdir, ports[0])
                    note = "worker 1 SIGKILLed and started again"
                if elapsed >= events_done.get("kill redis", float("inf")):
                    del events_done["kill redis"]
                    valkey.kill()
                    valkey.start()  # nothing on disk: it comes back empty
                    wait_until(lambda: redis_answers(settings.redis_url), timeout_s=30, what="Valkey")
                    note = "Redis SIGKILLed, back empty"
                if elapsed >= next_line or note:
                    next_line = elapsed + 10
                    committed = sum(committed_offsets(settings, settings.worker_group, view.topic,
                                                      list(range(4))).values())
                    lag = max(len(producer.sent) - committed, 0)
                    max_lag = max(max_lag, lag)
                    mem = [memory_mb(w) for w in workers]
                    peaks = [max(p, m[1]) for p, m in zip(peaks, mem, strict=True)]
                    restored = sum(worker_metric(p, "rillet_states_restored_total") for p in ports)
                    print(f"{elapsed:>6.0f} {len(producer.sent):>9,} {committed:>10,} {lag:>7,} {mem[0][0]:>7.0f} "
                          f"{mem[1][0]:>7.0f} {restored:>9,.0f}  {note}", flush=True)
                time.sleep(0.5)
        finally:
            producer.stop.set()
            producer.join(30)
        try:
            caught = wait_caught_up(settings, settings.worker_group, view.topic, producer.heads, timeout_s=300)
            print(f"caught up {caught:.1f}s after the producer stopped")
            drift = max(worker_metric(p, "rillet_timer_drift_max_seconds") for p in ports)
            print(f"worst timer drift of the running workers: {drift * 1000:.0f} ms (goal <= 200 ms)")
        finally:
            for worker in workers:
                worker.stop()
        mismatches = check_sample(settings, view, producer.sent, args.sample)
        held = len(producer.sent) / seconds
        print(f"\nsoak summary: {len(producer.sent):,} events in {seconds:.0f}s ({held:,.0f} events/s held), "
              f"max lag {max_lag:,}, peak RSS per worker {peaks[0]:.0f} / {peaks[1]:.0f} MB, "
              f"oracle check {args.sample - mismatches}/{args.sample} entities exact")


def check_sample(settings: Settings, view, history: list[dict], sample: int) -> int:
    """Entities in the sample whose online values (as of their latest event) differ from the oracle."""
    from tests.oracle import OEvent, close, value_at

    by_user: dict[str, list[OEvent]] = {}
    for i, e in enumerate(history):
        by_user.setdefault(e["user_id"], []).append(OEvent(e["user_id"], e["event_time"], e, i))
    reader = FeatureReader([view], connect_redis(settings))
    wrong = 0
    for user in random.Random(3).sample(sorted(by_user), min(sample, len(by_user))):
        events = by_user[user]
        latest = max(e.t for e in events)
        row = reader.get_online_features([f"{view.name}:*"], [{"user_id": user}], as_of=latest).rows[0]
        expected = value_at(view, events, user, latest)
        if any(not close(row[f"{view.name}:{name}"], value) for name, value in expected.items()):
            wrong += 1
    return wrong


if __name__ == "__main__":
    main()
