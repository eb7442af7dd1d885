"""Pure loader logic: Bulk CSV, collection records, result parsing, natural keys, retries, files."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from clio2sf.load import (
    BulkJobResult,
    Envelope,
    RowOutcome,
    SfError,
    bulk_csv_chunks,
    choose_mode,
    composite_record,
    csv_value,
    ledger_kwargs,
    load_content_versions,
    load_rows,
    parse_bulk_error,
    parse_bulk_results,
    parse_composite_results,
    plan_natural_key_inserts,
    read_envelopes,
    reject_line,
    use_multipart,
    write_rejects,
)

pytestmark = pytest.mark.unit


def env(sid: str, row: dict, sobject: str = "Contact", ext: str | None = "Clio_Id__c", **kw) -> Envelope:
    return Envelope(sobject, sid, row, ext, **kw)


def contact(n: int, **row) -> Envelope:
    return env(f"contact-{n}", {"Clio_Id__c": f"contact-{n}", **row})


# ------------------------------------------------------------------ CSV


def test_csv_quotes_newlines_null_and_unicode_round_trip():
    rows = [
        contact(1, LastName='O"Brien, Jr.', Description="line1\r\nline2\rline3", Title=None),
        contact(2, LastName="Zoë 日本", FirstName=" padded "),
    ]
    (chunk,) = bulk_csv_chunks(rows)
    text = chunk.data.decode("utf-8")
    assert "\r" not in text
    assert text.splitlines()[0] == "Clio_Id__c,LastName,Description,Title,FirstName"
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[1] == ["contact-1", 'O"Brien, Jr.', "line1\nline2\nline3", "#N/A", ""]
    assert parsed[2] == ["contact-2", "Zoë 日本", "", "", " padded "]
    assert '"O""Brien, Jr."' in text
    assert chunk.indexes == [0, 1]
    assert not chunk.data.startswith(b"\xef\xbb\xbf")


def test_external_id_column_leads_header_even_when_not_first_in_rows():
    (chunk,) = bulk_csv_chunks([env("contact-1", {"LastName": "A", "Clio_Id__c": "contact-1"})])
    assert chunk.data.split(b"\n")[0] == b"Clio_Id__c,LastName"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "#N/A"),
        (True, "true"),
        (False, "false"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.datetime(2024, 3, 1, 15, 0, tzinfo=dt.UTC), "2024-03-01T15:00:00.000Z"),
        (dt.datetime(2024, 3, 1, 15, 0), "2024-03-01T15:00:00.000Z"),
        (
            dt.datetime(2024, 3, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            "2024-03-01T10:00:00.000-05:00",
        ),
        (1e-05, "0.00001"),
        (Decimal("12.50"), "12.50"),
        (912260031.0, "912260031.0"),
        (["A", "B"], "A;B"),
        ("2024-02-01T10:00:00-05:00", "2024-02-01T10:00:00-05:00"),
    ],
)
def test_csv_value_formats(value, expected):
    assert csv_value(value) == expected


def test_chunks_respect_row_cap_and_byte_limit():
    rows = [contact(i, LastName="x" * 50) for i in range(10)]
    chunks = list(bulk_csv_chunks(rows, row_cap=4))
    assert [c.indexes for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(c.data.startswith(b"Clio_Id__c,LastName\n") for c in chunks)
    by_size = list(bulk_csv_chunks(rows, max_bytes=250))
    assert all(len(c.data) <= 250 for c in by_size)
    assert sum(len(c.indexes) for c in by_size) == 10 and len(by_size) > 2
    with pytest.raises(ValueError, match="contact-0: row alone exceeds"):
        list(bulk_csv_chunks(rows, max_bytes=40))


def test_nested_value_names_record_and_field():
    with pytest.raises(ValueError, match="contact-1: field 'Bad'"):
        list(bulk_csv_chunks([contact(1, Bad={"x": 1})]))


# ------------------------------------------------------------------ composite records


def test_composite_record_lookups_polymorphic_custom_and_null():
    e = env(
        "task-1",
        {
            "Clio_Id__c": "task-1",
            "Subject": "Call",
            "Case:What.Clio_Id__c": "matter-7",
            "Contact:Who.Clio_Id__c": None,
            "Matter__r.Clio_Id__c": "matter-7",
            "Account.Clio_Id__c": "contact-9",
            "ActivityDate": dt.date(2024, 1, 2),
        },
        sobject="Task",
    )
    assert composite_record(e) == {
        "attributes": {"type": "Task"},
        "Clio_Id__c": "task-1",
        "Subject": "Call",
        "What": {"attributes": {"type": "Case"}, "Clio_Id__c": "matter-7"},
        "WhoId": None,
        "Matter__r": {"Clio_Id__c": "matter-7"},
        "Account": {"Clio_Id__c": "contact-9"},
        "ActivityDate": "2024-01-02",
    }


# ------------------------------------------------------------------ results


@pytest.mark.parametrize(
    ("text", "code", "message", "fields"),
    [
        (
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --",
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Name]",
            ("Name",),
        ),
        (
            "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--",
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            (),
        ),
        (
            "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 200 records: 001xx:--",
            "UNABLE_TO_LOCK_ROW",
            "unable to obtain exclusive access to this record or 200 records: 001xx",
            (),
        ),
        (
            "DUPLICATE_VALUE:duplicate value found: X__c duplicates value on record with id: 001A",
            "DUPLICATE_VALUE",
            "duplicate value found: X__c duplicates value on record with id: 001A",
            (),
        ),
        (
            "STRING_TOO_LONG:Last Name: data value too large: aaa (max length=80):LastName,FirstName --",
            "STRING_TOO_LONG",
            "Last Name: data value too large: aaa (max length=80)",
            ("LastName", "FirstName"),
        ),
    ],
)
def test_parse_bulk_error(text, code, message, fields):
    assert parse_bulk_error(text) == SfError(code, message, fields)


def test_bulk_results_matched_by_external_id_out_of_order():
    rows = [
        contact(1, LastName="A"),
        contact(2, LastName="B"),
        contact(3, LastName="C"),
        contact(4, LastName="D"),
    ]
    (chunk,) = bulk_csv_chunks(rows)
    ok = '"sf__Id","sf__Created",Clio_Id__c,LastName\n"003B","false","CONTACT-2","B"\n"003A","true","contact-1","A"\n'
    bad = '"sf__Id","sf__Error",Clio_Id__c,LastName\n"","UNABLE_TO_LOCK_ROW:unable to obtain lock:--","contact-3","C"\n'
    out = parse_bulk_results(
        chunk, rows, successful=ok, failed=io.StringIO(bad), unprocessed="Clio_Id__c,LastName\n"
    )
    by = {o.source_system_id: o for o in out}
    assert (by["contact-1"].sf_id, by["contact-1"].created, by["contact-1"].success) == ("003A", True, True)
    assert (by["contact-2"].sf_id, by["contact-2"].created) == ("003B", False)
    assert by["contact-3"].transient and by["contact-3"].errors[0].status_code == "UNABLE_TO_LOCK_ROW"
    assert by["contact-4"].errors[0].status_code == "UNPROCESSED" and by["contact-4"].transient
    assert [o.index for o in out] == [0, 1, 2, 3]


def test_bulk_results_without_external_id_match_on_echoed_values():
    rows = [
        env("ccr-1", {"CasesId": "500A", "ContactId": "003A", "Role": None}, "CaseContactRole", None),
        env("ccr-2", {"CasesId": "500A", "ContactId": "003B", "Role": "Other"}, "CaseContactRole", None),
    ]
    (chunk,) = bulk_csv_chunks(rows)
    ok = '"sf__Id","sf__Created",CasesId,ContactId,Role\n"03jB","true","500A","003B","Other"\n'
    bad = '"sf__Id","sf__Error",CasesId,ContactId,Role\n"","FIELD_INTEGRITY_EXCEPTION:bad:ContactId --","500A","003A","#N/A"\n'
    out = parse_bulk_results(chunk, rows, successful=ok, failed=bad, unprocessed=None, operation="insert")
    assert (
        out[0].errors == [SfError("FIELD_INTEGRITY_EXCEPTION", "bad", ("ContactId",))]
        and not out[0].transient
    )
    assert out[1].sf_id == "03jB" and out[1].success


def test_composite_results_in_order_and_length_checked():
    rows = [contact(1), contact(2)]
    results = [
        {"id": "003A", "success": True, "errors": [], "created": True},
        {
            "success": False,
            "errors": [{"statusCode": "DUPLICATES_DETECTED", "message": "Use one?", "fields": []}],
        },
    ]
    out = parse_composite_results([0, 1], rows, results)
    assert out[0].created and out[0].sf_id == "003A"
    assert out[1].sf_id is None and out[1].errors[0].status_code == "DUPLICATES_DETECTED"
    with pytest.raises(ValueError, match="1 results for 2 records"):
        parse_composite_results([0, 1], rows, results[:1])


def test_reject_line_and_ledger_kwargs_name_record_and_field():
    o = RowOutcome(
        0, "contact-2", False, errors=[SfError("STRING_TOO_LONG", "Last Name: too large", ("LastName",))]
    )
    line = reject_line(o, "full_load", "Contact")
    assert line["field"] == "LastName" and line["rule"] == "STRING_TOO_LONG"
    assert line["message"].startswith("contact-2: STRING_TOO_LONG on LastName")
    kw = ledger_kwargs(o)
    assert kw["status"] == "failed" and "STRING_TOO_LONG" in kw["error"] and kw["sf_id"] is None
    ok = RowOutcome(1, "contact-3", True, "003C", False)
    assert ledger_kwargs(ok, {"LastName": "Old"})["before"] == {"LastName": "Old"}
    assert ledger_kwargs(RowOutcome(1, "contact-4", True, "003D", True), {"x": 1})["before"] is None


def test_write_rejects_jsonl(tmp_path: Path):
    path = write_rejects(tmp_path, "full_load", "Contact", "batch-00001", [{"source_system_id": "contact-2"}])
    assert path == tmp_path / "rejects/full_load/Contact/batch-00001.jsonl"
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"source_system_id": "contact-2"}]


def test_read_envelopes_gz_and_errors(tmp_path: Path):
    import gzip

    good = {
        "sobject": "Contact",
        "source_system_id": "contact-1",
        "external_id_field": "Clio_Id__c",
        "natural_key": None,
        "row": {"Clio_Id__c": "contact-1", "LastName": "Doe"},
    }
    data = gzip.compress((json.dumps(good) + "\n").encode())
    (e,) = read_envelopes(io.BytesIO(data), "batch-00001.jsonl.gz")
    assert e.external_id == "contact-1"
    bad = dict(good, row={"LastName": "Doe"})
    with pytest.raises(ValueError, match="contact-1: row lacks its external id field 'Clio_Id__c'"):
        read_envelopes(io.BytesIO(json.dumps(bad).encode()), "b.jsonl")


# ------------------------------------------------------------------ natural keys


def ccr(sid: str, case: str, contact_ext: str, role: str | None = "Other") -> Envelope:
    return env(
        sid,
        {"Cases.Clio_Id__c": case, "Contact.Clio_Id__c": contact_ext, "Role": role},
        "CaseContactRole",
        None,
        natural_key=("Cases.Clio_Id__c", "Contact.Clio_Id__c", "Role"),
    )


RESOLVED = {
    "Cases.Clio_Id__c": {"matter-1": "500000000000001AAA"},
    "Contact.Clio_Id__c": {"contact-1": "003000000000001AAA", "contact-2": "003000000000002AAA"},
}


def test_plan_natural_key_inserts_skips_existing_duplicates_and_unresolved():
    rows = [
        ccr("r1", "matter-1", "contact-1"),
        ccr("r2", "matter-1", "contact-2"),
        ccr("r3", "matter-1", "contact-2"),  # same key again in the batch
        ccr("r4", "matter-9", "contact-1"),  # unknown case
    ]
    existing = {("500000000000001", "003000000000001", "Other"): "03j000000000001AAA"}  # 15-char ids
    plan = plan_natural_key_inserts(rows, RESOLVED, existing)
    assert plan.inserts == [
        (1, {"CasesId": "500000000000001AAA", "ContactId": "003000000000002AAA", "Role": "Other"})
    ]
    assert plan.existing == [(0, "03j000000000001AAA"), (2, None)]
    (fail,) = plan.failures
    assert fail.source_system_id == "r4" and fail.errors[0].fields == ("CasesId",)
    assert "matter-9" in fail.errors[0].message and not fail.transient


# ------------------------------------------------------------------ driver with a fake client


class FakeClient:
    """Answers like Salesforce, failing some rows with UNABLE_TO_LOCK_ROW the first times."""

    def __init__(self, lock_failures: dict[str, int] | None = None):
        self.lock_failures = dict(lock_failures or {})
        self.store: dict[str, dict] = {}
        self.calls: list[str] = []
        self.queries: list[str] = []

    def _locked(self, ext: str) -> bool:
        if self.lock_failures.get(ext, 0) > 0:
            self.lock_failures[ext] -= 1
            return True
        return False

    def composite_upsert(self, sobject, ext_field, records):
        self.calls.append("composite")
        out = []
        for r in records:
            ext = r[ext_field]
            if self._locked(ext):
                out.append(
                    {"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "x"}]}
                )
                continue
            created = ext not in self.store
            self.store.setdefault(ext, {"Id": f"003{len(self.store):012d}AAA"}).update(r)
            out.append({"id": self.store[ext]["Id"], "success": True, "errors": [], "created": created})
        return out

    def bulk_ingest(self, sobject, operation, data, ext_field, rows=None):
        self.calls.append(f"bulk:{operation}")
        ok = io.StringIO()
        bad = io.StringIO()
        reader = csv.DictReader(io.StringIO(data.decode()))
        cols = reader.fieldnames
        okw = csv.writer(ok, lineterminator="\n")
        badw = csv.writer(bad, lineterminator="\n")
        okw.writerow(["sf__Id", "sf__Created", *cols])
        badw.writerow(["sf__Id", "sf__Error", *cols])
        for row in reversed(list(reader)):  # Salesforce does not keep order
            key = row[ext_field] if ext_field else json.dumps(row)
            if self._locked(key):
                badw.writerow(["", "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access:--", *row.values()])
                continue
            created = key not in self.store
            self.store.setdefault(key, {"Id": f"003{len(self.store):012d}AAA"})
            okw.writerow([self.store[key]["Id"], str(created).lower(), *row.values()])
        return BulkJobResult(
            "750X", "JobComplete", successful=ok.getvalue(), failed=bad.getvalue(), unprocessed=""
        )

    def composite_create(self, records):
        self.calls.append("create")
        out = []
        for r in records:
            rid = f"03j{len(self.store):012d}AAA"
            self.store[rid] = dict(r, Id=rid)
            out.append({"id": rid, "success": True, "errors": []})
        return out

    def query_all_iter(self, soql):
        self.queries.append(soql)
        if "FROM CaseContactRole" in soql:
            yield from (
                {"Id": r["Id"], "CasesId": r["CasesId"], "ContactId": r["ContactId"], "Role": r["Role"]}
                for r in self.store.values()
                if r.get("attributes", {}).get("type") == "CaseContactRole"
            )
        elif "FROM Case " in soql:
            yield {"Id": "500000000000001AAA", "Clio_Id__c": "MATTER-1"}  # case-insensitive match
        elif "FROM Contact " in soql:
            yield from ({"Id": v, "Clio_Id__c": k} for k, v in RESOLVED["Contact.Clio_Id__c"].items())

    def reference_targets(self, sobject, columns):
        rel = {"Cases": "Case", "Contact": "Contact"}
        return {c: c.split(":")[0] if ":" in c else rel[c.split(".")[0]] for c in columns}


def test_choose_mode():
    assert choose_mode("auto", 2001, 2000) == "bulk"
    assert choose_mode("auto", 2000, 2000) == "composite"
    with pytest.raises(ValueError):
        choose_mode("fast", 1, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["composite", "bulk"])
def test_transient_rows_retried_to_success_and_rerun_creates_nothing(mode, caplog):
    client = FakeClient(lock_failures={"contact-2": 2})
    rows = [contact(i, LastName=f"L{i}") for i in range(1, 4)]
    waits = []
    with caplog.at_level("WARNING", logger="clio2sf.load"):
        res = load_rows(client, rows, mode=mode, max_row_retries=3, sleep=waits.append)
    assert [r.getMessage() for r in caplog.records] == [  # the retries leave a trace, without record values
        "1 row(s) failed transiently (UNABLE_TO_LOCK_ROW x1); resending them (attempt 2 of 4)",
        "1 row(s) failed transiently (UNABLE_TO_LOCK_ROW x1); resending them (attempt 3 of 4)"]
    assert [o.success for o in res.outcomes] == [True, True, True]
    assert res.outcomes[1].attempts == 3 and res.created == 3
    assert waits == [2.0, 4.0]
    again = load_rows(client, rows, mode=mode, sleep=waits.append)
    assert again.created == 0 and again.updated == 3


def test_transient_failure_becomes_failed_after_max_retries():
    client = FakeClient(lock_failures={"contact-1": 10})
    res = load_rows(
        client, [contact(1, LastName="A")], mode="composite", max_row_retries=2, sleep=lambda s: None
    )
    (o,) = res.outcomes
    assert not o.success and o.attempts == 3 and o.errors[0].status_code == "UNABLE_TO_LOCK_ROW"


def test_natural_key_load_is_idempotent():
    client = FakeClient()
    rows = [ccr("r1", "matter-1", "contact-1"), ccr("r2", "matter-1", "contact-2")]
    first = load_rows(client, rows, sleep=lambda s: None)
    assert first.created == 2 and client.calls == ["create"]
    assert any("FROM Case WHERE Clio_Id__c IN ('matter-1')" in q for q in client.queries)
    second = load_rows(client, rows, sleep=lambda s: None)
    assert second.created == 0 and second.skipped == 2 and client.calls == ["create"]
    assert {o.sf_id for o in second.outcomes} == {o.sf_id for o in first.outcomes}


def test_batch_mixing_objects_is_refused():
    with pytest.raises(ValueError, match="contact-2: batch mixes"):
        load_rows(FakeClient(), [contact(1), env("contact-2", {"Clio_Id__c": "x"}, "Account")])


# ------------------------------------------------------------------ ContentVersion


class FakeFiles(FakeClient):
    def __init__(self, tamper: bool = False):
        super().__init__()
        self.tamper = tamper
        self.uploads: list[tuple[str, bool]] = []
        self.versions: dict[str, dict] = {}

    def content_version_create(self, fields, open_blob, size, filename, multipart):
        with open_blob() as fh:
            data = fh.read()
        assert len(data) == size
        self.uploads.append((fields["Clio_Id__c"], multipart))
        vid = f"068{len(self.versions):012d}AAA"
        md5 = hashlib.md5(data + (b"x" if self.tamper else b"")).hexdigest()
        self.versions[vid] = {"Id": vid, "ContentDocumentId": "069" + vid[3:], "Checksum": md5, **fields}
        return {"id": vid, "success": True, "errors": []}

    def query_all_iter(self, soql):
        self.queries.append(soql)
        if "FROM ContentVersion WHERE Clio_Id__c" in soql:
            yield from self.versions.values()
        elif "FROM ContentVersion WHERE Id" in soql:
            yield from self.versions.values()
        else:
            yield from super().query_all_iter(soql)


def doc(tmp_path: Path, n: int, data: bytes, sha: str | None = None) -> Envelope:
    rel = f"blobs/documents/{n}/1"
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_bytes(data)
    return env(
        f"document-{n}@v1",
        {
            "Clio_Id__c": f"document-{n}@v1",
            "Title": f"Doc {n}",
            "PathOnClient": f"d{n}.pdf",
            "Case:FirstPublishLocation.Clio_Id__c": "matter-1",
        },
        "ContentVersion",
        blob={"path": rel, "sha256": sha or hashlib.sha256(data).hexdigest(), "size": len(data)},
    )


def test_content_versions_upload_modes_checksums_and_skip(tmp_path: Path):
    client = FakeFiles()
    rows = [doc(tmp_path, 1, b"small"), doc(tmp_path, 2, b"L" * 64), doc(tmp_path, 3, b"abc", sha="0" * 64)]
    res = load_content_versions(client, rows, tmp_path, multipart_threshold=32, sleep=lambda s: None)
    ok1, ok2, bad = res.outcomes
    assert client.uploads == [("document-1@v1", False), ("document-2@v1", True)]
    assert (
        ok1.success
        and ok1.created
        and ok1.file_ids[0].startswith("068")
        and ok1.file_ids[1].startswith("069")
    )
    assert ok2.success and not bad.success and bad.errors[0].status_code == "BLOB_CHECKSUM_MISMATCH"
    stored = client.versions[ok1.sf_id]
    assert stored["FirstPublishLocationId"] == "500000000000001AAA" and "VersionData" not in stored
    again = load_content_versions(client, rows[:2], tmp_path, sleep=lambda s: None)
    assert [o.ledger_status for o in again.outcomes] == ["skipped", "skipped"] and len(client.uploads) == 2


def test_content_version_salesforce_checksum_mismatch_is_reported(tmp_path: Path):
    res = load_content_versions(
        FakeFiles(tamper=True), [doc(tmp_path, 1, b"x")], tmp_path, sleep=lambda s: None
    )
    (o,) = res.outcomes
    assert not o.success and o.errors[0].status_code == "CHECKSUM_MISMATCH" and o.sf_id


def test_use_multipart_threshold_and_base64_cap():
    assert not use_multipart(1000, threshold=10_000)
    assert use_multipart(10_000, threshold=10_000)
    assert use_multipart(29_000_000, threshold=10**9)  # base64 would pass 37.5 MB


def test_bulk_job_refused_for_its_input_is_not_retried():
    rows = [contact(1, Industryy="x")]
    (chunk,) = bulk_csv_chunks(rows)
    out = parse_bulk_results(
        chunk,
        rows,
        successful=None,
        failed=None,
        unprocessed=None,
        job_error="InvalidBatch : Field name not found : Industryy",
    )
    assert out[0].errors[0].status_code == "BULK_JOB_FAILED" and not out[0].transient
    assert "Industryy" in out[0].errors[0].message
    timed_out = parse_bulk_results(
        chunk, rows, successful=None, failed=None, unprocessed=None, job_error="batch timed out"
    )
    assert timed_out[0].transient


def test_document_versions_load_in_order_as_one_document(tmp_path: Path):
    """Older versions first; each later version names the first one and becomes a new version of its
    ContentDocument (uploaded after it, even when listed before it in the batch)."""
    client = FakeFiles()
    v1 = doc(tmp_path, 7, b"version 1")

    def later(n: int) -> Envelope:
        e = doc(tmp_path, 70 + n, f"version {n}".encode())
        row = {k: v for k, v in e.row.items() if k != "Case:FirstPublishLocation.Clio_Id__c"}
        row |= {"Clio_Id__c": f"document-7@v{n}", "ContentVersion.Clio_Id__c": "document-7@v1"}
        return env(f"document-7@v{n}", row, "ContentVersion", blob=e.blob)

    v2, v3 = later(2), later(3)
    res = load_content_versions(client, [v3, v1, v2], tmp_path, sleep=lambda s: None)
    assert [o.success for o in res.outcomes] == [True, True, True]
    assert [o.source_system_id for o in res.outcomes] == ["document-7@v3", "document-7@v1", "document-7@v2"]
    assert [u[0] for u in client.uploads][0] == "document-7@v1"
    first_doc = res.outcomes[1].file_ids[1]
    later = [v for v in client.versions.values() if v["Clio_Id__c"] != "document-7@v1"]
    assert len(later) == 2 and all(v["ContentDocumentId"] == first_doc for v in later)


def test_query_job_in_lists_fill_the_room_and_bulk_rows_get_rest_types():
    from clio2sf.load import soql_in, soql_in_text_chunks, typed_rows

    values = [f"calendar_entry-{i}@20260301T090000Z" for i in range(5_000)]
    parts = list(soql_in_text_chunks(values, 99_000))
    assert [v for p in parts for v in p] == values and len(parts) == 3  # ~40 characters a value
    sizes = [len(soql_in("Clio_Id__c", p)) - len("Clio_Id__c IN ()") for p in parts]
    assert all(98_900 < n <= 99_000 for n in sizes[:-1]) and sizes[-1] <= 99_000, sizes

    class Described:
        def describe(self, sobject):
            return {"fields": [{"name": "IsAllDayEvent", "type": "boolean"}, {"name": "DurationInMinutes", "type": "int"},
                               {"name": "Amount__c", "type": "currency"}, {"name": "StartDateTime", "type": "datetime"},
                               {"name": "Subject", "type": "string"}]}

    rows = [{"IsAllDayEvent": "false", "DurationInMinutes": "30", "Amount__c": "12.5",
             "StartDateTime": "2026-03-01T09:00:00.000Z", "Subject": "true", "Other": None}]
    assert list(typed_rows(Described(), "Event", rows)) == [
        {"IsAllDayEvent": False, "DurationInMinutes": 30, "Amount__c": 12.5,
         "StartDateTime": "2026-03-01T09:00:00.000+0000", "Subject": "true", "Other": None}]


def test_a_refused_query_job_falls_back_to_rest_and_a_scan_reads_only_what_it_may(monkeypatch):
    from clio2sf import load

    class Refused(Exception):
        status, error_code = 400, "INVALIDJOB"

    class Client:
        def __init__(self, refuse: bool, found: int) -> None:
            self.refuse, self.found, self.soql, self.jobs = refuse, found, [], []

        def bulk_query(self, soql, max_rows=None):
            self.jobs.append(soql)
            if self.refuse:
                raise Refused("Entity is not supported by the Bulk API")
            if max_rows is not None and self.found > max_rows:
                raise load.QueryTooLarge(self.found, max_rows)
            yield from ({"Clio_Id__c": f"C-{i}", "Id": f"003{i}"} for i in range(0, self.found, 2))

        def query_all_iter(self, soql):
            self.soql.append(soql)
            return iter([{"Clio_Id__c": "c-1", "Id": "0031"}])

    monkeypatch.setattr(load, "BULK_LOOKUP_MIN", 3)
    monkeypatch.setattr(load, "SOQL_MAX_CHARS", 250)
    values = [f"c-{i}" for i in range(20)]
    refused = Client(refuse=True, found=0)
    assert list(load.lookup_records(refused, "Contact", ["Id", "Clio_Id__c"], "Clio_Id__c", values)) == \
        [{"Clio_Id__c": "c-1", "Id": "0031"}]
    assert len(refused.jobs) == 1 and len(refused.soql) == 1  # one refused job, then the GETs
    scan = Client(refuse=False, found=40)  # every record with a key, two per value asked: read
    got = list(load.lookup_records(scan, "Contact", ["Id", "Clio_Id__c"], "Clio_Id__c", values))
    assert {r["Clio_Id__c"] for r in got} == {f"C-{i}" for i in range(0, 20, 2)} and len(scan.jobs) == 1
    big = Client(refuse=False, found=10**6)  # too many: the IN-list jobs instead
    list(load.lookup_records(big, "Contact", ["Id", "Clio_Id__c"], "Clio_Id__c", values))
    assert "!= null" in big.jobs[0] and len(big.jobs) > 2 and all(" IN (" in j for j in big.jobs[1:])


def test_a_ledger_past_the_scan_limit_skips_the_scan_job_and_finds_the_same_records(monkeypatch):
    """The scan of every record with a key is refused past SCAN_MAX_RATIO a value, after the org read them
    all: with the ledger already saying more writes than that, the IN-list jobs run at once."""
    from clio2sf import load

    class Client:
        def __init__(self, found: int) -> None:
            self.found, self.jobs = found, []

        def bulk_query(self, soql, max_rows=None):
            self.jobs.append(soql)
            if max_rows is not None and self.found > max_rows:
                raise load.QueryTooLarge(self.found, max_rows)
            yield from ({"Clio_Id__c": f"c-{i}", "Id": f"003{i}"} for i in range(0, 20, 2) if " IN (" not in soql
                        or f"'c-{i}'" in soql)

        def query_all_iter(self, soql):
            raise AssertionError("no REST GETs here")

    monkeypatch.setattr(load, "BULK_LOOKUP_MIN", 3)
    monkeypatch.setattr(load, "SOQL_MAX_CHARS", 250)
    values = [f"c-{i}" for i in range(20)]
    limit = load.SCAN_MAX_RATIO * len(values)
    answers = {}
    for written in (0, limit, limit + 1):
        c = Client(found=10**6)
        answers[written] = sorted(r["Id"] for r in load.lookup_records(
            c, "Contact", ["Id", "Clio_Id__c"], "Clio_Id__c", values, written=written))
        scanned = [j for j in c.jobs if "!= null" in j]
        assert len(scanned) == (0 if written > limit else 1), (written, c.jobs)
        assert all(" IN (" in j for j in c.jobs if j not in scanned) and len(c.jobs) - len(scanned) > 1
    assert answers[0] == answers[limit] == answers[limit + 1] == sorted(f"003{i}" for i in range(0, 20, 2))


@pytest.mark.parametrize("keys, length, path", [
    (100, 36, "rest"),  # one GET
    (700, 16, "rest"),  # short keys: two GETs of 500 at most
    (900, 36, "bulk"),  # long keys fill a GET's URI at ~260: four GETs, more than a query job's 3 calls
    (2_500, 16, "bulk"),  # over BULK_LOOKUP_MIN
])
def test_a_look_up_goes_through_a_query_job_when_the_gets_would_cost_more_calls(keys, length, path):
    from clio2sf import load

    class Client:
        def __init__(self) -> None:
            self.soql, self.jobs = [], []

        def bulk_query(self, soql, max_rows=None):
            self.jobs.append(soql)
            return iter([{"Id": "0031", "Clio_Id__c": values[0]}])

        def query_all_iter(self, soql):
            self.soql.append(soql)
            return iter([{"Id": "0031", "Clio_Id__c": values[0]}])

    values = [f"k-{i:0{length - 2}d}" for i in range(keys)]
    c = Client()
    got = list(load.lookup_records(c, "Event", ["Id", "Clio_Id__c"], "Clio_Id__c", values))
    assert got and got[0]["Id"] == "0031"
    gets = len(list(load.soql_in_chunks(values)))
    if path == "rest":
        assert c.jobs == [] and len(c.soql) == gets <= load.QUERY_JOB_CALLS
    else:
        assert c.soql == [] and len(c.jobs) >= 1 and (keys > load.BULK_LOOKUP_MIN or gets > load.QUERY_JOB_CALLS)
