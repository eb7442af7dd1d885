from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest

from clio2sf.mapping.spec import load_spec, spec_from_dict
from clio2sf.mapping.transform import PRODUCES, transform_object
from clio2sf.mapping.users import UserMap

from .conftest import ANN, BO, FALLBACK, by_sid, envelopes, run

pytestmark = pytest.mark.unit


def test_company_and_individual_clients(spec, users):
    rows, rejects = run("contacts", spec, users)
    r = by_sid(rows)
    assert r["contact-9000"]["sobject"] == "Account" and r["contact-9000"]["row"]["Name"] == "Acme Holdings LLP"
    jane = r["contact-9001"]
    assert jane["sobject"] == "Contact" and jane["external_id_field"] == "Clio_Id__c"
    row = jane["row"]
    assert row["Account.Clio_Id__c"] == "contact-9000"  # person at a company
    assert row["Phone"] == "555-0101" and row["Email"] == "jane@acme.test"
    assert row["Clio_Secondary_Email__c"] == "jane.doe@home.test" and row["Clio_Secondary_Phone__c"] == "555-0199"
    assert "Other email: jq@old.test" in row["Clio_Other_Contact_Details__c"]
    assert "Home address: 9 Elm Rd" in row["Clio_Other_Contact_Details__c"]
    assert row["Clio_Created_Date__c"] == "2024-02-01T10:00:00-05:00" and row["Clio_Id__c"] == "contact-9001"
    # individual without a company: default account, emitted once before the first such contact
    assert r["contact-9002"]["row"]["Account.Clio_Id__c"] == "individual-client-account"
    assert r["individual-client-account"]["row"] == {"Clio_Id__c": "individual-client-account", "Name": "Individual Client"}
    assert [x["source_system_id"] for x in rows].count("individual-client-account") == 1
    # client billing preferences and the effective client rate as Contact custom fields
    assert row["Clio_Client_Rate__c"] == 500.0 and "highest of 2" in row["Clio_Client_Rate_Source__c"]
    assert row["Clio_Billing_Methods__c"] == "hourly"


def test_every_custom_field_type(spec, users):
    rows, _ = run("contacts", spec, users)
    row = by_sid(rows)["contact-9001"]["row"]
    assert row["Clio_Referral_Source__c"] == "Bar association"  # firm decision renames it
    assert row["Client_Since__c"] == "2019-04-01"
    assert row["VIP__c"] is True
    assert row["Preferred_Contact_Method__c"] == "Email"
    assert row["Annual_Retainer__c"] == 12000.5
    assert row["Number_of_Dependents__c"] == 2
    assert row["Billing_Notes__c"].startswith("Invoice quarterly.\n")
    assert row["Assistant_Email__c"] == "assistant@acme.test"
    assert row["Website__c"] == "https://acme.test"
    assert row["Best_Time_To_Call__c"] == "14:30:00"
    assert row["Referring_Contact__r.Clio_Id__c"] == "contact-9003"
    assert row["Related_Matter__r.Clio_Id__c"] == "matter-7"


def test_dirty_contacts_repairs_and_unicode(spec, users):
    rows, rejects = run("contacts", spec, users)
    r = by_sid(rows)
    assert r["contact-9002"]["row"]["FirstName"] == "José 🚀"  # emoji preserved
    assert "Email" not in r["contact-9002"]["row"] and r["contact-9002"]["row"]["Clio_Invalid_Email__c"] == "jo@@x"
    rej = {(x["source_system_id"], x["rule"]): x for x in rejects}
    email = rej[("contact-9002", "invalid_email")]
    assert email["repair"] == "email dropped, kept in Clio_Invalid_Email__c" and email["field"] == "Email"
    assert rej[("contact-9003", "required_missing")]["repair"] == "placeholder '(unknown)' used"
    assert r["contact-9003"]["row"]["LastName"] == "(unknown)"
    assert rej[("contact-9003", "bad_date")]["repair"] == "value dropped, field left empty"
    assert "Birthdate" not in r["contact-9003"]["row"]
    long = r["contact-9004"]["row"]
    assert len(long["LastName"]) == 80 and long["Clio_Full_Name__c"].endswith("Long")
    assert rej[("contact-9004", "too_long")]["repair"] == "truncated to 80, full value kept in Clio_Full_Name__c"
    for x in rejects:  # messages name the record and the field, never the body
        assert x["source_system_id"] in x["message"] and x["phase"] == "transform" and x["object"] == "contacts"


def test_matters_to_cases_with_owner_type_and_fallback(spec, users):
    rows, rejects = run("matters", spec, users)
    r = by_sid(rows)
    case = r["matter-7"]["row"]
    assert r["matter-7"]["sobject"] == "Case"
    assert case["Status"] == "Working" and case["Type"] == "Litigation" and case["Clio_Matter_Type__c"] == "Litigation"
    assert case["OwnerId"] == ANN and case["Contact.Clio_Id__c"] == "contact-9001" and case["Account.Clio_Id__c"] == "contact-9000"
    assert case["Clio_Court__c"] == "BCSC" and case["Statute_Date__c"] == "2026-01-31"
    assert case["Clio_Billing_Method__c"] == "Hourly"
    company = r["matter-8"]["row"]
    assert company["Account.Clio_Id__c"] == "contact-9000" and "Contact.Clio_Id__c" not in company
    assert company["OwnerId"] == FALLBACK and "matter-8" in users.fallback_records
    assert r["matter-9"]["row"]["Type"] == "Wills and Estates" and r["matter-9"]["row"]["Status"] == "Closed"
    assert r["rate-matter-9-91"]["row"]["Clio_Rate_Detail__c"] == "1/3"
    assert r["rate-matter-7-71"]["row"]["Clio_Rate__c"] == 425.0


