"""Request pacing for one Clio access token, shared by every process on this host.

Clio limits requests per access token in fixed windows and announces the state on every
response (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` as epoch seconds) and ``Retry-After``
on a 429.  The limit changes (50/min at peak, more off-peak), so nothing here is a constant:

* **the server's headers are the shared truth** — every response updates the budget;
* **a local coordinator** (a JSON state file guarded by ``fcntl.flock`` under ``state_dir``)
  hands out request slots to every thread and process on this host using the same token, so
  concurrent extraction tasks space their requests instead of racing for the same remaining
  budget.  Between two responses, each granted slot is deducted from the last announced
  ``Remaining`` (the server has not counted in-flight requests yet);
* **across hosts** nothing is shared locally: the Airflow pool ``clio_api`` bounds how many tasks
  run at once and the headers (which every host sees) bound the rate; a 429 that slips through is
  honoured via ``Retry-After`` and retried by the hook.

Pacing spreads the remaining requests evenly over the time left in the window
(``(reset - now) / remaining``), so a higher announced limit immediately gives a faster pace.

DAG-facing surface: :class:`RateBudget` (``acquire()`` before a request, ``observe(headers)``
after it, ``penalize(seconds)`` on 429) and the pure helpers :func:`parse_rate_headers`,
:func:`retry_after_seconds`, :func:`next_slot`.
"""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: A small margin after the announced reset, for clock skew and rounding of the epoch seconds.
RESET_MARGIN = 0.05


@dataclass(frozen=True)
class RateHeaders:
    """The rate-limit headers of one response."""

    limit: int
    remaining: int
    reset: float


def _header(headers: Mapping[str, str], name: str) -> str | None:
    if name in headers:
        return headers[name]
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def parse_rate_headers(headers: Mapping[str, str]) -> RateHeaders | None:
    """Return the X-RateLimit-* headers, or None when a response has none (or garbage)."""
    raw = [_header(headers, f"X-RateLimit-{n}") for n in ("Limit", "Remaining", "Reset")]
    if any(v is None for v in raw):
        return None
    try:
        return RateHeaders(int(raw[0]), max(0, int(raw[1])), float(raw[2]))
    except ValueError:
        return None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Return ``Retry-After`` in seconds (delta-seconds or HTTP-date form), or None."""
    raw = _header(headers, "Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


@dataclass
class BudgetState:
    """What the coordinator remembers between requests (the JSON state file)."""

    limit: int | None = None
    remaining: float | None = None
    reset: float | None = None
    next_at: float = 0.0
    hold_until: float = 0.0

    def observe(self, rh: RateHeaders) -> None:
        """Fold one response's headers in.

        Within the same window keep the lower of our estimate and the server's count (our
        estimate already deducts requests still in flight); a later reset is a new window.
        """
        self.limit = rh.limit
        if self.reset is None or self.remaining is None or rh.reset > self.reset + 0.5:
            self.remaining, self.reset = float(rh.remaining), rh.reset
        elif rh.reset >= self.reset - 0.5:
            self.remaining = min(self.remaining, float(rh.remaining))
            self.reset = max(self.reset, rh.reset)
        # An older window's reset (a late response) carries no news.


def next_slot(state: BudgetState, now: float, reserve: int = 0) -> float:
    """Return when the next request may start, and advance ``state`` as if it was sent."""
    start = max(now, state.next_at, state.hold_until)
    if state.reset is None or state.remaining is None or start >= state.reset:
        # Unknown or expired window: go now; the response will tell us the new window.
        if state.reset is not None and start >= state.reset:
            state.remaining, state.reset = None, None
        state.next_at = start
        return start
    usable = state.remaining - reserve
    if usable < 1:
        start = state.reset + RESET_MARGIN
        state.remaining, state.reset = None, None
        state.next_at = start
        return start
    interval = (state.reset - start) / usable
    state.remaining -= 1
    state.next_at = start + interval
    return start


class RateBudget:
    """Pace requests for one token across threads and (with ``state_dir``) processes.

    :param key: identifies the token; use a hash, never the token itself (it names a file).
    :param state_dir: directory for ``<key>.json``/``<key>.lock``; None keeps state in memory
        (one process only).
    :param reserve: requests per window left unused as head room for other clients.
    :param clock: time source (epoch seconds); injectable for tests.
    :param sleep: sleep function; injectable for tests.
    """

    def __init__(
        self,
        key: str,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        reserve: int = 0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not key or any(c in key for c in "/\\") or key.startswith("."):
            raise ValueError(f"RateBudget: key {key!r} must be a plain file name")
        self.key = key
        self.reserve = reserve
        self.clock = clock
        self.sleep = sleep
        self._thread_lock = threading.Lock()
        self._memory = BudgetState()
        self._dir = os.fspath(state_dir) if state_dir is not None else None
        if self._dir is not None:
            os.makedirs(self._dir, mode=0o700, exist_ok=True)
        self.waited = 0.0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[BudgetState]:
        with self._thread_lock:
            if self._dir is None:
                yield self._memory
                return
            lock_path = os.path.join(self._dir, f"{self.key}.lock")
            state_path = os.path.join(self._dir, f"{self.key}.json")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                state = _load(state_path)
                yield state
                tmp = f"{state_path}.{os.getpid()}.tmp"
                with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
                    json.dump(asdict(state), fh)
                os.replace(tmp, state_path)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def acquire(self) -> float:
        """Block until this caller may send one request; return the seconds waited."""
        with self._locked() as state:
            now = self.clock()
            start = next_slot(state, now, self.reserve)
        delay = max(0.0, start - now)
        if delay > 0:
            self.sleep(delay)
        self.waited += delay
        return delay

    def observe(self, headers: Mapping[str, str]) -> RateHeaders | None:
        """Fold a response's rate-limit headers into the shared state."""
        rh = parse_rate_headers(headers)
        if rh is None:
            return None
        with self._locked() as state:
            state.observe(rh)
        return rh

    def penalize(self, seconds: float) -> None:
        """Hold every caller of this token for ``seconds`` (a 429's Retry-After)."""
        with self._locked() as state:
            state.hold_until = max(state.hold_until, self.clock() + max(0.0, seconds))
            state.remaining = 0.0 if state.reset is not None else state.remaining

    def snapshot(self) -> dict[str, Any]:
        """Return the current shared state (for logs and tests)."""
        with self._locked() as state:
            return asdict(state)


def _load(path: str) -> BudgetState:
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return BudgetState()
    known = BudgetState.__dataclass_fields__
    return BudgetState(**{k: v for k, v in raw.items() if k in known})
