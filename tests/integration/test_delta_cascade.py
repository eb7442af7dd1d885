"""A delta window that deletes a parent must not take live children with it (Salesforce's delete cascade).

Both sandboxes over HTTP, the steps mig_06_delta's tasks call (``_window`` of test_cutover): full
extraction and load of the tiny firm, then in Clio a company deleted whose people still exist (the
Clio sandbox, like the API reference, leaves the people as they were: same ``company``, same
``updated_at``, so no window sees them changed). Salesforce deletes an Account's Contacts with it;
the window must first detach them (``AccountId`` cleared, the before-image in the ledger), report it,
and the window's rollback must re-create the Account and put the Contacts back under it.
"""

from __future__ import annotations

import pytest

from clio2sf import staging
from clio2sf.extract import read_records
from clio2sf.ledger import read_ledger
from clio2sf.rollback_run import run_rollback
from tests.integration import direct
from tests.integration.test_cutover import _extract, _load, _window

roster = pytest.importorskip("sandbox.common.roster")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def deleted_company(tmp_path_factory):
    base = tmp_path_factory.mktemp("cascade")
    with direct.sandbox_hooks(base) as (clio, _sf, clio_hook, hook):
        mroot = staging.migration_root(base / "stage", "tiny", "m1")
        # a company without matters, two people of the firm moved to it (the tiny firm's companies with people
        # are all matter clients)
        free = clio.mutate("contacts", "create", data={"type": "Company", "name": "Gone Without Matters Ltd"})["id"]
        listed = [r for page in clio_hook.paginate("contacts.json", "id,type,company", {}) for r in page["data"]]
        clients = {(r.get("client") or {}).get("id") for page in clio_hook.paginate("matters.json", "id,client", {})
                   for r in page["data"]}
        for p in [r for r in listed if r["type"] == "Person" and not r.get("company") and r["id"] not in clients][:2]:
            clio.mutate("contacts", "update", p["id"], {"company": {"id": free}})
        _extract(clio_hook, mroot, lambda page_no: None)
        spec, users = direct.transform_for_load(hook, mroot)
        full = _load(hook, mroot, spec, mroot, "full-1", "full_load")
        contacts = [e["data"] for e in read_records(mroot, "contacts")]
        people_of: dict[int, list[dict]] = {}
        for p in contacts:
            if p.get("type") == "Person" and (p.get("company") or {}).get("id"):
                people_of.setdefault(p["company"]["id"], []).append(p)
        with_cases = {r["Account"]["Clio_Id__c"] for r in hook.query_all(
            "SELECT Account.Clio_Id__c FROM Case WHERE AccountId != null")
            if (r.get("Account") or {}).get("Clio_Id__c")}
        ranked = sorted(people_of, key=lambda cid: (-len(people_of[cid]), cid))  # most people first
        assert f"contact-{free}" not in with_cases and len(people_of[free]) == 2
        client = next(cid for cid in ranked if f"contact-{cid}" in with_cases)  # people and matters
        accounts, sf_people, cases, clio_before, acrs = {}, {}, {}, {}, {}
        for cid in (free, client):
            [acc] = hook.query_all(f"SELECT Id FROM Account WHERE Clio_Id__c = 'contact-{cid}'")
            accounts[cid] = acc["Id"]
            sf_people[cid] = hook.query_all(f"SELECT Id, Clio_Id__c FROM Contact WHERE AccountId = '{acc['Id']}'")
            cases[cid] = [r["Id"] for r in hook.query_all(f"SELECT Id FROM Case WHERE AccountId = '{acc['Id']}'")]
            acrs.update({r["Id"]: r["IsDirect"] for r in hook.query_all(
                f"SELECT Id, IsDirect FROM AccountContactRelation WHERE AccountId = '{acc['Id']}'")})
            for p in people_of[cid]:
                clio_before[p["id"]] = clio_hook.get_page(f"contacts/{p['id']}.json",
                                                          {"fields": "id,company,updated_at"})[0]["data"]
        for cid in (free, client):
            clio.mutate("contacts", "delete", cid)
        clio_after = {pid: clio_hook.get_page(f"contacts/{pid}.json", {"fields": "id,company,updated_at"})[0]["data"]
                      for pid in clio_before}
        w1 = _window(clio_hook, hook, mroot, spec, users, "w1")
        yield {"hook": hook, "mroot": mroot, "full": full, "free": free, "client": client, "accounts": accounts,
               "people_of": people_of, "sf_people": sf_people, "cases": cases, "clio_before": clio_before,
               "clio_after": clio_after, "acrs": acrs, "w1": w1}


