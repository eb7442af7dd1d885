"""Pure pipeline glue: transform of a raw batch file, lookups, row preparation, schema apply, contracts."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from clio2sf import pipeline, staging
from clio2sf.load import Column, Envelope, load_content_notes, load_rows, prepare_rows, split_deferred
from clio2sf.mapping.schema_plan import build_schema_plan
from clio2sf.mapping.spec import load_spec
from clio2sf.mapping.transform import PRODUCES
from clio2sf.mapping.users import UserMap
from tests.unit.sf_fake import FakeSF

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "mapping" / "fixtures"
POLYMORPHIC = {"What", "Who", "LinkedEntity", "Relation", "FirstPublishLocation", "Parent", "Owner"}


def _stage(mroot: Path) -> None:
    for f in FIXTURES.glob("*.json"):
        name = f.stem
        path = staging.batch_path(mroot, name, 1)
        info = staging.write_jsonl_gz(path, json.loads(f.read_text(encoding="utf-8")))
        staging.write_json(staging.raw_dir(mroot, name) / staging.MANIFEST, {"object": name, "batches": [info]})


@pytest.fixture
def staged(tmp_path: Path):
    _stage(tmp_path)
    return tmp_path, load_spec("harlow_vance"), UserMap({1001: "005000000000001AAA"}, "005000000000009AAA")


def test_transform_batch_writes_rows_per_sobject_and_rejects(staged):
    mroot, spec, users = staged
    lookup = pipeline.build_lookup(mroot, pipeline.lookup_names("documents"), spec)
    assert set(lookup["contacts"][9001]) == {"type", "company"}  # minimal records only
    out = pipeline.transform_batch(staging.batch_path(mroot, "documents", 1), "documents", spec, users, lookup, mroot)
    assert out["records"] == 2 and out["rejects_by_rule"] == {"deleted_in_clio": 1}
    cv_path = Path(out["paths"]["ContentVersion"])
    assert cv_path == mroot / "transformed" / "ContentVersion" / "documents-batch-00001.jsonl.gz"
    cv = next(staging.read_jsonl_gz(cv_path))
    assert cv["blob"]["path"] == "blobs/documents/55/551" and cv["blob"]["sha256"]
    rejects = staging.read_jsonl(Path(out["rejects_path"]))
    assert rejects[0]["source_system_id"] in rejects[0]["message"]


def test_every_polymorphic_column_has_a_type_prefix(staged):
    mroot, spec, users = staged
    seen = set()
    for name in PRODUCES:
        if not (FIXTURES / f"{name}.json").exists():
            continue
        lookup = pipeline.build_lookup(mroot, pipeline.lookup_names(name), spec)
        out = pipeline.transform_batch(staging.batch_path(mroot, name, 1), name, spec, users, lookup, mroot)
        for path in out["paths"].values():
            for env in staging.read_jsonl_gz(Path(path)):
                for key in env["row"]:
                    col = Column.parse(key) if "." in key else None
                    if col and col.relationship in POLYMORPHIC:
                        assert col.target_type, f"{env['source_system_id']}: {key} lacks <Type>:"
                        seen.add(col.relationship)
    assert {"What", "Who", "LinkedEntity", "Relation"} <= seen


class Fake:
    def __init__(self, records: dict[str, list[dict]]):
        self.records = records
        self.created: list[dict] = []

    def query_all_iter(self, soql):
        for key, recs in self.records.items():
            if key in soql:
                yield from recs

    def reference_targets(self, sobject, columns):
        return {c: c.split(":")[0] if ":" in c else "Case" for c in columns}

    def composite_create(self, records):
        self.created += records
        return [{"id": f"069{len(self.created):012d}AAA", "success": True, "errors": []} for _ in records]


def test_prepare_rows_resolves_record_types_documents_notes_and_strips_directives():
    fake = Fake({"FROM RecordType": [{"Id": "012000000000001AAA", "DeveloperName": "Litigation"}],
                 "FROM ContentVersion": [{"ContentDocumentId": "069000000000001AAA", "Clio_Id__c": "document-55@v2"}]})
    envs = [
        Envelope("Case", "matter-7", {"Clio_Id__c": "matter-7", "RecordType.DeveloperName": "Litigation", "_x": 1}, "Clio_Id__c"),
        Envelope("Case", "matter-8", {"Clio_Id__c": "matter-8", "RecordType.DeveloperName": "Nope"}, "Clio_Id__c"),
    ]
    out, failed = prepare_rows(fake, envs)
    assert out[0].row == {"Clio_Id__c": "matter-7", "RecordTypeId": "012000000000001AAA"}
    assert failed[1].errors[0].status_code == "INVALID_CROSS_REFERENCE_KEY" and failed[1].errors[0].fields == ("RecordTypeId",)
    links = [Envelope("ContentDocumentLink", "a", {"ContentVersion.Clio_Id__c": "document-55@v2"}, None, ("ContentDocumentId",)),
             Envelope("ContentDocumentLink", "b", {"ContentNote.source_system_id": "note-19"}, None, ("ContentDocumentId",)),
             Envelope("ContentDocumentLink", "c", {"ContentNote.source_system_id": "note-20"}, None, ("ContentDocumentId",))]
    out, failed = prepare_rows(fake, links, note_ids={"note-19": "069000000000002AAA"})
    assert out[0].row == {"ContentDocumentId": "069000000000001AAA"} and out[1].row == {"ContentDocumentId": "069000000000002AAA"}
    assert list(failed) == [2] and "note-20" in failed[2].errors[0].message


def test_content_notes_are_base64_and_idempotent_by_ledger_ids():
    fake = FakeSF({"ContentNote": [{"Id": "069000000000007AAA", "Title": "U"}]})
    envs = [Envelope("ContentNote", "note-1", {"Title": "T", "Content": "<p>é</p>"}, None, ("Title",)),
            Envelope("ContentNote", "note-2", {"Title": "U", "Content": "<p>x</p>"}, None, ("Title",))]
    res = load_content_notes(fake, envs, {"note-2": "069000000000007AAA"}, sleep=lambda s: None)
    assert [o.ledger_status for o in res.outcomes] == ["ok", "skipped"] and res.outcomes[0].created
    new = next(r for r in fake.records["ContentNote"] if r["Id"] == res.outcomes[0].sf_id)
    assert base64.b64decode(new["Content"]).decode() == "<p>é</p>" and len(fake.created) == 1
    assert new["Title"] == "T"  # the marker title it was created with is replaced once its Id is known
    with pytest.raises(ValueError, match="load_content_notes"):
        load_rows(fake, envs)


class LosingSF(FakeSF):
    """Commits creates but loses the answer of the first ``lose`` create calls (RESPONSE_LOST per record)."""

    def __init__(self, *a, lose: int = 1, **kw):
        super().__init__(*a, **kw)
        self.lose = lose

    def composite_create(self, records):
        out = super().composite_create(records)
        if self.lose > 0:
            self.lose -= 1
            return [{"success": False, "errors": [{"statusCode": "RESPONSE_LOST", "message": "504"}]} for _ in out]
        return out


def test_a_note_whose_create_answer_was_lost_is_found_by_its_marker_not_created_twice(tmp_path):
    from clio2sf.ledger import BatchJournal

    fake = LosingSF()
    envs = [Envelope("ContentNote", f"note-{i}", {"Title": f"T{i}", "Content": "<p>x</p>"}, None, ("Title",))
            for i in range(3)]
    journal = BatchJournal(tmp_path, "m1", "r1", "full_load", "ContentNote", "b1")
    res = load_content_notes(fake, envs, {}, journal=journal, sleep=lambda s: None)
    assert len(fake.records["ContentNote"]) == 3 and len(fake.created) == 3
    assert [(o.success, o.created, o.attempts) for o in res.outcomes] == [(True, True, 2)] * 3
    assert sorted(r["Title"] for r in fake.records["ContentNote"]) == ["T0", "T1", "T2"]
    # the intent lines were on disk before the create went out
    assert {"note-0", "note-1", "note-2"} <= set(BatchJournal(tmp_path, "m1", "r1", "full_load", "ContentNote", "b1").intended)


def test_a_note_with_its_original_time_is_found_by_title_and_time_and_never_renamed():
    fake = LosingSF(types={"ContentNote": {"CreatedDate": "datetime", "Title": "string"}})
    envs = [Envelope("ContentNote", f"note-{i}", {"Title": "Same", "Content": "<p>x</p>",
                     "CreatedDate": f"2024-01-0{i + 1}T10:00:00-05:00"}, None, ("Title",)) for i in range(2)]
    fake.composite_update = None  # an update would move LastModifiedDate: it must not happen
    res = load_content_notes(fake, envs, {}, sleep=lambda s: None)
    assert [(o.success, o.created) for o in res.outcomes] == [(True, True)] * 2
    got = {r["CreatedDate"]: r["Id"] for r in fake.records["ContentNote"]}
    assert len(fake.records["ContentNote"]) == 2 and {r["Title"] for r in fake.records["ContentNote"]} == {"Same"}
    assert [o.sf_id for o in res.outcomes] == [got["2024-01-01T10:00:00-05:00"], got["2024-01-02T10:00:00-05:00"]]


def test_a_natural_key_insert_whose_answer_was_lost_is_found_and_counted_as_created():
    fake = LosingSF({"Case": [{"Id": "500000000000001AAA", "Clio_Id__c": "matter-1"}],
                     "Contact": [{"Id": "003000000000001AAA", "Clio_Id__c": "contact-1"}]})
    envs = [Envelope("CaseContactRole", "matter-1#contact-1", {"Cases.Clio_Id__c": "matter-1",
                     "Contact.Clio_Id__c": "contact-1", "Role": "Client"}, None, ("CasesId", "ContactId", "Role"))]
    fake.reference_targets = lambda sobject, cols: {c: "Case" if c.startswith("Cases") else "Contact" for c in cols}
    res = load_rows(fake, envs, mode="composite", sleep=lambda s: None)
    assert len(fake.records["CaseContactRole"]) == 1
    assert [(o.success, o.created, o.ledger_status) for o in res.outcomes] == [(True, True, "ok")]
    again = load_rows(fake, envs, mode="composite", sleep=lambda s: None)  # another run: found, not ours
    assert [(o.created, o.ledger_status) for o in again.outcomes] == [(False, "skipped")]
    assert len(fake.records["CaseContactRole"]) == 1


def test_split_deferred_keeps_external_id_and_late_columns_only():
    envs = [Envelope("Contact", "contact-1", {"Clio_Id__c": "contact-1", "LastName": "A", "Spouse__r.Clio_Id__c": "contact-2"}, "Clio_Id__c")]
    first, second = split_deferred(envs, {"Spouse__r.Clio_Id__c"})
    assert first[0].row == {"Clio_Id__c": "contact-1", "LastName": "A"}
    assert second[0].row == {"Clio_Id__c": "contact-1", "Spouse__r.Clio_Id__c": "contact-2"}


class FakeHook:
    def __init__(self, refuse_activity: bool):
        self.refuse_activity = refuse_activity
        self.fields = {("contact", "clio_id__c")}
        self.made: list[str] = []

    def tooling_query(self, soql):
        if "CustomField" in soql:
            return [{"Id": "00N1", "DeveloperName": "Clio_Id", "TableEnumOrId": "Contact"}]
        return []

    def query_all(self, soql):
        return []

    def create_custom_object(self, name, md):
        self.made.append(name)

    def create_record_type(self, sobject, dev, label, active=True):
        self.made.append(f"{sobject}.{dev}")

    def create_custom_field(self, sobject, name, md):
        if sobject == "Activity" and self.refuse_activity:
            err = RuntimeError("refused")
            err.error_code = "INVALID_TYPE"
            raise err
        self.made.append(f"{sobject}.{name}")


def test_apply_schema_plan_skips_existing_and_falls_back_from_activity():
    plan = build_schema_plan(load_spec("harlow_vance"))
    hook = FakeHook(refuse_activity=True)
    with pytest.raises(pipeline.SchemaApplyError, match="Activity.Clio_Id__c: INVALID_TYPE"):
        pipeline.apply_schema_plan(hook, plan, grant_access=False)
    hook = FakeHook(refuse_activity=True)
    out = pipeline.apply_schema_plan(hook, plan, activity_fallback=True, grant_access=False)
    assert "Contact.Clio_Id__c" in out["existing"] and "Contact.Clio_Id__c" not in hook.made
    assert "Task.Clio_Id__c" in out["fallback"] and "Event.Clio_Id__c" in out["fallback"] and not out["failed"]
    ok = FakeHook(refuse_activity=False)
    pipeline.apply_schema_plan(ok, plan, grant_access=False)
    assert "Activity.Clio_Id__c" in ok.made and not any(m.startswith("Task.") for m in ok.made)


def test_load_groups_reach_the_bulk_threshold_across_clio_objects_and_keep_blob_objects_single(tmp_path):
    from clio2sf.pipeline import count_rows, group_batches, group_name

    folder = tmp_path / "transformed" / "Task"
    sizes = {"activities-batch-00001": 2000, "activities-batch-00002": 2000, "activities-batch-00003": 1500,
             "tasks-batch-00001": 2000}
    for name, n in sizes.items():
        staging.write_jsonl_gz(folder / f"{name}.jsonl.gz", ({"source_system_id": f"x-{i}"} for i in range(n)))
    paths = sorted(folder.iterdir())
    assert [count_rows(p) for p in paths] == list(sizes.values())
    groups = group_batches(paths, "Task", rows=3000)
    # a group closes once it holds 3,000 rows; the files of another Clio object of the same Salesforce
    # object join the open group (one Bulk job for an object several Clio objects feed), under a name no
    # group of one Clio object's files has
    assert [[p.name.split(".")[0] for p in g] for g in groups] == [
        ["activities-batch-00001", "activities-batch-00002"], ["activities-batch-00003", "tasks-batch-00001"]]
    assert [group_name(g) for g in groups] == [
        "activities-batch-00001-to-00002", "activities-batch-00003-to-tasks-batch-00001"]
    assert len(group_batches(paths, "Task")) == 1  # the default (20,000 rows): all 7,500 Task rows in one task
    assert group_batches(paths, "ContentVersion", rows=3000) == [[p] for p in paths]


def _event_file(path: Path, events: int, attendees: int, first: int = 0) -> list[str]:
    """A transformed EventRelation-like file: each event's attendee rows together (as the transform
    writes them); returns the source ids in file order."""
    sids = [f"calendar_entry-{e}@2026010{e % 9 + 1}#contact-{a}" for e in range(first, first + events)
            for a in range(attendees)]
    staging.write_jsonl_gz(path, ({"sobject": "EventRelation", "source_system_id": sid, "natural_key": ["EventId"],
                                   "row": {"Event.Clio_Id__c": sid.split("#")[0], "IsInvitee": True}} for sid in sids))
    return sids


def test_load_groups_have_a_maximum_and_hold_every_row_once(tmp_path):
    from clio2sf.pipeline import RowSlice, group_batches, group_name, parse_work_item, read_part, work_item

    folder = tmp_path / "transformed" / "EventRelation"
    sids: list[str] = []
    for name, events, first in (("calendar_entries-batch-00001", 500, 0), ("calendar_entries-batch-00002", 3000, 500),
                                ("calendar_entries-batch-00003", 700, 3500), ("calendar_entries-batch-00004", 600, 4200),
                                ("tasks-batch-00001", 100, 5000)):
        sids += _event_file(folder / f"{name}.jsonl.gz", events, 3, first)  # 1,500 / 9,000 / 2,100 / 1,800 / 300 rows
    paths = sorted(folder.iterdir())
    groups = group_batches(paths, "EventRelation", rows=3000, max_rows=4000)
    rows = [[e["source_system_id"] for part in g for e in read_part(part)] for g in groups]
    assert max(len(r) for r in rows) <= 4000  # the maximum holds; before it, the 9,000-row file was one task
    assert sorted(sid for r in rows for sid in r) == sorted(sids)  # every row in exactly one group
    assert [group_name(g) for g in groups] == [
        "calendar_entries-batch-00001",  # a file over the maximum joins no group
        "calendar_entries-batch-00002-rows-1-3000", "calendar_entries-batch-00002-rows-3001-6000",
        "calendar_entries-batch-00002-rows-6001-9000",  # equal slices of the large file, one task each
        "calendar_entries-batch-00003-to-00004",  # 2,100 + 1,800 stay under 4,000
        "tasks-batch-00001"]
    assert [isinstance(g[0], RowSlice) for g in groups] == [False, True, True, True, False, False]
    # the work items (XCom) name the same groups, and listing again gives the same ones (retries, clears)
    items = [work_item(g) for g in groups]
    assert [parse_work_item(i, Path) for i in items] == groups
    assert [work_item(g) for g in group_batches(paths, "EventRelation", rows=3000, max_rows=4000)] == items
    assert items[1] == f"{paths[1]}#rows=0-3000"
    # the bytes bound splits a file of few but long rows the same way
    by_bytes = group_batches(paths[:1], "EventRelation", max_bytes=pipeline.measure_rows(paths[0])[1] // 2 + 1)
    assert [group_name(g) for g in by_bytes] == ["calendar_entries-batch-00001-rows-1-750",
                                                 "calendar_entries-batch-00001-rows-751-1500"]
    # the defaults bound a task: a 48,000-row file is no longer one group
    big = tmp_path / "big" / "EventRelation" / "calendar_entries-batch-00001.jsonl.gz"
    _event_file(big, 12_000, 4)
    assert [g[0].stop - g[0].start for g in group_batches([big], "EventRelation")] == [16_000] * 3
    with pytest.raises(ValueError, match="bad row slice"):
        parse_work_item(f"{paths[0]}#rows=5-2", Path)


def test_row_slices_never_split_one_clio_records_rows(tmp_path):
    from clio2sf.pipeline import group_batches, read_part

    path = tmp_path / "transformed" / "EventRelation" / "calendar_entries-batch-00001.jsonl.gz"
    _event_file(path, 10, 7)  # 70 rows, 7 per event: equal thirds would cut at rows 23 and 46
    groups = group_batches([path], "EventRelation", max_rows=30)
    assert [(g[0].start, g[0].stop) for g in groups] == [(0, 28), (28, 49), (49, 70)]  # moved to the next event
    events = [{e["source_system_id"].split("#")[0] for e in read_part(g[0])} for g in groups]
    assert sum(len(e) for e in events) == 10 and not set.intersection(*events)


def test_transform_groups_hold_enough_records_across_objects(tmp_path):
    from clio2sf_airflow.phases.load_common import _label, _parts, raw_groups

    for name, sizes in {"activities": [2000, 2000, 2000, 500], "matters": [2000], "bills": [300]}.items():
        entries = [{"file": staging.batch_name(b), "records": n} for b, n in enumerate(sizes, 1)]
        staging.write_json(staging.raw_dir(tmp_path, name) / staging.MANIFEST, {"object": name, "batches": entries})
    items = raw_groups(tmp_path, ("matters", "activities", "users", "bills"), records=4000)
    assert [list(zip(i["objects"], [p.rsplit("/", 1)[-1][6:11] for p in i["paths"]], strict=True)) for i in items] == [
        [("matters", "00001"), ("activities", "00001")],
        [("activities", "00002"), ("activities", "00003")],
        [("activities", "00004"), ("bills", "00001")],  # the small rest shares a task (no users staged)
    ]
    assert all(i["path"] == i["paths"][0] and i["object"] == i["objects"][0] for i in items)
    assert raw_groups(tmp_path, ("matters", "activities", "users", "bills"), records=4000) == items  # replanned: same
    assert [_label(_parts(i)) for i in items] == [
        "matters/batch-00001-to-activities/batch-00001", "activities/batch-00002-to-00003",
        "activities/batch-00004-to-bills/batch-00001"]
    assert _parts(items[2]) == [("activities", [items[2]["paths"][0]]), ("bills", [items[2]["paths"][1]])]
    assert len(raw_groups(tmp_path, ("activities",), records=1)) == 4  # one batch a task, as before
    one = {"object": "bills", "path": items[2]["paths"][1]}  # a raw_batches item (sample, delta, documents)
    assert _parts(one) == [("bills", [one["path"]])] and _label(_parts(one)) == "bills/batch-00001.jsonl.gz"


def test_a_transform_item_across_objects_writes_what_one_item_per_object_writes(tmp_path, monkeypatch):
    """A packed work item (several objects, one task) gives every raw batch the transformed files and
    rejects it gets in a task of its own: each object's transform sees its own look-ups only."""
    from clio2sf_airflow.phases import load_common

    fixtures = Path(__file__).parent / "mapping" / "fixtures"
    names = ("users", "contacts", "matters", "relationships", "bills", "activities", "calendar_entries")
    spec = load_spec("harlow_vance")
    context: dict = {}
    monkeypatch.setattr(load_common, "params", lambda: {"firm": "harlow_vance", "migration_id": "m"})
    monkeypatch.setattr(load_common, "firm_spec", lambda firm: spec)
    monkeypatch.setattr(load_common, "get_current_context", lambda: context)
    outputs = []
    for packed in (False, True):
        root = tmp_path / ("packed" if packed else "alone")
        _stage_fixtures(root, names, fixtures)
        monkeypatch.setattr(load_common, "mroot", lambda p=None, root=root: root)
        items = load_common.raw_groups(root, names, records=10**9 if packed else 1)
        assert len(items) == (1 if packed else len(names))
        results = [load_common.transform_one(item) for item in items]
        assert sum(r["records"] for r in results) == sum(len(json.loads((fixtures / f"{n}.json").read_text()))
                                                         for n in names)
        outputs.append({str(f.relative_to(root)): gzip.decompress(f.read_bytes()) if f.name.endswith(".gz")
                        else f.read_bytes()
                        for f in root.rglob("*") if f.is_file() and f.relative_to(root).parts[0] != "raw"})
    alone, packed_out = outputs
    assert alone == packed_out
    assert any(k.startswith("transformed/EventRelation/") for k in alone)
    assert any(k.startswith("rejects/transform/calendar_entries/") for k in alone)  # an unlinked attendee
    assert context["batch_label"] == "users/batch-00001-to-calendar_entries/batch-00001"


