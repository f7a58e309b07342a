"""Sending a view's dead letters: each once, however often its batch is retried.

A dead letter is a sink like Redis and Parquet: sent and acknowledged before the batch's commit
point (the changelog). A batch that crashed after sending some is taken again from the last
commit, so before a partition's first batch the sender reads which source offsets past the
stored progress already have a letter, and skips them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from streams import faults
from streams.broker.dead_letters import DeadLetterLog
from streams.kernel.processor import DeadLetter
from streams.worker.logs import log_event
from streams.worker.state_table import TableWatermarks

__all__ = ["DeadLetterSender"]


class DeadLetterSender:
    """Sends the letters of one view version to its dead-letter topic, on the partition of their source."""

    def __init__(self, topic: Any, log: DeadLetterLog, view_name: str, source_topic: str, partitions: int,
                 watermarks: TableWatermarks) -> None:
        self.topic, self.log, self.view_name, self.source_topic = topic, log, view_name, source_topic
        self.partitions, self.watermarks = partitions, watermarks
        self._seen: dict[int, set[int]] = {}  # partition -> offsets already dead-lettered past its commit

    async def read_sent(self, partition: int) -> None:
        """Learn the source offsets past this partition's stored progress that already have a dead letter
        (a batch that crashed before its commit point sent them). Reads from where the letters had reached
        at the last commit; with nothing committed yet (a first batch may crash too), from the start, once."""
        entry = self.watermarks.entry(partition)
        found, head = await asyncio.to_thread(
            self.log.sources_after, partition % self.partitions, entry.dlq_next, self.source_topic,
            partition, entry.last_offset)
        self.watermarks.dead_letters_reach(partition, head)  # scanned up to here: the next restart starts there
        self._seen[partition] = found

    async def send(self, letters: list[DeadLetter]) -> int:
        """Send each letter not already sent and wait for the broker's acknowledgements; returns how many."""
        pending = []
        for letter in letters:
            source = letter.record
            if source.offset in self._seen.get(source.partition, ()):
                continue
            sent = await self.topic.send(key=source.key, value=source.value, headers=letter.headers(),
                                         partition=source.partition % self.partitions)
            faults.hit_later("dead_letter_sent")  # crash tests: killed while the letter may be in flight
            pending.append((source.partition, sent))
            log_event(logging.WARNING, event="dead_letter", view=self.view_name, reason=letter.reason,
                      partition=source.partition, offset=source.offset, error=letter.error)
        for partition, sent in pending:
            delivered = await sent
            self.watermarks.dead_letters_reach(partition, delivered.offset + 1)
        return len(pending)

    def forget(self) -> None:
        """After a rebalance: read again what was sent, for each partition's next first batch."""
        self._seen.clear()
