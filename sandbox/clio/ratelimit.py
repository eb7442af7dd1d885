"""Per-token fixed-window rate limiting, with Clio's peak/off-peak schedule."""

from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

from sandbox.clio.config import Knobs


def in_peak(now: float, peak_hours: str, tz: str) -> bool:
    """True on a weekday between the ``HH-HH`` peak hours in ``tz``."""
    start, end = (int(x) for x in peak_hours.split("-"))
    local = datetime.fromtimestamp(now, ZoneInfo(tz))
    return local.weekday() < 5 and start <= local.hour < end


def limit_in_force(knobs: Knobs, now: float) -> int | None:
    """The limit announced right now, or None when limiting is off."""
    if knobs.rate_limit is None:
        return None
    limit = knobs.rate_limit
    if knobs.offpeak_limit is not None and not in_peak(now, knobs.peak_hours, knobs.tz):
        limit = knobs.offpeak_limit
    for at, value in sorted(knobs.limit_schedule):
        if at <= now:
            limit = int(value)
    return limit


class RateLimiter:
    """A fixed window per token, opened by the token's first request after the last one ended.

    Counting happens under a lock, so concurrent clients sharing a token never get more than
    ``limit`` admitted requests in one window.
    """

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def hit(self, token: str, now: float, limit: int, window: float) -> tuple[bool, int, float, float]:
        """Count one request: (allowed, remaining, window end, window start)."""
        with self._lock:
            bucket = self._buckets.get(token)
            if bucket is None or now >= bucket[0] + window:
                bucket = self._buckets[token] = [now, 0]
            allowed = bucket[1] < limit
            if allowed:
                bucket[1] += 1
            return allowed, int(limit - bucket[1]), bucket[0] + window, bucket[0]

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
