"""The seven phase DAGs, run with ``airflow dags test`` against both sandboxes over HTTP.

One migration of the tiny firm goes through every phase in order (module-scoped), and each test
checks what its phase must show. The order of the tests is the order of the phases.
"""

from __future__ import annotations

import base64
import csv
import json
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from simple_salesforce import Salesforce

from clio2sf import catalog, staging
from clio2sf.extract import read_records
from scripts.cutover import change_firm
from tests.integration.phases import Migration, start_migration

pytestmark = pytest.mark.integration

MIGRATED_SF = ("Account", "Contact", "Case", "CaseContactRole", "Clio_Billing__c", "Ledger__c", "Time_Entry__c",
               "Expense__c", "Rate_Structure__c", "Event", "EventRelation", "Task", "ContentVersion",
               "ContentDocument", "ContentDocumentLink", "ContentNote")


@pytest.fixture(scope="module")
def mig(tmp_path_factory, airflow_db):
    with ExitStack() as stack:
        m = start_migration(stack, tmp_path_factory.mktemp("phases"), airflow_db)
        m.before = {k: v for k, v in m.sf.counts().items()}  # type: ignore[attr-defined]
        yield m


def _sf_counts(m: Migration) -> dict[str, int]:
    return {k: v for k, v in m.sf.counts().items() if k in MIGRATED_SF}


def test_discover_writes_the_mapping_document_and_reference_files(mig: Migration):
    start = len(mig.clio.request_log())
    mig.run("mig_01_discover", apply_schema=True)
    # Counting takes one request per object of one page (the tiny firm's are), not a pass over each
    served = [e for e in mig.clio.request_log(start) if e["path"].startswith("/api/v4/")]
    migrated = [o for o in catalog.CLIO_OBJECTS if o.migrated]
    from clio2sf_airflow.phases.discover import CONFIG_OBJECTS

    # config reads + billing settings + one count per object + 2 sampled pages + connection checks
    assert len(served) <= len(CONFIG_OBJECTS) + 1 + len(migrated) + 2 + 3, len(served)
    disc = mig.root / "discover"
    html = (disc / "mapping_spec.html").read_text()
    assert "Mapping specification" in html and "awaiting approval" in html
    assert "Custom fields to create" in html or "custom field" in html.lower()
    for name in ("workflows", "document_templates", "billing_automation", "trust_accounting_rules"):
        doc = json.loads((disc / "reference" / f"{name}.json").read_text())
        assert doc["source"] == "Clio Manage API v4" and "items" in doc
    assert "shared_secret" not in (disc / "reference" / "webhooks.json").read_text()
    counts = json.loads((disc / "clio_counts.json").read_text())
    sandbox_counts = mig.clio.counts(catalog.CLIO_OBJECTS)
    assert counts["contacts"] == sandbox_counts["contacts"] and counts["activities"] == sandbox_counts["activities"]
    assert counts == {o.name: sandbox_counts[o.name] for o in migrated}
    basis = json.loads((disc / "clio_count_basis.json").read_text())
    assert {b["basis"] for b in basis.values()} == {"exact"} and set(basis) == set(counts)
    # the proposer saw sampled values, and a time of day is never proposed onto an existing text field
    config = json.loads((disc / "clio_config.json").read_text())
    assert any(config["custom_field_samples"]["Matter"].values())
    md = (disc / "mapping_spec.md").read_text()
    hearing = next(line for line in md.splitlines() if "Matter: Hearing Time" in line)
    assert "new field Hearing_Time__c" in hearing, hearing
    # apply_schema created the custom fields the spec needs, so the org now describes them
    describe = json.loads((disc / "salesforce_describe" / "Contact.json").read_text())
    assert "Clio_Id__c" in {f["name"] for f in describe["fields"]}


def test_extract_refuses_an_unconfirmed_mapping(mig: Migration):
    run = mig.run("mig_02_extract", expect_ok=False, tag="unconfirmed")
    assert not run.ok
    assert "has not been confirmed" in run.log() and "scripts.approve mapping" in run.log()


def test_extract_stages_exactly_the_sandbox_records(mig: Migration):
    mig.approve("mapping")
    mig.run("mig_02_extract")
    mig.assert_extraction_matches_sandbox()
    summary = mig.json("raw/_extraction.json")
    assert summary["records_complete"] and not summary["documents_pending"] and "documents" in summary["objects"]
    docs = list(read_records(mig.root, "documents"))
    assert all(d["blob"] is None or len(d["blob"]["sha256"]) == 64 for d in docs)
    assert sum(1 for r in mig.clio.request_log() if r["status"] == 429) == 0


def test_resolve_users_reports_before_any_write(mig: Migration):
    writes_before = mig.sf.request_log()["by_kind"]
    mig.run("mig_03_resolve_users")
    user_map = mig.json("users/user_map.json")
    assert user_map["counts"]["matched"] >= 2 and user_map["counts"]["unmatched"] >= 1
    assert set(user_map["users"]) == {str(e["clio_id"]) for e in read_records(mig.root, "users")}
    assert all(owner.startswith("005") for owner in user_map["users"].values())
    html = (mig.root / "users" / "user_report.html").read_text()
    assert "Needs a decision" in html and "unmatched" in html
    writes_after = mig.sf.request_log()["by_kind"]
    assert {k: v for k, v in writes_after.items() if "write" in k or "dml" in k} == {
        k: v for k, v in writes_before.items() if "write" in k or "dml" in k
    }


