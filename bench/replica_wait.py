"""What waiting for a Redis replica's acknowledgement costs the live worker, in one run.

    python -m bench.replica_wait [--events N]

An embedded Tansu and Valkey, and a second Valkey replicating the first. One `rillet worker`
through N payments with `RILLET_REDIS_REPLICA_ACKS=0` (no WAIT), then again, on a fresh topic,
with the default 1 (each batch's writes end with `WAIT 1`, sinks/online/write_epochs.py). Prints both
rates and their ratio: the price of a commit point a failover cannot pass.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis

from bench.throughput import features_file, rillet_workers
from streams.cli.demo import synthetic_payments
from streams.definitions.view import load_views
from streams.settings import Settings
from streams.stack.embedded import EmbeddedStack, ManagedProcess, free_port, valkey_binary, wait_until


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rillet-bench-"))
    base = 1_767_225_600_000
    events = synthetic_payments(users=1000, events=args.events, start_ms=base, end_ms=base + 3 * 3_600_000)
    rates: dict[int, float] = {}
    with EmbeddedStack(Settings.from_env(), broker_port=0, redis="embedded", workdir=workdir / "stack") as stack:
        master = redis.Redis.from_url(stack.settings.redis_url)
        host, port = master.connection_pool.connection_kwargs["host"], master.connection_pool.connection_kwargs["port"]
        replica_port = free_port()
        (workdir / "replica").mkdir()
        replica = ManagedProcess("valkey-replica", [valkey_binary(), "--port", str(replica_port), "--bind", "127.0.0.1",
                                                    "--replicaof", host, str(port), "--save", "", "--dir",
                                                    str(workdir / "replica")], workdir / "replica.log").start()
        try:
            wait_until(lambda: master.info("replication").get("connected_slaves", 0) >= 1, timeout_s=30,
                       what="the replica to attach")
            for acks in (0, 1):
                topic = f"wait_{acks}_{int(time.time())}"
                features_file(workdir / "features.py", topic)
                [view] = load_views(workdir / "features.py")
                settings = stack.settings.with_(offline_path=str(workdir / topic), worker_group=f"g-{topic}",
                                                state_dir=str(workdir / f"state-{topic}"), redis_replica_acks=acks)
                print(f"rillet worker, RILLET_REDIS_REPLICA_ACKS={acks} ...", flush=True)
                rates[acks] = rillet_workers(settings, view, events, 1, workdir)
        finally:
            replica.stop()
    print(f"\nreplica acknowledgement on {args.events:,} events (Tansu, Valkey with one replica, same machine)")
    print(f"  {'rillet worker, no WAIT (acks 0)':<45} {rates[0]:>10,.0f} events/s")
    print(f"  {'rillet worker, WAIT 1 per batch (default)':<45} {rates[1]:>10,.0f} events/s "
          f"({rates[1] / rates[0]:.2f}x without)")


if __name__ == "__main__":
    main()
