"""A delta window that deletes a Clio person must lose nothing Clio still has (Salesforce's delete of a Contact).

Both sandboxes over HTTP, the steps mig_06_delta's tasks call (``_window`` of test_cutover, with the spec's
load order as the phase passes it): full extraction and load of the tiny firm, a person who is a matter
client and a bill client, named by relationships (CaseContactRole), related to a second company
(AccountContactRelation), attendee of a calendar entry with another contact (EventRelation) and assignee of
a task (Task.WhoId); then the person is deleted in Clio (which leaves the matter, bill, entry and task
naming it) and a window runs.

What Salesforce does when a Contact is deleted (the recorded Contact describe's ``childRelationships``):
Case.ContactId ``restrictedDelete`` (the delete fails while a Case names it); Task/Event.WhoId,
EventRelation.RelationId, CaseContactRole.ContactId ``cascadeDelete`` (they go with it); the relations of
Contacts to Multiple Accounts go with their Contact; a custom lookup (the bill's ``Contact__c``, created
``deleteConstraint: SetNull``) is cleared (Help, "Object Relationships Overview"). So the window must clear
(detach, before-image ledgered) what Clio still has and a delete would take or clear: the Case's and the
Task's contact, the bill's client; ledger with before-images what cannot be kept (the person's contact
roles, its attendance, its relations); leave the entry's other attendees alone; and a rollback of the
window must bring every one of them back, pointing at the re-created Contact.
"""

from __future__ import annotations

import pytest

from clio2sf import staging
from clio2sf.ledger import read_ledger
from clio2sf.mapping.spec import BASE_LOAD_ORDER
from clio2sf.rollback_run import run_rollback
from tests.integration import direct
from tests.integration.test_cutover import WINDOW_OBJECTS, _extract, _load, _window
from tests.integration.test_delta_cascade import _live

roster = pytest.importorskip("sandbox.common.roster")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

#: the window reads what names the person too (their ids are listed, so nothing of them is taken for deleted)
OBJECTS = (*WINDOW_OBJECTS, "calendar_entries", "tasks", "bills")


def _all(clio_hook, endpoint: str, fields: str) -> list[dict]:
    return [r for page in clio_hook.paginate(endpoint, fields, {}) for r in page["data"]]


def _q(hook, soql: str) -> list[dict]:
    return hook.query_all(soql)


@pytest.fixture(scope="module")
def deleted_person(tmp_path_factory):
    base = tmp_path_factory.mktemp("person")
    with direct.sandbox_hooks(base) as (clio, _sf, clio_hook, hook):
        mroot = staging.migration_root(base / "stage", "tiny", "m1")
        contacts = {r["id"]: r for r in _all(clio_hook, "contacts.json", "id,type,company")}
        matters = _all(clio_hook, "matters.json", "id,client")
        bills = _all(clio_hook, "bills.json", "id,client")
        roles = _all(clio_hook, "relationships.json", "id,contact,matter")
        billed = {(b.get("client") or {}).get("id") for b in bills}
        named = {(r.get("contact") or {}).get("id") for r in roles}
        person = min(m["client"]["id"] for m in matters if (m.get("client") or {}).get("id") in billed & named
                     and contacts[m["client"]["id"]]["type"] == "Person")
        matter = min(m["id"] for m in matters if (m.get("client") or {}).get("id") == person)
        other = min(i for i, c in contacts.items() if c["type"] == "Person" and i != person)
        first, second = sorted(i for i, c in contacts.items() if c["type"] == "Company")[:2]
        clio.mutate("contacts", "update", person, {"company": {"id": first},
                                                   "related_contacts": [{"id": second, "type": "Company"}]})
        owner = next(e["calendar_owner"] for e in _all(clio_hook, "calendar_entries.json", "id,calendar_owner")
                     if e.get("calendar_owner"))
        entry = clio.mutate("calendar_entries", "create", data={
            "summary": "Settlement meeting", "start_at": "2026-01-12T15:00:00Z", "end_at": "2026-01-12T16:00:00Z",
            "all_day": False, "start_at_time_zone": "America/New_York", "calendar_owner": {"id": owner["id"]},
            "matter": {"id": matter},
            "attendees": [{"id": person, "type": "Contact"}, {"id": other, "type": "Contact"}]})["id"]
        task = clio.mutate("tasks", "create", data={"name": "Send the signed release", "priority": "High",
                                                    "status": "pending", "matter": {"id": matter},
                                                    "assignee": {"id": person, "type": "Contact"}})["id"]
        _extract(clio_hook, mroot, lambda page_no: None)
        spec, users = direct.transform_for_load(hook, mroot)
        full = _load(hook, mroot, spec, mroot, "full-1", "full_load")
        [sf_person] = _q(hook, f"SELECT Id, AccountId FROM Contact WHERE Clio_Id__c = 'contact-{person}'")
        pid = sf_person["Id"]
        [event] = _q(hook, f"SELECT Id FROM Event WHERE Clio_Id__c = 'calendar_entry-{entry}'")
        before = {
            "Case": _q(hook, f"SELECT Id FROM Case WHERE ContactId = '{pid}'"),
            "Task": _q(hook, f"SELECT Id, Clio_Id__c FROM Task WHERE WhoId = '{pid}'"),
            "Clio_Billing__c": _q(hook, f"SELECT Id FROM Clio_Billing__c WHERE Contact__c = '{pid}'"),
            "CaseContactRole": _q(hook, f"SELECT Id, CasesId, Role FROM CaseContactRole WHERE ContactId = '{pid}'"),
            "EventRelation": _q(hook, f"SELECT Id, EventId FROM EventRelation WHERE RelationId = '{pid}'"),
            "AccountContactRelation": _q(hook, "SELECT Id, AccountId, IsDirect, Roles FROM AccountContactRelation "
                                               f"WHERE ContactId = '{pid}'"),
            "ContentDocumentLink": _q(hook, "SELECT Id, ContentDocumentId FROM ContentDocumentLink "
                                            f"WHERE LinkedEntityId = '{pid}'"),
        }
        attendees = _q(hook, f"SELECT Id, RelationId FROM EventRelation WHERE EventId = '{event['Id']}'")
        clio.mutate("contacts", "delete", person)
        w1 = _window(clio_hook, hook, mroot, spec, users, "w1", OBJECTS)
        yield {"hook": hook, "mroot": mroot, "full": full, "person": person, "pid": pid, "account": sf_person["AccountId"],
               "event": event["Id"], "task": task, "before": before, "attendees": attendees, "w1": w1}


