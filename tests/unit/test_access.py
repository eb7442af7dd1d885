"""What the migration needs from field-level security, the pre-flight verdict, and the loader's
rules that follow a real org (literal SOQL values, repeated external ids, emails in the diff)."""

from __future__ import annotations

import datetime as dt

import pytest

from clio2sf.access import AccessPlan, lookup_field, missing_access
from clio2sf.diff import values_equal
from clio2sf.load import Envelope, repeated_external_ids, soql_in, soql_literal
from clio2sf.mapping.schema_plan import build_schema_plan
from clio2sf.mapping.spec import load_spec

pytestmark = pytest.mark.unit


def test_lookup_field_of_relationship_and_directive_columns() -> None:
    assert lookup_field("Account.Clio_Id__c") == "AccountId"
    assert lookup_field("Case:What.Clio_Id__c") == "WhatId"
    assert lookup_field("Matter__r.Clio_Id__c") == "Matter__c"
    assert lookup_field("RecordType.DeveloperName") == "RecordTypeId"
    assert lookup_field("TeamRole.Name") == "TeamRoleId"
    assert lookup_field("LastName") == "LastName"


def test_the_access_plan_covers_spec_fields_links_keys_and_the_schema_plan() -> None:
    spec = load_spec("harlow_vance")
    plan = build_schema_plan(spec)
    need = plan.access.fields
    assert plan.access.objects[0] == "Account" and "Time_Entry__c" in plan.access.objects
    assert "Opportunity" not in plan.access.objects  # this firm's matters are Cases
    # spec fields, planned custom fields (Activity ones on Task and Event), links and natural keys
    for key in [("Contact", "LastName"), ("Contact", "Clio_Id__c"), ("Task", "Clio_Received_At__c"),
                ("Event", "Clio_Received_At__c"), ("Time_Entry__c", "Case__c"), ("Task", "WhatId"),
                ("CaseContactRole", "CasesId"), ("Contact", "AccountId")]:
        assert need.get(key) is True, key
    assert ("Time_Entry__c", "Opportunity__c") not in need
    # audit fields are detected at load time, never required
    assert not [k for k in need if k[1] in ("CreatedDate", "LastModifiedDate")]


class FakeOrg:
    """Describes as one user sees them: hidden fields absent, read-only ones neither createable nor updateable."""

    def __init__(self, describes: dict[str, dict]):
        self.describes = describes

    def describe(self, sobject: str, refresh: bool = False) -> dict:
        if sobject not in self.describes:
            err = RuntimeError("not found")
            err.status = 404  # type: ignore[attr-defined]
            raise err
        return self.describes[sobject]


def _field(name: str, *, write: bool = True) -> dict:
    return {"name": name, "createable": write, "updateable": write}


def test_missing_access_names_every_gap_and_nothing_else() -> None:
    plan = AccessPlan(objects=["Contact", "Ledger__c"])
    for name in ("LastName", "Clio_Id__c", "Clio_Note__c"):
        plan.need("Contact", name)
    plan.need("Contact", "Clio_Created_Date__c")
    plan.need("Account", "Clio_Id__c", edit=False)
    org = FakeOrg({
        "Contact": {"createable": True, "updateable": True,
                    "fields": [_field("LastName"), _field("Clio_Note__c", write=False), _field("Clio_Created_Date__c")]},
        "Account": {"createable": True, "updateable": True, "fields": [_field("Clio_Id__c", write=False)]},
    })
    assert missing_access(org, plan) == [
        "Contact.Clio_Id__c: not visible to the integration user (no Read field permission, or the field does not exist)",
        "Contact.Clio_Note__c: read-only for the integration user (no Edit field permission)",
        "Ledger__c: object not visible to the integration user (no Read access, or it does not exist)",
    ]
    org.describes["Contact"]["fields"] += [_field("Clio_Id__c")]
    org.describes["Contact"]["fields"][1] = _field("Clio_Note__c")
    org.describes["Ledger__c"] = {"createable": False, "updateable": True, "fields": []}
    assert missing_access(org, plan) == ["Ledger__c: no Create access on the object"]


def test_soql_literals_keep_their_type() -> None:
    when = dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert soql_literal(when) == "2024-03-01T14:30:00Z"  # a date-time literal is never quoted
    assert soql_literal(dt.date(2024, 3, 1)) == "2024-03-01"
    assert (soql_literal(True), soql_literal(None), soql_literal(2), soql_literal(1.5)) == ("true", "null", "2", "1.5")
    assert soql_in("Clio_Id__c", ["a'b", "c\\d"]) == "Clio_Id__c IN ('a\\'b', 'c\\\\d')"


def test_a_repeated_external_id_is_sent_once_and_the_earlier_rows_rejected() -> None:
    envs = [Envelope("Contact", f"contact-{i}", {"Clio_Id__c": ext, "LastName": str(i)}, "Clio_Id__c")
            for i, ext in enumerate(["contact-1", "CONTACT-1", "contact-2", "contact-1"])]
    out = repeated_external_ids(envs)
    assert sorted(out) == [0, 1]
    assert out[0].errors[0].status_code == "DUPLICATE_EXTERNAL_ID" and out[0].errors[0].fields == ("Clio_Id__c",)
    assert not out[0].transient and repeated_external_ids(envs, skip={0: None, 3: None}) == {}


def test_emails_compare_as_salesforce_stores_them() -> None:
    assert values_equal("Jane.Doe@Example.COM", "jane.doe@example.com", "email")
    assert not values_equal("Jane.Doe@Example.COM", "jane.doe@example.com", "string")
    assert values_equal("", None, "email") and values_equal("", None, "string")
