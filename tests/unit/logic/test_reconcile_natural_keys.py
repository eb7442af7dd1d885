"""The reconciliation's natural-key rows (CaseContactRole, ContentNote...): the ledger's latest writes and
the org's rows grouped by key are kept in a SQLite file, not in memory, with the same answer as in memory."""

from __future__ import annotations

import collections
import re
import tracemalloc
from pathlib import Path

import pytest

from clio2sf import reports
from clio2sf.ledger import LedgerWriter
from clio2sf.verify.reconciliation import _ledger_ids, _natural_key_rows, _natural_key_rows_on_disk

KEY = ("CasesId", "ContactId", "Role")


class Org:
    """CaseContactRole rows (``rows``: (Id, CasesId, ContactId, Role)); ``WHERE Id IN (...)`` answered."""

    def __init__(self, rows: list[tuple[str, str, str, str]]) -> None:
        self.rows, self.queries = rows, []

    def query_all_iter(self, soql: str):
        self.queries.append(soql)
        asked = None
        if " IN (" in soql:
            asked = {a[:15] for a in re.findall(r"'([^']*)'", soql.split(" IN (", 1)[1])}
        for sf, case, contact, role in self.rows:
            if asked is None or sf[:15] in asked:
                yield {"attributes": {}, "Id": sf, "CasesId": case, "ContactId": contact, "Role": role}


def _sf(i: int) -> str:
    return f"03j{i:012d}AAA"


def _ledger(root: Path) -> list[str]:
    """Writes of relationships 1-12 over two runs; the asked ids."""
    with LedgerWriter(root, "m1", "run-a", "full_load", "CaseContactRole", "batch-00001") as w:
        for i in range(1, 9):
            w.record(source_system_id=f"relationship-{i}", sf_id=_sf(i), operation="insert", created=True,
                     at=f"2026-11-28T09:00:0{i}Z")
        w.record(source_system_id="relationship-99", sf_id=_sf(99), operation="insert", created=True,
                 at="2026-11-28T09:00:00Z")  # not asked
    with LedgerWriter(root, "m1", "run-a", "full_load", "CaseContactRole", "batch-00002") as w:
        # the same time as relationship-3's first write: the later file wins the tie
        w.record(source_system_id="relationship-3", sf_id=_sf(33), operation="insert", created=True,
                 at="2026-11-28T09:00:03Z")
        w.record(source_system_id="relationship-9", sf_id=_sf(9), operation="insert", created=True,
                 at="2026-11-28T08:00:00Z")  # earlier than the first file's writes
        w.record(source_system_id="relationship-10", sf_id=_sf(10), operation="insert", created=True,
                 status="failed", error="X", at="2026-11-28T09:00:00Z")
        w.record(source_system_id="relationship-11", sf_id=_sf(5), operation="insert", created=True,
                 at="2026-11-28T09:30:00Z")  # a Salesforce id another ssid was written with
    with LedgerWriter(root, "m1", "run-b", "rollback", "CaseContactRole", "rollback-1") as w:
        w.record(source_system_id="relationship-2", sf_id=_sf(2), operation="delete", created=False,
                 at="2026-11-29T09:00:00Z")  # rolled back: no longer ours
        w.record(source_system_id="relationship-4", sf_id=_sf(4), operation="delete", created=False,
                 at="2026-11-27T09:00:00Z")  # a rollback before its write: still ours
    return [f"relationship-{i}" for i in (*range(1, 13), 3, 1)]  # repeats, as primary_ids streams them


def _org() -> Org:
    rows = [(_sf(i), f"500{i % 4:012d}", f"003{i:012d}", "Client") for i in range(1, 12)]
    rows += [(_sf(50), "500000000000001", "003000000000001", "Client")]  # a second row of relationship-1's key
    rows.insert(0, (_sf(51), "500000000000003", "003000000000007", "Client"))  # foreign row first in 7's group
    rows += [(_sf(52), "500000000000009", "003000000000052", "Client")]  # a group without our rows
    rows += [(_sf(33), "500000000000002", "003000000000033", "Other")]
    return Org(rows)


