"""A Contact load task that dies after the upsert and is not run again (its retries ran out): the rollback of the
window still puts back what the dead batch changed.

Both sandboxes over HTTP, the window's task steps (``_window`` of test_cutover): the scenario of
test_delta_contact_retry (a person whose company is X, no related company, leaves X for Y in Clio, and gets a new
title), but the window's Contact batch dies right after Salesforce took the upsert (raised at
``pipeline.moved_relations``) and no retry follows. The batch never writes its ledger file: all that is on record
is its journal (the upsert's ``ok`` line, and the before-images and relations it journalled before writing).

The one-click rollback of that window must still put the person back under X with its old title and one
relation to X, direct (the relation Salesforce made to Y when the upsert moved the person is deleted, X's is
direct again), and a second rollback must find nothing to do.
"""

from __future__ import annotations

import pytest

from clio2sf import pipeline, staging
from clio2sf.ledger import read_ledger
from tests.integration import direct
from tests.integration.test_cutover import _window

roster = pytest.importorskip("sandbox.common.roster")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


class RetriesExhausted(Exception):
    """The worker died and Airflow gave up on the task (not :class:`~tests.integration.test_cutover.TaskDied`, which
    ``_window`` retries): the window stops there."""


@pytest.fixture(scope="module", params=["before_relations", "after_relation_delete"])
def died(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("died")
    with direct.sandbox_hooks(base) as (clio, _sf, clio_hook, hook), pytest.MonkeyPatch.context() as mp:
        mroot = staging.migration_root(base / "stage", "tiny", "m1")
        (x, y), person = direct.companies_and_a_lone_person(clio_hook, 2)
        clio.mutate("contacts", "update", person, {"company": {"id": x}, "title": "Associate"})
        spec, users, acc, contact, before = direct.full_load_person(clio_hook, hook, mroot, person, [x, y], fields="Id, AccountId, Title")
        clio.mutate("contacts", "update", person, {"company": {"id": y}, "title": "Partner"})

        if request.param == "before_relations":
            def dies(*args, **kwargs):
                raise RetriesExhausted("killed after the Contact upsert; no retry left")

            mp.setattr(pipeline, "moved_relations", dies)
        else:
            real = pipeline.delete_stale_links

            def dies_after(client, sobject, stale, journal=None):
                out = real(client, sobject, stale, **({"journal": journal} if journal is not None else {}))
                if sobject == pipeline.RELATION:
                    raise RetriesExhausted("killed after the relation delete, before the ledger; no retry left")
                return out

            mp.setattr(pipeline, "delete_stale_links", dies_after)
        with pytest.raises(RetriesExhausted):
            _window(clio_hook, hook, mroot, spec, users, "w1")
        mp.undo()
        [moved] = hook.query_all(f"SELECT AccountId, Title FROM Contact WHERE Id = '{contact['Id']}'")
        left = direct.account_relations(hook, contact["Id"])
        ledger = read_ledger(mroot, run_id="w1")
        first = direct.rollback_window(hook, mroot, spec)
        [back] = hook.query_all(f"SELECT AccountId, Title FROM Contact WHERE Id = '{contact['Id']}'")
        relations = direct.account_relations(hook, contact["Id"])
        second = direct.rollback_window(hook, mroot, spec)
        yield {"death": request.param, "acc": acc, "x": x, "y": y, "contact": contact, "before": before, "moved": moved, "left": left,
               "ledger": ledger, "first": first, "back": back, "relations": relations, "second": second,
               "again": direct.account_relations(hook, contact["Id"])}


def test_the_batch_died_after_salesforce_moved_the_contact_and_left_only_its_journal(died):
    m = died
    assert m["before"] == [(m["acc"][m["x"]], True)] and m["contact"]["Title"] == "Associate"
    assert (m["moved"]["AccountId"], m["moved"]["Title"]) == (m["acc"][m["y"]], "Partner")
    if m["death"] == "before_relations":
        assert m["left"] == sorted([(m["acc"][m["x"]], False), (m["acc"][m["y"]], True)])
    else:  # it deleted the relation Salesforce kept to X (journalled), then died
        assert m["left"] == [(m["acc"][m["y"]], True)]
    contact = m["ledger"][m["ledger"]["object"] == "Contact"]
    assert set(contact["batch"].map(lambda b: ".journal-" in b)) == {True}, "the dead batch wrote a ledger file"
    assert len(contact[(contact["status"] == "ok") & contact["before"].isna()]), "no journalled write"


def test_rolling_back_the_window_puts_the_person_back_under_x_with_its_old_title(died):
    """Old code: the journal's ``ok`` line has no before-image: nothing was restored (AccountId Y, Title Partner)."""
    m = died
    assert m["first"]["failed"] == 0, m["first"]
    assert m["first"]["counts"]["Contact"] == {"restored": 1}, m["first"]
    assert (m["back"]["AccountId"], m["back"]["Title"]) == (m["acc"][m["x"]], "Associate"), m["first"]


def test_the_relations_are_as_before_the_window(died):
    """The relation Salesforce made to Y when the dead batch moved the person (never ledgered) is deleted; the one to
    X, kept as indirect, is direct again; when the batch had deleted it, it is re-created from its journalled
    before-image (Salesforce made it again with the restored AccountId: ``found_again``, its fields written back).
    Old code (the second): the delete was not journalled, the relation was not planned (no ``found_again``)."""
    m = died
    assert m["relations"] == m["before"], m["first"]
    want = {"deleted": 1} if m["death"] == "before_relations" else {"deleted": 1, "found_again": 1}
    assert m["first"]["counts"]["AccountContactRelation"] == want, m["first"]


def test_a_second_rollback_changes_nothing(died):
    m = died
    assert m["second"]["planned"] == {} and not m["second"]["counts"] and not m["second"]["failed"], m["second"]
    assert m["again"] == m["before"]
