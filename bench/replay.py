"""Replay throughput beside the live worker's, on the same topic, in one run.

    python -m bench.replay [--events N]

Publishes N payments (pre-encoded) to a fresh topic on an embedded Tansu,
times one live `rillet worker` process through them (first to last event
processed), then times `rillet replay` of that topic into a new version (its
own events/s: records read over the replay's wall time, Parquet and Redis
included). Target (issue 6): >= 100,000 events/s per replay process.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.throughput import features_file, rillet_workers
from replay.parallel import run_parallel
from replay.run import Replay
from streams.cli.demo import synthetic_payments
from streams.cli.progress import Progress
from streams.definitions.view import load_views
from streams.settings import Settings
from streams.stack.embedded import EmbeddedStack


def _cpu_seconds() -> float:
    """This process's CPU time (the one-process replay runs in it)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rillet-bench-"))
    base = 1_767_225_600_000
    events = synthetic_payments(users=2000, events=args.events, start_ms=base, end_ms=base + 6 * 3_600_000)
    with EmbeddedStack(Settings.from_env(), broker_port=0, redis="embedded", workdir=workdir / "stack") as stack:
        topic = f"replay_{int(time.time())}"
        features_file(workdir / "features.py", topic)
        [view] = load_views(workdir / "features.py")
        settings = stack.settings.with_(offline_path=str(workdir / "offline"), worker_group=f"g-{topic}",
                                        state_dir=str(workdir / "state"))
        print("live worker, 1 process ...", flush=True)
        worker_rate = rillet_workers(settings, view, events, 1, workdir)
        print("replay of the same topic into a new version, 1 process ...", flush=True)
        cpu_before = _cpu_seconds()
        with Progress("replay", 0, "records") as progress:
            report = Replay(settings, view).run(
                on_progress=lambda done, total, rate: progress.update(done, total=total))
        one_cpu = _cpu_seconds() - cpu_before
        print("and again, in 2 processes (a partition share each) ...", flush=True)
        with Progress("replay x2", 0, "records") as progress:
            started = time.monotonic()
            parallel = run_parallel(Replay(settings, view), str(workdir / "features.py"), 2,
                                    on_progress=lambda done, total, rate: progress.update(done, total=total))
            parallel_rate = parallel.counts["read"] / (time.monotonic() - started)
    print(f"\nreplay vs live worker on {args.events:,} events (Tansu, this machine: {os.cpu_count()} cores)")
    print(f"  {'live worker, 1 process':<40} {worker_rate:>10,.0f} events/s")
    print(f"  {'replay, 1 process':<40} {report.events_per_s:>10,.0f} events/s "
          f"({report.counts['aggregated']:,} aggregated, switched to v{report.version}: {report.switched})")
    print(f"  {'replay, 2 processes':<40} {parallel_rate:>10,.0f} events/s "
          f"({parallel.counts['aggregated']:,} aggregated, switched to v{parallel.version}: {parallel.switched}; "
          f"{parallel_rate / report.events_per_s:.2f}x one, target >= 1.8x)")
    per_cpu_one = report.counts["read"] / one_cpu
    per_cpu_two = parallel.counts["read"] / parallel.counts["cpu_seconds"]
    print(f"  {'replay, 1 process, per CPU-second':<40} {per_cpu_one:>10,.0f} events/s")
    print(f"  {'replay, 2 processes, per CPU-second':<40} {per_cpu_two:>10,.0f} events/s "
          f"({per_cpu_two / per_cpu_one:.2f}x events per CPU-second, target >= 0.9x)")
    print(f"  ratio replay / worker: {report.events_per_s / worker_rate:.1f}   "
          f"replay target >= 150,000 events/s: {'met' if report.events_per_s >= 150_000 else 'missed'}")


if __name__ == "__main__":
    main()
