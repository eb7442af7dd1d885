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


@pytest.mark.unit
def test_the_step_memory_benchmarks_run_from_the_runner_under_their_own_labels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--only sample_memory reconcile_memory verify_memory summary_memory rollback_memory``: each bench's run is
    called with its size, its figures land in the results under its own label (an isolated ``memory`` figure of an
    earlier run is kept), the full run runs them, and the verify bench's environment does not outlive it."""
    import os

    from benchmarks import (
        bench_reconcile_memory,
        bench_rollback_memory,
        bench_sample_memory,
        bench_summary_memory,
        bench_verify_memory,
    )
    from benchmarks.common import Figure
    from benchmarks.run import BENCHMARKS, FIGURE_LABELS, run

    calls = {}

    def fig(label: str, value: float) -> Figure:
        return Figure("memory", f"peak RSS, {label}", "s", value, "MB", "< 500", True)

    def sample(work, sizes):
        calls["sample"] = sizes
        return [fig("sample", 1.0)], [{"runs": 1}]

    def reconcile(work, records):
        calls["reconcile"] = records
        return [fig("reconcile", 2.0)]

    def verify(work, preset):
        calls["verify"] = preset
        os.environ["CLIO2SF_BENCH_LEFT_OVER"] = "1"
        return [fig("verify", 3.0)]

    def summary(work, sizes):
        calls["summary"] = sizes
        return [fig("summary", 4.0)], [{"runs": 1}]

    def rollback(work, records):
        calls["rollback"] = records
        return [fig("rollback", 5.0)]

    monkeypatch.setattr(bench_sample_memory, "run", sample)
    monkeypatch.setattr(bench_rollback_memory, "run", rollback)
    monkeypatch.setattr(bench_summary_memory, "run", summary)
    monkeypatch.setattr(bench_reconcile_memory, "run", reconcile)
    monkeypatch.setattr(bench_verify_memory, "run", verify)
    monkeypatch.delenv("CLIO2SF_BENCH_LEFT_OVER", raising=False)
    kept = {"benchmark": "memory", "figure": "peak RSS, load one object", "subject": "x", "value": 9.0, "unit": "MB",
            "target": "", "met": None, "note": "", "detail": {}}
    (tmp_path / "latest.json").write_text(json.dumps({"size": "full", "date": "2026-12-01T00:00:00Z",
                                                      "figures": [kept]}), encoding="utf-8")
    names = ["sample_memory", "reconcile_memory", "verify_memory", "summary_memory", "rollback_memory"]
    doc = run("full", tmp_path, names)
    assert doc["errors"] == {} and "CLIO2SF_BENCH_LEFT_OVER" not in os.environ
    assert calls == {"sample": [100_000, 1_000_000], "reconcile": [100_000, 1_000_000], "verify": "large",
                     "summary": [100_000, 1_000_000], "rollback": [100_000, 1_000_000]}
    assert {(f["benchmark"], f["value"]) for f in doc["figures"]} == {
        ("memory", 9.0), ("sample_memory", 1.0), ("reconcile_memory", 2.0), ("verify_memory", 3.0),
        ("summary_memory", 4.0), ("rollback_memory", 5.0)}
    assert "| reconcile_memory | peak RSS, reconcile | s | 2.000 | MB | < 500 | met |" in (
        tmp_path / "latest.md").read_text(encoding="utf-8")
    assert set(names) <= set(DEFAULT["full"]) and set(names) <= set(BENCHMARKS) and set(names) <= set(FIGURE_LABELS)
