"""Executing a rollback plan against an in-memory org: order, restore, idempotence, dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clio2sf.ledger import LedgerWriter, read_ledger
from clio2sf.rollback_run import run_rollback
from tests.unit.sf_fake import FakeSF

pytestmark = pytest.mark.unit


@pytest.fixture
def staged(tmp_path: Path):
    org = FakeSF({
        "Account": [{"Id": "001A", "Clio_Id__c": "contact-9000", "Name": "Acme"}],
        "Contact": [{"Id": "003A", "Clio_Id__c": "contact-9001", "LastName": "Doe"},
                    {"Id": "003OLD", "Clio_Id__c": None, "LastName": "Changed", "Email": "new@x.example"}],
        "ContentDocument": [{"Id": "069A"}],
        "ContentVersion": [{"Id": "068A", "ContentDocumentId": "069A"}],
    })
    with LedgerWriter(tmp_path, "m1", "run1", "full_load", "Account", "batch-00001") as w:
        w.record(source_system_id="contact-9000", sf_id="001A", operation="upsert", created=True)
    with LedgerWriter(tmp_path, "m1", "run1", "full_load", "Contact", "batch-00001") as w:
        w.record(source_system_id="contact-9001", sf_id="003A", operation="upsert", created=True)
        w.record(source_system_id="contact-9002", sf_id="003OLD", operation="upsert", created=False,
                 before={"Id": "003OLD", "LastName": "Roe", "Email": None})
    with LedgerWriter(tmp_path, "m1", "run1", "full_load", "ContentVersion", "batch-00001") as w:
        w.record(source_system_id="document-55@v1", sf_id="068A", operation="insert", created=True, file_ids=["069A"])
    return tmp_path, org


def test_dry_run_writes_the_plan_and_changes_nothing(staged):
    root, org = staged
    out = run_rollback(org, root, run_id="run1", migration_id="m1", dry_run=True)
    assert out["planned"] == {"ContentDocument": {"delete": 1}, "Contact": {"delete": 1, "restore": 1},
                              "Account": {"delete": 1}}
    assert out["counts"] == {} and org.deleted == []
    plan = json.loads((Path(out["report"]).parent / "rollback.json").read_text())
    assert [(o["action"], o["sobject"]) for o in plan["operations"]] == [
        ("restore", "Contact"), ("delete", "ContentDocument"), ("delete", "Contact"), ("delete", "Account")]


def test_rollback_deletes_in_reverse_order_restores_and_is_idempotent(staged):
    root, org = staged
    out = run_rollback(org, root, run_id="run1", migration_id="m1", dry_run=False)
    assert org.deleted == ["069A", "003A", "001A"]
    assert out["counts"]["Contact"] == {"deleted": 1, "restored": 1} and out["failed"] == 0
    old = next(r for r in org.records["Contact"] if r["Id"] == "003OLD")
    assert old["LastName"] == "Roe" and old["Email"] is None
    lines = read_ledger(root, "run1", "rollback")
    assert len(lines) == 4 and set(lines["status"]) == {"ok"}
    again = run_rollback(org, root, run_id="run1", migration_id="m1", dry_run=False)
    assert again["planned"] == {} and again["counts"] == {} and again["already_done"] == 4


def test_rollback_of_every_run_and_unknown_run(staged):
    root, org = staged
    with pytest.raises(ValueError, match="run 'nope'"):
        run_rollback(org, root, run_id="nope", migration_id="m1", dry_run=True)
    org.records["Account"].clear()  # deleted by someone already: skipped, not failed
    out = run_rollback(org, root, migration_id="m1", dry_run=False)
    assert "Account" not in out["counts"] and out["failed"] == 0
    assert Path(out["report"]).exists() and Path(out["report"]).parent.name.startswith("rollback-m1-")


def test_rollback_of_a_delta_recreates_what_it_deleted_and_a_later_rollback_deletes_the_copy(staged):
    root, org = staged
    org.records["Task"] = []  # the delta deleted 00TA, a task run1 created
    with LedgerWriter(root, "m1", "run1", "full_load", "Task", "batch-00001") as w:
        w.record(source_system_id="task-7", sf_id="00TA", operation="upsert", created=True)
    with LedgerWriter(root, "m1", "run2", "delta", "Task", "deletes-00001") as w:
        w.record(source_system_id="task-7", sf_id="00TA", operation="delete", created=False,
                 before={"Clio_Id__c": "task-7", "Subject": "Call the client", "WhoId": "003A", "Description": None})
    dry = run_rollback(org, root, run_id="run2", migration_id="m1", dry_run=True)
    assert dry["planned"] == {"Task": {"recreate": 1}}
    out = run_rollback(org, root, run_id="run2", migration_id="m1", dry_run=False)
    assert out["counts"] == {"Task": {"recreated": 1}} and out["failed"] == 0
    [task] = org.records["Task"]
    assert task["Subject"] == "Call the client" and task["WhoId"] == "003A" and task["Id"] != "00TA"
    line = read_ledger(root, "run2", "rollback").iloc[0]
    assert (line["operation"], line["sf_id"], line["before"]) == ("recreate", task["Id"], {"Id": "00TA"})
    again = run_rollback(org, root, run_id="run2", migration_id="m1", dry_run=False)
    assert again["planned"] == {} and again["already_done"] == 1
    everything = run_rollback(org, root, migration_id="m1", dry_run=False)
    assert task["Id"] in org.deleted and org.records["Task"] == []
    assert "recreate" not in {a for acts in everything["planned"].values() for a in acts}


def _live_ops() -> int:
    import gc

    from clio2sf.rollback import RollbackOp

    # type(), not isinstance(): a lazy proxy among gc's objects would import its target to answer
    return sum(1 for o in gc.get_objects() if type(o) is RollbackOp)


class SpyingSF(FakeSF):
    """Counts the rollback operations alive in the process at each existence check and each delete call."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.live: list[int] = []

    def query_all_iter(self, soql):
        self.live.append(_live_ops())
        yield from super().query_all_iter(soql)

    def composite_delete(self, ids):
        self.live.append(_live_ops())
        return super().composite_delete(ids)


