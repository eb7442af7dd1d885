"""The Salesforce sandbox behaves like a real org where the migration depends on it.

One test (or a few) per behaviour in docs/salesforce-sandbox.md ("Real-org rules"), each through
simple-salesforce or plain HTTP: field-level security through profiles and permission sets,
normalisation of emails and empty strings, duplicate external ids, the date range, strict SOQL,
Bulk 2.0 upload and header rules, checkbox nulls, the daily Bulk batch quota, the audit-field and
hard-delete permissions, API versions, malformed bodies and describe shapes.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from pathlib import Path

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from sandbox.common.roster import staff
from sandbox.salesforce.ids import to18
from sandbox.salesforce.testing import run_sf_sandbox

pytestmark = pytest.mark.integration

RECORDED = Path(__file__).resolve().parents[2] / "sandbox" / "salesforce" / "describes"
EXT = {"label": "Clio Id", "type": "Text", "length": 80, "externalId": True, "unique": True}


@pytest.fixture(scope="module")
def sf(tmp_path_factory: pytest.TempPathFactory):
    """The integration user's client on an org whose Contact and Account have a granted Clio_Id__c."""
    with run_sf_sandbox(tmp_path_factory.mktemp("sf-real"), seed=42) as h:
        h.external_ids("Contact", "Account")
        client = h.sf()
        client.handle = h
        yield client


@pytest.fixture(scope="module")
def sandbox(sf):
    return sf.handle


class Http:
    """Plain HTTPS calls with the integration user's token."""

    def __init__(self, sandbox, sf, version: str = "v59.0"):
        self.s = sandbox.session()
        self.s.headers["Authorization"] = f"Bearer {sf.session_id}"
        self.base = f"{sandbox.instance_url}/services/data/{version}"
        self.root = sandbox.instance_url

    def __call__(self, method: str, path: str, **kw):
        url = path if path.startswith("http") else (self.root + path if path.startswith("/") else f"{self.base}/{path}")
        return self.s.request(method, url, **kw)


@pytest.fixture(scope="module")
def http(sandbox, sf) -> Http:
    return Http(sandbox, sf)


def error(exc: Exception) -> dict:
    return exc.content[0]  # type: ignore[attr-defined]


def code_of(call, *args, **kw) -> str:
    with pytest.raises((SalesforceMalformedRequest, SalesforceResourceNotFound)) as ei:
        call(*args, **kw)
    return error(ei.value)["errorCode"]


def bulk_job(http: Http, job: dict, data: bytes) -> tuple[dict, list[dict], list[dict]]:
    """Create, upload, close and wait; (final job info, successful rows, failed rows)."""
    info = http("POST", "jobs/ingest", json={"contentType": "CSV", "lineEnding": "LF", **job})
    assert info.status_code == 200, info.text
    jid = info.json()["id"]
    assert http("PUT", f"jobs/ingest/{jid}/batches", data=data, headers={"Content-Type": "text/csv"}).status_code == 201
    http("PATCH", f"jobs/ingest/{jid}", json={"state": "UploadComplete"})
    for _ in range(400):
        info = http("GET", f"jobs/ingest/{jid}").json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            break
        time.sleep(0.05)
    ok = list(csv.DictReader(io.StringIO(http("GET", f"jobs/ingest/{jid}/successfulResults").text)))
    bad = list(csv.DictReader(io.StringIO(http("GET", f"jobs/ingest/{jid}/failedResults").text)))
    return info, ok, bad


# -- 1. field-level security ------------------------------------------------------------------------