def test_mixed_matter_mapping_opportunity_and_record_types(users):
    spec = load_spec("example_opportunities")
    rows, rejects = run("matters", spec, users)
    r = by_sid(rows)
    assert r["matter-7"]["sobject"] == "Case"  # Litigation stays a Case
    assert r["matter-7"]["row"]["RecordType.DeveloperName"] == "Litigation"
    opp = r["matter-8"]
    assert opp["sobject"] == "Opportunity"
    assert opp["row"]["StageName"] == "Prospecting" and opp["row"]["CloseDate"] == "2024-03-01"
    assert opp["row"]["Name"] == "00008-Acme Acme share purchase" and opp["row"]["Account.Clio_Id__c"] == "contact-9000"
    assert opp["row"]["RecordType.DeveloperName"] == "Corporate"
    assert r["rate-matter-8-81"]["row"]["Opportunity__r.Clio_Id__c"] == "matter-8"
    # an unmapped practice area: field left empty with a note, the record still loads
    assert any(x["source_system_id"] == "matter-9" and x["rule"] == "unknown_value" and x["repair"] == "field left empty" for x in rejects)
    assert "RecordType.DeveloperName" not in r["matter-9"]["row"]
    # children follow their matter's object: relationships, time entries, events
    rel_rows, _ = run("relationships", spec, users)
    assert {x["sobject"] for x in rel_rows} == {"CaseContactRole"}  # all on matter-7 (Litigation)
    items = copy.deepcopy(envelopes("activities"))
    items[0]["data"]["matter"] = {"id": 8}
    te, _ = run("activities", spec, users, items=items[:1])
    assert te[0]["row"]["Opportunity__r.Clio_Id__c"] == "matter-8" and "Case__r.Clio_Id__c" not in te[0]["row"]


def test_contact_with_several_roles_on_one_matter(spec, users):
    rows, rejects = run("relationships", spec, users)
    sam = [x for x in rows if x["row"]["Contact.Clio_Id__c"] == "contact-9003"]
    assert sorted(x["row"]["Role"] for x in sam) == ["Expert Witness", "Other", "Witness"]
    assert all(x["natural_key"] == ["CasesId", "ContactId", "Role"] and x["external_id_field"] is None for x in sam)
    assert all(x["row"]["Cases.Clio_Id__c"] == "matter-7" for x in sam)
    assert len({x["source_system_id"] for x in rows}) == len(rows)
    orphan = [x for x in rejects if x["rule"] == "orphan_reference"]
    assert orphan and orphan[0]["source_system_id"] == "relationship-504" and orphan[0]["repair"] is None


def test_opportunity_contact_roles(users):
    data = copy.deepcopy(load_spec(None).data)
    data["options"]["matter_object"] = "Opportunity"
    spec = spec_from_dict(data)
    rows, _ = run("relationships", spec, users)
    assert {x["sobject"] for x in rows} == {"OpportunityContactRole"}
    assert rows[0]["row"]["Opportunity.Clio_Id__c"] == "matter-7" and rows[0]["row"]["Role"] == "Other"


def test_time_entries_expenses_and_non_billable(spec, users):
    rows, rejects = run("activities", spec, users)
    r = by_sid(rows)
    te = r["activity-31"]
    assert te["sobject"] == "Time_Entry__c"
    assert te["row"] | {} == te["row"] and te["row"]["Clio_Hours__c"] == 1.5 and te["row"]["Clio_Rate__c"] == 300.0
    assert te["row"]["Clio_Total__c"] == 450.0 and te["row"]["OwnerId"] == ANN and te["row"]["Case__r.Clio_Id__c"] == "matter-7"
    task = r["activity-32"]
    assert task["sobject"] == "Task" and task["row"]["Type"] == "Time Entry" and task["row"]["Status"] == "Completed"
    assert task["row"]["Clio_Hours__c"] == 0.5 and task["row"]["OwnerId"] == BO and task["row"]["Case:What.Clio_Id__c"] == "matter-7"
    exp = r["activity-33"]["row"]
    assert r["activity-33"]["sobject"] == "Expense__c"
    assert exp["Clio_Amount__c"] == 85.0 and exp["Clio_Vendor__c"] == "BC Court Services" and exp["Clio_Category__c"] == "Filing fees"
    assert exp["Clio_Billable__c"] is True
    bad = [x for x in rejects if x["source_system_id"] == "activity-34"]
    assert bad and bad[0]["rule"] == "bad_date" and bad[0]["repair"] is None and "activity-34" not in r


def test_recurring_event_with_exceptions_and_all_day(spec, users):
    rows, rejects = run("calendar_entries", spec, users)
    events = {x["source_system_id"]: x["row"] for x in rows if x["sobject"] == "Event"}
    series = sorted(k for k in events if k.startswith("calendar_entry-40@"))
    # weekly on Mondays from 4 March to 1 April: 18 March is an EXDATE, 25 March is overridden by entry 41
    assert series == ["calendar_entry-40@20240304T150000Z", "calendar_entry-40@20240311T140000Z", "calendar_entry-40@20240401T140000Z"]
    first = events["calendar_entry-40@20240304T150000Z"]
    assert first["StartDateTime"] == "2024-03-04T10:00:00-05:00" and first["EndDateTime"] == "2024-03-04T11:00:00-05:00"
    assert events["calendar_entry-40@20240311T140000Z"]["StartDateTime"] == "2024-03-11T10:00:00-04:00"  # DST kept
    assert first["Location"] == "Boardroom 2" and first["OwnerId"] == ANN and first["Case:What.Clio_Id__c"] == "matter-7"
    assert first["Clio_Series_Id__c"] == "calendar_entry-40"
    assert events["calendar_entry-41"]["Clio_Series_Id__c"] == "calendar_entry-40"
    rel = [x for x in rows if x["sobject"] == "EventRelation" and x["row"]["Event.Clio_Id__c"] == series[0]]
    assert {"Contact:Relation.Clio_Id__c": "contact-9001", "Event.Clio_Id__c": series[0], "IsInvitee": True} in [x["row"] for x in rel]
    assert any(x["row"].get("RelationId") == BO for x in rel)
    trial = events["calendar_entry-42"]
    assert trial["IsAllDayEvent"] is True and trial["ActivityDate"] == "2024-05-06"
    assert trial["EndDateTime"].startswith("2024-05-07")
    long = events["calendar_entry-43"]
    assert long["EndDateTime"] == "2024-06-15T09:00:00+00:00"
    assert any(x["rule"] == "event_too_long" and x["repair"].startswith("end moved") for x in rejects)
    bad = [x for x in rejects if x["source_system_id"] == "calendar_entry-44"]
    assert bad[0]["rule"] == "bad_recurrence" and "calendar_entry-44" not in events


