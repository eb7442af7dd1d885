"""ClioHook against requests-mock: auth, pacing, typed errors, retries, paging, downloads."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import parse_qs

import pytest
import requests
import tenacity
from urllib3.exceptions import ProtocolError

from clio2sf.ratebudget import RateBudget
from clio2sf_airflow.hooks.clio import (
    ClioAuthError,
    ClioBadRequest,
    ClioHook,
    ClioRateLimited,
    ClioServerError,
)

pytestmark = pytest.mark.unit

BASE = "http://127.0.0.1:8701"
TOKEN_URL = f"{BASE}/oauth/token"
SECRET, REFRESH, ACCESS = "client-secret-xyz", "refresh-token-abc", "access-token-123"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


@pytest.fixture
def conn(monkeypatch):
    def set_conn(**over):
        conn = {"conn_type": "http", "host": "http://127.0.0.1", "port": 8701, "login": "client-id",
                "password": SECRET, "extra": {"refresh_token": REFRESH}}
        conn.update(over)
        monkeypatch.setenv("AIRFLOW_CONN_CLIO_DEFAULT", json.dumps(conn))

    set_conn()
    return set_conn


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def hook(conn, clock):
    return ClioHook(retry_wait=tenacity.wait_none(), max_attempts=4,
                    budget=RateBudget("test", None, clock=clock, sleep=clock.sleep))


@pytest.fixture
def token(requests_mock):
    return requests_mock.post(TOKEN_URL, json={"access_token": ACCESS, "token_type": "bearer", "expires_in": 3600})


def _rl(remaining=49, reset=1060):
    return {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset)}


def test_provider_conventions():
    assert (ClioHook.conn_name_attr, ClioHook.default_conn_name, ClioHook.conn_type, ClioHook.hook_name) == (
        "clio_conn_id", "clio_default", "http", "Clio")
    from airflow.providers.http.hooks.http import HttpHook

    assert not issubclass(ClioHook, HttpHook)


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({}, "http://127.0.0.1:8701"),
        ({"host": "app.clio.com", "port": None}, "https://app.clio.com"),
        ({"host": "127.0.0.1", "schema": "http", "port": 9000}, "http://127.0.0.1:9000"),
        ({"host": "https://eu.app.clio.com/", "port": None}, "https://eu.app.clio.com"),
    ],
)
def test_base_url(conn, over, expected):
    conn(**over)
    hook = ClioHook()
    assert hook.base_url == expected
    assert hook.token_url == f"{expected}/oauth/token"
    assert hook.api_version == "4.0.9"


def test_extras_token_url_version_verify_timeout(conn):
    conn(extra={"refresh_token": REFRESH, "token_url": "https://auth.test/tok", "api_version": "4.0.10",
                "ca_bundle": "/etc/ca.pem", "timeout": "5"})
    hook = ClioHook()
    assert (hook.token_url, hook.api_version, hook.verify, hook.timeout) == ("https://auth.test/tok", "4.0.10", "/etc/ca.pem", 5.0)
    conn(extra={"refresh_token": REFRESH, "verify": "false", "token_url": ""})
    with pytest.raises(ClioAuthError, match="insecure_skip_tls_verify"):
        _ = ClioHook().verify
    conn(extra={"refresh_token": REFRESH, "verify": "false", "insecure_skip_tls_verify": True, "token_url": ""})
    hook = ClioHook()
    assert hook.verify is False and hook.token_url == f"{BASE}/oauth/token"


def test_refresh_form_encoded_and_cached(hook, token, requests_mock):
    api = requests_mock.get(f"{BASE}/api/v4/contacts.json", json={"data": []}, headers=_rl())
    hook.get_page("contacts", {"fields": "id"})
    hook.get_page("contacts", {"fields": "id"})
    assert token.call_count == 1
    form = parse_qs(token.last_request.text)
    assert form == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH],
                    "client_id": ["client-id"], "client_secret": [SECRET]}
    assert token.last_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    sent = api.last_request.headers
    assert sent["Authorization"] == f"Bearer {ACCESS}" and sent["X-API-VERSION"] == "4.0.9"
    assert "refresh_token" not in {k.lower() for k in sent}
    assert (hook.requests_made, hook.token_requests) == (2, 1)  # API requests; the refresh is not one


def test_refresh_on_expiry(hook, requests_mock, monkeypatch):
    token = requests_mock.post(TOKEN_URL, json={"access_token": ACCESS, "expires_in": 30})
    requests_mock.get(f"{BASE}/api/v4/users.json", json={"data": []})
    hook.get_page("users")
    hook.get_page("users")
    assert token.call_count == 2  # 30 s is inside the safety margin: refreshed every time


def test_401_invalid_token_refreshes_and_resends(hook, token, requests_mock):
    api = requests_mock.get(f"{BASE}/api/v4/matters.json", [
        {"status_code": 401, "json": {"error": "invalid_token", "error_description": "expired"}},
        {"json": {"data": [{"id": 7}]}},
    ])
    body, _ = hook.get_page("matters", {"fields": "id"})
    assert body == {"data": [{"id": 7}]}
    assert token.call_count == 2 and api.call_count == 2


def test_revoked_refresh_token_is_a_clear_auth_error(hook, requests_mock, caplog):
    requests_mock.post(TOKEN_URL, status_code=400, json={"error": "invalid_grant", "error_description": REFRESH})
    with pytest.raises(ClioAuthError, match="refused the refresh token.*invalid_grant") as err:
        hook.get_page("matters")
    assert REFRESH not in str(err.value) and SECRET not in str(err.value)
    assert REFRESH not in caplog.text


def test_missing_credentials(conn):
    conn(extra={})
    with pytest.raises(ClioAuthError, match=r"lacks extra.refresh_token"):
        ClioHook().get_page("matters")


def test_429_honours_retry_after_via_shared_budget(hook, token, requests_mock, clock):
    api = requests_mock.get(f"{BASE}/api/v4/contacts.json", [
        {"status_code": 429, "headers": {"Retry-After": "17", **_rl(0)}, "json": {"error": {"type": "RateLimited", "message": "slow"}}},
        {"json": {"data": []}, "headers": _rl(49, 1100)},
    ])
    hook.get_page("contacts")
    assert api.call_count == 2
    assert sum(clock.slept) >= 17


def test_5xx_and_dropped_connections_retried_then_bounded(hook, token, requests_mock):
    api = requests_mock.get(f"{BASE}/api/v4/bills.json", [
        {"status_code": 503},
        {"exc": requests.exceptions.ConnectionError("reset by peer")},
        {"exc": requests.exceptions.ChunkedEncodingError("dropped mid-body")},
        {"json": {"data": [{"id": 1}]}},
    ])
    assert hook.get_page("bills")[0] == {"data": [{"id": 1}]}
    assert api.call_count == 4
    requests_mock.get(f"{BASE}/api/v4/tasks.json", status_code=502)
    with pytest.raises(ClioServerError, match="GET http://127.0.0.1:8701/api/v4/tasks.json: HTTP 502"):
        hook.get_page("tasks")
    assert requests_mock.request_history[-1].url.startswith(f"{BASE}/api/v4/tasks.json")
    assert sum(1 for r in requests_mock.request_history if "tasks" in r.url) == 4


def test_rate_limited_after_all_attempts(hook, token, requests_mock):
    requests_mock.get(f"{BASE}/api/v4/tasks.json", status_code=429, headers={"Retry-After": "0"})
    with pytest.raises(ClioRateLimited) as err:
        hook.get_page("tasks")
    assert err.value.retry_after == 0


def test_bad_request_names_endpoint_and_fields_not_body(hook, token, requests_mock):
    requests_mock.get(f"{BASE}/api/v4/matters.json", status_code=400,
                      json={"error": {"type": "ArgumentError", "message": "unknown field nope"}, "data": {"name": "Secret"}})
    with pytest.raises(ClioBadRequest) as err:
        hook.get_page("matters", {"fields": "id,nope"})
    msg = str(err.value)
    assert "GET http://127.0.0.1:8701/api/v4/matters.json: HTTP 400" in msg and "fields=id,nope" in msg
    assert "ArgumentError" in msg and "Secret" not in msg and err.value.status == 400
    assert sum(1 for r in requests_mock.request_history if "matters" in r.url) == 1  # not retried


def test_paginate_follows_next_exactly(hook, token, requests_mock):
    nxt = f"{BASE}/api/v4/matters.json?fields=id&limit=200&page_token=BAh7opaque%3D%3D"
    requests_mock.get(f"{BASE}/api/v4/matters.json", [
        {"json": {"data": [{"id": 1}], "meta": {"paging": {"next": nxt}}}},
        {"json": {"data": [{"id": 2}], "meta": {"paging": {}}}},
    ])
    pages = list(hook.paginate("matters", "id", {"order": "id(asc)", "status": "open"},
                               updated_since="2024-01-01T00:00:00Z"))
    assert [p["data"][0]["id"] for p in pages] == [1, 2]
    first, second = [r for r in requests_mock.request_history if "matters" in r.url]
    assert parse_qs(first.query) == {"order": ["id(asc)"], "limit": ["200"], "fields": ["id"],
                                     "status": ["open"], "updated_since": ["2024-01-01t00:00:00z"]}
    assert second.url == nxt


def test_budget_paces_requests(conn, token, requests_mock, clock):
    hook = ClioHook(retry_wait=tenacity.wait_none(), budget=RateBudget("t", None, clock=clock, sleep=clock.sleep))
    requests_mock.get(f"{BASE}/api/v4/users.json", json={"data": []}, headers=_rl(10, 1010))
    for _ in range(3):
        hook.get_page("users")
    assert clock.slept and clock.slept[0] == pytest.approx(1.0)  # 10 left over 10 s


def test_download_follows_303_without_authorization(hook, token, requests_mock):
    api = requests_mock.get(f"{BASE}/api/v4/documents/55/download.json", status_code=303,
                            headers={"Location": "https://storage.test/blob/55?sig=abc"})
    blob = requests_mock.get("https://storage.test/blob/55?sig=abc", content=b"%PDF-1.7 hello")
    assert b"".join(hook.download_document(55, 2)) == b"%PDF-1.7 hello"
    assert parse_qs(api.last_request.query) == {"document_version_id": ["2"]}
    assert api.last_request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert "Authorization" not in blob.last_request.headers


def test_download_zero_bytes(hook, token, requests_mock):
    requests_mock.get(f"{BASE}/api/v4/documents/56/download.json", status_code=303, headers={"Location": "https://storage.test/56"})
    requests_mock.get("https://storage.test/56", content=b"")
    assert b"".join(hook.download_document(56)) == b""


class _Dropping(io.BytesIO):
    """A body that breaks after the first read, like a connection cut mid-transfer."""

    def read(self, *args, **kwargs):
        if self.tell() > 0:
            raise ProtocolError("Connection broken: IncompleteRead")
        return super().read(4)


def test_download_resumes_after_mid_body_drop(hook, token, requests_mock):
    requests_mock.get(f"{BASE}/api/v4/documents/57/download.json", status_code=303, headers={"Location": "https://storage.test/57"})
    blob = requests_mock.get("https://storage.test/57", [{"body": _Dropping(b"abcdefghij")}, {"content": b"abcdefghij"}])
    assert b"".join(hook.download_document(57)) == b"abcdefghij"
    assert blob.call_count == 2


def test_download_404_is_bad_request(hook, token, requests_mock):
    requests_mock.get(f"{BASE}/api/v4/documents/58/download.json", status_code=404)
    with pytest.raises(ClioBadRequest, match="documents/58/download.json: HTTP 404"):
        b"".join(hook.download_document(58))


def test_who_am_i_and_test_connection(hook, token, requests_mock, conn, clock):
    requests_mock.get(f"{BASE}/api/v4/users/who_am_i.json", json={"data": {"id": 1001, "name": "Ann"}})
    assert hook.who_am_i() == {"id": 1001, "name": "Ann"}
    assert hook.test_connection() == (True, "Connected to Clio as user 1001")
    requests_mock.post(TOKEN_URL, status_code=401, json={"error": "invalid_client"})
    fresh = ClioHook(retry_wait=tenacity.wait_none(), budget=RateBudget("t2", None, clock=clock, sleep=clock.sleep))
    ok, msg = fresh.test_connection()
    assert not ok and "ClioAuthError" in msg and SECRET not in msg


def test_redacts_tokens_in_connection_errors(hook, token, requests_mock, caplog):
    caplog.set_level(logging.WARNING)
    requests_mock.get(f"{BASE}/api/v4/users.json", exc=requests.exceptions.ConnectionError(f"boom {ACCESS}"))
    with pytest.raises(requests.exceptions.ConnectionError) as err:
        hook.get_page("users")
    assert ACCESS not in str(err.value) and "***" in str(err.value)
    assert ACCESS not in caplog.text


def test_shared_state_store_from_a_connection(conn, monkeypatch, tmp_path):
    from types import SimpleNamespace

    from clio2sf.sharedstate import FileStore, SqlStore
    from clio2sf_airflow.hooks.clio import ClioError, state_store_url

    pg = SimpleNamespace(conn_id="clio2sf_state", conn_type="postgres", login="airflow", password="p@ss:/x",
                         host="db", port=5432, schema="airflow")
    assert state_store_url(pg) == "postgresql+psycopg2://airflow:p%40ss%3A%2Fx@db:5432/airflow"
    # its driver is installed with the bundle (requirements.txt): the engine loads it without connecting
    import sqlalchemy as sa

    sa.create_engine(state_store_url(pg)).dispose()
    with pytest.raises(ClioError, match="http"):
        state_store_url(SimpleNamespace(conn_id="x", conn_type="http", host="h"))
    # without a state connection: one host's file store; with one: every grant's row in its database
    monkeypatch.setenv("CLIO2SF_RATE_DIR", str(tmp_path / "rate"))
    assert isinstance(ClioHook().shared_store, FileStore)
    monkeypatch.setenv("AIRFLOW_CONN_CLIO2SF_STATE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.db")}))
    hook = ClioHook()
    assert isinstance(hook.shared_store, SqlStore) and hook.budget.store is hook.shared_store
    assert hook.grant_key.startswith("clio-") and REFRESH not in hook.grant_key
