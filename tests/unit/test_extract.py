"""The resumable extraction loop, against an in-memory cursor-paged fake of Clio."""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from upath import UPath

from clio2sf import catalog, staging
from clio2sf.extract import ExtractError, extract_object, first_request, read_records, source_kind

pytestmark = pytest.mark.unit


class FakeClio:
    """Cursor paging like Clio: ``next`` is a full URL with an opaque page token."""

    def __init__(self, n: int, page_size: int = 3, fail_after: int | None = None) -> None:
        self.records = [
            {"id": i, "created_at": f"2024-01-{i % 28 + 1:02d}T10:00:00-05:00", "name": f"Secret Client {i}"}
            for i in range(1, n + 1)
        ]
        self.page_size = page_size
        self.fail_after = fail_after
        self.calls: list[tuple[str, dict | None]] = []

    def __call__(self, url: str, params):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise ConnectionError("worker killed")
        self.calls.append((url, params))
        if params is not None:
            start = 0
        else:
            start = int(parse_qs(urlsplit(url).query)["page_token"][0].removeprefix("tok"))
        page = self.records[start : start + self.page_size]
        body = {"data": page, "meta": {"paging": {}}}
        if start + self.page_size < len(self.records):
            body["meta"]["paging"]["next"] = f"http://clio.test/api/v4/x.json?fields=id&page_token=tok{start + self.page_size}"
        return body, {"X-RateLimit-Limit": "50"}


@pytest.fixture
def mroot(tmp_path):
    return staging.migration_root(tmp_path, "acme", "m1")


def _ids(mroot, name="contacts"):
    return [e["clio_id"] for e in read_records(mroot, name)]


def test_every_catalog_object_has_a_kind():
    kinds = {o.name: source_kind(o.name) for o in catalog.CLIO_OBJECTS}
    assert kinds["contacts"] == "contact" and kinds["matters"] == "matter"
    assert kinds["activities"] == "activity" and kinds["calendar_entries"] == "calendar_entry"
    assert kinds["matter_notes"] == kinds["contact_notes"] == "note"
    assert kinds["bank_transactions"] == "bank_transaction" and kinds["relationships"] == "relationship"
    assert kinds["users"] == "user" and kinds["communications"] == "communication"
    assert kinds["expense_categories"] == "expense_category" and kinds["documents"] == "document"
    assert all(k and not k.endswith("s") for k in kinds.values()), kinds


def test_first_request_params():
    path, params = first_request(catalog.get("matter_notes"), updated_since="2024-01-01T00:00:00Z")
    assert path == "notes"
    assert params == {"order": "id(asc)", "limit": 200, "fields": catalog.get("matter_notes").fields,
                      "type": "Matter", "updated_since": "2024-01-01T00:00:00Z"}
    not_incremental = catalog.ClioObject("x", "x", "id", incremental=False)
    with pytest.raises(ExtractError, match="updated_since"):
        first_request(not_incremental, updated_since="2024-01-01")


