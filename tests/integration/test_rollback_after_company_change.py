"""Rolling back the whole migration after a company-change delta window leaves the org as it was before it.

Both sandboxes over HTTP, the full load and a window as their task steps run them (``_load``/``_window`` of
test_cutover), and the rollback as mig_07_rollback's task runs it (:func:`clio2sf_airflow.phases.rollback.rollback`,
its Airflow context faked: the real staging root, lease and Salesforce connection). The org holds records of its
own before the migration (two Accounts, a Contact directly related to one and indirectly to the other). In Clio,
person P's company is A and person Q's is A too; after the full load P's company becomes B (Salesforce keeps
the old direct relation to A as an indirect one, which the window deletes with its before-image) and Q gains a
related company C (an indirect relation the window creates).

Then the rollback of the whole migration (``target_run_id`` empty), in two orders: at once, and after a
rollback of the window alone. Either way: no record the migration created is left (every object of the load
order holds exactly the records it held before the load; no relation left to a deleted Contact or Account, none
re-created by the rollback's restore of the relation the window deleted), the org's own records are unchanged
field for field, the rollback's counts agree with its plan (``rollback.json``) and with what the ledger says the
migration created, and a second rollback changes nothing.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clio2sf import staging
from clio2sf.ledger import read_ledger
from clio2sf.rollback import GOES_WITH_PARENT
from clio2sf.verify import existing_ids
from tests.integration import direct
from tests.integration.test_cutover import _extract, _load, _window

roster = pytest.importorskip("sandbox.common.roster")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

#: The org's own records, made before the load.
OWN = ("Account", "Contact", "AccountContactRelation")
#: What a ContentDocument delete takes along (a note is its ContentDocument): no delete call of their own.
WITH_THEIR_DOCUMENT = ("ContentDocumentLink", "ContentNote")


def _lone_people(clio_hook, n: int) -> list[int]:
    """The Clio ids of the first ``n`` people with no company and no related contact."""
    contacts = [r for page in clio_hook.paginate("contacts.json", "id,type,company,related_contacts", {})
                for r in page["data"]]
    return sorted(r["id"] for r in contacts if r["type"] == "Person" and not r.get("company")
                  and not r.get("related_contacts"))[:n]


def _records(hook, sobject: str) -> dict[str, dict]:
    """Every live record of ``sobject``, all fields, by 15-character id."""
    names = [f["name"] for f in hook.describe(sobject)["fields"]]
    return {str(r["Id"])[:15]: {k: v for k, v in r.items() if k != "attributes"}
            for r in hook.query_all(f"SELECT {', '.join(names)} FROM {sobject}")}


def _ids(hook, sobjects) -> dict[str, set[str]]:
    return {s: {str(r["Id"])[:15] for r in hook.query_all(f"SELECT Id FROM {s}")} for s in sobjects}


def _org_state(hook, sobjects) -> dict:
    """What the assertions compare: every id of the load order's objects, and the org's own records whole."""
    return {"ids": _ids(hook, sobjects), "own": {s: _records(hook, s) for s in OWN}}


def _phase_rollback(mp, hook, *, target_run_id: str | None, dag_run_id: str, dry_run: bool = False) -> dict:
    """mig_07_rollback's task (dry run off unless asked) in a faked Airflow context: the migration's staging root
    (the Variable), its writer lease and Salesforce connection are the real ones."""
    from clio2sf_airflow.phases import common
    from clio2sf_airflow.phases import rollback as phase

    context = {"params": {"firm": "tiny", "migration_id": "m1", "target_run_id": target_run_id, "dry_run": dry_run},
               "run_id": dag_run_id, "dag": SimpleNamespace(dag_id="mig_07_rollback")}
    mp.setattr(common, "get_current_context", lambda: context)
    return phase.rollback()


def _created(mroot) -> dict[str, set[str]]:
    """What the ledger says the migration created (its load and window lines, and the rollbacks' re-creations),
    per object: 15-character ids."""
    ledger = read_ledger(mroot)
    rows = ledger[(ledger["status"] == "ok") & ledger["created"] & ledger["sf_id"].notna()]
    out: dict[str, set[str]] = {}
    for r in rows.itertuples(index=False):
        out.setdefault(r.object, set()).add(str(r.sf_id)[:15])
    return out


@pytest.fixture(scope="module", params=["whole", "window-then-whole"])
def rolled_back(request, tmp_path_factory):
    order = request.param
    base = tmp_path_factory.mktemp("rollback-company")
    with direct.sandbox_hooks(base) as (clio, sf, clio_hook, hook), pytest.MonkeyPatch.context() as mp:
        mroot = staging.migration_root(base / "stage", "tiny", "m1")
        (a, b, c), _ = direct.companies_and_a_lone_person(clio_hook, 3)
        p, q = _lone_people(clio_hook, 2)
        clio.mutate("contacts", "update", p, {"company": {"id": a}})
        clio.mutate("contacts", "update", q, {"company": {"id": a}})
        # the org's own records: an Account with its Contact, related (indirectly) to a second Account
        own = hook.composite_create([{"attributes": {"type": "Account"}, "Name": n} for n in ("Own Co", "Own Other Co")])
        assert all(r["success"] for r in own), own
        [own_contact] = hook.composite_create([{"attributes": {"type": "Contact"}, "LastName": "Own",
                                                "AccountId": own[0]["id"]}])
        [own_rel] = hook.composite_create([{"attributes": {"type": "AccountContactRelation"},
                                            "AccountId": own[1]["id"], "ContactId": own_contact["id"]}])
        assert own_contact["success"] and own_rel["success"], (own_contact, own_rel)
        _extract(clio_hook, mroot, lambda page_no: None)
        direct.write_user_map(hook, mroot)  # as mig_03 writes them
        spec, users = direct.transform_for_load(hook, mroot)  # the schema applied: the org's fields from here on
        # ContentDocumentLink is queried only by its document or entity (an implementation restriction), and its
        # records go with them; a file is its ContentDocument
        sobjects = [s for s in spec.load_order if s not in ("ContentVersion", "ContentDocumentLink")]
        sobjects.append("ContentDocument")
        before = _org_state(hook, sobjects)
        _load(hook, mroot, spec, mroot, "full-1", "full_load")
        acc = {cid: hook.query_all(f"SELECT Id FROM Account WHERE Clio_Id__c = 'contact-{cid}'")[0]["Id"]
               for cid in (a, b, c)}
        con = {cid: hook.query_all(f"SELECT Id FROM Contact WHERE Clio_Id__c = 'contact-{cid}'")[0]["Id"]
               for cid in (p, q)}
        loaded = _ids(hook, sobjects)
        clio.mutate("contacts", "update", p, {"company": {"id": b}})
        clio.mutate("contacts", "update", q, {"related_contacts": [{"id": c, "type": "Company"}]})
        w1 = _window(clio_hook, hook, mroot, spec, users, "w1")
        after_window = {cid: direct.account_relations(hook, con[cid]) for cid in (p, q)}
        ledger = read_ledger(mroot, run_id="w1")
        window_deleted = [(r["sf_id"], r["before"]) for r in ledger[
            (ledger["object"] == "AccountContactRelation") & (ledger["operation"] == "delete")].to_dict("records")]
        window_only = None
        if order == "window-then-whole":
            window_only = _phase_rollback(mp, hook, target_run_id="w1", dag_run_id="rb-w1")
            window_only["relations"] = {cid: direct.account_relations(hook, con[cid]) for cid in (p, q)}
        created = _created(mroot)
        present = _ids(hook, sobjects)  # what the whole rollback starts from
        mark = len(sf.request_log()["requests"])
        whole = _phase_rollback(mp, hook, target_run_id=None, dag_run_id="rb-all")
        calls = [e for e in sf.request_log()["requests"][mark:] if e.get("api")]
        whole["calls"] = {"total": len(calls), "delete": sum(1 for e in calls if e["method"] == "DELETE"),
                          "query": sum(1 for e in calls if e["kind"] == "query")}
        print(f"\nwhole rollback ({order}): Salesforce calls {whole['calls']}")
        whole["plan"] = staging.read_json(mroot / "reports" / "rb-all" / "rollback.json")
        after = _org_state(hook, sobjects)
        relations = hook.query_all("SELECT Id, AccountId, ContactId FROM AccountContactRelation")
        dry = _phase_rollback(mp, hook, target_run_id=None, dag_run_id="rb-all-dry", dry_run=True)
        again = _phase_rollback(mp, hook, target_run_id=None, dag_run_id="rb-all-2")
        after_again = _org_state(hook, sobjects)
        reports = {rid: {name: staging.read_json(mroot / "reports" / rid / name)
                         for name in ("rollback.json", "rollback_result.json")}
                   for rid in ("rb-all", "rb-all-dry", "rb-all-2")}
        reports["rb-all"]["html"] = (mroot / "reports" / "rb-all" / "rollback.html").read_text()
        from clio2sf_airflow.reports_app import report_files

        listed = report_files(mroot)
        yield SimpleNamespace(
            order=order, hook=hook, mroot=mroot, acc=acc, con=con, p=p, q=q, before=before, loaded=loaded,
            w1=w1, after_window=after_window, window_deleted=window_deleted, window_only=window_only,
            created=created, present=present, whole=whole, after=after, relations=relations, dry=dry, again=again,
            after_again=after_again, reports=reports, listed=listed,
            own_ids={"Account": {str(r["id"])[:15] for r in own}, "Contact": {str(own_contact["id"])[:15]},
                     "AccountContactRelation": {str(own_rel["id"])[:15]}})


def test_the_window_moved_p_to_b_and_related_q_to_c(rolled_back):
    """The scenario is the one described: the window deleted P's relation to A (before-image ledgered) and
    created Q's to C; nothing failed."""
    m = rolled_back
    assert not m.w1["failed"], m.w1
    a, b, c = (m.acc[k][:15] for k in sorted(m.acc))
    p_rel = [(acc[:15], direct_) for acc, direct_ in m.after_window[m.p]]
    q_rel = sorted((acc[:15], direct_) for acc, direct_ in m.after_window[m.q])
    assert p_rel == [(b, True)], m.after_window
    assert q_rel == sorted([(a, True), (c, False)]), m.after_window
    ledger = read_ledger(m.mroot, run_id="w1")
    acr = ledger[(ledger["object"] == "AccountContactRelation") & (ledger["phase"] != "rollback")]
    deleted = acr[acr["operation"] == "delete"].to_dict("records")
    assert len(deleted) == 1 and deleted[0]["before"]["AccountId"][:15] == a, deleted
    assert int(acr["created"].sum()) == 2, acr.to_dict("records")  # P's to B (Salesforce's, ours), Q's to C


@pytest.mark.parametrize("rolled_back", ["window-then-whole"], indirect=True)  # the order with a window rollback
def test_the_window_rollback_alone_puts_p_back_under_a(rolled_back):
    m = rolled_back
    out = m.window_only
    assert out["failed"] == 0, out
    assert [(acc[:15], d) for acc, d in out["relations"][m.p]] == [(m.acc[min(m.acc)][:15], True)], out
    assert [(acc[:15], d) for acc, d in out["relations"][m.q]] == [(m.acc[min(m.acc)][:15], True)], out
    assert out["counts"]["AccountContactRelation"] == {"found_again": 1, "deleted": 2}, out


def test_no_record_the_migration_created_is_left(rolled_back):
    """Every object of the load order holds exactly the records it held before the load: nothing the migration
    (or the rollback's re-creation of the deleted relation) created is left, nothing of the org's is gone."""
    m = rolled_back
    assert m.whole["failed"] == 0, m.whole
    for sobject, ids in m.before["ids"].items():
        assert m.after["ids"][sobject] == ids, (sobject, m.after["ids"][sobject] - ids, ids - m.after["ids"][sobject])
    # the load did create records of these objects (the check above is not vacuous)
    for sobject in OWN:
        assert m.loaded[sobject] - m.before["ids"][sobject], sobject
        assert m.created[sobject], sobject
    for sobject, ids in m.created.items():
        assert not existing_ids(m.hook, sobject, sorted(ids)), sobject
    # no relation to a Contact or an Account that is gone
    accounts, contacts = m.after["ids"]["Account"], m.after["ids"]["Contact"]
    for r in m.relations:
        assert str(r["ContactId"])[:15] in contacts and str(r["AccountId"])[:15] in accounts, r


def test_the_orgs_own_records_are_untouched(rolled_back):
    m = rolled_back
    for sobject, ids in m.own_ids.items():
        assert ids <= set(m.before["own"][sobject]), sobject
    assert m.after["own"] == m.before["own"]  # field for field, SystemModstamp included


def test_the_rollback_counts_agree_with_its_plan_and_what_it_removed(rolled_back):
    """Executed == planned (``rollback.json``'s counts), per object and action; deleted == what the ledger
    says the migration created and was in the org when the rollback began (a file's links and a note's record
    go with its ContentDocument, deleted first: cascaded, never already gone; P's relation to B, its direct one,
    goes with P: kept). P's relation to A, which the window deleted, is not re-created when P is deleted too (it would go
    with P); the rollback of the window alone finds it again when P's AccountId is restored.

    Old code: the whole rollback re-created P's relation to A (``recreated`` 1, a record of the rollback's that
    only P's delete took away)."""
    m = rolled_back
    out = m.whole
    report = out["plan"]
    assert report["counts"] == out["planned"], (report["counts"], out["planned"])
    # acted on only as planned (links and notes: only taken along by their ContentDocument)
    assert {s for s, c in out["counts"].items() if set(c) != {"cascaded"}} <= set(out["planned"]), out
    for sobject, planned in out["planned"].items():
        done = out["counts"].get(sobject, {})
        removed = done.get("deleted", 0) + done.get("kept_direct", 0) + done.get("already_gone", 0)
        assert planned.get("delete", 0) == removed and not done.get("cascaded"), (sobject, out)
        assert planned.get("recreate", 0) == done.get("recreated", 0) + done.get("found_again", 0), (sobject, out)
        assert planned.get("restore", 0) == done.get("restored", 0), (sobject, out)
        assert not done.get("failed"), (sobject, out)
        assert not done.get("already_gone"), (sobject, out)
    for sobject, ids in m.created.items():
        if sobject == "ContentVersion":  # removed through its ContentDocument
            continue
        done = out["counts"].get(sobject, {})
        there = len(ids & m.present[sobject]) if sobject in m.present else len(ids)  # links: not listed, all there
        assert done.get("deleted", 0) + done.get("kept_direct", 0) + done.get("cascaded", 0) == there, (
            sobject, out)
    for sobject in ("Account", "Contact"):  # removed: exactly what the migration created
        assert m.present[sobject] - m.after["ids"][sobject] == m.created[sobject] & m.present[sobject], sobject
        assert out["counts"][sobject]["deleted"] == len(m.present[sobject] - m.after["ids"][sobject]), (sobject, out)
    acr = out["counts"]["AccountContactRelation"]
    assert not acr.get("recreated") and not acr.get("found_again"), out
    assert "recreate" not in out["planned"]["AccountContactRelation"] and "restore" not in out["planned"]["Contact"]
    [(deleted_id, _)] = m.window_deleted
    skipped = [(d["sf_id"], d["why"]) for d in report["already_done"] if d["action"] == "recreate"]
    if m.order == "whole":
        # P's relation to A: would go with P; P's to B (its direct one) goes with P; Q's to C deleted
        assert skipped == [(deleted_id, GOES_WITH_PARENT)], skipped
        assert acr.get("kept_direct") == 1, out
    else:  # the window's rollback found it again
        assert skipped == [(deleted_id, "re-created by an earlier rollback")], skipped
        assert not acr.get("kept_direct"), out
    assert len(report["already_done"]) == out["already_done"], out


def test_a_second_rollback_is_a_no_op(rolled_back):
    m = rolled_back
    again = m.again
    assert again["failed"] == 0 and not again["planned"] and not any(again["counts"].values()), again
    assert again["already_done"] > 0, again
    assert m.after_again == m.after


def test_each_rollback_keeps_its_own_report(rolled_back):
    """The report of the rollback that deleted the records (``reports/<its run id>/``) is still there, with its
    plan and what it did, after a dry run and a second (no-op) rollback of the same scope, which wrote their own
    beside it; all three are listed in Browse -> Migration reports.

    Old code: every rollback of the migration wrote ``reports/rollback-m1/``: the second rollback's empty plan
    replaced the executed one's."""
    m = rolled_back
    executed, dry, again = (m.reports[r] for r in ("rb-all", "rb-all-dry", "rb-all-2"))
    assert executed["rollback.json"] == m.whole["plan"] and executed["rollback.json"]["counts"] == m.whole["planned"]
    assert sum(n for acts in m.whole["planned"].values() for n in acts.values()) > 0, m.whole
    result = executed["rollback_result.json"]
    assert (result["dry_run"], result["completed"], result["target_run_id"]) == (False, True, None), result
    assert result["counts"] == m.whole["counts"] and result["planned"] == m.whole["planned"], result
    assert result["failed"] == 0 and result["already_done"] == m.whole["already_done"], result
    assert "Executed" in executed["html"] and "Outcome by object" in executed["html"]
    assert dry["rollback_result.json"]["dry_run"] is True and dry["rollback.json"]["counts"] == m.dry["planned"] == {}
    assert again["rollback_result.json"]["counts"] == {} and again["rollback.json"]["counts"] == {}
    assert m.whole["report"] != m.dry["report"] != m.again["report"]
    assert {f"reports/{r}/rollback.html" for r in ("rb-all", "rb-all-dry", "rb-all-2")} <= set(m.listed), m.listed


def test_files_go_first_and_take_their_links_and_notes(rolled_back):
    """The ContentDocuments are deleted first and take their links and notes along: those get no delete call
    (``cascaded``, listed in the plan's already done), none comes back already gone, and the rollback sends one
    composite DELETE per object and 200 records, no more.

    Old code: ContentDocument (not in the load order) was deleted first, then the links and the notes were sent
    too, each coming back already gone (39 links and 21 notes of the tiny firm: 2 DELETE calls more)."""
    m = rolled_back
    out = m.whole
    for sobject in WITH_THEIR_DOCUMENT:
        there = len(m.created[sobject] & m.present[sobject]) if sobject in m.present else len(m.created[sobject])
        assert there and out["counts"][sobject] == {"cascaded": there}, (sobject, out)
        assert sobject not in out["planned"], out
    assert out["planned"]["ContentDocument"]["delete"] == out["counts"]["ContentDocument"]["deleted"], out
    assert not any(c.get("already_gone") for c in out["counts"].values()), out
    per_chunk = sum(-(-acts["delete"] // 200) for acts in out["planned"].values() if acts.get("delete"))
    assert out["calls"]["delete"] == per_chunk, out["calls"]
