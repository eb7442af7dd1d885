"""The sandbox's describes match the recorded real describes (keys and field types)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.salesforce.metadata import RECORDED, Schema
from sandbox.salesforce.org import Org, Settings

DESCRIBES = Path(__file__).resolve().parents[2] / "sandbox" / "salesforce" / "describes"
MIGRATION_FIELDS = {
    "Account": ["Name", "Phone", "Website", "BillingStreet", "BillingCity", "BillingPostalCode", "OwnerId",
                "Description", "Type", "ParentId"],
    "Contact": ["LastName", "FirstName", "Email", "Phone", "MobilePhone", "AccountId", "MailingStreet",
                "MailingCity", "Birthdate", "Title", "OwnerId", "Description"],
    "Case": ["Subject", "Description", "Status", "Origin", "Priority", "ContactId", "AccountId", "OwnerId"],
    "Opportunity": ["Name", "StageName", "CloseDate", "Amount", "AccountId", "OwnerId"],
    "Event": ["Subject", "StartDateTime", "EndDateTime", "DurationInMinutes", "IsAllDayEvent", "WhoId",
              "WhatId", "Location", "Description", "OwnerId", "ActivityDate"],
    "Task": ["Subject", "Status", "Priority", "ActivityDate", "WhoId", "WhatId", "Description", "OwnerId",
             "TaskSubtype"],
    "OpportunityContactRole": ["OpportunityId", "ContactId", "Role", "IsPrimary"],
}


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Org:
    return Org(tmp_path_factory.mktemp("org"), Settings(seed=7))


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(RECORDED))
def test_describe_matches_recording(org: Org, name: str) -> None:
    recorded = json.loads((DESCRIBES / RECORDED[name]).read_text())
    mine = org.describe(org.schema.get(name))
    assert set(mine) == set(recorded)
    rec_fields = {f["name"]: f for f in recorded["fields"]}
    my_fields = {f["name"]: f for f in mine["fields"]}
    for fname in MIGRATION_FIELDS[name]:
        assert set(my_fields[fname]) == set(rec_fields[fname]), fname
        for key in ("type", "length", "nillable", "createable", "updateable", "referenceTo", "relationshipName",
                    "restrictedPicklist"):
            assert my_fields[fname][key] == rec_fields[fname][key], (name, fname, key)
    assert not [f for f in mine["fields"] if f["name"].endswith("__c")], "the org starts without custom fields"


@pytest.mark.unit
def test_hand_built_objects_have_the_real_field_keys(org: Org) -> None:
    template_keys = set(json.loads((DESCRIBES / "Case.cumulusci.json").read_text())["fields"][0])
    top_keys = set(json.loads((DESCRIBES / "Case.cumulusci.json").read_text()))
    for name in ("RecordType", "User", "EventRelation", "CaseContactRole", "ContentVersion", "ContentDocument",
                 "ContentDocumentLink", "Organization", "ContentNote", "AccountContactRelation", "CaseTeamMember",
                 "CaseTeamRole", "OpportunityTeamMember"):
        d = org.describe(org.schema.get(name))
        assert set(d) == top_keys, name
        assert all(set(f) == template_keys for f in d["fields"]), name
    ccr = {f["name"]: f for f in org.describe(org.schema.get("CaseContactRole"))["fields"]}
    assert ccr["CasesId"]["relationshipName"] == "Cases" and not ccr["CasesId"]["updateable"]
    subtype = {f["name"]: f for f in org.describe(org.schema.get("Task"))["fields"]}["TaskSubtype"]
    assert {"Task", "Email", "Call"} <= {p["value"] for p in subtype["picklistValues"]}


@pytest.mark.unit
def test_global_describe_shape(org: Org) -> None:
    g = org.schema.describe_global()
    recorded = json.loads((DESCRIBES / "Global.cumulusci.json").read_text())
    assert set(g) == set(recorded)
    assert set(g["sobjects"][0]) == set(recorded["sobjects"][0])
    assert {"Account", "ContentDocumentLink", "CaseTeamMember"} <= {s["name"] for s in g["sobjects"]}


@pytest.mark.unit
def test_audit_fields_createable_only_when_enabled(tmp_path: Path) -> None:
    on = Org(tmp_path / "on", Settings(audit_fields=True))
    off = Org(tmp_path / "off", Settings(audit_fields=False))
    f_on = {f["name"]: f for f in on.describe(on.schema.get("Contact"))["fields"]}
    f_off = {f["name"]: f for f in off.describe(off.schema.get("Contact"))["fields"]}
    assert f_on["CreatedDate"]["createable"] and not f_off["CreatedDate"]["createable"]
    assert Schema().get("account").name == "Account"