def test_a_new_custom_field_is_hidden_until_a_permission_set_grants_it(sandbox, sf, http) -> None:
    assert sf.toolingexecute("sobjects/CustomField", method="POST", data={
        "FullName": "Contact.Clio_Matter_Count__c",
        "Metadata": {"label": "Matters", "type": "Number", "precision": 5, "scale": 0}})["success"]
    # Hidden everywhere: REST write, describe, SOQL, Bulk header, Tooling still lists it.
    assert code_of(sf.Contact.create, {"LastName": "Fls", "Clio_Matter_Count__c": 2}) == "INVALID_FIELD"
    assert "Clio_Matter_Count__c" not in {f["name"] for f in sf.Contact.describe()["fields"]}
    assert code_of(sf.query, "SELECT Clio_Matter_Count__c FROM Contact") == "INVALID_FIELD"
    info, _ok, _bad = bulk_job(http, {"object": "Contact", "operation": "insert"},
                               b"LastName,Clio_Matter_Count__c\nBulk,3\n")
    assert info["state"] == "Failed" and info["errorMessage"] == \
        "InvalidBatch : Field name not found : Clio_Matter_Count__c"
    tooling = sf.toolingexecute("query/?q=SELECT+Id,DeveloperName+FROM+CustomField+WHERE+DeveloperName='Clio_Matter_Count'")
    assert tooling["size"] == 1

    # Granted read only: visible, not writable.
    ps = sf.PermissionSet.create({"Name": "Fls_Test", "Label": "FLS test"})["id"]
    fp = sf.FieldPermissions.create({"ParentId": ps, "SobjectType": "Contact", "Field": "Contact.Clio_Matter_Count__c",
                                     "PermissionsRead": True, "PermissionsEdit": False})["id"]
    me = sandbox.user_id(sf)
    psa = sf.PermissionSetAssignment.create({"AssigneeId": me, "PermissionSetId": ps})["id"]
    field = {f["name"]: f for f in sf.Contact.describe()["fields"]}["Clio_Matter_Count__c"]
    assert not field["createable"] and not field["updateable"]
    assert code_of(sf.Contact.create, {"LastName": "Fls", "Clio_Matter_Count__c": 2}) == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert sf.query("SELECT Clio_Matter_Count__c FROM Contact LIMIT 1")["done"]

    # Read and edit: writable through REST and Bulk; the grant is queryable as a real org's.
    sf.FieldPermissions.update(fp, {"PermissionsEdit": True})
    cid = sf.Contact.create({"LastName": "Fls", "Clio_Matter_Count__c": 2})["id"]
    assert sf.Contact.get(cid)["Clio_Matter_Count__c"] == 2
    info, ok, _bad = bulk_job(http, {"object": "Contact", "operation": "insert"}, b"LastName,Clio_Matter_Count__c\nBulk,3\n")
    assert info["state"] == "JobComplete" and len(ok) == 1
    rows = sf.query(f"SELECT Field, PermissionsRead, PermissionsEdit, Parent.Name FROM FieldPermissions "
                    f"WHERE ParentId = '{ps}'")["records"]
    assert [(r["Field"], r["PermissionsEdit"], r["Parent"]["Name"]) for r in rows] == \
        [("Contact.Clio_Matter_Count__c", True, "Fls_Test")]
    assert sf.query(f"SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = '{me}' AND PermissionSetId = '{ps}'")[
        "totalSize"] == 1

    # Without the assignment the field is gone again.
    sf.PermissionSetAssignment.delete(psa)
    assert code_of(sf.query, "SELECT Clio_Matter_Count__c FROM Contact") == "INVALID_FIELD"
    assert code_of(sf.Contact.update, cid, {"Clio_Matter_Count__c": 5}) == "INVALID_FIELD"


def test_upsert_on_a_hidden_external_id_is_not_found(sandbox, sf) -> None:
    sf.toolingexecute("sobjects/CustomField", method="POST", data={"FullName": "Case.Clio_Id__c", "Metadata": EXT})
    with pytest.raises(SalesforceResourceNotFound):
        sf.Case.upsert("Clio_Id__c/matter-1", {"Subject": "x"})
    sandbox.grant(["Case.Clio_Id__c"])
    assert sf.Case.upsert("Clio_Id__c/matter-1", {"Subject": "x"}) == 201


def test_custom_objects_need_object_permissions_and_standard_fields_stay_readable(sandbox, sf) -> None:
    sf.toolingexecute("sobjects/CustomObject", method="POST", data={
        "FullName": "Ledger__c", "Metadata": {"label": "Ledger Entry", "pluralLabel": "Ledger Entries",
                                              "nameField": {"type": "Text", "label": "Name"}}})
    assert code_of(sf.query, "SELECT Id FROM Ledger__c") == "INVALID_TYPE"
    assert "Ledger__c" not in {o["name"] for o in sf.describe()["sobjects"]}
    ps = sandbox.grant(objects=["Ledger__c"], name="Ledger_Access")
    assert sf.Ledger__c.create({})["success"]
    row = sf.query("SELECT Id, Name FROM Ledger__c")["records"][0]
    assert row["Name"] == row["Id"]  # Name is defaulted to the record id, as in a real org
    # Standard fields of standard objects: readable and editable through the default profile.
    assert {"Email", "Birthdate", "MailingCity"} <= {f["name"] for f in sf.Contact.describe()["fields"]
                                                     if f["updateable"]}
    ops = sf.query(f"SELECT SobjectType, PermissionsRead, PermissionsDelete FROM ObjectPermissions WHERE ParentId = '{ps}'")
    assert [(r["SobjectType"], r["PermissionsDelete"]) for r in ops["records"]] == [("Ledger__c", True)]


