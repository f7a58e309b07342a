"""Per-partition progress: the watermark (greatest event time seen) and the last offset handled.

The last offset makes re-delivery after a restart harmless: a record at or
below it was already decided (applied or dead-lettered) and its results
stored, and must not be judged again against a watermark that has since
moved past it.
"""

from __future__ import annotations

__all__ = ["Watermarks"]


class Watermarks:
    """Watermark and last handled offset per source partition."""

    def __init__(self, initial: dict[int, tuple[int | None, int]] | None = None) -> None:
        self._by_partition: dict[int, tuple[int | None, int]] = dict(initial or {})

    def _load(self, partition: int) -> tuple[int | None, int]:
        """Where a subclass finds a partition not seen in this process (default: nothing)."""
        return (None, -1)

    def _entry(self, partition: int) -> tuple[int | None, int]:
        entry = self._by_partition.get(partition)
        if entry is None:
            entry = self._by_partition[partition] = self._load(partition)
        return entry

    def get(self, partition: int) -> int | None:
        return self._entry(partition)[0]

    def last_offset(self, partition: int) -> int:
        """The last offset handled on a partition (-1 for none)."""
        return self._entry(partition)[1]

    def handled(self, partition: int, offset: int) -> bool:
        """True when the record at `offset` was already handled (a re-delivery)."""
        return offset <= self._entry(partition)[1]

    def mark(self, partition: int, offset: int) -> None:
        """Record that the record at `offset` has been handled."""
        watermark, last = self._entry(partition)
        if offset > last:
            self._by_partition[partition] = (watermark, offset)

    def advance(self, partition: int, event_ms: int) -> int:
        """Include an event time; returns the partition's watermark after it."""
        watermark, last = self._entry(partition)
        if watermark is None or event_ms > watermark:
            self._by_partition[partition] = (event_ms, last)
            return event_ms
        return watermark

    def items(self) -> list[tuple[int, tuple[int | None, int]]]:
        return sorted(self._by_partition.items())
