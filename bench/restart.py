"""How long a worker restart takes, by where its state lives, in one run.

    python -m bench.restart [--entities N]

For each state store (`memory`: rebuilt from the changelog at every start; `rocksdb`: on local disk),
one `rillet worker` on a fresh topic aggregates one event for each of N entities, so its table holds
N states. Then it is SIGKILLed, a new worker starts on the same machine (same state directory), and
a probe of 1,000 more events is published: the figure is the time from the kill until the group has
committed the probe, i.e. until the worker is back at steady lag.

Measured here with 100,000 states: memory 20.5 s, rocksdb 13.8 s, of which about 8 s is the group
waiting out the killed member's session (6 s on Tansu) and a second JoinGroup round (3 s each on
Tansu). Static membership (`group.instance.id`) would skip that wait, but Tansu answers a second
static member with "member_id was not recognized" in a loop, so it is not used.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.throughput import features_file, publish
from streams.definitions import load_views
from streams.demo import synthetic_payments, worker_process
from streams.lag import wait_caught_up
from streams.settings import Settings
from streams.stack import EmbeddedStack, free_port
from streams.status import topic_heads


def restart_seconds(settings: Settings, view, features: Path, events: list[dict], probe: list[dict],
                    workdir: Path) -> float:
    worker = worker_process(settings, str(features), workdir, free_port())
    try:
        publish(settings, view, events)
        wait_caught_up(settings, settings.worker_group, view.topic, topic_heads(settings, view.topic),
                       timeout_s=1800, alive=worker.alive)
    finally:
        worker.kill()
    killed = time.monotonic()
    worker = worker_process(settings, str(features), workdir, free_port())
    try:
        publish(settings, view, probe)
        wait_caught_up(settings, settings.worker_group, view.topic, topic_heads(settings, view.topic),
                       timeout_s=1800, alive=worker.alive)
        return time.monotonic() - killed
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=100_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rillet-bench-"))
    base = 1_767_225_600_000
    n = args.entities
    events = [{**e, "user_id": f"e{i:08d}"} for i, e in
              enumerate(synthetic_payments(users=1, events=n, start_ms=base, end_ms=base + 3_600_000))]
    probe = synthetic_payments(users=1000, events=1000, start_ms=base + 3_600_000, end_ms=base + 3_700_000)
    seconds: dict[str, float] = {}
    with EmbeddedStack(Settings.from_env(), broker_port=0, redis="embedded", workdir=workdir / "stack") as stack:
        for store in ("memory", "rocksdb"):
            topic = f"restart_{store}_{int(time.time())}"
            features = workdir / f"features_{store}.py"
            features_file(features, topic)
            [view] = load_views(features)
            settings = stack.settings.with_(offline_path=str(workdir / topic), worker_group=f"g-{topic}",
                                            state_dir=str(workdir / f"state-{topic}"), state_store=store)
            print(f"{store}: {n:,} entities, then SIGKILL and a restart ...", flush=True)
            seconds[store] = restart_seconds(settings, view, features, events, probe, workdir)
    print(f"\nrestart after SIGKILL with {n:,} entity states (Tansu, this machine), kill to steady lag:")
    for store, s in seconds.items():
        print(f"  {'state in ' + store:<30} {s:>8.1f} s")
    print(f"  rocksdb / memory: {seconds['rocksdb'] / seconds['memory']:.2f}x   (goal: <= 10 s at 1M entities)")


if __name__ == "__main__":
    main()
