"""Issue 10 on the tiny demo firm, without Airflow: Clio sandbox -> extract -> transform -> load -> Salesforce sandbox.

Checks communications and notes with their original times and links, a person with three companies,
matter teams, the capacity pre-flight (before any write), reconciliation, the diff and rollback of the
new objects, and an extraction that speeds up when Clio's announced limit rises.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import pytest

from clio2sf import pipeline, staging, verify
from clio2sf.extract import read_records
from clio2sf.load import chunked, soql_in
from clio2sf.mapping.spec import load_spec
from clio2sf.rollback_run import run_rollback
from tests.integration import direct

clio_testing = pytest.importorskip("sandbox.clio.testing")
roster = pytest.importorskip("sandbox.common.roster")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
FIRM = "harlow_vance"


def _utc(ts: str) -> str:
    """ISO 8601 with any offset -> ``YYYY-MM-DDTHH:MM:SS`` UTC, for comparing Clio and Salesforce times."""
    from datetime import UTC, datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00").replace("+0000", "+00:00")).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _by_ext(hook, sobject: str, fields: str, ids) -> dict[str, dict]:
    out = {}
    for part in chunked(sorted(set(ids)), 200):
        for r in hook.query_all(f"SELECT Id, Clio_Id__c, {fields} FROM {sobject} WHERE {soql_in('Clio_Id__c', part)}"):
            out[r["Clio_Id__c"]] = r
    return out


@pytest.fixture(scope="module")
def mig(tmp_path_factory):
    base = tmp_path_factory.mktemp("promise")
    # An org prepared for a migration that keeps original times: "Set Audit Fields upon Record Creation" on.
    with direct.sandbox_hooks(base, audit_fields=True) as (clio, sf, clio_hook, hook):
        mroot = staging.migration_root(base / "stage", FIRM, "p1")
        counts = direct.extract_for_load(clio_hook, mroot)
        spec = load_spec(FIRM)
        users = direct.user_map(hook, mroot, roster.INTEGRATION_USER["username"])
        pipeline.apply_schema_plan(hook, direct.schema_plan(spec, mroot), activity_fallback=False)
        direct.transform_all(spec, users, mroot)
        yield {"clio": clio, "sf": sf, "hook": hook, "mroot": mroot, "spec": spec, "users": users,
               "counts": counts, "base": base}


def _load_all(m, run_id: str) -> list[dict]:
    spec, mroot = m["spec"], m["mroot"]
    out = []
    for deferred in (False, True):
        for sobject in spec.load_order:
            folder = mroot / "transformed" / sobject
            for path in sorted(folder.glob("*.jsonl.gz")) if folder.exists() else ():
                out.append(pipeline.load_batch(m["hook"], path, mroot, migration_id="p1", run_id=run_id,
                                               load_order=spec.load_order, deferred=deferred, sleep=lambda s: None))
    return out


def test_capacity_preflight_refuses_before_the_first_write(mig, monkeypatch):
    """mig_05's preflight_load against an org with 1 MB of data storage: refused, nothing written."""
    from airflow.sdk.exceptions import AirflowFailException

    from clio2sf_airflow.phases import full_load, load_common

    mroot, sf = mig["mroot"], mig["sf"]
    staging.write_json(mroot / "raw" / "_extraction.json", {
        "complete": True, "objects": {k: {"records": v} for k, v in mig["counts"].items()}})
    staging.write_json(mroot / "users" / "user_map.json", {"users": {}, "fallback_owner": mig["users"].fallback})
    params = {"firm": FIRM, "migration_id": "p1"}
    monkeypatch.setattr(full_load, "params", lambda: params)
    monkeypatch.setattr(full_load, "mroot", lambda p=None: mroot)
    monkeypatch.setattr(full_load, "run_id", lambda: "preflight-test")
    monkeypatch.setattr(full_load, "hold_lease", lambda phase: {"phase": phase})  # needs a task context; tested elsewhere
    monkeypatch.setattr(load_common, "params", lambda: params)
    monkeypatch.setattr(load_common, "mroot", lambda p=None: mroot)
    monkeypatch.setattr(full_load, "require_mapping_confirmed", lambda spec, root: {})
    monkeypatch.setattr(full_load, "require_sample_approved", lambda spec, root: {})
    before = sf.counts()
    writes_before = {k: v for k, v in sf.request_log()["by_kind"].items() if "write" in k or "dml" in k or "bulk" in k}
    sf.knobs(data_storage_mb=0)
    try:
        with pytest.raises(AirflowFailException) as exc:
            full_load.preflight_load()
    finally:
        sf.knobs(data_storage_mb=1024)
    message = str(exc.value)
    assert "capacity pre-flight refused the load" in message
    # both figures: what the load needs and what the org has left
    assert "the load needs" in message and "remaining" in message and "data storage" in message.lower()
    findings = staging.read_json(mroot / "reports" / "preflight-test" / "capacity.json")
    err = next(f for f in findings if f["level"] == "error")
    assert err["needed"] > 0 and err["remaining"] == 0
    assert sf.counts() == before
    writes_after = {k: v for k, v in sf.request_log()["by_kind"].items() if "write" in k or "dml" in k or "bulk" in k}
    assert writes_after == writes_before
    # with room in the org, the same pre-flight passes (warn-only findings do not stop it)
    assert full_load.preflight_load()["capacity_errors"] == 0


