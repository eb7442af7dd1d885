"""Cutover pieces: where the first window starts, watermarks held by failed loads, cleared fields, replaced links."""

from __future__ import annotations

from pathlib import Path

import pytest

from clio2sf import delta, pipeline, staging
from clio2sf.ledger import LedgerWriter, last_write_by_record, read_ledger
from clio2sf.load import Envelope, LoadResult, RowOutcome, SfError
from clio2sf.mapping.spec import load_spec
from tests.unit.sf_fake import FakeSF

pytestmark = pytest.mark.unit


def test_the_first_window_starts_when_the_extraction_began_not_at_the_newest_change(tmp_path: Path):
    odir = tmp_path / "raw" / "contacts"
    staging.append_jsonl(odir / staging.BATCH_LOG, [
        {"batch": "batch-00001", "started": "2026-12-01T10:00:00.000000Z", "finished": "2026-12-01T10:00:05Z"},
        {"batch": "batch-00002", "started": "2026-12-01T13:00:00.000000Z", "finished": "2026-12-01T13:00:05Z"}])
    start = delta.extraction_high_water(odir)
    assert delta.parse_ts(start) == delta.parse_ts("2026-12-01T09:50:00Z")  # minus the 10-minute overlap
    assert delta.extraction_high_water(tmp_path / "raw" / "matters") is None


def test_a_failed_record_holds_the_watermark_at_its_change():
    ats = ["2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z"]
    assert delta.held_watermark(None, ats, []) == delta.next_watermark(None, ats)
    held = delta.held_watermark("2026-12-01T09:00:00Z", ats, ["2026-12-01T11:00:00Z"])
    assert delta.parse_ts(held) == delta.parse_ts("2026-12-01T11:00:00Z")
    # a failure at or before the current mark: the mark does not move
    assert delta.parse_ts(delta.held_watermark("2026-12-01T11:30:00Z", ats, ["2026-12-01T11:00:00Z"])) == \
        delta.parse_ts("2026-12-01T11:30:00Z")


def test_owned_fields_and_cleared_values_only_on_records_that_exist():
    spec = load_spec(None)
    owned = pipeline.owned_fields(spec, "Contact", "contacts")
    assert "Title" in owned and "OwnerId" not in owned and all("." not in f for f in owned)
    assert pipeline.owned_fields(spec, "Task", "nonexistent") == []
    org = FakeSF({"Contact": [{"Id": "0031", "Clio_Id__c": "contact-1", "Title": "Judge", "LastName": "A"}]})
    org.describe = lambda s: {"fields": [
        {"name": "Title", "updateable": True, "nillable": True}, {"name": "LastName", "updateable": True, "nillable": False},
        {"name": "Clio_Id__c", "updateable": True, "nillable": True}]}
    envs = [Envelope("Contact", "contact-1", {"Clio_Id__c": "contact-1", "LastName": "A"}, "Clio_Id__c"),
            Envelope("Contact", "contact-2", {"Clio_Id__c": "contact-2", "LastName": "B"}, "Clio_Id__c")]
    out, n = pipeline.with_cleared_fields(org, envs, ["Title", "LastName"])
    assert n == 1 and out[0].row == {"Clio_Id__c": "contact-1", "LastName": "A", "Title": None}
    assert "Title" not in out[1].row  # a new record keeps the org's default


def test_links_a_window_did_not_write_again_are_stale_unless_the_record_failed(tmp_path: Path):
    with LedgerWriter(tmp_path, "m", "full", "full_load", "CaseContactRole", "b1") as w:
        w.record(source_system_id="relationship-1", sf_id="03j000000000001", operation="insert", created=True)
        w.record(source_system_id="relationship-2", sf_id="03j000000000002", operation="insert", created=True)
        w.record(source_system_id="relationship-3", sf_id="03j000000000003", operation="insert", created=True)
    lw = last_write_by_record(read_ledger(tmp_path))
    envs = [Envelope("CaseContactRole", s, {"Role": "Witness"}, None, ("Role",))
            for s in ("relationship-1", "relationship-2@Witness", "relationship-2@Other")]
    res = LoadResult([
        RowOutcome(0, "relationship-1", True, "03j000000000009", True),  # role changed: a new record
        RowOutcome(1, "relationship-2@Witness", True, "03j000000000002", False, status="skipped"),
        RowOutcome(2, "relationship-2@Other", False, errors=[SfError("X", "no")]),
    ])
    assert pipeline.stale_links(lw, envs, res) == [("relationship-1", "03j000000000001")]


