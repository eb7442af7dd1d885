"""Rollback, reconciliation and delta runners against the Salesforce sandbox over HTTPS."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from clio2sf.ledger import LedgerWriter, read_ledger
from clio2sf.rollback_run import run_rollback

testing = pytest.importorskip("sandbox.salesforce.testing")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    with testing.run_sf_sandbox(tmp_path_factory.mktemp("sf-org"), seed=7) as sb:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sb.connection_json())
            mp.setenv("REQUESTS_CA_BUNDLE", sb.ca_bundle)
            from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

            h = ClioSalesforceHook(sleep=lambda s: None, poll_interval=0.05)
            for obj in ("Account", "Contact", "ContentVersion"):
                h.ensure_external_id_field(obj)
            yield h


def _count(hook, sobject: str) -> int:
    return len(hook.query_all(f"SELECT Id FROM {sobject}"))


def test_rollback_restores_the_org_and_a_second_rollback_does_nothing(hook, tmp_path: Path):
    pre = hook.composite_create([{"attributes": {"type": "Contact"}, "LastName": "Original", "Email": None}])
    pre_id = pre[0]["id"]
    before_counts = {s: _count(hook, s) for s in ("Account", "Contact", "ContentDocument")}

    acc = hook.composite_create([{"attributes": {"type": "Account"}, "Name": "Acme", "Clio_Id__c": "contact-900"}])
    cons = hook.composite_create([{"attributes": {"type": "Contact"}, "LastName": f"Doe {i}",
                                   "AccountId": acc[0]["id"], "Clio_Id__c": f"contact-{i}"} for i in (1, 2)])
    data = b"hello"
    cv = hook.content_version_create({"Title": "memo", "PathOnClient": "memo.txt", "Clio_Id__c": "document-5@v1"},
                                     lambda: io.BytesIO(data), len(data), "memo.txt", multipart=False)
    doc_id = hook.query_all(f"SELECT ContentDocumentId FROM ContentVersion WHERE Id = '{cv['id']}'")[0][
        "ContentDocumentId"]
    hook.composite_update([{"attributes": {"type": "Contact"}, "id": pre_id, "LastName": "Changed",
                            "Email": "new@x.example"}])
    with LedgerWriter(tmp_path, "m1", "run1", "full_load", "Account", "batch-00001") as w:
        w.record(source_system_id="contact-900", sf_id=acc[0]["id"], operation="upsert", created=True)
    with LedgerWriter(tmp_path, "m1", "run1", "full_load", "Contact", "batch-00001") as w:
        for i, r in zip((1, 2), cons, strict=True):
            w.record(source_system_id=f"contact-{i}", sf_id=r["id"], operation="upsert", created=True)
        w.record(source_system_id="contact-3", sf_id=pre_id, operation="upsert", created=False,
                 before={"Id": pre_id, "LastName": "Original", "Email": None})
    with LedgerWriter(tmp_path, "m1", "run1", "full_load", "ContentVersion", "batch-00001") as w:
        w.record(source_system_id="document-5@v1", sf_id=cv["id"], operation="insert", created=True,
                 file_ids=[doc_id])

    out = run_rollback(hook, tmp_path, run_id="run1", migration_id="m1", dry_run=False)
    assert out["failed"] == 0, out
    assert {s: _count(hook, s) for s in before_counts} == before_counts
    assert not hook.query_all(f"SELECT Id FROM ContentDocument WHERE Id = '{doc_id}'")
    restored = hook.query_all(f"SELECT LastName, Email FROM Contact WHERE Id = '{pre_id}'")[0]
    assert (restored["LastName"], restored["Email"]) == ("Original", None)
    assert len(read_ledger(tmp_path, "run1", "rollback")) == 5

    again = run_rollback(hook, tmp_path, run_id="run1", migration_id="m1", dry_run=False)
    assert again["planned"] == {} and again["counts"] == {}
    assert {s: _count(hook, s) for s in before_counts} == before_counts
