"""Each worker process on a machine gets a state directory of its own under `RILLET_STATE_DIR`.

RocksDB locks each partition's files. Two live workers on one machine sharing a directory
collide as soon as one opens a partition the other holds: with standby replicas, the standby's
copy of every partition the other worker owns. The standby waits for the lock and then stops.
A worker therefore takes the lowest numbered slot (`slot-0`, `slot-1`, ...) whose lock file it
can lock. The kernel releases the lock when the process ends, however it ends, so a worker
restarted on the machine takes back the slot its predecessor left, with its state: the
restart reads only the changelog written since.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

from streams.errors import ConfigError

__all__ = ["claim_state_slot"]

MAX_SLOTS = 256
_held: list[IO[str]] = []  # the lock files, open for the process's life


def claim_state_slot(state_dir: str | Path) -> Path:
    """The first state directory under `state_dir` no live process on this machine holds; held until exit.

    Raises:
        ConfigError: every slot is held.
    """
    root = Path(state_dir)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_SLOTS):
        handle = open(root / f"slot-{n}.lock", "a")  # held open until the process exits
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held.append(handle)
        slot = root / f"slot-{n}"
        slot.mkdir(exist_ok=True)
        return slot
    raise ConfigError(f"{MAX_SLOTS} live workers on this machine already hold state directories under {root}")