def _live(hook, sobject: str, field: str, ids) -> dict[str, dict]:
    quoted = ",".join(f"'{i}'" for i in ids)
    return {r["Id"]: r for r in hook.query_all(f"SELECT Id, {field} FROM {sobject} WHERE Id IN ({quoted})")}


def _ids(c, cid) -> list[str]:
    return [r["Id"] for r in c["sf_people"][cid]]


def test_clio_leaves_the_people_of_a_deleted_company_unchanged(deleted_company):
    """Why the window cannot count on an update: the people keep their company and are not listed as changed."""
    c = deleted_company

    def seen(d: dict) -> tuple:
        return d["id"], (d.get("company") or {}).get("id"), d["updated_at"]

    assert {k: seen(v) for k, v in c["clio_after"].items()} == {k: seen(v) for k, v in c["clio_before"].items()}
    for cid in (c["free"], c["client"]):
        assert {r["Clio_Id__c"] for r in c["sf_people"][cid]} >= {f"contact-{p['id']}" for p in c["people_of"][cid]}
    assert c["cases"][c["client"]] and not c["cases"][c["free"]]
    assert c["w1"]["plan"]["deleted"] == {"contacts": 2}
    # the only people the window read are the two moved to the free company just before the extraction (the
    # first window's overlap): still naming it, so their upsert keeps them under its Account
    changed = [e["data"] for e in read_records(c["mroot"] / "delta" / "w1", "contacts")]
    assert sorted(p["id"] for p in changed) == sorted(p["id"] for p in c["people_of"][c["free"]])
    assert {(p.get("company") or {}).get("id") for p in changed} == {c["free"]}


def test_the_people_of_a_deleted_company_stay_live_detached_and_reported(deleted_company):
    """Old code: the company without matters took its people's Contacts to the Recycle Bin (not ledgered); the
    one with matters failed DELETE_FAILED (its Cases restrict the delete)."""
    c = deleted_company
    hook = c["hook"]
    people = _ids(c, c["free"]) + _ids(c, c["client"])
    live = _live(hook, "Contact", "AccountId", people)
    assert set(live) == set(people), ("a Contact of a live Clio person was deleted", c["w1"]["deletes"])
    assert not _live(hook, "Account", "Name", c["accounts"].values()), c["w1"]["deletes"]  # both companies went
    assert all(r["AccountId"] is None for r in live.values())
    cases = _live(hook, "Case", "AccountId", c["cases"][c["client"]])
    assert set(cases) == set(c["cases"][c["client"]]) and all(r["AccountId"] is None for r in cases.values())
    out = c["w1"]["deletes"]
    assert out["failed"] == 0 and out["counts"]["Account"] == {"deleted": 2}, out
    # and the client company's bills and ledger entries (custom lookups Salesforce would clear, unledgered: old
    # code) keep naming it through the ledger
    money = {k: v for k, v in out["detached"].items() if k not in ("Contact.AccountId", "Case.AccountId")}
    assert out["detached"] == {"Contact.AccountId": len(people), "Case.AccountId": len(cases), **money}, out
    assert money and all(k.endswith(".Account__c") for k in money), out
    # the companies' indirect AccountContactRelations cannot be detached (AccountId is required): they went with
    # them, counted and ledgered with their before-images; a direct one went when its Contact's AccountId was
    # cleared (a private contact has no account relation) and comes back with the AccountId
    indirect = {i for i, direct in c["acrs"].items() if not direct}
    assert indirect and out["cascaded"] == {"AccountContactRelation.AccountId": len(indirect)}, out
    assert not _live(hook, "AccountContactRelation", "IsDirect", c["acrs"])
    ledger = read_ledger(c["mroot"], run_id="w1")
    gone = ledger[(ledger["object"] == "AccountContactRelation") & (ledger["operation"] == "delete")]
    assert {i: isinstance(b, dict) for i, b in zip(gone["sf_id"], gone["before"], strict=True)} == {
        i: True for i in indirect}
    detach = ledger[(ledger["operation"] == "detach") & (ledger["status"] == "ok")]
    on_money = detach["object"] != "Contact"
    on_money &= detach["object"] != "Case"
    assert {b["Account__c"] for b in detach[on_money]["before"]} <= set(c["accounts"].values())
    assert len(detach[on_money]) == sum(money.values())
    detach = detach[~on_money]
    parent = {i: c["accounts"][cid] for cid in (c["free"], c["client"]) for i in _ids(c, cid)}
    parent.update({i: c["accounts"][c["client"]] for i in cases})
    assert {i: b for i, b in zip(detach["sf_id"], detach["before"], strict=True)} == {
        i: {"Id": i, "AccountId": p} for i, p in parent.items()}


