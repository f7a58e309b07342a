"""The versions a worker keeps current, and what it does when they change.

A worker keeps every version of its views current that is kept (active, candidates, a previous
one kept for rollback: `sinks.online.versions`), each with its own state table, from the same
batches. Every change of roles bumps the view's generation key; the worker compares it before
each batch and every second:

- a promotion or a rollback only moves roles among the versions it already runs: it goes on;
- a version it runs was retired, or a new candidate is to be kept current: it restarts in
  place (the same command, `os.execv`), so that the new set runs in its own consumer group
  (`live_group`) with every version resuming from its own progress; where its own definition
  is no longer kept, it exits with code 3 instead (restart it with the new definitions).

Before its next batch, never after: two processes running different sets on one partition
would both write the versions they share. A Redis that lost the registry (it came back empty)
changes nothing here: the healer puts the records back with the roles last seen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

import redis

from sinks.online.keys import generation_key, versions_key
from sinks.online.versions import ACTIVE, VersionInfo
from sinks.redis_client import REDIS_DOWN, mget
from streams.broker.predecessors import mark_replaced
from streams.worker.logs import log_event

__all__ = ["VersionWatch"]


class VersionWatch:
    """One worker process's view of the registry: the versions it runs, their roles, each view's generation."""

    def __init__(self, client: Any, running: dict[str, list[VersionInfo]], own: dict[str, int],
                 generations: dict[str, int], state_dir: str = "") -> None:
        self.redis, self.state_dir = client, state_dir
        self.roles = {view: {info.version: info for info in infos} for view, infos in running.items()}
        self.running = {view: set(infos) for view, infos in self.roles.items()}
        self.own = own  # view -> the version of this process's own definition
        self.generations = generations

    def role(self, view: str, version: int) -> str:
        return self.roles[view][version].state

    def active(self, view: str) -> int | None:
        return next((v for v, info in self.roles[view].items() if info.state == ACTIVE), None)

    def due_to_expire(self) -> list[str]:
        """Views with a previous version whose time for a rollback is up (the registry retires it)."""
        now = int(time.time() * 1000)
        return [view for view, infos in self.roles.items() if any(i.time_up(now) for i in infos.values())]

    async def check(self) -> None:
        """Compare each view's generation; on a change, follow its roles, or restart/exit (module doc)."""
        views = list(self.roles)
        try:
            found = await asyncio.wait_for(mget(self.redis, [generation_key(v) for v in views]), 1.0)
        except (TimeoutError, redis.RedisError, *REDIS_DOWN):
            return  # Redis is down: sink writes wait and retry, and this runs again before the next batch
        for view, raw in zip(views, found, strict=True):
            generation = int(raw or 0)
            if raw is None or generation == self.generations.get(view):
                continue  # no key: Redis lost it with the registry (the healer recreates the records)
            try:
                records = await asyncio.wait_for(self.redis.hgetall(versions_key(view)), 1.0)
            except (TimeoutError, redis.RedisError, *REDIS_DOWN):
                return
            infos = {int(k): VersionInfo(**json.loads(v)) for k, v in records.items()}
            kept = {v for v, info in infos.items() if info.kept}
            if infos and kept != self.running[view]:
                self._restart(view, kept)
            for version, info in infos.items():
                if version in self.roles[view]:
                    self.roles[view][version] = info
            self.generations[view] = generation

    def _restart(self, view: str, kept: set[int]) -> None:
        """Restart in place with the versions now kept; exit 3 where this process's definition is not one."""
        fields = {"view": view, "running": sorted(self.running[view]), "kept": sorted(kept)}
        if self.own[view] not in kept:
            log_event(logging.ERROR, event="version_retired", version=self.own[view], **fields,
                      message="this worker's definition of the view is no longer kept current (a replay or a "
                              "promotion replaced it); restart workers with the new definitions")
            _flush()
            os._exit(3)  # Faust would only restart a crashed agent
        log_event(logging.WARNING, event="versions_changed", **fields,
                  message="the versions kept current changed: restarting this worker in place to run them")
        _flush()
        if self.state_dir:  # the next incarnation removes this one's group membership at once
            mark_replaced(self.state_dir)
        os.execv(sys.executable, sys.orig_argv)  # the same command; files this process held close at exec


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