def test_a_transform_task_on_a_local_root_writes_the_same_files_without_the_object_store_layer(tmp_path, monkeypatch):
    """On a file:// staging root the transform task reads and writes plain paths: the same files as through
    ObjectStoragePath, and no ObjectStoragePath file access (its first one imports every provider's
    filesystem, boto3 included, ~0.5 CPU-s a task)."""
    from airflow.sdk import ObjectStoragePath

    from clio2sf_airflow.phases import load_common

    names = ("users", "contacts", "matters", "calendar_entries")
    spec = load_spec("harlow_vance")
    monkeypatch.setattr(load_common, "params", lambda: {"firm": "harlow_vance", "migration_id": "m"})
    monkeypatch.setattr(load_common, "firm_spec", lambda firm: spec)
    monkeypatch.setattr(load_common, "get_current_context", lambda: {})
    outputs = []
    for via in ("plain", "file_url"):
        root = tmp_path / via
        _stage_fixtures(root, names, FIXTURES)
        if via == "plain":
            monkeypatch.setattr(load_common, "mroot", lambda p=None, root=root: root)
            items = load_common.raw_groups(root, names, records=10**9)
        else:
            url_root = ObjectStoragePath(f"file://{root}")
            monkeypatch.setattr(load_common, "mroot", lambda p=None, root=url_root: root)
            items = load_common.raw_groups(url_root, names, records=10**9)
            assert all(p.startswith("file://") for i in items for p in i["paths"])

            def no_fs(self):
                raise AssertionError("the transform task touched the object-store filesystem")
            monkeypatch.setattr(ObjectStoragePath, "fs", property(no_fs))
        results = [load_common.transform_one(item) for item in items]
        assert sum(r["records"] for r in results) > 0
        outputs.append({str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*")
                        if f.is_file() and f.relative_to(root).parts[0] != "raw"})
    assert outputs[0] == outputs[1] and any(k.startswith("transformed/EventRelation/") for k in outputs[0])


