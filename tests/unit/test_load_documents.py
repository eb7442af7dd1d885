"""``full_load.load_documents``: document batches are uploaded as the extraction commits them, while
it still runs; only committed batches; each once per run (a retry skips what it marked); it waits
for the last batch and gives up, naming what to do, after ``documents_wait_hours``.

The extractor is simulated in the task's sleep: each wait commits the next batch the way
``clio2sf.extract`` does (batch file, manifest, then ``_progress.json``), so no timing is involved.
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from clio2sf import staging
from clio2sf_airflow.phases import full_load


class World:
    def __init__(self, root, batches: int, monkeypatch, *, pending: bool = True) -> None:
        self.root, self.total, self.committed = root, batches, 0
        self.events: list[tuple[str, str]] = []
        self.odir = staging.raw_dir(root, "documents")
        staging.ensure_dir(self.odir)
        self.manifest = staging.ManifestWriter(self.odir, "documents", 0)
        staging.write_json(root / "raw" / "_extraction.json", {"records_complete": True, "documents_pending": pending,
                                                              "objects": {}})
        self.params = {"firm": "f", "migration_id": "m", "documents_wait_hours": 1}
        monkeypatch.setattr(full_load, "params", lambda: dict(self.params))
        monkeypatch.setattr(full_load, "mroot", lambda p=None: root)
        monkeypatch.setattr(full_load, "run_id", lambda: "run1")
        monkeypatch.setattr(full_load.load_common, "transform_one", self.transform)
        monkeypatch.setattr(full_load.load_common, "load_one", self.load)
        monkeypatch.setattr(full_load.time, "sleep", lambda s: self.commit_next())
        self.clock = 0.0
        monkeypatch.setattr(full_load.time, "monotonic", lambda: self.clock)

    def commit_next(self, *, uncommitted_tail: bool = False) -> None:
        """One extractor step: the next batch committed (and, optionally, the one after it listed only)."""
        self.clock += full_load.DOCUMENT_POLL_SECONDS
        if self.committed >= self.total:
            return
        self.committed += 1
        n = self.committed
        entry = staging.write_jsonl_gz(self.odir / staging.batch_name(n), [{"object": "documents", "clio_id": n}])
        self.manifest.add(n, entry)
        done = n == self.total
        self.manifest.write(n, done)
        staging.write_json(self.odir / staging.PROGRESS, {"batches": n, "records": n, "complete": done})
        self.events.append(("committed", staging.batch_name(n)))

    def transform(self, item, out=""):
        name = item["path"].rsplit("/", 1)[-1]
        self.events.append(("transform", name))
        for sobject in ("ContentVersion", "ContentDocumentLink"):
            staging.write_jsonl_gz(self.root / "transformed" / sobject / f"documents-{name}", [{"row": {}}])
        return {}

    def load(self, path, phase, **kw):
        assert phase == "full_load"
        self.events.append(("load", path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1]))
        return {"rows": 1, "created": 1, "updated": 0, "skipped": 0, "failed": 0}


def test_each_batch_is_uploaded_as_soon_as_it_is_committed(tmp_path, monkeypatch):
    w = World(tmp_path, 3, monkeypatch)
    w.commit_next()
    out = full_load.load_documents()
    assert out["batches"] == 3 and out["created"] == 6
    b = [staging.batch_name(n) for n in (1, 2, 3)]
    assert w.events == [
        ("committed", b[0]), ("transform", b[0]), ("load", f"ContentVersion/documents-{b[0]}"),
        ("load", f"ContentDocumentLink/documents-{b[0]}"),
        ("committed", b[1]), ("transform", b[1]), ("load", f"ContentVersion/documents-{b[1]}"),
        ("load", f"ContentDocumentLink/documents-{b[1]}"),
        ("committed", b[2]), ("transform", b[2]), ("load", f"ContentVersion/documents-{b[2]}"),
        ("load", f"ContentDocumentLink/documents-{b[2]}"),
    ]  # batch 1 was in Salesforce before batch 2 existed: the upload overlaps the download


def test_a_batch_listed_but_not_committed_waits(tmp_path, monkeypatch):
    w = World(tmp_path, 2, monkeypatch)
    w.commit_next()
    # a killed extractor left batch 2 in the manifest without committing it in _progress.json
    entry = staging.write_jsonl_gz(w.odir / staging.batch_name(2), [{"object": "documents", "clio_id": 99}])
    w.manifest.add(2, entry)
    w.manifest.write(2, False)
    class Waited(Exception):
        pass

    def sleep(seconds):
        raise Waited

    monkeypatch.setattr(full_load.time, "sleep", sleep)
    with pytest.raises(Waited):  # it waits instead of loading batch 2
        full_load.load_documents()
    assert [e for e in w.events if e[0] == "transform"] == [("transform", staging.batch_name(1))]


def test_a_retry_skips_the_batches_it_loaded(tmp_path, monkeypatch):
    w = World(tmp_path, 2, monkeypatch)
    w.commit_next()
    w.commit_next()
    full_load.load_documents()
    w.events.clear()
    assert full_load.load_documents()["batches"] == 0 and w.events == []
    # a new run loads them again (its own markers), as every load step of a re-run does
    monkeypatch.setattr(full_load, "run_id", lambda: "run2")
    assert full_load.load_documents()["batches"] == 2


def test_nothing_to_wait_for_when_the_run_did_not_extract_documents(tmp_path, monkeypatch):
    w = World(tmp_path, 0, monkeypatch, pending=False)
    staging.raw_dir(tmp_path, "documents").rmdir()
    assert full_load.load_documents()["batches"] == 0 and w.events == []


def test_gives_up_after_the_wait_naming_what_to_do(tmp_path, monkeypatch):
    w = World(tmp_path, 0, monkeypatch)  # documents pending, the extractor never commits
    with pytest.raises(AirflowFailException, match="extract_documents finish.*clear this task"):
        full_load.load_documents()
    assert w.clock > 3600


def test_the_record_steps_leave_the_documents_to_load_documents(tmp_path, monkeypatch):
    """plan_transform and the load_<Object> steps skip documents (raw and transformed): only
    load_documents handles them, once, after the record objects."""
    monkeypatch.setattr(full_load, "mroot", lambda p=None: tmp_path)
    for name in ("documents", "matters"):
        odir = staging.raw_dir(tmp_path, name)
        staging.ensure_dir(odir)
        entry = staging.write_jsonl_gz(odir / staging.batch_name(1), [{"object": name, "clio_id": 1}])
        staging.write_json(odir / staging.MANIFEST, {"object": name, "batches": [entry], "complete": True})
    assert {i["object"] for i in full_load.plan_transform()} == {"matters"}
    for name in ("documents-batch-00001.jsonl.gz", "matter_notes-batch-00001.jsonl.gz"):
        staging.write_jsonl_gz(tmp_path / "transformed" / "ContentDocumentLink" / name, [{"row": {}}])
    listed = full_load.list_batches("ContentDocumentLink")
    assert [str(x).rsplit("/", 1)[-1] for x in listed] == ["matter_notes-batch-00001.jsonl.gz"]
    assert len(full_load.list_all_batches()) == 2  # the deferred pass sees every file
