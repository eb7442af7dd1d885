"""Bulk API 2.0 ingest throughput of the Salesforce sandbox, through its real HTTPS server.

``python -m benchmarks.bench_sf_bulk [rows]`` or ``main(rows=50000)``: Contact rows per second for

* ``insert``: a plain insert (Clio_Id__c, names, email, birthdate, description);
* ``upsert+rel``: an upsert on ``Clio_Id__c`` with an ``Account.Clio_Id__c`` relationship column,
  ``#N/A`` nulls and 20 rows whose account does not exist (they must come back failed);
* ``re-upsert``: the same file again (every row an update);
* ``composite``: Contacts created through sObject collections, 200 a call.

Each figure is the wall time from job creation to ``JobComplete`` (plain ``requests``: create, one
PUT of the CSV, close, poll every 50 ms), then the result files are fetched and checked, so a fast
but wrong sandbox does not pass.
"""

from __future__ import annotations

import csv
import io
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT  # noqa: F401 - puts the repository on sys.path

API = "v59.0"
EXT = "Clio_Id__c"
ACCOUNTS = 100
BAD_ROWS = 20


def _session(sb):  # noqa: ANN001 - SandboxHandle
    s = sb.session()
    r = s.post(f"{sb.instance_url}/services/oauth2/token",
               data={"grant_type": "client_credentials", "client_id": sb.consumer_key,
                     "client_secret": sb.consumer_secret})
    r.raise_for_status()
    s.headers["Authorization"] = "Bearer " + r.json()["access_token"]
    return s


def _ensure_ext(s, base: str, sobject: str) -> None:  # noqa: ANN001
    r = s.post(f"{base}/tooling/sobjects/CustomField", json={
        "FullName": f"{sobject}.{EXT}",
        "Metadata": {"label": "Clio Id", "type": "Text", "length": 80, "externalId": True, "unique": True}})
    r.raise_for_status()


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def _ingest(s, base: str, job: dict, data: bytes) -> tuple[float, dict, str, str]:  # noqa: ANN001
    """Run one job; (seconds to JobComplete, final job, success csv, failed csv)."""
    t0 = time.perf_counter()
    r = s.post(f"{base}/jobs/ingest", json=job)
    r.raise_for_status()
    jid = r.json()["id"]
    s.put(f"{base}/jobs/ingest/{jid}/batches", data=data, headers={"Content-Type": "text/csv"}).raise_for_status()
    s.patch(f"{base}/jobs/ingest/{jid}", json={"state": "UploadComplete"}).raise_for_status()
    while True:
        info = s.get(f"{base}/jobs/ingest/{jid}").json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if info["state"] != "JobComplete":
        raise RuntimeError(f"job {jid} ended {info['state']}: {info.get('errorMessage')}")
    ok = s.get(f"{base}/jobs/ingest/{jid}/successfulResults").text
    bad = s.get(f"{base}/jobs/ingest/{jid}/failedResults").text
    return wall, info, ok, bad


def _check(name: str, info: dict, ok: str, bad: str, rows: int, failed: int, created: str | None) -> None:
    oks = list(csv.reader(io.StringIO(ok)))[1:]
    bads = list(csv.reader(io.StringIO(bad)))[1:]
    if info["numberRecordsProcessed"] != rows or info["numberRecordsFailed"] != failed:
        raise RuntimeError(f"{name}: processed {info['numberRecordsProcessed']}, failed {info['numberRecordsFailed']}")
    if len(oks) != rows - failed or len(bads) != failed:
        raise RuntimeError(f"{name}: {len(oks)} success rows and {len(bads)} failed rows")
    if created is not None and any(r[1] != created for r in oks):
        raise RuntimeError(f"{name}: sf__Created is not {created} on every row")
    if any(not r[1].startswith("INVALID_FIELD:Foreign key external ID:") for r in bads):
        raise RuntimeError(f"{name}: unexpected failure {bads[0][1] if bads else ''}")