def test_full_load_refuses_without_an_approved_sample(mig: Migration):
    run = mig.run("mig_05_full_load", expect_ok=False, tag="unapproved")
    assert not run.ok and "no approved sample" in run.log()


def test_sample_diff_has_no_unexplained_mismatch(mig: Migration):
    mig.run("mig_04_sample")
    summary = mig.json("sample/diff_summary.json")
    assert summary["records"] > 0 and summary["fields_compared"] > 500
    assert summary["mismatches"] == 0 and summary["missing"] == 0, summary
    selection = mig.json("sample/selection.json")
    assert 50 <= sum(len(ids) for ids in selection["ids"].values()) <= 500  # Clio records in the slice
    assert {"matters", "contacts", "bills", "activities", "calendar_entries", "tasks", "relationships",
            "documents"} <= {k for k, v in selection["ids"].items() if v}
    with (mig.root / "sample" / "diff.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {"clio_value", "sent_value", "sf_value", "status"} <= set(rows[0])


def test_full_load_reconciles_exactly(mig: Migration):
    mig.approve("sample")
    mig.run("mig_05_full_load")
    rec = json.loads(sorted((mig.root / "reports").glob("*/reconciliation.json"))[-1].read_text())
    assert rec["lost"] == 0 and rec["duplicated"] == 0
    assert all(a["ok"] for a in rec["amounts"]), rec["amounts"]
    assert rec["objects"], "reconciliation lists no object"
    for info in rec["objects"]:
        assert info["missing"] == 0 and info["expected"] == info["loaded"] + info["rejected"], info
    ver = json.loads(sorted((mig.root / "reports").glob("*/verification.json"))[-1].read_text())
    assert ver["mismatches"] == 0 and ver["fields_compared"] > 1000, ver["unexplained_by_field"]
    assert ver["accounting"]["unaccounted"] == [] and ver["accounting"]["values_migrated"] > 1000
    mig.after_first_load = _sf_counts(mig)  # type: ignore[attr-defined]
    assert mig.after_first_load["Contact"] > 0 and mig.after_first_load["ContentVersion"] > 0
    # the documents went through load_documents, one mark per committed document batch
    marks = list((mig.root / "loads").glob("*/documents/batch-*.json"))
    assert len(marks) == len(staging.read_manifest(mig.root, "documents")["batches"]) > 0


def test_full_load_twice_creates_no_duplicate(mig: Migration):
    mig.run("mig_05_full_load", tag="again")
    assert _sf_counts(mig) == mig.after_first_load  # type: ignore[attr-defined]
    rec = json.loads(sorted((mig.root / "reports").glob("*/reconciliation.json"),
                            key=lambda p: p.stat().st_mtime)[-1].read_text())
    assert rec["lost"] == 0 and rec["duplicated"] == 0


def _sf_one(m: Migration, soql: str) -> dict:
    records = m.sf.sf().query(soql)["records"]
    assert len(records) == 1, soql
    return records[0]


def _sf_as_colleague(m: Migration):
    """A Salesforce session of another active user (the sandbox's JWT flow does not check signatures)."""
    integration = m.sf.sf()
    me = integration.query("SELECT Username FROM User WHERE Username LIKE 'integration@%'")["records"][0]["Username"]
    other = next(u["Username"] for u in integration.query("SELECT Username FROM User WHERE IsActive = true")["records"]
                 if u["Username"] != me)

    def b64(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    claims = {"iss": m.sf.consumer_key, "sub": other, "aud": "sandbox", "exp": int(time.time()) + 300}
    resp = m.sf.session().post(f"{m.sf.instance_url}/services/oauth2/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": f"{b64({'alg': 'RS256'})}.{b64(claims)}.unsigned"})
    resp.raise_for_status()
    return Salesforce(session_id=resp.json()["access_token"], instance_url=m.sf.instance_url, session=m.sf.session())


def test_delta_follows_clio_and_queues_conflicts(mig: Migration):
    sf = mig.sf.sf()
    # A colleague edits a Salesforce contact after our load; Clio changes the same contact afterwards.
    contacts = [e["data"] for e in read_records(mig.root, "contacts") if e["data"].get("type") == "Person"]
    conflicted = contacts[-1]["id"]
    target = _sf_one(mig, f"SELECT Id FROM Contact WHERE Clio_Id__c = 'contact-{conflicted}'")
    _sf_as_colleague(mig).Contact.update(target["Id"], {"Title": "Edited in Salesforce"})
    mig.clio.mutate("contacts", "update", conflicted, {"title": "Edited in Clio"})
    changed = change_firm(mig.clio)
    mig.before_delta = {  # type: ignore[attr-defined]
        "contact": _sf_one(mig, f"SELECT Title FROM Contact WHERE Clio_Id__c = 'contact-{changed['updated']['contacts'][0]}'"),
        "case": _sf_one(mig, f"SELECT Subject FROM Case WHERE Clio_Id__c = 'matter-{changed['updated']['matters'][0]}'"),
    }
    mig.run("mig_06_delta")
    contact = _sf_one(mig, f"SELECT Title FROM Contact WHERE Clio_Id__c = 'contact-{changed['updated']['contacts'][0]}'")
    assert contact["Title"] == "Managing Partner"
    case = _sf_one(mig, f"SELECT Subject, Description FROM Case WHERE Clio_Id__c = 'matter-{changed['updated']['matters'][0]}'")
    assert "Renamed during cutover" in f"{case['Subject']} {case['Description']}"
    new_task = changed["created"]["tasks"][0]
    assert _sf_one(mig, f"SELECT Id FROM Task WHERE Clio_Id__c = 'task-{new_task}'")
    gone = changed["deleted"]["tasks"][0]
    assert sf.query(f"SELECT Id FROM Task WHERE Clio_Id__c = 'task-{gone}'")["totalSize"] == 0
    # the conflicting Salesforce edit was queued, not overwritten
    assert _sf_one(mig, f"SELECT Title FROM Contact WHERE Id = '{target['Id']}'")["Title"] == "Edited in Salesforce"
    conflicts = [json.loads(x) for p in (mig.root / "delta").glob("*/conflicts.jsonl")
                 for x in p.read_text().splitlines() if x.strip()]
    assert any(c["source_system_id"] == f"contact-{conflicted}" for c in conflicts)
    marks = staging.read_json(mig.root / "delta" / "watermarks.json")
    assert marks and "contacts" in marks["objects"]
    mig.changed = changed  # type: ignore[attr-defined]


def _ledger_runs(m: Migration, phase: str) -> list[str]:
    return sorted({p.parent.parent.name for p in (m.root / "ledger").glob(f"*/{phase}/*")})


def test_rollback_of_the_delta_run_restores_updated_values(mig: Migration):
    [delta_run] = _ledger_runs(mig, "delta")
    dry = mig.run("mig_07_rollback", target_run_id=delta_run, dry_run=True, tag="delta-dry")
    assert dry.ok
    mig.run("mig_07_rollback", target_run_id=delta_run, dry_run=False, tag="delta")
    changed = mig.changed  # type: ignore[attr-defined]
    contact = _sf_one(mig, f"SELECT Title FROM Contact WHERE Clio_Id__c = 'contact-{changed['updated']['contacts'][0]}'")
    assert contact["Title"] == mig.before_delta["contact"]["Title"]  # type: ignore[attr-defined]
    case = _sf_one(mig, f"SELECT Subject FROM Case WHERE Clio_Id__c = 'matter-{changed['updated']['matters'][0]}'")
    assert case["Subject"] == mig.before_delta["case"]["Subject"]  # type: ignore[attr-defined]
    new_task = changed["created"]["tasks"][0]
    assert mig.sf.sf().query(f"SELECT Id FROM Task WHERE Clio_Id__c = 'task-{new_task}'")["totalSize"] == 0
    gone = changed["deleted"]["tasks"][0]  # deleted by the delta: back from its before-image, under a new id
    back = _sf_one(mig, f"SELECT Id, Subject, WhoId, WhatId FROM Task WHERE Clio_Id__c = 'task-{gone}'")
    assert back["Subject"] and (back["WhoId"] or back["WhatId"])
    again = mig.run("mig_07_rollback", target_run_id=delta_run, dry_run=False, tag="delta-again")
    assert again.ok
    assert mig.sf.sf().query(f"SELECT Id FROM Task WHERE Clio_Id__c = 'task-{gone}'")["totalSize"] == 1


def test_rollback_of_the_migration_returns_the_org_to_its_pre_run_state(mig: Migration):
    mig.run("mig_07_rollback", dry_run=False, tag="all")
    after = _sf_counts(mig)
    before = {k: v for k, v in mig.before.items() if k in MIGRATED_SF}  # type: ignore[attr-defined]
    assert {k: v for k, v in after.items() if v} == {k: v for k, v in before.items() if v}
    counts_now = mig.sf.counts()
    mig.run("mig_07_rollback", dry_run=False, tag="again")
    assert mig.sf.counts() == counts_now
    plan = json.loads(sorted((mig.root / "reports").glob("*/rollback.json"),
                             key=lambda p: p.stat().st_mtime)[-1].read_text())
    assert not plan.get("operations") and sum(plan.get("counts", {}).values() or [0]) == 0 or plan.get("planned") == {}


def test_no_task_log_holds_a_secret(mig: Migration):
    secrets = [mig.clio.client_secret, mig.clio.refresh_token, mig.sf.consumer_secret]
    for run in mig.runs:
        text = run.log()
        for secret in secrets:
            assert secret not in text, f"{run.dag_id} log leaks a secret"


def test_logs_live_under_the_workdir(mig: Migration):
    assert all(Path(r.log_path).is_relative_to(mig.workdir) for r in mig.runs)
