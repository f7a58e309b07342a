"""Per-partition progress: the watermark (greatest event time seen), the last offset handled, and
how many events were aggregated.

The last offset makes re-delivery after a restart harmless: a record at or
below it was already decided (applied or dead-lettered) and its results
stored, and must not be judged again against a watermark that has since
moved past it. The aggregated count travels with it, so it is exact across
crashes too (it is stored with the offset it counts up to): `rillet versions`
reports it.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["PartitionProgress", "Watermarks"]


class PartitionProgress(NamedTuple):
    """One source partition's progress, as stored (changelog, Redis): `watermark,last_offset,aggregated`."""

    watermark: int | None
    last_offset: int
    aggregated: int = 0

    def encode(self) -> str:
        return f"{'' if self.watermark is None else self.watermark},{self.last_offset},{self.aggregated}"

    @classmethod
    def decode(cls, text: str | bytes) -> PartitionProgress:
        """Reads this form and the older two-part ones (`watermark:offset`, `watermark,offset`)."""
        if isinstance(text, bytes):
            text = text.decode()
        parts = text.replace(":", ",").split(",")
        return cls(int(parts[0]) if parts[0] else None, int(parts[1]), int(parts[2]) if len(parts) > 2 else 0)


NOTHING = PartitionProgress(None, -1, 0)


class Watermarks:
    """Watermark, last handled offset and aggregated count per source partition."""

    def __init__(self, initial: dict[int, PartitionProgress] | None = None) -> None:
        self._by_partition: dict[int, PartitionProgress] = dict(initial or {})

    def _load(self, partition: int) -> PartitionProgress:
        """Where a subclass finds a partition not seen in this process (default: nothing)."""
        return NOTHING

    def _entry(self, partition: int) -> PartitionProgress:
        entry = self._by_partition.get(partition)
        if entry is None:
            entry = self._by_partition[partition] = self._load(partition)
        return entry

    def get(self, partition: int) -> int | None:
        return self._entry(partition).watermark

    def last_offset(self, partition: int) -> int:
        """The last offset handled on a partition (-1 for none)."""
        return self._entry(partition).last_offset

    def handled(self, partition: int, offset: int) -> bool:
        """True when the record at `offset` was already handled (a re-delivery)."""
        return offset <= self._entry(partition).last_offset

    def mark(self, partition: int, offset: int) -> None:
        """Record that the record at `offset` has been handled."""
        entry = self._entry(partition)
        if offset > entry.last_offset:
            self._by_partition[partition] = entry._replace(last_offset=offset)

    def advance(self, partition: int, event_ms: int) -> int:
        """Include an event time; returns the partition's watermark after it."""
        entry = self._entry(partition)
        if entry.watermark is None or event_ms > entry.watermark:
            self._by_partition[partition] = entry._replace(watermark=event_ms)
            return event_ms
        return entry.watermark

    def count_aggregated(self, partition: int) -> None:
        """One more event of this partition went into the states."""
        entry = self._entry(partition)
        self._by_partition[partition] = entry._replace(aggregated=entry.aggregated + 1)

    def items(self) -> list[tuple[int, PartitionProgress]]:
        return sorted(self._by_partition.items())
