"""Field-level diff: type-aware comparison, real and explained mismatches, CSV/HTML reports."""

from __future__ import annotations

import csv

import pytest

from clio2sf.diff import FieldSpec, diff_records, summarize, values_equal, write_diff_csv, write_diff_html

from .clio_fixtures import small_firm

pytestmark = pytest.mark.unit

SPECS = [
    FieldSpec("Clio_Id__c", "string"),
    FieldSpec("LastName", "string", "last_name"),
    FieldSpec("Email", "email", "primary_email_address"),
    FieldSpec("Description", "textarea", "name", length=10),
    FieldSpec("Title", "string", "title", length=5),
    FieldSpec("Clio_Created_Date__c", "datetime", "created_at"),
    FieldSpec("Account.Clio_Id__c", "string", "company.id"),
    FieldSpec("Is_Client__c", "boolean", "is_client"),
    FieldSpec("Hourly_Rate__c", "currency", "rate"),
]


@pytest.mark.parametrize(("a", "b", "t", "eq"), [
    ("450.0", 450, "currency", True), (450.004, "450.00", "currency", True), (450.01, 450, "currency", False),
    (1.5, "1.50000000001", "double", True), (None, "", "string", True), ("#N/A", None, "picklist", True),
    ("x", None, "string", False), ("true", True, "boolean", True), ("0", False, "boolean", True),
    ("2024-02-01T10:00:00-05:00", "2024-02-01T15:00:00.000+0000", "datetime", True),
    ("2024-02-01T10:00:00-05:00", "2024-02-01T10:00:00.000+0000", "datetime", False),
    ("2024-02-01", "2024-02-01T23:30:00Z", "date", True), ("2024-02-01", "2024-02-02", "date", False),
    ("001000000000001AAA", "001000000000001", "reference", True), ("a;b", "b; a", "multipicklist", True),
    ("Open", "open", "picklist", False), ("line\r\n", "line", "textarea", True), ("abc", "1", "double", False),
])
def test_values_equal(a, b, t, eq):
    assert values_equal(a, b, t) is eq


def test_diff_real_and_explained_mismatches(tmp_path):
    jane = next(e for e in small_firm()["contacts"] if e["clio_id"] == 9001)
    data = dict(jane["data"], title="Managing Partner", is_client=True, rate=300)
    sent = {"Clio_Id__c": "contact-9001", "LastName": "Doe", "Email": "jane@acme.example",
            "Description": "Jane Doe", "Title": "Managing Partner", "Clio_Created_Date__c": data["created_at"],
            "Account.Clio_Id__c": "contact-9000", "Is_Client__c": True, "Hourly_Rate__c": 300.0}
    sf = {"attributes": {"type": "Contact"}, "Id": "003000000000001AAA", "Clio_Id__c": "contact-9001",
          "LastName": "Doe", "Email": "jane.doe@acme.example",  # someone's trigger rewrote it: real mismatch
          "Description": "Jane <Doe>", "Title": "Manag",  # Title truncated by Salesforce to its length
          "Clio_Created_Date__c": "2024-02-01T15:00:00.000+0000", "Account": {"Clio_Id__c": "contact-9000"},
          "Is_Client__c": True, "Hourly_Rate__c": 300}
    rejects = [{"phase": "transform", "object": "contacts", "source_system_id": "contact-9001", "field": "name",
                "rule": "too_long", "message": "contact-9001: name longer than 10", "repair": "escaped angle brackets"}]
    missing_sent = {"Clio_Id__c": "contact-9002", "LastName": "Roe"}
    diffs = diff_records("Contact", SPECS, [("contact-9001", data, sent, sf),
                                            ("contact-9002", {"last_name": "Roe"}, missing_sent, None)], rejects)
    by = {(d.source_system_id, d.field): d for d in diffs}
    assert by[("contact-9001", "Email")].status == "mismatch"
    assert by[("contact-9001", "Title")].status == "explained"
    assert "truncated" in by[("contact-9001", "Title")].reason
    assert by[("contact-9001", "Description")].status == "explained"
    assert by[("contact-9001", "Description")].reason == "repair: escaped angle brackets"
    for f in ("LastName", "Clio_Created_Date__c", "Account.Clio_Id__c", "Is_Client__c", "Hourly_Rate__c"):
        assert by[("contact-9001", f)].status == "match", f
    assert by[("contact-9001", "Account.Clio_Id__c")].clio_value == 9000
    assert by[("contact-9002", "LastName")].status == "missing"
    [summary] = summarize(diffs)
    assert (summary.records, summary.fields_compared, summary.matches, summary.mismatches,
            summary.explained, summary.missing) == (2, 11, 6, 1, 2, 2)

    csv_path = write_diff_csv(tmp_path / "reports" / "diff.csv", diffs)
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 11 and rows[0]["sobject"] == "Contact"
    html_path = write_diff_html(tmp_path / "reports" / "diff.html", diffs)
    text = html_path.read_text()
    assert "Jane &lt;Doe&gt;" in text and "Jane <Doe>" not in text
    assert "3 unexplained difference(s), 2 explained" in text
    assert "http" not in text.split("</style>")[0]  # no external assets


def test_rejected_record_is_explained():
    diffs = diff_records("Contact", SPECS[:2], [("contact-5", {}, {"LastName": None}, None)],
                         [{"source_system_id": "contact-5", "field": "last_name", "rule": "required",
                           "message": "contact-5: last_name is required", "repair": None}])
    assert {d.status for d in diffs} == {"explained"}
    assert "required" in diffs[0].reason


def test_only_sent_fields_are_compared_and_empty_checkbox_is_explained():
    specs = [FieldSpec("ActivityDate", "date", "start_at"), FieldSpec("VIP__c", "boolean", "custom.vip")]
    sent = {"Clio_Id__c": "calendar_entry-1", "VIP__c": None}  # a timed event: no ActivityDate sent
    sf = {"Id": "00U000000000001AAA", "ActivityDate": "2024-03-01", "VIP__c": False}
    diffs = diff_records("Event", specs, [("calendar_entry-1", {}, sent, sf)])
    assert [(d.field, d.status) for d in diffs] == [("VIP__c", "explained")]
    assert "checkbox" in diffs[0].reason