def test_overlong_event_rejected_when_configured(users):
    data = copy.deepcopy(load_spec(None).data)
    data["options"]["event_too_long"] = "reject"
    rows, rejects = run("calendar_entries", spec_from_dict(data), users, items=envelopes("calendar_entries")[3:4])
    assert rows == [] and rejects[0]["rule"] == "event_too_long" and rejects[0]["repair"] is None


def test_recurrence_horizon_bounds_open_series(spec, users):
    item = copy.deepcopy(envelopes("calendar_entries")[0])
    item["data"]["recurrence_rule"] = "FREQ=DAILY"
    rows, _ = run("calendar_entries", spec, users, items=[item], lookup={})
    events = [x for x in rows if x["sobject"] == "Event"]
    assert 290 < len(events) < 310  # 4 March 2024 .. 1 January 2025


def test_tasks_communications_notes(spec, users):
    rows, _ = run("tasks", spec, users)
    r = by_sid(rows)
    t = r["task-12"]["row"]
    assert t["Status"] == "In Progress" and t["Priority"] == "High" and t["ActivityDate"] == "2024-03-15"
    assert t["OwnerId"] == ANN and t["Case:What.Clio_Id__c"] == "matter-7" and t["Clio_Created_Date__c"] == "2024-02-01T10:00:00-05:00"
    t2 = r["task-13"]["row"]
    assert t2["Contact:Who.Clio_Id__c"] == "contact-9001" and t2["OwnerId"] == FALLBACK and t2["Status"] == "Completed"
    rows, _ = run("communications", spec, users)
    r = by_sid(rows)
    assert r["communication-8"]["row"]["TaskSubtype"] == "Email" and r["communication-9"]["row"]["TaskSubtype"] == "Call"
    assert r["communication-8"]["row"]["Contact:Who.Clio_Id__c"] == "contact-9004"
    assert r["communication-8"]["row"]["Clio_Received_At__c"] == "2024-03-08T14:05:00-05:00"
    rows, _ = run("matter_notes", spec, users)
    note = by_sid(rows)["note-19"]
    assert note["sobject"] == "ContentNote" and note["row"]["Content"].startswith("<p>Client called.</p>")
    assert "&lt;fast&gt;" in note["row"]["Content"]
    link = by_sid(rows)["note-19#matter-7"]["row"]
    assert link["ContentNote.source_system_id"] == "note-19" and link["Case:LinkedEntity.Clio_Id__c"] == "matter-7"


def test_bills_ledger_documents_rates(spec, users):
    rows, rejects = run("bills", spec, users)
    bill = by_sid(rows)["bill-555"]["row"]
    assert bill["Clio_Status__c"] == "Awaiting Payment" and bill["Clio_Balance__c"] == 1000.0
    assert bill["Case__r.Clio_Id__c"] == "matter-7" and bill["Contact__r.Clio_Id__c"] == "contact-9001"
    assert [x["rule"] for x in rejects if x["source_system_id"] == "bill-556"] == ["unknown_value"]
    rows, _ = run("bank_transactions", spec, users)
    led = rows[0]["row"]
    assert rows[0]["sobject"] == "Ledger__c" and led["Clio_Billing__r.Clio_Id__c"] == "bill-555" and led["Clio_Amount__c"] == 2500.0
    rows, rejects = run("documents", spec, users)
    r = by_sid(rows)
    cv = r["document-55@v2"]["row"]
    assert cv["_blob_path"] == "blobs/documents/55/551" and cv["PathOnClient"] == "claim-v2.pdf" and cv["Clio_Document_Id__c"] == "document-55"
    assert r["document-55@v2#matter-7"]["row"]["Case:LinkedEntity.Clio_Id__c"] == "matter-7"
    assert r["document-55@v2#contact-9001"]["row"]["Contact:LinkedEntity.Clio_Id__c"] == "contact-9001"
    assert rejects[0]["rule"] == "deleted_in_clio"
    for name in ("users", "activity_rates", "activity_descriptions"):
        rows, _ = run(name, spec, users)
        assert rows and all(x["sobject"] == "Rate_Structure__c" for x in rows)
    assert by_sid(run("activity_rates", spec, users)[0])["rate-client-62"]["row"]["Contact__r.Clio_Id__c"] == "contact-9001"


def test_orphan_bill_reference_and_unmapped_owner(spec):
    items = copy.deepcopy(envelopes("bank_transactions"))
    items[0]["data"]["bill"] = {"id": 999}
    _, rejects = run("bank_transactions", spec, UserMap({}, None), items=items)
    assert rejects[0]["rule"] == "orphan_reference" and "bill-999" in rejects[0]["message"]
    _, rejects = run("tasks", spec, UserMap({}, None), items=envelopes("tasks")[:1])
    assert rejects[0]["rule"] == "unmapped_owner"


def test_generators_and_unknown_object(spec, users):
    gen = transform_object("contacts", iter(envelopes("contacts")), spec, users)
    assert next(gen)["source_system_id"] == "contact-9000"  # lazy: pulls one record at a time
    with pytest.raises(ValueError, match="no transform"):
        list(transform_object("webhooks", [], spec, users))
    assert set(PRODUCES) >= {"contacts", "matters", "relationships", "activities", "calendar_entries", "documents"}


# --- owners, attendees and teams: Clio users vs calendars vs unmatched users -------------------


def _entry(**over) -> dict:
    item = copy.deepcopy(envelopes("calendar_entries")[2])  # a one-off entry
    item["data"].update(over)
    return item


