"""Delta planning: watermarks, overlap dedupe, deletions, and conflicts queued not overwritten."""

from __future__ import annotations

import json

import pytest

from clio2sf.delta import (
    Change,
    LastWrite,
    SfState,
    commit_watermark,
    dedupe_changes,
    deleted_ids,
    deleted_ids_sorted,
    last_writes_from_ledger,
    next_watermark,
    plan_delta,
    read_since,
    read_watermarks,
    write_conflicts_html,
    write_conflicts_jsonl,
)
from clio2sf.ledger import LedgerWriter, last_write_by_record, read_ledger

pytestmark = pytest.mark.unit
US = "005INTEGRATION0"


def test_watermark_commit_and_overlap(tmp_path):
    assert read_since(tmp_path, "matters") is None
    mark = next_watermark(None, ["2026-11-28T09:00:00Z", "2026-11-28T10:30:00-05:00", None])
    assert mark == "2026-11-28T15:30:00Z"
    assert next_watermark(mark, []) == mark
    assert next_watermark(mark, ["2026-11-01T00:00:00Z"]) == mark  # never earlier
    commit_watermark(tmp_path, "matters", mark, "run-1")
    assert read_since(tmp_path, "matters") == "2026-11-28T15:20:00Z"  # 10-minute overlap
    assert read_watermarks(tmp_path)["matters"]["run_id"] == "run-1"
    with pytest.raises(ValueError, match="backwards"):
        commit_watermark(tmp_path, "matters", "2026-11-01T00:00:00Z", "run-2")
    assert json.loads((tmp_path / "delta" / "watermarks.json").read_text())["version"] == 1


def _e(i, updated, etag="e"):
    return {"source_system_id": f"matter-{i}", "clio_id": i, "data": {"id": i, "updated_at": updated, "etag": etag}}


def test_overlap_dedupe():
    staged = [_e(1, "2026-11-28T09:00:00Z"), _e(1, "2026-11-28T09:05:00Z", "e2"), _e(2, "2026-11-28T08:00:00Z"),
              _e(3, "2026-11-28T09:10:00Z", "e3")]
    applied = {"matter-2": "2026-11-28T08:00:00Z", "matter-3": "e3"}
    out = dedupe_changes(staged, applied)
    assert [(e["source_system_id"], e["data"]["etag"]) for e in out] == [("matter-1", "e2")]


def test_deletions():
    assert deleted_ids([1, 2, 3, 5], [1, 3, 4]) == {2, 5}
    assert list(deleted_ids_sorted(iter([1, 2, 3, 5, 9]), iter([1, 3, 4, 9]))) == [2, 5]


def test_conflicts_are_queued_not_overwritten(tmp_path):
    with LedgerWriter(tmp_path, "m1", "full", "full_load", "Case", "batch-00001") as w:
        for i in (7, 8, 9, 10):
            w.record(source_system_id=f"matter-{i}", sf_id=f"500{i}", operation="upsert", created=True,
                     at="2026-11-28T09:00:00Z")
    last = last_writes_from_ledger(
        last_write_by_record(read_ledger(tmp_path)),
        {("Case", "matter-9"): {"Subject": "Doe v. Smith", "Status": "Open"},
         ("Case", "matter-10"): {"Subject": "Roe", "Status": "Open"}})
    sf = {
        ("Case", "matter-7"): SfState("5007", "2026-11-28T09:00:01.000+0000", US),  # our own write
        ("Case", "matter-8"): SfState("5008", "2026-11-29T12:00:00.000+0000", "005PARALEGAL"),  # edited by a user
        ("Case", "matter-9"): SfState("5009", "2026-11-29T12:00:00.000+0000", "005SYSTEM",
                                      {"Subject": "Doe v. Smith", "Status": "Open"}),  # touched, values unchanged
        ("Case", "matter-10"): SfState("50010", "2026-11-29T12:00:00.000+0000", "005PARALEGAL",
                                       {"Subject": "Roe", "Status": "Closed"}),  # deleted in Clio, edited in SF
        ("Contact", "contact-1"): SfState("0031", "2026-11-29T12:00:00Z", "005X"),  # not ours at all
        ("Contact", "contact-3"): SfState("0033", "2026-11-20T12:00:00Z", US),
    }
    last[("Contact", "contact-3")] = LastWrite("0033", "2026-11-20T12:00:00Z")
    changes = [Change("Case", f"matter-{i}", {"Subject": "new"}) for i in (7, 8, 9)]
    changes += [Change("Contact", "contact-1", {"LastName": "X"}), Change("Contact", "contact-2", {"LastName": "Y"})]
    deletions = [Change("Case", "matter-10"), Change("Contact", "contact-3"), Change("Case", "matter-99")]
    plan = plan_delta(changes, deletions, sf, last, integration_user_ids=[US])
    assert [(o.sobject, o.source_system_id, o.sf_id) for o in plan.upserts] == [
        ("Contact", "contact-2", None), ("Case", "matter-7", "5007"), ("Case", "matter-9", "5009")]
    conflicts = {c.source_system_id: c for c in plan.conflicts}
    assert set(conflicts) == {"matter-8", "contact-1", "matter-10"}
    assert conflicts["matter-10"].action == "delete" and conflicts["matter-10"].changed_fields == ["Status"]
    assert conflicts["matter-10"].sf_values == {"Status": "Closed"}
    assert "matter-8" not in {o.source_system_id for o in plan.upserts}
    assert [(o.sobject, o.sf_id) for o in plan.deletes] == [("Contact", "0033")]
    assert plan.skipped == [("Case", "matter-99", "already absent from Salesforce")]

    lines = write_conflicts_jsonl(tmp_path / "conflicts.jsonl", plan.conflicts).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["reason"]
    html = write_conflicts_html(tmp_path / "conflicts.html", plan.conflicts).read_text()
    assert "3 record(s) queued instead of overwritten" in html and "ours=Open theirs=Closed" in html


def test_delete_order_is_reverse_dependency():
    sf = {(s, f"x-{s}"): SfState(f"id-{s}", "2026-01-01T00:00:00Z", US) for s in ("Account", "Contact", "Task", "Case")}
    last = {k: LastWrite(v.sf_id, "2026-01-01T00:00:00Z") for k, v in sf.items()}
    plan = plan_delta([], [Change(s, k) for (s, k) in sf], sf, last)
    assert [o.sobject for o in plan.deletes] == ["Task", "Case", "Contact", "Account"]
