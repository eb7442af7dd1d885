"""Clio data that used to go nowhere: each value now has a Salesforce home (raw Clio-shaped records in)."""

from __future__ import annotations

import pytest

from tests.unit.mapping.conftest import BO, by_sid, lookup_all, run

pytestmark = pytest.mark.unit


def env(obj: str, kind: str, data: dict) -> dict:
    return {"object": obj, "source_system_id": f"{kind}-{data['id']}", "clio_id": data["id"],
            "original_create_date": "2024-01-02T10:00:00-05:00",
            "data": {"created_at": "2024-01-02T10:00:00-05:00", **data}}


def test_bill_line_items_become_children_of_the_bill(spec, users):
    item = env("line_items", "line_item", {
        "id": 71, "type": "ActivityLineItem", "kind": "Service", "description": "Drafting", "note": "Motion to dismiss",
        "date": "2024-02-01", "quantity": 1.5, "price": 300.0, "sub_total": 450.0, "tax": 0.0, "total": 450.0,
        "bill": {"id": 555, "number": "1042"}, "matter": {"id": 7}, "activity": {"id": 31, "type": "TimeEntry"}})
    rows, rejects = run("line_items", spec, users, items=[item])
    assert rejects == []
    row = by_sid(rows)["line_item-71"]
    assert row["sobject"] == "Clio_Line_Item__c"
    r = row["row"]
    assert r["Clio_Billing__r.Clio_Id__c"] == "bill-555" and r["Case__r.Clio_Id__c"] == "matter-7"
    assert (r["Clio_Quantity__c"], r["Clio_Price__c"], r["Clio_Total__c"], r["Clio_Tax__c"]) == (1.5, 300.0, 450.0, 0.0)
    assert r["Clio_Description__c"] == "Drafting" and r["Clio_Note__c"] == "Motion to dismiss"
    assert r["Clio_Activity_Ref__c"] == "activity-31" and r["Clio_Activity_Type__c"] == "TimeEntry"
    orphan = dict(item, data=dict(item["data"], bill={"id": 999}))
    rows, rejects = run("line_items", spec, users, items=[orphan])
    assert rows == [] and rejects[0]["rule"] == "orphan_reference"


def test_trust_applied_to_a_bill_is_kept(spec, users):
    item = env("trust_line_items", "trust_line_item", {
        "id": 5, "date": "2024-02-03", "total": 600.0, "note": "Applied from trust",
        "bill": {"id": 555, "number": "1042"}, "matter": {"id": 7}, "client": {"id": 9001}})
    rows, rejects = run("trust_line_items", spec, users, items=[item])
    assert rejects == []
    r = by_sid(rows)["trust_line_item-5"]
    assert r["sobject"] == "Clio_Trust_Line_Item__c"
    assert r["row"]["Clio_Total__c"] == 600.0 and r["row"]["Clio_Note__c"] == "Applied from trust"
    assert r["row"]["Clio_Billing__r.Clio_Id__c"] == "bill-555" and r["row"]["Contact__r.Clio_Id__c"] == "contact-9001"


def test_company_secondary_emails_and_phones(spec, users):
    company = env("contacts", "contact", {
        "id": 9100, "type": "Company", "name": "Birch & Co", "primary_email_address": "info@birch.test",
        "secondary_email_address": "billing@birch.test", "primary_phone_number": "555-0100",
        "secondary_phone_number": "555-0109",
        "email_addresses": [{"name": "Work", "address": "info@birch.test", "primary": True},
                            {"name": "Billing", "address": "billing@birch.test", "primary": False},
                            {"name": "Other", "address": "legal@birch.test", "primary": False}],
        "phone_numbers": [{"name": "Work", "number": "555-0100", "primary": True},
                          {"name": "Fax", "number": "555-0108", "primary": False},
                          {"name": "Mobile", "number": "555-0109", "primary": False}]})
    rows, _ = run("contacts", spec, users, items=[company])
    r = by_sid(rows)["contact-9100"]["row"]
    assert r["Clio_Secondary_Email__c"] == "billing@birch.test" and r["Clio_Secondary_Phone__c"] == "555-0109"
    assert "Other email: legal@birch.test" in r["Clio_Other_Contact_Details__c"]
    assert "Fax phone: 555-0108" in r["Clio_Other_Contact_Details__c"]


def _activity(**over) -> dict:
    data = {"id": 60, "type": "ExpenseEntry", "date": "2024-02-01", "quantity": 1, "price": 85.0, "total": 85.0,
            "non_billable_total": 15.0, "billed": True, "non_billable": False, "matter": {"id": 7},
            "user": {"id": 1002, "name": "Bo"}, "expense_category": {"id": 1, "name": "Filing fees"},
            "bill": {"id": 555, "number": "1042"}}
    return env("activities", "activity", data | over)


