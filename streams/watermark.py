"""Per-partition watermarks: the greatest event time seen on each source partition."""

from __future__ import annotations

__all__ = ["Watermarks"]


class Watermarks:
    """Watermark per source partition; None until a partition has seen an event."""

    def __init__(self, initial: dict[int, int] | None = None) -> None:
        self._by_partition: dict[int, int] = dict(initial or {})

    def get(self, partition: int) -> int | None:
        return self._by_partition.get(partition)

    def advance(self, partition: int, event_ms: int) -> int:
        """Include an event; returns the partition's watermark after it."""
        current = self._by_partition.get(partition)
        if current is None or event_ms > current:
            self._by_partition[partition] = event_ms
            return event_ms
        return current

    def items(self) -> list[tuple[int, int]]:
        return sorted(self._by_partition.items())
