"""ClioSalesforceHook against requests-mock: retries, re-login, typed errors, Bulk 2.0, collections, files."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from clio2sf_airflow.hooks.salesforce import (
    ClioSalesforceHook,
    SalesforceApiError,
    SalesforceApiLimitExceeded,
    SalesforceStorageLimitExceeded,
    SalesforceTransientError,
)

pytestmark = pytest.mark.unit

HOST = "https://sf.test"
BASE = f"{HOST}/services/data/v59.0/"
TOKEN = f"{HOST}/services/oauth2/token"


@pytest.fixture
def hook(monkeypatch, requests_mock):
    conn = {
        "conn_type": "salesforce",
        "extra": {"consumer_key": "ck", "consumer_secret": "cs", "domain": "sf.test/services/oauth2/token?"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SF_UNIT", json.dumps(conn))
    tokens = iter(["tok-1", "tok-2", "tok-3"])
    requests_mock.post(
        TOKEN,
        json=lambda req, ctx: {
            "access_token": next(tokens),
            "instance_url": HOST,
            "token_type": "Bearer",
            "id": f"{HOST}/id/00D/005",
        },
    )
    return ClioSalesforceHook("sf_unit", sleep=lambda s: None, poll_interval=0.01)


def test_login_bearer_header_and_api_usage(hook, requests_mock):
    requests_mock.get(
        BASE + "limits/",
        json={"DailyApiRequests": {"Max": 15000, "Remaining": 14990}},
        headers={"Sforce-Limit-Info": "api-usage=10/15000"},
    )
    ok, msg = hook.test_connection()
    assert ok and "14990" in msg
    assert requests_mock.last_request.headers["Authorization"] == "Bearer tok-1"
    assert hook.api_usage == {"used": 10, "total": 15000} and hook.api_calls == 1


def test_transient_errors_are_retried_then_succeed(hook, requests_mock):
    requests_mock.get(
        BASE + "sobjects/",
        [
            {"status_code": 503, "text": "unavailable"},
            {"status_code": 400, "json": [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]},
            {"status_code": 200, "json": {"sobjects": [{"name": "Contact"}]}},
        ],
    )
    assert hook.describe_global()["sobjects"][0]["name"] == "Contact"
    assert requests_mock.call_count == 4  # login + 3


def test_transient_errors_give_up_after_max_attempts(hook, requests_mock):
    hook.max_attempts = 2
    requests_mock.get(BASE + "sobjects/", status_code=503, text="down")
    with pytest.raises(SalesforceTransientError, match="HTTP 503"):
        hook.describe_global()
    assert requests_mock.call_count == 3


def test_expired_session_logs_in_again_once(hook, requests_mock):
    requests_mock.get(
        BASE + "limits/",
        [
            {
                "status_code": 401,
                "json": [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}],
            },
            {"status_code": 200, "json": {}},
        ],
    )
    hook.limits()
    assert requests_mock.last_request.headers["Authorization"] == "Bearer tok-2"


def test_request_limit_is_typed_with_usage_and_not_retried(hook, requests_mock):
    requests_mock.get(
        BASE + "limits/",
        status_code=403,
        headers={"Sforce-Limit-Info": "api-usage=15001/15000"},
        json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
    )
    with pytest.raises(SalesforceApiLimitExceeded) as info:
        hook.limits()
    assert (info.value.used, info.value.total) == (15001, 15000) and "15001/15000" in str(info.value)
    assert requests_mock.call_count == 2


def test_storage_limit_is_typed(hook, requests_mock):
    requests_mock.post(
        BASE + "composite/sobjects",
        status_code=400,
        json=[{"errorCode": "STORAGE_LIMIT_EXCEEDED", "message": "storage limit exceeded"}],
    )
    with pytest.raises(SalesforceStorageLimitExceeded):
        hook.composite_create([{"attributes": {"type": "Contact"}, "LastName": "Secret Client"}])


def test_errors_never_carry_the_request_body(hook, requests_mock):
    requests_mock.post(
        BASE + "composite/sobjects",
        status_code=400,
        json=[{"errorCode": "JSON_PARSER_ERROR", "message": "bad"}],
    )
    with pytest.raises(SalesforceApiError) as info:
        hook.composite_create([{"attributes": {"type": "Contact"}, "LastName": "Secret Client"}])
    assert "Secret" not in str(info.value) and "tok-" not in str(info.value)


def test_composite_upsert_chunks_of_200(hook, requests_mock):
    url = BASE + "composite/sobjects/Contact/Clio_Id__c"
    requests_mock.patch(
        url,
        json=lambda req, ctx: [
            {"id": "003", "success": True, "errors": [], "created": True} for _ in req.json()["records"]
        ],
    )
    records = [{"attributes": {"type": "Contact"}, "Clio_Id__c": f"contact-{i}"} for i in range(450)]
    out = hook.composite_upsert("Contact", "Clio_Id__c", records)
    sizes = [len(r.json()["records"]) for r in requests_mock.request_history if r.method == "PATCH"]
    assert sizes == [200, 200, 50] and len(out) == 450
    assert requests_mock.last_request.json()["allOrNone"] is False


def test_composite_delete_query_string(hook, requests_mock):
    requests_mock.delete(BASE + "composite/sobjects", json=[{"id": "003A", "success": True, "errors": []}])
    hook.composite_delete(["003A"])
    assert requests_mock.last_request.qs == {"ids": ["003a"], "allornone": ["false"]}


def test_query_all_iter_follows_next_records_url(hook, requests_mock):
    requests_mock.get(
        BASE + "query/",
        json={"done": False, "nextRecordsUrl": "/services/data/v59.0/query/01g-2", "records": [{"Id": "1"}]},
    )
    requests_mock.get(BASE + "query/01g-2", json={"done": True, "records": [{"Id": "2"}]})
    assert [r["Id"] for r in hook.query_all_iter("SELECT Id FROM Contact")] == ["1", "2"]


def test_bulk_ingest_full_cycle(hook, requests_mock):
    jobs = BASE + "jobs/ingest/"
    requests_mock.post(
        jobs,
        json={"id": "750X", "state": "Open", "contentUrl": "services/data/v59.0/jobs/ingest/750X/batches"},
    )
    requests_mock.put(jobs + "750X/batches", status_code=201)
    requests_mock.patch(jobs + "750X/", json={"id": "750X", "state": "UploadComplete"})
    requests_mock.get(
        jobs + "750X/",
        [
            {"json": {"state": "InProgress"}},
            {"json": {"state": "JobComplete", "numberRecordsProcessed": 2, "numberRecordsFailed": 1}},
        ],
    )
    requests_mock.get(
        jobs + "750X/successfulResults/", text='"sf__Id","sf__Created",Clio_Id__c\n"003A","true","c-1"\n'
    )
    requests_mock.get(
        jobs + "750X/failedResults/", text='"sf__Id","sf__Error",Clio_Id__c\n"","X:y:--","c-2"\n'
    )
    requests_mock.get(jobs + "750X/unprocessedrecords/", text="Clio_Id__c\n")
    res = hook.bulk_ingest("Contact", "upsert", b"Clio_Id__c\nc-1\nc-2\n", "Clio_Id__c")
    create = requests_mock.request_history[1].json()
    assert create == {
        "object": "Contact",
        "operation": "upsert",
        "contentType": "CSV",
        "lineEnding": "LF",
        "columnDelimiter": "COMMA",
        "externalIdFieldName": "Clio_Id__c",
    }
    put = next(r for r in requests_mock.request_history if r.method == "PUT")
    assert put.headers["Content-Type"] == "text/csv" and put.body == b"Clio_Id__c\nc-1\nc-2\n"
    assert (res.state, res.records_processed, res.records_failed) == ("JobComplete", 2, 1)
    assert "003A" in res.successful.read() and "X:y" in res.failed.read()


@pytest.mark.parametrize("info, rows, fetched", [
    # every row processed, none failed: the successful results alone (the other two files are empty)
    ({"state": "JobComplete", "numberRecordsProcessed": 3, "numberRecordsFailed": 0}, 3, ["successfulResults"]),
    # failures: their file too (numberRecordsProcessed includes the failed records)
    ({"state": "JobComplete", "numberRecordsProcessed": 3, "numberRecordsFailed": 1}, 3,
     ["successfulResults", "failedResults"]),
    # all failed: no successful results to read
    ({"state": "JobComplete", "numberRecordsProcessed": 3, "numberRecordsFailed": 3}, 3, ["failedResults"]),
    # complete but fewer processed than uploaded: the unprocessed records are read, not assumed away
    ({"state": "JobComplete", "numberRecordsProcessed": 2, "numberRecordsFailed": 0}, 3,
     ["successfulResults", "unprocessedrecords"]),
    # the caller did not say how many rows: the counters alone decide
    ({"state": "JobComplete", "numberRecordsProcessed": 2, "numberRecordsFailed": 0}, None, ["successfulResults"]),
    # a job that did not complete: every file
    ({"state": "Failed", "numberRecordsProcessed": 1, "numberRecordsFailed": 0, "errorMessage": "x"}, 3,
     ["successfulResults", "failedResults", "unprocessedrecords"]),
])
def test_bulk_ingest_reads_only_the_result_files_the_job_info_says_hold_rows(hook, requests_mock, info, rows, fetched):
    jobs = BASE + "jobs/ingest/"
    requests_mock.post(jobs, json={"id": "750R", "state": "Open"})
    requests_mock.put(jobs + "750R/batches", status_code=201)
    requests_mock.patch(jobs + "750R/", json={"id": "750R", "state": "UploadComplete"})
    requests_mock.get(jobs + "750R/", json=info)
    for kind in ("successfulResults", "failedResults", "unprocessedrecords"):
        requests_mock.get(jobs + f"750R/{kind}/", text=f"{kind}\n")
    res = hook.bulk_ingest("Contact", "insert", b"LastName\nA\nB\nC\n", rows=rows)
    got = [r.path.rstrip("/").rsplit("/", 1)[1] for r in requests_mock.request_history
           if r.method == "GET" and r.path.rstrip("/").endswith(("results", "records"))]
    assert [g.lower() for g in got] == [f.lower() for f in fetched]
    for kind, value in (("successfulResults", res.successful), ("failedResults", res.failed),
                        ("unprocessedrecords", res.unprocessed)):
        assert (value.read() if kind in fetched else value) == (f"{kind}\n" if kind in fetched else "")


@pytest.mark.parametrize("infos, naps", [
    # progress counted: the next wait is what the rest takes at the rate seen (18 s: 9,000 rows at 500 a
    # second; then 6,000 rows at 3,000 in 18 s: 36 s, capped at 30): 3 status calls, not one every 2-5 s
    ([("InProgress", 1_000), ("InProgress", 4_000), ("JobComplete", 10_000)], [2.0, 18.0, 30.0]),
    # nothing counted yet (queued): waits grow by half from the first
    ([("UploadComplete", 0), ("InProgress", 0), ("InProgress", 0), ("JobComplete", 10_000)], [2.0, 2.0, 3.0, 4.5]),
    # a rate that says the rest is due at once: still the least wait
    ([("InProgress", 9_990), ("JobComplete", 10_000)], [2.0, 2.0]),
])
def test_bulk_ingest_paces_its_status_calls_by_the_job_progress(monkeypatch, requests_mock, hook, infos, naps):
    slept: list[float] = []
    paced = ClioSalesforceHook("sf_unit", sleep=slept.append, poll_interval=2.0, max_poll_interval=30.0)
    jobs = BASE + "jobs/ingest/"
    requests_mock.post(jobs, json={"id": "750P", "state": "Open"})
    requests_mock.put(jobs + "750P/batches", status_code=201)
    requests_mock.patch(jobs + "750P/", json={"id": "750P", "state": "UploadComplete"})
    requests_mock.get(jobs + "750P/", [{"json": {"state": st, "numberRecordsProcessed": n, "numberRecordsFailed": 0}}
                                       for st, n in infos])
    requests_mock.get(jobs + "750P/successfulResults/", text="sf__Id,sf__Created,LastName\n")
    res = paced.bulk_ingest("Contact", "insert", b"LastName\n" + b"A\n" * 10_000, rows=10_000)
    assert res.state == "JobComplete"
    assert slept == naps
    assert sum(1 for r in requests_mock.request_history if r.method == "GET" and r.path.rstrip("/").endswith("750p")) \
        == len(infos)


def test_a_job_first_waits_as_long_as_its_rows_take_at_the_pace_jobs_reported(hook, requests_mock, tmp_path: Path):
    """The run's pace file says a Contact row takes 0.5 ms of processing (``totalProcessingTime`` of an
    earlier job): a 10,000-row job is first asked after 5 s, and one that is done by then costs one status
    call (the code before asked after 2 s, 4 s and 7 s: three).  Its own pace is written back; an object
    with no pace yet starts from the fastest known; none known: ``poll_interval``."""
    pace = tmp_path / "loads" / "run-1" / "salesforce_bulk_pace.json"
    pace.parent.mkdir(parents=True)
    pace.write_text(json.dumps({"Contact": 0.0005, "Case": 0.002}))
    slept: list[float] = []
    paced = ClioSalesforceHook("sf_unit", sleep=slept.append, poll_interval=2.0, max_poll_interval=30.0,
                               bulk_pace=pace)
    jobs = BASE + "jobs/ingest/"
    requests_mock.post(jobs, json={"id": "750Q", "state": "Open"})
    requests_mock.put(jobs + "750Q/batches", status_code=201)
    requests_mock.patch(jobs + "750Q/", json={"id": "750Q", "state": "UploadComplete"})
    requests_mock.get(jobs + "750Q/", [
        {"json": {"state": "JobComplete", "numberRecordsProcessed": 10_000, "numberRecordsFailed": 0,
                  "totalProcessingTime": 4_000}},
        {"json": {"state": "InProgress", "numberRecordsProcessed": 0, "numberRecordsFailed": 0}},
        {"json": {"state": "JobComplete", "numberRecordsProcessed": 20_000, "numberRecordsFailed": 0,
                  "totalProcessingTime": 12_000}}])
    requests_mock.get(jobs + "750Q/successfulResults/", text="sf__Id,sf__Created,LastName\n")
    res = paced.bulk_ingest("Contact", "insert", b"LastName\n" + b"A\n" * 10_000, rows=10_000)
    assert res.state == "JobComplete" and slept == [5.0]
    statuses = [r for r in requests_mock.request_history if r.method == "GET" and r.path.rstrip("/").endswith("750q")]
    assert len(statuses) == 1
    assert json.loads(pace.read_text()) == {"Contact": 0.0004, "Case": 0.002}  # 4 s for 10,000 rows
    # an object without a pace of its own: the fastest known (Contact's 0.4 ms a row: 2,000 rows, 0.8 s, at
    # least poll_interval); then the waits go on growing by half
    slept.clear()
    res = paced.bulk_ingest("Event", "insert", b"Subject\n" + b"A\n" * 20_000, rows=20_000)
    assert slept == [8.0, 4.0] and res.state == "JobComplete"
    assert json.loads(pace.read_text())["Event"] == 0.0006
    # a job still queued (UploadComplete: not started) is next asked after its processing time, not 4 s
    slept.clear()
    requests_mock.get(jobs + "750Q/", [
        {"json": {"state": "UploadComplete", "numberRecordsProcessed": 0, "numberRecordsFailed": 0}},
        {"json": {"state": "JobComplete", "numberRecordsProcessed": 20_000, "numberRecordsFailed": 0,
                  "totalProcessingTime": 12_000}}])
    res = paced.bulk_ingest("Event", "insert", b"Subject\n" + b"A\n" * 20_000, rows=20_000)
    assert slept == pytest.approx([12.0, 12.0]) and res.state == "JobComplete"
    assert ClioSalesforceHook("sf_unit", poll_interval=2.0).first_wait("Event", 20_000) == 2.0  # no pace file
    fresh = ClioSalesforceHook("sf_unit", poll_interval=2.0, max_poll_interval=30.0, bulk_pace=pace)
    assert fresh.first_wait("Event", 100_000) == 30.0 and fresh.first_wait("Case", 100) == 2.0


def test_bulk_ingest_aborts_job_when_upload_fails(hook, requests_mock):
    jobs = BASE + "jobs/ingest/"
    requests_mock.post(jobs, json={"id": "750Y", "state": "Open"})
    requests_mock.put(
        jobs + "750Y/batches", status_code=400, json=[{"errorCode": "INVALIDJOB", "message": "no"}]
    )
    requests_mock.patch(jobs + "750Y/", json={"state": "Aborted"})
    with pytest.raises(SalesforceApiError, match="INVALIDJOB"):
        hook.bulk_ingest("Contact", "insert", b"LastName\nA\n")
    assert requests_mock.last_request.json() == {"state": "Aborted"}
    with pytest.raises(ValueError, match="operation"):
        hook.bulk_ingest("Contact", "merge", b"x")


def test_describe_cache_per_hook_and_in_staging(hook, requests_mock, tmp_path: Path):
    requests_mock.get(BASE + "sobjects/Case/describe/", json={"name": "Case", "fields": []})
    hook.describe_cache = tmp_path / "salesforce_describe"
    hook.describe("Case")
    hook.describe("Case")
    assert requests_mock.call_count == 2  # login + 1
    assert json.loads((tmp_path / "salesforce_describe/Case.json").read_text())["name"] == "Case"
    fresh = ClioSalesforceHook("sf_unit", describe_cache=tmp_path / "salesforce_describe")
    assert fresh.describe("Case")["name"] == "Case" and requests_mock.call_count == 2


def test_reference_targets_from_describe(hook, requests_mock):
    requests_mock.get(
        BASE + "sobjects/CaseContactRole/describe/",
        json={
            "fields": [
                {"name": "CasesId", "relationshipName": "Cases", "referenceTo": ["Case"]},
                {"name": "ContactId", "relationshipName": "Contact", "referenceTo": ["Contact"]},
            ]
        },
    )
    assert hook.reference_targets("CaseContactRole", ["Cases.Clio_Id__c", "User:Owner.Email"]) == {
        "Cases.Clio_Id__c": "Case",
        "User:Owner.Email": "User",
    }
    with pytest.raises(ValueError, match="no relationship named Nope"):
        hook.reference_targets("CaseContactRole", ["Nope.Clio_Id__c"])


def test_ensure_external_id_field_uses_tooling(hook, requests_mock, monkeypatch):
    from clio2sf_airflow.hooks import salesforce as module

    granted = []
    monkeypatch.setattr(module, "apply_permission_set",
                        lambda client, access, planned: granted.append((access.field_names(), list(planned))))
    requests_mock.get(BASE + "sobjects/Contact/describe/", json={"fields": [{"name": "Id"}]})
    requests_mock.post(
        BASE + "tooling/sobjects/CustomField/", status_code=201, json={"id": "00N", "success": True}
    )
    assert hook.ensure_external_id_field("Contact") is True
    body = requests_mock.last_request.json()
    assert body["FullName"] == "Contact.Clio_Id__c"
    assert body["Metadata"] | {"externalId": True, "unique": True, "length": 80} == body["Metadata"]
    # a new field is hidden until granted: the connected user gets read/edit on it
    assert granted == [(["Contact.Clio_Id__c"], [("Contact", "Clio_Id__c")])]


def test_content_version_base64_and_multipart(hook, requests_mock, tmp_path: Path):
    requests_mock.post(
        BASE + "sobjects/ContentVersion/", status_code=201, json={"id": "068A", "success": True}
    )
    blob = tmp_path / "b.bin"
    blob.write_bytes(b"\x00\x01binary\xff" * 10)
    fields = {"Title": "Letter", "PathOnClient": "letter.pdf"}
    res = hook.content_version_create(fields, lambda: blob.open("rb"), 90, "letter.pdf", multipart=False)
    assert res["id"] == "068A"
    assert base64.b64decode(requests_mock.last_request.json()["VersionData"]) == blob.read_bytes()
    hook.content_version_create(fields, lambda: blob.open("rb"), 90, "letter.pdf", multipart=True)
    req = requests_mock.last_request
    ctype = req.headers["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    body = req.body.read() if hasattr(req.body, "read") else req.body
    assert int(req.headers["Content-Length"]) == len(body)
    import email.parser

    msg = email.parser.BytesParser().parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    parts = {p.get_param("name", header="content-disposition"): p for p in msg.get_payload()}
    assert json.loads(parts["entity_content"].get_payload(decode=True)) == fields
    assert parts["VersionData"].get_payload(decode=True) == blob.read_bytes()


def test_content_version_row_error_returned_as_data(hook, requests_mock):
    requests_mock.post(
        BASE + "sobjects/ContentVersion/",
        status_code=400,
        json=[{"errorCode": "REQUIRED_FIELD_MISSING", "message": "missing", "fields": ["Title"]}],
    )
    res = hook.content_version_create({}, lambda: io.BytesIO(b"x"), 1, "x", multipart=False)
    assert res == {
        "success": False,
        "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "missing", "fields": ["Title"]}],
    }


def test_a_create_whose_answer_was_lost_is_not_resent(hook, requests_mock):
    """A 504 (or a dropped connection) after a POST that creates: Salesforce may have saved it, so the hook
    does not send it again; each record comes back RESPONSE_LOST for the loader to look for."""
    requests_mock.post(BASE + "composite/sobjects", status_code=504, text="<html>Gateway Time-out</html>")
    res = hook.composite_create([{"attributes": {"type": "ContentNote"}, "Title": "a"}] * 3)
    assert [r["errors"][0]["statusCode"] for r in res] == ["RESPONSE_LOST"] * 3
    assert sum(1 for r in requests_mock.request_history if r.method == "POST" and "composite" in r.url) == 1
    requests_mock.post(BASE + "sobjects/ContentVersion/", exc=__import__("requests").ConnectionError("reset"))
    out = hook.content_version_create({"Title": "x"}, lambda: io.BytesIO(b"abc"), 3, "x.txt", False)
    assert out["errors"][0]["statusCode"] == "RESPONSE_LOST"
    assert sum(1 for r in requests_mock.request_history if "ContentVersion" in r.url) == 1


def test_composite_collections_carry_five_collections_a_call_and_lose_no_answer_silently(hook, requests_mock):
    """1,100 records: one POST /composite of five 200-record collections, then the last 100 as a plain
    collection; results in input order.  A lost answer to a /composite of creates is not resent (each of
    its records RESPONSE_LOST); a /composite of updates is resent (an update by id is harmless twice)."""
    def answer(req, ctx):
        subs = req.json()["compositeRequest"]
        assert req.json()["allOrNone"] is False and len(subs) == 5
        return {"compositeResponse": [
            {"referenceId": s["referenceId"], "httpStatusCode": 200, "httpHeaders": {},
             "body": [{"id": r["Title"], "success": True, "errors": []} for r in s["body"]["records"]]}
            for s in subs]}

    requests_mock.post(BASE + "composite", json=answer)
    requests_mock.post(BASE + "composite/sobjects",
                       json=lambda req, ctx: [{"id": r["Title"], "success": True, "errors": []}
                                              for r in req.json()["records"]])
    records = [{"attributes": {"type": "ContentNote"}, "Title": f"t{k}"} for k in range(1_100)]
    out = hook.composite_collections("POST", records)
    assert [r["id"] for r in out] == [f"t{k}" for k in range(1_100)]
    sent = [(r.method, r.url.removeprefix(BASE)) for r in requests_mock.request_history if "composite" in r.url]
    assert sent == [("POST", "composite"), ("POST", "composite/sobjects")]
    sub = requests_mock.request_history[-2].json()["compositeRequest"][0]
    assert sub["method"] == "POST" and sub["url"] == "/services/data/v59.0/composite/sobjects"

    requests_mock.post(BASE + "composite", status_code=504, text="<html>Gateway Time-out</html>")
    lost = hook.composite_collections("POST", records[:400])
    assert [r["errors"][0]["statusCode"] for r in lost] == ["RESPONSE_LOST"] * 400
    assert sum(1 for r in requests_mock.request_history if r.url == BASE + "composite") == 2  # not resent
    requests_mock.post(BASE + "composite", [{"status_code": 504, "text": "<html>Gateway Time-out</html>"},
                                            {"json": {"compositeResponse": [
                                                {"referenceId": f"part{k}", "httpStatusCode": 400, "httpHeaders": {},
                                                 "body": [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]}
                                                for k in range(2)]}}])
    updated = hook.composite_collections("PATCH", [{"attributes": {"type": "ContentNote"}, "id": "069x"}] * 400)
    assert [r["errors"][0]["statusCode"] for r in updated] == ["UNABLE_TO_LOCK_ROW"] * 400  # a whole refused part
    assert sum(1 for r in requests_mock.request_history if r.url == BASE + "composite") == 4  # resent once


def test_a_create_refused_with_503_is_resent_and_idempotent_calls_retry_a_504(hook, requests_mock):
    requests_mock.post(BASE + "composite/sobjects", [
        {"status_code": 503, "text": "unavailable"},  # not processed: safe to send again
        {"status_code": 200, "json": [{"id": "069A", "success": True, "errors": []}]},
    ])
    assert hook.composite_create([{"attributes": {"type": "ContentNote"}, "Title": "a"}])[0]["id"] == "069A"
    requests_mock.patch(BASE + "composite/sobjects/Contact/Clio_Id__c", [
        {"status_code": 504, "text": "gateway"},  # an upsert by external id: resending is harmless
        {"status_code": 200, "json": [{"id": "003A", "success": True, "created": False, "errors": []}]},
    ])
    assert hook.composite_upsert("Contact", "Clio_Id__c", [{"Clio_Id__c": "c-1"}])[0]["id"] == "003A"


def test_bulk_job_closed_twice_after_a_lost_answer_goes_on(hook, requests_mock):
    jobs = BASE + "jobs/ingest/"
    requests_mock.post(jobs, json={"id": "750Z", "state": "Open"})
    requests_mock.put(jobs + "750Z/batches", status_code=201)
    requests_mock.patch(jobs + "750Z/", [
        {"status_code": 504, "text": "gateway"},  # closed, answer lost; the resent PATCH is refused
        {"status_code": 400, "json": [{"errorCode": "INVALIDJOBSTATE", "message": "Job is in UploadComplete state"}]},
    ])
    requests_mock.get(jobs + "750Z/", [{"json": {"state": "UploadComplete"}},
                                       {"json": {"state": "JobComplete", "numberRecordsProcessed": 1}}])
    for kind in ("successfulResults", "failedResults", "unprocessedrecords"):
        requests_mock.get(jobs + f"750Z/{kind}/", text="LastName\n")
    res = hook.bulk_ingest("Contact", "insert", b"LastName\nA\n")
    assert res.state == "JobComplete"


def test_bulk_query_pages_by_locator_and_reads_empty_values_as_none(hook, requests_mock):
    jobs = BASE + "jobs/query/"
    requests_mock.post(jobs, json={"id": "750Q", "state": "UploadComplete"})
    requests_mock.get(jobs + "750Q/", [{"json": {"state": "InProgress"}},
                                       {"json": {"state": "JobComplete", "numberRecordsProcessed": 3}}])
    requests_mock.get(jobs + "750Q/results", [
        {"text": '"Id","Clio_Id__c","Account.Name"\n"003A","c-1",""\n"003B","c-2","Acme, LLP"\n',
         "headers": {"Sforce-Locator": "MTAwMDA", "Sforce-NumberOfRecords": "2"}},
        {"text": '"Id","Clio_Id__c","Account.Name"\n"003C","c-3","Line\nbreak"\n',
         "headers": {"Sforce-Locator": "null", "Sforce-NumberOfRecords": "1"}},
    ])
    soql = "SELECT Id, Clio_Id__c, Account.Name FROM Contact WHERE Clio_Id__c IN ('c-1')"
    rows = list(hook.bulk_query(soql, max_records=2))
    assert rows == [{"Id": "003A", "Clio_Id__c": "c-1", "Account.Name": None},
                    {"Id": "003B", "Clio_Id__c": "c-2", "Account.Name": "Acme, LLP"},
                    {"Id": "003C", "Clio_Id__c": "c-3", "Account.Name": "Line\nbreak"}]
    create = next(r for r in requests_mock.request_history if r.method == "POST" and "jobs/query" in r.url)
    assert create.json() == {"operation": "query", "query": soql, "contentType": "CSV",
                             "columnDelimiter": "COMMA", "lineEnding": "LF"}
    pages = [r for r in requests_mock.request_history if r.url.split("?")[0].endswith("/results")]
    assert [p.qs for p in pages] == [{"maxrecords": ["2"]}, {"maxrecords": ["2"], "locator": ["mtawmda"]}]


def test_bulk_query_refuses_to_read_more_than_asked_and_aborts_a_failed_wait(hook, requests_mock):
    from clio2sf.load import QueryTooLarge

    jobs = BASE + "jobs/query/"
    requests_mock.post(jobs, json={"id": "750R", "state": "UploadComplete"})
    requests_mock.get(jobs + "750R/", json={"state": "JobComplete", "numberRecordsProcessed": 50})
    results = requests_mock.get(jobs + "750R/results", text='"Id"\n')
    with pytest.raises(QueryTooLarge) as ei:
        list(hook.bulk_query("SELECT Id FROM Contact WHERE Clio_Id__c != null", max_rows=49))
    assert (ei.value.rows, ei.value.max_rows) == (50, 49) and not results.called  # nothing downloaded
    requests_mock.get(jobs + "750R/", json={"state": "Failed", "errorMessage": "InvalidBatch : x"})
    with pytest.raises(SalesforceApiError, match="QUERY_JOB_FAILED"):
        list(hook.bulk_query("SELECT Id FROM Contact"))


def test_query_upto_reads_every_page_only_when_they_are_few(hook, requests_mock):
    """``query_upto``: the records of at most ``max_pages`` pages (one GET each), else None after the first
    GET (nothing else read)."""
    requests_mock.get(BASE + "query/", json={"totalSize": 5, "done": False, "records": [{"Id": "a"}, {"Id": "b"}],
                                             "nextRecordsUrl": "/services/data/v59.0/query/01g-2"})
    requests_mock.get(BASE + "query/01g-2", json={"totalSize": 5, "done": False, "records": [{"Id": "c"}, {"Id": "d"}],
                                                  "nextRecordsUrl": "/services/data/v59.0/query/01g-4"})
    requests_mock.get(BASE + "query/01g-4", json={"totalSize": 5, "done": True, "records": [{"Id": "e"}]})
    assert [r["Id"] for r in hook.query_upto("SELECT Id FROM Contact", max_pages=3)] == list("abcde")
    n = requests_mock.call_count
    assert hook.query_upto("SELECT Id FROM Contact", max_pages=2) is None
    assert requests_mock.call_count == n + 1
