"""Rollback planning: reverse dependency order, before-image restore, files, idempotence."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict

import pytest

from clio2sf.ledger import LedgerWriter, read_ledger
from clio2sf.rollback import (
    RollbackPlan,
    iter_rollback,
    plan_rollback,
    plan_rollback_from_ledger,
    restore_payload,
    write_rollback_csv,
    write_rollback_html,
    write_rollback_json,
)
from clio2sf.rollback_run import spool_plan, write_reports

pytestmark = pytest.mark.unit


class FakeOrg:
    """Just enough of an org: ids present and their field values."""

    def __init__(self):
        self.records: dict[str, dict] = {}

    def exists(self, sobject, ids):
        return [i for i in ids if i in self.records]

    def apply(self, root, plan, fail_after=None):
        by_obj: dict[str, LedgerWriter] = {}
        for n, op in enumerate(plan.operations):
            if fail_after is not None and n >= fail_after:
                break
            if op.action == "delete":
                del self.records[op.sf_id]
            else:
                self.records[op.sf_id].update(restore_payload(op))
            w = by_obj.setdefault(op.sobject, LedgerWriter(root, "m1", op.run_id, "rollback", op.sobject, "b1"))
            w.record(**op.ledger_kwargs())
        for w in by_obj.values():
            w.close()


def _plan(root, **kw) -> RollbackPlan:
    """The plan from the whole ledger in memory, the one read file by file and the one planned a step at a time
    (spooled, and reported from the spool): they must be the same."""
    whole = plan_rollback(read_ledger(root, journal_images=True), **kw)
    streamed = plan_rollback_from_ledger(root, **kw)
    assert streamed.to_json() == whole.to_json()
    assert streamed.recreated == whole.recreated
    _same_when_spooled(root, whole, **kw)
    return streamed


def _same_when_spooled(root, whole: RollbackPlan, **kw) -> None:
    recreated: dict[str, str] = {}
    steps = list(iter_rollback(root, recreated=recreated, chunk=1, **kw))
    assert all(len({(o.action, o.sobject) for o in ops}) <= 1 and len(ops) <= 1 for ops, _ in steps)
    stepped = RollbackPlan([o for ops, _ in steps for o in ops], [d for _, ds in steps for d in ds], recreated)
    assert [asdict(o) for o in stepped.operations] == [asdict(o) for o in whole.operations]
    assert sorted(stepped.already_done) == sorted(whole.already_done) and recreated == whole.recreated
    # the reports written from the spool are those of the same plan (already_done in step order)
    spooled = spool_plan(root, root / "spool-test", migration_id=None, **{"run_id": None, **kw})
    assert spooled.counts == whole.counts() and spooled.already_done == len(whole.already_done)
    write_reports(root / "rb-spooled", spooled, dry_run=True)
    write_rollback_json(root / "rb-plan" / "rollback.json", stepped)
    write_rollback_csv(root / "rb-plan" / "rollback.csv", stepped)
    write_rollback_html(root / "rb-plan" / "rollback.html", stepped)
    for name in ("rollback.json", "rollback.csv", "rollback.html"):
        assert (root / "rb-spooled" / name).read_bytes() == (root / "rb-plan" / name).read_bytes(), name
    for path in (root / "spool-test").iterdir():
        path.unlink()
    (root / "spool-test").rmdir()


def _load(root, org: FakeOrg):
    def write(run, sobject, rows, phase="full_load"):
        with LedgerWriter(root, "m1", run, phase, sobject, "batch-00001") as w:
            for ssid, sf_id, created, before, files in rows:
                w.record(source_system_id=ssid, sf_id=sf_id, operation="upsert", created=created,
                         before=before, file_ids=files)
                org.records.setdefault(sf_id, {"Id": sf_id})

    org.records["003OLD"] = {"Id": "003OLD", "LastName": "Changed", "Email": "new@x.example"}
    write("full", "Account", [("contact-9000", "001A", True, None, [])])
    write("full", "Contact", [("contact-9001", "003A", True, None, []),
                              ("contact-9002", "003OLD", False, {"LastName": "Roe", "Email": None}, [])])
    write("full", "Case", [("matter-7", "500A", True, None, [])])
    write("full", "CaseContactRole", [("relationship-70", "03jA", True, None, [])])
    write("full", "Time_Entry__c", [("activity-31", "a0TA", True, None, [])])
    write("full", "Task", [("task-12", "00TA", True, None, [])])
    write("full", "ContentVersion", [("document-55@v1", "068A", True, None, ["069A"]),
                                     ("document-56@v1", "068B", True, None, ["069B"])])
    write("full", "ContentDocumentLink", [("document-55|500A", "06AA", True, None, [])])
    org.records["069A"] = {"Id": "069A"}
    org.records["069B"] = {"Id": "069B"}
    # a later delta adds version 2 of document-56: its ContentDocument must survive rolling back "full"
    write("delta1", "ContentVersion", [("document-56@v2", "068C", True, None, ["069B"])], phase="delta")


def test_plan_order_restore_and_idempotence(tmp_path):
    org = FakeOrg()
    _load(tmp_path, org)
    plan = _plan(tmp_path, run_id="full", exists=org.exists)
    order = [(o.action, o.sobject) for o in plan.operations]
    # restores first (a record the run moved under a parent it created gets out before that parent goes); then the
    # files (ContentDocument: its delete takes its links along, whatever the load order)
    assert order == [("restore", "Contact"), ("delete", "ContentDocument"), ("delete", "ContentDocumentLink"),
                     ("delete", "Task"), ("delete", "Time_Entry__c"), ("delete", "CaseContactRole"),
                     ("delete", "Case"), ("delete", "Contact"), ("delete", "Account")]
    assert [o.sf_id for o in plan.operations if o.sobject == "ContentDocument"] == ["069A"]
    assert ("delete", "ContentDocument", "069B", "file also used by another run: kept") in plan.already_done
    restore = plan.operations[0]
    assert restore_payload(restore) == {"Id": "003OLD", "LastName": "Roe", "Email": None}
    assert plan.counts()["Contact"] == {"delete": 1, "restore": 1}

    # interrupted after the restore and 3 deletes, and the ledger of the first attempt was never closed
    org2_records = dict(org.records)
    org2_records["003OLD"] = restore_payload(restore)
    for op in plan.operations[1:4]:
        org2_records.pop(op.sf_id)
    org.records = org2_records
    resumed = _plan(tmp_path, run_id="full", exists=org.exists)
    # the restore is written again (it is idempotent); the deletes done are found gone
    assert [o.sf_id for o in resumed.operations] == [o.sf_id for o in plan.operations[:1] + plan.operations[4:]]
    assert sum(1 for d in resumed.already_done if "already done" in d[3]) == 3

    org.apply(tmp_path, resumed)
    assert org.records["003OLD"] == {"Id": "003OLD", "LastName": "Roe", "Email": None}
    assert "500A" not in org.records and "069B" in org.records
    again = _plan(tmp_path, run_id="full", exists=org.exists)
    assert again.empty
    # without asking the org, the rollback ledger lines cover what was recorded: only the three
    # deletes done before the crash (never ledgered) are planned again
    blind = _plan(tmp_path, run_id="full")
    assert [o.sf_id for o in blind.operations] == [o.sf_id for o in plan.operations[1:4]]


def test_migration_wide_rollback_and_reports(tmp_path):
    org = FakeOrg()
    _load(tmp_path, org)
    plan = _plan(tmp_path)
    assert {o.sf_id for o in plan.operations if o.sobject == "ContentDocument"} == {"069A", "069B"}
    assert [(o.action, o.sobject) for o in plan.operations[:2]] == [("restore", "Contact"),
                                                                     ("delete", "ContentDocument")]
    assert (plan.operations[-1].action, plan.operations[-1].sobject) == ("delete", "Account")
    doc = json.loads(write_rollback_json(tmp_path / "rb" / "plan.json", plan).read_text())
    assert doc["counts"]["Account"] == {"delete": 1}
    rows = list(csv.DictReader(write_rollback_csv(tmp_path / "rb" / "plan.csv", plan).open()))
    assert rows[0]["action"] == "restore" and rows[0]["fields_restored"] == "Email;LastName"
    assert (rows[-1]["action"], rows[-1]["sobject"]) == ("delete", "Account")
    html = write_rollback_html(tmp_path / "rb" / "plan.html", plan).read_text()
    assert "Dry run: 10 operation(s) to roll back" in html


def test_custom_load_order_and_bad_restore(tmp_path):
    org = FakeOrg()
    _load(tmp_path, org)
    plan = _plan(tmp_path, run_id="full", load_order=["Case", "Account", "Contact"])
    deletes = [o.sobject for o in plan.operations if o.action == "delete"]
    assert deletes.index("Contact") < deletes.index("Account") < deletes.index("Case")
    with pytest.raises(ValueError, match="500A: not a restore"):
        restore_payload(next(o for o in plan.operations if o.sf_id == "500A"))


def test_a_later_run_rolled_back_after_the_first_reads_only_what_names_its_records(tmp_path):
    """Rollback lines of other runs (a delete by the first rollback, a re-creation) and lines of another
    migration: the plan read file by file is the whole-ledger plan."""
    org = FakeOrg()
    _load(tmp_path, org)
    full = _plan(tmp_path, run_id="full", exists=org.exists)
    org.apply(tmp_path, full)
    with LedgerWriter(tmp_path, "m1", "delta1", "delta", "Contact", "deletes-00001") as w:
        w.record(source_system_id="contact-9003", sf_id="003D", operation="delete", created=False,
                 before={"LastName": "Gone"})
    with LedgerWriter(tmp_path, "m1", "delta1", "rollback", "Contact", "rb-1") as w:  # re-created once already
        w.record(source_system_id="contact-9003", sf_id="003NEW", operation="recreate", created=True,
                 before={"Id": "003D"})
    with LedgerWriter(tmp_path, "m-other", "delta1", "delta", "Case", "batch-00001") as w:  # not this migration
        w.record(source_system_id="matter-9", sf_id="500Z", operation="upsert", created=True)
    with LedgerWriter(tmp_path, "m1", "delta1", "delta", "ContentDocumentLink", "batch-00001") as w:
        w.record(source_system_id="document-55|500A", sf_id="06AA", operation="upsert", created=True)
    org.records["003NEW"] = {"Id": "003NEW"}
    for kw in ({"run_id": "delta1", "exists": org.exists}, {"run_id": "delta1"}, {}, {"run_id": "full"}):
        plan = _plan(tmp_path, **kw)
        assert plan.recreated == {"003D": "003NEW"}
    plan = _plan(tmp_path, run_id="delta1", exists=org.exists)
    assert plan.empty
    assert set(plan.already_done) == {
        ("delete", "ContentDocument", "069B", "file also used by another run: kept"),
        ("delete", "ContentDocumentLink", "06AA", "deleted by an earlier rollback"),  # by the rollback of "full"
        ("recreate", "Contact", "003D", "re-created by an earlier rollback"),
        ("delete", "Case", "500Z", "no longer in Salesforce: already done")}
    only_m1 = plan_rollback_from_ledger(tmp_path, run_id="delta1", migration_id="m1")
    assert "500Z" not in {o.sf_id for o in only_m1.operations}
    assert "500Z" in {o.sf_id for o in plan_rollback_from_ledger(tmp_path, run_id="delta1").operations}
    with pytest.raises(ValueError, match="run 'delta1'"):
        plan_rollback_from_ledger(tmp_path, run_id="delta1", migration_id="m-none")


def test_each_object_is_recreated_then_restored_in_load_order(tmp_path):
    """A delta that deleted an Account took along an AccountContactRelation (ledgered as a delete with its
    before-image) and detached the Contact (a before-image): the Contact must get its Account back before the
    relation is re-created (Salesforce refuses a relation to a private contact), so the plan goes object by object
    in load order, re-creations then restores: Account, Contact, AccountContactRelation, Case. The old plan ran
    every re-creation before any restore."""
    with LedgerWriter(tmp_path, "m1", "d1", "delta", "Contact", "detach-00001") as w:
        w.record(source_system_id="contact-2", sf_id="003A", operation="detach", created=False,
                 before={"Id": "003A", "AccountId": "001A"})
    with LedgerWriter(tmp_path, "m1", "d1", "delta", "Case", "detach-00001") as w:
        w.record(source_system_id="matter-3", sf_id="500A", operation="detach", created=False,
                 before={"Id": "500A", "AccountId": "001A"})
    with LedgerWriter(tmp_path, "m1", "d1", "delta", "AccountContactRelation", "cascade-00001") as w:
        w.record(source_system_id="contact-1#AccountContactRelation-07kA", sf_id="07kA", operation="delete",
                 created=False, before={"AccountId": "001A", "ContactId": "003A", "IsActive": True})
    with LedgerWriter(tmp_path, "m1", "d1", "delta", "Account", "deletes-00001") as w:
        w.record(source_system_id="contact-1", sf_id="001A", operation="delete", created=False,
                 before={"Name": "Gone Co"})
    present = {"003A", "500A"}
    plan = _plan(tmp_path, run_id="d1", exists=lambda s, ids: [i for i in ids if i in present])
    assert [(o.action, o.sobject) for o in plan.operations] == [
        ("recreate", "Account"), ("restore", "Contact"), ("recreate", "AccountContactRelation"), ("restore", "Case")]


def test_a_record_re_created_twice_is_deleted_by_its_latest_copy_and_the_map_is_on_disk(tmp_path):
    """Two rollbacks re-created the same record (lines in files whose names do not sort as their times): the
    latest line in ledger order gives its id, in every planner (the streamed one's map is an SQLite table, joined
    in its queries). The id map a spooled plan keeps is an IdMap: a mapping equal to the whole-ledger one, whose
    own file exists only while it has entries and is gone on close."""
    import os

    from clio2sf.rollback import IdMap

    with LedgerWriter(tmp_path, "m1", "full", "full_load", "Contact", "batch-00001") as w:
        w.record(source_system_id="contact-1", sf_id="003000000000001AAA", operation="upsert", created=True)
        w.record(source_system_id="contact-2", sf_id="003000000000002AAA", operation="upsert", created=True)
    with LedgerWriter(tmp_path, "m1", "d1", "rollback", "Contact", "rb-a", clock=lambda: "2026-12-02T00:00:00Z") as w:
        w.record(source_system_id="contact-1", sf_id="003NEW00000002AAA", operation="recreate", created=True,
                 before={"Id": "003000000000001AAA"})
    with LedgerWriter(tmp_path, "m1", "d1", "rollback", "Contact", "rb-b", clock=lambda: "2026-12-01T00:00:00Z") as w:
        w.record(source_system_id="contact-1", sf_id="003NEW00000001AAA", operation="recreate", created=True,
                 before={"Id": "003000000000001AAA"})
    plan = _plan(tmp_path, run_id="full")
    assert plan.recreated == {"003000000000001": "003NEW00000002AAA"}
    assert [o.sf_id for o in plan.operations] == ["003000000000002AAA", "003NEW00000002AAA"]

    spooled = spool_plan(tmp_path, tmp_path / "spool-ids", run_id="full", migration_id="m1")
    assert isinstance(spooled.recreated, IdMap) and spooled.recreated == plan.recreated
    assert spooled.recreated.get("003000000000009", "x") == "x" and "003000000000001" in spooled.recreated
    folder = spooled.recreated._dir
    assert folder is not None and os.path.exists(folder)
    spooled.recreated["003000000000002"] = "003NEW00000003AAA"  # grows as a rollback re-creates
    assert len(spooled.recreated) == 2 and list(spooled.recreated) == ["003000000000001", "003000000000002"]
    spooled.close()
    assert not os.path.exists(folder)
    empty = IdMap()
    assert len(empty) == 0 and empty.get("a") is None and empty._dir is None  # no file until an entry
    empty.close()


def test_a_relation_whose_contact_or_account_the_rollback_deletes_is_not_re_created(tmp_path):
    """A window moved a Contact of the full load to another Account and deleted the relation to the old one that
    Salesforce had kept (indirect), with its before-image; and relations of the org's own Contact to an Account of
    ours and to one of its own. Rolling back the whole migration deletes our Contact and Accounts: a relation to
    either is not re-created (it would go with them); only the one between the org's own records is. Rolling back
    the window alone re-creates them all. Old code: the whole plan re-created the three relations."""
    from clio2sf.rollback import GOES_WITH_PARENT

    def write(run, phase, sobject, rows):
        with LedgerWriter(tmp_path, "m1", run, phase, sobject, "batch-00001") as w:
            for sf_id, operation, created, before in rows:
                w.record(source_system_id=f"x-{sf_id}", sf_id=sf_id, operation=operation, created=created,
                         before=before)

    write("full", "full_load", "Account", [("001A", "upsert", True, None), ("001B", "upsert", True, None)])
    write("full", "full_load", "Contact", [("003A", "upsert", True, None)])
    write("w1", "delta", "Contact", [("003A", "upsert", False, {"Id": "003A", "AccountId": "001A"})])
    write("w1", "delta", "AccountContactRelation", [
        ("07kA", "delete", False, {"Id": "07kA", "AccountId": "001A", "ContactId": "003A", "IsActive": True}),
        ("07kC", "delete", False, {"Id": "07kC", "AccountId": "001B", "ContactId": "003OWN", "IsActive": True}),
        ("07kD", "delete", False, {"Id": "07kD", "AccountId": "001OWN", "ContactId": "003OWN", "IsActive": True}),
        ("07kB", "upsert", True, None)])
    present = {"001A", "001B", "003A", "07kB", "001OWN", "003OWN"}

    def exists(sobject, ids):
        return [i for i in ids if i in present]

    whole = _plan(tmp_path, run_id=None, exists=exists)
    assert [(o.action, o.sobject, o.sf_id) for o in whole.operations if o.action != "delete"] == [
        ("recreate", "AccountContactRelation", "07kD")]
    assert sorted(d for d in whole.already_done if d[3] == GOES_WITH_PARENT) == [
        ("recreate", "AccountContactRelation", "07kA", GOES_WITH_PARENT),
        ("recreate", "AccountContactRelation", "07kC", GOES_WITH_PARENT)]
    assert {o.sf_id for o in whole.operations if o.action == "delete"} == {"001A", "001B", "003A", "07kB"}
    window = _plan(tmp_path, run_id="w1", exists=exists)
    assert [(o.action, o.sf_id) for o in window.operations if o.sobject == "AccountContactRelation"] == [
        ("recreate", "07kA"), ("recreate", "07kC"), ("recreate", "07kD"), ("delete", "07kB")]


def test_links_and_notes_go_with_the_content_document_the_rollback_deletes(tmp_path):
    """A ContentDocument delete takes the file's links with it, and a ContentNote is its ContentDocument (one Id):
    the plan deletes the documents first and gives their links (``link_documents`` names each link's document)
    and notes no delete of their own (GOES_WITH_DOCUMENT). A link to a document the rollback keeps (another run's
    file too) is still deleted; without ``link_documents`` links are deleted one by one (after their document).

    Old code: ContentDocument deletes came first only by accident of the load order (it is not in
    BASE_LOAD_ORDER), and the links and the note were planned too: each came back already gone."""
    from clio2sf.mapping.spec import BASE_LOAD_ORDER
    from clio2sf.rollback import GOES_WITH_DOCUMENT

    org = FakeOrg()
    _load(tmp_path, org)
    with LedgerWriter(tmp_path, "m1", "full", "full_load", "ContentNote", "batch-00002") as w:
        w.record(source_system_id="matter_note-3", sf_id="069N", operation="insert", created=True, file_ids=["069N"])
    with LedgerWriter(tmp_path, "m1", "full", "full_load", "ContentDocumentLink", "batch-00002") as w:
        w.record(source_system_id="matter_note-3#matter-7", sf_id="06AN", operation="upsert", created=True)
        w.record(source_system_id="document-56#matter-7", sf_id="06AB", operation="upsert", created=True)
    for sf_id in ("069N", "06AN", "06AB"):
        org.records[sf_id] = {"Id": sf_id}
    docs = {"06AA": "069A", "06AN": "069N", "06AB": "069B"}  # 069B: also a file of run delta1, kept

    def link_documents(ids):
        return {i: docs[i] for i in ids if i in org.records}

    for order in (BASE_LOAD_ORDER, None):
        kw = {"load_order": order} if order else {}
        plan = _plan(tmp_path, run_id="full", exists=org.exists, link_documents=link_documents, **kw)
        deletes = [(o.sobject, o.sf_id) for o in plan.operations if o.action == "delete"]
        assert deletes[:3] == [("ContentDocument", "069A"), ("ContentDocument", "069N"),
                               ("ContentDocumentLink", "06AB")], deletes
        assert not {s for s, _ in deletes[3:]} & {"ContentDocument", "ContentDocumentLink", "ContentNote"}
        cascaded = sorted((s, i) for a, s, i, why in plan.already_done if why == GOES_WITH_DOCUMENT)
        assert cascaded == [("ContentDocumentLink", "06AA"), ("ContentDocumentLink", "06AN"),
                            ("ContentNote", "069N")], plan.already_done
    blind = _plan(tmp_path, run_id="full", exists=org.exists, load_order=BASE_LOAD_ORDER)  # no link look-up
    deletes = [(o.sobject, o.sf_id) for o in blind.operations if o.action == "delete"]
    assert deletes[:5] == [("ContentDocument", "069A"), ("ContentDocument", "069N"), ("ContentDocumentLink", "06AA"),
                           ("ContentDocumentLink", "06AB"), ("ContentDocumentLink", "06AN")], deletes
    assert [(s, i) for a, s, i, why in blind.already_done if why == GOES_WITH_DOCUMENT] == [("ContentNote", "069N")]
    # the documents already deleted (by an earlier rollback, or by hand): their links and note are gone, not cascaded
    for sf_id in ("069A", "069N", "06AA", "06AN"):
        del org.records[sf_id]
    after = _plan(tmp_path, run_id="full", exists=org.exists, link_documents=link_documents)
    assert not [d for d in after.already_done if d[3] == GOES_WITH_DOCUMENT], after.already_done
    assert [(o.sobject, o.sf_id) for o in after.operations if o.sobject.startswith("Content")] == [
        ("ContentDocumentLink", "06AB")]


def test_a_batch_that_died_is_rolled_back_from_its_journal(tmp_path):
    """A Contact batch of a window died after its upsert and after deleting a relation, and was not run again: no
    ledger file, only its journal. Its update is restored to the before-image it journalled (with the relations
    the Contact had, for the rollback to delete the one Salesforce made), what it created is deleted, the relation
    it deleted is re-created. A batch that completed but whose journal was not removed yet is planned from its
    ledger file: one restore, one re-creation. Old code: no restore of the dead batch's Contact, the relation's
    delete was not journalled, and a delete in both a ledger file and its journal was re-created twice."""
    from types import SimpleNamespace

    from clio2sf.ledger import BatchJournal

    def ok(ssid, sf_id, created=False):
        return SimpleNamespace(source_system_id=ssid, sf_id=sf_id, operation="upsert", created=created, file_ids=(),
                               success=True)

    def gone(sf_id, contact):
        return {"source_system_id": f"x-{sf_id}", "sf_id": sf_id, "operation": "delete", "created": False,
                "before": {"AccountId": "001X", "ContactId": contact, "IsActive": True}, "status": "ok", "error": None}

    w1 = (tmp_path, "m1", "w1", "delta")
    dead = BatchJournal(*w1, "Contact", "contacts-batch-00001")
    dead.remember("before_image", {"003A": {"Id": "003A", "AccountId": "001X", "Title": "Associate"}})
    dead.remember("relation_before", {"contact-1": {"ids": ["07kX"], "contact": "003A"}, "contact-2": {"ids": []}})
    dead.intend([("contact-1", None), ("contact-2", None)], "upsert")
    dead.done([ok("contact-1", "003A"), ok("contact-2", "003N", created=True)])
    rel = BatchJournal(*w1, "AccountContactRelation", "contacts-batch-00001-demoted")
    rel.deleted([gone("07kX", "003A")])
    assert BatchJournal(*w1, "AccountContactRelation", "contacts-batch-00001-demoted").earlier_deletes == {
        "07kX": gone("07kX", "003A")}  # what a retry puts in its ledger file
    # completed: its ledger files are written, its journals not removed yet
    done = BatchJournal(*w1, "Contact", "contacts-batch-00002")
    done.remember("before_image", {"003B": {"Id": "003B", "Title": "Old"}})
    done.done([ok("contact-3", "003B")])
    with LedgerWriter(*w1, "Contact", "contacts-batch-00002") as w:
        w.record(source_system_id="contact-3", sf_id="003B", operation="upsert", created=False,
                 before={"Id": "003B", "Title": "Old"})
    BatchJournal(*w1, "AccountContactRelation", "contacts-batch-00002-demoted").deleted([gone("07kZ", "003B")])
    with LedgerWriter(*w1, "AccountContactRelation", "contacts-batch-00002-demoted") as w:
        w.record(**gone("07kZ", "003B"))

    plan = _plan(tmp_path, run_id="w1")
    assert [(o.action, o.sobject, o.sf_id, o.values, o.relations) for o in plan.operations] == [
        ("restore", "Contact", "003A", {"Id": "003A", "AccountId": "001X", "Title": "Associate"}, ["07kX"]),
        ("restore", "Contact", "003B", {"Id": "003B", "Title": "Old"}, None),
        ("recreate", "AccountContactRelation", "07kX", gone("07kX", "003A")["before"], None),
        ("recreate", "AccountContactRelation", "07kZ", gone("07kZ", "003B")["before"], None),
        ("delete", "Contact", "003N", None, None)]