def test_event_owner_is_the_user_whose_calendar_it_is(spec, users):
    """calendar_owner.id is a *calendar* id: its user (default_calendar_id) owns the Event, not the fallback."""
    rows, rejects = run("calendar_entries", spec, users, items=[_entry(calendar_owner={"id": 802, "type": "UserCalendar"},
                                                                     attendees=[])], lookup={})
    event = next(x["row"] for x in rows if x["sobject"] == "Event")
    assert event["OwnerId"] == BO
    assert not [x for x in rejects if x["rule"] == "owner_fallback"]


def test_event_on_a_firm_calendar_falls_back_and_is_listed(spec, users):
    item = _entry(calendar_owner={"id": 800, "type": "AccountCalendar"}, attendees=[])
    rows, rejects = run("calendar_entries", spec, users, items=[item], lookup={})
    event = next(x["row"] for x in rows if x["sobject"] == "Event")
    assert event["OwnerId"] == FALLBACK
    listed = [x for x in rejects if x["rule"] == "owner_fallback"]
    assert len(listed) == 1 and listed[0]["field"] == "OwnerId" and "calendar 800" in listed[0]["message"]
    assert listed[0]["source_system_id"] == item["source_system_id"] and FALLBACK in listed[0]["repair"]


def test_calendar_attendees_become_event_relations_of_their_users(spec, users):
    item = _entry(attendees=[{"id": 801, "type": "Calendar", "name": "Ann"}, {"id": 802, "type": "Calendar", "name": "Bo"},
                             {"id": 1002, "type": "User", "name": "Bo again"}, {"id": 800, "type": "Calendar", "name": "Firm"}])
    rows, rejects = run("calendar_entries", spec, users, items=[item], lookup={})
    rel = [x for x in rows if x["sobject"] == "EventRelation"]
    assert sorted(x["row"]["RelationId"] for x in rel) == sorted([ANN, BO, BO])
    assert {x["source_system_id"].rsplit("#", 1)[1] for x in rel} == {"user-1001", "user-1002"}
    note = [x for x in rejects if x["rule"] == "unmapped_attendee"]
    assert len(note) == 1 and "Calendar 800" in note[0]["message"] and "no user's own calendar" in note[0]["message"]


def test_unmatched_attendee_note_names_the_user():
    users = UserMap({1001: ANN, 1002: FALLBACK}, FALLBACK, unmatched=[1002], calendars={801: 1001, 802: 1002})
    item = _entry(attendees=[{"id": 802, "type": "Calendar", "name": "Bo"}])
    rows, rejects = run("calendar_entries", load_spec("harlow_vance"), users, items=[item], lookup={})
    assert not [x for x in rows if x["sobject"] == "EventRelation"]  # never the fallback owner as attendee
    note = [x for x in rejects if x["rule"] == "unmapped_attendee"]
    assert "user 1002 has no matched Salesforce user" in note[0]["message"]


def test_unmatched_attorney_is_left_off_the_team_not_replaced_by_the_fallback(spec):
    """The user map lists unmatched users with the fallback owner as their owner id: never a team member."""
    doc = {"users": {"1001": ANN, "1002": FALLBACK}, "fallback_owner": FALLBACK,
           "status": {"1001": "matched", "1002": "unmatched"}}
    users = UserMap.from_json(doc)
    matter = copy.deepcopy(envelopes("matters")[0])
    matter["data"]["responsible_attorney"] = {"id": 1002, "name": "Bo"}
    matter["data"]["originating_attorney"] = {"id": 1001, "name": "Ann"}
    rows, rejects = run("matters", spec, users, items=[matter])
    team = [x["row"] for x in rows if x["sobject"] == "CaseTeamMember"]
    assert [t["MemberId"] for t in team] == [ANN]
    assert any(x["rule"] == "unmapped_team_member" and x["field"] == "responsible_attorney" for x in rejects)
    case = next(x["row"] for x in rows if x["sobject"] == "Case")
    assert case["OwnerId"] == FALLBACK  # the owner falls back, and says so
    assert any(x["rule"] == "owner_fallback" and x["source_system_id"] == matter["source_system_id"] for x in rejects)


def test_occurrences_across_a_daylight_saving_change_keep_the_exact_duration(spec, users):
    """RFC 5545 3.8.5.3: DTEND gives every occurrence the same exact duration; the start keeps its wall time."""
    entry = copy.deepcopy(next(e for e in envelopes("calendar_entries") if e["clio_id"] == "40"))
    d = entry["data"]
    d.update(start_at="2024-10-27T00:30:00-05:00", end_at="2024-10-27T02:30:00-05:00", start_at_time_zone="America/Chicago",
             recurrence_rule="RRULE:FREQ=WEEKLY;COUNT=3")  # the 3 November occurrence spans the 02:00 fall-back
    rows, rejects = run("calendar_entries", spec, users, items=[entry])
    events = {x["source_system_id"]: x["row"] for x in rows if x["sobject"] == "Event"}
    from datetime import datetime

    starts = {k: datetime.fromisoformat(v["StartDateTime"]) for k, v in events.items()}
    assert sorted(v.isoformat() for v in starts.values()) == [
        "2024-10-27T00:30:00-05:00", "2024-11-03T00:30:00-05:00", "2024-11-10T00:30:00-06:00"]  # wall time kept
    for k, row in events.items():
        assert datetime.fromisoformat(row["EndDateTime"]) - starts[k] == timedelta(hours=2), (k, row["EndDateTime"])
    across = next(row for k, row in events.items() if k.endswith("@20241103T053000Z"))
    assert across["EndDateTime"] == "2024-11-03T01:30:00-06:00"  # 07:30Z: two hours after 05:30Z


class _Text(str):
    pass


