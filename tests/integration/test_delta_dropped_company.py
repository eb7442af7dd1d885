"""A person whose only related company is dropped in Clio loses that AccountContactRelation in the window.

Both sandboxes over HTTP, the window's task steps (``_window`` of test_cutover) and its verification as the
phase runs it: full extraction and load of the tiny firm with a person whose company is X and who is related to
company Y (Contact.AccountId = X, Salesforce's direct AccountContactRelation to X, ours, indirect, to Y); a
relation of the person to an Account that is not from Clio is made by hand in Salesforce; then in Clio the person
is no longer related to Y (its company stays X), and a window runs, then a second one that finds nothing new;
then the first window is rolled back.

The window has no AccountContactRelation row of the person left (Clio relates it to no other company), so no
relation step of the window replaces the one to Y: the person's Contact batch compares the relations Salesforce
has for the person with Clio's and deletes the one to Y (ledgered with its before-image); the one to the Account
that is not from Clio is not the migration's and stays. A rollback re-creates the relation to Y.
"""

from __future__ import annotations

import pytest

from clio2sf import staging
from clio2sf.ledger import read_ledger
from tests.integration import direct
from tests.integration.test_cutover import _window

roster = pytest.importorskip("sandbox.common.roster")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def dropped(tmp_path_factory):
    base = tmp_path_factory.mktemp("dropped")
    with direct.sandbox_hooks(base) as (clio, _sf, clio_hook, hook):
        mroot = staging.migration_root(base / "stage", "tiny", "m1")
        (x, y), person = direct.companies_and_a_lone_person(clio_hook, 2)
        clio.mutate("contacts", "update", person, {"company": {"id": x}, "related_contacts": [{"id": y, "type": "Company"}]})
        spec, users, acc, contact, before = direct.full_load_person(clio_hook, hook, mroot, person, [x, y])
        ids_before = direct.relation_ids(hook, contact["Id"])
        # an Account of the org that is not from Clio, the person related to it by hand
        [other] = hook.composite_create([{"attributes": {"type": "Account"}, "Name": "Not From Clio Holdings"}])
        [own] = hook.composite_create([{"attributes": {"type": "AccountContactRelation"},
                                        "AccountId": other["id"], "ContactId": contact["Id"]}])
        assert other["success"] and own["success"], (other, own)
        clio.mutate("contacts", "update", person, {"related_contacts": [{"id": y, "_destroy": True}]})
        w1 = _window(clio_hook, hook, mroot, spec, users, "w1")
        after = direct.account_relations(hook, contact["Id"])
        assert hook.composite_delete([own["id"]])[0]["success"]  # the org's own: out of the verification's way
        verified = direct.verify_window(hook, mroot, spec, "w1")
        w2 = _window(clio_hook, hook, mroot, spec, users, "w2")
        again = direct.account_relations(hook, contact["Id"])
        yield {"hook": hook, "mroot": mroot, "spec": spec, "acc": acc, "x": x, "y": y, "person": person,
               "contact": contact, "before": before, "ids_before": ids_before, "other": other["id"], "after": after,
               "again": again, "w1": w1, "w2": w2, "verified": verified}


def test_the_full_load_relates_the_person_directly_to_x_and_indirectly_to_y(dropped):
    m = dropped
    assert m["contact"]["AccountId"] == m["acc"][m["x"]]
    assert m["before"] == sorted([(m["acc"][m["x"]], True), (m["acc"][m["y"]], False)])


def test_after_the_window_the_person_is_related_to_x_only(dropped):
    """Old code: no AccountContactRelation row of the person was written again, so nothing replaced the one to Y
    and the Contact's company had not changed: after == [(X, True), (Y, False)], the verification reported it."""
    m = dropped
    assert m["after"] == sorted([(m["acc"][m["x"]], True), (m["other"], False)]), m["w1"]
    ledger = read_ledger(m["mroot"], run_id="w1")
    assert not len(ledger[ledger["status"] == "failed"]), ledger[ledger["status"] == "failed"].to_dict("records")
    acr = ledger[ledger["object"] == "AccountContactRelation"]
    rows = sorted((r["source_system_id"], r["operation"], bool(r["created"])) for r in acr.to_dict("records"))
    assert rows == [(f"contact-{m['person']}#account-contact-{m['y']}", "delete", False)], rows
    [deleted] = acr.to_dict("records")
    assert deleted["sf_id"][:15] == m["ids_before"][m["acc"][m["y"]]][:15], deleted
    assert deleted["before"]["AccountId"][:15] == m["acc"][m["y"]][:15], deleted
    assert not m["w1"]["failed"]


def test_the_window_verifies_and_a_second_window_changes_nothing(dropped):
    m = dropped
    v = m["verified"]
    assert not v["failure"] and not v["mismatches"] and v["records_compared"], v
    by_object = staging.read_json(m["mroot"] / "reports" / "w1" / "verification.json")["by_object"]
    assert by_object["AccountContactRelation"] == {"records": 0, "fields": 1, "matches": 1}, by_object
    assert m["again"] == [(m["acc"][m["x"]], True)]
    assert not m["w2"]["failed"]
    ledger = read_ledger(m["mroot"], run_id="w2")
    assert not len(ledger[ledger["object"] == "AccountContactRelation"]), ledger.to_dict("records")


def test_rolling_back_the_window_relates_the_person_to_y_again(dropped):
    m = dropped
    hook = m["hook"]
    out = direct.rollback_window(hook, m["mroot"], m["spec"])
    assert out["failed"] == 0, out
    assert out["counts"]["AccountContactRelation"] == {"recreated": 1}, out
    [contact] = hook.query_all(f"SELECT AccountId FROM Contact WHERE Id = '{m['contact']['Id']}'")
    assert contact["AccountId"] == m["acc"][m["x"]]
    assert direct.account_relations(hook, m["contact"]["Id"]) == m["before"], out
    again = direct.rollback_window(hook, m["mroot"], m["spec"])
    assert again["failed"] == 0 and not any(again["counts"].values()), again
