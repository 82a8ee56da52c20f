"""A minimal progress bar on stderr (no dependency), redrawn at most every 0.2 s."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``update(i)`` with the iteration number; ``tune`` iterations are labelled as warm-up."""

    def __init__(self, total: int, tune: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.tune, self.width = total, tune, width
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.first: int | None = None
        self.last_draw = 0.0

    def update(self, iteration: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first, self.start = iteration - 1, now
        if iteration < self.total and now - self.last_draw < 0.2:
            return
        self.last_draw = now
        done = iteration / max(self.total, 1)
        elapsed = now - self.start
        rate = (iteration - self.first) / elapsed if elapsed > 0.05 else 0.0
        eta = f"{(self.total - iteration) / rate:5.0f}" if rate > 0 else "    ?"
        phase = "warm-up" if iteration <= self.tune else "sampling"
        bar = "#" * int(done * self.width)
        self.stream.write(
            f"\r{phase:8s} [{bar:<{self.width}s}] {iteration}/{self.total} "
            f"{rate:7.0f} it/s  eta {eta} s"
        )
        if iteration >= self.total:
            self.stream.write("\n")
        self.stream.flush()
