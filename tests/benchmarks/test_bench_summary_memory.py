"""``benchmarks.bench_summary_memory``: its page renders from its record."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_summary_memory as bench

pytestmark = pytest.mark.unit


def test_the_page_renders_from_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    runs = [{"records": 100_000, "peak_rss_mb": 150.0, "cpu_s": 1.0, "seconds": 1.0, "staged": {"matters": 4000},
             "reference_items": {}, "reference_bytes": {}},
            {"records": 1_000_000, "peak_rss_mb": 160.0, "cpu_s": 9.0, "seconds": 9.0, "staged": {"matters": 40000},
             "reference_items": {}, "reference_bytes": {}}]
    figs = bench.figures(runs, 130.0)
    bench.render({"measured_at": "2026-12-04T14:00:00Z", "commit": "abc", "command": ["--sizes", "100000,1000000"],
                  "machine": {"cpu_count": 2, "python": "3.11.7"}, "note": "A note.",
                  "figures": [f.as_dict() for f in figs]})
    page = (tmp_path / "summary_memory.md").read_text(encoding="utf-8")
    assert ("| peak RSS of summarize_extraction's work | 1,000,000 firm records (40,000 matters) | 160.0 | MB | < 500 "
            "| met |") in page
    assert "| peak RSS growth of summarize_extraction's work | 100,000 → 1,000,000 records | 1.067 | ratio | ≤ 1.2 | met |" in page
    assert "A note." in page
