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


def _stage_diff(tmp_path) -> None:
    from clio2sf import diff, reports

    root = tmp_path / "harlow_vance" / "m1" / "sample"
    rows = [diff.FieldDiff("Contact", f"contact-{i}", "003x", "LastName", "last_name", "Doe", "Doe", "Doe", "match",
                           label=f"Client {i}") for i in range(700)]
    rows += [diff.FieldDiff("Case", f"matter-{i}", "500x", "Clio_Total__c", "total", "10", "10", "9", "mismatch",
                            "sent currency value differs", label=f"0000{i}-Lopez") for i in range(3)]
    rows.append(diff.FieldDiff("Contact", "contact-1", "003x", "Title", "title", "<b>Dr</b>", "<b>Dr</b>", "<b>D",
                               "explained", "truncated", label="<script>alert(1)</script>"))
    diff.write_diff_csv(root / "diff.csv", rows)
    reports.write_json(root / "diff_summary.json", {"context": {"firm": "Harlow & Vance LLP (harlow_vance)",
                                                                "migration": "m1", "run": "manual__2026-12-01"}})
    for run in ("manual__2026-12-01T10:00:00+00:00", "scheduled__2026-11-30T00:00:00+00:00"):
        reports.write_text(root.parent / "reports" / run / "reconciliation.html", "<html>rec</html>")


def test_sample_diff_view_filters_pages_and_escapes(staged, tmp_path):
    assert staged.get("/harlow_vance/m1/diff").status_code == 404  # no sample yet
    _stage_diff(tmp_path)
    listing = staged.get("/harlow_vance/m1/").text
    assert "/clio2sf/harlow_vance/m1/diff" in listing and "Latest reconciliation" in listing
    assert "/files/reports/manual__2026-12-01T10%3A00%3A00%2B00%3A00/reconciliation.html'><b>Latest" in listing
    rec = staged.get("/harlow_vance/m1/files/reports/manual__2026-12-01T10%3A00%3A00%2B00%3A00/reconciliation.html")
    assert rec.status_code == 200 and rec.text == "<html>rec</html>"  # a run id's ":" and "+" in the path
    page = staged.get("/harlow_vance/m1/diff")
    assert page.status_code == 200
    text = page.text
    assert "Harlow &amp; Vance LLP (harlow_vance)" in text and "manual__2026-12-01" in text
    assert "rows 1–4 of 4 (of 704 compared fields)" in text  # differences only, unexplained first
    assert text.index("00000-Lopez (matter-0)") < text.index("<td>truncated</td>")
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; (contact-1)" in text
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    only = staged.get("/harlow_vance/m1/diff", params={"view": "all", "object": "Contact", "field": "LastName"}).text
    assert "rows 1–300 of 700 (of 704 compared fields)" in only and "Clio_Total__c</td>" not in only
    assert 'href="diff?view=all&amp;object=Contact&amp;field=LastName&amp;page=2"' in only
    last = staged.get("/harlow_vance/m1/diff", params={"view": "all", "object": "Contact", "page": 3}).text
    assert "rows 601–701 of 701" in last and "page 3 of 3" in last
    hostile = staged.get("/harlow_vance/m1/diff", params={"object": "<script>alert(2)</script>", "view": "x"}).text
    assert "<script>alert(2)" not in hostile and "No difference in this selection." in hostile
    assert staged.get("/harlow_vance/m1/diff", params={"page": 0}).status_code == 422
    csv_link = staged.get("/harlow_vance/m1/files/sample/diff.csv")
    assert csv_link.status_code == 200 and "label" in csv_link.text.splitlines()[0]


def test_reconciliation_view_exceptions_only_or_everything(staged, tmp_path):
    from clio2sf import reports

    run = "manual__2026-12-02T10:00:00+00:00"
    reports.write_json(tmp_path / "harlow_vance" / "m1" / "reports" / run / "reconciliation.json", {
        "exact": False, "headline": "1 lost, 0 duplicated", "currency": "USD",
        "context": {"firm": "Harlow & Vance LLP (harlow_vance)", "migration": "m1", "run": run},
        "names": {"matter-7": "00007-Lopez <b>", "contact-9": "Jane Doe"},
        "objects": [{"object": "matters", "expected": 2, "found_rows": 1, "loaded": 1, "rejected": 0, "missing": 1,
                     "duplicates": 0, "unexpected": 0, "ok": False, "reject_reasons": {}, "missing_ids": ["matter-7"],
                     "duplicate_ids": {}},
                    {"object": "contacts", "expected": 5, "found_rows": 5, "loaded": 5, "rejected": 0, "missing": 0,
                     "duplicates": 0, "unexpected": 0, "ok": True}],
        "amounts": [{"figure": "bills.total", "source": "1234567.5", "target": "1234567.5", "difference": "0",
                     "ok": True},
                    {"figure": "trust.matter.7", "source": "100", "target": "90", "difference": "-10", "ok": False}],
        "books": {"bills": [], "clients": [{"contact": "contact-9", "clio": "12.5", "clio_bills": "12.5",
                                            "salesforce": "12.5", "salesforce_bills": "12.5", "status": "ok"}],
                  "trust": [{"matter": "matter-7", "clio_reported": "100", "clio_ledger": "100", "clio_lowest": "0",
                             "salesforce_ledger": "90", "salesforce_lowest": "0", "status": "differs"}]}})
    page = staged.get("/harlow_vance/m1/reconciliation")  # the latest run by default
    assert page.status_code == 200
    text = page.text
    assert "Harlow &amp; Vance LLP (harlow_vance)" in text and run in text and "<b>exceptions only</b>" in text
    assert "00007-Lopez &lt;b&gt; (matter-7)" in text and "-10.00 USD" in text and "DIFFERS" in text
    assert "contacts" not in text and "Jane Doe" not in text and "1,234,567.50" not in text  # agreeing rows left out
    everything = staged.get("/harlow_vance/m1/reconciliation", params={"run": run, "view": "all"}).text
    assert "<b>everything</b>" in everything and "Jane Doe (contact-9)" in everything
    assert "1,234,567.50 USD" in everything and "12.50 USD" in everything
    assert everything.index("matters") < everything.index("contacts")  # the exception first
    assert 'href="files/reports/manual__2026-12-02T10%3A00%3A00%2B00%3A00/books.csv"' in everything
    assert staged.get("/harlow_vance/m1/reconciliation", params={"run": "../../etc"}).status_code == 404
    older = staged.get("/harlow_vance/m1/reconciliation", params={"run": "manual__2026-12-01T10:00:00+00:00"})
    assert older.status_code == 200 and "amount figure(s) differ" in older.text  # a JSON of before these fields