def test_permission_records_are_validated_like_a_real_org(sandbox, sf) -> None:
    ps = sf.PermissionSet.create({"Name": "Validated_Set", "Label": "Validated"})["id"]
    assert code_of(sf.FieldPermissions.create, {"ParentId": ps, "SobjectType": "Contact",
                                                "Field": "Contact.Clio_Id__c", "PermissionsEdit": True}) == \
        "FIELD_INTEGRITY_EXCEPTION"  # Edit depends on Read
    assert code_of(sf.FieldPermissions.create, {"ParentId": ps, "SobjectType": "Contact", "Field": "Contact.Nope__c",
                                                "PermissionsRead": True}) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert code_of(sf.FieldPermissions.create, {"ParentId": ps, "SobjectType": "Contact", "Field": "Contact.LastName",
                                                "PermissionsRead": True}) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert code_of(sf.ObjectPermissions.create, {"ParentId": ps, "SobjectType": "Task", "PermissionsRead": True}) == \
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert code_of(sf.ObjectPermissions.create, {"ParentId": ps, "SobjectType": "Account", "PermissionsDelete": True}) == \
        "FIELD_INTEGRITY_EXCEPTION"
    assert code_of(sf.PermissionSet.create, {"Name": "bad name", "Label": "x"}) == "FIELD_INTEGRITY_EXCEPTION"
    me = sandbox.user_id(sf)
    sf.PermissionSetAssignment.create({"AssigneeId": me, "PermissionSetId": ps})
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.PermissionSetAssignment.create({"AssigneeId": me, "PermissionSetId": ps})
    assert error(ei.value) == {"errorCode": "DUPLICATE_VALUE", "fields": [],
                               "message": "duplicate value found: <unknown> duplicates value on record with id: <unknown>"}
    values = {p["value"] for p in {f["name"]: f for f in sf.ObjectPermissions.describe()["fields"]}[
        "SobjectType"]["picklistValues"]}
    assert {"Account", "Contact", "Case", "Opportunity", "Lead"} <= values and "Task" not in values