def test_access_preflight_names_what_is_missing_and_writes_nothing(mig, monkeypatch):
    """Without the Clio_Migration permission set, sample, full load and delta stop before their first write."""
    from airflow.sdk.exceptions import AirflowFailException

    from clio2sf_airflow.phases import changes, delta, full_load, load_common, sample

    hook, sf, mroot = mig["hook"], mig["sf"], mig["mroot"]
    staging.write_json(mroot / "raw" / "_extraction.json", {
        "complete": True, "objects": {k: {"records": v} for k, v in mig["counts"].items()}})
    staging.write_json(mroot / "users" / "user_map.json", {"users": {}, "fallback_owner": mig["users"].fallback})
    for module in (full_load, sample, delta, changes, load_common):
        monkeypatch.setattr(module, "params", lambda: {"firm": FIRM, "migration_id": "p1"})
        monkeypatch.setattr(module, "mroot", lambda p=None: mroot)
        monkeypatch.setattr(module, "require_mapping_confirmed", lambda spec, root: {}, raising=False)
    for module in (full_load, changes):  # the writer lease asks the running task's context (tested elsewhere)
        monkeypatch.setattr(module, "hold_lease", lambda phase: {"phase": phase})
    monkeypatch.setattr(full_load, "require_sample_approved", lambda spec, root: {})
    monkeypatch.setattr(full_load, "run_id", lambda: "access-preflight-test")
    assignment = [r["Id"] for r in hook.query_all(
        "SELECT Id FROM PermissionSetAssignment WHERE PermissionSet.Name = 'Clio_Migration'")]
    assert len(assignment) == 1
    hook.composite_delete(assignment)
    before, log_before = sf.counts(), sf.request_log()["by_kind"]
    try:
        for task in (sample.select_sample, full_load.preflight_load, delta.extract_changes):
            with pytest.raises(AirflowFailException) as exc:
                task()
            message = str(exc.value)
            assert "pre-flight: the integration user cannot write what the mapping writes" in message
            assert "nothing was written" in message and "Clio_Migration" in message
            # every missing field permission is named, with why
            assert "Contact.Clio_Id__c: not visible to the integration user" in message
            assert "Case.Clio_Matter_Number__c: not visible" in message
            assert "Time_Entry__c: object not visible to the integration user" in message
        writes = {k: v for k, v in sf.request_log()["by_kind"].items()
                  if k.startswith(("bulk", "composite", "sobject_p", "sobject_delete"))}
        assert writes == {k: v for k, v in log_before.items() if k in writes} and sf.counts() == before
    finally:  # the schema apply assigns the permission set again
        out = pipeline.apply_schema_plan(hook, direct.schema_plan(mig["spec"], mroot), activity_fallback=False)
    assert out["assigned"] == ["Clio_Migration"] and not out["granted"]
    assert full_load.preflight_load()["fields_checked"] > 100