@pytest.mark.unit
@pytest.mark.parametrize("queryable", [True, False])
def test_natural_key_rows_on_disk_say_what_the_in_memory_look_up_says(tmp_path: Path, queryable: bool):
    asked = _ledger(tmp_path)
    expect = _natural_key_rows(_org(), "CaseContactRole", KEY, _ledger_ids(tmp_path, "CaseContactRole", set(asked)),
                               queryable)
    org = _org()
    got = list(_natural_key_rows_on_disk(org, tmp_path, "CaseContactRole", KEY, iter(asked), queryable,
                                         reports.SpillFolder()))
    assert got == expect
    assert "relationship-1" in got and got.count("relationship-1") == (2 if queryable else 1)
    assert "relationship-2" not in got and "relationship-4" in got and "relationship-99" not in got
    if not queryable:
        assert all(" IN (" in q for q in org.queries)


def _big(root: Path, n: int, per_file: int) -> None:
    for b, start in enumerate(range(1, n + 1, per_file)):
        with LedgerWriter(root, "m1", "run-a", "full_load", "CaseContactRole", f"batch-{b:05d}") as w:
            for i in range(start, min(n + 1, start + per_file)):
                w.record(source_system_id=f"relationship-{i}", sf_id=_sf(i), operation="insert", created=True,
                         at="2026-11-28T09:00:00Z")


@pytest.mark.unit
def test_natural_key_rows_hold_no_row_of_the_firm(tmp_path: Path):
    """What Python holds while the rows stream is bounded by a ledger file (1,000 rows here), not by the
    20,000 rows: the in-memory look-up held ~1.2 KB a row (the asked ids, the ledger's latest writes as
    Python lists, the org's rows grouped by key): ~15 MB traced here, ~1 MB now."""
    n = 20_000
    _big(tmp_path, n, 1_000)
    org = Org([(_sf(i), f"500{i // 3:012d}", f"003{i:012d}", "Client") for i in range(1, n + 1)])
    folder = reports.SpillFolder()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        tail = collections.deque(_natural_key_rows_on_disk(
            org, tmp_path, "CaseContactRole", KEY, (f"relationship-{i}" for i in range(1, n + 1)), True, folder),
            maxlen=1)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert list(tail) == [f"relationship-{n}"]
    assert peak < 3 * 2**20, f"{peak / 2**20:.1f} MB held for {n} rows"


@pytest.mark.unit
def test_ledger_rows_are_read_a_block_at_a_time_not_a_file(tmp_path: Path, monkeypatch):
    """``ledger_index.ok_rows`` streams a ledger file a block at a time: one load batch's file (20,000 rows,
    ~6 MB here) is never held whole, as bytes, text and a list of lines: 13.6 MB traced on c056557 (fails
    here), 1.2 MB now (the bench firm's reconcile rose 6.5 MB at 100k and 15 MB at 300k in its relationships)."""
    from clio2sf import ledger_index

    n = 20_000
    _big(tmp_path, n, n)
    cols = ("source_system_id", "sf_id", "at", "run_id", "phase", "batch")
    monkeypatch.setattr(ledger_index, "LINE_BLOCK", 4096, raising=False)  # lines cut across blocks
    few = list(ledger_index.ok_rows(tmp_path, "CaseContactRole", cols))
    monkeypatch.undo()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        rows = collections.deque(ledger_index.ok_rows(tmp_path, "CaseContactRole", cols), maxlen=2)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert len(few) == n and few[-2:] == list(rows)
    assert [r[0] for r in few] == [f"relationship-{i}" for i in range(1, n + 1)]
    assert peak < 2 * 2**20, f"{peak / 2**20:.1f} MB held for a file of {n} rows"


@pytest.mark.unit
def test_natural_key_rows_read_the_ledger_without_pyarrow(tmp_path: Path):
    """The ledger's writes are read from its files (``ledger_index.ok_rows``), not its Parquet twins:
    importing pyarrow and reading a first Parquet file cost the reconcile task ~125 MB."""
    import subprocess
    import sys

    asked = _ledger(tmp_path)
    expect = _natural_key_rows(_org(), "CaseContactRole", KEY, _ledger_ids(tmp_path, "CaseContactRole", set(asked)),
                               True)
    code = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
import test_reconcile_natural_keys as t
from clio2sf import reports
got = list(t._natural_key_rows_on_disk(t._org(), Path({str(tmp_path)!r}), "CaseContactRole", t.KEY,
                                         iter({asked!r}), True, reports.SpillFolder()))
print(json.dumps([got, "pyarrow" in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got, arrow = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert got == expect
    assert not arrow
