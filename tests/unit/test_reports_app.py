"""The reports app: read-only, report files only, behind Airflow's auth; the firm-facing summary."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from clio2sf.mapping.confirm import confirm, reject
from clio2sf.mapping.spec import load_spec
from clio2sf_airflow import reports_app

pytestmark = pytest.mark.unit


class _User:
    def get_name(self) -> str:
        return "ops_lead"


@pytest.fixture
def staged(tmp_path, monkeypatch):
    root = tmp_path / "harlow_vance" / "m1"
    (root / "discover" / "reference").mkdir(parents=True)
    (root / "discover" / "mapping_spec.html").write_text("<html>spec</html>")
    (root / "discover" / "reference" / "workflows.json").write_text("{}")
    (root / "raw" / "contacts").mkdir(parents=True)
    (root / "raw" / "contacts" / "batch-00001.json").write_text('{"secret": "client data"}')
    (root / "webhooks" / "secrets").mkdir(parents=True)
    (root / "webhooks" / "secrets" / "contact.json").write_text('{"secret": "hmac key"}')
    rdir = root / "reports" / "manual__2026-12-01T10:00:00+00:00"
    rdir.mkdir(parents=True)
    (rdir / "reconciliation.json").write_text(json.dumps({
        "exact": False, "headline": "0 lost, 0 duplicated, 1 amount figure(s) differ",
        "objects": [{"object": "Time_Entry__c", "expected": 10, "loaded": 9, "rejected": 1, "missing": 0, "ok": True,
                     "reject_reasons": {"negative quantity": 1}}],
        "amounts": [{"figure": "bills_total", "source": "1234567.5", "target": "1234567.49", "difference": "-0.01",
                     "ok": False}]}))
    spec = load_spec("harlow_vance")
    confirm(spec, "ops_lead", "2026-12-01T09:00:00+00:00", root / "approvals" / "sample.yaml")
    reject(spec, "firm_reviewer", "hours look wrong", "2026-12-01T09:30:00+00:00", root / "approvals" / "sample.yaml")
    monkeypatch.setenv("AIRFLOW_VAR_CLIO2SF_STAGING_ROOT", f"file://{tmp_path}")
    app = reports_app.create_app()
    app.dependency_overrides[reports_app.require_reader] = lambda: _User()
    return TestClient(app)


def test_without_a_session_nothing_is_served(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_CLIO2SF_STAGING_ROOT", f"file://{tmp_path}")
    client = TestClient(reports_app.create_app())
    for url in ("/", "/harlow_vance/m1/summary", "/harlow_vance/m1/files/discover/mapping_spec.html"):
        assert client.get(url).status_code == 401, url


def test_lists_and_serves_reports_but_never_records(staged):
    listing = staged.get("/harlow_vance/m1/").text
    assert "discover/mapping_spec.html" in listing and "raw/" not in listing
    page = staged.get("/harlow_vance/m1/files/discover/mapping_spec.html")
    assert page.status_code == 200 and page.text == "<html>spec</html>"
    assert page.headers["content-type"].startswith("text/html")
    assert staged.get("/harlow_vance/m1/files/raw/contacts/batch-00001.json").status_code == 404
    assert staged.get("/harlow_vance/m1/files/webhooks/secrets/contact.json").status_code == 404
    assert "webhooks" not in listing
    assert staged.get("/harlow_vance/m1/files/../../etc/passwd").status_code == 404
    assert staged.get("/harlow_vance/m1/files/discover/%2e%2e/raw/contacts/batch-00001.json").status_code == 404
    assert staged.get("/harlow_vance/nope/").status_code == 404
    assert "m1" in staged.get("/").text
    assert staged.post("/harlow_vance/m1/files/discover/mapping_spec.html").status_code == 405  # read-only


def test_summary_names_firm_money_rejects_and_signoffs(staged):
    text = staged.get("/harlow_vance/m1/summary").text
    assert "Harlow &amp; Vance LLP" in text and "m1" in text
    assert "1,234,567.50" in text and "1,234,567.49" in text  # money formatted
    assert "Time Entry" in text and "negative quantity" in text  # readable label, reject reason
    assert "firm_reviewer" in text and "hours look wrong" in text and "rejected" in text
    assert "Workflows" in text  # left behind by design
    assert "amount figure(s) differ" in text
