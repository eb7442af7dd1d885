"""A Bulk query job's result pages each read only their own rows (a 2M-row result was parsed whole for
every page: reading it was quadratic, and the sandbox's memory grew past 16 GB at xl)."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest

from sandbox.salesforce.bulk import BulkJobs
from sandbox.salesforce.org import Org, Settings

pytestmark = pytest.mark.unit


def test_pages_read_their_own_rows_and_together_are_the_whole_result(tmp_path, monkeypatch) -> None:
    org = Org(tmp_path, Settings(seed=5))
    res = org.write("Account", "insert", [{"Name": f"Acme, \"{i}\"\n#{i}"} for i in range(3_000)], user_id=None)
    assert all(r["success"] for r in res)
    jobs = BulkJobs(org)
    job = jobs.create_query({"operation": "query", "query": "SELECT Id, Name FROM Account"}, org.integration_user_id)
    deadline = time.monotonic() + 60
    while jobs.jobs[job["id"]]["state"] != "JobComplete":
        assert time.monotonic() < deadline and jobs.jobs[job["id"]]["state"] in ("UploadComplete", "InProgress")
        time.sleep(0.05)
    assert jobs.jobs[job["id"]]["numberRecordsProcessed"] == 3_000

    read: list[int] = []
    real_open = Path.open

    class Counted:
        """A file that counts the bytes (or characters) read from it."""

        def __init__(self, fh) -> None:
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.fh.close()

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def read(self, *a):
            got = self.fh.read(*a)
            read.append(len(got))
            return got

        def readline(self, *a):
            got = self.fh.readline(*a)
            read.append(len(got))
            return got

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: Counted(real_open(self, *a, **k)))
    rows, locator, sizes = [], None, []
    total_bytes = sum(p.stat().st_size for p in (tmp_path / "jobs" / job["id"]).iterdir())
    while locator != "null":
        read.clear()
        text, n, locator = jobs.query_page(jobs.jobs[job["id"]], locator, 700)
        sizes.append(sum(read))
        page = list(csv.reader(io.StringIO(text)))
        assert page[0] == ["Id", "Name"] and len(page) - 1 == n
        rows += page[1:]
    assert [len(r) for r in rows] == [2] * 3_000 and len({r[0] for r in rows}) == 3_000
    assert sorted(r[1] for r in rows) == sorted(f"Acme, \"{i}\"\n#{i}" for i in range(3_000))
    assert len(sizes) == 5 and max(sizes) < total_bytes / 3, (sizes, total_bytes)
    with pytest.raises(Exception, match="Invalid locator"):
        jobs.query_page(jobs.jobs[job["id"]], jobs.locator(3_000), 700)
