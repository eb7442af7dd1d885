"""A delta window skips records whose Clio version already reached Salesforce (the overlap)."""

from __future__ import annotations

import pytest

from clio2sf import loaded_versions as lv

pytestmark = pytest.mark.unit


def env(ssid, etag=None, updated_at=None):
    data = {"id": int(ssid.split("-")[1])}
    if etag:
        data["etag"] = etag
    if updated_at:
        data["updated_at"] = updated_at
    return {"source_system_id": ssid, "data": data}


def test_overlap_skipped_changes_and_new_records_pass(tmp_path):
    lv.write_index(tmp_path, "contacts", lv.build_index([env("contact-1", "e1"), env("contact-2", "e2")]))
    window = [env("contact-1", "e1"), env("contact-2", "e2b"), env("contact-3", "e3"), env("contact-4")]
    new, skipped = lv.split_new(window, lv.read_index(tmp_path, "contacts"))
    assert skipped == 1
    assert [e["source_system_id"] for e in new] == ["contact-2", "contact-3", "contact-4"]  # no version: sent
    assert lv.record_loaded(tmp_path, "contacts", new) == 2
    again, skipped = lv.split_new(window, lv.read_index(tmp_path, "contacts"))
    assert skipped == 3 and [e["source_system_id"] for e in again] == ["contact-4"]


def test_updated_at_when_no_etag():
    idx = lv.build_index([env("matter-1", updated_at="2026-12-01T00:00:00Z")])
    assert lv.split_new([env("matter-1", updated_at="2026-12-01T00:00:00Z")], idx)[1] == 1
    assert lv.split_new([env("matter-1", updated_at="2026-12-02T00:00:00Z")], idx)[1] == 0
