"""Issue 10, pure parts: communications, notes, Account-Contact relations, matter teams, loader rules."""

from __future__ import annotations

import pytest

from clio2sf.load import Envelope, case_team_role_ids, prepare_rows
from clio2sf.mapping.spec import load_spec
from clio2sf.mapping.transform import split, transform_object
from clio2sf.mapping.users import UserMap

pytestmark = pytest.mark.unit

U1, U2, FALLBACK = "005000000000001AAA", "005000000000002AAA", "005000000000009AAA"


@pytest.fixture(scope="module")
def spec():
    return load_spec(None)


@pytest.fixture
def users():
    return UserMap({1001: U1, 1002: U2}, fallback=FALLBACK)


def env(obj: str, sid: str, data: dict) -> dict:
    return {"object": obj, "source_system_id": sid, "clio_id": data["id"], "data": data,
            "original_create_date": data.get("created_at")}


COMPANIES = {20001: {"type": "Company"}, 20002: {"type": "Company"}, 20003: {"type": "Company"},
             20010: {"type": "Person"}}


def test_communication_is_a_completed_email_task_with_its_original_time(spec, users):
    d = {"id": 8, "type": "EmailCommunication", "subject": "Settlement", "body": "a\nb", "date": "2024-03-01",
         "received_at": "2024-03-01T09:30:00-05:00", "created_at": "2024-03-01T09:31:00-05:00",
         "user": {"id": 1001}, "matter": {"id": 7},
         "senders": [{"id": 20001, "type": "Company", "name": "Acme"}, {"id": 20010, "type": "Person", "name": "Jo Doe"}],
         "receivers": [{"id": 1001, "type": "User", "name": "Ann Lee"}]}
    rows, rejects = split(transform_object("communications", [env("communications", "communication-8", d)], spec, users,
                                           lookup={"contacts": COMPANIES, "matters": {7: {}}}))
    assert not rejects
    row = rows[0]["row"]
    assert row["TaskSubtype"] == "Email" and row["Type"] == "Email" and row["Status"] == "Completed"
    assert row["ActivityDate"] == "2024-03-01"
    assert row["CreatedDate"] == row["Clio_Received_At__c"] == "2024-03-01T09:30:00-05:00"
    assert row["Case:What.Clio_Id__c"] == "matter-7"
    assert row["Contact:Who.Clio_Id__c"] == "contact-20010"  # the company sender is an Account, not a Who
    assert row["Clio_Participants__c"] == "From: Acme, Jo Doe; To: Ann Lee"
    assert row["OwnerId"] == U1


def test_phone_call_and_unknown_kind(spec, users):
    base = {"subject": "s", "date": "2024-03-01", "received_at": "2024-03-01T09:30:00Z", "user": {"id": 1002}}
    rows, rejects = split(transform_object("communications", [
        env("communications", "communication-1", {"id": 1, "type": "PhoneCommunication", **base}),
        env("communications", "communication-2", {"id": 2, "type": "Fax", **base})], spec, users))
    assert [r["row"]["TaskSubtype"] for r in rows] == ["Call"]
    bad = [r for r in rejects if r["repair"] is None]
    assert bad and bad[0]["source_system_id"] == "communication-2" and bad[0]["field"] == "TaskSubtype"


def test_note_keeps_author_and_original_timestamps_and_escapes_text(spec, users):
    d = {"id": 19, "type": "Matter", "subject": "Strategy", "detail": "x < y & z", "matter": {"id": 7},
         "author": {"id": 1002}, "created_at": "2024-01-02T10:00:00Z", "updated_at": "2024-01-05T10:00:00Z"}
    rows, rejects = split(transform_object("matter_notes", [env("matter_notes", "note-19", d)], spec, users))
    assert not rejects
    note = next(r for r in rows if r["sobject"] == "ContentNote")["row"]
    assert note["Content"] == "<p>x &lt; y &amp; z</p>"
    assert note["OwnerId"] == U2
    assert (note["CreatedDate"], note["LastModifiedDate"]) == ("2024-01-02T10:00:00+00:00", "2024-01-05T10:00:00+00:00")
    link = next(r for r in rows if r["sobject"] == "ContentDocumentLink")["row"]
    assert link["ContentNote.source_system_id"] == "note-19" and link["Case:LinkedEntity.Clio_Id__c"] == "matter-7"


def test_person_with_three_companies_gets_one_account_and_two_relations(spec, users):
    d = {"id": 20010, "type": "Person", "first_name": "Jo", "last_name": "Doe", "title": "CEO", "company": None,
         "related_contacts": [{"id": 20001, "type": "Company"}, {"id": 20002, "type": "Company", "title": "CFO"},
                              {"id": 20003, "type": "Company"}, {"id": 20099, "type": "Person"}]}
    rows, rejects = split(transform_object("contacts", [env("contacts", "contact-20010", d)], spec, users,
                                           lookup={"contacts": COMPANIES}))
    assert not rejects
    contact = next(r for r in rows if r["sobject"] == "Contact")["row"]
    assert contact["Account.Clio_Id__c"] == "contact-20001"
    acr = [r for r in rows if r["sobject"] == "AccountContactRelation"]
    assert [(r["row"]["Account.Clio_Id__c"], r["row"]["Roles"]) for r in acr] == [
        ("contact-20002", "Economic Buyer"), ("contact-20003", "Other")]
    assert all(r["natural_key"] == ["AccountId", "ContactId"] and r["row"]["Contact.Clio_Id__c"] == "contact-20010"
               for r in acr)


