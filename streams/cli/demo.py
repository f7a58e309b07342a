"""`rillet demo`: the whole pipeline on a laptop, printing features at the end.

Embedded broker and Redis, topics, a worker process, a synthetic payment
stream (users paying at merchants over a few simulated hours, a little out of
order, plus a few bad and late records to show the dead-letter path), a wait
on consumer lag, then a table of features and where the Parquet files are.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path

from sinks.offline.store import read_offline
from sinks.online.reads import FeatureReader
from sinks.redis_client import connect_redis
from streams.broker.lag import wait_caught_up
from streams.broker.producer import EventProducer
from streams.broker.topics import ensure_topics
from streams.cli.progress import Progress
from streams.definitions.view import FeatureView
from streams.settings import Settings
from streams.stack.embedded import EmbeddedStack, ManagedProcess, free_port, wait_until
from streams.timeutil import format_ms
from streams.worker.probe import worker_health, worker_metric

__all__ = ["run_demo", "synthetic_payments", "worker_process"]


def synthetic_payments(users: int, events: int, start_ms: int, end_ms: int, seed: int = 7) -> list[dict]:
    """Payments spread over [start_ms, end_ms], each user with a few favourite merchants."""
    rng = random.Random(seed)
    merchants = [f"m{i:03d}" for i in range(200)]
    favourites = {u: rng.sample(merchants, 4) for u in range(users)}
    span = end_ms - start_ms
    out = []
    for i in range(events):
        user = rng.randrange(users)
        t = start_ms + span * i // events - rng.randrange(0, 60_000)  # up to 1 min out of order
        amount = None if rng.random() < 0.01 else round(rng.lognormvariate(3.0, 1.0), 2)
        out.append({"user_id": f"u{user:04d}", "amount": amount,
                    "merchant": rng.choice(favourites[user]), "event_time": max(t, start_ms)})
    return out


def worker_process(settings: Settings, features_path: str, workdir: Path, web_port: int,
                   extra_env: dict[str, str] | None = None) -> ManagedProcess:
    """A `rillet worker` child process configured by environment, as a user would run it."""
    env = dict(os.environ)
    env.update(settings.to_env())
    env["RILLET_WEB_PORT"] = str(web_port)
    env.update(extra_env or {})
    return ManagedProcess("worker", [sys.executable, "-m", "streams.cli", "worker", "--features", features_path],
                          workdir / f"worker-{web_port}.log", env=env).start()


def run_demo(settings: Settings, views: list[FeatureView], features_path: str, *, users: int,
             events: int, hours: float, follow: bool) -> int:
    view = views[0]
    workdir = Path("data/demo")
    shutil.rmtree(workdir, ignore_errors=True)
    settings = settings.with_(offline_path=str(workdir / "offline"), state_dir=str(workdir / "state"))
    started = time.monotonic()
    # its own broker, Valkey and registry, always: synthetic payments must never reach a user's
    # real topics, online features or schemas
    with EmbeddedStack(settings.with_(schema_registry_url=""), workdir=workdir / "stack", broker_port=0,
                       redis="embedded", registry=True) as stack:
        settings = stack.settings
        for note in stack.notes:
            print(f"[stack] {note}")
        ensure_topics(settings, views)
        port = free_port()
        worker = worker_process(settings, features_path, workdir, port)
        try:
            print(f"[worker] starting (log {worker.log_path}); waiting for its partitions")
            wait_until(lambda: not worker.alive()
                       or any(a.startswith(f"{view.topic}:") for a in worker_health(port).get("assigned", [])),
                       timeout_s=120, what="the worker to join its group", interval_s=0.2)
            if not worker.alive():
                print(f"rillet: error: the worker exited:\n{worker.tail()}", file=sys.stderr)
                return 1
            end_ms = int(time.time() * 1000)
            stream = synthetic_payments(users, events, end_ms - int(hours * 3_600_000), end_ms)
            t0 = time.monotonic()
            with EventProducer(settings, view) as producer:
                producer.send_many(stream)
                producer.send_raw(b"u0000", b"\x07not avro")  # a malformed record: goes to the DLQ
            heads = producer.report.heads
            print(f"[producer] {producer.report.sent:,} records published to {view.topic}: {len(stream):,} payments "
                  "and 1 malformed record, sent on purpose to show the dead-letter path")
            with Progress("worker", sum(heads.values()), "records", every_s=2.0) as progress:
                seconds = wait_caught_up(settings, settings.worker_group, view.topic, heads, timeout_s=600,
                                         on_progress=lambda done, total: progress.update(done, total=total),
                                         alive=worker.alive)
            elapsed = time.monotonic() - t0
            busy_s = worker_metric(port, "rillet_batch_seconds_sum", view.name)
            events_in = worker_metric(port, "rillet_events_in_total", view.name)
            print(f"[worker] caught up: {producer.report.sent} events {elapsed:.1f}s after publishing began "
                  f"(lag reached 0 {seconds:.1f}s after the last send)")
            if busy_s:
                print(f"[worker] {events_in:,.0f} events in {busy_s:.2f}s of batch processing: "
                      f"{events_in / busy_s:,.0f} events/s (decode, windows, changelog, Redis, Parquet)")
            _print_features(settings, view, sorted({e["user_id"] for e in stream[-50:]})[:5])
            offline = read_offline(settings.offline_root, view.name)
            dead = worker_metric(port, "rillet_dead_lettered_total", view.name)
            print(f"[offline] {offline.num_rows:,} rows in Parquet under {settings.offline_root.resolve()} "
                  "(one per aggregated payment)")
            print(f"[dlq] {dead:,.0f} record(s) in {view.dlq_topic}, with the reason in their headers "
                  f"(the malformed one; late payments would go there too)")
            if follow:
                print(f"[metrics] http://127.0.0.1:{port}/metrics")
                print("following: Ctrl-C stops everything")
                threading.Event().wait()
            else:
                print("[demo] the broker, Valkey and worker stop now; `rillet demo --follow` keeps them running")
        finally:
            worker.stop()
    print(f"[demo] done in {time.monotonic() - started:.1f}s")
    return 0


def _print_features(settings: Settings, view: FeatureView, entities: list[str]) -> None:
    reader = FeatureReader([view], connect_redis(settings))
    names = view.feature_names
    response = reader.get_online_features([f"{view.name}:{n}" for n in names],
                                          [{view.entity: e} for e in entities])
    print(f"\nFeatures of view {view.name!r} as of now ({format_ms(int(time.time() * 1000))}):")
    width = max(len(n) for n in names)
    header = " " * width + "  " + "".join(f"{e:>12}" for e in entities)
    print(header)
    for name in names:
        cells = []
        for row in response.rows:
            value = row[f"{view.name}:{name}"]
            cells.append(f"{value:>12.2f}" if isinstance(value, float) else f"{value!s:>12}")
        print(f"{name:<{width}}  " + "".join(cells))