@pytest.fixture(scope="module")
def loaded(mig):
    first = _load_all(mig, "run-1")
    second = _load_all(mig, "run-2")
    return {**mig, "first": first, "second": second}


def test_every_communication_is_a_completed_task_with_its_original_time_and_links(loaded):
    hook, mroot = loaded["hook"], loaded["mroot"]
    comms = [e["data"] for e in read_records(mroot, "communications")]
    assert comms
    tasks = _by_ext(hook, "Task", "TaskSubtype, Type, Status, ActivityDate, CreatedDate, Clio_Received_At__c, "
                    "WhatId, WhoId, Subject, Description, Clio_Participants__c", [f"communication-{c['id']}" for c in comms])
    assert len(tasks) == len(comms), "every Clio communication is a Task"
    cases = _by_ext(hook, "Case", "CaseNumber", [f"matter-{c['matter']['id']}" for c in comms if c.get("matter")])
    contacts = _by_ext(hook, "Contact", "Name", [f"contact-{p['id']}" for c in comms
                                                 for p in c["senders"] + c["receivers"] if p["type"] == "Person"])
    for c in comms:
        t = tasks[f"communication-{c['id']}"]
        assert t["TaskSubtype"] == {"EmailCommunication": "Email", "PhoneCommunication": "Call"}[c["type"]]
        assert t["Type"] == t["TaskSubtype"] and t["Status"] == "Completed"
        assert t["Subject"] == c["subject"] and t["Description"] == c["body"]
        assert t["ActivityDate"] == c["date"]
        assert _utc(t["CreatedDate"]) == _utc(c["received_at"]) == _utc(t["Clio_Received_At__c"])
        assert t["WhatId"] == cases[f"matter-{c['matter']['id']}"]["Id"]
        person = next((p for p in c["senders"] + c["receivers"] if p["type"] == "Person"), None)
        if person is not None:
            assert t["WhoId"] == contacts[f"contact-{person['id']}"]["Id"]
        assert t["Clio_Participants__c"].startswith("From: ")


def test_every_note_is_a_content_note_with_its_original_time_author_and_links(loaded):
    hook, mroot = loaded["hook"], loaded["mroot"]
    notes = {f"note-{e['data']['id']}": e["data"] for o in ("matter_notes", "contact_notes") for e in read_records(mroot, o)}
    assert notes
    ids = pipeline.ledger_sf_ids(mroot, "ContentNote")
    assert set(ids) == set(notes), "every Clio note is in the ledger as a ContentNote"
    got = {}
    for part in chunked(sorted(ids.values()), 200):
        for r in hook.query_all(f"SELECT Id, Title, CreatedDate, LastModifiedDate, OwnerId FROM ContentNote WHERE {soql_in('Id', part)}"):
            got[r["Id"][:15]] = r
    users = loaded["users"]
    links = defaultdict(set)
    for part in chunked(sorted(ids.values()), 200):
        for r in hook.query_all(f"SELECT ContentDocumentId, LinkedEntityId FROM ContentDocumentLink WHERE {soql_in('ContentDocumentId', part)}"):
            links[r["ContentDocumentId"][:15]].add(r["LinkedEntityId"][:15])
    matters = _by_ext(hook, "Case", "CaseNumber", [f"matter-{n['matter']['id']}" for n in notes.values() if n.get("matter")])
    contacts = _by_ext(hook, "Contact", "Name", [f"contact-{n['contact']['id']}" for n in notes.values() if n.get("contact")])
    for sid, n in notes.items():
        rec = got[ids[sid][:15]]
        assert rec["Title"] == n["subject"]
        assert _utc(rec["CreatedDate"]) == _utc(n["created_at"])
        assert _utc(rec["LastModifiedDate"]) == _utc(n["updated_at"])
        assert rec["OwnerId"] == (users.get(n["author"]["id"]) or users.fallback)
        parent = matters.get(f"matter-{n['matter']['id']}") if n.get("matter") else contacts[f"contact-{n['contact']['id']}"]
        assert parent["Id"][:15] in links[ids[sid][:15]], f"{sid} is linked to its record"


