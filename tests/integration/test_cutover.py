"""Cutover: changes made in Clio during the full extraction and between two delta windows reach Salesforce.

Drives the steps the phase tasks call (``clio2sf`` functions, the real hooks, both sandboxes over
HTTP): full extraction (contacts read ten to a page) with a contact changed after its page was read
and another changed later (the old first window, from the newest ``updated_at`` seen, lost the
first), transform and load, delta window 1 (from when the extraction began), then a creation that
is deleted again, a cleared field, an edit, a relationship's role changed, a note edited and a
document renamed, and window 2.  Salesforce is then compared field by field with what the Clio API
answers now (not with staged or transformed data).
"""

from __future__ import annotations

import time

import pytest

from clio2sf import catalog, delta, pipeline, staging
from clio2sf.delta_run import apply_deletes, plan_window
from clio2sf.extract import extract_object, read_records
from clio2sf.ledger import read_ledger
from clio2sf.mapping.spec import load_spec
from clio2sf.mapping.transform import PRODUCES
from clio2sf.verify import base_id
from tests.integration import direct

roster = pytest.importorskip("sandbox.common.roster")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

WINDOW_OBJECTS = ("contacts", "matters", "relationships", "matter_notes", "contact_notes", "documents")


def _extract(clio_hook, mroot, during) -> None:
    """The full extraction; ``during(page_no)`` runs after each contacts page is read."""
    pages = 0

    def get_page(url, params=None):
        nonlocal pages
        out = clio_hook.get_page(url, params)
        if "contacts" in url.split("?")[0]:
            pages += 1
            during(pages)
        return out

    for obj in catalog.CLIO_OBJECTS:
        if obj.name in direct.LOAD_INPUTS:
            extract_object(obj, get_page, mroot, download=clio_hook.download_document,
                           limit=10 if obj.name == "contacts" else 200)


def _load(hook, mroot, spec, root, run_id, phase, window_root=None) -> list[dict]:
    out = []
    for deferred in (False, True):
        for sobject in spec.load_order:
            folder = root / "transformed" / sobject
            for path in sorted(folder.glob("*.jsonl.gz")) if folder.exists() else ():
                clear = (pipeline.owned_fields(spec, sobject, path.name.split("-batch-")[0])
                         if phase == "delta" else None)
                out.append(pipeline.load_batch(hook, path, mroot, migration_id="m1", run_id=run_id, phase=phase,
                                               load_order=spec.load_order, deferred=deferred, window_root=window_root,
                                               clear_fields=clear, sleep=lambda s: None))
    return out


class TaskDied(Exception):
    """A task's worker died part-way (raised by a test at a seam of the step): Airflow runs the task again."""


def _window(clio_hook, hook, mroot, spec, users, name: str, objects=WINDOW_OBJECTS) -> dict:
    """One delta window, as mig_06_delta's tasks run it (``objects``: the Clio objects it reads); a load that
    dies (:class:`TaskDied`) is run again from its start, as Airflow retries ``load_changes`` (``load_retries``)."""
    droot = mroot / "delta" / name
    current = {}
    for obj_name in objects:
        obj = catalog.get(obj_name)
        since = delta.read_since(mroot, obj_name) or delta.extraction_high_water(staging.raw_dir(mroot, obj_name))
        staging.write_json(droot / "since" / f"{obj_name}.json", {"updated_since": since})
        extract_object(obj, clio_hook.get_page, droot, updated_since=since, download=clio_hook.download_document)
        current[obj_name] = [r["id"] for page in clio_hook.paginate(obj.endpoint, "id", obj.list_params)
                             for r in page["data"]]
    plan = plan_window(hook, mroot, spec, delta_root=droot, current_ids=current,
                       integration_username=roster.INTEGRATION_USER["username"])
    for obj_name in PRODUCES:
        manifest = staging.read_json(droot / "raw_ok" / obj_name / staging.MANIFEST)
        for entry in (manifest or {}).get("batches", []):
            names = pipeline.lookup_names(obj_name)
            lookup = pipeline.build_lookup(mroot, names, spec)
            for n, table in pipeline.build_lookup(droot, names, spec).items():
                lookup.setdefault(n, {}).update(table)
            pipeline.transform_batch(droot / "raw_ok" / obj_name / entry["file"], obj_name, spec, users, lookup, droot)
    retries = 0
    while True:
        try:
            loads = _load(hook, mroot, spec, droot, name, "delta", window_root=droot)
            break
        except TaskDied:
            retries += 1
            if retries > 3:  # the DAG's task retries (DEFAULT_ARGS)
                raise
    deletes = apply_deletes(hook, mroot, plan, name, "m1", delta_root=droot, load_order=spec.load_order)
    failed = {base_id(str(s)) for s in read_ledger(mroot, run_id=name).query("status == 'failed'")["source_system_id"]}
    marks = {}
    for obj_name in objects:
        envs = list(read_records(droot, obj_name))
        since = staging.read_json(droot / "since" / f"{obj_name}.json")["updated_since"]
        current_mark = (delta.read_watermarks(mroot).get(obj_name) or {}).get("updated_since") or since
        mark = delta.held_watermark(current_mark, (e["data"].get("updated_at") for e in envs),
                                    [e["data"].get("updated_at") for e in envs if e["source_system_id"] in failed])
        if mark and mark != (delta.read_watermarks(mroot).get(obj_name) or {}).get("updated_since"):
            delta.commit_watermark(mroot, obj_name, mark, name)
        marks[obj_name] = mark
    return {"plan": plan, "loads": loads, "deletes": deletes, "failed": failed, "marks": marks,
            "load_retries": retries}


