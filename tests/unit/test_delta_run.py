"""A delta window: conflicts queued, deletions planned and applied, clean changes to upsert."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from clio2sf import staging
from clio2sf.delta_run import apply_deletes, plan_window
from clio2sf.ledger import LedgerWriter, read_ledger
from clio2sf.mapping.spec import load_spec
from tests.unit.sf_fake import FakeSF

pytestmark = pytest.mark.unit

INTEG, OTHER = "005INTEG", "005HUMAN"
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def _raw(root: Path, obj: str, envs: list[dict]) -> None:
    info = staging.write_jsonl_gz(staging.batch_path(root, obj, 1), envs)
    staging.write_json(staging.raw_dir(root, obj) / staging.MANIFEST, {"object": obj, "batches": [info]})


def _env(i: int, updated: str) -> dict:
    return {"object": "contacts", "source_system_id": f"contact-{i}", "clio_id": i,
            "data": {"id": i, "type": "Person", "last_name": f"L{i}", "updated_at": updated}}


@pytest.fixture
def window(tmp_path: Path):
    mroot, droot = tmp_path / "m", tmp_path / "d"
    _raw(mroot, "contacts", [_env(i, "2026-11-01T00:00:00Z") for i in (1, 2, 3)])
    with LedgerWriter(mroot, "m1", "full", "full_load", "Contact", "batch-00001") as w:
        for i in (1, 2, 3):
            w.record(source_system_id=f"contact-{i}", sf_id=f"003{i}", operation="upsert", created=True, at=T0)
    org = FakeSF({"Contact": [
        # edited by a person an hour after our write: a conflict
        {"Id": "0031", "Clio_Id__c": "contact-1", "LastName": "L1 edited", "SystemModstamp": "2026-11-28T10:00:00Z",
         "LastModifiedById": OTHER},
        # only our own write: safe to upsert
        {"Id": "0032", "Clio_Id__c": "contact-2", "LastName": "L2", "SystemModstamp": "2026-11-28T09:00:00Z",
         "LastModifiedById": INTEG},
        {"Id": "0033", "Clio_Id__c": "contact-3", "LastName": "L3", "SystemModstamp": "2026-11-28T09:00:00Z",
         "LastModifiedById": INTEG}],
        "User": [{"Id": INTEG, "Username": "integration@firm.example"}]})
    _raw(droot, "contacts", [_env(1, "2026-12-01T00:00:00Z"), _env(2, "2026-12-01T00:00:00Z"),
                             _env(4, "2026-12-01T00:00:00Z")])
    return mroot, droot, org


def test_plan_window_queues_conflicts_deletes_and_upserts(window):
    mroot, droot, org = window
    out = plan_window(org, mroot, load_spec(None), delta_root=droot, current_ids={"contacts": [1, 2, 4]},
                      integration_username="integration@firm.example")
    assert out["conflicts"] == 1 and out["deletes"] == 1 and out["upserts"] == {"contacts": 2}
    ok = [e["source_system_id"] for e in staging.read_jsonl_gz(droot / "raw_ok" / "contacts" / "batch-00001.jsonl.gz")]
    assert sorted(ok) == ["contact-2", "contact-4"]  # the edited one is held back, the new one goes
    assert staging.read_json(droot / "raw_ok" / "contacts" / "_manifest.json")["records"] == 2
    conflict = staging.read_jsonl(droot / "conflicts.jsonl")[0]
    assert conflict["source_system_id"] == "contact-1" and conflict["sf_modified_by"] == OTHER
    assert "contact-1" in (droot / "conflicts.html").read_text()
    assert staging.read_jsonl(droot / "deletes.jsonl") == [
        {"sobject": "Contact", "source_system_id": "contact-3", "sf_id": "0033"}]


def test_apply_deletes_ledgers_a_before_image(window):
    mroot, droot, org = window
    plan = plan_window(org, mroot, load_spec(None), delta_root=droot, current_ids={"contacts": [1, 2, 4]},
                       integration_user_ids=[INTEG])
    out = apply_deletes(org, mroot, plan, "delta-1", "m1", delta_root=droot)
    assert out == {"counts": {"Contact": {"deleted": 1}}, "failed": 0, "detached": {}, "cascaded": {}}
    assert org.deleted == ["0033"]
    line = read_ledger(mroot, "delta-1").iloc[0]
    assert line["operation"] == "delete" and line["before"]["LastName"] == "L3"
    again = plan_window(org, mroot, load_spec(None), delta_root=droot, current_ids={"contacts": [1, 2, 4]},
                        integration_user_ids=[INTEG])
    assert again["deletes"] == 0 and again["deleted"] == {}  # deleted by us already: nothing to find


def test_a_record_created_in_an_earlier_window_and_deleted_since_is_deleted(window):
    """Deletions are found against what we know now (full extraction + earlier windows), not the first snapshot."""
    mroot, _droot, org = window
    w1 = mroot / "delta" / "w1"
    _raw(w1, "contacts", [_env(5, "2026-12-01T01:00:00Z")])
    with LedgerWriter(mroot, "m1", "w1", "delta", "Contact", "batch-00001") as w:
        w.record(source_system_id="contact-5", sf_id="0035", operation="upsert", created=True, at=T0)
    org.records["Contact"].append({"Id": "0035", "Clio_Id__c": "contact-5", "LastName": "L5",
                                   "SystemModstamp": "2026-11-28T09:00:00Z", "LastModifiedById": INTEG})
    w2 = mroot / "delta" / "w2"
    _raw(w2, "contacts", [])
    plan = plan_window(org, mroot, load_spec(None), delta_root=w2, current_ids={"contacts": [1, 2, 3]},
                       integration_user_ids=[INTEG])
    assert plan["deleted"] == {"contacts": 1}
    assert staging.read_jsonl(w2 / "deletes.jsonl") == [{"sobject": "Contact", "source_system_id": "contact-5", "sf_id": "0035"}]


def test_plan_window_needs_the_integration_user(window):
    mroot, droot, org = window
    with pytest.raises(ValueError, match="integration_user"):
        plan_window(org, mroot, load_spec(None), delta_root=droot, current_ids={})
