"""`rillet replay --processes N`: one replay split over N processes by partition, switched once.

Each child replays a share of the partitions of the same version (`Replay(...,
partitions=share, switch=False)`): an entity lives in one partition, so the shares
never touch the same state, and each commits its own partitions' progress in Redis
as a single replay does. The children come from a `forkserver` that imported rillet
once: a child starts in milliseconds instead of the second a fresh interpreter
takes to import faust, pyarrow and the kernel (which made two processes slower than
one on small views). The parent shows one progress line from the shares' progress,
and switches readers once, after every share has reached the head. A child that
dies leaves its partitions' progress where it was: the same command resumes them.
The same split works across machines: run `--partitions ... --no-switch` on each,
then a plain `rillet replay --view V` finds every partition done and switches.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import resource
import time
from collections import Counter
from collections.abc import Callable

from replay.run import Replay, ReplayReport
from streams.errors import RilletError

__all__ = ["run_parallel", "shares"]

#: imported once by the forkserver, before any child forks from it
PRELOAD = ["replay.run", "sinks.offline.store", "sinks.online.store", "streams.definitions.view",
           "streams.kernel.engine", "schemas.codec", "schemas.columnar", "polars", "confluent_kafka",
           "pyarrow.parquet", "redis"]  # polars: 0.1 s a child imported it at its first batch


def shares(partitions: list[int], processes: int) -> list[list[int]]:
    """Partitions dealt round-robin to `processes` shares (no empty share)."""
    return [share for share in (sorted(partitions)[i::processes] for i in range(processes)) if share]


def _replay_share(env: dict[str, str], features_path: str, view_name: str, share: list[int],
                  from_ms: int | None, until_ms: int | None, batch_size: int) -> dict[str, float]:
    """In a child: replay `share` of the view's partitions (its own clients), return its counts and CPU time."""
    from streams.definitions.view import load_views
    from streams.settings import Settings

    settings = Settings.from_env(env)
    [view] = [v for v in load_views(features_path) if v.name == view_name]
    report = Replay(settings, view, from_ms=from_ms, until_ms=until_ms, batch_size=batch_size, switch=False,
                    partitions=share).run()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**report.counts, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def run_parallel(replay: Replay, features_path: str, processes: int, *,
                 on_progress: Callable[[int, int, float], None] | None = None) -> ReplayReport:
    """Run `replay` as `processes` child replays of partition shares, then switch once. The report's
    `counts["cpu_seconds"]` is the children's CPU time (events per CPU-second: `bench.replay`)."""
    info, resumed = replay.registry.start_build(replay.view, {"from": replay.from_ms, "until": replay.until_ms})
    ranges = replay.plan(replay.load_progress(info.version))
    started_at = {r.partition: r.start for r in ranges}
    planned = sum(r.records for r in ranges)
    report = ReplayReport(info.version, resumed, ranges)
    started = time.monotonic()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    parts = shares([r.partition for r in ranges], processes)
    env = replay.settings.to_env()
    with concurrent.futures.ProcessPoolExecutor(max_workers=len(parts), mp_context=context) as pool:
        futures = {pool.submit(_replay_share, env, features_path, replay.view.name, share, replay.from_ms,
                               replay.until_ms, replay.batch_size): share for share in parts}
        pending = set(futures)
        while pending:
            _, pending = concurrent.futures.wait(pending, timeout=0.5)
            if on_progress and pending:
                done = _done(replay, info.version, started_at)
                on_progress(done, planned, done / max(time.monotonic() - started, 1e-9))
        for future, share in futures.items():
            try:
                counts = future.result()
            except Exception as exc:  # a child's error, or a child killed (BrokenProcessPool)
                raise RilletError(f"the replay of partitions {share} failed ({type(exc).__name__}: {exc}); "
                                  "run the same command again to resume") from None
            report.counts.update(Counter(counts))
    report.seconds = time.monotonic() - started
    if on_progress:
        on_progress(planned, planned, report.counts["read"] / max(report.seconds, 1e-9))
    if replay.switch:
        replay.finish(info, report)
    return report


def _done(replay: Replay, version: int, started_at: dict[int, int]) -> int:
    """Records read so far by every share, from the progress they committed."""
    progress = replay.load_progress(version)
    return sum(max(progress[p].last_offset + 1 - start, 0) for p, start in started_at.items() if p in progress)