@pytest.fixture(scope="module")
def cutover(tmp_path_factory):
    base = tmp_path_factory.mktemp("cutover")
    with direct.sandbox_hooks(base) as (clio, _sf, clio_hook, hook):
        mroot = staging.migration_root(base / "stage", "tiny", "m1")
        seen: dict[str, int] = {}

        def during(page_no: int) -> None:
            if page_no == 1:  # a contact whose page was just read changes...
                first = clio_hook.get_page("contacts.json", {"fields": "id,type", "limit": 10, "order": "id(asc)"})[0]
                pid = next(c["id"] for c in first["data"] if c["type"] == "Person")
                clio.mutate("contacts", "update", pid, {"title": "Changed during extraction"})
                seen["early"] = pid
            if page_no == 2:  # ...and a later one changes after it (its page is read after the change)
                time.sleep(1.1)  # Clio's updated_at has whole seconds: the later change is a later second
                rest = clio_hook.get_page("contacts.json", {"fields": "id,type", "limit": 200, "order": "id(asc)"})[0]
                pid = [c["id"] for c in rest["data"] if c["type"] == "Person"][-1]
                clio.mutate("contacts", "update", pid, {"title": "Changed later"})
                seen["late"] = pid

        _extract(clio_hook, mroot, during)
        spec, users = direct.transform_for_load(hook, mroot)
        full = _load(hook, mroot, spec, mroot, "full-1", "full_load")
        staged_early = next(e["data"] for e in read_records(mroot, "contacts") if e["data"]["id"] == seen["early"])
        old_baseline = delta.next_watermark(None, (e["data"].get("updated_at") for e in read_records(mroot, "contacts")))

        created = clio.mutate("contacts", "create", data={"type": "Person", "first_name": "Brief", "last_name": "Client"})
        w1 = _window(clio_hook, hook, mroot, spec, users, "w1")

        persons = [e["data"] for e in read_records(mroot, "contacts") if e["data"].get("type") == "Person"]
        titled = next(p for p in persons if p.get("title") and p["id"] not in seen.values())
        edited = next(p for p in persons if p["id"] not in (titled["id"], *seen.values()))
        clio.mutate("contacts", "update", titled["id"], {"title": None})
        clio.mutate("contacts", "update", edited["id"], {"first_name": "Renamed"})
        clio.mutate("contacts", "delete", created["id"])
        rels = [e["data"] for e in read_records(mroot, "relationships")]
        roles = set(spec.value_map("relationship_role").values)
        rel = next(r for r in rels if (r.get("description") or "") in roles and (r.get("matter") or {}).get("id"))
        new_role = "Expert Witness" if rel["description"] != "Expert Witness" else "Witness"
        clio.mutate("relationships", "update", rel["id"], {"description": new_role})
        note = next(e["data"] for e in read_records(mroot, "matter_notes"))
        clio.mutate("notes", "update", note["id"], {"subject": "Edited during cutover", "detail": "New body"})
        doc = next(e["data"] for e in read_records(mroot, "documents") if not e["data"].get("deleted_at"))
        clio.mutate("documents", "update", doc["id"], {"name": "Renamed during cutover.pdf"})
        w2 = _window(clio_hook, hook, mroot, spec, users, "w2")
        yield {"clio": clio, "clio_hook": clio_hook, "hook": hook, "mroot": mroot, "seen": seen, "full": full,
               "w1": w1, "w2": w2, "created": created, "titled": titled, "edited": edited, "rel": rel, "new_role": new_role, "note": note,
               "doc": doc, "staged_early": staged_early, "old_baseline": old_baseline}


