"""The Clio sandbox over HTTP: OAuth, Clio's conventions, the official spec, paging and deltas."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from clio2sf.catalog import BY_NAME, CLIO_OBJECTS
from sandbox.clio.schema import model
from sandbox.clio.spec import load_spec
from sandbox.clio.testing import ClioSandbox, run_clio_sandbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClioSandbox]:
    with run_clio_sandbox(tmp_path_factory.mktemp("clio"), preset="demo", rate_limit=None, token_ttl=3600) as sb:
        yield sb


def page_all(http: requests.Session, clio: ClioSandbox, endpoint: str, params: dict) -> list[dict]:
    url, out, query = f"{clio.base_url}/api/v4/{endpoint}.json", [], dict(params)
    while url:
        r = http.get(url, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["data"]
        url, query = body["meta"]["paging"].get("next"), None
    return out


def validate(openapi: OpenAPI, resp: requests.Response, spec_path: str, params: dict | None = None) -> None:
    req = requests.Request("GET", f"https://app.clio.com/api/v4{spec_path}", params=params or {}).prepare()
    openapi.validate_response(RequestsOpenAPIRequest(req), RequestsOpenAPIResponse(resp))


# --- OAuth ---------------------------------------------------------------------------------------
def test_authorization_code_flow(clio: ClioSandbox) -> None:
    r = requests.get(f"{clio.base_url}/oauth/authorize", params={
        "response_type": "code", "client_id": clio.client_id, "redirect_uri": clio.redirect_uri, "state": "xyz"},
        allow_redirects=False)
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    q = parse_qs(loc.query)
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == clio.redirect_uri and q["state"] == ["xyz"]
    r = requests.post(f"{clio.base_url}/oauth/token", data={
        "grant_type": "authorization_code", "code": q["code"][0], "client_id": clio.client_id,
        "client_secret": clio.client_secret, "redirect_uri": clio.redirect_uri})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600 and body["refresh_token"] == clio.refresh_token
    who = requests.get(f"{clio.base_url}/api/v4/users/who_am_i.json", params={"fields": "id,name"},
                       headers={"Authorization": f"Bearer {body['access_token']}"})
    assert who.status_code == 200 and who.json()["data"]["id"] == 1001
    # The code is single use; a wrong secret is refused.
    again = requests.post(f"{clio.base_url}/oauth/token", data={
        "grant_type": "authorization_code", "code": q["code"][0], "client_id": clio.client_id,
        "client_secret": clio.client_secret, "redirect_uri": clio.redirect_uri})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    bad = requests.post(f"{clio.base_url}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": clio.refresh_token, "client_id": clio.client_id,
        "client_secret": "wrong"})
    assert bad.status_code == 401


def test_revoked_and_missing_tokens_get_invalid_token(clio: ClioSandbox) -> None:
    tok = clio.access_token()
    h = {"Authorization": f"Bearer {tok}"}
    assert requests.get(f"{clio.base_url}/api/v4/matters.json", headers=h).status_code == 200
    assert clio.revoke(tok) == 1
    r = requests.get(f"{clio.base_url}/api/v4/matters.json", headers=h)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert requests.get(f"{clio.base_url}/api/v4/matters.json").status_code == 401


def test_tokens_expire(tmp_path) -> None:
    with run_clio_sandbox(tmp_path, preset="tiny", rate_limit=None, token_ttl=1) as sb:
        h = {"Authorization": f"Bearer {sb.access_token()}"}
        assert requests.get(f"{sb.base_url}/api/v4/users.json", headers=h).status_code == 200
        time.sleep(1.2)
        r = requests.get(f"{sb.base_url}/api/v4/users.json", headers=h)
        assert r.status_code == 401 and r.json()["error"] == "invalid_token"


# --- conventions ---------------------------------------------------------------------------------
def test_field_selection_rules(clio: ClioSandbox, http: requests.Session) -> None:
    base = f"{clio.base_url}/api/v4/matters.json"
    r = http.get(base, params={"limit": 3})
    assert [set(x) for x in r.json()["data"]] == [{"id", "etag"}] * 3
    r = http.get(base, params={"limit": 1, "fields": "id,client{name},practice_area"})
    rec = r.json()["data"][0]
    assert set(rec) == {"id", "client", "practice_area"} and set(rec["client"]) == {"name"}
    assert set(rec["practice_area"]) == {"id", "etag"}
    for bad in ("id,colour", "client{company{name}}", "client{colour}"):
        r = http.get(base, params={"fields": bad})
        assert r.status_code == 400 and r.json()["error"]["type"] == "ArgumentError", bad
    for limit in ("0", "201", "x"):
        assert http.get(base, params={"limit": limit}).status_code == 400
    assert http.get(f"{clio.base_url}/api/v4/users.json", params={"limit": 2000}).status_code == 200
    assert http.get(f"{clio.base_url}/api/v4/notes.json").status_code == 400  # type is required


def test_versions_etags_and_quantity_units(clio: ClioSandbox, http: requests.Session) -> None:
    url = f"{clio.base_url}/api/v4/activities.json"
    r = http.get(url, params={"limit": 1, "type": "TimeEntry", "fields": "id,quantity,quantity_in_hours"})
    assert r.headers["X-API-VERSION"] == "4.0.9"
    rec = r.json()["data"][0]
    assert rec["quantity"] == pytest.approx(rec["quantity_in_hours"] * 3600, abs=1)
    old = http.get(url, params={"limit": 1, "type": "TimeEntry", "fields": "id,quantity,quantity_in_hours"},
                   headers={"X-API-VERSION": "4.0.3"})
    assert old.headers["X-API-VERSION"] == "4.0.3" and old.json()["data"][0]["quantity"] == rec["quantity_in_hours"]
    assert http.get(url, headers={"X-API-VERSION": "3.9.9"}).status_code == 410
    show = http.get(f"{clio.base_url}/api/v4/activities/{rec['id']}.json")
    etag = show.headers["ETag"]
    assert etag == show.json()["data"]["etag"] and etag.startswith('"') and "Last-Modified" in show.headers
    assert http.get(show.url, headers={"If-None-Match": etag}).status_code == 304
    stale = http.patch(show.url, json={"data": {"note": "x"}}, headers={"If-Match": '"stale"'})
    assert stale.status_code == 412
    assert http.get(f"{clio.base_url}/api/v4/activities/999999999.json").status_code == 404


def test_offset_paging_cap_and_order(clio: ClioSandbox, http: requests.Session) -> None:
    url = f"{clio.base_url}/api/v4/communications.json"
    r = http.get(url, params={"order": "date(desc)", "limit": 5, "fields": "id,date"})
    dates = [x["date"] for x in r.json()["data"]]
    assert dates == sorted(dates, reverse=True)
    assert "offset=5" in r.json()["meta"]["paging"]["next"]
    r = http.get(url, params={"offset": 9990, "limit": 20})
    assert r.status_code == 422 and r.json()["error"]["type"] == "ArgumentError"


def test_spec_validation_of_every_endpoint(clio: ClioSandbox, http: requests.Session, openapi: OpenAPI) -> None:
    """Every served endpoint, several selections and pages, validated against clio-cli's spec."""
    checked = 0
    for obj in CLIO_OBJECTS:
        stamps = ",".join(f for f in ("id", "etag", "created_at", "updated_at")
                          if f in model().fields(model().operations[obj.endpoint].schema))
        for fields in (None, stamps, obj.fields):
            params = dict(obj.list_params) | {"limit": 3} | ({"fields": fields} if fields else {})
            r = http.get(f"{clio.base_url}/api/v4/{obj.endpoint}.json", params=params)
            assert r.status_code == 200, (obj.name, r.text)
            validate(openapi, r, f"/{obj.endpoint}.json", params)
            nxt = r.json()["meta"]["paging"].get("next")
            if nxt:
                r2 = http.get(nxt)
                validate(openapi, r2, f"/{obj.endpoint}.json", parse_qs(urlsplit(nxt).query))
            checked += 1
        first = r.json()["data"][0]["id"]
        if "get" in load_spec()["paths"].get(f"/{obj.endpoint}/{{id}}.json", {}):
            show = http.get(f"{clio.base_url}/api/v4/{obj.endpoint}/{first}.json", params={"fields": obj.fields})
            assert show.status_code == 200, (obj.name, show.text)
            validate(openapi, show, f"/{obj.endpoint}/{first}.json", {"fields": obj.fields})
    for path, params in (("/users/who_am_i.json", {"fields": BY_NAME["users"].fields}),
                         ("/settings/billing.json", {"fields": "id,etag,currency,rounding,tax_rate"}),
                         ("/folders.json", {"fields": "id,etag,name,root,parent{id,name},matter{id}"}),
                         ("/calendars.json", {"fields": "id,etag,name,type,permission"}),
                         ("/documents/1/versions.json", {"fields": "id,uuid,version_number,size,fully_uploaded"})):
        r = http.get(f"{clio.base_url}/api/v4{path}", params=params)
        assert r.status_code == 200, (path, r.text)
        validate(openapi, r, path, params | ({"id": 1} if "versions" in path else {}))
        checked += 1
    assert checked == 3 * len(CLIO_OBJECTS) + 5


