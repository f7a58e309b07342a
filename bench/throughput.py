"""Worker throughput, beside Faust's floor and Quix Streams, in one run on the same events.

    python -m bench.throughput [--events N]

Prints events/s of: the pure engine (and its feature updates/s); the whole
rillet worker (Avro decode -> 3 windows x 5 aggregations -> changelog, Redis,
Parquet), with one and with two worker processes; a Faust agent that does
nothing; Quix Streams computing one hopping-window sum. Each rate is events
divided by the time from the first to the last event processed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.engine import records_for, run, with_rich_features
from streams.broker.producer import EventProducer
from streams.cli.demo import synthetic_payments, worker_process
from streams.definitions.view import FeatureView, load_views
from streams.settings import Settings
from streams.stack.embedded import EmbeddedStack, free_port, wait_until
from streams.worker.probe import worker_health, worker_metric

FEATURES = Path(__file__).with_name("features.py")



def features_file(path: Path, topic: str) -> Path:
    """The bench view's definitions with its topic (and view) named `topic`, written to `path`."""
    path.write_text(FEATURES.read_text().replace('"bench"', f'"{topic}"').replace(
        "../schemas/payment.avsc", str(Path(__file__).parent.parent / "schemas" / "payment.avsc")))
    return path

def publish(settings: Settings, view: FeatureView, events: list[dict]) -> float:
    """Encode every event first, then send the bytes: the consumers under test should not share
    the 2 cores with this process's Avro encoding while they are timed."""
    with EventProducer(settings, view) as producer:
        encoded = [(producer.encoder.key(e), producer.encoder.encode(e)) for e in events]
        started = time.perf_counter()
        for key, value in encoded:
            producer.send_raw(key, value)
    print(f"  published {producer.report.sent:,} to {view.topic} in {time.perf_counter() - started:.1f}s "
          "(pre-encoded)", flush=True)
    return started


def wait_owned(ports: list[int], view: FeatureView) -> None:
    """Until the workers on these web ports own every partition of the view's topic between them."""
    def owned() -> bool:
        assigned = [{a for a in worker_health(p).get("assigned", []) if a.startswith(view.topic + ":")}
                    for p in ports]
        return len(set().union(*assigned)) == (view.partitions or 4) and all(assigned)

    wait_until(owned, timeout_s=120, what=f"{len(ports)} worker(s) to own the partitions", interval_s=0.2)


def rillet_workers(settings: Settings, view: FeatureView, events: list[dict], count: int, workdir: Path) -> float:
    """Start `count` workers on a fresh topic, wait until they own its partitions, publish, time them."""
    ports = [free_port() for _ in range(count)]
    workers = [worker_process(settings, str(workdir / "features.py"), workdir, port) for port in ports]
    try:
        wait_owned(ports, view)
        # timed from the first send: a worker counts its events when a batch is done, and a batch
        # may hold thousands, so the first count comes late (the baselines time their first event)
        first = publish(settings, view, events)
        last = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = sum(worker_metric(p, "rillet_events_in_total") for p in ports)
            now = time.perf_counter()
            if done >= len(events):
                last = now
                break
            time.sleep(0.02)
        if last is None:
            raise RuntimeError("the workers did not finish in time")
        return len(events) / max(last - first, 1e-9)
    finally:
        for worker in workers:
            worker.stop()


def external(module: str, settings: Settings, topic: str, expected: int) -> float:
    env = {**os.environ, **settings.to_env()}
    proc = subprocess.run([sys.executable, "-m", module, topic, str(expected)], capture_output=True, text=True,
                          timeout=900, env=env)
    # Faust's worker routes stdout through its logger, so the line may arrive on stderr
    found = re.search(r"DONE (\S+) (\S+) (\d+)", proc.stdout + proc.stderr)
    if found is None:
        raise RuntimeError(f"{module} did not finish:\n{proc.stderr[-2000:]}")
    first, last, n = found.groups()
    return int(n) / max(float(last) - float(first), 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    args = parser.parse_args()
    n = args.events
    workdir = Path(tempfile.mkdtemp(prefix="rillet-bench-"))
    base = 1_767_225_600_000
    events = synthetic_payments(users=1000, events=n, start_ms=base, end_ms=base + 3 * 3_600_000)
    rates: dict[str, float] = {}

    [view] = load_views(FEATURES)
    print(f"pure engine on {n:,} events ...", flush=True)
    seconds = run(view, records_for(view, events), with_rows=True)
    rates["pure engine (decode, 15 features, state, offline rows)"] = n / seconds
    updates = n * len(view.features) / seconds
    rich = with_rich_features(view)
    seconds = run(rich, records_for(rich, events), with_rows=True)
    rates[f"pure engine + percentiles, top-k, last-k ({len(rich.features)} features)"] = n / seconds

    with EmbeddedStack(Settings.from_env(), broker_port=0, redis="embedded", workdir=workdir / "stack") as stack:
        for label, count in (("rillet worker, 1 process", 1), ("rillet worker, 2 processes", 2)):
            topic = f"bench_{count}_{int(time.time())}"
            features_file(workdir / "features.py", topic)
            [run_view] = load_views(workdir / "features.py")
            settings = stack.settings.with_(offline_path=str(workdir / topic), worker_group=f"g-{topic}",
                                            state_dir=str(workdir / f"state-{topic}"))
            print(f"{label} ...", flush=True)
            rates[label] = rillet_workers(settings, run_view, events, count, workdir)
        # Faust and Quix read the last topic, already full of the same events
        print("faust agent that does nothing ...", flush=True)
        rates["faust agent doing nothing"] = external("bench.faust_minimal", settings, run_view.topic, n)
        print("quix streams, one hopping-window sum ...", flush=True)
        rates["quix streams 3.28, 1 hopping sum"] = external("bench.quix_hopping", settings, run_view.topic, n)

    print(f"\nthroughput on {n:,} events (Tansu, this machine: {os.cpu_count()} cores)")
    for label, rate in rates.items():
        print(f"  {label:<58} {rate:>10,.0f} events/s")
    print(f"  {'pure engine feature updates':<58} {updates:>10,.0f} updates/s")
    quix = rates["quix streams 3.28, 1 hopping sum"]
    one, two = rates["rillet worker, 1 process"], rates["rillet worker, 2 processes"]
    print(f"  ratio worker / quix: {one / quix:.2f} (target >= 1.5)   2 workers / 1: {two / one:.2f} (target >= 1.4)")
    print(f"  ratio worker / faust agent doing nothing: {one / rates['faust agent doing nothing']:.2f}")


if __name__ == "__main__":
    main()
