"""Small helpers shared by the command modules: progress lines on stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints `label: done/total (rate/s)` to stderr at most every `every` seconds; quiet when asked."""

    def __init__(self, label: str, total: int | None = None, quiet: bool = False, every: float = 1.0):
        self.label, self.total, self.quiet, self.every = label, total, quiet, every
        self.start = self._last = time.monotonic()

    def __call__(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        if self.quiet or (now - self._last < self.every and done != self.total):
            return
        self._last = now
        rate = done / max(now - self.start, 1e-9)
        total = f"/{self.total}" if self.total is not None else ""
        extra = f" {note}" if note else ""
        print(f"{self.label}: {done}{total} ({rate:,.0f}/s){extra}", file=sys.stderr, flush=True)