@pytest.mark.parametrize("kind", ["text", "number", "date", "datetime", "bool", "json"])
@pytest.mark.parametrize("source", ["name", "a.b", ["x", "name"], "items[0].v", "{name} and {a.b}"])
@pytest.mark.parametrize("limit", [None, {"max": 3}, {"max": 3, "overflow": "Long__c"}, {"max": 0}])
def test_a_plain_field_sets_what_the_general_field_function_sets(spec, kind, source, limit):
    """compile_field's plain function (a field neither required, a reference, value-mapped nor an email) writes
    the row, the overflows and the issues the general one writes, for values of every kind and a few bad ones."""
    from clio2sf.mapping.fields import Issues, compile_field

    fspec = {("template" if isinstance(source, str) and "{" in source else "from"): source, "as": kind, **(limit or {})}
    plain, general = compile_field("F__c", fspec, spec), compile_field("F__c", fspec, spec, plain=False)
    assert plain.__name__ != general.__name__  # the plain one is another function
    for value in [None, "", "abc", "abcdef", _Text("abcdef"), " 2024-03-01 ", "2024-03-01T10:00:00-05:00",
                  "2024-03-01T10:00:00", "0099-01-01", "12", "1,234.5", "1,5", "nan", "yes", "maybe", 0, 7, 2.5,
                  float("nan"), True, False, {"k": [1, "é"]}, [3], "é" * 5]:
        d = {"name": value, "a": {"b": value}, "x": None, "items": [{"v": value}]}
        got = []
        for fn in (plain, general):
            row, issues, overflows = {"Other": 1}, Issues("contact-1", []), []
            fn(d, row, issues, overflows)
            got.append((row, issues.items, overflows))
        assert repr(got[0]) == repr(got[1]), (value, got)  # repr: a NaN equals itself there


GOLDEN = Path(__file__).parent / "fixtures" / "transform_golden.json"


def transform_digests(work: Path) -> dict[str, list]:
    """Every mapping fixture object staged as one raw batch and run through ``pipeline.transform_batch`` (the
    transform task's function) with the harlow_vance spec and with the default one, a fixed recurrence horizon
    and the fixtures' look-ups: ``{output file: [lines, sha256 of its decompressed bytes]}`` (no record bodies)."""
    import gzip
    import hashlib
    from datetime import UTC, datetime

    from clio2sf import pipeline, staging
    from clio2sf.mapping.transform import PRODUCES

    from .conftest import FIXTURES, lookup_all

    users = UserMap({1001: ANN, 1002: BO}, FALLBACK, calendars={801: 1001, 802: 1002})
    out: dict[str, list] = {}
    for spec_name in ("harlow_vance", None):
        spec, root = load_spec(spec_name), work / (spec_name or "default")
        for path in sorted(FIXTURES.glob("*.json")):
            name = path.stem
            if name not in PRODUCES or not isinstance(envs := envelopes(name), list):
                continue
            raw = work / "raw" / name / staging.batch_name(1)
            staging.write_jsonl_gz(raw, envs)
            pipeline.transform_batch(raw, name, spec, users, lookup_all(), root, horizon=datetime(2026, 6, 1, tzinfo=UTC))
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
            out[f"{root.name}/{f.relative_to(root)}"] = [data.count(b"\n"), hashlib.sha256(data).hexdigest()]
    return out


def test_the_transform_writes_what_it_wrote_on_the_fixtures(tmp_path):
    """Byte for byte what the transform wrote before lane 31b's changes (main aa9f79d) for every fixture object under
    two specs: the transformed files (decompressed) and the rejects.  A change of the output on purpose
    regenerates the golden (``transform_digests``) and says why in its commit."""
    got = transform_digests(tmp_path)
    assert len(got) > 30
    assert got == json.loads(GOLDEN.read_text(encoding="utf-8"))


def _field_entries() -> list[tuple[str, dict, str | None]]:
    """Field entries of every shape compile_fields writes in place or leaves to the field's own function."""
    return [
        ("Text__c", {"from": "name"}, None), ("Short__c", {"from": "name", "max": 3}, None),
        ("Over__c", {"from": "name", "max": 3, "overflow": "Long__c"}, None), ("Zero__c", {"from": "name", "max": 0}, None),
        ("Two__c", {"from": "a.b", "max": 4}, None), ("TwoNum__c", {"from": "a.b", "as": "number"}, None),
        ("Num__c", {"from": "name", "as": "number"}, None), ("Bool__c", {"from": "a.b", "as": "bool"}, None),
        ("Date__c", {"from": "name", "as": "date"}, None), ("When__c", {"from": "a.b", "as": "datetime"}, None),
        ("ReqDate__c", {"from": "a.b", "as": "date", "required": True, "placeholder": "2000-01-01"}, None),
        ("ShortDate__c", {"from": "name", "as": "date", "max": 9}, None),
        ("Json__c", {"from": "name", "as": "json"}, None), ("Mail__c", {"from": "name", "as": "email", "invalid_to": "Bad__c"}, None),
        ("Ref__r.Clio_Id__c", {"from": "a.b", "ref": "bill"}, None), ("Mapped__c", {"from": "name", "map": "matter_status_case"}, None),
        ("MappedShort__c", {"from": "a.b", "map": "matter_status_case", "max": 2}, None),
        ("MappedNum__c", {"from": "name", "map": "matter_status_case", "as": "number"}, None),
        ("Req__c", {"from": "name", "required": True, "placeholder": "(none)"}, None),
        ("ReqNum__c", {"from": "a.b", "as": "number", "required": True, "placeholder": "0"}, None),
        ("Const__c", {"const": "fixed"}, None), ("Tpl__c", {"template": "{name} / {a.b}", "max": 9}, None),
        ("List__c", {"from": ["x", "name"], "max": 5}, None), ("Item__c", {"from": "items[0].v"}, None),
        ("LastName", {"from": "name", "required": True}, "(placeholder)"),
        ("Long__c", {"from": "x"}, None),
        ("Street__c", {"from": "addrs[primary].street", "max": 5}, None), ("Zip__c", {"from": "addrs[primary].zip", "as": "number"}, None),
        ("First__c", {"from": "addrs[0].street"}, None), ("Deep__c", {"from": "addrs[primary].street.x"}, None),
    ]


def _values() -> list:
    return [None, "", "abc", "abcdef", _Text("abcdef"), " 2024-03-01 ", "2024-03-01T10:00:00-05:00", "2024-03-01T10:00:00",
            "0099-01-01", "12", "1,234.5", "1,5", "nan", "yes", "maybe", "Open", "Closed", "Pending", "a@b.example",
            0, 7, -3, 2.5, 1e300, float("nan"), float("inf"), True, False, {"k": [1, "é"]}, [3], "é" * 5,
            "2024-03-01", "1699-12-31", "4000-12-31", "2024-02-30", _Text("2024-03-01"), "2024-03-01 ", "2024-W09-5"]


