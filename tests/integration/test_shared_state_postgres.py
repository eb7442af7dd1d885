"""SqlStore on a real PostgreSQL server over TCP: the row lock that every host's Clio budget relies on.

The server is a throwaway cluster on loopback (``postgres`` fixture, tests/pgserver.py), reached with
a password as another host would.  The lock test is deterministic: it does not hope two processes
collide, it makes them collide — process A holds the row open, and the test waits until PostgreSQL
itself reports process B waiting on a lock (``pg_locks``) before it lets A commit.  Without the lock
B would read and write the row while A holds it, which the test sees (B reports done first).
"""

from __future__ import annotations

import multiprocessing
import queue
import time

import pytest
import sqlalchemy as sa

from clio2sf.sharedstate import TABLE, SqlStore
from tests.store_workers import three_processes_count_on_one_row, three_processes_share_nine_slots

pytestmark = pytest.mark.integration


def _holder(url: str, events, go) -> None:
    """A: read the counter inside the transaction, say so, wait for the go, then write n + 1."""
    try:
        with SqlStore(url).transaction("counter") as doc:
            n = doc.get("n", 0)
            events.put(("A read", n))
            if not go.wait(300):
                raise TimeoutError("no go")
            doc["n"] = n + 1
        events.put(("A done", n + 1))
    except BaseException as exc:
        events.put(("A failed", f"{type(exc).__name__}: {exc}"))
        raise


def _contender(url: str, events) -> None:
    """B: the same read-modify-write on the same key."""
    try:
        store = SqlStore(url)
        events.put(("B started", None))
        with store.transaction("counter") as doc:
            n = doc.get("n", 0)
            doc["n"] = n + 1
        events.put(("B done", n + 1))
    except BaseException as exc:
        events.put(("B failed", f"{type(exc).__name__}: {exc}"))
        raise


def _next(events, deadline: float) -> tuple[str, object]:
    item = events.get(timeout=max(1.0, deadline - time.monotonic()))
    assert "failed" not in item[0], item
    return item


def _lock_waiters(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one()


def test_a_second_process_waits_for_the_row_lock_and_loses_no_update(postgres):
    url = postgres.url
    with SqlStore(url).transaction("counter") as doc:
        doc["n"] = 0
    ctx = multiprocessing.get_context("spawn")
    events, go = ctx.Queue(), ctx.Event()
    a = ctx.Process(target=_holder, args=(url, events, go))
    b = ctx.Process(target=_contender, args=(url, events))
    observer = sa.create_engine(url, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + 300  # spawned children import the project first: slow on a loaded machine
    try:
        a.start()
        assert _next(events, deadline) == ("A read", 0)
        b.start()
        assert _next(events, deadline) == ("B started", None)
        # A holds the row; B must now be blocked on it.  Either PostgreSQL shows B waiting for a lock,
        # or B finishes (or fails) while A still holds the row: the lost update this test is about.
        while True:
            try:
                item = events.get_nowait()
            except queue.Empty:
                item = None
            assert item is None, f"{item} while A held the row: B did not wait for the row lock"
            if _lock_waiters(observer):
                break
            assert time.monotonic() < deadline, "B neither waited on a lock nor finished"
            time.sleep(0.05)
        go.set()
        done = dict(_next(events, deadline) for _ in range(2))
        assert done == {"A done": 1, "B done": 2}, done
        for p in (a, b):
            p.join(60)
        assert [a.exitcode, b.exitcode] == [0, 0]
    finally:
        go.set()
        for p in (a, b):
            if p.is_alive():
                p.kill()
        observer.dispose()
    with SqlStore(url).transaction("counter") as doc:
        assert doc["n"] == 2


def test_processes_counting_on_one_row_lose_nothing_and_a_failed_block_writes_nothing(postgres):
    store = three_processes_count_on_one_row(postgres.url, "tally")
    assert store.cross_host
    # one row per key, in the deployment's table
    with store.engine.connect() as conn:
        keys = conn.execute(sa.text(f"SELECT key FROM {TABLE} ORDER BY key")).scalars().all()
    assert "tally" in keys and len(keys) == len(set(keys))


def test_processes_on_postgres_grant_exactly_the_remaining_budget(postgres):
    """Three processes ask for 5 slots each with 9 left in the window: exactly 9 are granted overall."""
    three_processes_share_nine_slots(postgres.url, "grant-pg")


def test_missing_server_binaries_are_named_not_skipped(monkeypatch, tmp_path):
    """Without initdb/pg_ctl the fixture fails naming them and how to install them (never a skip)."""
    from tests.pgserver import PostgresUnavailable, bindir

    monkeypatch.setenv("CLIO2SF_TEST_PG_BINDIR", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match="initdb and pg_ctl"):
        bindir()
    monkeypatch.delenv("CLIO2SF_TEST_PG_BINDIR")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match=r"initdb, pg_ctl\) not found.*`make postgres`"):
        bindir(debian=tmp_path)