def test_company_not_extracted_is_a_repair_not_a_relation(spec, users):
    d = {"id": 20010, "type": "Person", "last_name": "Doe", "company": {"id": 20001},
         "related_contacts": [{"id": 20077, "type": "Company"}]}
    rows, rejects = split(transform_object("contacts", [env("contacts", "contact-20010", d)], spec, users,
                                           lookup={"contacts": COMPANIES}))
    assert not [r for r in rows if r["sobject"] == "AccountContactRelation"]
    assert rejects[0]["rule"] == "orphan_reference" and "contact-20077" in rejects[0]["message"]
    assert rejects[0]["repair"] == "relationship not migrated"


def test_matter_team_for_case_and_opportunity(spec, users):
    d = {"id": 7, "description": "x", "status": "Open", "client": None, "open_date": "2024-01-01", "responsible_attorney": {"id": 1001},
         "originating_attorney": {"id": 1001}, "responsible_staff": [{"id": 1002}, {"id": 1003}]}
    rows, rejects = split(transform_object("matters", [env("matters", "matter-7", d)], spec, users))
    team = [r for r in rows if r["sobject"] == "CaseTeamMember"]
    assert [(r["row"]["MemberId"], r["row"]["TeamRole.Name"]) for r in team] == [
        (U1, "Responsible Attorney"), (U2, "Responsible Staff")]
    assert all(r["row"]["Case:Parent.Clio_Id__c"] == "matter-7" for r in team)
    assert [r["rule"] for r in rejects] == ["unmapped_team_member"] and "1003" in rejects[0]["message"]
    from clio2sf.mapping.spec import spec_from_dict

    opp = spec_from_dict({**spec.data, "options": {**spec.options, "matter_object": "Opportunity"}})
    rows, _ = split(transform_object("matters", [env("matters", "matter-7", d)], opp, users))
    otm = [r["row"] for r in rows if r["sobject"] == "OpportunityTeamMember"]
    assert otm[0] == {"Opportunity.Clio_Id__c": "matter-7", "UserId": U1, "TeamMemberRole": "Responsible Attorney",
                      "OpportunityAccessLevel": "Edit"}
    assert "CaseTeamMember" not in opp.load_order and "OpportunityTeamMember" in opp.load_order


def test_load_order_puts_relations_and_teams_after_their_parents(spec):
    order = spec.load_order
    assert order.index("Contact") < order.index("AccountContactRelation")
    assert order.index("Case") < order.index("CaseTeamMember")


class FakeOrg:
    """What prepare_rows needs: SOQL, create and describe."""

    def __init__(self, audit: bool):
        self.audit = audit
        self.roles = [{"Id": "0B7000000000001AAA", "Name": "Responsible Attorney"}]
        self.created: list[dict] = []

    def query_all_iter(self, soql):
        assert "CaseTeamRole" in soql
        yield from self.roles

    def composite_create(self, records):
        self.created += records
        return [{"success": True, "id": f"0B700000000000{i}AAA"} for i, _ in enumerate(records, start=2)]

    def describe(self, sobject):
        return {"fields": [{"name": "CreatedDate", "createable": self.audit}, {"name": "Subject", "createable": True}]}


@pytest.mark.parametrize("audit", [True, False])
def test_audit_fields_are_sent_only_when_the_org_allows_them(audit):
    e = Envelope("Task", "communication-1", {"Clio_Id__c": "communication-1", "CreatedDate": "2024-01-01T00:00:00Z",
                                             "Subject": "s"}, "Clio_Id__c")
    out, failed = prepare_rows(FakeOrg(audit), [e])
    assert not failed and ("CreatedDate" in out[0].row) is audit and out[0].row["Subject"] == "s"


def test_team_roles_resolve_by_name_and_missing_ones_are_created():
    org = FakeOrg(True)
    rows = [Envelope("CaseTeamMember", f"matter-7#team-user-{i}",
                     {"Case:Parent.Clio_Id__c": "matter-7", "MemberId": U1, "TeamRole.Name": name}, None, ("ParentId", "MemberId"))
            for i, name in enumerate(("Responsible Attorney", "Originating Attorney"))]
    out, failed = prepare_rows(org, rows)
    assert not failed
    assert [r.row["TeamRoleId"] for r in out] == ["0B7000000000001AAA", "0B7000000000002AAA"]
    assert org.created == [{"attributes": {"type": "CaseTeamRole"}, "Name": "Originating Attorney", "AccessLevel": "Edit"}]
    assert case_team_role_ids(org, []) == {}


def test_a_role_that_cannot_be_created_fails_its_rows_naming_it():
    org = FakeOrg(True)
    org.composite_create = lambda records: [{"success": False, "errors": [{"statusCode": "INSUFFICIENT_ACCESS"}]}]
    row = Envelope("CaseTeamMember", "matter-7#team-user-1", {"Case:Parent.Clio_Id__c": "matter-7", "MemberId": U1,
                                                              "TeamRole.Name": "Paralegal"}, None, ("ParentId", "MemberId"))
    _, failed = prepare_rows(org, [row])
    assert "CaseTeamRole" in failed[0].errors[0].message and "Paralegal" in failed[0].errors[0].message
