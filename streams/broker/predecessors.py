"""A worker restarted on the same machine takes over from its dead predecessor at once.

When a worker is SIGKILLed, its consumer-group membership outlives it: the coordinator waits a
whole session timeout (6 s here, 45 s by default on Kafka) for heartbeats that never come, and
only then rebalances, so a restart on the same machine sat out the dead member's session before
any state was touched (about 6 of the 14 s a restart took with 100k states on disk).

Each worker writes its member id into its state directory once it has joined, in a file named
for its host, process id and process start time. A worker starting on that directory looks for
members whose process is gone (same host; no process with that id, or one started at another
time: the id was reused), asks the group coordinator to remove each (LeaveGroup, as a consumer
closing cleanly sends it), and deletes its file. Workers that share a state directory while
alive are never touched: their process is still there. Kafka's own answer is static membership
(`group.instance.id`); Tansu answers a second static member with "member_id was not recognized"
in a loop, and LeaveGroup by member id works on both.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
from pathlib import Path

__all__ = ["forget_dead_predecessors", "mark_replaced", "remember_membership"]

logger = logging.getLogger(__name__)
_FOLDER = "group-members"


def _started_at(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started_at: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: leave it be
    return started_at is None or _started_at(pid) in (None, started_at)


def remember_membership(state_dir: str, group: str, member_id: str) -> None:
    """Record this process's membership of `group` (called after each assignment: the id may change)."""
    folder = Path(state_dir) / _FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    record = {"host": socket.gethostname(), "pid": pid, "started_at": _started_at(pid), "group": group,
              "member_id": member_id}
    path = folder / f"{socket.gethostname()}-{pid}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record))
    temporary.replace(path)


def mark_replaced(state_dir: str) -> None:
    """This process is about to restart in place (`os.execv`: same pid, same start time): mark its membership
    so that its next incarnation removes it from the group like a dead predecessor's."""
    path = Path(state_dir) / _FOLDER / f"{socket.gethostname()}-{os.getpid()}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**record, "replaced": True}))
    temporary.replace(path)


def _dead_memberships(state_dir: str) -> list[tuple[Path, dict]]:
    folder = Path(state_dir) / _FOLDER
    if not folder.is_dir():
        return []
    host, found = socket.gethostname(), []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if record.get("host") == host and (record.get("replaced")
                                           or not _alive(int(record["pid"]), record.get("started_at"))):
            found.append((path, record))
    return found


async def _leave(bootstrap_servers: str, memberships: list[dict], timeout_s: float) -> list[str]:
    from aiokafka.client import AIOKafkaClient, CoordinationType
    from aiokafka.protocol.group import LeaveGroupRequest

    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    removed = []
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        for record in memberships:
            coordinator = await asyncio.wait_for(
                client.coordinator_lookup(CoordinationType.GROUP, record["group"]), timeout_s)
            response = await asyncio.wait_for(
                client.send(coordinator, LeaveGroupRequest(record["group"], record["member_id"])), timeout_s)
            if response.error_code == 0:
                removed.append(record["member_id"])
    finally:
        await client.close()
    return removed


def forget_dead_predecessors(state_dir: str, bootstrap_servers: str, timeout_s: float = 5.0) -> list[str]:
    """Remove from their groups the members that dead processes on this host left in `state_dir`.

    Best effort and bounded: a broker that does not answer costs at most `timeout_s`, after which the
    group's session timeout does the same work. Returns the member ids removed.
    """
    dead = _dead_memberships(state_dir)
    if not dead:
        return []
    outcome: dict[str, list[str]] = {}

    def run() -> None:  # a thread of its own: the worker's event loop is Faust's and not started yet
        try:
            outcome["removed"] = asyncio.run(_leave(bootstrap_servers.split(",")[0].strip(),
                                                    [record for _, record in dead], timeout_s))
        except Exception as exc:
            logger.info("could not remove a dead predecessor from its group (%s); its session will expire", exc)

    thread = threading.Thread(target=run, name="rillet-forget-predecessors", daemon=True)
    thread.start()
    thread.join(timeout_s * 3)
    for path, _ in dead:
        path.unlink(missing_ok=True)
    removed = outcome.get("removed", [])
    for member in removed:
        logger.info("removed the member %s a dead worker left in the group: no wait for its session", member)
    return removed
