"""A person whose primary company changes in Clio keeps one relation per company in Salesforce, the right one direct.

Both sandboxes over HTTP, the window's task steps (``_window`` of test_cutover) and its verification as the
phase runs it: full extraction and load of the tiny firm with a person whose company is X and who is related to
company Y (Contact.AccountId = X, Salesforce's direct AccountContactRelation to X, ours, indirect, to Y); then in
Clio the person's company becomes Y and X a related company, and a window runs, then a second one that finds
nothing new.

With Contacts to Multiple Accounts, the Contact's new AccountId makes the relation to Y the direct one and
keeps the one to X as indirect (the sandbox does as Help documents, see test_sf_account_contact_relation). The
window's AccountContactRelation row for X finds that relation (natural key) and creates none; the relation to
Y, no longer a row of ours, is Salesforce's own now, and must not be deleted as a replaced link.
"""

from __future__ import annotations

import pytest

from clio2sf import staging
from clio2sf.ledger import read_ledger
from clio2sf.mapping.spec import BASE_LOAD_ORDER
from clio2sf.rollback_run import run_rollback
from tests.integration import direct
from tests.integration.test_cutover import _window

roster = pytest.importorskip("sandbox.common.roster")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    base = tmp_path_factory.mktemp("primary")
    with direct.sandbox_hooks(base) as (clio, _sf, clio_hook, hook):
        mroot = staging.migration_root(base / "stage", "tiny", "m1")
        (x, y, z), person = direct.companies_and_a_lone_person(clio_hook, 3)
        clio.mutate("contacts", "update", person, {"company": {"id": x}, "related_contacts": [{"id": y, "type": "Company"}]})
        spec, users, acc, contact, before = direct.full_load_person(clio_hook, hook, mroot, person, [x, y])
        ids_before = direct.relation_ids(hook, contact["Id"])
        clio.mutate("contacts", "update", person, {"company": {"id": y}, "related_contacts": [
            {"id": y, "_destroy": True}, {"id": x, "type": "Company"}]})
        w1 = _window(clio_hook, hook, mroot, spec, users, "w1")
        after = direct.account_relations(hook, contact["Id"])
        ids_after = direct.relation_ids(hook, contact["Id"])
        [moved_contact] = hook.query_all(f"SELECT AccountId FROM Contact WHERE Id = '{contact['Id']}'")
        verified = direct.verify_window(hook, mroot, spec, "w1")
        w2 = _window(clio_hook, hook, mroot, spec, users, "w2")
        again = direct.account_relations(hook, contact["Id"])
        # seeded defect: a relation Clio does not have (to a third company Z), made by hand; verified, then removed
        [z_acc] = hook.query_all(f"SELECT Id FROM Account WHERE Clio_Id__c = 'contact-{z}'")
        [seeded] = hook.composite_create([{"attributes": {"type": "AccountContactRelation"},
                                           "AccountId": z_acc["Id"], "ContactId": contact["Id"]}])
        assert seeded["success"], seeded
        seeded_report = direct.verify_window(hook, mroot, spec, "w1", report="w1-seeded")
        assert hook.composite_delete([seeded["id"]])[0]["success"]
        yield {"hook": hook, "mroot": mroot, "acc": acc, "x": x, "y": y, "contact": contact, "before": before,
               "after": after, "again": again, "ids_before": ids_before, "ids_after": ids_after,
               "moved_contact": moved_contact, "w1": w1, "w2": w2, "verified": verified,
               "seeded": seeded_report, "z": z}


def test_the_full_load_relates_the_person_directly_to_x_and_indirectly_to_y(moved):
    m = moved
    assert m["contact"]["AccountId"] == m["acc"][m["x"]]
    assert m["before"] == sorted([(m["acc"][m["x"]], True), (m["acc"][m["y"]], False)])


def test_after_the_move_y_is_direct_x_indirect_and_no_relation_was_made_twice_or_lost(moved):
    """Old code: the window deleted the relation to Y (a link row of ours it did not write again) although it had
    become the person's direct relation: the person was left with no relation to its primary account."""
    m = moved
    assert m["moved_contact"]["AccountId"] == m["acc"][m["y"]]
    assert m["after"] == sorted([(m["acc"][m["y"]], True), (m["acc"][m["x"]], False)]), m["w1"]
    # the same two records, each now the other kind: nothing deleted, nothing created
    assert m["ids_after"] == m["ids_before"]
    ledger = read_ledger(m["mroot"], run_id="w1")
    acr = ledger[ledger["object"] == "AccountContactRelation"]
    assert not len(acr[acr["operation"] == "delete"]), acr.to_dict("records")
    assert not len(ledger[ledger["status"] == "failed"]), ledger[ledger["status"] == "failed"].to_dict("records")
    assert not m["w1"]["failed"]


def test_the_window_verifies_and_a_second_window_changes_nothing(moved):
    m = moved
    v = m["verified"]
    assert not v["failure"] and not v["mismatches"] and v["records_compared"], v
    assert m["again"] == m["after"]
    assert not m["w2"]["failed"]


def test_the_verification_reports_a_relation_clio_does_not_have(moved):
    """Seeded defect: an AccountContactRelation of the person to a company Clio does not relate it to. Old
    verifier: AccountContactRelations were not compared at all (0 mismatches)."""
    m = moved
    v = m["seeded"]
    assert v["mismatches"] == 1, v
    by_object = staging.read_json(m["mroot"] / "reports" / "w1" / "verification.json")["by_object"]
    assert by_object["AccountContactRelation"] == {"records": 0, "fields": 2, "matches": 2}, by_object
    [f] = [f for f in v["findings"] if f["sobject"] == "AccountContactRelation"]
    assert f["actual"] == f"contact-{m['z']}" and f["expected"] in (None, ""), f
    assert f["check"] == "account_relations", f


def test_rolling_back_the_migration_leaves_no_relation_and_fails_nothing(moved):
    """The relation to Y that the full load created is the person's direct one now: Salesforce does not delete it
    by itself (the sandbox refuses, as Help says to change the primary account or delete the contact); the
    rollback leaves it and deleting the Contact takes it. Old code: DELETE_FAILED, the rollback failed 1."""
    m = moved
    hook = m["hook"]
    out = run_rollback(hook, m["mroot"], run_id=None, migration_id="m1", dry_run=False, load_order=BASE_LOAD_ORDER)
    assert out["failed"] == 0, out
    assert out["counts"]["AccountContactRelation"].get("kept_direct") == 1, out
    assert not hook.query_all(f"SELECT Id FROM Contact WHERE Id = '{m['contact']['Id']}'")
    assert direct.account_relations(hook, m["contact"]["Id"]) == []