def test_spec_validation_can_fail(clio: ClioSandbox, http: requests.Session, openapi: OpenAPI) -> None:
    r = http.get(f"{clio.base_url}/api/v4/contacts.json", params={"fields": "id,type", "limit": 1})
    r._content = r.content.replace(b'"type":"', b'"type":"Bogus')
    with pytest.raises(Exception, match="(?i)valid"):
        validate(openapi, r, "/contacts.json", {"fields": "id,type", "limit": 1})


# --- paging, counts, deltas ----------------------------------------------------------------------
def test_paging_returns_every_record_once_and_matches_counts(clio: ClioSandbox, http: requests.Session) -> None:
    counts = clio.counts(CLIO_OBJECTS)
    assert set(counts) == {o.name for o in CLIO_OBJECTS}
    for obj in CLIO_OBJECTS:
        recs = page_all(http, clio, obj.endpoint, dict(obj.list_params) | {"fields": obj.fields, "limit": 200})
        ids = [r["id"] for r in recs]
        assert len(ids) == len(set(ids)) == counts[obj.name] > 0, obj.name
        assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    assert sum(counts.values()) > 2000  # the demo firm holds a few thousand records
    small = page_all(http, clio, "matters", {"limit": 7})
    assert len(small) == counts["matters"]


def test_updated_since_returns_exactly_the_mutated_records(clio: ClioSandbox, http: requests.Session) -> None:
    def newest(endpoint: str, params: dict | None = None) -> str:
        recs = page_all(http, clio, endpoint, (params or {}) | {"fields": "id,updated_at"})
        return max(r["updated_at"] for r in recs)

    marks = {e: newest(e) for e in ("contacts", "matters", "activities", "tasks", "calendar_entries")}
    contact = page_all(http, clio, "contacts", {"type": "Person", "fields": "id,etag,email_addresses{id}",
                                               "limit": 5})[0]
    # A nested change (a new email) through the API bumps the parent's updated_at and etag.
    r = http.patch(f"{clio.base_url}/api/v4/contacts/{contact['id']}.json",
                   params={"fields": "id,etag,email_addresses{address}"},
                   json={"data": {"email_addresses": [{"name": "Other", "address": "new@x.example"}]}})
    assert r.status_code == 200 and r.json()["data"]["etag"] != contact["etag"]
    assert "new@x.example" in [e["address"] for e in r.json()["data"]["email_addresses"]]
    matter = page_all(http, clio, "matters", {"fields": "id,custom_field_values{id,field_type}", "limit": 3})[2]
    cfv = matter["custom_field_values"][0]
    clio.mutate("matters", "update", matter["id"], {"custom_field_values": [{"id": cfv["id"], "_destroy": True}]})
    new_task = http.post(f"{clio.base_url}/api/v4/tasks.json", params={"fields": "id,name,assignee{id,type}"},
                         json={"data": {"name": "Delta task", "description": "d", "priority": "high",
                                        "assignee": {"id": 1002, "type": "User"}}})
    assert new_task.status_code == 201 and new_task.json()["data"]["assignee"] == {"id": 1002, "type": "User"}
    act = page_all(http, clio, "activities", {"type": "TimeEntry", "flat_rate": "false", "fields": "id", "limit": 1})[0]
    upd = http.patch(f"{clio.base_url}/api/v4/activities/{act['id']}.json", params={"fields": "quantity,total,price"},
                     json={"data": {"quantity": 7200}})
    assert upd.json()["data"]["total"] == pytest.approx(upd.json()["data"]["price"] * 2)
    cal = page_all(http, clio, "calendar_entries", {"fields": "id", "limit": 1})[0]
    assert http.delete(f"{clio.base_url}/api/v4/calendar_entries/{cal['id']}.json").status_code == 204
    assert http.get(f"{clio.base_url}/api/v4/calendar_entries/{cal['id']}.json").status_code == 404
    expected = {"contacts": {contact["id"]}, "matters": {matter["id"]}, "activities": {act["id"]},
                "tasks": {new_task.json()["data"]["id"]}, "calendar_entries": set()}
    for endpoint, mark in marks.items():
        got = {r["id"] for r in page_all(http, clio, endpoint, {"updated_since": mark, "fields": "id"})}
        assert got == expected[endpoint], endpoint


