"""Rollback, reconciliation and delta runners against the Salesforce sandbox over HTTPS."""

from __future__ import annotations

import io
import json
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


def test_rollback_reports_contacts_cascade_deleted_with_their_account_as_already_gone(hook, tmp_path: Path):
    """An Account deleted (by anyone) takes its Contacts to the Recycle Bin, as a real org does: the rollback
    of the run that created them finds all three gone, reports them as already done and fails nothing."""
    acc = hook.composite_create([{"attributes": {"type": "Account"}, "Name": "Gone Co", "Clio_Id__c": "contact-700"}])
    cons = hook.composite_create([{"attributes": {"type": "Contact"}, "LastName": f"Gone {i}",
                                   "AccountId": acc[0]["id"], "Clio_Id__c": f"contact-70{i}"} for i in (1, 2)])
    with LedgerWriter(tmp_path, "m1", "run2", "full_load", "Account", "batch-00001") as w:
        w.record(source_system_id="contact-700", sf_id=acc[0]["id"], operation="upsert", created=True)
    with LedgerWriter(tmp_path, "m1", "run2", "full_load", "Contact", "batch-00001") as w:
        for i, r in zip((1, 2), cons, strict=True):
            w.record(source_system_id=f"contact-70{i}", sf_id=r["id"], operation="upsert", created=True)
    assert hook.composite_delete([acc[0]["id"]])[0]["success"]
    assert not hook.query_all(f"SELECT Id FROM Contact WHERE AccountId = '{acc[0]['id']}'")  # the cascade

    out = run_rollback(hook, tmp_path, run_id="run2", migration_id="m1", dry_run=False)
    assert out["failed"] == 0 and out["counts"] == {} and out["already_done"] == 3, out
    report = json.loads((tmp_path / "reports" / "rollback-run2" / "rollback.json").read_text())
    assert sorted((d["sobject"], d["why"]) for d in report["already_done"]) == [
        ("Account", "no longer in Salesforce: already done")] + [
        ("Contact", "no longer in Salesforce: already done")] * 2


def test_rollback_restores_a_contact_before_deleting_the_account_it_was_moved_to(hook, tmp_path: Path):
    """A run that created an Account and moved an existing Contact under it: rolled back, the Contact gets its
    before-image back first, so deleting the Account does not take it along to the Recycle Bin."""
    kept = hook.composite_create([{"attributes": {"type": "Contact"}, "LastName": "Kept", "Clio_Id__c": "contact-801"}])
    kept_id = kept[0]["id"]
    acc = hook.composite_create([{"attributes": {"type": "Account"}, "Name": "New Co", "Clio_Id__c": "contact-800"}])
    hook.composite_update([{"attributes": {"type": "Contact"}, "id": kept_id, "AccountId": acc[0]["id"]}])
    with LedgerWriter(tmp_path, "m1", "run3", "delta", "Account", "batch-00001") as w:
        w.record(source_system_id="contact-800", sf_id=acc[0]["id"], operation="upsert", created=True)
    with LedgerWriter(tmp_path, "m1", "run3", "delta", "Contact", "batch-00001") as w:
        w.record(source_system_id="contact-801", sf_id=kept_id, operation="upsert", created=False,
                 before={"Id": kept_id, "AccountId": None})

    out = run_rollback(hook, tmp_path, run_id="run3", migration_id="m1", dry_run=False)
    assert out["failed"] == 0, out
    assert out["counts"] == {"Contact": {"restored": 1}, "Account": {"deleted": 1}}, out
    assert hook.query_all(f"SELECT Id, AccountId FROM Contact WHERE Id = '{kept_id}'") == [
        {"attributes": {"type": "Contact", "url": f"/services/data/v59.0/sobjects/Contact/{kept_id}"},
         "Id": kept_id, "AccountId": None}]
    assert not hook.query_all(f"SELECT Id FROM Account WHERE Id = '{acc[0]['id']}'")
