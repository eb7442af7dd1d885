"""Deleting a record takes along what a real org deletes with it, and is refused where a real org refuses.

Salesforce Help, "Delete Accounts": a deleted account goes to the Recycle Bin with its contacts,
opportunities, activities, notes and attachments, partner relationships; an account with associated
cases can't be deleted. The org's recorded Account describe says the same per relationship
(``childRelationships``: Contact.AccountId, Opportunity.AccountId, Event/Task.WhatId ``cascadeDelete``;
Case.AccountId ``restrictedDelete``), and the Contact describe does for its own children (Case.ContactId
``restrictedDelete``: "Your attempt to delete Mr. Josh Davis could not be completed because it is
associated with the following cases.: 00001005", DELETE_FAILED, as a real org answered).
"""

from __future__ import annotations

import pytest

from sandbox.salesforce.org import Org, Settings
from sandbox.salesforce.query import Runner

pytestmark = pytest.mark.unit

WHEN = {"StartDateTime": "2024-01-01T10:00:00Z", "EndDateTime": "2024-01-01T11:00:00Z"}


def _ins(org: Org, sobject: str, rows: list[dict]) -> list[str]:
    res = org.write(sobject, "insert", rows, user_id=None)
    assert all(r["success"] for r in res), res
    return [r["id"] for r in res]


def _ids(org: Org, soql: str, *, deleted: bool = False) -> set[str]:
    return {r["Id"] for r in Runner(org, soql, include_deleted=deleted).rows()}


@pytest.fixture
def org(tmp_path) -> Org:
    return Org(tmp_path, Settings(seed=21))


