"""Processes sharing one ``SqlStore`` (a SQLite file in the unit tests, a real PostgreSQL server in the
integration tests): the scenarios both run (a grant's budget spent, a row counted on), and their spawned
workers."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from clio2sf.ratebudget import RateBudget
from clio2sf.sharedstate import SqlStore


class Exhausted(Exception):
    """A wait past the budget's reset: every slot of the window is spent."""


def spend(url: str, key: str, n: int, reset: float, out) -> None:
    """One process: ask ``key``'s budget for ``n`` slots; put how many were granted (or the error) on ``out``."""
    def sleep(s: float) -> None:
        # Pacing waits end before the reset; a wait past it means the budget is spent.  Never sleeps:
        # the test is about how many slots are granted, not when.
        if time.time() + s >= reset:
            raise Exhausted
    try:
        budget = RateBudget(key, store=SqlStore(url), sleep=sleep)
        granted = 0
        for _ in range(n):
            try:
                budget.acquire()
            except Exhausted:
                break
            granted += 1
        out.put(granted)
    except BaseException as exc:  # the parent reports it instead of waiting for a count that never comes
        out.put(f"{type(exc).__name__}: {exc}")
        raise


def three_processes_share_nine_slots(url: str, key: str) -> None:
    """Three processes ask for 5 slots each with 9 left in the window: exactly 9 are granted overall, and
    the store says none is left and 9 are in flight."""
    # Whole seconds, as Clio announces it: the workers' "window is over" test must see the same reset
    # the budget stores (a fractional one made a worker spin forever on a no-op sleep).
    reset = int(time.time()) + 600
    RateBudget(key, store=SqlStore(url)).observe(
        {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9", "X-RateLimit-Reset": str(reset)})
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=spend, args=(url, key, 5, reset, q)) for _ in range(3)]
    for p in procs:
        p.start()
    # Spawned children import the module first: on a loaded machine that alone can take a minute.
    granted = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(120)
    assert all(isinstance(g, int) for g in granted), granted
    assert sum(granted) == 9, granted
    state = RateBudget(key, store=SqlStore(url)).snapshot()
    assert state["remaining"] == 0 and len(state["inflight"]) == 9


def count(url: str, key: str, n: int) -> None:
    """One process: add 1 to ``key``'s ``n`` ``n`` times, a transaction each."""
    store = SqlStore(url)
    for _ in range(n):
        with store.transaction(key) as doc:
            doc["n"] = doc.get("n", 0) + 1


def three_processes_count_on_one_row(url: str, key: str) -> SqlStore:
    """Three processes add 1 forty times each to one row: it says 120 (no update lost), and a block that
    fails writes nothing. The store, for more checks."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=count, args=(url, key, 40)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    store = SqlStore(url)
    with store.transaction(key) as doc:
        assert doc["n"] == 120
    with pytest.raises(RuntimeError), store.transaction(key) as doc:
        doc["n"] = -1
        raise RuntimeError("boom")
    with store.transaction(key) as doc:
        assert doc["n"] == 120
    return store
