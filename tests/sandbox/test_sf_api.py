"""The Salesforce sandbox through the real clients: simple-salesforce and the Airflow SalesforceHook."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import time

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from sandbox.common.roster import staff
from sandbox.salesforce.ids import checksum, well_formed
from sandbox.salesforce.testing import run_sf_sandbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    with run_sf_sandbox(tmp_path_factory.mktemp("sf"), seed=42) as h:
        yield h


@pytest.fixture(scope="module")
def sf(sandbox):
    sandbox.external_ids("Account", "Contact", "Case")
    return sandbox.sf()


def _errors(exc: Exception) -> list[dict]:
    return exc.content  # type: ignore[attr-defined]


def test_client_credentials_through_the_airflow_hook(sandbox, sf, monkeypatch) -> None:
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sandbox.connection_json())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca_bundle)
    hook = SalesforceHook(salesforce_conn_id="salesforce_default")
    conn = hook.get_conn()
    assert conn.sf_instance == f"127.0.0.1:{sandbox.port}"
    desc = hook.describe_object("Contact")
    assert desc["name"] == "Contact" and any(f["name"] == "Clio_Id__c" for f in desc["fields"])
    res = hook.make_query("SELECT Id, Username, IsActive FROM User WHERE Username LIKE 'integration%'")
    assert res["totalSize"] == 1
    assert conn.api_usage["api-usage"].used >= 1


def test_other_token_flows_and_401_shape(sandbox) -> None:
    s = sandbox.session()
    url = f"{sandbox.instance_url}/services/oauth2/token"
    pw = s.post(url, data={"grant_type": "password", "client_id": sandbox.consumer_key,
                           "client_secret": sandbox.consumer_secret, "username": sandbox.username,
                           "password": sandbox.password}).json()
    assert pw["instance_url"] == sandbox.instance_url and not pw["instance_url"].endswith("/")
    refreshed = s.post(url, data={"grant_type": "refresh_token", "client_id": sandbox.consumer_key,
                                  "refresh_token": pw["refresh_token"]}).json()
    assert refreshed["access_token"] != pw["access_token"]
    claims = base64.urlsafe_b64encode(json.dumps({"iss": sandbox.consumer_key, "sub": sandbox.username,
                                                  "aud": "x", "exp": str(int(time.time()) + 120)}).encode())
    jwt = s.post(url, data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                            "assertion": f"e30.{claims.decode().rstrip('=')}.sig"}).json()
    assert "refresh_token" not in jwt and jwt["token_type"] == "Bearer"
    bad = s.post(url, data={"grant_type": "client_credentials", "client_id": sandbox.consumer_key,
                            "client_secret": "wrong"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    r = s.get(f"{sandbox.instance_url}/services/data/v59.0/sobjects/", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    # simple-salesforce in direct mode cannot re-login and raises
    from simple_salesforce import Salesforce

    direct = Salesforce(session_id="nope", instance_url=sandbox.instance_url, session=sandbox.session())
    with pytest.raises(SalesforceExpiredSession):
        direct.Account.describe()


def test_session_expiry_is_survived_by_relogin(sandbox, sf) -> None:
    sandbox.expire_sessions()
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] >= 10


def test_crud_and_upsert(sf) -> None:
    acc = sf.Account.create({"Name": "Acme Legal", "Clio_Id__c": "contact-1"})
    assert acc["success"] and well_formed(acc["id"]) and acc["id"][:3] == "001"
    assert acc["id"][15:] == checksum(acc["id"][:15])
    before = sf.Account.get(acc["id"])
    time.sleep(0.01)
    assert sf.Account.update(acc["id"], {"Phone": "555-0100"}) == 204
    after = sf.Account.get(acc["id"])
    assert after["Phone"] == "555-0100" and after["SystemModstamp"] > before["SystemModstamp"]
    assert sf.Contact.upsert("Clio_Id__c/contact-2", {"LastName": "Doe", "Account": {"Clio_Id__c": "contact-1"}}) == 201
    assert sf.Contact.upsert("Clio_Id__c/CONTACT-2", {"FirstName": "Jane"}) == 200
    c = sf.Contact.get_by_custom_id("Clio_Id__c", "contact-2")
    assert c["Name"] == "Jane Doe" and c["AccountId"] == acc["id"]
    assert sf.Contact.delete(c["Id"]) == 204
    with pytest.raises(SalesforceResourceNotFound) as ei:
        sf.Contact.get(c["Id"])
    assert _errors(ei.value)[0]["errorCode"] == "ENTITY_IS_DELETED"
    assert sf.query(f"SELECT Id FROM Contact WHERE Id = '{c['Id']}'")["totalSize"] == 0
    deleted = sf.query_all(f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{c['Id']}'", include_deleted=True)
    assert deleted["records"][0]["IsDeleted"] is True


def test_composite_collections_partial_failure_and_all_or_none(sf) -> None:
    recs = [{"attributes": {"type": "Account"}, "Name": "Ok One"},
            {"attributes": {"type": "Account"}},
            {"attributes": {"type": "Contact"}, "LastName": "Roe", "Email": "roe@example.com"}]
    res = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": recs})
    assert [r["success"] for r in res] == [True, False, True]
    assert "id" not in res[1] and res[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert res[1]["errors"][0]["fields"] == ["Name"]
    res = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": recs})
    assert res[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sf.query("SELECT COUNT() FROM Account WHERE Name = 'Ok One'")["totalSize"] == 1
    up = sf.restful("composite/sobjects/Account/Clio_Id__c", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Account"}, "Clio_Id__c": "contact-1", "Website": "https://acme.example"},
        {"attributes": {"type": "Account"}, "Clio_Id__c": "contact-77", "Name": "New Co"}]})
    assert [(r["success"], r["created"]) for r in up] == [(True, False), (True, True)]
    dele = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{up[1]['id']},001xx000003DGb2999",
                                                                       "allOrNone": "false"})
    assert dele[0]["success"] and dele[1]["errors"][0]["statusCode"] == "MALFORMED_ID"


def test_soql_relationships_where_order_and_paging(sf) -> None:
    acc = sf.Account.create({"Name": "Paging Parent", "Clio_Id__c": "contact-500"})["id"]
    rows = [{"attributes": {"type": "Contact"}, "LastName": f"P{i:04d}", "AccountId": acc,
             "Birthdate": f"19{50 + i % 40}-01-02"} for i in range(2300)]
    for i in range(0, len(rows), 200):
        assert all(r["success"] for r in sf.restful("composite/sobjects", method="POST",
                                                    json={"records": rows[i:i + 200]}))
    q = ("SELECT Id, LastName, Account.Name, Account.Owner.Email FROM Contact "
         "WHERE Account.Clio_Id__c = 'contact-500' AND (LastName LIKE 'P0%' OR LastName LIKE 'p1%' OR LastName IN ('P2299')) "
         "AND Birthdate > 1900-01-01 AND CreatedDate = LAST_N_DAYS:2 ORDER BY LastName DESC")
    first = sf.query(q)
    assert first["totalSize"] == 2001 and first["done"] is False
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    assert first["records"][0]["LastName"] == "P2299"
    assert first["records"][0]["Account"]["Owner"]["Email"] == "integration@harlow-vance.example"
    everything = sf.query_all(q)
    assert len(everything["records"]) == 2001 and everything["records"][-1]["LastName"] == "P0000"
    page = sf.query(f"SELECT Id FROM Contact WHERE AccountId = '{acc}' ORDER BY LastName LIMIT 5 OFFSET 10")
    assert page["totalSize"] == 5
    assert sf.query(f"SELECT COUNT() FROM Contact WHERE AccountId = '{acc}'")["totalSize"] == 2300
    nulls = sf.query("SELECT Id, Account.Name FROM Contact WHERE AccountId = null AND LastName = 'Roe'")
    assert nulls["records"][0]["Account"] is None
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.query("SELECT Nope__c FROM Contact")
    assert _errors(ei.value)[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.query("SELECT Id FROM Xyzzy")
    assert _errors(ei.value)[0]["errorCode"] == "INVALID_TYPE"
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.query("SELECT Id FROM Contact WHERE")
    assert _errors(ei.value)[0]["errorCode"] == "MALFORMED_QUERY"


def test_a_rest_query_cursor_is_released_with_its_last_page(sf) -> None:
    """A cursor holds its rows until the last page is served (then its locator is invalid), not for
    the server's life: before, each page opened a cursor of its own holding the whole result, and an
    xl verify's REST queries grew the sandbox past 16 GB."""
    acc = sf.Account.create({"Name": "Cursor Parent", "Clio_Id__c": "contact-501"})["id"]
    rows = [{"attributes": {"type": "Contact"}, "LastName": f"C{i:04d}", "AccountId": acc} for i in range(2100)]
    for i in range(0, len(rows), 200):
        assert all(r["success"] for r in sf.restful("composite/sobjects", method="POST",
                                                    json={"records": rows[i:i + 200]}))
    q = f"SELECT Id, LastName FROM Contact WHERE AccountId = '{acc}' ORDER BY LastName"
    first = sf.query(q)
    url = first["nextRecordsUrl"]
    assert first["done"] is False and len(first["records"]) == 2000
    again = sf.query(q)  # a second cursor on the same query; the first stays open
    assert again["nextRecordsUrl"].rsplit("-", 1)[0] != url.rsplit("-", 1)[0]
    last = sf.query_more(url, identifier_is_url=True)
    assert last["done"] is True and [r["LastName"] for r in last["records"]] == [f"C{i:04d}" for i in range(2000, 2100)]
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.query_more(url, identifier_is_url=True)
    assert _errors(ei.value)[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    rest = sf.query_more(again["nextRecordsUrl"], identifier_is_url=True)
    assert rest["done"] is True and len(rest["records"]) == 100


def test_an_idle_rest_query_cursor_is_released_when_another_opens(monkeypatch) -> None:
    from types import SimpleNamespace

    from sandbox.salesforce import app

    clock = [1000.0]
    monkeypatch.setattr(app.time, "monotonic", lambda: clock[0])
    ids = iter(range(100))
    sb = SimpleNamespace(cursors={}, org=SimpleNamespace(new_id=lambda prefix: f"{prefix}{next(ids):03d}"))
    runner = SimpleNamespace(render=lambda r: r)
    rows = [{"n": i} for i in range(5)]
    app._page(sb, runner, rows, 0, 2)
    assert list(sb.cursors) == ["01g000"]
    clock[0] += app.CURSOR_IDLE_SECONDS - 1
    app._query_more(sb, "01g000-2")  # read: no longer idle
    clock[0] += app.CURSOR_IDLE_SECONDS - 1
    app._page(sb, runner, rows, 0, 2)
    assert sorted(sb.cursors) == ["01g000", "01g001"]
    clock[0] += app.CURSOR_IDLE_SECONDS + 1
    app._page(sb, runner, rows, 0, 2)
    assert sorted(sb.cursors) == ["01g002"]
    with pytest.raises(app.HttpError):
        app._query_more(sb, "01g001-2")


def test_bulk2_upsert_50k_with_relationships_and_failures(sf, tmp_path) -> None:
    accounts = [{"Clio_Id__c": f"contact-a{i}", "Name": f"Firm {i}"} for i in range(100)]
    res = sf.bulk2.Account.upsert(records=accounts, external_id_field="Clio_Id__c", wait=0.2)
    assert res[0]["numberRecordsFailed"] == 0 and res[0]["numberRecordsProcessed"] == 100
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Clio_Id__c", "LastName", "FirstName", "Account.Clio_Id__c", "Birthdate", "Description"])
    bad = {}
    for i in range(50_000):
        acct = f"contact-a{i % 100}"
        last = f"Last{i}"
        if i % 5000 == 7:
            acct, bad[f"contact-c{i}"] = "contact-missing", "INVALID_FIELD:Foreign key external ID: contact-missing not found"
        elif i % 5000 == 11:
            last, bad[f"contact-c{i}"] = "", "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
        w.writerow([f"contact-c{i}", last, "F", acct, "1980-02-29", "#N/A" if i % 2 else "x"])
    csv_path = tmp_path / "contacts.csv"
    csv_path.write_text(buf.getvalue())
    t0 = time.monotonic()
    res = sf.bulk2.Contact.upsert(csv_file=str(csv_path), external_id_field="Clio_Id__c", wait=0.2)
    elapsed = time.monotonic() - t0
    assert res[0]["numberRecordsProcessed"] == 50_000
    assert res[0]["numberRecordsFailed"] == len(bad) == 20
    job = res[0]["job_id"]
    ok = list(csv.DictReader(io.StringIO(sf.bulk2.Contact.get_successful_records(job))))
    failed = list(csv.DictReader(io.StringIO(sf.bulk2.Contact.get_failed_records(job))))
    assert len(ok) == 49_980 and all(r["sf__Created"] == "true" for r in ok)
    assert {r["Clio_Id__c"]: r["sf__Error"] for r in failed}.keys() == bad.keys()
    for r in failed:
        assert r["sf__Error"].startswith(bad[r["Clio_Id__c"]])
    assert sf.bulk2.Contact.get_successful_records(job).splitlines()[0] == \
        '"sf__Id","sf__Created",Clio_Id__c,LastName,FirstName,Account.Clio_Id__c,Birthdate,Description'
    server_ms = sf.restful(f"jobs/ingest/{job}")["totalProcessingTime"]
    print(f"\nbulk2 upsert 50k rows: {elapsed:.2f}s end to end, server processing {server_ms} ms "
          f"({50_000 / (server_ms / 1000):,.0f} rows/s)")
    rec = sf.Contact.get_by_custom_id("Clio_Id__c", "contact-c10")
    assert rec["Birthdate"] == "1980-02-29" and rec["AccountId"] and rec["Description"] == "x"
    # re-run as update: all created=false
    res2 = sf.bulk2.Contact.upsert(csv_file=str(csv_path), external_id_field="Clio_Id__c", wait=0.2)
    ok2 = sf.bulk2.Contact.get_successful_records(res2[0]["job_id"])
    assert '"true"' not in ok2
    pages = list(sf.bulk2.Contact.query("SELECT Id, Clio_Id__c, Account.Clio_Id__c FROM Contact "
                                        "WHERE Clio_Id__c LIKE 'contact-c%'", max_records=20_000))
    rows = [r for p in pages for r in csv.DictReader(io.StringIO(p))]
    assert len(pages) == 3 and len(rows) == 49_980 and rows[0]["Account.Clio_Id__c"].startswith("contact-a")


def test_bulk2_job_level_failures(sandbox, sf) -> None:
    s = sandbox.session()
    base = f"{sandbox.instance_url}/services/data/v59.0/jobs/ingest"
    hdr = {"Authorization": f"Bearer {sf.session_id}"}
    job = s.post(base, json={"object": "Contact", "operation": "insert", "lineEnding": "LF"}, headers=hdr).json()
    assert job["state"] == "Open" and job["contentUrl"].startswith("services/data/")
    assert s.put(f"{base}/{job['id']}/batches", data=b"LastName,Nope__c\r\nA,b\r\n",
                 headers={**hdr, "Content-Type": "text/csv"}).status_code == 201
    s.patch(f"{base}/{job['id']}", json={"state": "UploadComplete"}, headers=hdr)
    for _ in range(50):
        info = s.get(f"{base}/{job['id']}", headers=hdr).json()
        if info["state"] in ("JobComplete", "Failed"):
            break
        time.sleep(0.05)
    assert info["state"] == "Failed" and info["errorMessage"].startswith("ClientInputError : LineEnding")
    job = s.post(base, json={"object": "Contact", "operation": "insert"}, headers=hdr).json()
    s.put(f"{base}/{job['id']}/batches", data=b"LastName,Nope__c\nA,b\n", headers={**hdr, "Content-Type": "text/csv"})
    s.patch(f"{base}/{job['id']}", json={"state": "UploadComplete"}, headers=hdr)
    for _ in range(50):
        info = s.get(f"{base}/{job['id']}", headers=hdr).json()
        if info["state"] in ("JobComplete", "Failed"):
            break
        time.sleep(0.05)
    assert info["errorMessage"] == "InvalidBatch : Field name not found : Nope__c"
    unprocessed = s.get(f"{base}/{job['id']}/unprocessedrecords", headers=hdr).text
    assert unprocessed.splitlines() == ["LastName,Nope__c", '"A","b"']


def test_bulk2_short_rows_fail_unwritten_and_repeated_columns_fail_the_job(sandbox, sf) -> None:
    """A row with the wrong column count fails and writes nothing, even where no field is required."""
    tasks_before = sandbox.counts().get("Task", 0)
    s = sandbox.session()
    base = f"{sandbox.instance_url}/services/data/v59.0/jobs/ingest"
    hdr = {"Authorization": f"Bearer {sf.session_id}"}

    def run(obj: str, data: bytes) -> tuple[dict, list[list[str]], list[list[str]]]:
        job = s.post(base, json={"object": obj, "operation": "insert"}, headers=hdr).json()
        s.put(f"{base}/{job['id']}/batches", data=data, headers={**hdr, "Content-Type": "text/csv"})
        s.patch(f"{base}/{job['id']}", json={"state": "UploadComplete"}, headers=hdr)
        for _ in range(100):
            info = s.get(f"{base}/{job['id']}", headers=hdr).json()
            if info["state"] in ("JobComplete", "Failed"):
                break
            time.sleep(0.05)
        ok = list(csv.reader(io.StringIO(s.get(f"{base}/{job['id']}/successfulResults", headers=hdr).text)))
        bad = list(csv.reader(io.StringIO(s.get(f"{base}/{job['id']}/failedResults", headers=hdr).text)))
        return info, ok[1:], bad[1:]

    _info, ok, bad = run("Task", b"Subject,Description\nCall back,first\nshort\n")
    assert [r[2:] for r in ok] == [["Call back", "first"]]
    assert bad == [["", "INVALID_FIELD:Incorrect number of columns:--", "short"]]
    assert sandbox.counts()["Task"] == tasks_before + 1
    contacts = sandbox.counts()["Contact"]
    info, ok, bad = run("Contact", b"LastName,lastname\nFirst,Second\n")
    assert info["state"] == "Failed" and info["errorMessage"] == \
        "InvalidBatch : Duplicate field name found in header: lastname"
    assert ok == bad == [] and sandbox.counts()["Contact"] == contacts


def test_bulk_v1_json(sf) -> None:
    res = sf.bulk.Account.insert([{"Name": "V1 Co"}, {"Website": "x"}], batch_size=10)
    assert res[0]["success"] and res[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"


def test_tooling_custom_field_then_write(sandbox, sf) -> None:
    r = sf.toolingexecute("sobjects/CustomObject", method="POST", data={
        "FullName": "Clio_Billing__c", "Metadata": {"label": "Clio Bill", "pluralLabel": "Clio Bills",
                                                    "nameField": {"type": "Text", "label": "Name"},
                                                    "deploymentStatus": "Deployed", "sharingModel": "ReadWrite"}})
    assert r["success"] and r["id"].startswith("01I")
    fields = [
        ("Clio_Billing__c.Clio_Id__c", {"label": "Clio Id", "type": "Text", "length": 80, "externalId": True, "unique": True}),
        ("Clio_Billing__c.Matter__c", {"label": "Matter", "type": "Lookup", "referenceTo": "Case",
                                       "relationshipName": "Matter", "deleteConstraint": "SetNull"}),
        ("Clio_Billing__c.Total__c", {"label": "Total", "type": "Currency", "precision": 16, "scale": 2}),
        ("Clio_Billing__c.State__c", {"label": "State", "type": "Picklist", "valueSet": {"restricted": True,
            "valueSetDefinition": {"value": [{"fullName": "draft", "label": "Draft", "default": True},
                                             {"fullName": "paid", "label": "Paid", "default": False}]}}}),
        ("Clio_Billing__c.Paid__c", {"label": "Paid", "type": "Checkbox", "defaultValue": False}),
        ("Case.Clio_Created_Date__c", {"label": "Clio Created", "type": "DateTime"}),
    ]
    for full, md in fields:
        assert sf.toolingexecute("sobjects/CustomField", method="POST", data={"FullName": full, "Metadata": md})["success"]
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.toolingexecute("sobjects/CustomField", method="POST", data={"FullName": fields[0][0], "Metadata": fields[0][1]})
    assert _errors(ei.value)[0]["errorCode"] == "DUPLICATE_DEVELOPER_NAME"
    with pytest.raises(SalesforceMalformedRequest):
        sf.toolingexecute("sobjects/CustomField", method="POST", data={
            "FullName": "CaseContactRole.Clio_Id__c", "Metadata": fields[0][1]})
    sandbox.grant([full for full, _md in fields], objects=["Clio_Billing__c"])
    q = sf.toolingexecute("query/?q=SELECT+Id,DeveloperName,TableEnumOrId+FROM+CustomField+WHERE+DeveloperName='Clio_Id'")
    assert {r["TableEnumOrId"] for r in q["records"]} >= {"Account", "Contact", "Case", r["id"]}
    rt = sf.toolingexecute("sobjects/RecordType", method="POST", data={
        "FullName": "Case.Litigation", "Metadata": {"label": "Litigation", "active": True}})
    case = sf.Case.create({"Subject": "Smith v. Jones", "Clio_Id__c": "matter-7", "RecordTypeId": rt["id"],
                           "Clio_Created_Date__c": "2024-03-01T10:00:00-05:00"})
    got = sf.Case.get(case["id"])
    assert got["Clio_Created_Date__c"] == "2024-03-01T15:00:00.000+0000" and got["RecordTypeId"] == rt["id"]
    assert got["Status"] == "New"
    bill = sf.Clio_Billing__c.create({"Name": "B-1", "Clio_Id__c": "bill-1", "Matter__c": case["id"], "Total__c": 12.5})
    rows = sf.query("SELECT Name, Total__c, State__c, Paid__c, Matter__r.Subject FROM Clio_Billing__c")["records"]
    assert rows[0]["Matter__r"]["Subject"] == "Smith v. Jones" and rows[0]["State__c"] == "draft"
    assert bill["id"].startswith("a0")
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.Clio_Billing__c.update(bill["id"], {"State__c": "lost"})
    assert _errors(ei.value)[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    rtypes = sf.query("SELECT Id, DeveloperName FROM RecordType WHERE SobjectType = 'Case' AND IsActive = true")
    assert rtypes["records"][0]["DeveloperName"] == "Litigation"
    infos = sf.Case.describe()["recordTypeInfos"]
    assert [i["developerName"] for i in infos] == ["Litigation", "Master"]


def test_files_both_upload_modes_and_links(sandbox, sf) -> None:
    case = sf.Case.create({"Subject": "Files"})["id"]
    data = b"%PDF-1.4 engagement letter" * 100
    v1 = sf.ContentVersion.create({"Title": "Engagement", "PathOnClient": "engagement.pdf",
                                   "VersionData": base64.b64encode(data).decode(), "FirstPublishLocationId": case})
    cv = sf.query(f"SELECT ContentDocumentId, Checksum, FileType, ContentSize, VersionData FROM ContentVersion "
                  f"WHERE Id = '{v1['id']}'")["records"][0]
    assert cv["Checksum"] == hashlib.md5(data).hexdigest() and cv["FileType"] == "PDF" and cv["ContentSize"] == len(data)
    doc = cv["ContentDocumentId"]
    s = sandbox.session()
    hdr = {"Authorization": f"Bearer {sf.session_id}"}
    blob = s.get(f"{sandbox.instance_url}{cv['VersionData']}", headers=hdr)
    assert blob.content == data
    big = bytes(range(256)) * 4096
    files = {"entity_content": (None, json.dumps({"Title": "Scan", "PathOnClient": "scan.png",
                                                  "ContentDocumentId": doc}), "application/json"),
             "VersionData": ("scan.png", big, "application/octet-stream")}
    r = s.post(f"{sandbox.instance_url}/services/data/v59.0/sobjects/ContentVersion", files=files, headers=hdr)
    assert r.status_code == 201, r.text
    versions = sf.query(f"SELECT Id, VersionNumber, IsLatest FROM ContentVersion WHERE ContentDocumentId = '{doc}' "
                        "ORDER BY VersionNumber")["records"]
    assert [(v["VersionNumber"], v["IsLatest"]) for v in versions] == [("1", False), ("2", True)]
    contact = sf.Contact.create({"LastName": "Linked"})["id"]
    link = sf.ContentDocumentLink.create({"ContentDocumentId": doc, "LinkedEntityId": contact, "ShareType": "V"})
    assert link["id"].startswith("06A")
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.ContentDocumentLink.create({"ContentDocumentId": doc, "LinkedEntityId": contact, "ShareType": "V"})
    assert _errors(ei.value)[0]["errorCode"] == "DUPLICATE_VALUE"
    links = sf.query(f"SELECT LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId = '{doc}'")
    assert {r["LinkedEntityId"] for r in links["records"]} >= {case, contact}
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.query("SELECT Id FROM ContentDocumentLink")
    assert _errors(ei.value)[0]["errorCode"] == "MALFORMED_QUERY"
    assert sf.ContentDocument.delete(doc) == 204
    assert sf.query(f"SELECT COUNT() FROM ContentVersion WHERE ContentDocumentId = '{doc}'")["totalSize"] == 0
    assert sf.query(f"SELECT COUNT() FROM ContentDocumentLink WHERE LinkedEntityId = '{contact}'")["totalSize"] == 0
    note = sf.ContentNote.create({"Title": "Call notes", "Content": base64.b64encode(b"<p>hello</p>").decode()})
    assert sf.ContentDocumentLink.create({"ContentDocumentId": note["id"], "LinkedEntityId": case})["success"]
    # A ContentNote is its ContentDocument: deleting the note removes the document and its links.
    assert sf.ContentNote.delete(note["id"]) == 204
    assert sf.query(f"SELECT COUNT() FROM ContentDocument WHERE Id = '{note['id']}'")["totalSize"] == 0
    assert sf.query(f"SELECT COUNT() FROM ContentDocumentLink WHERE ContentDocumentId = '{note['id']}'")["totalSize"] == 0


def test_validation_error_codes(sandbox, sf) -> None:
    def code(call, *args) -> str:
        with pytest.raises(Exception) as ei:  # noqa: B017 - several exception classes map the codes
            call(*args)
        return _errors(ei.value)[0]["errorCode"]

    assert code(sf.Contact.create, {"FirstName": "No Last"}) == "REQUIRED_FIELD_MISSING"
    assert code(sf.Contact.create, {"LastName": "x" * 81}) == "STRING_TOO_LONG"
    assert code(sf.Event.create, {"Subject": "s", "StartDateTime": "2024-01-01T10:00:00Z",
                                  "DurationInMinutes": 30, "ShowAs": "Maybe"}) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert code(sf.Contact.create, {"LastName": "x", "AccountId": "001000000000000AAA"}) == "INVALID_CROSS_REFERENCE_KEY"
    assert code(sf.Contact.create, {"LastName": "x", "AccountId": "not-an-id"}) == "MALFORMED_ID"
    sf.Contact.create({"LastName": "dup", "Clio_Id__c": "contact-dup"})
    assert code(sf.Contact.create, {"LastName": "dup2", "Clio_Id__c": "CONTACT-DUP"}) == "DUPLICATE_VALUE"
    assert code(sf.Contact.create, {"LastName": "x", "Nope__c": 1}) == "INVALID_FIELD"
    assert code(sf.query, "SELECT Id FROM Matter__c") == "INVALID_TYPE"
    inactive = next(m for m in staff(42) if m.sf_match == "inactive")
    uid = sf.query(f"SELECT Id FROM User WHERE Email = '{inactive.sf_email}'")["records"][0]["Id"]
    assert code(sf.Account.create, {"Name": "x", "OwnerId": uid}) == "INACTIVE_OWNER_OR_USER"
    assert code(sf.Event.create, {"Subject": "s", "StartDateTime": "2024-01-01T10:00:00Z", "DurationInMinutes": 30,
                                  "EndDateTime": "2024-01-01T12:00:00Z"}) == "FIELD_INTEGRITY_EXCEPTION"
    assert code(sf.Event.create, {"Subject": "s", "StartDateTime": "2024-01-01T10:00:00Z",
                                  "EndDateTime": "2024-01-20T10:00:00Z"}) == "FIELD_INTEGRITY_EXCEPTION"
    ev = sf.Event.create({"Subject": "ok", "StartDateTime": "2024-01-01T10:00:00Z", "EndDateTime": "2024-01-01T11:30:00Z"})
    got = sf.Event.get(ev["id"])
    assert got["DurationInMinutes"] == 90 and got["ActivityDate"] == "2024-01-01"
    allday = sf.Event.get(sf.Event.create({"Subject": "d", "IsAllDayEvent": True, "ActivityDate": "2024-02-01"})["id"])
    assert allday["DurationInMinutes"] == 1440
    assert code(sf.Contact.create, {"LastName": "x", "AccountId": uid}) == "FIELD_INTEGRITY_EXCEPTION"
    sandbox.knobs(audit_fields=True)  # the admin enables "Set Audit Fields upon Record Creation"
    try:
        created = sf.Contact.create({"LastName": "Old", "CreatedDate": "2019-05-01T00:00:00Z"})
        assert sf.Contact.get(created["id"])["CreatedDate"] == "2019-05-01T00:00:00.000+0000"
        assert code(sf.Contact.update, created["id"], {"CreatedDate": "2019-05-01T00:00:00Z"}) == \
            "INVALID_FIELD_FOR_INSERT_UPDATE"
    finally:
        sandbox.knobs(audit_fields=False)


def test_limits_and_request_log(sandbox, sf) -> None:
    before = sf.restful("limits")["DailyApiRequests"]["Remaining"]
    sf.query("SELECT COUNT() FROM Account")
    after = sf.restful("limits")["DailyApiRequests"]["Remaining"]
    assert before - after == 2
    assert sf.api_usage["api-usage"].used == sandbox.knobs()["api_daily_limit"] - after
    counts = sf.restful("limits/recordCount", params={"sObjects": "Account,Contact"})
    assert {c["name"] for c in counts["sObjects"]} == {"Account", "Contact"}
    assert all(c["count"] > 0 for c in counts["sObjects"])
    log = sandbox.request_log()
    assert log["by_kind"]["limits"] >= 3 and "auth" not in log["by_kind"]
    assert (sandbox.data_dir / "requests.jsonl").read_text().count("\n") >= log["total_api_calls"]
    assert sandbox.counts()["Account"] >= 100


def test_faults_and_limits_are_enforced(tmp_path) -> None:
    with run_sf_sandbox(tmp_path, seed=3, data_storage_mb=1, api_daily_limit=40) as h:
        sf = h.sf()
        h.knobs(lock_row_rate=1.0)
        res = sf.restful("composite/sobjects", method="POST", json={"records": [
            {"attributes": {"type": "Account"}, "Name": "Locked"}]})
        assert res[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
        h.knobs(lock_row_rate=0.0, fault_503_rate=1.0)
        r = h.session().get(f"{h.instance_url}/services/data/v59.0/limits",
                            headers={"Authorization": f"Bearer {sf.session_id}"})
        assert r.status_code == 503 and r.json()[0]["errorCode"] == "API_TEMPORARILY_UNAVAILABLE"
        h.knobs(fault_503_rate=0.0, fail_bulk_jobs=1)
        from simple_salesforce.exceptions import SalesforceOperationError

        with pytest.raises(SalesforceOperationError):
            sf.bulk2.Account.insert(records=[{"Name": "x"}], wait=0.1)
        faults = h.faults()  # the sandbox's own log of what it injected
        assert faults["UNABLE_TO_LOCK_ROW"] == 1 and faults["bulk_job_failed"] == 1, faults
        assert faults["API_TEMPORARILY_UNAVAILABLE"] >= 1, faults
        res = sf.bulk2.Account.insert(records=[{"Name": f"A{i}"} for i in range(600)], wait=0.1)
        assert res[0]["numberRecordsFailed"] > 0
        failed = sf.bulk2.Account.get_failed_records(res[0]["job_id"])
        assert "STORAGE_LIMIT_EXCEEDED:storage limit exceeded:--" in failed
        assert sf.restful("limits")["DataStorageMB"]["Remaining"] == 0
        h.knobs(api_daily_limit=1)
        r = h.session().get(f"{h.instance_url}/services/data/v59.0/limits",
                            headers={"Authorization": f"Bearer {sf.session_id}"})
        assert r.status_code == 403 and r.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
        assert r.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_limit_exceeded_on_refuses_exactly_the_named_calls_without_executing_them(sandbox, sf) -> None:
    """``limit_exceeded_on``: the n-th matching call (counted from when the knob is set) is refused as an
    org out of API allowance refuses it (403 REQUEST_LIMIT_EXCEEDED), and nothing of it is written."""
    url = f"{sandbox.instance_url}/services/data/v59.0/composite/sobjects/Contact/Clio_Id__c"
    headers = {"Authorization": f"Bearer {sf.session_id}"}
    body = {"allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "LastName": "Knob",
                                             "Clio_Id__c": "knob-contact-1"}]}
    before = sandbox.faults().get("REQUEST_LIMIT_EXCEEDED", 0)
    sandbox.knobs(limit_exceeded_on="PATCH /composite/sobjects/Contact/#2")
    try:
        session = sandbox.session()
        assert session.get(url.replace("/composite/sobjects/Contact/Clio_Id__c", "/limits"), headers=headers).ok
        first = session.patch(url, json=body, headers=headers)
        assert first.ok and first.json()[0]["created"] is True
        body["records"][0]["Clio_Id__c"] = "knob-contact-2"
        refused = session.patch(url, json=body, headers=headers)
        assert refused.status_code == 403 and refused.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
        assert not sf.query("SELECT Id FROM Contact WHERE Clio_Id__c = 'knob-contact-2'")["records"]
        assert session.patch(url, json=body, headers=headers).ok  # the third goes through
        assert sandbox.faults()["REQUEST_LIMIT_EXCEEDED"] == before + 1
        with pytest.raises(requests.HTTPError):
            sandbox.knobs(limit_exceeded_on="PATCH nothing#x")
    finally:
        sandbox.knobs(limit_exceeded_on="")


def test_audit_fields_off(tmp_path) -> None:
    with run_sf_sandbox(tmp_path, audit_fields="off") as h:
        sf = h.sf()
        with pytest.raises(SalesforceMalformedRequest) as ei:
            sf.Account.create({"Name": "x", "CreatedDate": "2019-01-01T00:00:00Z"})
        assert _errors(ei.value)[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
        assert requests is not None


def test_bulk2_query_job_protocol(sandbox, sf) -> None:
    """Bulk API 2.0 query jobs as documented: the job's states, CSV sets paged by maxRecords and opaque
    locators, columns named and ordered as queried, null as an empty value, and the SOQL length limit."""
    s = sandbox.session()
    base = f"{sandbox.instance_url}/services/data/v59.0/jobs/query"
    hdr = {"Authorization": f"Bearer {sf.session_id}"}
    acct = sf.Account.create({"Name": "Query Job Co", "Clio_Id__c": "qj-account"})["id"]
    for i in range(5):
        sf.Contact.create({"LastName": f"Qj {i}", "Clio_Id__c": f"qj-{i}", "Description": None if i % 2 else "d",
                           **({"AccountId": acct} if i < 2 else {})})
    soql = ("SELECT Id, clio_id__c, Description, Account.Clio_Id__c, CreatedDate, IsDeleted FROM Contact "
            "WHERE Clio_Id__c LIKE 'qj-%'")
    remaining = sf.restful("limits/")["DailyBulkV2QueryJobs"]["Remaining"]
    job = s.post(base, json={"operation": "query", "query": soql}, headers=hdr).json()
    assert job["state"] == "UploadComplete" and job["object"] == "Contact" and job["jobType"] == "V2Query"
    assert sf.restful("limits/")["DailyBulkV2QueryJobs"]["Remaining"] == remaining - 1
    for _ in range(200):
        info = s.get(f"{base}/{job['id']}", headers=hdr).json()
        if info["state"] not in ("UploadComplete", "InProgress"):
            break
        time.sleep(0.05)
    assert info["state"] == "JobComplete" and info["numberRecordsProcessed"] == 5
    for state in ("UploadComplete", "Aborted"):  # nothing to upload; a finished job cannot be aborted
        r = s.patch(f"{base}/{job['id']}", json={"state": state}, headers=hdr)
        assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    pages, locator, seen = [], None, []
    while locator != "null":
        r = s.get(f"{base}/{job['id']}/results", params={"maxRecords": 2, **({"locator": locator} if locator else {})},
                  headers=hdr)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
        pages.append(r)
        locator = r.headers["Sforce-Locator"]
        seen.append(locator)
    assert [int(p.headers["Sforce-NumberOfRecords"]) for p in pages] == [2, 2, 1]
    assert not any(loc.isdigit() for loc in seen)  # opaque, not an offset a client could compute
    again = s.get(f"{base}/{job['id']}/results", params={"maxRecords": 2, "locator": seen[0]}, headers=hdr)
    assert again.text == pages[1].text  # a locator keeps naming the same set
    lines = [p.text.splitlines() for p in pages]
    assert all(ls[0] == '"Id","clio_id__c","Description","Account.Clio_Id__c","CreatedDate","IsDeleted"'
               for ls in lines)
    assert all(line.startswith('"') and line.endswith('"') for ls in lines for line in ls)
    rows = {r["clio_id__c"]: r for p in pages for r in csv.DictReader(io.StringIO(p.text))}
    assert sorted(rows) == [f"qj-{i}" for i in range(5)]
    assert rows["qj-1"]["Description"] == "" and rows["qj-0"]["Description"] == "d"
    assert rows["qj-0"]["Account.Clio_Id__c"] == "qj-account" and rows["qj-3"]["Account.Clio_Id__c"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rows["qj-0"]["CreatedDate"])  # REST: +0000
    assert rows["qj-0"]["IsDeleted"] == "false"
    for params, code in (({"locator": "null"}, "INVALIDLOCATOR"), ({"locator": "2"}, "INVALIDLOCATOR"),
                         ({"maxRecords": "0"}, "INVALIDMAXRECORDS")):
        r = s.get(f"{base}/{job['id']}/results", params=params, headers=hdr)
        assert r.status_code == 400 and r.json()[0]["errorCode"] == code, params
    # refused at creation: no operation, aggregates, and SOQL over 100,000 characters (exactly 100,000 runs)
    head = "SELECT Id FROM Contact WHERE Clio_Id__c IN ('qj-0', '"
    longest = head + "x" * (100_000 - len(head) - 2) + "')"
    for body, code in (({"query": soql}, "INVALIDJOB"),
                       ({"operation": "query", "query": "SELECT COUNT() FROM Contact"}, "FeatureNotEnabled"),
                       ({"operation": "query", "query": longest.replace("IN (", "IN ( ")}, "MALFORMED_QUERY")):
        r = s.post(base, json=body, headers=hdr)
        assert r.status_code == 400 and r.json()[0]["errorCode"] == code, body
    assert len(longest) == 100_000
    assert s.post(base, json={"operation": "query", "query": longest}, headers=hdr).status_code == 200