def test_compiled_fields_set_what_each_field_function_sets(spec):
    """compile_fields (one function for an object's fields) writes the row (keys in the same order), the issues and
    the overflows, or raises, as the fields' own compile_field functions called in turn, for values of every kind."""
    from clio2sf.mapping.fields import compile_field, compile_fields

    entries = _field_entries()
    whole = compile_fields(entries, spec)
    each = [compile_field(t, f, spec, p) for t, f, p in entries]
    assert "row['Text__c'] = v" in whole.source and "row['Const__c'] = c" in whole.source  # fields set in place
    assert whole.source.count("primary_item(") == 1  # a list's primary item worked out once
    values = _values()
    for i, value in enumerate(values):
        other = values[(i * 7 + 3) % len(values)]
        addrs = [[{"street": value, "zip": other}, {"street": other, "zip": value, "primary": True}],
                 [{"street": value, "primary": False}, None], [None, {"street": value, "primary": 1}], [], value,
                 [_Map({"street": value, "primary": True, "zip": value})], [value, {"street": other}]][i % 7]
        for d in ({"name": value, "a": {"b": other}, "x": None, "items": [{"v": value}], "addrs": addrs},
                  {"name": other, "a": {"b": value}, "x": value, "addrs": [{"street": value, "zip": value}]},
                  {"name": value, "a": None}, {"a": [value]}, {"name": value, "a": _Map({"b": value}), "addrs": addrs[:1] if isinstance(addrs, list) else addrs}):
            got = [_fields_outcome([whole], d), _fields_outcome(each, d)]
            assert repr(got[0]) == repr(got[1]), (d, got)  # repr: a NaN equals itself there


def _fields_outcome(fns: list, d: dict) -> tuple:
    """(row items in order, issues, overflows, the rejection raised) of field functions called in turn on ``d``."""
    from clio2sf.mapping.fields import Issues, RecordRejected

    row, issues, overflows = {"Other": 1}, Issues("contact-1", []), []
    raised = None
    try:
        for fn in fns:
            fn(d, row, issues, overflows)
    except RecordRejected as exc:
        raised = (exc.field, exc.rule, str(exc))
    return list(row.items()), issues.items, overflows, raised


class _Map(Mapping):
    """A mapping that is not a dict (the two-key path's getter reads it)."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_compiled_fields_of_the_specs_set_what_each_field_function_sets(spec):
    """Every object of the default and the harlow_vance specs: compile_fields gives the fields' own functions' rows
    and issues on the mapping fixtures' records."""
    from clio2sf.mapping.fields import compile_field, compile_fields

    from .conftest import FIXTURES

    records = [e["data"] for p in sorted(FIXTURES.glob("*.json")) for e in envelopes(p.stem)
               if isinstance(e, dict) and isinstance(e.get("data"), dict)]
    assert len(records) > 30
    for one in (spec, load_spec(None)):
        for key, ospec in one.objects.items():
            entries = [(t, f, None) for t, f in (ospec.get("fields") or {}).items() if "owner" not in f]
            whole, each = compile_fields(entries, one), [compile_field(t, f, one) for t, f, _ in entries]
            for d in records:
                got = [_fields_outcome([whole], d), _fields_outcome(each, d)]
                assert repr(got[0]) == repr(got[1]), (key, d.get("id"), got)


def test_compile_fields_compiles_a_source_once_and_each_function_keeps_its_own_values(monkeypatch):
    """The same fields compiled again (a task's next raw batch of the object) reuse the code compiled the first
    time; a spec whose value maps and constants differ gives the same source, and each function reads its own."""
    import builtins

    from clio2sf.mapping import fields as fields_module

    calls = []

    def counting_compile(*args, **kwargs):
        calls.append(args[0])
        return builtins.compile(*args, **kwargs)

    monkeypatch.setattr(fields_module, "_CODE_CACHE", {})
    monkeypatch.setattr(fields_module, "compile", counting_compile, raising=False)
    data = copy.deepcopy(load_spec(None).data)
    other = copy.deepcopy(data)
    other["value_maps"]["matter_status_case"]["values"] = {"Open": "Escalated", "Pending": "On Hold", "Closed": "Done"}
    one, two = spec_from_dict(data), spec_from_dict(other)
    entries = [("Status", {"from": "status", "map": "matter_status_case"}, None), ("Kind__c", {"const": "A"}, None),
               ("Subject", {"from": "display_number", "max": 5}, None)]
    other_entries = [(t, {**f, "const": "B"} if "const" in f else f, p) for t, f, p in entries]
    first, again = fields_module.compile_fields(entries, one), fields_module.compile_fields(entries, one)
    second = fields_module.compile_fields(other_entries, two)
    assert len(calls) == 1 and first.source == again.source == second.source
    from clio2sf.mapping.fields import Issues

    rows = []
    for fn in (first, again, second):
        row = {}
        fn({"status": "Open", "display_number": "00012-Smith"}, row, Issues("matter-1", []), [])
        rows.append(row)
    assert rows[0] == rows[1] == {"Status": "Working", "Kind__c": "A", "Subject": "00012"}
    assert rows[2] == {"Status": "Escalated", "Kind__c": "B", "Subject": "00012"}


def test_to_number_keeps_ints_and_finite_floats_and_refuses_the_rest():
    """to_number's fast paths (an int, a finite float) give the value itself; a bool, NaN and infinities are refused."""
    import enum

    from clio2sf.mapping.values import BadValue, to_number

    class Level(enum.IntEnum):
        HIGH = 3

    for value in (0, 7, -3, 10**30, 2.5, -0.0, 1e308, 5e-324):
        got = to_number(value)
        assert got == value and type(got) is type(value)
    assert to_number(Level.HIGH) is Level.HIGH  # an int subclass: the value itself, as before
    for value in (True, False, float("nan"), float("inf"), float("-inf"), None, [1]):
        with pytest.raises(BadValue):
            to_number(value)
    assert to_number(" 12 ") == 12 and to_number("1,234.5") == 1234.5 and to_number("2.0") == 2.0