def main(rows: int = 50000, work: Path | None = None) -> dict[str, float]:
    """Run the three jobs against a fresh sandbox; print and return rows/s per figure."""
    from sandbox.salesforce.testing import run_sf_sandbox

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, run_sf_sandbox(Path(work or tmp) / "sf-bulk-bench") as sb:
        s = _session(sb)
        base = f"{sb.instance_url}/services/data/{API}"
        for obj in ("Account", "Contact"):
            _ensure_ext(s, base, obj)
        sb.grant([f"{obj}.{EXT}" for obj in ("Account", "Contact")])  # new fields are hidden until granted
        acc = _csv([EXT, "Name"], [[f"acct-{i}", f"Firm {i} LLP"] for i in range(ACCOUNTS)])
        _ingest(s, base, {"object": "Account", "operation": "upsert", "externalIdFieldName": EXT}, acc)

        ins = _csv([EXT, "LastName", "FirstName", "Email", "Birthdate", "Description"],
                   [[f"ins-{i}", f"Doe {i}", "Zoë", f"z{i}@example.com", "1980-02-29", "x" * 40]
                    for i in range(rows)])
        wall, info, ok, bad = _ingest(s, base, {"object": "Contact", "operation": "insert"}, ins)
        _check("insert", info, ok, bad, rows, 0, "true")
        out["insert"] = rows / wall

        bad_at = {rows * k // BAD_ROWS for k in range(BAD_ROWS)}
        ups = _csv([EXT, "LastName", "FirstName", "Account.Clio_Id__c", "Birthdate", "Description"],
                   [[f"ups-{i}", f"Doe {i}", "Zoë", "acct-missing" if i in bad_at else f"acct-{i % ACCOUNTS}",
                     "1980-02-29", "#N/A" if i % 2 else "note"] for i in range(rows)])
        job = {"object": "Contact", "operation": "upsert", "externalIdFieldName": EXT}
        wall, info, ok, bad = _ingest(s, base, job, ups)
        _check("upsert+rel", info, ok, bad, rows, len(bad_at), "true")
        out["upsert+rel"] = rows / wall

        wall, info, ok, bad = _ingest(s, base, job, ups)
        _check("re-upsert", info, ok, bad, rows, len(bad_at), "false")
        out["re-upsert"] = rows / wall
        out["composite"] = _composite(s, base, min(rows, 5000))
    for name, rate in out.items():
        print(f"{name:12s} {rows} rows  {rate:10,.0f} rows/s")
    return out


def _composite(s, base: str, rows: int) -> float:  # noqa: ANN001
    """Contacts per second created through sObject collections (200 a call), all checked successful."""
    t0 = time.perf_counter()
    for start in range(0, rows, 200):
        recs = [{"attributes": {"type": "Contact"}, "LastName": f"Comp {i}", "Email": f"c{i}@example.com"}
                for i in range(start, min(start + 200, rows))]
        r = s.post(f"{base}/composite/sobjects", json={"allOrNone": False, "records": recs})
        r.raise_for_status()
        if not all(x["success"] for x in r.json()):
            raise RuntimeError("composite: a record failed")
    return rows / (time.perf_counter() - t0)


def figures(rows: int = 50000) -> list:
    """The runner's figures: Bulk 2.0 ingest (target ≥ 20,000 rows/s) and composite records/s."""
    from benchmarks.common import Figure, at_least

    got = main(rows)
    names = ("insert", "upsert+rel", "re-upsert")
    first_unmet = next((n for n in names if got[n] < 20000), None)
    note = ("bounded by single-threaded Python validation per row (parse, references, rules, and for an "
            "upsert with an account the AccountContactRelation the platform adds: two records a row); "
            "SQLite writes already run on a second thread")
    out = [Figure("sf_sandbox_throughput", f"Bulk 2.0 ingest, {name}", f"{rows:,} Contacts over HTTPS",
                  round(got[name]), "rows/s", "≥ 20,000", at_least(got[name], 20000),
                  note=note if name == first_unmet else "")
           for name in names]
    out.append(Figure("sf_sandbox_throughput", "composite sObject collections", "Contacts, 200 a call",
                      round(got["composite"]), "records/s"))
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50000)