def test_a_transform_task_runs_with_the_cyclic_collector_paused_and_leaves_it_as_it_was(tmp_path, monkeypatch):
    """The transform task's decoding and mapping run without Python's cyclic garbage collector (reference
    counting frees what they drop): off during every batch, on again after (and still off when it was off),
    also when a batch fails."""
    import gc

    from clio2sf_airflow.phases import load_common

    names = ("users", "contacts", "matters")
    spec = load_spec("harlow_vance")
    monkeypatch.setattr(load_common, "params", lambda: {"firm": "harlow_vance", "migration_id": "m"})
    monkeypatch.setattr(load_common, "firm_spec", lambda firm: spec)
    monkeypatch.setattr(load_common, "get_current_context", lambda: {})
    _stage_fixtures(tmp_path, names, FIXTURES)
    monkeypatch.setattr(load_common, "mroot", lambda p=None: tmp_path)
    seen: list[bool] = []
    real = load_common.transform_batch

    def watched(*args, **kwargs):
        seen.append(gc.isenabled())
        if args[1] == "fail":
            raise RuntimeError("batch failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(load_common, "transform_batch", watched)
    [item] = load_common.raw_groups(tmp_path, names, records=10**9)
    was = gc.isenabled()
    try:
        gc.enable()
        assert load_common.transform_one(item)["records"] > 0
        assert seen == [False] * len(names) and gc.isenabled()
        gc.disable()
        load_common.transform_one(item)
        assert not gc.isenabled()
        gc.enable()
        with pytest.raises(RuntimeError, match="batch failed"):
            load_common.transform_one({**item, "objects": ["fail", *item["objects"][1:]]})
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_soql_in_chunks_respect_the_value_cap_and_the_uri_budget():
    from urllib.parse import urlencode

    from clio2sf.load import soql_in, soql_in_chunks

    ids = [f"003{i:015d}" for i in range(2000)]
    parts = list(soql_in_chunks(ids))
    assert [v for p in parts for v in p] == ids and len(parts) == 5  # 500 a query, not 200
    for p in parts:
        uri = "/services/data/v62.0/query/?" + urlencode({"q": f"SELECT Id, Clio_Id__c FROM Contact WHERE {soql_in('Id', p)}"})
        assert len(uri) < 16_384
    long = [f"contact-{'x' * 60}-{i}" for i in range(400)]
    parts = list(soql_in_chunks(long))
    assert len(parts) > 1 and all(sum(len(v) + 6 for v in p) <= 12_000 for p in parts)


def test_lookups_parse_only_their_fields_and_equal_the_whole_records_minimal(tmp_path: Path):
    """build_lookup parses the staged records into the fields the transforms read (msgspec skips the
    rest); the tables equal what the whole records give, also for lines the typed parse refuses (NaN
    elsewhere in the record, ``data`` missing) and with a matter-object custom field."""
    spec = load_spec("harlow_vance")
    spec.options["matter_object_field"] = "Matter Object"
    by_name = {}
    for name in ("contacts", "matters", "activity_rates", "calendar_entries", "bills"):
        envs = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        lines = [json.dumps(e).encode() for e in envs]
        lines[0] = lines[0][:-1] + b', "extra": {"rate": NaN}}'  # msgspec refuses NaN: read as plain JSON
        lines.append(json.dumps({"object": name, "source_system_id": f"{name}-none"}).encode())  # no data
        path = staging.batch_path(tmp_path, name, 1)
        staging.write_bytes_atomic(path, gzip.compress(b"\n".join(lines) + b"\n"))
        staging.write_json(staging.raw_dir(tmp_path, name) / staging.MANIFEST, {"object": name, "batches": [
            {"file": path.name, "records": len(lines)}]})
        by_name[name] = [json.loads(line) for line in lines]
    got = pipeline.build_lookup(tmp_path, list(by_name), spec)
    for name, envs in by_name.items():
        if name == "calendar_entries":
            want: dict = {}
            for e in envs:
                d = e.get("data") or {}
                if d.get("parent_calendar_entry_id") is not None and d.get("start_at"):
                    want.setdefault(str(d["parent_calendar_entry_id"]), []).append(d["start_at"])
            assert got["calendar_entry_overrides"] == want
            continue
        want = {e["data"]["id"]: pipeline._minimal(name, e["data"], "Matter Object") for e in envs
                if (e.get("data") or {}).get("id") is not None}
        assert got[name] == want and len(want) >= 1, name
    nan_line = by_name["contacts"][0]["data"]
    assert got["contacts"][nan_line["id"]] == pipeline._minimal("contacts", nan_line, None)


def test_lookup_tables_are_kept_beside_the_raw_batches_and_rebuilt_when_stale(tmp_path: Path, monkeypatch):
    """The first build keeps each table in raw/<object>/_lookup.json.gz (keyed by its batches' sha256);
    the next task reads it instead of the raw records; a re-extracted batch or another matter-object
    option makes it stale: rebuilt. Batches without a sha256 are never cached."""
    _stage(tmp_path)
    spec = load_spec("harlow_vance")
    names = ("contacts", "matters", "activity_rates", "calendar_entries")
    first = pipeline.build_lookup(tmp_path, names, spec)
    for name in names:
        assert (staging.raw_dir(tmp_path, name) / pipeline.LOOKUP_CACHE).exists()
    built = []
    real = pipeline._build_table
    monkeypatch.setattr(pipeline, "_build_table", lambda *a: built.append(a[1]) or real(*a))
    assert pipeline.build_lookup(tmp_path, names, spec) == first and built == []  # read back, same tables
    assert isinstance(next(iter(first["contacts"])), int)  # ids keep their type
    # contacts re-extracted: one more record, a new sha256 in the manifest
    envs = list(staging.read_jsonl_gz(staging.batch_path(tmp_path, "contacts", 1)))
    extra = {**envs[0], "data": {**envs[0]["data"], "id": 777, "type": "Company"}}
    info = staging.write_jsonl_gz(staging.batch_path(tmp_path, "contacts", 1), envs + [extra])
    staging.write_json(staging.raw_dir(tmp_path, "contacts") / staging.MANIFEST, {"object": "contacts", "batches": [info]})
    again = pipeline.build_lookup(tmp_path, names, spec)
    assert built == ["contacts"] and again["contacts"][777] == {"type": "Company", "company": None}
    spec.options["matter_object_field"] = "Matter Object"
    pipeline.build_lookup(tmp_path, ("matters",), spec)
    assert built == ["contacts", "matters"]
    # no sha256 in the manifest: built every time, nothing kept
    staging.write_json(staging.raw_dir(tmp_path, "bills") / staging.MANIFEST, {"object": "bills", "batches": [
        {"file": "batch-00001.jsonl.gz", "records": 1}]})
    pipeline.build_lookup(tmp_path, ("bills",), spec)
    pipeline.build_lookup(tmp_path, ("bills",), spec)
    assert built.count("bills") == 2 and not (staging.raw_dir(tmp_path, "bills") / pipeline.LOOKUP_CACHE).exists()


def test_transform_batch_writes_each_row_as_json_would_whatever_its_values(tmp_path, monkeypatch):
    """transform_batch checks a row's value types inline before msgspec writes it: a row of plain scalars,
    and rows msgspec must not write (NaN, an infinity, a str subclass, a list) give json's exact line."""
    import enum
    import math

    class Kind(enum.StrEnum):
        A = "a"

    raw = staging.raw_dir(tmp_path, "contacts") / staging.batch_name(1)
    staging.write_jsonl_gz(raw, [{"source_system_id": "contact-1", "data": {"id": 1}}])
    rows = [{"Name": "Zoë \u2028 \"q\" \\ \n", "N": 1.5, "I": 10**20, "B": True, "E": 1e16, "Z": None},
            {"Rate": math.nan}, {"Rate": -math.inf}, {"Kind": Kind.A}, {"L": [1, 2]}, {"Big": 1e300, "T": False}]
    envs = [{"sobject": "Contact", "source_system_id": f"contact-{i}", "external_id_field": "Clio_Id__c",
             "natural_key": None, "row": row} for i, row in enumerate(rows)]
    monkeypatch.setattr(pipeline, "transform_object", lambda name, envelopes, *a, **k: (list(envelopes), iter(envs))[1])
    out = pipeline.transform_batch(raw, "contacts", None, None, None, tmp_path, horizon=None)
    assert out["rows"] == {"Contact": len(rows)}
    got = gzip.decompress(Path(out["paths"]["Contact"]).read_bytes()).split(b"\n")
    assert got == [staging.encode_line(e, pipeline._scalar_finite_row) for e in envs] + [b""]
    as_json = [json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() for e in envs]
    assert got[1:5] == as_json[1:5]  # NaN, -inf, the str subclass and the list: json's text
    back = list(staging.read_jsonl_gz(Path(out["paths"]["Contact"])))
    assert back[0] == envs[0] and math.isnan(back[1]["row"]["Rate"]) and back[2]["row"]["Rate"] == -math.inf


def test_transform_batch_writes_rows_with_floats_as_the_row_check_says_without_calling_it(tmp_path, monkeypatch):
    """A row of scalars and floats is checked inline (no call a row): every row of up to 3 of 14 values (finite and
    not finite floats, a float subclass, a list...) gets the line encode_line gives with _scalar_finite_row."""
    import itertools
    import math

    class Sub(float):
        pass

    values = [1.5, -0.0, 1e308, 1e16, math.nan, -math.nan, math.inf, -math.inf, 3, True, None, "nan", Sub(2.0), [1.0]]
    rows = [dict(zip("abc", c, strict=False)) for n in range(4) for c in itertools.combinations(values, n)]
    envs = [{"sobject": "Time_Entry__c", "source_system_id": f"activity-{i}", "external_id_field": "Clio_Id__c",
             "natural_key": None, "row": row} for i, row in enumerate(rows)]
    want = [staging.encode_line(e, pipeline._scalar_finite_row) for e in envs] + [b""]
    raw = staging.raw_dir(tmp_path, "activities") / staging.batch_name(1)
    staging.write_jsonl_gz(raw, [{"source_system_id": "activity-1", "data": {"id": 1}}])
    monkeypatch.setattr(pipeline, "transform_object", lambda name, envelopes, *a, **k: (list(envelopes), iter(envs))[1])
    checked = []
    monkeypatch.setattr(pipeline, "_scalar_finite_row", lambda env: checked.append(env) or True)
    out = pipeline.transform_batch(raw, "activities", None, None, None, tmp_path, horizon=None)
    assert gzip.decompress(Path(out["paths"]["Time_Entry__c"]).read_bytes()).split(b"\n") == want
    assert checked == []


def test_transform_batch_compresses_a_files_lines_while_transforming_and_writes_the_same_file(tmp_path, monkeypatch):
    """A batch's lines wait for their file 1 MB at a time, not all of them (a calendar batch's Event lines are ~35
    MB): the files are those write_lines_gz gives for all the lines at the end, with the same counts."""
    lines = [b'{"sobject":"Event","n":%d,"pad":"%s"}' % (i, b"p" * (i % 700)) for i in range(9000)]
    envs = [{"sobject": "Event", "lines": lines[i:i + 3000]} for i in range(0, 9000, 3000)]
    envs += [{"sobject": "Task", "source_system_id": f"task-{i}", "external_id_field": "Clio_Id__c", "natural_key": None,
              "row": {"Subject": "s" * (i % 300), "N": i}} for i in range(6000)]
    raw = staging.raw_dir(tmp_path, "calendar_entries") / staging.batch_name(1)
    staging.write_jsonl_gz(raw, [{"source_system_id": "calendar_entry-1", "data": {"id": 1}}])
    monkeypatch.setattr(pipeline, "transform_object", lambda name, envelopes, *a, **k: (list(envelopes), iter(envs))[1])
    waiting = []
    flush = staging.LinesGz.flush
    monkeypatch.setattr(staging.LinesGz, "flush", lambda self: (waiting.append(len(self.lines)), flush(self))[1])
    out = pipeline.transform_batch(raw, "calendar_entries", None, None, None, tmp_path, horizon=None)
    assert out["rows"] == {"Event": 9000, "Task": 6000}
    want = {"Event": lines, "Task": [staging.fast_encoder()(e) for e in envs[3:]]}
    for sobject, path in out["paths"].items():
        assert Path(path).read_bytes() == staging.gzip_lines(want[sobject], pipeline.TRANSFORMED_GZIP_LEVEL)
    assert len(waiting) == 4 and max(waiting) <= pipeline._FLUSH_LINES + 3000  # one flush while, one at the end, each


def _stage_fixtures(root, names, fixtures) -> None:
    """Raw batch 1 of each fixture object, and a user map, under staging ``root``."""
    for name in names:
        entry = staging.write_jsonl_gz(staging.raw_dir(root, name) / staging.batch_name(1),
                                       json.loads((fixtures / f"{name}.json").read_text(encoding="utf-8")))
        staging.write_json(staging.raw_dir(root, name) / staging.MANIFEST, {"object": name, "batches": [entry]})
    staging.write_json(root / "users" / "user_map.json", {
        "users": {"1001": "005000000000001AAA"}, "status": {"1001": "matched"},
        "fallback_owner": "005000000000009AAA", "calendars": {"801": 1001, "802": 1002}})
