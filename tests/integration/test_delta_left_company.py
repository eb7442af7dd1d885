"""A person who leaves company X for company Y in Clio is related to Y only in Salesforce after the window.

Both sandboxes over HTTP, the window's task steps (``_window`` of test_cutover) and its verification as the
phase runs it: full extraction and load of the tiny firm with a person whose company is X and who has no related
company (Contact.AccountId = X, Salesforce's direct AccountContactRelation to X, none of ours); then in Clio the
person's company becomes Y, X no longer related, and a window runs, then a second one that finds nothing new;
then the first window is rolled back.

The Contact upsert's new AccountId makes Salesforce create a direct relation to Y and keep the one to X as
indirect (Account Settings' default, as Help documents; the sandbox does so, see test_sf_account_contact_relation).
Clio has no relation to X: the verification must report it while it is there, and the window deletes it (ledgered
with its before-image), so that its rollback puts the person back under X with one relation to X, direct.
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
def left(tmp_path_factory):
    base = tmp_path_factory.mktemp("left")
    with direct.sandbox_hooks(base) as (clio, _sf, clio_hook, hook):
        mroot = staging.migration_root(base / "stage", "tiny", "m1")
        (x, y), person = direct.companies_and_a_lone_person(clio_hook, 2)
        clio.mutate("contacts", "update", person, {"company": {"id": x}})
        spec, users, acc, contact, before = direct.full_load_person(clio_hook, hook, mroot, person, [x, y])
        clio.mutate("contacts", "update", person, {"company": {"id": y}})
        w1 = _window(clio_hook, hook, mroot, spec, users, "w1")
        after = direct.account_relations(hook, contact["Id"])
        verified = direct.verify_window(hook, mroot, spec, "w1")
        w2 = _window(clio_hook, hook, mroot, spec, users, "w2")
        again = direct.account_relations(hook, contact["Id"])
        yield {"hook": hook, "mroot": mroot, "spec": spec, "acc": acc, "x": x, "y": y, "person": person,
               "contact": contact, "before": before, "after": after, "again": again, "w1": w1, "w2": w2,
               "verified": verified}


def test_the_full_load_relates_the_person_directly_to_x_only(left):
    m = left
    assert m["contact"]["AccountId"] == m["acc"][m["x"]]
    assert m["before"] == [(m["acc"][m["x"]], True)]


def test_after_the_window_the_person_is_related_to_y_only(left):
    """Old code: Salesforce kept X as an indirect relation (demoted when AccountId moved to Y) that Clio does not
    have, and nothing in the window removed it: after == [(X, False), (Y, True)]."""
    m = left
    assert m["after"] == [(m["acc"][m["y"]], True)], m["w1"]
    ledger = read_ledger(m["mroot"], run_id="w1")
    acr = ledger[ledger["object"] == "AccountContactRelation"]
    # the relation to X deleted with its before-image; the one Salesforce made to Y ledgered as created
    x_sid, y_sid = (f"contact-{m['person']}#account-contact-{c}" for c in (m["x"], m["y"]))
    rows = sorted((r["source_system_id"], r["operation"], bool(r["created"])) for r in acr.to_dict("records"))
    assert rows == [(x_sid, "delete", False), (y_sid, "insert", True)], rows
    [deleted] = acr[acr["operation"] == "delete"].to_dict("records")
    assert deleted["before"]["AccountId"][:15] == m["acc"][m["x"]][:15], deleted
    assert not len(ledger[ledger["status"] == "failed"]), ledger[ledger["status"] == "failed"].to_dict("records")
    assert not m["w1"]["failed"]


def test_the_window_verifies_and_a_second_window_changes_nothing(left):
    m = left
    v = m["verified"]
    assert not v["failure"] and not v["mismatches"] and v["records_compared"], v
    by_object = staging.read_json(m["mroot"] / "reports" / "w1" / "verification.json")["by_object"]
    assert by_object["AccountContactRelation"] == {"records": 0, "fields": 1, "matches": 1}, by_object
    assert m["again"] == m["after"]
    assert not m["w2"]["failed"]
    ledger = read_ledger(m["mroot"], run_id="w2")
    assert not len(ledger[ledger["object"] == "AccountContactRelation"]), ledger.to_dict("records")


def test_rolling_back_the_window_puts_the_person_back_under_x_with_one_direct_relation(left):
    m = left
    hook = m["hook"]
    out = direct.rollback_window(hook, m["mroot"], m["spec"])
    assert out["failed"] == 0, out
    [contact] = hook.query_all(f"SELECT AccountId FROM Contact WHERE Id = '{m['contact']['Id']}'")
    assert contact["AccountId"] == m["acc"][m["x"]], out
    # no relation to X twice (the re-created one and the one Salesforce makes for the restored AccountId: found
    # again, not created), and the one Salesforce made to Y in the window (indirect once X is primary) deleted
    assert direct.account_relations(hook, m["contact"]["Id"]) == [(m["acc"][m["x"]], True)], out
    assert out["counts"]["AccountContactRelation"] == {"found_again": 1, "deleted": 1}, out
    again = direct.rollback_window(hook, m["mroot"], m["spec"])
    assert again["failed"] == 0 and not any(again["counts"].values()), again
    assert direct.account_relations(hook, m["contact"]["Id"]) == [(m["acc"][m["x"]], True)]
