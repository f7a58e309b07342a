"""Python's cycle collector, paused while batches run, and kept off the states that outlive them.

A batch allocates tens of thousands of small lists (decoded states, partials) that live until the
batch is written. With the collector on, each allocation counts toward a collection that walks every
young object; pausing it inside a batch only left one collection at the batch's end, walking all of
the batch's survivors: a third of the engine's time (bench/engine: 23,700 events/s with it, 33,400
without; 10,400 and 19,600 with percentile, top-k and last-k features). Nothing in a batch forms a
reference cycle, and by the next batch reference counting has freed it, so the collector stays off
from batch to batch; at a batch's start, when more than YOUNG_LIMIT young objects are alive, it
collects, which is the collector's own rule with a larger threshold.

What a batch leaves alive is frozen (`gc.freeze`) at the next batch's start, without a collection:
the decoded states a worker or a replay keeps between batches (100,000 hot states are millions of
objects) are then never walked again. Walking them was the cost of every full collection: 0.23 s
each in a replay of 100,000 entities, 0.74-0.87 s in a worker holding 1M states, where it held the
event loop and delayed heartbeats, commits and a failover. Collecting only the young objects before
each freeze still cost 30-210 ms a batch with a new entity per event (1M users), all of it holding
the GIL and so the event loop, and found 0-13 objects: a batch makes no reference cycle. States hold
no cycle either, so reference counting frees them when they are dropped; a cycle that dies after a
freeze waits for the one full collection an hour (`FULL_COLLECTION_EVERY_S`), which unfreezes
everything first. Between batches the collector is on (`resume_collector`) and collects as usual.
"""

from __future__ import annotations

import gc
import time

__all__ = ["FULL_COLLECTION_EVERY_S", "YOUNG_LIMIT", "freeze_young", "pause_collector", "resume_collector"]

# Young objects (allocated and still alive since the last freeze) that make the next batch freeze them.
YOUNG_LIMIT = 50_000
# How often a collection walks frozen objects too (frees cycles that died after a freeze).
FULL_COLLECTION_EVERY_S = 3600.0

_paused = False
_last_full = time.monotonic()


def pause_collector() -> None:
    """The collector off while batches run; at a batch's start, a freeze when young objects pile up.
    `resume_collector` turns it back on (the worker's one-second timer, the end of a replay); a collector
    someone else turned off stays off."""
    global _paused
    if _paused:
        if gc.get_count()[0] > YOUNG_LIMIT:
            freeze_young()
        return
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collector() -> None:
    """The cycle collector on again, if `pause_collector` turned it off."""
    global _paused
    if _paused:
        _paused = False
        gc.enable()


def freeze_young() -> int:
    """Freeze every object not frozen yet, with no walk over them; once an hour, first unfreeze and collect
    everything. Returns what that collection found (0 in the other hours)."""
    global _last_full
    now = time.monotonic()
    found = 0
    if now - _last_full >= FULL_COLLECTION_EVERY_S:
        gc.unfreeze()
        _last_full = now
        found = gc.collect()
    gc.freeze()
    return found