def _ids(rows) -> set[str]:
    return {r["Id"] for r in rows}


def test_the_person_names_every_kind_of_record_before_the_window(deleted_person):
    c = deleted_person
    for sobject, rows in c["before"].items():
        assert rows or sobject == "ContentDocumentLink", f"the person has no {sobject}: the test would prove nothing"
    assert {r["Clio_Id__c"] for r in c["before"]["Task"]} >= {f"task-{c['task']}"}
    assert {r["EventId"] for r in c["before"]["EventRelation"]} >= {c["event"]}
    assert len(c["attendees"]) >= 2  # the person and the other contact (and the calendar owner's user, if mapped)
    assert sorted(r["IsDirect"] for r in c["before"]["AccountContactRelation"]) == [False, True]
    assert c["w1"]["plan"]["deleted"] == {"contacts": 1}, c["w1"]["plan"]


def test_the_window_keeps_what_clio_still_has_and_ledgers_what_goes(deleted_person):
    """Old code: the bills' Contact__c was cleared by Salesforce with nothing in the ledger (the rollback could not
    give it back), and ``detached`` had no Clio_Billing__c.Contact__c."""
    c = deleted_person
    hook, out, b = c["hook"], c["w1"]["deletes"], c["before"]
    assert out["failed"] == 0 and out["counts"] == {"Contact": {"deleted": 1}}, out
    assert not _live(hook, "Contact", "Name", [c["pid"]])
    # the records Clio still has stay live, their link to the person cleared
    for sobject, field in (("Case", "ContactId"), ("Task", "WhoId"), ("Clio_Billing__c", "Contact__c")):
        live = _live(hook, sobject, field, _ids(b[sobject]))
        assert set(live) == _ids(b[sobject]) and all(r[field] is None for r in live.values()), (sobject, out)
        assert out["detached"].get(f"{sobject}.{field}") == len(b[sobject]), (sobject, out)
    # the calendar entry keeps its other attendees; only the person's attendance went
    gone = _ids(b["EventRelation"])
    assert set(_live(hook, "Event", "Subject", [c["event"]])) == {c["event"]}
    assert set(_live(hook, "EventRelation", "RelationId", _ids(c["attendees"]))) == _ids(c["attendees"]) - gone
    assert not _live(hook, "EventRelation", "RelationId", gone)
    assert not _live(hook, "CaseContactRole", "Role", _ids(b["CaseContactRole"]))
    assert not _live(hook, "AccountContactRelation", "IsDirect", _ids(b["AccountContactRelation"]))
    indirect = {r["Id"] for r in b["AccountContactRelation"] if not r["IsDirect"]}
    links = _ids(b["ContentDocumentLink"])  # the person's notes' and documents' links
    assert out["cascaded"] == {"EventRelation.RelationId": len(gone),
                               "CaseContactRole.ContactId": len(b["CaseContactRole"]),
                               "AccountContactRelation.ContactId": len(b["AccountContactRelation"]),
                               **({"ContentDocumentLink.LinkedEntityId": len(links)} if links else {})}, out
    # the ledger says what went and what was cleared, with what a rollback needs
    ledger = read_ledger(c["mroot"], run_id="w1")
    cascaded = ledger[(ledger["operation"] == "delete") & (ledger["object"] != "Contact")]
    images = dict(zip(cascaded["sf_id"], cascaded["before"], strict=True))
    assert set(images) == gone | _ids(b["CaseContactRole"]) | _ids(b["AccountContactRelation"]) | links
    for i in gone | _ids(b["CaseContactRole"]) | indirect | links:
        assert isinstance(images[i], dict) and c["pid"] in images[i].values(), i
    assert all(images[r["Id"]] is None for r in b["AccountContactRelation"] if r["IsDirect"])  # Salesforce's own
    detach = ledger[(ledger["operation"] == "detach") & (ledger["status"] == "ok")]
    befores = {i: v for i, v in zip(detach["sf_id"], detach["before"], strict=True)}
    expected = {r["Id"]: {"Id": r["Id"], f: c["pid"]} for s, f in (("Case", "ContactId"), ("Task", "WhoId"),
                                                                      ("Clio_Billing__c", "Contact__c"))
                for r in b[s]}
    assert {i: befores.get(i) for i in expected} == expected
    # every other record naming the person (the money trail's Contact__c...) was cleared the same way, and counted
    assert all(len(v) == 2 and v["Id"] == i and c["pid"] in v.values() for i, v in befores.items()), befores
    per_field = {}
    for o, v in zip(detach["object"], detach["before"], strict=True):
        key = f"{o}.{next(k for k in v if k != 'Id')}"
        per_field[key] = per_field.get(key, 0) + 1
    assert per_field == out["detached"]
    for key, n in per_field.items():
        sobject, field = key.split(".")
        ids = [i for o, i in zip(detach["object"], detach["sf_id"], strict=True) if o == sobject]
        live = _live(hook, sobject, field, ids)
        assert len(live) == n and all(r[field] is None for r in live.values()), key


