"""Which entity states the expiry sweep may drop, found without reading every state at each sweep.

A state can be dropped once its latest event is older than the partition's watermark minus grace and
the longest window (`ViewEngine.droppable`). The sweep used to walk every state's (partition, latest
event time) each time: about a second of Python at 1M states, inside the batch handler, so it held
that batch's acknowledgement, and with it any rebalance waiting for the batch (a failover to a standby
waited seconds for it). Here states sit in buckets of latest event time per partition; a sweep takes
only the buckets wholly below the cutoff, so its cost follows what it drops, not what is kept.

The index is a hint: a state is dropped only after its current bytes say so (the caller checks), so an
entry that is stale (written since, or noted from an older read) can cost a check, never a wrong drop.
A state is dropped at most one bucket width late, which only delays freeing its space: a droppable
state starts fresh at its next event either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["ExpiryIndex"]


class ExpiryIndex:
    """(partition, latest event time bucket) of every state of a table; filled by `note` as batches write, and
    once from the table after a rebalance (`note_all`, then `take_newer`)."""

    def __init__(self, bucket_ms: int) -> None:
        self.bucket_ms = max(1, bucket_ms)
        self.built = False
        self._where: dict[bytes, tuple[int, int]] = {}  # key -> (partition, bucket)
        self._buckets: dict[int, dict[int, set[bytes]]] = {}  # partition -> bucket -> keys

    def __len__(self) -> int:
        return len(self._where)

    def note(self, key: bytes, partition: int, latest_ms: int) -> None:
        """A state was written with this latest event time."""
        self._place(key, (partition, latest_ms // self.bucket_ms))

    def _place(self, key: bytes, place: tuple[int, int]) -> None:
        old = self._where.get(key)
        if old == place:
            return
        if old is not None:
            keys = self._buckets.get(old[0], {}).get(old[1])
            if keys is not None:
                keys.discard(key)
        self._where[key] = place
        self._buckets.setdefault(place[0], {}).setdefault(place[1], set()).add(key)

    def note_all(self, items: Iterable[tuple[bytes, bytes]], position_of: Callable[[bytes], tuple[int, int]],
                 skip: Callable[[bytes], bool]) -> None:
        """Index a table's (key, state bytes), skipping keys that are not states (in a thread, on an index no
        batch writes to: `take_newer` then adds what batches noted meanwhile)."""
        for key, blob in items:
            if not skip(key):
                self.note(key, *position_of(blob))

    def take_newer(self, newer: ExpiryIndex) -> ExpiryIndex:
        """This index, read from the table, with what batches noted in `newer` while it was read (newer, so it
        wins); then built."""
        for key, place in newer._where.items():
            self._place(key, place)
        self.built = True
        return self

    def due(self, cutoff_for: Callable[[int], int | None]) -> list[tuple[bytes, int]]:
        """(key, partition) of the states in the buckets wholly below each partition's cutoff (None: none yet),
        taken out of the index: the caller drops those its check confirms and notes the others again."""
        found: list[tuple[bytes, int]] = []
        for partition, buckets in self._buckets.items():
            cutoff = cutoff_for(partition)
            if cutoff is None:
                continue
            # bucket b holds [b*w, (b+1)*w): wholly below the cutoff when (b+1)*w <= cutoff
            last_whole = cutoff // self.bucket_ms - 1
            for bucket in [b for b in buckets if b <= last_whole]:
                for key in buckets.pop(bucket):
                    if self._where.get(key) == (partition, bucket):
                        del self._where[key]
                        found.append((key, partition))
        return found
