"""Progress of long work (replays, joins, the demo's wait): a bar on a terminal, plain lines in a log.

tqdm draws the bar; when the output is not a terminal (a log file, CI, a pipe)
its carriage-return redraws would run together on one line, so this writes a
plain, complete line every few seconds instead, and one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """`update(done)` as work goes on, `close()` at the end (or use it as a context manager).

    Args:
        label: what is progressing, shown first (`replay`, `historical`).
        total: how much there is in all.
        unit: what is counted (`records`, `rows`).
        every_s: seconds between plain lines when the output is not a terminal.
        stream: where to write (stderr by default).
    """

    def __init__(self, label: str, total: int, unit: str, *, every_s: float = 5.0,
                 stream: TextIO | None = None) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.stream = stream or sys.stderr
        self.started = self._last_line = time.monotonic()
        self.done = 0
        self.extra = ""
        self._bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=f"[{label}]", unit=f" {unit}", unit_scale=True, file=self.stream,
                             dynamic_ncols=True, leave=True)

    def update(self, done: int, *, total: int | None = None, extra: str = "") -> None:
        """Set how much is done (absolute, not an increment); `extra` is shown after the figures."""
        if total is not None:
            self.total = total
        self.extra = extra
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.update(done - self.done)
            if extra:
                self._bar.set_postfix_str(extra, refresh=False)
        self.done = done
        if self._bar is None and time.monotonic() - self._last_line >= self.every_s:
            self._write_line()

    def _write_line(self) -> None:
        self._last_line = time.monotonic()
        elapsed = max(self._last_line - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate and self.total > self.done else 0.0
        share = 100 * self.done / self.total if self.total else 100.0
        extra = f", {self.extra}" if self.extra else ""
        print(f"[{self.label}] {self.done:,}/{self.total:,} {self.unit} ({share:.0f}%), {rate:,.0f} {self.unit}/s, "
              f"ETA {eta:.0f}s{extra}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            self._write_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.close()
        elif self._bar is not None:  # failing: close the bar, but write no final line over the error
            self._bar.close()
            self._bar = None
