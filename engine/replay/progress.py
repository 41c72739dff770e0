"""A one-line progress bar on a terminal, for replays of large logs.

Drawn on stderr, so the report on stdout stays clean for pipes, and only
when stderr is a terminal: a redirected run prints nothing extra.
"""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[#########-----------]  45%  450,000/1,000,000 events  312,000/s``."""

    def __init__(self, total: int, stream: TextIO, *, width: int = 30, label: str = "events"):
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.label = label
        self.started = time.perf_counter()
        self.drawn = False

    @classmethod
    def for_terminal(
        cls, total: int, stream: TextIO, *, minimum: int = 50_000
    ) -> ProgressBar | None:
        """A bar if ``stream`` is a terminal and the work is worth one."""
        if total < minimum or not stream.isatty():
            return None
        return cls(total, stream)

    def __call__(self, done: int) -> None:
        fraction = min(done / self.total, 1.0)
        filled = int(self.width * fraction)
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(
            f"\r[{bar}] {fraction:4.0%}  {done:,}/{self.total:,} {self.label}  {rate:,.0f}/s"
        )
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """Erase the bar, so the report starts on a clean line."""
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
