"""A small firm in Clio (raw envelopes) and, written by hand, what a correct migration leaves in the
org: the 'good data' the seeded-defect tests copy and break one thing at a time."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from clio2sf.mapping.spec import load_spec, spec_from_dict
from clio2sf.verify import compare, run, source
from tests.unit.sf_fake import FakeSF

NOW = datetime(2024, 6, 1, tzinfo=UTC)
ANN, BOB_FALLBACK, FALLBACK = "005000000000001AAA", None, "005000000000009AAA"
ACC, CON, CASE = "001000000000001AAA", "003000000000001AAA", "500000000000001AAA"
EV, EV1, EV2, EV3 = "00U000000000001AAA", "00U000000000002AAA", "00U000000000003AAA", "00U000000000004AAA"
CREATED = "2024-01-01T00:00:00-05:00"
CREATED_SF = "2024-01-01T05:00:00.000+0000"


def _env(obj: str, kind: str, d: dict[str, Any]) -> dict[str, Any]:
    return {"object": obj, "source_system_id": f"{kind}-{d['id']}", "clio_id": d["id"], "data": {**d, "created_at": CREATED}}


def raw() -> dict[str, list[dict[str, Any]]]:
    return {
        "users": [_env("users", "user", {"id": 1001, "name": "Ann Able", "email": "ann@firm.example"}),
                  _env("users", "user", {"id": 1002, "name": "Bob Baker", "email": "bob@firm.example"})],
        "contacts": [
            _env("contacts", "contact", {"id": 1, "type": "Company", "name": "Acme", "primary_email_address": "INFO@acme.example",
                                         "is_client": False}),
            _env("contacts", "contact", {"id": 2, "type": "Person", "first_name": "Cara", "last_name": "Doe",
                                         "primary_email_address": "Cara@Doe.example", "company": {"id": 1}, "is_client": True}),
        ],
        "matters": [_env("matters", "matter", {
            "id": 10, "display_number": "0001", "description": "Doe v Roe", "status": "Open", "client": {"id": 2},
            "responsible_attorney": {"id": 1001}, "originating_attorney": {"id": 1002},
            "practice_area": {"name": "Litigation"}, "open_date": "2024-01-02", "billable": True})],
        "calendar_entries": [
            _env("calendar_entries", "calendar_entry", {
                "id": 100, "summary": "Hearing", "start_at": "2024-03-04T09:00:00-05:00", "end_at": "2024-03-04T10:00:00-05:00",
                "start_at_time_zone": "America/New_York", "all_day": False, "recurrence_rule": None,
                "calendar_owner": {"id": 801, "name": "Ann Able", "type": "UserCalendar"},
                "attendees": [{"id": 801, "type": "Calendar", "name": "Ann Able", "email": "ann@firm.example"},
                              {"id": 2, "type": "Contact", "name": "Cara Doe"}],
                "matter": {"id": 10}}),
            # A Wednesday start with a Monday rule: RFC 5545 makes DTSTART the first of the 3 occurrences;
            # the series crosses the start of daylight saving time (10 March 2024 in New York).
            _env("calendar_entries", "calendar_entry", {
                "id": 101, "summary": "Weekly", "start_at": "2024-03-06T09:00:00-05:00", "end_at": "2024-03-06T10:00:00-05:00",
                "start_at_time_zone": "America/New_York", "all_day": False, "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO;COUNT=3",
                "calendar_owner": {"id": 801, "name": "Ann Able", "type": "UserCalendar"}, "attendees": [],
                "matter": {"id": 10}}),
        ],
        "tasks": [_env("tasks", "task", {"id": 200, "name": "Draft", "status": "pending", "priority": "High",
                                         "due_at": "2024-04-01", "assignee": {"id": 1001, "type": "User"},
                                         "assigner": {"id": 1002, "name": "Bob Baker"}, "permission": "private",
                                         "matter": {"id": 10}})],
        "bills": [_env("bills", "bill", {"id": 300, "number": "1001", "state": "paid", "total": 100.5,
                                         "issued_at": "2024-02-01", "last_sent_at": "2024-02-02T10:00:00-05:00",
                                         "client": {"id": 2}, "matters": [{"id": 10}], "currency": {"code": "USD"}})],
    }


TYPES = {
    "Account": {"Clio_Email__c": "email", "Clio_Created_Date__c": "datetime", "Clio_Is_Client__c": "boolean",
                "OwnerId": "reference"},
    "Contact": {"Email": "email", "AccountId": "reference", "Clio_Created_Date__c": "datetime", "Clio_Is_Client__c": "boolean"},
    "Case": {"Clio_Open_Date__c": "date", "Clio_Billable__c": "boolean", "ContactId": "reference", "AccountId": "reference",
             "OwnerId": "reference", "Clio_Created_Date__c": "datetime"},
    "CaseTeamMember": {"ParentId": "reference", "MemberId": "reference"},
    "Event": {"StartDateTime": "datetime", "EndDateTime": "datetime", "IsAllDayEvent": "boolean", "WhatId": "reference",
              "OwnerId": "reference", "Clio_Created_Date__c": "datetime", "ActivityDate": "date"},
    "EventRelation": {"EventId": "reference", "RelationId": "reference"},
    "AccountContactRelation": {"AccountId": "reference", "ContactId": "reference", "IsDirect": "boolean"},
    "Task": {"ActivityDate": "date", "WhatId": "reference", "OwnerId": "reference", "Clio_Created_Date__c": "datetime"},
    "Clio_Billing__c": {"Clio_Total__c": "currency", "Clio_Issued_Date__c": "date", "Case__c": "reference",
                        "Contact__c": "reference", "Account__c": "reference", "Clio_Created_Date__c": "datetime",
                        "Clio_Status__c": "picklist"},
}


def org() -> dict[str, list[dict[str, Any]]]:
    def ev(sf_id, key, start, end, subject, series=None):
        row = {"Id": sf_id, "Clio_Id__c": key, "Subject": subject, "StartDateTime": start, "EndDateTime": end,
               "IsAllDayEvent": False, "Clio_Time_Zone__c": "America/New_York", "WhatId": CASE, "OwnerId": ANN,
               "Clio_Created_Date__c": CREATED_SF}
        if series:
            row["Clio_Series_Id__c"] = series
        return row

    return {
        "User": [{"Id": ANN}, {"Id": FALLBACK}],
        "Account": [{"Id": ACC, "Clio_Id__c": "contact-1", "Name": "Acme", "Clio_Email__c": "info@acme.example",
                     "Clio_Created_Date__c": CREATED_SF, "Clio_Is_Client__c": False}],
        "Contact": [{"Id": CON, "Clio_Id__c": "contact-2", "FirstName": "Cara", "LastName": "Doe", "Email": "cara@doe.example",
                     "AccountId": ACC, "Clio_Created_Date__c": CREATED_SF, "Clio_Is_Client__c": True}],
        "Case": [{"Id": CASE, "Clio_Id__c": "matter-10", "Subject": "Doe v Roe", "Description": "Doe v Roe", "Status": "Working",
                  "Clio_Matter_Number__c": "0001", "Type": "Litigation", "Clio_Matter_Type__c": "Litigation",
                  "Clio_Open_Date__c": "2024-01-02", "Clio_Billable__c": True, "ContactId": CON, "AccountId": ACC,
                  "OwnerId": ANN, "Clio_Created_Date__c": CREATED_SF}],
        "CaseTeamMember": [{"Id": "0B6000000000001AAA", "ParentId": CASE, "MemberId": ANN}],
        "Event": [ev(EV, "calendar_entry-100", "2024-03-04T14:00:00.000+0000", "2024-03-04T15:00:00.000+0000", "Hearing"),
                  ev(EV1, "calendar_entry-101@20240306", "2024-03-06T14:00:00.000+0000", "2024-03-06T15:00:00.000+0000",
                     "Weekly", "calendar_entry-101"),
                  ev(EV2, "calendar_entry-101@20240311", "2024-03-11T13:00:00.000+0000", "2024-03-11T14:00:00.000+0000",
                     "Weekly", "calendar_entry-101"),
                  ev(EV3, "calendar_entry-101@20240318", "2024-03-18T13:00:00.000+0000", "2024-03-18T14:00:00.000+0000",
                     "Weekly", "calendar_entry-101")],
        "AccountContactRelation": [{"Id": "07k000000000001AAA", "AccountId": ACC, "ContactId": CON, "IsDirect": True}],
        "EventRelation": [{"Id": "0RE000000000001AAA", "EventId": EV, "RelationId": ANN},
                          {"Id": "0RE000000000002AAA", "EventId": EV, "RelationId": CON}],
        "Task": [{"Id": "00T000000000001AAA", "Clio_Id__c": "task-200", "Subject": "Draft", "Status": "Not Started",
                  "Priority": "High", "ActivityDate": "2024-04-01", "TaskSubtype": "Task", "WhatId": CASE, "OwnerId": ANN,
                  "Clio_Created_Date__c": CREATED_SF}],
        "Clio_Billing__c": [{"Id": "a00000000000001AAA", "Clio_Id__c": "bill-300", "Name": "Invoice 1001",
                             "Clio_Invoice_Number__c": "1001", "Clio_Status__c": "Paid", "Clio_Total__c": 100.5,
                             "Clio_Issued_Date__c": "2024-02-01", "Clio_Currency__c": "USD", "Case__c": CASE,
                             "Contact__c": CON, "Account__c": ACC, "Clio_Created_Date__c": CREATED_SF}],
    }


USERS = source.UserReport(matched={"1001": ANN}, listed_fallback={"1002"}, fallback=FALLBACK)


def spec(extra: dict[str, Any] | None = None):
    """The default spec, optionally with spec keys/fields added (``{key: {fields: {...}}}`` merged)."""
    base = load_spec(None)
    if not extra:
        return base
    data = copy.deepcopy(base.data)
    for key, add in extra.items():
        target = data["objects"].setdefault(key, {"source": add.get("source"), "fields": {}})
        if "source" in add:
            target["source"] = add["source"]
        target.setdefault("fields", {}).update(add.get("fields") or {})
        if "links" in add:
            target["links"] = add["links"]
    return spec_from_dict(data)


def verify(raw_data: dict, org_data: dict, the_spec=None, rejects: list[dict] | None = None,
           types: dict | None = None) -> compare.Result:
    """What ``verify_migration`` finds for a firm (one group of objects built and compared at a time,
    read back by object). Each firm is also verified with every group of more than one record
    compared in parts (``run.compare_groups(cap=1)``): it must find exactly the same."""
    the_spec = the_spec or spec()
    results = []
    for cap in (None, 1):
        builder = source.Builder(lambda name: raw_data.get(name, []), set(raw_data), the_spec, USERS, NOW)
        client = FakeSF(org_data, types=types or TYPES)
        result, _ = run.compare_groups(client, builder, USERS, compare.Rejects.from_lines(rejects or []), whole=False,
                                       horizon_days=the_spec.options.get("recurrence_horizon_days", 730), now=NOW,
                                       subset=False, cap=cap)
        results.append(result)
    whole, parts = results
    assert sorted(map(repr, parts.findings)) == sorted(map(repr, whole.findings)), "the parts found otherwise"
    assert (parts.records, parts.fields, parts.matches, parts.notes) == (whole.records, whole.fields, whole.matches,
                                                                         whole.notes)
    return whole
