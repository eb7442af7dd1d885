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
