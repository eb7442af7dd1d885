"""Kill points and lost responses on every Salesforce write path, counted with independent SOQL.

For each path (Bulk upsert, composite upsert, natural-key insert, ContentNote, ContentVersion,
ContentDocumentLink) one batch is loaded by a worker process that is SIGKILLed at two write calls
(:mod:`tests.faults.killpoint_worker`: before a call is sent, or after Salesforce answered and before
the ledger heard of it), then loaded to the end; a second batch is loaded while the Salesforce
sandbox commits one of its write calls but loses the answer (``drop_response`` knob, a 504).  Then:
Salesforce holds exactly one record per source record (SOQL and the org's own counts, not the
ledger), every one of them is listed as created in the ledger, a re-run creates nothing, and a
rollback of the migration brings every object back to its count before the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clio2sf import staging
from clio2sf.ledger import created_ids, norm_id, read_ledger
from clio2sf.load import chunked, soql_in

testing = pytest.importorskip("sandbox.salesforce.testing")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXT = "Clio_Id__c"
RUN = "run-1"
TOUCHED = ("Contact", "Account", "Case", "CaseContactRole", "ContentNote", "ContentVersion", "ContentDocument",
           "ContentDocumentLink")


def _env(sobject, sid, row, ext=True, natural=None, blob=None):
    out = {"sobject": sobject, "source_system_id": sid, "external_id_field": EXT if ext else None,
           "natural_key": natural, "row": ({EXT: sid} if ext else {}) | row}
    if blob:
        out["blob"] = blob
    return out


def _batches(mroot: Path) -> dict[str, dict[str, list[dict]]]:
    """sobject -> {"A": killed batch, "B": lost-response batch} (and the Cases the roles need)."""
    contacts = [_env("Contact", f"contact-kp{k}", {"LastName": f"Kp {k}"}) for k in range(400)]
    accounts = [_env("Account", f"contact-kpa{k}", {"Name": f"Kp Firm {k}"}) for k in range(700)]
    cases = [_env("Case", f"matter-kp{k}", {"Subject": f"Kp matter {k}"}) for k in range(250)]
    roles = [_env("CaseContactRole", f"matter-kp{k % 250}#contact-kp{k}",
                  {"Cases.Clio_Id__c": f"matter-kp{k % 250}", "Contact.Clio_Id__c": f"contact-kp{k}", "Role": "Other"},
                  ext=False, natural=["Cases.Clio_Id__c", "Contact.Clio_Id__c", "Role"]) for k in range(400)]
    notes = [_env("ContentNote", f"note-kp{k}", {"Title": f"Kp note {k}", "Content": f"<p>note {k}</p>"},
                  ext=False, natural=["Title", "Content"]) for k in range(700)]
    versions = []
    for k in range(8):
        data = f"document {k} ".encode() * (k + 1)
        path = f"blobs/documents/kp{k}/1"
        (mroot / path).parent.mkdir(parents=True, exist_ok=True)
        (mroot / path).write_bytes(data)
        versions.append(_env("ContentVersion", f"document-kp{k}@v1", {"Title": f"Kp doc {k}", "PathOnClient": f"kp{k}.txt"},
                             blob={"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}))
    link = {"ShareType": "V", "Visibility": "AllUsers"}
    note_links = [_env("ContentDocumentLink", f"note-kp{k}#matter-kp{k % 250}",
                       {"ContentNote.source_system_id": f"note-kp{k}", "Case:LinkedEntity.Clio_Id__c": f"matter-kp{k % 250}"} | link,
                       ext=False, natural=["ContentDocumentId", "LinkedEntityId"]) for k in range(700)]
    cv_links = [_env("ContentDocumentLink", f"document-kp{k}@v1#matter-kp{k}",
                     {"ContentVersion.Clio_Id__c": f"document-kp{k}@v1", "Case:LinkedEntity.Clio_Id__c": f"matter-kp{k}"} | link,
                     ext=False, natural=["ContentDocumentId", "LinkedEntityId"]) for k in range(8)]
    return {
        "Contact": {"A": contacts[:300], "B": contacts[300:]},
        "Account": {"A": accounts[:450], "B": accounts[450:]},
        "Case": {"A": cases},
        "CaseContactRole": {"A": roles[:250], "B": roles[250:]},
        "ContentNote": {"A": notes[:450], "B": notes[450:]},
        "ContentVersion": {"A": versions[:5], "B": versions[5:]},
        "ContentDocumentLink": {"A": note_links[:450], "B": note_links[450:] + cv_links},
    }


#: path -> (sobject, load mode, kill points of batch A (method, n-th call, before/after), lost answer of batch B)
PATHS = {
    "bulk upsert": ("Contact", "bulk", [("bulk_ingest", 1, "before"), ("bulk_ingest", 1, "after")],
                    "PATCH /jobs/ingest/#1"),
    "composite upsert": ("Account", "composite", [("composite_upsert", 2, "before"), ("composite_upsert", 2, "after")],
                         "PATCH /composite/sobjects/Account#2"),
    "natural-key insert": ("CaseContactRole", "composite",
                           [("composite_create", 1, "after"), ("composite_create", 1, "after")], "POST /composite/sobjects#1"),
    # a batch's 450 notes: one /composite call creates them all (five collections a call), one sets titles
    "ContentNote": ("ContentNote", "composite", [("composite_collections", 1, "after"),
                                                 ("composite_collections", 1, "before")],
                    "POST /composite#1"),
    "ContentVersion": ("ContentVersion", "auto", [("content_version_create", 2, "after"),
                                                  ("content_version_create", 2, "before")],
                       "POST /sobjects/ContentVersion#2"),
    "links": ("ContentDocumentLink", "composite", [("composite_create", 1, "after"), ("composite_create", 2, "after")],
              "POST /composite/sobjects#2"),
}


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    with testing.run_sf_sandbox(tmp_path_factory.mktemp("sf-kp"), seed=42) as sb:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sb.connection_json())
            mp.setenv("REQUESTS_CA_BUNDLE", sb.ca_bundle)
            from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

            hook = ClioSalesforceHook(sleep=lambda s: None, poll_interval=0.05, max_poll_interval=0.5)
            for obj in ("Account", "Contact", "Case", "ContentVersion"):
                hook.ensure_external_id_field(obj)
            yield sb, hook


@pytest.fixture(scope="module")
def loaded(org, tmp_path_factory):
    """Every path: batch A killed at its kill points then finished, batch B under a lost answer; figures."""
    sb, hook = org
    from clio2sf import pipeline

    mroot = tmp_path_factory.mktemp("kp-stage")
    before = sb.counts()
    batches = _batches(mroot)
    paths: dict[str, Path] = {}
    for sobject, parts in batches.items():
        for name, envs in parts.items():
            p = mroot / "transformed" / sobject / f"kp-batch-{name}.jsonl.gz"
            staging.write_jsonl_gz(p, envs)
            paths[f"{sobject}/{name}"] = p
    env = dict(os.environ, AIRFLOW_CONN_SALESFORCE_DEFAULT=sb.connection_json(), REQUESTS_CA_BUNDLE=sb.ca_bundle,
               PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'plugins'}")
    figures: dict[str, dict] = {}

    def load(sobject: str, name: str, mode: str, run_id: str = RUN) -> dict:
        return pipeline.load_batch(hook, paths[f"{sobject}/{name}"], mroot, migration_id="kp", run_id=run_id,
                                   mode=mode, sleep=lambda s: None)

    order = ["bulk upsert", "composite upsert", "natural-key insert", "ContentNote", "ContentVersion", "links"]
    for path in order:
        sobject, mode, kills, drop = PATHS[path]
        if sobject == "CaseContactRole":
            assert load("Case", "A", "composite")["failed"] == 0
        killed = []
        for method, n, when in kills:
            job = {"mroot": str(mroot), "batch": str(paths[f"{sobject}/A"]), "run_id": RUN, "mode": mode,
                   "kill": {"method": method, "n": n, "when": when}}
            proc = subprocess.run([sys.executable, "-m", "tests.faults.killpoint_worker", json.dumps(job)],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == -9, f"{path}: the worker was to be killed at {method}#{n} {when}: {proc.stderr[-2000:]}"
            killed.append(f"{method}#{n} {when}")
        finish_a = load(sobject, "A", mode)
        sb.knobs(drop_response=drop)
        log_before = len(sb.request_log()["requests"])
        finish_b = load(sobject, "B", mode)
        dropped = [r for r in sb.request_log()["requests"][log_before:] if r["status"] == 504]
        sb.knobs(drop_response="")
        assert len(dropped) == 1, f"{path}: the lost answer ({drop}) was not injected"
        figures[path] = {"sobject": sobject, "records": len(batches[sobject]["A"]) + len(batches[sobject]["B"]),
                         "kill_points": killed, "lost_answer": drop, "finish_a": finish_a, "finish_b": finish_b}
    rerun = {s: sum(load(s, n, PATHS[p][1], run_id="run-2")["created"] for n in batches[s])
             for p, (s, *_rest) in PATHS.items()}
    return {"sb": sb, "hook": hook, "mroot": mroot, "before": before, "after": sb.counts(), "batches": batches,
            "figures": figures, "rerun_created": rerun}


def _ids(hook, soql_head: str, field: str, values) -> list[dict]:
    out = []
    for part in chunked(sorted(values), 200):
        out += hook.query_all(f"{soql_head} WHERE {soql_in(field, part)}")
    return out


def _in_salesforce(loaded) -> dict[str, dict[tuple, list[str]]]:
    """Per object: source key -> Salesforce Ids holding it, read with SOQL (never the ledger)."""
    hook, b = loaded["hook"], loaded["batches"]
    out: dict[str, dict[tuple, list[str]]] = {}

    def group(sobject, recs, key):
        d: dict[tuple, list[str]] = {}
        for r in recs:
            d.setdefault(key(r), []).append(r["Id"])
        out[sobject] = d

    for sobject in ("Contact", "Account", "Case", "ContentVersion"):
        sids = [e["source_system_id"] for part in b[sobject].values() for e in part]
        group(sobject, _ids(hook, f"SELECT Id, {EXT} FROM {sobject}", EXT, sids), lambda r: (r[EXT],))
    cases = {r[EXT]: r["Id"] for r in _ids(hook, f"SELECT Id, {EXT} FROM Case", EXT,
                                               [e["source_system_id"] for e in b["Case"]["A"]])}
    group("CaseContactRole", _ids(hook, "SELECT Id, CasesId, ContactId, Role FROM CaseContactRole", "CasesId",
                                  cases.values()), lambda r: (norm_id(r["CasesId"]), norm_id(r["ContactId"]), r["Role"]))
    titles = [e["row"]["Title"] for part in b["ContentNote"].values() for e in part]
    notes = hook.query_all("SELECT Id, Title FROM ContentNote")
    group("ContentNote", [n for n in notes if n["Title"] in titles or n["Title"].startswith("[clio2sf")],
          lambda r: (r["Title"],))
    group("ContentDocumentLink", _ids(hook, "SELECT Id, ContentDocumentId, LinkedEntityId FROM ContentDocumentLink",
                                      "LinkedEntityId", cases.values()),
          lambda r: (norm_id(r["ContentDocumentId"]), norm_id(r["LinkedEntityId"])))
    return out


def test_exactly_one_salesforce_record_per_source_record(loaded):
    got = _in_salesforce(loaded)
    b = loaded["batches"]
    expected = {s: sum(len(p) for p in parts.values()) for s, parts in b.items()}
    for sobject, keys in got.items():
        dup = {k: v for k, v in keys.items() if len(v) > 1}
        assert not dup, f"{sobject}: duplicated in Salesforce: {list(dup.items())[:3]}"
        assert len(keys) == expected[sobject], f"{sobject}: {len(keys)} in Salesforce for {expected[sobject]} source records"
    assert not [k for k in got["ContentNote"] if k[0].startswith("[clio2sf")], "a note kept its marker title"
    # and the org's own counts moved by exactly that (documents: one per note and version; each has
    # the platform's owner link besides ours)
    delta = {s: loaded["after"].get(s, 0) - loaded["before"].get(s, 0) for s in TOUCHED}
    docs = expected["ContentNote"] + expected["ContentVersion"]
    assert delta == {**{s: expected[s] for s in expected}, "ContentDocument": docs,
                     "ContentDocumentLink": expected["ContentDocumentLink"] + docs}


def test_the_ledger_lists_every_record_that_exists_as_created(loaded):
    created = {s: {norm_id(i) for i in ids} for s, ids in created_ids(read_ledger(loaded["mroot"])).items()}
    for sobject, keys in _in_salesforce(loaded).items():
        ids = {norm_id(i) for v in keys.values() for i in v}
        missing = ids - created.get(sobject, set())
        assert not missing, f"{sobject}: {len(missing)} record(s) in Salesforce that no ledger line created"
    assert not list((loaded["mroot"] / "ledger").rglob("*.journal-*")), "journals are removed once the batch is ledgered"


def test_every_path_was_killed_and_lost_an_answer_and_a_rerun_creates_nothing(loaded):
    figs = loaded["figures"]
    assert set(figs) == set(PATHS)
    assert all(len(f["kill_points"]) == 2 for f in figs.values())
    assert all(f["finish_a"]["failed"] == 0 and f["finish_b"]["failed"] == 0 for f in figs.values()), figs
    assert loaded["rerun_created"] == dict.fromkeys(loaded["rerun_created"], 0)
    print(json.dumps({p: {k: f[k] for k in ("sobject", "records", "kill_points", "lost_answer")} for p, f in figs.items()},
                     indent=1))


def test_rollback_returns_the_org_to_its_counts_before_the_run(loaded):
    from clio2sf.rollback_run import run_rollback

    res = run_rollback(loaded["hook"], loaded["mroot"], migration_id="kp", dry_run=False)
    assert res["failed"] == 0, res
    now = loaded["sb"].counts()
    assert {s: now.get(s, 0) for s in TOUCHED} == {s: loaded["before"].get(s, 0) for s in TOUCHED}

