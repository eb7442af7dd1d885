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
    report = json.loads((Path(out["report"]).parent / "rollback.json").read_text())
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


def _deletes_file(droot: Path, rows: list[dict]) -> None:
    droot.mkdir(parents=True, exist_ok=True)
    (droot / "deletes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_parent_whose_delete_fails_gets_its_detached_contacts_back(hook, tmp_path: Path):
    """The delta detaches an Account's live Contacts before deleting it; when the delete then fails (here a Case,
    outside the load order given, restricts it), the Contacts are put back under it (ledger: detach, reattach)."""
    from clio2sf.delta_run import apply_deletes

    acc = hook.composite_create([{"attributes": {"type": "Account"}, "Name": "Kept Co", "Clio_Id__c": "contact-910"}])
    acc_id = acc[0]["id"]
    con = hook.composite_create([{"attributes": {"type": "Contact"}, "LastName": "Stays", "AccountId": acc_id,
                                  "Clio_Id__c": "contact-911"}])
    hook.composite_create([{"attributes": {"type": "Case"}, "AccountId": acc_id, "Subject": "Open matter"}])
    droot = tmp_path / "delta" / "w9"
    _deletes_file(droot, [{"sobject": "Account", "source_system_id": "contact-910", "sf_id": acc_id}])
    out = apply_deletes(hook, tmp_path, {}, "w9", "m1", delta_root=droot, load_order=("Account", "Contact"))
    assert out["counts"] == {"Account": {"failed": 1}} and out["detached"] == {} and out["cascaded"] == {}, out
    assert hook.query_all(f"SELECT AccountId FROM Contact WHERE Id = '{con[0]['id']}'")[0]["AccountId"] == acc_id
    lines = read_ledger(tmp_path, run_id="w9")
    assert sorted(zip(lines["object"], lines["operation"], lines["status"], strict=True)) == [
        ("Account", "delete", "failed"), ("Contact", "detach", "ok"), ("Contact", "reattach", "ok")]
    assert "DELETE_FAILED" in lines[lines["object"] == "Account"]["error"].iloc[0]


class _RefusingUpdates:
    """The hook, except that updates of the given ids fail (as a validation rule would refuse them)."""

    def __init__(self, hook, refused: set[str]):
        self.hook, self.refused = hook, refused

    def __getattr__(self, name):
        return getattr(self.hook, name)

    def composite_update(self, records):
        ok = [r for r in records if r["id"] not in self.refused]
        answers = iter(self.hook.composite_update(ok) if ok else [])
        return [next(answers) if r["id"] not in self.refused else {"success": False, "errors": [
            {"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "refused"}]} for r in records]


def test_a_parent_with_a_contact_that_cannot_be_detached_is_not_deleted(hook, tmp_path: Path):
    """If one live Contact cannot be detached, deleting its Account would take it along: the Account is kept
    (failed DETACH_FAILED) and the Contact that was detached is put back."""
    from clio2sf.delta_run import apply_deletes

    acc = hook.composite_create([{"attributes": {"type": "Account"}, "Name": "Held Co", "Clio_Id__c": "contact-920"}])
    acc_id = acc[0]["id"]
    cons = hook.composite_create([{"attributes": {"type": "Contact"}, "LastName": f"Held {i}", "AccountId": acc_id,
                                   "Clio_Id__c": f"contact-92{i}"} for i in (1, 2)])
    droot = tmp_path / "delta" / "w8"
    _deletes_file(droot, [{"sobject": "Account", "source_system_id": "contact-920", "sf_id": acc_id}])
    client = _RefusingUpdates(hook, {cons[0]["id"]})
    out = apply_deletes(client, tmp_path, {}, "w8", "m1", delta_root=droot, load_order=("Account", "Contact"))
    assert out["counts"] == {"Account": {"failed": 1}} and out["detached"] == {}, out
    assert hook.query_all(f"SELECT Id FROM Account WHERE Id = '{acc_id}'")
    got = {r["Id"]: r["AccountId"] for r in hook.query_all(
        f"SELECT Id, AccountId FROM Contact WHERE Id IN ('{cons[0]['id']}', '{cons[1]['id']}')")}
    assert got == {cons[0]["id"]: acc_id, cons[1]["id"]: acc_id}
    lines = read_ledger(tmp_path, run_id="w8")
    assert "DETACH_FAILED" in lines[lines["object"] == "Account"]["error"].iloc[0]