def test_a_person_with_three_companies_has_one_account_and_two_relations(loaded):
    hook, mroot = loaded["hook"], loaded["mroot"]
    people = [e["data"] for e in read_records(mroot, "contacts") if e["data"]["type"] == "Person"]
    three = [p for p in people if len({x["id"] for x in [p["company"] or {}, *p["related_contacts"]] if x.get("id")}) == 3]
    assert three, "the firm has a person related to three companies"
    p = three[0]
    companies = [x["id"] for x in [p["company"] or {}, *p["related_contacts"]] if x.get("id")]
    accounts = _by_ext(hook, "Account", "Name", [f"contact-{c}" for c in companies])
    contact = _by_ext(hook, "Contact", "AccountId", [f"contact-{p['id']}"])[f"contact-{p['id']}"]
    assert contact["AccountId"] == accounts[f"contact-{companies[0]}"]["Id"]
    rels = hook.query_all(f"SELECT AccountId, IsDirect, Roles FROM AccountContactRelation WHERE ContactId = '{contact['Id']}'")
    indirect = [r for r in rels if not r["IsDirect"]]
    assert len(indirect) == 2 and len(rels) == 3
    assert {r["AccountId"] for r in indirect} == {accounts[f"contact-{c}"]["Id"] for c in companies[1:]}
    assert all(r["Roles"] for r in indirect)
    # every staged relation is in Salesforce (and the second load created none)
    staged = [e for e in pipeline_rows(mroot, "AccountContactRelation")]
    assert staged and set(pipeline.ledger_sf_ids(mroot, "AccountContactRelation")) == {e["source_system_id"] for e in staged}


def pipeline_rows(mroot, sobject: str) -> list[dict]:
    folder = mroot / "transformed" / sobject
    return [e for f in sorted(folder.glob("*.jsonl.gz")) for e in staging.read_jsonl_gz(f)] if folder.exists() else []


def test_every_matters_attorneys_are_on_its_team(loaded):
    hook, mroot, users = loaded["hook"], loaded["mroot"], loaded["users"]
    matters = [e["data"] for e in read_records(mroot, "matters")]
    cases = _by_ext(hook, "Case", "CaseNumber", [f"matter-{m['id']}" for m in matters])
    members = defaultdict(dict)
    for r in hook.query_all("SELECT ParentId, MemberId, TeamRole.Name FROM CaseTeamMember"):
        members[r["ParentId"]][r["MemberId"]] = (r.get("TeamRole") or {}).get("Name")
    checked = 0
    for m in matters:
        team = members[cases[f"matter-{m['id']}"]["Id"]]
        for role, label in (("responsible_attorney", "Responsible Attorney"), ("originating_attorney", "Originating Attorney")):
            sf_user = users.get(m[role]["id"])
            if sf_user is None:
                continue  # an unmapped attorney: reported as a repair, never the fallback owner
            assert sf_user in team, (m["id"], role)
            # one membership per user: the first Clio role names it
            assert team[sf_user] == label or sf_user == users.get(m["responsible_attorney"]["id"])
            checked += 1
    assert checked >= len(matters)
    rejects = [r for f in (mroot / "rejects" / "transform" / "matters").glob("*.jsonl") for r in staging.read_jsonl(f)]
    unmapped = {(m["id"], role) for m in matters for role in ("responsible_attorney", "originating_attorney")
                if users.get(m[role]["id"]) is None}
    assert len([r for r in rejects if r["rule"] == "unmapped_team_member"]) == len(unmapped)