def test_to_date_and_to_datetime_give_what_the_general_parse_gives():
    """The fast paths of ``YYYY-MM-DD`` and ``YYYY-MM-DDTHH:MM:SS+HH:MM`` texts (the text itself) give what
    parsing and ``isoformat`` gave before them, and refuse what they refused, with the same rule and message."""
    import itertools
    from datetime import date, datetime

    from clio2sf.mapping.values import BadValue, _in_sf_range, to_date, to_datetime

    def old_date(value):  # to_date before the fast path
        day = None
        if isinstance(value, datetime):
            day = value.date()
        elif isinstance(value, date):
            day = value
        elif isinstance(value, str):
            text = value.strip()
            try:
                day = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).date()
            except ValueError:
                pass
        if day is None:
            raise BadValue("bad_date", f"{value!r} is not a date")
        _in_sf_range(value, day, "bad_date")
        return day.isoformat()

    def old_datetime(value):  # to_datetime before the fast path
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                raise BadValue("bad_datetime", f"{value!r} is not an ISO 8601 date-time") from None
        elif isinstance(value, datetime):
            parsed = value
        else:
            raise BadValue("bad_datetime", f"{value!r} is not an ISO 8601 date-time")
        if parsed.tzinfo is None:
            raise BadValue("bad_datetime", f"{value!r} has no UTC offset")
        _in_sf_range(value, parsed.date(), "bad_datetime")
        return parsed.isoformat()

    def outcome(fn, value):
        try:
            return "ok", fn(value)
        except BadValue as exc:
            return exc.rule, str(exc)

    years = ["2024", "1700", "1699", "4000", "4001", "0999", "9999", "0000", "２０２４", "+024", " 202", "20x4"]
    months = ["01", "02", "12", "13", "00", "1-", "٠١"]
    days = ["01", "28", "29", "30", "31", "32", "00", "1 ", "W1"]
    dates = [f"{y}-{m}-{d}" for y, m, d in itertools.product(years, months, days)]
    dates += ["2024-W03-1", "2024-W031", "20240115", " 2024-01-15", "2024-01-15 ", "2024/01/15", "2024-01-15T10:00:00+05:00",
              "2024-01-15T10:00:00", "2024-1-15", "", "2023-02-29", "2024-02-29"]
    times = ["10:30:00", "00:00:00", "23:59:59", "24:00:00", "10:60:00", "10:30:60", "10:30:0Z", "1O:30:00"]
    offsets = ["+00:00", "-00:00", "+05:30", "-05:00", "+23:59", "+24:00", "-12:60", "Z", "+0500", "+05:00:30", "+05:3x"]
    stamps = [f"{d}{sep}{t}{o}" for d in ["2024-01-15", "1700-01-01", "1699-12-31", "4000-12-31", "4001-01-01", "2023-02-29"]
              for sep in ("T", " ", "t") for t in times for o in offsets]
    stamps += ["2024-01-15T10:30:00.5+05:00", "2024-01-15T10:30:00.123456-05:00", "2024-01-15T10:30+05:00",
               " 2024-01-15T10:30:00+05:0", "2024-01-15T10:30:00+05:00 ", "2024-01-15T10:30:00+05:00\n"]
    for value in dates + stamps + [date(2024, 1, 15), datetime(2024, 1, 15, 10, 30), None, 20240115]:
        assert outcome(to_date, value) == outcome(old_date, value), value
        assert outcome(to_datetime, value) == outcome(old_datetime, value), value
    assert to_date("2024-01-15") == "2024-01-15" and to_datetime("2024-01-15T10:30:00-05:00") == "2024-01-15T10:30:00-05:00"


def test_custom_field_values_set_what_the_type_by_type_conversion_sets(spec, users):
    """_custom_field_values' shortcuts (a plain text of a text_line or url field set as it is, the field's label
    written only for an issue, the target cache read in place) give the row and issues the conversion of every
    value by its type gave: every field type with texts short and long, str subclasses, numbers, bad values,
    soft-deleted and unnamed fields, a field the spec skips."""
    import itertools

    from clio2sf.mapping.fields import Issues
    from clio2sf.mapping.transform import (
        BadValue,
        _Ctx,
        _custom_field_values,
        is_email,
        to_bool,
        to_date,
        to_number,
    )

    def reference(ctx, parent_type, d, row, issues):  # _custom_field_values before the shortcuts
        for cfv in d.get("custom_field_values") or ():
            if cfv.get("soft_deleted"):
                continue
            name = cfv.get("field_name")
            target = ctx.custom_field_target(parent_type, name) if name else None
            if target is None:
                continue
            value = cfv.get("value")
            if value is None or value == "":
                continue
            ftype = cfv.get("field_type")
            field = f"custom field {name!r}"
            try:
                if ftype in ("numeric", "currency"):
                    row[target] = to_number(value)
                elif ftype == "date":
                    row[target] = to_date(value)
                elif ftype == "checkbox":
                    row[target] = to_bool(value)
                elif ftype == "picklist":
                    row[target] = (cfv.get("picklist_option") or {}).get("option") or str(value)
                elif ftype == "email":
                    if not is_email(str(value)):
                        issues.add(field, "invalid_email", f"{issues.sid}: {field} {value!r} is not a valid address", "value dropped, field left empty")
                    else:
                        row[target] = str(value)
                elif ftype == "contact":
                    ref = (cfv.get("contact") or {}).get("id", value)
                    row[target[:-3] + "__r.Clio_Id__c"] = f"contact-{ref}"
                elif ftype == "matter":
                    ref = (cfv.get("matter") or {}).get("id", value)
                    row[target[:-3] + "__r.Clio_Id__c"] = f"matter-{ref}"
                elif ftype == "time":
                    row[target] = str(value)[:8]
                elif ftype == "text_line" or ftype == "url":
                    text = str(value)
                    if len(text) > 255:
                        issues.add(field, "too_long", f"{issues.sid}: {field} has {len(text)} characters (max 255)", "truncated to 255")
                        text = text[:255]
                    row[target] = text
                else:
                    row[target] = str(value)[:131072]
            except BadValue as exc:
                issues.add(field, exc.rule, f"{issues.sid}: {field}: {exc}", "value dropped, field left empty")

    class Text(str):
        pass

    types = ["text_line", "url", "text_area", "numeric", "currency", "date", "checkbox", "picklist", "email", "contact",
             "matter", "time", None, "newer"]
    values = [None, "", "x", "a" * 255, "a" * 256, Text("sub"), Text("b" * 300), 12, 2.5, True, "12.5", "1,5", "2024-01-15",
              "2024-13-01", "yes", "maybe", "a@b.co", "not an email", "10:30:00 am", "7", ["x"]]
    names = ["Court", "", None, "Skipped Field"]
    spec_dict = spec.options.get("custom_fields") or {}
    assert not (spec_dict.get("decisions") or {}).get("Matter:Court", {}).get("skip")
    compared = 0
    for parent in ("Matter", "Contact"):
        ctx_new, ctx_old = _Ctx(spec, users, None, None), _Ctx(spec, users, None, None)
        ctx_new._cf_cache[(parent, "Skipped Field")] = ctx_old._cf_cache[(parent, "Skipped Field")] = None
        for ftype, value, name, deleted in itertools.product(types, values, names, (False, True)):
            cfvs = [{"field_name": name, "field_type": ftype, "value": value, "soft_deleted": deleted,
                     "picklist_option": {"option": "Opt"} if value == "x" else None, "contact": {"id": 9}, "matter": None},
                    {"field_name": "Second", "field_type": "text_line", "value": value}]
            got_row, want_row = {"Name": "n"}, {"Name": "n"}
            got, want = Issues("matter-1", []), Issues("matter-1", [])
            _custom_field_values(ctx_new, parent, {"custom_field_values": cfvs}, got_row, got)
            reference(ctx_old, parent, {"custom_field_values": cfvs}, want_row, want)
            assert (got_row, got.items) == (want_row, want.items), (ftype, value, name, deleted)
            assert [type(v) for v in got_row.values()] == [type(v) for v in want_row.values()]
            compared += 1
    assert compared > 4000