def test_documents_download_through_signed_url(clio: ClioSandbox, http: requests.Session) -> None:
    docs = page_all(http, clio, "documents", {"fields": "id,content_type,size,latest_document_version{id,size}"})
    seen = set()
    for doc in docs[:10]:
        r = http.get(f"{clio.base_url}/api/v4/documents/{doc['id']}/download.json", allow_redirects=False)
        assert r.status_code == 303
        blob = requests.get(r.headers["Location"])  # no bearer token
        assert blob.status_code == 200 and len(blob.content) == doc["size"]
        assert blob.headers["content-type"].startswith(doc["content_type"])
        seen.add(doc["content_type"])
    assert len(seen) == 5
    tampered = r.headers["Location"].replace("signature=", "signature=0")
    assert requests.get(tampered).status_code == 403
    versions = http.get(f"{clio.base_url}/api/v4/documents/{docs[0]['id']}/versions.json",
                        params={"fields": "id,version_number"}).json()["data"]
    assert [v["version_number"] for v in versions] == list(range(1, len(versions) + 1))


def test_request_log_records_api_calls_but_not_admin(clio: ClioSandbox, http: requests.Session) -> None:
    before = len(clio.request_log())
    http.get(f"{clio.base_url}/api/v4/users.json")
    clio.counts()
    new = clio.request_log(before)
    assert [(e["method"], e["path"], e["status"]) for e in new] == [("GET", "/api/v4/users.json", 200)]
    assert new[0]["token"] and len(new[0]["token"]) == 12  # a hash, never the token itself
    lines = (clio.data_dir / "requests.jsonl").read_text().splitlines()
    assert len(lines) >= before + 1
