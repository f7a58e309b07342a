"""Counts events in a benchmark consumer and reports first/last times when all have arrived."""

from __future__ import annotations

import os
import time


class DoneCounter:
    """Call once per event; prints `DONE first_ts last_ts count` and exits at the expected count."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0

    def tick(self) -> None:
        self.count += 1
        if self.count == 1:
            self.first = time.time()
        if self.count == self.expected:
            print(f"DONE {self.first} {time.time()} {self.count}", flush=True)
            os._exit(0)  # the benchmark wants the figure, not a graceful shutdown
