"""`rillet replay --processes N`: one replay split over N processes by partition, switched once.

Each child is an ordinary `rillet replay --partitions P,Q --no-switch` of the same
version: an entity lives in one partition, so the shares never touch the same
state, and each commits its own partitions' progress in Redis as a single replay
does. The parent shows one progress line from that progress, and switches
readers once, after every share has reached the head. A child that dies leaves
its partitions' progress where it was: the same command resumes them. The same
split works across machines: run `--partitions ... --no-switch` on each, then a
plain `rillet replay --view V` finds every partition done and switches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

from replay.run import Replay, ReplayReport
from streams.errors import RilletError

__all__ = ["run_parallel", "shares"]


def shares(partitions: list[int], processes: int) -> list[list[int]]:
    """Partitions dealt round-robin to `processes` shares (no empty share)."""
    return [share for share in (sorted(partitions)[i::processes] for i in range(processes)) if share]


def run_parallel(replay: Replay, features_path: str, processes: int, *,
                 on_progress: Callable[[int, int, float], None] | None = None) -> ReplayReport:
    """Run `replay` as `processes` child replays of partition shares, then switch once."""
    info, resumed = replay.registry.start_build(replay.view, {"from": replay.from_ms, "until": replay.until_ms})
    ranges = replay.plan(replay.load_progress(info.version))
    started_at = {r.partition: r.start for r in ranges}
    planned = sum(r.records for r in ranges)
    report = ReplayReport(info.version, resumed, ranges)
    started = time.monotonic()
    env = {**os.environ, **replay.settings.to_env()}
    children = []
    for share in shares([r.partition for r in ranges], processes):
        argv = [sys.executable, "-m", "streams.cli", "replay", "--features", features_path, "--view",
                replay.view.name, "--partitions", ",".join(map(str, share)), "--no-switch",
                "--batch-size", str(replay.batch_size)]
        if replay.from_ms is not None:
            argv += ["--from", str(replay.from_ms)]
        if replay.until_ms is not None:
            argv += ["--until", str(replay.until_ms)]
        children.append((share, subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                 text=True)))
    try:
        while any(child.poll() is None for _, child in children):
            if on_progress:
                done = _done(replay, info.version, started_at)
                on_progress(done, planned, done / max(time.monotonic() - started, 1e-9))
            time.sleep(0.5)
    finally:
        for _, child in children:
            if child.poll() is None:
                child.terminate()
    for share, child in children:
        out, err = child.communicate()
        if child.returncode != 0:
            last = (err.strip().splitlines() or ["no message"])[-1]
            raise RilletError(f"the replay of partitions {share} exited {child.returncode} ({last}); "
                              "run the same command again to resume")
        report.counts.update(Counter(_summary(out)))
    report.seconds = time.monotonic() - started
    if on_progress:
        on_progress(planned, planned, report.counts["read"] / max(report.seconds, 1e-9))
    if replay.switch:
        report.switched_from = replay.finish(info)
        report.switched = True
    return report


def _done(replay: Replay, version: int, started_at: dict[int, int]) -> int:
    """Records read so far by every share, from the progress they committed."""
    progress = replay.load_progress(version)
    return sum(max(progress[p].last_offset + 1 - start, 0) for p, start in started_at.items() if p in progress)


def _summary(stdout: str) -> dict[str, int]:
    """A child's counts from its one-line JSON summary."""
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {"read": summary["records"], "aggregated": summary["aggregated"], "late": summary["late"],
            "future_event_time": summary["future_event_time"], "dead_lettered": summary["dead_lettered"]}
