"""The CI smoke run of the benchmarks: every benchmark runs at tiny size and yields its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import DEFAULT, markdown

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_smoke_run_writes_every_benchmarks_figures(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--size", "tiny", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "smoke.json").read_text(encoding="utf-8"))
    assert doc["errors"] == {}
    assert set(doc["machine"]) >= {"cpu_count", "python", "platform"} and doc["date"]
    seen = {f["benchmark"] for f in doc["figures"]}
    assert seen == {"clio_request_economy", "rate_limit_utilisation", "salesforce_call_economy",
                    "transform_throughput", "memory", "sf_sandbox_throughput", "end_to_end"}
    assert all(doc["benchmarks"][name] > 0 for name in DEFAULT["tiny"])
    measured = [f for f in doc["figures"] if f["benchmark"] != "end_to_end" and f["target"]]
    assert measured and all(isinstance(f["value"], int | float) for f in measured)
    economy = next(f for f in doc["figures"] if f["figure"] == "requests used ÷ minimum")
    assert economy["detail"]["used"] >= economy["detail"]["minimum"] > 0
    md = (tmp_path / "smoke.md").read_text(encoding="utf-8")
    assert md == markdown(doc) and "| salesforce_call_economy |" in md


@pytest.mark.unit
def test_markdown_marks_unmet_targets_and_notes() -> None:
    doc = {"size": "full", "date": "2026-11-28T09:00:00Z", "seconds": 3.0, "errors": {"memory": "boom"},
           "machine": {"cpu_count": 2, "python": "3.11.9", "platform": "Linux"},
           "figures": [{"benchmark": "b", "figure": "f", "subject": "s", "value": 12.5, "unit": "x",
                        "target": "≤ 10", "met": False, "note": "bounded by polls", "detail": {}}]}
    md = markdown(doc)
    assert "| b | f | s | 12.5 | x | ≤ 10 | **not met** |" in md
    assert "bounded by polls" in md and "**memory crashed**: boom" in md