def test_rolling_back_the_window_puts_the_people_back_under_their_company(deleted_company):
    c = deleted_company
    hook = c["hook"]
    out = run_rollback(hook, c["mroot"], run_id="w1", migration_id="m1", dry_run=False)
    assert out["failed"] == 0, out
    assert out["counts"].get("Account") == {"recreated": 2}, out
    people = _ids(c, c["free"]) + _ids(c, c["client"])
    assert out["counts"].get("Contact") == {"restored": len(people)}, out
    assert out["counts"].get("Case") == {"restored": len(c["cases"][c["client"]])}, out
    for cid in (c["free"], c["client"]):
        [acc] = hook.query_all(f"SELECT Id FROM Account WHERE Clio_Id__c = 'contact-{cid}'")
        assert {r["AccountId"] for r in _live(hook, "Contact", "AccountId", _ids(c, cid)).values()} == {acc["Id"]}
        if c["cases"][cid]:
            assert {r["AccountId"] for r in _live(hook, "Case", "AccountId", c["cases"][cid]).values()} == {acc["Id"]}
    # the bills and ledger entries detached from the companies name the re-created Accounts
    ledger = read_ledger(c["mroot"], run_id="w1")
    money = ledger[(ledger["operation"] == "detach") & (ledger["phase"] == "delta")
                   & ~ledger["object"].isin(["Contact", "Case"])]
    assert len(money)
    recreated = {r["Id"] for r in hook.query_all("SELECT Id FROM Account WHERE Clio_Id__c IN "
                                                 f"('contact-{c['free']}', 'contact-{c['client']}')")}
    for o, i in zip(money["object"], money["sf_id"], strict=True):
        assert _live(hook, o, "Account__c", [i])[i]["Account__c"] in recreated, o
    # the indirect AccountContactRelations the deletes took along are back, after their Contacts' Accounts, and
    # each person's direct relation is back with its AccountId (Salesforce's own: not re-created by us, no second one)
    indirect = sum(not d for d in c["acrs"].values())
    assert indirect and out["counts"].get("AccountContactRelation") == {"recreated": indirect}, out
    for cid in (c["free"], c["client"]):
        [acc] = hook.query_all(f"SELECT Id FROM Account WHERE Clio_Id__c = 'contact-{cid}'")
        direct = hook.query_all(f"SELECT ContactId FROM AccountContactRelation WHERE AccountId = '{acc['Id']}' "
                                "AND IsDirect = true")
        assert sorted(r["ContactId"] for r in direct) == sorted(_ids(c, cid))