def test_reloading_creates_nothing_and_reconciliation_and_diff_cover_the_new_objects(loaded):
    hook, mroot, spec = loaded["hook"], loaded["mroot"], loaded["spec"]
    new = ("AccountContactRelation", "CaseTeamMember", "ContentNote", "Task")
    first = {s["sobject"]: s for s in loaded["first"] if s["sobject"] in new}
    assert all(not s["failed"] for s in loaded["first"] if s["sobject"] in new), first
    assert sum(s["created"] for s in loaded["second"]) == 0
    rec = verify.reconcile_migration(hook, mroot, spec, run_label="promise")
    assert rec["lost"] == 0 and rec["duplicated"] == 0, rec
    for obj in ("communications", "matter_notes", "contact_notes", "contacts", "matters"):
        info = rec["objects"][obj]
        assert info["expected"] == info["loaded"] + info["rejected"] and info["loaded"], (obj, info)
    # the user report the load used (another test leaves a bare user_map.json): the source-to-target check reads it
    from clio2sf.user_resolution import report_csv, resolve_users, user_map_document

    fallback = loaded["users"].fallback
    resolutions = resolve_users([e["data"] for e in read_records(mroot, "users")],
                                hook.query_all("SELECT Id, Username, Email, IsActive FROM User"), fallback)
    staging.write_json(mroot / "users" / "user_map.json", user_map_document(resolutions, fallback))
    (mroot / "users" / "user_report.csv").write_text(report_csv(resolutions))
    summary = verify.sample_diff(hook, mroot, spec, sample_dir=".", out_dir=mroot / "reports" / "promise-diff")
    assert summary["mismatches"] == 0 and summary["missing"] == 0, summary
    by_object = {o["sobject"] if "sobject" in o else o.get("object"): o
                 for o in staging.read_json(mroot / "reports" / "promise-diff" / "diff_summary.json")["by_object"]}
    assert by_object["Task"]["fields_compared"] > 0


def test_rollback_removes_the_new_objects(loaded):
    hook, mroot, spec = loaded["hook"], loaded["mroot"], loaded["spec"]
    out = run_rollback(hook, mroot, run_id="run-1", migration_id="p1", dry_run=False, load_order=spec.load_order)
    assert out["failed"] == 0, out
    assert not hook.query_all("SELECT Id FROM AccountContactRelation WHERE IsDirect = false")
    assert not hook.query_all("SELECT Id FROM CaseTeamMember")
    assert not hook.query_all("SELECT Id FROM Task WHERE Clio_Id__c LIKE 'communication-%'")
    note_ids = list(pipeline.ledger_sf_ids(mroot, "ContentNote").values())
    assert not verify.existing_ids(hook, "ContentNote", note_ids)


def test_extraction_speeds_up_when_the_announced_limit_rises(tmp_path, monkeypatch):
    """Peak 4 requests per 1 s window, then an off-peak 40 from a boundary 2 s in: the hook's pace follows the headers."""
    with clio_testing.run_clio_sandbox(tmp_path / "clio", preset="tiny", rate_limit=4, window=1.0) as clio:
        monkeypatch.setenv("AIRFLOW_CONN_CLIO_DEFAULT", json.dumps({
            "conn_type": "http", "host": clio.base_url, "login": clio.client_id, "password": clio.client_secret,
            "extra": {"refresh_token": clio.refresh_token, "rate_state_dir": str(tmp_path / "rate")}}))
        from clio2sf_airflow.hooks.clio import ClioHook

        hook = ClioHook()
        page = {"fields": "id", "limit": 5}
        hook.get_page("contacts", page)  # log in and learn the limit
        boundary = time.time() + 2.0
        clio.set_knobs(limit_schedule=[[boundary, 40]])
        stamps = []
        end = boundary + 2.0
        while time.time() < end:
            hook.get_page("contacts", page)
            stamps.append(time.time())
        peak = sum(1 for t in stamps if t < boundary) / 2.0
        offpeak = sum(1 for t in stamps if t >= boundary + 0.5) / 1.5
        log = clio.request_log()
        assert sum(1 for r in log if r["status"] == 429) <= 1
        assert peak <= 4 * 1.5, peak  # paced under the peak limit
        assert offpeak > 2 * peak, (peak, offpeak)
