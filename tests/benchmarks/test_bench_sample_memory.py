"""``benchmarks.bench_sample_memory``: a copy of the firm moves every id and every reference the sampler
follows (so copies never join), and its page renders from its record."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_sample_memory as bench
from clio2sf.sample import parent_refs

pytestmark = pytest.mark.unit


def test_a_copy_moves_ids_and_every_followed_reference() -> None:
    off = bench.COPY_OFFSET
    matter = {"id": 7, "client": {"id": 9}, "status": "Open",
              "custom_field_values": [{"field_type": "contact", "value": "42"}, {"field_type": "text_line", "value": "3"}]}
    moved = bench._shift("matters", matter, 2 * off)
    assert moved["id"] == 7 + 2 * off
    assert sorted(parent_refs("matters", moved)) == sorted((p, i + 2 * off) for p, i in parent_refs("matters", matter))
    assert moved["custom_field_values"][1]["value"] == "3" and matter["client"] == {"id": 9}  # the original is kept
    entry = {"id": "5", "matter": {"id": 7}, "parent_calendar_entry_id": "4",
             "attendees": [{"id": 9, "type": "Contact"}, {"id": 1, "type": "User"}]}
    moved = bench._shift("calendar_entries", entry, off)
    assert moved["id"] == str(5 + off) and moved["parent_calendar_entry_id"] == str(4 + off)
    assert sorted(parent_refs("calendar_entries", moved)) == sorted(
        (p, i + off) for p, i in parent_refs("calendar_entries", entry))
    assert bench._shift("matters", matter, 0) is matter


def test_the_page_renders_from_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    runs = [{"records": 100_000, "peak_rss_mb": 170.0, "cpu_s": 4.0, "seconds": 9.0, "sample": 500,
             "max_reads_per_object": 2, "reads": 37},
            {"records": 1_000_000, "peak_rss_mb": 190.0, "cpu_s": 30.0, "seconds": 60.0, "sample": 500,
             "max_reads_per_object": 2, "reads": 37}]
    figs = bench.figures(runs, 120.0)
    bench.render({"measured_at": "2026-12-04T06:00:00Z", "commit": "abc", "command": ["--sizes", "100000,1000000"],
                  "machine": {"cpu_count": 2, "python": "3.11.7"}, "note": "A note.",
                  "figures": [f.as_dict() for f in figs]})
    page = (tmp_path / "sample_memory.md").read_text(encoding="utf-8")
    assert "| peak RSS of select_sample's work | 1,000,000 staged records | 190.0 | MB | < 500 | met | 2 |" in page
    assert "| peak RSS growth of select_sample's work | 100,000 → 1,000,000 records | 1.118 | ratio | ≤ 1.2 | met |" in page
    assert "A note." in page


def test_the_stand_in_org_holds_the_sample_as_loaded_and_makes_the_firms_other_records(tmp_path: Path) -> None:
    from clio2sf import staging

    def env(sobject: str, row: dict) -> dict:
        return {"sobject": sobject, "source_system_id": row["Clio_Id__c"], "external_id_field": "Clio_Id__c",
                "natural_key": None, "row": row}

    sample = tmp_path / "sample" / "transformed"
    staging.ensure_dir(sample / "Account")
    staging.ensure_dir(sample / "Contact")
    staging.write_jsonl_gz(sample / "Account" / "contacts-batch-00001.jsonl.gz",
                           [env("Account", {"Clio_Id__c": "contact-1", "Name": "Acme"})])
    staging.write_jsonl_gz(sample / "Contact" / "contacts-batch-00001.jsonl.gz",
                           [env("Contact", {"Clio_Id__c": "contact-2", "LastName": "Doe",
                                            "Account.Clio_Id__c": "contact-1"})])
    staging.write_json(tmp_path / "users" / "user_map.json", {"users": {"1001": "005000000000001AAA"}})
    org = bench.SampleOrg(tmp_path, scale=3)
    account = next(org.query_all_iter("SELECT Id FROM Account WHERE Clio_Id__c IN ('contact-1')"))["Id"]
    asked = list(org.query_all_iter("SELECT Id, AccountId, Account.Clio_Id__c FROM Contact "
                                    "WHERE Clio_Id__c IN ('contact-2', 'contact-1000000000002')"))
    assert [(r["AccountId"], r["Account.Clio_Id__c"]) for r in asked] == [(account, "contact-1")]  # the sample's only
    every = list(org.query_all_iter("SELECT Id, Clio_Id__c, AccountId FROM Contact WHERE Clio_Id__c != null"))
    assert [r["Clio_Id__c"] for r in every] == ["contact-2", "contact-1000000000002", "contact-2000000000002"]
    assert len({r["Id"][:15] for r in every}) == 3 and account not in {r["AccountId"] for r in every[1:]}
    assert [r["Id"] for r in org.query_all_iter("SELECT Id FROM User")] == ["005000000000001AAA"]
    fields = {f["name"]: f for f in org.describe("Contact")["fields"]}
    assert fields["AccountId"]["referenceTo"] == ["Account"] and "Account.Clio_Id__c" not in fields
