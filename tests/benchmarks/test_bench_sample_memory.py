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
