"""A small text progress bar for the CLI (no dependency): ``replay [#####.....] 12/40``."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Redraws one line on ``stream``; throttled so a fast loop does not flood the terminal."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None, width: int = 30,
                 every_s: float = 0.1) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.every_s = every_s
        self._last_draw = 0.0
        self.done = 0

    def render(self, done: int) -> str:
        share = done / self.total if self.total else 1.0
        filled = round(share * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label} [{bar}] {done}/{self.total} {share:4.0%}"

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if done < self.total and now - self._last_draw < self.every_s:
            return
        self._last_draw = now
        self.stream.write("\r" + self.render(done))
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + self.render(self.done) + "\n")
        self.stream.flush()