def test_a_primary_step_reads_the_first_primary_mapping_else_the_first_item():
    """``a[primary].b``: the first item of the list that is a mapping with a true ``primary``, else the first item;
    None when the list is empty or not a list (compile_path and compile_fields read it so)."""
    from clio2sf.mapping.fields import compile_fields
    from clio2sf.mapping.values import compile_path

    def reference(items):  # what the getter's generator expression gave before lane 31b
        if not isinstance(items, list) or not items:
            return None
        first = next((x for x in items if isinstance(x, Mapping) and x.get("primary")), items[0])
        return first.get("b") if isinstance(first, Mapping) else None

    cases = [[{"b": 1}, {"b": 2, "primary": True}], [{"b": 1, "primary": 0}, {"b": 2, "primary": ""}],
             [None, {"b": 3, "primary": 1}], [{"b": 4}, None], [None, {"b": 5}], [7, {"b": 6}], [], None, "ab",
             [_Map({"b": 8, "primary": True})], [{"b": 9, "primary": True}, {"b": 10, "primary": True}], [[1]]]
    get = compile_path("a[primary].b")
    fields = compile_fields([("B__c", {"from": "a[primary].b", "as": "json"}, None)], load_spec(None))
    for items in cases:
        assert get({"a": items}) == reference(items), items
        row: dict = {}
        fields({"a": items}, row, None, [])
        assert row == ({} if reference(items) is None else {"B__c": json.dumps(reference(items))}), items


def test_the_first_orphan_bill_column_in_row_order_rejects_whatever_columns_a_row_has(users):
    """The generic handler checks every ``...__r.Clio_Id__c`` column holding ``bill-<id>`` against the bills look-up,
    in the row's column order, on rows of different column sets (an empty value leaves its column out)."""
    data = copy.deepcopy(load_spec(None).data)
    fields = data["objects"]["Ledger__c"]["fields"]
    data["objects"]["Ledger__c"]["fields"] = {"Early_Bill__r.Clio_Id__c": {"from": "source", "ref": "bill"}, **fields,
                                              "Late_Bill__r.Clio_Id__c": {"from": "bank_account_id", "ref": "bill"},
                                              "Note_Bill__r.Clio_Id__c": {"from": "description"}}
    spec = spec_from_dict(data)
    base = copy.deepcopy(envelopes("bank_transactions")[0])
    base["data"] |= {"source": None, "bank_account_id": None, "description": "a deposit"}
    cases = [({"source": "998", "bill": {"id": 999}}, "Early_Bill__r.Clio_Id__c", "bill-998"),
             ({"bill": {"id": 999}, "bank_account_id": 997}, "Clio_Billing__r.Clio_Id__c", "bill-999"),
             ({"bill": None, "bank_account_id": 997}, "Late_Bill__r.Clio_Id__c", "bill-997"),
             ({"bill": {"id": 555}, "bank_account_id": 555, "description": "bill-12"}, "Note_Bill__r.Clio_Id__c", "bill-12"),
             ({"bill": {"id": 555}, "description": "bill-555"}, None, None),
             ({"source": "998", "bill": {"id": 999}}, "Early_Bill__r.Clio_Id__c", "bill-998")]
    items = []
    for i, (change, _, _) in enumerate(cases):
        item = copy.deepcopy(base)
        item["source_system_id"] = f"bank_transaction-{i}"
        item["data"] |= change
        items.append(item)
    rows, rejects = run("bank_transactions", spec, users, items=items)
    got = {r["source_system_id"]: (r["field"], r["message"].split(" points at ")[1].split(",")[0]) for r in rejects
           if r["rule"] == "orphan_reference"}
    want = {f"bank_transaction-{i}": (col, ref) for i, (_, col, ref) in enumerate(cases) if col is not None}
    assert got == want
    assert [r["source_system_id"] for r in rows] == ["bank_transaction-4"]
