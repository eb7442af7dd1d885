"""The Salesforce sandbox under concurrent clients: a Bulk job, REST writers and readers at once.

DML batches are committed by a writer thread while later work proceeds, so this checks what a
client relies on: whatever the org acknowledged is readable at once, nothing is lost or doubled,
and a repeated upsert finds every record.
"""

from __future__ import annotations

import threading

import pytest

from sandbox.salesforce.testing import run_sf_sandbox

pytestmark = pytest.mark.integration

BULK_ROWS = 6000
REST_CALLS = 12


def test_concurrent_bulk_rest_and_reads_lose_and_double_nothing(tmp_path) -> None:
    with run_sf_sandbox(tmp_path, seed=7) as sb:
        sf = sb.sf()
        sb.external_ids("Contact")
        errors: list[str] = []
        acknowledged: dict[str, str] = {}  # ext id -> sf id, filled by the REST writers
        lock = threading.Lock()
        done = threading.Event()

        def bulk() -> None:
            rows = [{"Clio_Id__c": f"bulk-{i}", "LastName": f"Bulk {i}"} for i in range(BULK_ROWS)]
            for attempt in ("first", "again"):
                res = sb.sf().bulk2.Contact.upsert(records=rows, external_id_field="Clio_Id__c", wait=1)
                got = (sum(r["numberRecordsProcessed"] for r in res), sum(r["numberRecordsFailed"] for r in res))
                if got != (BULK_ROWS, 0):
                    errors.append(f"bulk {attempt}: processed/failed {got}")

        def rest(name: str) -> None:
            client = sb.sf()
            for call in range(REST_CALLS):
                recs = [{"attributes": {"type": "Contact"}, "Clio_Id__c": f"{name}-{call}-{i}", "LastName": "Rest"}
                        for i in range(100)]
                res = client.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": recs})
                for rec, r in zip(recs, res, strict=True):
                    if not r["success"]:
                        errors.append(f"{rec['Clio_Id__c']}: {r['errors']}")
                        continue
                    with lock:
                        acknowledged[rec["Clio_Id__c"]] = r["id"]
                # read-your-writes: this call's records are visible to a query at once
                ext = [rec["Clio_Id__c"] for rec in recs[:50]]
                found = client.query("SELECT Id, Clio_Id__c FROM Contact WHERE Clio_Id__c IN ('"
                                     + "','".join(ext) + "')")["records"]
                if sorted(r["Clio_Id__c"] for r in found) != sorted(ext):
                    errors.append(f"{name} call {call}: {len(found)} of {len(ext)} visible after the write")

        def reader() -> None:
            client = sb.sf()
            while not done.is_set():
                with lock:
                    sample = list(acknowledged.items())[-20:]
                for ext, sf_id in sample:
                    got = client.Contact.get_by_custom_id("Clio_Id__c", ext)
                    if got["Id"] != sf_id:
                        errors.append(f"{ext}: read {got['Id']}, acknowledged {sf_id}")

        writers = [threading.Thread(target=bulk)] + [threading.Thread(target=rest, args=(f"rest{k}",)) for k in range(2)]
        readers = [threading.Thread(target=reader)]
        for t in writers + readers:
            t.start()
        for t in writers:
            t.join(300)
        done.set()
        for t in readers:
            t.join(60)
        assert errors == []
        assert len(acknowledged) == 2 * REST_CALLS * 100
        total = sf.query("SELECT COUNT() FROM Contact")["totalSize"]
        assert total == BULK_ROWS + len(acknowledged)
        distinct = {r["Clio_Id__c"] for r in sf.query_all("SELECT Clio_Id__c FROM Contact")["records"]}
        assert len(distinct) == total

