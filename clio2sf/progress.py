"""Progress lines for long tasks: done/total, rate and ETA, at least every ``every`` seconds.

A task that lists thousands of pages or downloads documents for minutes would otherwise be silent
between batch commits. :class:`Progress` is fed after every page or download and logs a line when
``every`` seconds passed since the last one (and once more at the end with :meth:`finish`)::

    contacts: 4,200/12,000 records, 61.3 records/s, ETA 0h02m07s
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

DEFAULT_EVERY = 30.0


def eta(done: int, total: int | None, rate: float) -> str:
    if not total or rate <= 0 or done >= total:
        return "-"
    secs = int((total - done) / rate)
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m{secs % 60:02d}s"


class Progress:
    """Thread-safe progress counter that logs at most every ``every`` seconds (at least every ``every``
    seconds while updates keep arriving)."""

    def __init__(self, label: str, unit: str, *, total: int | None = None, done: int = 0,
                 every: float = DEFAULT_EVERY, clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger | None = None) -> None:
        self.label, self.unit, self.total, self.every = label, unit, total, every
        self.clock = clock
        self.log = log or logging.getLogger(__name__)
        self.start_done = self.done = done
        self.t0 = self.last = clock()
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def update(self, done: int | None = None, *, add: int = 0, total: int | None = None) -> None:
        with self._lock:
            if total:
                self.total = total
            self.done = done if done is not None else self.done + add
            now = self.clock()
            if now - self.last >= self.every:
                self.last = now
                self._emit(now)

    def finish(self) -> None:
        with self._lock:
            self._emit(self.clock())

    def line(self, now: float) -> str:
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
        total = f"{self.total:,}" if self.total else "?"
        return f"{self.label}: {self.done:,}/{total} {self.unit}, {rate:.1f} {self.unit}/s, ETA {eta(self.done, self.total, rate)}"

    def _emit(self, now: float) -> None:
        text = self.line(now)
        self.lines.append(text)
        self.log.info("%s", text)
