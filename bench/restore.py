"""How fast Redis comes back after it lost everything: from the changelog, and from a worker's table.

    python -m bench.restore [--entities 100000]

One worker aggregates one event for each of N entities. Then Redis is emptied
(FLUSHALL, as a restart without persistence leaves it) and `rillet restore`
rebuilds every state from the changelog alone; then, with a worker running,
Redis is emptied again and the worker heals it from its table. Prints both
times beside N raw SETs of the same bytes through one redis-py pipeline (the
floor for writing them).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from sinks.online.restore import restore_online
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.cli.demo import worker_process
from streams.definitions.view import load_views
from streams.settings import Settings
from streams.stack.embedded import EmbeddedStack, free_port, wait_until

FEATURES = Path(__file__).resolve().parent.parent / "examples" / "payments" / "features.py"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=100_000)
    args = parser.parse_args()
    n = args.entities
    workdir = Path(tempfile.mkdtemp(prefix="rillet-restore-"))
    with EmbeddedStack(Settings.from_env(), broker_port=0, redis="embedded", workdir=workdir / "stack",
                       registry=True) as stack:
        settings = stack.settings.with_(offline_path=str(workdir / "offline"), state_dir=str(workdir / "state"),
                                        worker_group="restore-bench")
        features = workdir / "features.py"
        features.write_text(FEATURES.read_text().replace('"../../schemas/payment.avsc"',
                                                         repr(str(FEATURES.parents[2] / "schemas" / "payment.avsc"))))
        [view] = load_views(features)
        now = int(time.time() * 1000)
        print(f"publishing one payment for each of {n:,} entities ...", flush=True)
        with EventProducer(settings, view) as producer:
            producer.send_many({"user_id": f"u{i:07d}", "amount": 1.0 + i % 100, "merchant": f"m{i % 300:03d}",
                                "event_time": now - (n - i)} for i in range(n))
        worker = worker_process(settings, str(features), workdir, free_port())
        try:
            wait_caught_up(settings, settings.worker_group, view.topic, producer.report.heads, timeout_s=900,
                           alive=worker.alive)
        finally:
            worker.stop()
        client = connect_redis(settings)
        keys = list(client.scan_iter(f"rillet:{view.name}:v1:e:*", count=10_000))
        blobs = client.mget(keys)
        print(f"{len(keys):,} states in Redis; emptying it", flush=True)

        client.flushall()
        started = time.perf_counter()
        with client.pipeline(transaction=False) as pipe:
            for key, blob in zip(keys, blobs, strict=True):
                pipe.set(key, blob, px=view.ttl_ms + view.longest_window_ms)
            pipe.execute()
        raw_s = time.perf_counter() - started

        client.flushall()
        report = restore_online(settings, view)
        restored = len(list(client.scan_iter(f"rillet:{view.name}:v1:e:*", count=10_000)))

        worker = worker_process(settings, str(features), workdir, free_port())
        try:
            wait_until(lambda: "partitions_assigned" in worker.tail(400) or "rebalance" in worker.tail(400),
                       timeout_s=120, what="the worker to join")
            time.sleep(2)  # its tables recovered and its first heal check done
            client.flushall()
            wait_until(lambda: "redis_restored" in worker.tail(400), timeout_s=300, what="the worker to heal Redis")
            heal = [json.loads(m) for m in re.findall(r"(\{\"event\": \"redis_restored\".*\})", worker.tail(400))]
        finally:
            worker.stop()
        healed = sum(h["states"] for h in heal)
        heal_s = max(h["seconds"] for h in heal)
    print(f"\nrestore of {n:,} entity states (one worker, Tansu + Valkey on this machine)")
    print(f"  raw redis-py pipeline, {len(keys):,} SETs        {raw_s:>7.2f} s  ({len(keys) / raw_s:>9,.0f} states/s)")
    print(f"  rillet restore (changelog -> Redis)      {report.seconds:>7.2f} s  "
          f"({report.states / report.seconds:>9,.0f} states/s; {report.records:,} changelog records; "
          f"{restored:,} keys back)  ratio to raw {report.seconds / raw_s:.1f}")
    print(f"  worker self-heal (table -> Redis)        {heal_s:>7.2f} s  ({healed / heal_s:>9,.0f} states/s; "
          f"{healed:,} states)  ratio to raw {heal_s / raw_s:.1f}")


if __name__ == "__main__":
    main()