def test_rolling_back_the_window_puts_everything_back_on_the_recreated_contact(deleted_person):
    """Old code: the bills stayed without their client after the rollback."""
    c = deleted_person
    hook, b = c["hook"], c["before"]
    out = run_rollback(hook, c["mroot"], run_id="w1", migration_id="m1", dry_run=False, load_order=BASE_LOAD_ORDER)
    assert out["failed"] == 0, out
    [new] = _q(hook, f"SELECT Id, AccountId FROM Contact WHERE Clio_Id__c = 'contact-{c['person']}'")
    assert new["Id"] != c["pid"] and new["AccountId"] == c["account"]
    for sobject, field in (("Case", "ContactId"), ("Task", "WhoId"), ("Clio_Billing__c", "Contact__c")):
        live = _live(hook, sobject, field, _ids(b[sobject]))
        assert {r[field] for r in live.values()} == {new["Id"]} and set(live) == _ids(b[sobject]), sobject
    roles = _q(hook, f"SELECT CasesId, Role FROM CaseContactRole WHERE ContactId = '{new['Id']}'")
    assert sorted((r["CasesId"], r["Role"]) for r in roles) == sorted((r["CasesId"], r["Role"])
                                                                        for r in b["CaseContactRole"])
    attending = _q(hook, f"SELECT EventId FROM EventRelation WHERE RelationId = '{new['Id']}'")
    assert sorted(r["EventId"] for r in attending) == sorted(r["EventId"] for r in b["EventRelation"])
    # one relation per account: the direct one Salesforce made with the Contact, the indirect one re-created
    rels = _q(hook, f"SELECT AccountId, IsDirect, Roles FROM AccountContactRelation WHERE ContactId = '{new['Id']}'")
    assert sorted((r["AccountId"], r["IsDirect"]) for r in rels) == sorted(
        (r["AccountId"], r["IsDirect"]) for r in b["AccountContactRelation"])
    # and everything else the window detached from the person points at the re-created Contact
    ledger = read_ledger(c["mroot"], run_id="w1")
    detach = ledger[(ledger["operation"] == "detach") & (ledger["status"] == "ok") & (ledger["phase"] == "delta")]
    for o, i, v in zip(detach["object"], detach["sf_id"], detach["before"], strict=True):
        field = next(k for k in v if k != "Id")
        assert _live(hook, o, field, [i])[i][field] == new["Id"], (o, field)
    files = _q(hook, f"SELECT ContentDocumentId FROM ContentDocumentLink WHERE LinkedEntityId = '{new['Id']}'")
    assert sorted(r["ContentDocumentId"] for r in files) == sorted(r["ContentDocumentId"]
                                                                   for r in b["ContentDocumentLink"])
    assert out["counts"].get("Contact") == {"recreated": 1}, out
