"""Pacing maths and the cross-process coordinator of clio2sf.ratebudget."""

from __future__ import annotations

import email.utils
import multiprocessing
import time

import pytest

from clio2sf.ratebudget import (
    BudgetState,
    RateBudget,
    RateHeaders,
    next_slot,
    parse_rate_headers,
    retry_after_seconds,
)

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def _headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {"x-ratelimit-limit": str(limit), "X-RateLimit-Remaining": str(remaining), "X-RATELIMIT-RESET": str(int(reset))}


def test_parse_headers_case_insensitive_and_missing():
    assert parse_rate_headers(_headers(50, 49, 1060)) == RateHeaders(50, 49, 1060.0)
    assert parse_rate_headers({"X-RateLimit-Limit": "50"}) is None
    assert parse_rate_headers(_headers(50, 49, 1060) | {"X-RateLimit-Limit": "lots"}) is None


def test_retry_after_seconds_and_http_date():
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "soon"}) is None
    when = email.utils.formatdate(1030, usegmt=True)
    assert retry_after_seconds({"Retry-After": when}, now=1000) == pytest.approx(30)


def test_pace_spreads_remaining_over_window():
    st = BudgetState()
    st.observe(RateHeaders(50, 50, 1060))
    assert next_slot(st, 1000) == 1000
    # 50 left over 60 s: 1.2 s apart.
    assert next_slot(st, 1000) == pytest.approx(1001.2)
    assert st.remaining == 48


def test_higher_announced_limit_gives_faster_pace():
    peak, offpeak = BudgetState(), BudgetState()
    peak.observe(RateHeaders(50, 49, 1060))
    offpeak.observe(RateHeaders(300, 299, 1060))
    next_slot(peak, 1000)
    next_slot(offpeak, 1000)
    assert next_slot(offpeak, 1000) - 1000 < (next_slot(peak, 1000) - 1000) / 5
    # The same budget adapts when a new window announces a higher limit.
    peak.observe(RateHeaders(300, 299, 1120))
    a = next_slot(peak, 1061)
    b = next_slot(peak, 1061)
    assert b - a == pytest.approx((1120 - 1061) / 299, rel=1e-3)


def test_exhausted_window_waits_for_reset_then_goes():
    st = BudgetState()
    st.observe(RateHeaders(50, 0, 1010))
    assert next_slot(st, 1000) == pytest.approx(1010.05)
    # After the reset the window is unknown until the next response: no further wait.
    assert next_slot(st, 1010.05) == pytest.approx(1010.05)


def test_same_window_keeps_lower_estimate_late_old_window_ignored():
    st = BudgetState()
    st.observe(RateHeaders(50, 40, 1060))
    for _ in range(5):
        next_slot(st, 1000)
    assert st.remaining == 35
    st.observe(RateHeaders(50, 38, 1060))  # in-flight requests not counted yet by the server
    assert st.remaining == 35
    st.observe(RateHeaders(50, 20, 1060))  # another host spent budget
    assert st.remaining == 20
    st.observe(RateHeaders(50, 49, 1000))  # a late answer from the previous window
    assert (st.remaining, st.reset) == (20, 1060)


def test_reserve_keeps_head_room():
    st = BudgetState()
    st.observe(RateHeaders(50, 2, 1060))
    assert next_slot(st, 1000, reserve=2) == pytest.approx(1060.05)


def test_budget_sleeps_per_pace_and_penalize(tmp_path):
    clock = FakeClock()
    b = RateBudget("tok", tmp_path, clock=clock, sleep=clock.sleep)
    b.observe(_headers(50, 50, 1060))
    waits = [b.acquire() for _ in range(3)]
    assert waits == pytest.approx([0, 1.2, 1.2])  # (60 s - 1.2 s) / 49 left is still 1.2 s
    b.penalize(30)
    assert b.acquire() >= 30 - 1e-6
    assert (tmp_path / "tok.json").exists()
    assert oct((tmp_path / "tok.json").stat().st_mode & 0o777) == "0o600"


def test_key_must_be_plain_file_name(tmp_path):
    with pytest.raises(ValueError, match="key"):
        RateBudget("../x", tmp_path)


def _worker(state_dir: str, n: int, out) -> None:
    b = RateBudget("shared", state_dir)
    for _ in range(n):
        b.acquire()
        out.put(time.time())


def test_processes_share_one_budget(tmp_path):
    """Three processes, 20 requests left in a 4 s window: their combined requests are spaced."""
    seed = RateBudget("shared", tmp_path)
    reset = time.time() + 4.0
    seed.observe(_headers(20, 20, reset))
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), 3, q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(15)
    stamps = sorted(q.get(timeout=5) for _ in range(9))
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    # About (time left in the window) / 20 apart, minus scheduling jitter; without the shared file: a burst.
    # The pace is set by the time left when the first request goes out, which a loaded machine delays.
    assert min(gaps) > 0.1, gaps
    assert stamps[-1] - stamps[0] > 0.6 * 8 * (reset - stamps[0]) / 20, (stamps[0] - (reset - 4.0), gaps)