def _clio(c, endpoint: str, rid, fields: str) -> dict:
    return c["clio_hook"].get_page(f"{endpoint}/{rid}.json", {"fields": fields})[0]["data"]


def _sf(c, soql: str) -> list[dict]:
    return c["hook"].query_all(soql)


def test_a_change_during_the_extraction_is_caught_by_the_first_window(cutover):
    c = cutover
    early = _clio(c, "contacts", c["seen"]["early"], "id,title,updated_at")
    assert early["title"] == "Changed during extraction"
    assert c["staged_early"].get("title") != early["title"], "the extraction read the page before the change"
    # the old first window (newest updated_at seen) would have started after this change: it was lost
    assert delta.parse_ts(c["old_baseline"]) > delta.parse_ts(early["updated_at"])
    [sf] = _sf(c, f"SELECT Title FROM Contact WHERE Clio_Id__c = 'contact-{early['id']}'")
    assert sf["Title"] == early["title"]


def test_creations_updates_cleared_values_and_deletions_match_clio(cutover):
    c = cutover
    gone = c["created"]["id"]
    assert _sf(c, f"SELECT Id FROM Contact WHERE Clio_Id__c = 'contact-{gone}'") == []  # created in w1, deleted in w2
    assert c["w1"]["plan"]["upserts"].get("contacts")
    for rid in (c["titled"]["id"], c["edited"]["id"], c["seen"]["late"]):
        clio = _clio(c, "contacts", rid, "id,first_name,last_name,title")
        [sf] = _sf(c, f"SELECT FirstName, LastName, Title FROM Contact WHERE Clio_Id__c = 'contact-{rid}'")
        assert (sf["FirstName"], sf["LastName"], sf["Title"]) == (clio.get("first_name") or None, clio["last_name"],
                                                                  clio.get("title") or None), rid
    assert _clio(c, "contacts", c["titled"]["id"], "title").get("title") in (None, "")


def test_a_changed_role_replaces_the_link_record(cutover):
    c = cutover
    rel = _clio(c, "relationships", c["rel"]["id"], "id,description,matter,contact")
    assert rel["description"] == c["new_role"]
    roles = _sf(c, f"SELECT Role FROM CaseContactRole WHERE Cases.Clio_Id__c = 'matter-{rel['matter']['id']}' "
                   f"AND Contact.Clio_Id__c = 'contact-{rel['contact']['id']}'")
    # every role Clio now lists between this matter and this contact, once each; the old one is gone
    obj = catalog.get("relationships")
    vm = load_spec(None).value_map("relationship_role")
    want = sorted({vm.values.get(r.get("description") or "", vm.default or "Other")
                   for page in c["clio_hook"].paginate(obj.endpoint, "id,description,matter,contact", obj.list_params)
                   for r in page["data"] if (r.get("matter") or {}).get("id") == rel["matter"]["id"]
                   and (r.get("contact") or {}).get("id") == rel["contact"]["id"]})
    assert sorted(r["Role"] for r in roles) == want and c["new_role"] in want


def test_an_edited_note_and_a_renamed_document_are_updated(cutover):
    c = cutover
    note = _clio(c, "notes", c["note"]["id"], "id,subject,detail")
    ids = pipeline.ledger_sf_ids(c["mroot"], "ContentNote")
    note_id = ids["note-" + str(note["id"])]
    [sf] = _sf(c, f"SELECT Title FROM ContentNote WHERE Id = '{note_id}'")
    assert sf["Title"] == note["subject"]
    doc = _clio(c, "documents", c["doc"]["id"], "id,name")
    latest = _sf(c, f"SELECT Title FROM ContentVersion WHERE (Clio_Id__c = 'document-{doc['id']}' OR "
                    f"Clio_Id__c LIKE 'document-{doc['id']}@%') AND IsLatest = true")
    assert [r["Title"] for r in latest] == [doc["name"]]


def test_nothing_failed_and_the_watermarks_moved(cutover):
    c = cutover
    for w in ("w1", "w2"):
        assert c[w]["failed"] == set(), (w, c[w]["failed"])
        assert c[w]["deletes"]["failed"] == 0
    assert c["w2"]["plan"]["deleted"].get("contacts") == 1
