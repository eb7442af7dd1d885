"""The Clio webhook receiver app (in-process) and the staging of deliveries: ids only, signed only."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest
from airflow.sdk import ObjectStoragePath
from fastapi.testclient import TestClient

from clio2sf import webhook_events as ev
from clio2sf_airflow.webhooks.receiver import app

pytestmark = pytest.mark.unit
SECRET = "s" * 64


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIO2SF_STAGING_ROOT", f"file://{tmp_path}")
    monkeypatch.delenv("AIRFLOW_VAR_CLIO2SF_STAGING_ROOT", raising=False)
    mroot = ObjectStoragePath(f"file://{tmp_path}") / "firm_a" / "m1"
    ev.write_secrets(mroot, "contact", [SECRET])
    return mroot


@pytest.fixture
def client():
    return TestClient(app)


def signed(body: dict, secret: str = SECRET) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    return raw, {"X-Hook-Signature": hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest(),
                 "Content-Type": "application/json"}


DELIVERY = {"data": {"id": 42, "etag": '"abc"', "name": "Privileged Client"}, "meta": {"event": "updated",
                                                                                     "webhook_id": 7}}


def test_handshake_echoes_only_a_registered_secret(root, client):
    ok = client.post("/firm_a/m1/contact", headers={"X-Hook-Secret": SECRET}, content=b"{}")
    assert ok.status_code == 200 and ok.headers["X-Hook-Secret"] == SECRET
    bad = client.post("/firm_a/m1/contact", headers={"X-Hook-Secret": "t" * 64}, content=b"{}")
    assert bad.status_code == 401 and "X-Hook-Secret" not in bad.headers
    none = client.post("/firm_a/m1/matter", headers={"X-Hook-Secret": SECRET}, content=b"{}")
    assert none.status_code == 401  # no webhook registered for matters


def test_signed_delivery_keeps_ids_only_and_once(root, client, caplog):
    raw, headers = signed(DELIVERY)
    with caplog.at_level(logging.INFO):
        first = client.post("/firm_a/m1/contact", content=raw, headers=headers)
        again = client.post("/firm_a/m1/contact", content=raw, headers=headers)
    assert first.json() == {"ok": True, "duplicate": False} and again.json() == {"ok": True, "duplicate": True}
    [(name, doc)] = ev.pending_events(root, "contact")
    assert {k: doc[k] for k in ("id", "event", "webhook_id")} == {"id": 42, "event": "updated", "webhook_id": 7}
    assert "name" not in doc and "etag" not in doc
    assert "Privileged" not in caplog.text
    health = ev.health(root, {"models": {"contact": {"webhook_id": 7, "status": "enabled",
                                                      "expires_at": "2099-01-01T00:00:00Z"}}})
    assert health["contact"]["last_event"] == "updated" and health["contact"]["pending_events"] == 1
    assert ev.consume(root, "contact", [name]) == 1 and ev.pending_events(root, "contact") == []


@pytest.mark.parametrize("headers", [
    {},  # unsigned
    {"X-Hook-Signature": "0" * 64},  # wrong
    {"X-Hook-Signature": hmac.new(b"another secret", json.dumps(DELIVERY).encode(), hashlib.sha256).hexdigest()},
])
def test_unsigned_or_forged_deliveries_are_refused_and_not_logged(root, client, caplog, headers):
    with caplog.at_level(logging.INFO):
        r = client.post("/firm_a/m1/contact", content=json.dumps(DELIVERY).encode(), headers=headers)
    assert r.status_code == 401
    assert ev.pending_events(root, "contact") == []
    assert "refused" in caplog.text and "Privileged" not in caplog.text


def test_a_rotated_secret_stays_valid_until_removed(root, client):
    ev.write_secrets(root, "contact", ["new" * 20, SECRET])
    raw, headers = signed(DELIVERY)
    assert client.post("/firm_a/m1/contact", content=raw, headers=headers).status_code == 200
    ev.write_secrets(root, "contact", ["new" * 20])
    raw, headers = signed({**DELIVERY, "data": {"id": 43}})
    assert client.post("/firm_a/m1/contact", content=raw, headers=headers).status_code == 401


@pytest.mark.parametrize(("body", "status"), [
    ({"data": {"id": "x"}, "meta": {"event": "updated"}}, 400),
    ({"data": {"id": 5}, "meta": {"event": "matter_opened"}}, 400),  # not an event of contacts
    ({"data": {"id": 5}}, 400),
])
def test_signed_but_malformed_payloads_are_refused(root, client, body, status):
    raw, headers = signed(body)
    assert client.post("/firm_a/m1/contact", content=raw, headers=headers).status_code == status
    assert ev.pending_events(root, "contact") == []


@pytest.mark.parametrize("path", ["/firm_a/../contact", "/firm_a/m1/planet", "/..%2F/m1/contact"])
def test_paths_outside_a_migration_or_model_are_refused(root, client, path):
    raw, headers = signed(DELIVERY)
    assert client.post(path, content=raw, headers=headers).status_code in (401, 404, 405)


def test_health(client):
    assert client.get("/health").json() == {"ok": True}