def test_full_extraction_envelopes_manifest_progress_and_log(mroot, caplog):
    fake = FakeClio(10)
    caplog.set_level(logging.INFO)
    out = extract_object(catalog.get("contacts"), fake, mroot, clock=lambda: 1_800_000_000.0)
    assert out == {"object": "contacts", "records": 10, "batches": 4, "pages": 4, "requests": 4,
                   "complete": True, "manifest": str(staging.raw_dir(mroot, "contacts") / "_manifest.json")}
    # The next URLs are followed exactly, with no params added.
    assert fake.calls[0][0] == "contacts" and fake.calls[0][1]["order"] == "id(asc)"
    assert [c[1] for c in fake.calls[1:]] == [None] * 3
    assert fake.calls[1][0].endswith("page_token=tok3")
    envs = list(read_records(mroot, "contacts"))
    assert [e["clio_id"] for e in envs] == list(range(1, 11))
    assert envs[0] == {"object": "contacts", "source_system_id": "contact-1", "clio_id": 1,
                       "original_create_date": "2024-01-02T10:00:00-05:00",
                       "extracted_at": "2027-01-15T08:00:00Z", "data": fake.records[0]}
    manifest = staging.read_manifest(mroot, "contacts")
    assert manifest["complete"] is True and manifest["records"] == 10
    for entry in manifest["batches"]:
        raw = (staging.raw_dir(mroot, "contacts") / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest()
    progress = staging.read_progress(mroot, "contacts")
    assert progress["complete"] is True and progress["next"] is None
    log = staging.read_jsonl(staging.raw_dir(mroot, "contacts") / "_batches.jsonl")
    assert [(r["batch"], r["records"], r["requests"]) for r in log] == [
        ("batch-00001.jsonl.gz", 3, 1), ("batch-00002.jsonl.gz", 3, 1),
        ("batch-00003.jsonl.gz", 3, 1), ("batch-00004.jsonl.gz", 1, 1)]
    assert "10/? records" in caplog.text
    assert "Secret Client" not in caplog.text
    # A finished object is not fetched again.
    again = extract_object(catalog.get("contacts"), fake, mroot)
    assert again["records"] == 10 and len(fake.calls) == 4


def test_pages_per_batch_and_total_for_eta(mroot, caplog):
    caplog.set_level(logging.INFO)
    out = extract_object(catalog.get("contacts"), FakeClio(10), mroot, pages_per_batch=3, total=10)
    assert (out["batches"], out["pages"]) == (2, 4)
    assert [e["records"] for e in staging.read_manifest(mroot, "contacts")["batches"]] == [9, 1]
    assert "9/10 records" in caplog.text and "ETA" in caplog.text


def test_kill_and_resume_no_duplicate_no_gap(mroot):
    obj = catalog.get("contacts")
    with pytest.raises(ConnectionError):
        extract_object(obj, FakeClio(20, fail_after=4), mroot, pages_per_batch=2)
    progress = staging.read_progress(mroot, "contacts")
    assert progress["batches"] == 2 and progress["records"] == 12 and progress["next"].endswith("tok12")
    resumed = FakeClio(20)
    out = extract_object(obj, resumed, mroot, pages_per_batch=2)
    assert resumed.calls[0][0].endswith("page_token=tok12") and resumed.calls[0][1] is None
    assert out["records"] == 20
    assert _ids(mroot) == list(range(1, 21))


def test_segmented_manifest_survives_kill_and_resume(mroot, monkeypatch):
    monkeypatch.setattr(staging, "SEGMENT_BATCHES", 2)
    obj = catalog.get("contacts")
    with pytest.raises(ConnectionError):
        extract_object(obj, FakeClio(20, fail_after=5), mroot)
    odir = staging.raw_dir(mroot, "contacts")
    assert staging.read_progress(mroot, "contacts")["batches"] == 5
    during = staging.read_json(odir / "_manifest.json")
    assert "batches" not in during and during["segments"][-1] == "_manifest/part-00003.json"
    assert len(staging.read_manifest(mroot, "contacts")["batches"]) == 5
    out = extract_object(obj, FakeClio(20), mroot)
    assert out["batches"] == 7 and _ids(mroot) == list(range(1, 21))
    assert sorted(p.name for p in (odir / "_manifest").glob("part-*")) == [f"part-0000{i}.json" for i in (1, 2, 3, 4)]
    done = staging.read_json(odir / "_manifest.json")
    assert [b["file"] for b in done["batches"]] == [staging.batch_name(n) for n in range(1, 8)]


def test_crash_before_commit_rewrites_the_uncommitted_batch(mroot, monkeypatch):
    obj = catalog.get("contacts")
    real = staging.write_json
    commits = {"n": 0}

    def flaky(path, data):
        if path.name == "_progress.json":
            commits["n"] += 1
            if commits["n"] == 2:
                raise OSError("killed between batch file and progress commit")
        real(path, data)

    monkeypatch.setattr(staging, "write_json", flaky)
    with pytest.raises(OSError):
        extract_object(obj, FakeClio(9), mroot)
    odir = staging.raw_dir(mroot, "contacts")
    assert (odir / "batch-00002.jsonl.gz").exists()  # written but not committed
    monkeypatch.setattr(staging, "write_json", real)
    # The source shrank meanwhile: the stale uncommitted file must not survive as a duplicate.
    out = extract_object(obj, FakeClio(9), mroot)
    assert out["batches"] == 3
    assert _ids(mroot) == list(range(1, 10))
    assert sorted(p.name for p in odir.glob("batch-*")) == [f"batch-0000{i}.jsonl.gz" for i in (1, 2, 3)]


def test_stale_uncommitted_file_is_removed(mroot):
    odir = staging.raw_dir(mroot, "contacts")
    staging.write_jsonl_gz(odir / "batch-00001.jsonl.gz", [{"clio_id": 999}])
    out = extract_object(catalog.get("contacts"), FakeClio(0), mroot)
    assert out["records"] == 0 and out["complete"] is True
    assert list(odir.glob("batch-*")) == []
    assert staging.read_manifest(mroot, "contacts")["batches"] == []


def test_delta_mismatch_refuses_to_mix(mroot):
    obj = catalog.get("contacts")
    with pytest.raises(ConnectionError):
        extract_object(obj, FakeClio(9, fail_after=1), mroot)
    with pytest.raises(ExtractError, match="updated_since"):
        extract_object(obj, FakeClio(9), mroot, updated_since="2024-01-01T00:00:00Z")


def test_bad_shapes_raise_naming_object(mroot):
    with pytest.raises(ExtractError, match="contacts: response for contacts has no 'data' list"):
        extract_object(catalog.get("contacts"), lambda u, p: ({"error": "x"}, {}), mroot)
    with pytest.raises(ExtractError, match="matters: a record has no 'id'"):
        extract_object(catalog.get("matters"), lambda u, p: ({"data": [{"name": "x"}]}, {}), mroot)
    with pytest.raises(ValueError, match="pages_per_batch"):
        extract_object(catalog.get("matters"), FakeClio(1), mroot, pages_per_batch=0)


def test_documents_get_blobs_with_sha_and_size(tmp_path):
    mroot = staging.migration_root(UPath(f"file://{tmp_path}"), "acme", "m1")
    docs = [
        {"id": 55, "created_at": "2024-01-01T00:00:00Z", "latest_document_version": {"id": 2}},
        {"id": 56, "created_at": "2024-01-01T00:00:00Z", "latest_document_version": {"id": 9}},
        {"id": 57, "created_at": "2024-01-01T00:00:00Z", "latest_document_version": None},
    ]
    content = {(55, 2): [b"%PDF-", b"1.7"], (56, 9): []}
    calls = []

    def download(doc_id, version_id):
        calls.append((doc_id, version_id))
        return iter(content[(doc_id, version_id)])

    with pytest.raises(ValueError, match="download"):
        extract_object(catalog.get("documents"), lambda u, p: ({"data": docs}, {}), mroot)
    out = extract_object(catalog.get("documents"), lambda u, p: ({"data": docs}, {}), mroot, download=download)
    assert out["requests"] == 3 and calls == [(55, 2), (56, 9)]
    by_id = {e["clio_id"]: e for e in read_records(mroot, "documents")}
    assert by_id[55]["blob"] == {"path": "blobs/documents/55/2", "sha256": hashlib.sha256(b"%PDF-1.7").hexdigest(), "size": 8}
    assert by_id[56]["blob"]["size"] == 0 and by_id[56]["source_system_id"] == "document-56"
    assert by_id[57]["blob"] is None
    assert (mroot / "blobs/documents/55/2").read_bytes() == b"%PDF-1.7"
    assert (mroot / "blobs/documents/56/9").exists()


def test_progress_line_at_least_every_30_seconds_between_commits(mroot, caplog):
    """One batch of 4 pages, each page taking 31 s: a progress line per page, not only at the commit."""
    caplog.set_level(logging.INFO)
    now = [0.0]
    fake = FakeClio(12)

    def slow(url, params):
        now[0] += 31.0
        return fake(url, params)

    extract_object(catalog.get("contacts"), slow, mroot, pages_per_batch=4, total=12, clock=lambda: now[0])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("contacts: ")
             and "committed" not in r.getMessage()]
    assert lines[:3] == ["contacts: 3/12 records, 0.1 records/s, ETA 0h01m33s",
                         "contacts: 6/12 records, 0.1 records/s, ETA 0h01m02s",
                         "contacts: 9/12 records, 0.1 records/s, ETA 0h00m31s"]
