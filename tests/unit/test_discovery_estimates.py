"""Estimates and the Salesforce capacity pre-flight of the discover phase."""

from __future__ import annotations

import json
import math

import pytest

from clio2sf.discovery import capacity_check, estimates, salesforce_targets
from clio2sf.discovery.estimates import COUNTED_OBJECTS, DISCOVERY_ENDPOINTS, MIGRATED_OBJECTS, human_duration

pytestmark = pytest.mark.unit

COUNTS = {
    "contacts": 401, "contacts:Person": 350, "contacts:Company": 51, "matters": 120, "relationships": 300,
    "activities": 25_000, "bills": 900, "bank_transactions": 1_500, "documents": 40, "calendar_entries": 10,
    "tasks": 50, "communications": 30, "matter_notes": 5, "contact_notes": 3, "users": 12,
    "activity_rates": 4, "activity_descriptions": 6,
}


def test_clio_requests_are_pages_per_object_plus_downloads_plus_discovery():
    est = estimates(COUNTS)
    clio = est["clio"]
    assert clio["requests_by_object"]["contacts"] == 3  # 401 contacts -> 3 pages of 200
    assert clio["requests_by_object"]["activities"] == 125
    assert clio["requests_by_object"]["line_items"] == 1  # an empty collection still costs one page
    expected_pages = sum(max(1, math.ceil(COUNTS.get(o, 0) / 200)) for o in MIGRATED_OBJECTS)
    assert clio["list_requests"] == expected_pages
    assert clio["document_downloads"] == 40
    # one read per configuration endpoint (a migrated one's read is its count), one count per other object
    assert clio["discovery_requests"] == len(DISCOVERY_ENDPOINTS) + len(COUNTED_OBJECTS)
    assert set(COUNTED_OBJECTS) == set(MIGRATED_OBJECTS) - set(DISCOVERY_ENDPOINTS) and "matters" in COUNTED_OBJECTS
    assert clio["total_requests"] == expected_pages + 40 + clio["discovery_requests"]
    # 50 requests per 60 s window
    assert clio["peak"]["seconds"] == pytest.approx(clio["total_requests"] / 50 * 60, abs=0.1)
    assert clio["offpeak"] is None
    assert "19:00-04:00 Pacific" in clio["schedule_hint"] and "22:00-07:00 GMT" in clio["schedule_hint"]
    json.dumps(est)  # XCom/JSON-able


def test_offpeak_is_faster_and_hint_names_the_region():
    est = estimates(COUNTS, offpeak_limit=300, region="AU")
    clio = est["clio"]
    assert clio["offpeak"]["seconds"] < clio["peak"]["seconds"]
    assert clio["offpeak"]["seconds"] == pytest.approx(clio["peak"]["seconds"] / 6, rel=1e-3)
    assert "21:00-06:00 AET" in clio["schedule_hint"] and "Pacific" not in clio["schedule_hint"]
    assert clio["offpeak"]["human"] in clio["schedule_hint"]


def test_page_size_and_explicit_documents():
    est = estimates({"contacts": 401}, page_size=100, documents=7, discovery_calls=0)
    assert est["clio"]["requests_by_object"]["contacts"] == 5
    assert est["clio"]["document_downloads"] == 7
    assert est["clio"]["total_requests"] == est["clio"]["list_requests"] + 7


def test_salesforce_side_bulk_composite_storage():
    est = estimates(COUNTS, document_bytes=40 * 1024 * 1024)
    sf = est["salesforce"]
    objs = sf["objects"]
    te = objs["Time_Entry__c"]
    assert te["records"] == 25_000 and te["method"] == "bulk"
    assert te["bulk_jobs"] == 1 and te["bulk_batches"] == 3  # 10,000 rows per internal batch
    assert te["api_calls"] == 6 + 3
    contacts = objs["Contact"]
    assert contacts["records"] == 350 and contacts["method"] == "composite" and contacts["api_calls"] == 2
    assert objs["Account"]["records"] == 52  # 51 companies + the default individual account
    assert objs["ContentVersion"]["method"] == "rest-file" and objs["ContentVersion"]["api_calls"] == 40
    assert sf["file_storage_mb"] == 40.0
    data_rows = sum(o["records"] for n, o in objs.items() if n not in ("ContentVersion", "ContentDocumentLink", "ContentNote"))
    assert sf["data_storage_mb"] == pytest.approx(data_rows * 2 / 1024, abs=0.01)
    assert sf["api_calls"] == sum(o["api_calls"] for o in objs.values())
    assert sf["bulk_batches"] == sum(o["bulk_batches"] for o in objs.values())


def test_targets_split_and_notes():
    targets, notes = salesforce_targets({"contacts": 10, "matters": 10, "relationships": 20, "activities": 5},
                                        matter_split={"Case": 6, "Opportunity": 4})
    assert targets["Case"] == 6 and targets["Opportunity"] == 4
    assert targets["CaseContactRole"] == 12 and targets["OpportunityContactRole"] == 8
    assert targets["Contact"] == 10 and targets["Time_Entry__c"] == 5
    assert any("not split into people and companies" in n for n in notes)
    with pytest.raises(ValueError, match="Lead"):
        salesforce_targets({"matters": 1}, matter_split={"Lead": 1})


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="counts\\['contacts'\\]"):
        estimates({"contacts": -1})
    with pytest.raises(ValueError, match="region"):
        estimates({}, region="Mars")


def test_human_duration():
    assert human_duration(59) == "1 min"
    assert human_duration(3600 + 5 * 60) == "1 h 05 min"
    assert human_duration(86400 + 7200) == "1 d 02 h 00 min"


def _limits(data_remaining=1000, files=5000, api=100_000, batches=15_000, queries=10_000):
    return {
        "DataStorageMB": {"Max": 5000, "Remaining": data_remaining},
        "FileStorageMB": {"Max": 10000, "Remaining": files},
        "DailyApiRequests": {"Max": 100_000, "Remaining": api},
        "DailyBulkApiBatches": {"Max": 15_000, "Remaining": batches},
        "DailyBulkV2QueryJobs": {"Max": 10_000, "Remaining": queries},
    }


def test_capacity_error_names_both_figures():
    est = {"salesforce": {"data_storage_mb": 1234.0, "file_storage_mb": 10, "api_calls": 100,
                          "bulk_batches": 3, "bulk_query_jobs": 5}}
    findings = capacity_check(est, _limits())
    assert [f.limit for f in findings] == ["DataStorageMB"]
    f = findings[0]
    assert f.level == "error"
    assert "the load needs 1,234 MB of data storage; the org has 1,000 MB remaining" in f.message
    assert "of 5,000 MB" in f.message


def test_capacity_warning_near_limit_and_missing_limit():
    est = {"salesforce": {"data_storage_mb": 1, "file_storage_mb": 1, "api_calls": 90,
                          "bulk_batches": 0, "bulk_query_jobs": 1}}
    limits = _limits(api=100)
    del limits["DailyBulkV2QueryJobs"]
    findings = {f.limit: f for f in capacity_check(est, limits)}
    assert findings["DailyApiRequests"].level == "warning"
    assert "needs 90 API requests; the org has 100 remaining" in findings["DailyApiRequests"].message
    assert findings["DailyBulkV2QueryJobs"].level == "warning"
    assert "do not report DailyBulkV2QueryJobs" in findings["DailyBulkV2QueryJobs"].message
    assert "DataStorageMB" not in findings


def test_capacity_ok_on_a_full_estimate():
    assert capacity_check(estimates(COUNTS), _limits(data_remaining=50_000, api=1_000_000)) == []