def test_a_delta_group_of_several_clio_objects_clears_each_file_with_its_own_fields(tmp_path: Path, monkeypatch):
    """A load group spans the Clio objects of one Salesforce object (since a994d0a: Task from ``activities``
    and ``tasks`` in one group).  ``load_one(clear_fields=True)`` clears each file's rows with the fields its
    own Clio object's mapping writes: a Task from ``tasks`` whose completion was cleared in Clio gets
    ``Clio_Completed_At__c`` null and keeps ``Type`` (only ``activities`` map it); a Task from ``activities``
    gets ``Clio_Hours__c`` null.  The code before took the first file's (``activities``) fields for the
    whole group: the task kept its stale completion and lost its ``Type``."""
    from clio2sf_airflow.phases import load_common

    spec = load_spec(None)
    assert "Clio_Completed_At__c" in pipeline.owned_fields(spec, "Task", "tasks")
    assert "Clio_Completed_At__c" not in pipeline.owned_fields(spec, "Task", "activities")
    assert {"Type", "Clio_Hours__c"} <= set(pipeline.owned_fields(spec, "Task", "activities"))
    assert {"Type", "Clio_Hours__c"}.isdisjoint(pipeline.owned_fields(spec, "Task", "tasks"))
    org = FakeSF({"Task": [
        {"Id": "00T1", "Clio_Id__c": "activity-1", "Subject": "Time", "Clio_Hours__c": 1.5},
        {"Id": "00T2", "Clio_Id__c": "task-1", "Subject": "File", "Clio_Completed_At__c": "2026-12-01T10:00:00Z",
         "Type": "Other"}]})
    fields = {"Subject", "Type", "Clio_Hours__c", "Clio_Completed_At__c", "Clio_Id__c"}
    org.describe = lambda s: {"fields": [{"name": f, "updateable": True, "nillable": True, "createable": True}
                                         for f in sorted(fields)]}
    folder = tmp_path / "delta" / "w1" / "transformed" / "Task"
    for source, sid, subject in (("activities", "activity-1", "Time"), ("tasks", "task-1", "File")):
        staging.write_jsonl_gz(folder / f"{source}-{staging.batch_name(1)}", [
            {"sobject": "Task", "source_system_id": sid, "external_id_field": "Clio_Id__c", "natural_key": None,
             "row": {"Clio_Id__c": sid, "Subject": subject}}])
    group = load_common.group_items(sorted(folder.iterdir()), "Task")
    assert len(group) == 1 and len(group[0]) == 2  # one load group of both Clio objects
    context: dict = {"params": {"firm": None, "migration_id": "m1"}, "run_id": "delta-1"}
    monkeypatch.setattr(load_common, "get_current_context", lambda: context)
    monkeypatch.setattr(load_common, "params", lambda: dict(context["params"]))
    monkeypatch.setattr(load_common, "mroot", lambda p=None: tmp_path)
    monkeypatch.setattr(load_common, "run_id", lambda: "delta-1")
    monkeypatch.setattr(load_common, "firm_spec", lambda firm: spec)
    monkeypatch.setattr(load_common, "hold_lease", lambda phase: {})
    monkeypatch.setattr(load_common.migration, "salesforce_hook", lambda *a, **k: org)
    got = load_common.load_one(group[0], phase="delta", window_root=tmp_path / "delta" / "w1", clear_fields=True)
    assert got["rows"] == 2 and got["failed"] == 0, got
    activity, task = (next(r for r in org.records["Task"] if r["Clio_Id__c"] == s) for s in ("activity-1", "task-1"))
    assert task["Clio_Completed_At__c"] is None and task["Type"] == "Other", task
    assert activity["Clio_Hours__c"] is None and "Clio_Completed_At__c" not in activity, activity


def test_one_list_of_cleared_fields_for_a_group_of_several_clio_objects_is_refused(tmp_path: Path):
    """``load_batch`` given one list of fields for a group spanning Clio objects stops before reading a row."""
    folder = tmp_path / "transformed" / "Task"
    paths = [folder / f"{s}-{staging.batch_name(1)}.jsonl.gz" for s in ("activities", "tasks")]
    with pytest.raises(ValueError, match="several Clio objects"):
        pipeline.load_batch(FakeSF(), paths, tmp_path, migration_id="m1", run_id="r1", phase="delta",
                            clear_fields=["Clio_Hours__c"])