def test_a_standard_user_cannot_change_the_schema_or_grant_access(sandbox) -> None:
    member = next(m for m in staff(42) if m.sf_match == "exact")
    s = sandbox.session()
    claims = base64.urlsafe_b64encode(json.dumps({"iss": sandbox.consumer_key, "sub": member.email.lower() + ".sandbox",
                                                  "aud": "x", "exp": str(int(time.time()) + 120)}).encode())
    tok = s.post(f"{sandbox.instance_url}/services/oauth2/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": f"e30.{claims.decode().rstrip('=')}.sig"}).json()["access_token"]
    s.headers["Authorization"] = f"Bearer {tok}"
    base = f"{sandbox.instance_url}/services/data/v59.0"
    r = s.post(f"{base}/tooling/sobjects/CustomField", json={"FullName": "Contact.Mine__c",
                                                              "Metadata": {"label": "m", "type": "Text", "length": 5}})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INSUFFICIENT_ACCESS_OR_READONLY"
    r = s.post(f"{base}/sobjects/PermissionSet", json={"Name": "Mine", "Label": "Mine"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INSUFFICIENT_ACCESS_OR_READONLY"
    fields = {f["name"] for f in s.get(f"{base}/sobjects/Contact/describe").json()["fields"]}
    assert "Email" in fields and "Clio_Id__c" not in fields


# -- 2-5, 8. normalisation and validation ----------------------------------------------------------


def test_empty_strings_are_stored_as_null_and_cannot_key_an_upsert(sf, http) -> None:
    cid = sf.Contact.create({"LastName": "Empty", "Title": "", "Clio_Id__c": "contact-empty"})["id"]
    got = sf.Contact.get(cid)
    assert got["Title"] is None
    res = http("PATCH", "composite/sobjects/Contact/Clio_Id__c", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Contact"}, "Clio_Id__c": "", "LastName": "Keyed on empty"}]}).json()
    assert res[0]["success"] is False and res[0]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert sf.query("SELECT COUNT() FROM Contact WHERE LastName = 'Keyed on empty'")["totalSize"] == 0
    assert http("PATCH", "sobjects/Contact/Clio_Id__c/", json={"LastName": "x"}).status_code == 404


def test_emails_are_lower_cased_through_rest_and_bulk(sf, http) -> None:
    cid = sf.Contact.create({"LastName": "Mail", "Email": "Jane.DOE@Example.COM"})["id"]
    assert sf.Contact.get(cid)["Email"] == "jane.doe@example.com"
    _info, ok, _bad = bulk_job(http, {"object": "Contact", "operation": "insert"}, b"LastName,Email\nBulk,Mixed.Case@Firm.LAW\n")
    assert sf.Contact.get(ok[0]["sf__Id"])["Email"] == "mixed.case@firm.law"


def test_a_repeated_external_id_fails_every_occurrence(sf, http) -> None:
    res = http("PATCH", "composite/sobjects/Contact/Clio_Id__c", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Contact"}, "Clio_Id__c": "contact-twice", "LastName": "One"},
        {"attributes": {"type": "Contact"}, "Clio_Id__c": "CONTACT-TWICE", "LastName": "Two"},
        {"attributes": {"type": "Contact"}, "Clio_Id__c": "contact-once", "LastName": "Three"}]}).json()
    assert [r["success"] for r in res] == [False, False, True]
    assert {r["errors"][0]["statusCode"] for r in res[:2]} == {"DUPLICATE_EXTERNAL_ID"}
    data = b"Clio_Id__c,LastName\n" + b"".join(f"bulk-dup-{i % 3 if i < 4 else i},Row {i}\n".encode()
                                                for i in range(6000))
    info, ok, bad = bulk_job(http, {"object": "Contact", "operation": "upsert", "externalIdFieldName": "Clio_Id__c"},
                             data)
    # bulk-dup-0 repeats at rows 0 and 3, across the sandbox's write chunks too: both fail.
    assert info["numberRecordsFailed"] == 2 and len(ok) == 5998
    assert {r["Clio_Id__c"] for r in bad} == {"bulk-dup-0"}
    assert all(r["sf__Error"].startswith("DUPLICATE_EXTERNAL_ID:") for r in bad)


def test_dates_outside_1700_to_4000_are_rejected(sf, http) -> None:
    assert code_of(sf.Contact.create, {"LastName": "Old", "Birthdate": "1699-12-31"}) == "FIELD_INTEGRITY_EXCEPTION"
    assert code_of(sf.Contact.create, {"LastName": "Far", "Birthdate": "4001-01-01"}) == "FIELD_INTEGRITY_EXCEPTION"
    assert code_of(sf.Task.create, {"Subject": "t", "ReminderDateTime": "1600-01-01T00:00:00Z"}) == \
        "FIELD_INTEGRITY_EXCEPTION"
    assert sf.Contact.create({"LastName": "Edge", "Birthdate": "1700-01-01"})["success"]
    _info, ok, bad = bulk_job(http, {"object": "Contact", "operation": "insert"},
                              b"LastName,Birthdate\nA,1500-06-01\nB,4000-12-31\n")
    assert len(ok) == 1 and bad[0]["sf__Error"].startswith("FIELD_INTEGRITY_EXCEPTION:Birthdate: invalid date")


def test_a_null_checkbox_is_stored_false(sandbox, sf, http) -> None:
    sf.toolingexecute("sobjects/CustomField", method="POST", data={
        "FullName": "Contact.Clio_Is_Client__c", "Metadata": {"label": "Client", "type": "Checkbox",
                                                             "defaultValue": False}})
    sandbox.grant(["Contact.Clio_Is_Client__c"])
    cid = sf.Contact.create({"LastName": "Box", "Clio_Is_Client__c": True, "Clio_Id__c": "contact-box"})["id"]
    sf.Contact.update(cid, {"Clio_Is_Client__c": None})
    assert sf.Contact.get(cid)["Clio_Is_Client__c"] is False
    sf.Contact.update(cid, {"Clio_Is_Client__c": True})
    info, ok, _bad = bulk_job(http, {"object": "Contact", "operation": "upsert", "externalIdFieldName": "Clio_Id__c"},
                              b"Clio_Id__c,Clio_Is_Client__c\ncontact-box,#N/A\n")
    assert info["state"] == "JobComplete" and len(ok) == 1
    assert sf.Contact.get(cid)["Clio_Is_Client__c"] is False


# -- 6. strict SOQL --------------------------------------------------------------------------------


@pytest.mark.parametrize(("soql", "code", "says"), [
    ("SELECT Id FROM Contact WHERE CreatedDate > '2020-01-01T00:00:00Z'", "INVALID_FIELD",
     "value of filter criterion for field 'CreatedDate' must be of type dateTime and should not be enclosed in quotes"),
    ("SELECT Id FROM Contact WHERE CreatedDate > 2020-01-01", "INVALID_FIELD", "must be of type dateTime"),
    ("SELECT Id FROM Contact WHERE Birthdate = 2020-01-01T00:00:00Z", "INVALID_FIELD", "must be of type date "),
    ("SELECT Id FROM Opportunity WHERE Amount = '5'", "INVALID_FIELD", "must be of type currency"),
    ("SELECT Id FROM Contact WHERE LastName = 5", "INVALID_FIELD", "must be of type string and should be enclosed"),
    ("SELECT Id FROM Contact WHERE IsDeleted = 'false'", "INVALID_FIELD", "must be of type boolean"),
    ("SELECT Id FROM Contact WHERE Description = 'x'", "INVALID_FIELD",
     "field 'Description' can not be filtered in a query call"),
    ("SELECT Id FROM Contact ORDER BY Description", "INVALID_FIELD", "can not be sorted"),
    ("SELECT Id FROM Contact LIMIT 10 OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000"),
    ("SELECT Id FROM Contact WHERE Id = '003abc'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: 003abc"),
    ("SELECT Id FROM Contact WHERE AccountId IN ('001000000000000AAA', 'nope')", "INVALID_QUERY_FILTER_OPERATOR",
     "invalid ID field: nope"),
    (r"SELECT Id FROM Contact WHERE LastName = 'a\qb'", "MALFORMED_QUERY", r"Illegal character sequence '\q'"),
    (r"SELECT Id FROM Contact WHERE LastName = 'a\%b'", "MALFORMED_QUERY", r"Illegal character sequence '\%'"),
])
def test_soql_rejects_what_a_real_org_rejects(sf, soql: str, code: str, says: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as ei:
        sf.query(soql)
    assert error(ei.value)["errorCode"] == code and says in error(ei.value)["message"]


def test_soql_literals_that_are_valid(sf) -> None:
    cid = sf.Contact.create({"LastName": "O'Brien 50% \\ off", "Clio_Id__c": "contact-lit"})["id"]
    assert sf.query(r"SELECT Id FROM Contact WHERE LastName = 'O\'Brien 50% \\ off'")["totalSize"] == 1
    assert sf.query(r"SELECT Id FROM Contact WHERE LastName LIKE 'O\'Brien 50\% %'")["totalSize"] == 1
    assert sf.query(r"SELECT Id FROM Contact WHERE LastName LIKE 'O\'Brien 5\%%'")["totalSize"] == 0
    assert sf.query("SELECT Id FROM Contact WHERE CreatedDate > 2020-01-01T00:00:00Z AND Birthdate = null "
                    "AND Clio_Id__c = 'contact-lit'")["totalSize"] == 1
    # A 15-character id finds the record, in = and IN, on Id and on lookups.
    assert sf.query(f"SELECT Id FROM Contact WHERE Id = '{cid[:15]}'")["records"][0]["Id"] == cid
    assert sf.query(f"SELECT Id FROM Contact WHERE Id IN ('{cid[:15]}')")["totalSize"] == 1
    acct = sf.Account.create({"Name": "Fifteen"})["id"]
    sf.Contact.update(cid, {"AccountId": acct})
    assert sf.query(f"SELECT Id FROM Contact WHERE AccountId = '{acct[:15]}'")["totalSize"] == 1
    assert to18(cid[:15]) == cid


# -- 7. Bulk 2.0 upload rules ----------------------------------------------------------------------


def test_a_bulk_job_takes_one_upload_and_one_header(http) -> None:
    jid = http("POST", "jobs/ingest", json={"object": "Contact", "operation": "insert"}).json()["id"]
    assert http("PUT", f"jobs/ingest/{jid}/batches", data=b"LastName\nFirst\n",
                headers={"Content-Type": "text/csv"}).status_code == 201
    second = http("PUT", f"jobs/ingest/{jid}/batches", data=b"LastName\nSecond\n", headers={"Content-Type": "text/csv"})
    assert second.status_code == 400 and second.json()[0]["errorCode"] == "BULK_API_ERROR"
    assert "Found multiple contents for job" in second.json()[0]["message"]
    http("PATCH", f"jobs/ingest/{jid}", json={"state": "Aborted"})
    info, ok, bad = bulk_job(http, {"object": "Contact", "operation": "insert"}, b"LastName,Email,EMAIL\nx,a@b.c,d@e.f\n")
    assert info["state"] == "Failed" and "Duplicate field name found in header: EMAIL" in info["errorMessage"]
    assert ok == bad == []


# -- 9-10. limits and permissions ------------------------------------------------------------------


def test_daily_bulk_batches_count_down_and_run_out(sandbox, sf, http) -> None:
    before = sf.restful("limits")["DailyBulkApiBatches"]["Remaining"]
    rows = b"LastName\n" + b"".join(f"Quota {i}\n".encode() for i in range(10_001))
    info, _ok, _bad = bulk_job(http, {"object": "Contact", "operation": "insert"}, rows)
    assert info["state"] == "JobComplete"
    assert sf.restful("limits")["DailyBulkApiBatches"]["Remaining"] == before - 2  # 10,001 rows: two batches
    sandbox.knobs(bulk_daily_batches=15_000 - before + 2)  # nothing left
    try:
        assert sf.restful("limits")["DailyBulkApiBatches"]["Remaining"] == 0
        r = http("POST", "jobs/ingest", json={"object": "Contact", "operation": "insert"})
        assert r.status_code == 400 and r.json()[0]["errorCode"] == "LIMIT_EXCEEDED"
        v1 = http("POST", f"{sandbox.instance_url}/services/async/59.0/job",
                  json={"operation": "insert", "object": "Contact", "contentType": "JSON"},
                  headers={"X-SFDC-Session": sf.session_id})
        batch = http("POST", f"{sandbox.instance_url}/services/async/59.0/job/{v1.json()['id']}/batch",
                     json=[{"LastName": "x"}], headers={"X-SFDC-Session": sf.session_id})
        assert batch.status_code == 400 and batch.json()["exceptionCode"] == "ExceededQuota"
    finally:
        sandbox.knobs(bulk_daily_batches=15_000)


def test_audit_fields_need_the_permission_and_only_on_insert(sandbox, sf) -> None:
    assert not {f["name"]: f for f in sf.Contact.describe()["fields"]}["CreatedDate"]["createable"]
    assert code_of(sf.Contact.create, {"LastName": "Aud", "CreatedDate": "2019-01-01T00:00:00Z"}) == \
        "INVALID_FIELD_FOR_INSERT_UPDATE"
    ps_fields = {f["name"] for f in sf.PermissionSet.describe()["fields"]}
    assert "PermissionsCreateAuditFields" not in ps_fields  # the org preference is off
    sandbox.knobs(audit_fields=True)
    try:
        assert {f["name"]: f for f in sf.Contact.describe()["fields"]}["CreatedDate"]["createable"]
        cid = sf.Contact.create({"LastName": "Aud", "CreatedDate": "2019-01-01T00:00:00Z"})["id"]
        assert sf.Contact.get(cid)["CreatedDate"] == "2019-01-01T00:00:00.000+0000"
        assert code_of(sf.Contact.update, cid, {"CreatedDate": "2018-01-01T00:00:00Z"}) == \
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        profile = sf.query("SELECT Profile.PermissionsCreateAuditFields FROM User WHERE Username LIKE 'integration%'")
        assert profile["records"][0]["Profile"]["PermissionsCreateAuditFields"] is True
    finally:
        sandbox.knobs(audit_fields=False)


def test_hard_delete_needs_its_permission(sandbox, sf, http) -> None:
    ids = [sf.Account.create({"Name": f"Hard {i}"})["id"] for i in range(2)]
    r = http("POST", "jobs/ingest", json={"object": "Account", "operation": "hardDelete"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "FEATURENOTENABLED"
    sandbox.knobs(hard_delete=True)
    try:
        info, ok, _bad = bulk_job(http, {"object": "Account", "operation": "hardDelete"},
                                  ("Id\n" + "".join(i + "\n" for i in ids)).encode())
        assert info["state"] == "JobComplete" and len(ok) == 2
        assert sf.query_all(f"SELECT Id FROM Account WHERE Id = '{ids[0]}'", include_deleted=True)["totalSize"] == 0
    finally:
        sandbox.knobs(hard_delete=False)


def test_api_versions_above_the_org_are_404_and_retired_ones_410(sandbox, sf) -> None:
    s = sandbox.session()
    s.headers["Authorization"] = f"Bearer {sf.session_id}"
    base = f"{sandbox.instance_url}/services/data"
    versions = [v["version"] for v in s.get(f"{base}/").json()]
    assert versions[0] == "21.0" and versions[-1] == "59.0"
    assert s.get(f"{base}/v59.0/limits").status_code == 200
    assert s.get(f"{base}/v21.0/sobjects/Contact/describe").status_code == 200
    r = s.get(f"{base}/v60.0/limits")
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"
    r = s.get(f"{base}/v20.0/limits")
    assert r.status_code == 410 and r.json()[0]["errorCode"] == "UNSUPPORTED_API_VERSION"
    assert s.get(f"{base}/vlatest/limits").status_code == 404
    r = s.post(f"{sandbox.instance_url}/services/async/19.0/job", json={},
               headers={"X-SFDC-Session": sf.session_id})
    assert r.status_code == 410


# -- 11. malformed bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body", "headers", "code"), [
    ("POST", "sobjects/Account", b"[]", None, "JSON_PARSER_ERROR"),
    ("POST", "sobjects/Account", b"null", None, "JSON_PARSER_ERROR"),
    ("POST", "sobjects/Account", b"", None, "JSON_PARSER_ERROR"),
    ("POST", "sobjects/Account", b"{\"Name\": ", None, "JSON_PARSER_ERROR"),
    ("POST", "sobjects/Account", b"\xff\xfe", None, "JSON_PARSER_ERROR"),
    ("PATCH", "sobjects/Contact/Clio_Id__c/c-1", b"[1]", None, "JSON_PARSER_ERROR"),
    ("POST", "composite/sobjects", b"[]", None, "JSON_PARSER_ERROR"),
    ("POST", "composite/sobjects", b"{\"records\": [1, 2]}", None, "JSON_PARSER_ERROR"),
    ("POST", "composite/sobjects", b"{\"records\": {}}", None, "JSON_PARSER_ERROR"),
    ("POST", "tooling/sobjects/CustomField", b"[]", None, "JSON_PARSER_ERROR"),
    ("POST", "jobs/ingest", b"\"insert\"", None, "JSON_PARSER_ERROR"),
    ("GET", "query/01gXXXXXXXXXXXXXXX-2000", b"", None, "INVALID_QUERY_LOCATOR"),
    ("GET", "query/garbage", b"", None, "INVALID_QUERY_LOCATOR"),
    ("POST", "sobjects/ContentVersion", b"--b\r\nContent-Disposition: form-data; name=\"entity_content\"\r\n\r\n"
     b"{not json\r\n--b\r\nContent-Disposition: form-data; name=\"VersionData\"; filename=\"a.txt\"\r\n\r\nhi\r\n--b--\r\n",
     {"Content-Type": "multipart/form-data; boundary=b"}, "JSON_PARSER_ERROR"),
])
def test_malformed_bodies_are_400_with_the_real_code(http, method, path, body, headers, code) -> None:
    r = http(method, path, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == code, r.text


def test_malformed_bulk_v1_bodies_are_client_errors(sandbox, sf, http) -> None:
    h = {"X-SFDC-Session": sf.session_id, "Content-Type": "application/json"}
    job = http("POST", f"{sandbox.instance_url}/services/async/59.0/job", data=b"[]", headers=h)
    assert job.status_code == 400 and job.json()["exceptionCode"] == "ClientInputError"
    jid = http("POST", f"{sandbox.instance_url}/services/async/59.0/job", headers=h,
               json={"operation": "insert", "object": "Account", "contentType": "JSON"}).json()["id"]
    for body in (b"{}", b"[1, 2]", b"not json"):
        r = http("POST", f"{sandbox.instance_url}/services/async/59.0/job/{jid}/batch", data=body, headers=h)
        assert r.status_code == 400 and r.json()["exceptionCode"] in ("ClientInputError", "InvalidBatch"), body


# -- 12. describe shapes ---------------------------------------------------------------------------


def test_describe_shapes_match_the_recorded_describes(sandbox, sf) -> None:
    sf.toolingexecute("sobjects/CustomObject", method="POST", data={
        "FullName": "Time_Entry__c", "Metadata": {"label": "Time Entry", "pluralLabel": "Time Entries",
                                                  "nameField": {"type": "Text", "label": "Name"}}})
    sf.toolingexecute("sobjects/CustomField", method="POST", data={
        "FullName": "Time_Entry__c.Clio_Note__c", "Metadata": {"label": "Note", "type": "LongTextArea",
                                                              "length": 32768, "visibleLines": 5}})
    sandbox.grant(["Time_Entry__c.Clio_Note__c"], objects=["Time_Entry__c"], name="Time_Access")
    recorded = json.loads((RECORDED / "Custom__c.cumulusci.json").read_text())
    mine = sf.Time_Entry__c.describe()
    assert set(mine) == set(recorded)
    fields = {f["name"]: f for f in mine["fields"]}
    rec_name = {f["name"]: f for f in recorded["fields"]}["Name"]
    for key in ("nillable", "createable", "defaultedOnCreate", "idLookup", "nameField", "type"):
        assert fields["Name"][key] == rec_name[key], key
    note = fields["Clio_Note__c"]
    assert (note["type"], note["extraTypeInfo"], note["length"], note["filterable"]) == \
        ("textarea", "plaintextarea", 32768, False)
    lead = sf.Lead.describe()
    assert lead["keyPrefix"] == "00Q" and {"Company", "LastName", "Status", "Email"} <= {f["name"] for f in lead["fields"]}
    lid = sf.Lead.create({"LastName": "Prospect", "Company": "Acme"})["id"]
    assert sf.Lead.get(lid)["Status"] == "Open - Not Contacted"
    ocr = json.loads((RECORDED / "OpportunityContactRole.cumulusci.json").read_text())
    assert set(sf.OpportunityContactRole.describe()) == set(ocr)
    org = sf.query("SELECT Id, Address, Country FROM Organization")["records"][0]
    assert org["Address"]["country"] == org["Country"] == "US"
    assert set(org["Address"]) == set(json.loads((RECORDED / "Organization.cumulusci.json").read_text())["Address"])
    assert sf.Organization.get(org["Id"])["Address"]["country"] == "US"


def test_the_userinfo_endpoint_names_the_connected_user(sandbox, sf) -> None:
    r = sandbox.session().get(f"{sandbox.instance_url}/services/oauth2/userinfo",
                              headers={"Authorization": f"Bearer {sf.session_id}"})
    assert r.status_code == 200 and r.json()["preferred_username"] == sandbox.username
    assert r.json()["user_id"].startswith("005")


def test_a_content_note_is_updated_by_the_id_it_shares_with_its_document(sf, http) -> None:
    """A ContentNote's Id is also its ContentDocument's: an update by that Id reaches the note, every time."""
    body = base64.b64encode(b"<p>note</p>").decode()
    made = http("POST", "composite/sobjects", json={"allOrNone": False, "records": [
        {"attributes": {"type": "ContentNote"}, "Title": f"[marker {i}] Note {i}", "Content": body}
        for i in range(150)]}).json()
    assert all(r["success"] for r in made), [r for r in made if not r["success"]][:3]
    note_ids = [r["id"] for r in made]
    assert all(i[:3] == "069" for i in note_ids)
    assert sf.query(f"SELECT COUNT() FROM ContentDocument WHERE Id = '{note_ids[0]}'")["totalSize"] == 1
    res = http("PATCH", "composite/sobjects", json={"allOrNone": False, "records": [
        {"attributes": {"type": "ContentNote"}, "id": nid, "Title": f"Note {i}"} for i, nid in enumerate(note_ids)]}).json()
    failed = [r for r in res if not r["success"]]
    assert not failed, f"{len(failed)} of 150 updates failed: {failed[:2]}"
    titles = {r["Title"] for r in sf.query_all("SELECT Title FROM ContentNote WHERE Title LIKE 'Note %'")["records"]}
    assert titles >= {f"Note {i}" for i in range(150)}