def test_expense_keeps_its_bill_and_non_billable_total(spec, users):
    rows, rejects = run("activities", spec, users, items=[_activity()])
    r = by_sid(rows)["activity-60"]
    assert r["sobject"] == "Expense__c" and rejects == []
    assert r["row"]["Clio_Bill__r.Clio_Id__c"] == "bill-555" and r["row"]["Clio_Non_Billable_Total__c"] == 15.0
    assert r["row"]["OwnerId"] == BO


def test_time_entries_keep_non_billable_total(spec, users):
    te = _activity(id=61, type="TimeEntry", quantity_in_hours=2.0, price=300.0, total=450.0, non_billable_total=150.0,
                   activity_description={"id": 2, "name": "Drafting"})
    nb = _activity(id=62, type="TimeEntry", quantity_in_hours=1.0, price=300.0, total=0.0, non_billable_total=300.0,
                   non_billable=True, bill=None, activity_description={"id": 2, "name": "Research"})
    rows, _ = run("activities", spec, users, items=[te, nb])
    r = by_sid(rows)
    assert r["activity-61"]["sobject"] == "Time_Entry__c" and r["activity-61"]["row"]["Clio_Non_Billable_Total__c"] == 150.0
    assert r["activity-62"]["sobject"] == "Task" and r["activity-62"]["row"]["Clio_Non_Billable_Total__c"] == 300.0


def test_task_assigner_and_private_flag(spec, users):
    task = env("tasks", "task", {"id": 80, "name": "File motion", "status": "pending", "permission": "private",
                                 "assignee": {"id": 1002, "type": "User", "name": "Bo"},
                                 "assigner": {"id": 1001, "name": "Ann Lawyer"}, "matter": {"id": 7}})
    public = env("tasks", "task", {"id": 81, "name": "Call client", "status": "pending", "permission": "public",
                                   "assignee": {"id": 1002, "type": "User"}, "matter": {"id": 7}})
    rows, _ = run("tasks", spec, users, items=[task, public], lookup=lookup_all())
    r = by_sid(rows)
    assert r["task-80"]["row"]["Clio_Assigned_By__c"] == "Ann Lawyer" and r["task-80"]["row"]["Clio_Private__c"] is True
    assert r["task-81"]["row"]["Clio_Private__c"] is False


def test_bill_last_sent_at(spec, users):
    bill = env("bills", "bill", {"id": 556, "number": "1043", "state": "awaiting_payment", "total": 10.0,
                                 "last_sent_at": "2024-02-10T09:30:00-05:00", "client": {"id": 9001},
                                 "matters": [{"id": 7}]})
    rows, _ = run("bills", spec, users, items=[bill])
    assert by_sid(rows)["bill-556"]["row"]["Clio_Last_Sent_At__c"] == "2024-02-10T09:30:00-05:00"


def test_every_document_version_becomes_a_content_version_of_one_document(spec, users):
    from tests.unit.mapping.conftest import envelopes

    item = envelopes("documents")[0]  # latest version 2 (id 551)
    item["versions"] = [{"data": {"id": 550, "version_number": 1, "filename": "claim-v1.pdf", "content_type": "application/pdf",
                                  "received_at": "2024-02-20T09:00:00-05:00"},
                         "blob": {"path": "blobs/documents/55/550", "sha256": "cd" * 32, "size": 100}}]
    rows, rejects = run("documents", spec, users, items=[item])
    versions = [r for r in rows if r["sobject"] == "ContentVersion"]
    assert [v["source_system_id"] for v in versions] == ["document-55@v1", "document-55@v2"]
    v1, v2 = (v["row"] for v in versions)
    assert v1["PathOnClient"] == "claim-v1.pdf" and v1["Clio_Version_Number__c"] == 1 and "ContentVersion.Clio_Id__c" not in v1
    assert versions[0]["blob"]["path"] == "blobs/documents/55/550"
    assert v2["ContentVersion.Clio_Id__c"] == "document-55@v1" and v2["Clio_Document_Id__c"] == "document-55"
    links = [r for r in rows if r["sobject"] == "ContentDocumentLink"]
    assert links and all(r["row"]["ContentVersion.Clio_Id__c"] == "document-55@v2" for r in links)
    # a version Clio lists but whose bytes are gone is reported, the others still load
    item["versions"][0]["blob"], item["versions"][0]["blob_error"] = None, "Clio answered HTTP 404"
    rows, rejects = run("documents", spec, users, items=[item])
    assert [r["source_system_id"] for r in rows if r["sobject"] == "ContentVersion"] == ["document-55@v2"]
    assert any(x["rule"] == "missing_blob" and "version 1" in x["message"] and x["repair"] for x in rejects)