def test_rolling_back_a_whole_run_never_holds_its_plan(tmp_path, monkeypatch):
    """A run of 1,500 created records with steps of 100: at no call to the org are more than a few steps'
    operations alive (the plan of the whole run, 1,500 operations, used to be held from planning to the end);
    the spool is removed, the reports list every operation, the HTML summarises past its inline cap."""
    from clio2sf import rollback

    monkeypatch.setattr(rollback, "STREAM_CHUNK", 100, raising=False)
    monkeypatch.setattr(rollback, "HTML_INLINE_MAX", 1_000, raising=False)
    n = 1_500
    org = SpyingSF({"Contact": [{"Id": f"003{i:012d}", "LastName": f"L{i}"} for i in range(n)]})
    with LedgerWriter(tmp_path, "m1", "big", "full_load", "Contact", "batch-00001") as w:
        for i in range(n):
            w.record(source_system_id=f"contact-{i}", sf_id=f"003{i:012d}", operation="upsert", created=True)
    dry = run_rollback(org, tmp_path, run_id="big", migration_id="m1", dry_run=True)
    assert dry["planned"] == {"Contact": {"delete": n}} and org.deleted == []
    out = run_rollback(org, tmp_path, run_id="big", migration_id="m1", dry_run=False)
    assert out["counts"] == {"Contact": {"deleted": n}} and out["failed"] == 0 and org.records["Contact"] == []
    assert org.live and max(org.live) <= 3 * 100 + 200, max(org.live)  # steps of 100, composite calls of 200
    assert not (tmp_path / "rollback").exists() or list((tmp_path / "rollback").iterdir()) == []
    rdir = Path(out["report"]).parent
    doc = json.loads((rdir / "rollback.json").read_text())
    assert [o["sf_id"] for o in doc["operations"]] == [f"003{i:012d}" for i in range(n)]
    assert doc["counts"] == {"Contact": {"delete": n}} and doc["already_done"] == []
    assert (rdir / "rollback.csv").read_text().count("\n") == n + 1
    html = (rdir / "rollback.html").read_text()
    assert "Dry run" not in html and f"{n} operation(s) to roll back" in html and 'href="rollback.csv"' in html
    assert "003000000000007" not in html  # summarised per object, not listed
    again = run_rollback(org, tmp_path, run_id="big", migration_id="m1", dry_run=False)
    assert again["planned"] == {} and again["already_done"] == n and again["counts"] == {}
