"""A Contact load task that dies between the upsert and the relation delete: its retry converges, its rollback is right.

Both sandboxes over HTTP, the window's task steps (``_window`` of test_cutover) and its verification as the
phase runs it: the scenario of test_delta_left_company (a person whose company is X, no related company, leaves X
for Y in Clio), but the window's Contact batch dies right after Salesforce took the upsert, before it handled the
person's relations (raised at ``pipeline.moved_relations``, its first step after the upsert and before any
ledger line is written), and ``load_changes`` runs again (Airflow's task retry).

The first attempt's upsert already moved the Contact to Y: Salesforce made the relation to Y direct and kept the
one to X as indirect. The retry must still delete the relation to X (Clio has none), ledger it with its
before-image, ledger the relation Salesforce made to Y as created, and keep the Contact's before-image from
before the window (AccountId X), so that the verification finds nothing and a rollback puts the person back
under X with one relation to X, direct.
"""

from __future__ import annotations

import pytest

from clio2sf import pipeline, staging
from clio2sf.ledger import read_ledger
from tests.integration import direct
from tests.integration.test_cutover import TaskDied, _window

roster = pytest.importorskip("sandbox.common.roster")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def retried(tmp_path_factory):
    base = tmp_path_factory.mktemp("retried")
    with direct.sandbox_hooks(base) as (clio, _sf, clio_hook, hook), pytest.MonkeyPatch.context() as mp:
        mroot = staging.migration_root(base / "stage", "tiny", "m1")
        (x, y), person = direct.companies_and_a_lone_person(clio_hook, 2)
        clio.mutate("contacts", "update", person, {"company": {"id": x}})
        spec, users, acc, contact, before = direct.full_load_person(clio_hook, hook, mroot, person, [x, y])
        clio.mutate("contacts", "update", person, {"company": {"id": y}})
        real, seen = pipeline.moved_relations, []

        def dies_once(*args, **kwargs):
            """The worker dies after the Contact upsert, before the relations are looked at (first attempt)."""
            seen.append(direct.account_relations(hook, contact["Id"]))
            if len(seen) == 1:
                raise TaskDied("killed after the Contact upsert")
            return real(*args, **kwargs)

        mp.setattr(pipeline, "moved_relations", dies_once)
        w1 = _window(clio_hook, hook, mroot, spec, users, "w1")
        mp.setattr(pipeline, "moved_relations", real)
        after = direct.account_relations(hook, contact["Id"])
        verified = direct.verify_window(hook, mroot, spec, "w1")
        w2 = _window(clio_hook, hook, mroot, spec, users, "w2")
        again = direct.account_relations(hook, contact["Id"])
        yield {"hook": hook, "mroot": mroot, "spec": spec, "acc": acc, "x": x, "y": y, "person": person,
               "contact": contact, "before": before, "seen": seen, "after": after, "again": again, "w1": w1,
               "w2": w2, "verified": verified}


def test_the_first_attempt_died_after_salesforce_moved_the_contact(retried):
    m = retried
    assert m["before"] == [(m["acc"][m["x"]], True)]
    assert m["w1"]["load_retries"] == 1, m["w1"]
    # what the first attempt left: the Contact under Y, the relation to X kept by Salesforce as indirect
    assert m["seen"][0] == sorted([(m["acc"][m["x"]], False), (m["acc"][m["y"]], True)])


def test_the_retry_leaves_exactly_the_relations_clio_has(retried):
    """Old code: the retry read the Contact's AccountId already at Y (its before-image said Y), saw no company change
    and left the relation to X: after == [(X, False), (Y, True)], the verification reported it."""
    m = retried
    assert m["after"] == [(m["acc"][m["y"]], True)], m["w1"]
    ledger = read_ledger(m["mroot"], run_id="w1")
    assert not len(ledger[ledger["status"] == "failed"]), ledger[ledger["status"] == "failed"].to_dict("records")
    assert not len(ledger[ledger["status"] == "intent"]), "the batch's journal outlived its ledger file"
    acr = ledger[ledger["object"] == "AccountContactRelation"]
    x_sid, y_sid = (f"contact-{m['person']}#account-contact-{c}" for c in (m["x"], m["y"]))
    rows = sorted((r["source_system_id"], r["operation"], bool(r["created"])) for r in acr.to_dict("records"))
    assert rows == [(x_sid, "delete", False), (y_sid, "insert", True)], rows
    [deleted] = acr[acr["operation"] == "delete"].to_dict("records")
    assert deleted["before"]["AccountId"][:15] == m["acc"][m["x"]][:15], deleted
    # the Contact's before-image is the one from before the window, not the first attempt's result
    [line] = ledger[(ledger["object"] == "Contact") & (ledger["source_system_id"] == f"contact-{m['person']}")
                    & (ledger["phase"] == "delta")].to_dict("records")
    assert line["before"]["AccountId"][:15] == m["acc"][m["x"]][:15], line


def test_the_window_verifies_and_a_second_window_changes_nothing(retried):
    m = retried
    v = m["verified"]
    assert not v["failure"] and not v["mismatches"] and v["records_compared"], v
    by_object = staging.read_json(m["mroot"] / "reports" / "w1" / "verification.json")["by_object"]
    assert by_object["AccountContactRelation"] == {"records": 0, "fields": 1, "matches": 1}, by_object
    assert m["again"] == m["after"]
    assert not m["w2"]["failed"] and not m["w2"]["load_retries"]


def test_rolling_back_the_window_puts_the_person_back_under_x_with_one_direct_relation(retried):
    """Old code: the Contact's before-image (AccountId Y) restored nothing; the person stayed under Y."""
    m = retried
    hook = m["hook"]
    out = direct.rollback_window(hook, m["mroot"], m["spec"])
    assert out["failed"] == 0, out
    [contact] = hook.query_all(f"SELECT AccountId FROM Contact WHERE Id = '{m['contact']['Id']}'")
    assert contact["AccountId"] == m["acc"][m["x"]], out
    assert direct.account_relations(hook, m["contact"]["Id"]) == [(m["acc"][m["x"]], True)], out
    assert out["counts"]["AccountContactRelation"] == {"found_again": 1, "deleted": 1}, out
