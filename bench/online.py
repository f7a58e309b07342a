"""Online read latency: rillet's reads beside raw redis-py reads of the same keys, and HTTP under load.

    python -m bench.online [--entities 10000] [--reads 5000]

Prints p50/p99 of: get_online_features for 1 entity x 20 features and for
100 entities, beside raw redis-py GET / MGET of the same keys (the floor);
and `rillet serve` at 1,000 requests/s from a second process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sinks.observe.served_log import ServedLog
from sinks.online.reads import FeatureReader
from sinks.online.store import OnlineStore
from sinks.redis_client import connect_redis, connect_redis_async, mget
from streams.definitions.view import load_views
from streams.kernel.engine import Event, EventBatch, ViewEngine
from streams.kernel.records import StateWrite
from streams.settings import Settings
from streams.stack.embedded import EmbeddedStack, free_port, port_open, wait_until
from streams.stack.redis_cluster import LocalRedisCluster

FEATURES = Path(__file__).with_name("online_features.py")


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def timed(call, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def populate(settings: Settings, view, entities: int) -> None:
    engine, rng = ViewEngine(view), random.Random(1)
    now = int(time.time() * 1000)
    events = [Event(f"u{e}", now - 3_600_000 + i * 110_000 + rng.randrange(60_000), {"amount": rng.uniform(1, 500)},
                    0, e * 30 + i) for e in range(entities) for i in range(30)]
    batch = EventBatch.of(events, engine.fields)
    batch.watermarks[:] = batch.event_ms.max()
    states: dict = {}
    engine.apply_batch(states, batch)
    writes = [StateWrite(entity, engine.encode(state), state.latest_ms) for entity, state in states.items()]

    async def write() -> None:
        client = connect_redis_async(settings)
        for lo in range(0, len(writes), 2000):
            await OnlineStore(view).write(client, writes[lo:lo + 2000])
            print(f"  wrote {min(lo + 2000, len(writes)):,}/{len(writes):,} entity states", flush=True)
        await client.aclose()

    asyncio.run(write())


def read_latencies(settings: Settings, view, entities: int, reads: int, where: str,
                   served_log: ServedLog | None = None, value_cache: int = 16_384) -> dict[str, tuple]:
    """p50/p99 of rillet's reads and raw redis-py reads of the same keys, 1 and 100 entities at a time.
    `value_cache=0`: every state decoded and evaluated at every read (a cold reader)."""
    client = connect_redis(settings)
    reader = FeatureReader([view], client, served_log=served_log, value_cache=value_cache)
    store = OnlineStore(view)
    refs = [f"{view.name}:{f.name}" for f in view.features]
    rng = random.Random(2)
    one = [f"u{rng.randrange(entities)}" for _ in range(reads)]
    it1, it2, it100, it100b = iter(one), iter(one), iter(range(10**9)), iter(range(10**9))

    def batch(i: int) -> list[str]:
        return [f"u{(i * 100 + j) % entities}" for j in range(100)]

    rows = {
        f"raw redis-py GET, 1 entity{where}": timed(lambda: client.get(store.key(next(it1))), reads),
        f"rillet get_online_features, 1 entity x 20{where}": timed(
            lambda: reader.get_online_features(refs, [{"user_id": next(it2)}]), reads),
        f"raw redis-py MGET, 100 entities{where}": timed(
            lambda: mget(client, [store.key(e) for e in batch(next(it100))]), reads // 10),
        f"rillet get_online_features, 100 entities x 20{where}": timed(
            lambda: reader.get_online_features(refs, [{"user_id": e} for e in batch(next(it100b))]), reads // 10),
    }
    client.close()
    cache = reader.value_cache
    if cache.entries:
        print(f"  kept values{where}: {cache.hits / max(cache.hits + cache.misses, 1):.0%} of states read were "
              f"answered from them", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rillet-bench-online-"))
    (workdir / "features.py").write_text(FEATURES.read_text().replace(
        "../schemas/payment.avsc", str(Path(__file__).parent.parent / "schemas" / "payment.avsc")))
    [view] = load_views(workdir / "features.py")
    with EmbeddedStack(Settings.from_env(), broker_port=0, redis="embedded", workdir=workdir / "stack") as stack:
        settings = stack.settings
        populate(settings, view, args.entities)
        rows = read_latencies(settings, view, args.entities, args.reads, "")
        cold = read_latencies(settings, view, args.entities, args.reads, " (no kept values)", value_cache=0)
        rows.update({k: v for k, v in cold.items() if k.startswith("rillet")})
        served_log = ServedLog(settings.with_(served_log_topic=f"bench_served_{int(time.time())}"), rate=1.0)
        logged = read_latencies(settings, view, args.entities, args.reads, " (served log on)", served_log)
        served_log.close()
        rows.update({k: v for k, v in logged.items() if k.startswith("rillet")})
        with LocalRedisCluster(3, workdir / "cluster") as cluster:
            on_cluster = settings.with_(redis_url=cluster.url)
            populate(on_cluster, view, args.entities)
            rows.update(read_latencies(on_cluster, view, args.entities, args.reads, " (cluster)"))
        refs = [f"{view.name}:{f.name}" for f in view.features]

        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--features",
                                   str(workdir / "features.py"), "--port", str(port)],
                                  env={**os.environ, **settings.to_env()},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: port_open("127.0.0.1", port), timeout_s=30, what="rillet serve")
            body = workdir / "body.json"
            body.write_text(json.dumps({"features": refs, "entities": {"user_id": ["u1"]}}))
            print(f"  HTTP load: {args.rate:.0f} requests/s for {args.seconds:.0f}s from a second process",
                  flush=True)
            load = subprocess.run([sys.executable, "-m", "bench.http_load", f"http://127.0.0.1:{port}/features/online",
                                   str(args.rate), str(args.seconds), str(body)], capture_output=True, text=True,
                                  timeout=120)
            http = json.loads(load.stdout.strip().splitlines()[-1])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                exposition = response.read().decode()
            server_p99 = histogram_quantile(exposition, "rillet_serve_request_seconds", 0.99)
            statuses = {line.split('status="')[1].split('"')[0]: float(line.split()[-1])
                        for line in exposition.splitlines() if line.startswith("rillet_serve_request_seconds_count")}
        finally:
            server.terminate()
            server.wait(10)
        most = {workers: wrk_most(settings, workdir, body, workers) for workers in (1, 2)}

    print(f"\nonline reads ({args.entities:,} entities in Redis, this machine: {os.cpu_count()} cores)")
    for label, (p50, p99) in rows.items():
        print(f"  {label:<58} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    one_p99 = rows["rillet get_online_features, 1 entity x 20"][1]
    raw_p99 = rows["raw redis-py GET, 1 entity"][1]
    hundred_p99 = rows["rillet get_online_features, 100 entities x 20"][1]
    raw100_p99 = rows["raw redis-py MGET, 100 entities"][1]
    print(f"  ratio 1 entity p99 / raw: {one_p99 / raw_p99:.2f} (target <= 1.3; absolute target <= 1 ms)")
    print(f"  ratio 100 entities p99 / raw: {hundred_p99 / raw100_p99:.2f}")
    cold_one = rows["rillet get_online_features, 1 entity x 20 (no kept values)"]
    cold_hundred = rows["rillet get_online_features, 100 entities x 20 (no kept values)"]
    print(f"  no kept values (every state decoded at every read), p99 / raw: 1 entity {cold_one[1] / raw_p99:.2f}, "
          f"100 entities {cold_hundred[1] / raw100_p99:.2f}; p50 / raw p50: 100 entities "
          f"{cold_hundred[0] / rows['raw redis-py MGET, 100 entities'][0]:.2f}")
    for label in ("1 entity x 20", "100 entities x 20"):
        off, on = rows[f"rillet get_online_features, {label}"][1], \
            rows[f"rillet get_online_features, {label} (served log on)"][1]
        print(f"  served-feature log on (every read logged) / off, p99, {label}: {on / off:.2f} (target <= 1.10)")
    cluster_one = rows["rillet get_online_features, 1 entity x 20 (cluster)"][1]
    cluster_hundred = rows["rillet get_online_features, 100 entities x 20 (cluster)"][1]
    print(f"  cluster / one node, p99: 1 entity {cluster_one / one_p99:.2f}, 100 entities "
          f"{cluster_hundred / hundred_p99:.2f} (the cluster reads the version pointer first: one more round trip)")
    print(f"  HTTP {http['achieved_rps']:.0f} rps achieved, {http['errors']} errors: p50 {http['p50_ms']:.2f} ms, "
          f"p99 {http['p99_ms']:.2f} ms seen by the client (target p99 <= 5 ms at 1,000 rps)")
    print(f"  HTTP p99 inside the server (its histogram, bucket bound): <= {server_p99 * 1000:.1f} ms; "
          f"answers by status: {statuses}")
    for workers, found in most.items():
        if found is None:
            print("  HTTP most req/s: skipped (wrk is not installed; make bench installs it with apt-get)")
            break
        rps, p99 = found
        print(f"  HTTP most req/s, rillet serve --workers {workers} (wrk, 16 connections): {rps:,.0f} req/s, "
              f"p99 {p99} (target >= 5,000 per process)")


def wrk_most(settings, workdir: Path, body: Path, workers: int) -> tuple[float, str] | None:
    """The most requests/s `rillet serve --workers N` answers under wrk (1 thread, 16 connections, 10 s)."""
    import shutil

    if shutil.which("wrk") is None:
        return None
    script = workdir / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body.read_text())}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--features", str(workdir / "features.py"),
                               "--port", str(port), "--workers", str(workers)], env={**os.environ, **settings.to_env()},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout_s=30, what="rillet serve")
        print(f"  wrk against rillet serve --workers {workers} for 10 s ...", flush=True)
        out = subprocess.run(["wrk", "-t1", "-c16", "-d10s", "--latency", "-s", str(script),
                              f"http://127.0.0.1:{port}/features/online"], capture_output=True, text=True,
                             timeout=60).stdout
    finally:
        server.terminate()
        server.wait(10)
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec:")))
    p99 = next((line.split()[1] for line in out.splitlines() if line.strip().startswith("99%")), "?")
    return rps, p99


def histogram_quantile(exposition: str, name: str, q: float) -> float:
    """The upper bound of the bucket holding quantile `q` of a Prometheus histogram (all labels summed)."""
    buckets: dict[float, float] = {}
    for line in exposition.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = (
                buckets.get(float("inf") if bound == "+Inf" else float(bound), 0.0) + float(line.split()[-1]))
    total = buckets.get(float("inf"), 0.0)
    for bound in sorted(buckets):
        if total and buckets[bound] >= q * total:
            return bound
    return float("nan")


if __name__ == "__main__":
    main()
