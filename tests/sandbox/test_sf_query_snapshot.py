"""A Bulk query job does not hold the org for the length of its scan (at xl a job-status GET waited 25 s
behind a 2M-row EventRelation job), and its result is still one consistent state of the table.

The job is paused half-way through its scan (a hook in the decoding of its rows, on the worker thread
only), so the test does not depend on timing: while it is paused, a status GET, a REST read and REST
writes must complete; once resumed, the result must be the table as it was when the job started.
"""

from __future__ import annotations

import csv
import io
import threading
import time
import warnings

import pytest

from sandbox.salesforce import app as app_module
from sandbox.salesforce import store as store_module
from sandbox.salesforce.org import Org, Settings

with warnings.catch_warnings():  # starlette's note that it prefers httpx2: the client works as it is
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.unit

ROWS = 3_000
PAUSE_AT = 1_000  # the worker's n-th decoded record: well inside the scan of ROWS records
WAIT = 60  # a bound for what must not wait on the paused scan at all, never reached when it works


def _paused_scan(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Pause the Bulk worker's decoding at its PAUSE_AT-th record until ``resume`` is set."""
    paused, resume = threading.Event(), threading.Event()
    real = store_module.decode
    seen = [0]

    def decode(text: str) -> dict:
        if threading.current_thread().name == "bulk-worker":
            seen[0] += 1
            if seen[0] == PAUSE_AT:
                paused.set()
                resume.wait(WAIT * 3)
        return real(text)

    monkeypatch.setattr(store_module, "decode", decode)
    return paused, resume


def _in_thread(fn) -> dict:
    """Run ``fn`` in a thread; its result (or error) once it finished, or {} if it is still waiting."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported by the assertion
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(WAIT)
    return out


def test_other_requests_complete_while_a_query_job_scans_and_its_result_is_the_table_at_its_start(
        tmp_path, monkeypatch) -> None:
    org = Org(tmp_path, Settings(seed=11))
    res = org.write("Account", "insert", [{"Name": f"Acme {i}"} for i in range(ROWS)], user_id=None)
    assert all(r["success"] for r in res)
    ids = [r["id"] for r in res]
    sb = app_module.Sandbox(org, "127.0.0.1", 1)
    headers = {"Authorization": f"Bearer {sb.issue(org.integration_user_id)['access_token']}"}
    client = TestClient(app_module.build_app(sb))
    base = "/services/data/v59.0"
    paused, resume = _paused_scan(monkeypatch)
    try:
        r = client.post(f"{base}/jobs/query", json={"operation": "query", "query": "SELECT Id, Name FROM Account"},
                        headers=headers)
        assert r.status_code == 200, r.text
        jid = r.json()["id"]
        assert paused.wait(WAIT), "the query job never reached the middle of its scan"

        status = _in_thread(lambda: client.get(f"{base}/jobs/query/{jid}", headers=headers))
        assert "value" in status, f"a job-status GET waited behind the paused scan: {status}"
        assert status["value"].status_code == 200 and status["value"].json()["state"] == "InProgress"
        got = _in_thread(lambda: client.get(f"{base}/sobjects/Account/{ids[-1]}", headers=headers))
        assert "value" in got and got["value"].json()["Name"] == f"Acme {ROWS - 1}", got
        # writes land meanwhile (committed while the job reads its snapshot)
        patched = _in_thread(lambda: client.patch(f"{base}/sobjects/Account/{ids[-1]}", json={"Name": "Renamed"},
                                                  headers=headers))
        assert "value" in patched and patched["value"].status_code == 204, patched
        created = _in_thread(lambda: client.post(f"{base}/sobjects/Account", json={"Name": "Late"}, headers=headers))
        assert "value" in created and created["value"].status_code == 201, created
        deleted = _in_thread(lambda: client.delete(f"{base}/sobjects/Account/{ids[0]}", headers=headers))
        assert "value" in deleted and deleted["value"].status_code == 204, deleted
    finally:
        resume.set()

    deadline = time.monotonic() + WAIT
    while (state := client.get(f"{base}/jobs/query/{jid}", headers=headers).json()["state"]) != "JobComplete":
        assert state == "InProgress" and time.monotonic() < deadline, state
        time.sleep(0.05)
    page = client.get(f"{base}/jobs/query/{jid}/results", headers=headers)
    assert page.status_code == 200 and page.headers["Sforce-Locator"] == "null"
    rows = list(csv.reader(io.StringIO(page.text)))
    # the table as the job found it: every record in insertion order, none of the later writes
    assert rows == [["Id", "Name"]] + [[rid, f"Acme {i}"] for i, rid in enumerate(ids)]
    now = org.store.scan("Account", include_deleted=False)
    assert [r["Name"] for r in now][-2:] == ["Renamed", "Late"]


def test_a_scan_read_in_part_gives_its_connection_back(tmp_path) -> None:
    org = Org(tmp_path, Settings(seed=12))
    org.write("Account", "insert", [{"Name": f"A{i}"} for i in range(50)], user_id=None)
    first = org.store.scan("Account", include_deleted=False)
    assert next(first)["Name"] == "A0"
    first.close()  # a reader that stopped early
    unread = org.store.scan("Account", include_deleted=False)
    del unread  # one never read at all
    org.write("Account", "insert", [{"Name": "B"}], user_id=None)
    assert [r["Name"] for r in org.store.scan("Account", include_deleted=False)][-2:] == ["A49", "B"]
    assert len(org.store._readers) == 1  # both snapshots ended and their connection is idle again