def test_deleting_an_account_sends_its_contacts_opportunities_and_activities_to_the_recycle_bin(org) -> None:
    acme, other = _ins(org, "Account", [{"Name": "Acme"}, {"Name": "Other"}])
    c1, c2, c3 = _ins(org, "Contact", [{"LastName": "One", "AccountId": acme}, {"LastName": "Two", "AccountId": acme},
                                       {"LastName": "Three", "AccountId": other}])
    opp, = _ins(org, "Opportunity", [{"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2024-06-01",
                                      "AccountId": acme}])
    ocr, = _ins(org, "OpportunityContactRole", [{"OpportunityId": opp, "ContactId": c3}])
    ev_what, ev_who, ev_other = _ins(org, "Event", [{"Subject": "on Acme", "WhatId": acme, **WHEN},
                                                    {"Subject": "with One", "WhoId": c1, **WHEN},
                                                    {"Subject": "on Other", "WhatId": other, **WHEN}])
    rel, = _ins(org, "EventRelation", [{"EventId": ev_other, "RelationId": c2}])
    task, = _ins(org, "Task", [{"Subject": "call", "WhatId": acme}])
    acr = _ids(org, f"SELECT Id FROM AccountContactRelation WHERE AccountId = '{acme}'")
    assert len(acr) == 2  # the direct relations made with the contacts

    res = org.delete([acme], user_id=org.integration_user_id)
    assert res == [{"id": acme, "success": True, "errors": []}]

    gone = {"Account": {acme}, "Contact": {c1, c2}, "Opportunity": {opp}, "OpportunityContactRole": {ocr},
            "Event": {ev_what, ev_who}, "EventRelation": {rel}, "Task": {task}, "AccountContactRelation": acr}
    kept = {"Account": {other}, "Contact": {c3}, "Event": {ev_other}}
    for sobject, ids in gone.items():
        live = _ids(org, f"SELECT Id FROM {sobject}")
        binned = {r["Id"] for r in Runner(org, f"SELECT Id, IsDeleted FROM {sobject}", include_deleted=True).rows()
                  if r["IsDeleted"]}
        assert not ids & live and ids <= binned, sobject  # in the Recycle Bin: queryAll finds them, deleted
        assert kept.get(sobject, set()) <= live, sobject
    # a contact the cascade removed is deleted like any other: deleting it again says so
    again = org.delete([c1], user_id=org.integration_user_id)
    assert again[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"


def test_an_account_or_contact_with_cases_cannot_be_deleted(org) -> None:
    acme, lone, free = _ins(org, "Account", [{"Name": "Acme"}, {"Name": "Lone"}, {"Name": "Free"}])
    ann, bob = _ins(org, "Contact", [{"LastName": "Ann", "AccountId": acme}, {"LastName": "Bob", "AccountId": lone}])
    case, bobs = _ins(org, "Case", [{"Subject": "s", "AccountId": acme, "ContactId": ann},
                                    {"Subject": "t", "ContactId": bob}])  # Bob's case names no account
    number = {r["Id"]: r["CaseNumber"] for r in Runner(org, "SELECT Id, CaseNumber FROM Case",
                                                       include_deleted=False).rows()}
    user = org.integration_user_id

    res = org.delete([acme, ann, lone], user_id=user)
    assert [r["success"] for r in res] == [False, False, False]
    assert res[0]["errors"] == [{"statusCode": "DELETE_FAILED", "fields": [], "message":
                                 "Your attempt to delete Acme could not be completed because it is associated "
                                 f"with the following cases.: {number[case]}\n"}]
    assert res[1]["errors"][0]["message"].startswith("Your attempt to delete Ann could not be completed")
    # Lone has no case itself, but deleting it would delete Bob, whom a case names
    assert res[2]["errors"][0]["message"].endswith(f"associated with the following cases.: {number[bobs]}\n")
    assert _ids(org, "SELECT Id FROM Account") >= {acme, lone} and _ids(org, "SELECT Id FROM Contact") == {ann, bob}

    # all or none: one refused target keeps the others too
    res = org.delete([free, acme], user_id=user, all_or_none=True)
    assert not res[0]["success"] and res[1]["errors"][0]["statusCode"] == "DELETE_FAILED"
    assert free in _ids(org, "SELECT Id FROM Account")

    # once the case is deleted (here in the same call), the account and its contact go
    res = org.delete([case, acme], user_id=user)
    assert all(r["success"] for r in res), res
    assert not {acme, ann} & (_ids(org, "SELECT Id FROM Account") | _ids(org, "SELECT Id FROM Contact"))


def test_a_deleted_record_leaves_no_lookup_naming_it(org) -> None:
    """Help, "Object Relationships Overview": deleting the record a lookup names clears the lookup by default
    ("Clear the value of this field": the migration's custom lookups are created with deleteConstraint
    SetNull); Account.ParentId is a lookup that neither cascades nor restricts in the recorded Account
    describe. Old code: the bill and the child account kept the deleted records' ids."""
    org.create_custom_object("Bill__c", {"label": "Bill", "pluralLabel": "Bills",
                                         "nameField": {"type": "Text", "label": "Name"}})
    org.create_custom_field("Bill__c.Contact__c", {"label": "Contact", "type": "Lookup", "referenceTo": "Contact",
                                                   "relationshipName": "Contact", "deleteConstraint": "SetNull"})
    org.create_custom_field("Bill__c.Account__c", {"label": "Account", "type": "Lookup", "referenceTo": "Account",
                                                   "relationshipName": "Account", "deleteConstraint": "SetNull"})
    parent, child, keep = _ins(org, "Account", [{"Name": "Parent"}, {"Name": "Child"}, {"Name": "Keep"}])
    org.write("Account", "update", [{"Id": child, "ParentId": parent}], user_id=None)
    ann, = _ins(org, "Contact", [{"LastName": "Ann", "AccountId": keep}])
    bill, other = _ins(org, "Bill__c", [{"Name": "B1", "Contact__c": ann, "Account__c": keep},
                                        {"Name": "B2", "Account__c": parent}])
    [before] = Runner(org, f"SELECT SystemModstamp FROM Bill__c WHERE Id = '{bill}'", include_deleted=False).rows()

    assert all(r["success"] for r in org.delete([ann, parent], user_id=org.integration_user_id))

    rows = {r["Id"]: r for r in Runner(org, "SELECT Id, Contact__c, Account__c, SystemModstamp FROM Bill__c",
                                             include_deleted=False).rows()}
    assert set(rows) == {bill, other}  # the bills stay: a lookup does not take them along
    assert (rows[bill]["Contact__c"], rows[bill]["Account__c"]) == (None, keep)
    assert rows[other]["Account__c"] is None and rows[bill]["SystemModstamp"] >= before["SystemModstamp"]
    [acc] = Runner(org, f"SELECT Id, ParentId FROM Account WHERE Id = '{child}'", include_deleted=False).rows()
    assert acc["ParentId"] is None
    # and the key index agrees: nothing is found through the deleted ids
    assert not _ids(org, f"SELECT Id FROM Bill__c WHERE Contact__c = '{ann}'")
    assert not _ids(org, f"SELECT Id FROM Account WHERE ParentId = '{parent}'")
