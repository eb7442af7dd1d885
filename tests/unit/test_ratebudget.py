"""Pacing maths, the shared budget and token of one grant (clio2sf.ratebudget, clio2sf.sharedstate)."""

from __future__ import annotations

import email.utils
import time

import pytest

from clio2sf.ratebudget import (
    RESET_MARGIN,
    BudgetState,
    RateBudget,
    RateHeaders,
    TokenCache,
    fold,
    grant,
    parse_rate_headers,
    retry_after_seconds,
)
from clio2sf.sharedstate import FileStore, MemoryStore
from tests.store_workers import three_processes_count_on_one_row, three_processes_share_nine_slots

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


def _known(limit: int, remaining: int, reset: float) -> BudgetState:
    st = BudgetState()
    fold(st, RateHeaders(limit, remaining, reset))
    return st


def test_pace_spreads_remaining_over_window():
    st = _known(50, 50, 1060)
    assert grant(st, 1000, "a") == (1000, True)
    # 50 left over 60 s: 1.2 s apart.
    start, ok = grant(st, 1000, "b")
    assert ok and start == pytest.approx(1001.2)
    assert st.remaining == 48 and set(st.inflight) == {"a", "b"}


def test_higher_announced_limit_gives_faster_pace():
    peak, offpeak = _known(50, 49, 1060), _known(300, 299, 1060)
    grant(peak, 1000, "p1")
    grant(offpeak, 1000, "o1")
    assert grant(offpeak, 1000, "o2")[0] - 1000 < (grant(peak, 1000, "p2")[0] - 1000) / 5
    # The same budget adapts when a new window announces a higher limit.
    fold(peak, RateHeaders(300, 299, 1120))
    a, _ = grant(peak, 1061, "p3")
    b, _ = grant(peak, 1061, "p4")
    assert b - a == pytest.approx((1120 - 1061) / (299 - 2), rel=1e-3)  # two of ours still in flight


def test_exhausted_window_waits_for_reset_then_one_probe_at_a_time():
    st = _known(50, 1, 1010)
    assert grant(st, 1000, "last") == (1000, True)
    assert grant(st, 1000, "x") == (pytest.approx(1010 + RESET_MARGIN), False)
    # After the reset the window is unknown: nothing goes while an earlier request is in flight ...
    when, ok = grant(st, 1010.05, "probe")
    assert not ok and when <= 1010.05 + 0.1
    fold(st, None, "last")
    # ... then exactly one probe goes, and nobody else until its answer says how much is left.
    assert grant(st, 1010.05, "probe") == (1010.05, True)
    assert grant(st, 1010.06, "other")[1] is False
    fold(st, RateHeaders(50, 49, 1070), "probe")
    assert grant(st, 1010.07, "other")[1] is True and st.remaining == 48


def test_a_new_window_counts_requests_in_flight_as_spent():
    st = _known(10, 10, 1010)
    for i in range(4):
        assert grant(st, 1000 + i, f"s{i}")[1]
    # s0's answer opens the server's next window (the others may not have been counted yet).
    fold(st, RateHeaders(10, 9, 1070), "s0")
    assert (st.remaining, st.reset) == (6, 1070)


def test_same_window_keeps_lower_estimate_late_old_window_ignored():
    st = _known(50, 40, 1060)
    for i in range(5):
        grant(st, 1000, f"s{i}")
    assert st.remaining == 35
    fold(st, RateHeaders(50, 38, 1060), "s0")  # 4 still in flight: at most 34 left
    assert st.remaining == 34
    fold(st, RateHeaders(50, 20, 1060), "s1")  # another client of the grant spent budget
    assert st.remaining == 17
    fold(st, RateHeaders(50, 49, 1000), "s2")  # a late answer from the previous window
    assert (st.remaining, st.reset) == (17, 1060) and set(st.inflight) == {"s3", "s4"}


def test_reserve_keeps_head_room():
    st = _known(50, 2, 1060)
    assert grant(st, 1000, "a", reserve=2) == (pytest.approx(1060 + RESET_MARGIN), False)


def test_a_dead_workers_slot_expires():
    st = BudgetState()
    assert grant(st, 1000, "dead", lease=30)[1]  # the probe of a worker that was killed
    assert grant(st, 1010, "b", lease=30)[1] is False
    assert grant(st, 1031, "b", lease=30) == (1031, True)


def test_budget_sleeps_per_pace_and_penalize(tmp_path):
    clock = FakeClock()
    b = RateBudget("tok", tmp_path, clock=clock, sleep=clock.sleep)
    b.observe(_headers(50, 50, 1060))
    slots = [b.acquire() for _ in range(3)]
    assert [s.waited for s in slots] == pytest.approx([0, 1.2, 1.2])  # (60 s - 1.2 s) / 49 left is still 1.2 s
    for s in slots:
        b.observe(_headers(50, 47, 1060), s)
    assert b.snapshot()["inflight"] == {}
    b.penalize(30)
    assert b.acquire().waited >= 30 - 1e-6
    assert (tmp_path / "tok.json").exists()
    assert oct((tmp_path / "tok.json").stat().st_mode & 0o777) == "0o600"


def test_key_must_be_plain_file_name(tmp_path):
    with pytest.raises(ValueError, match="key"):
        RateBudget("../x", tmp_path)
    with pytest.raises(ValueError, match="key"):
        with FileStore(tmp_path).transaction("a/b"):
            pass


def test_processes_on_a_sql_store_grant_exactly_the_remaining_budget(tmp_path):
    """Three processes ask for 5 slots each with 9 left in the window: exactly 9 are granted overall."""
    three_processes_share_nine_slots(f"sqlite:///{tmp_path / 'state.sqlite'}", "shared")


def test_sql_store_read_modify_write_is_atomic_across_processes(tmp_path):
    three_processes_count_on_one_row(f"sqlite:///{tmp_path / 'state.sqlite'}", "counter")


def test_token_cache_one_refresh_shared_and_encrypted():
    store, calls = MemoryStore(), []

    def refresh() -> tuple[str, float]:
        calls.append(1)
        return f"access-{len(calls)}", time.time() + 3600

    a, b = TokenCache(store, "g", "secret|refresh"), TokenCache(store, "g", "secret|refresh")
    assert a.get(refresh)[0] == b.get(refresh)[0] == "access-1" and len(calls) == 1
    with store.transaction("g") as doc:
        assert "access-1" not in str(doc) and doc["token"]["ct"]
    # Another grant's secrets cannot read it: they refresh their own.
    assert TokenCache(store, "g", "other|secret").get(refresh)[0] == "access-2"
    b.invalidate("access-1")  # already replaced by access-2: kept
    assert a.get(refresh)[0] == "access-2" or len(calls) == 3
    a2 = TokenCache(store, "h", "s|r")
    a2.get(refresh)
    a2.invalidate("access-3" if len(calls) == 3 else "access-4")
    n = len(calls)
    a2.get(refresh)
    assert len(calls) == n + 1  # refused token dropped: refreshed


def test_token_cache_failed_refresh_frees_the_lease():
    store = MemoryStore()
    cache = TokenCache(store, "g", "s|r", sleep=lambda s: pytest.fail("must not wait for a dead lease"))

    def broken() -> tuple[str, float]:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        cache.get(broken)
    assert cache.get(lambda: ("ok", time.time() + 3600))[0] == "ok"
