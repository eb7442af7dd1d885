"""``benchmarks.bench_reconcile_memory``: the synthetic firm's books are live (bills awaiting payment or
paid by allocations, half from trust; trust deposits and withdrawals on four matters in five, each
matter reporting its balance) and the reconciliation of a small one comes out exact, books included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_reconcile_memory as bench

pytestmark = pytest.mark.unit


def test_the_synthetic_firm_has_live_bills_and_trust_entries_and_reconciles_exactly(tmp_path: Path) -> None:
    ready = bench.setup(tmp_path, 3_000)
    counts = bench._counts(3_000)
    live = sum(1 for i in range(1, counts["bills"] + 1) if bench._bill(i)[0] in ("awaiting_payment", "paid"))
    trust = sum(1 for m in range(1, counts["matters"] + 1) if bench._trust_balance(m, counts) is not None)
    assert live == 50 and trust == 96 and ready["objects"]["allocations"] == 25
    got = bench.measure(tmp_path)
    assert got["exact"], got
    # the natural-key rows (CaseContactRole, no Clio_Id__c) are found through the full load's ledger
    assert got["objects"]["relationships"]["loaded"] == counts["relationships"] == 270
    assert got["reads"]["CaseContactRole"] == 1
    assert got["books"] == (f"books: {live}/{live} bills tie out and agree, {trust}/{trust} matter trust ledgers "
                            "balance, 0/0 client balances agree")


def test_runs_are_kept_under_their_labels_and_rendered_through_the_shared_table(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``record`` keeps each run (``benchmarks.common.keep_run``) and the page's table is the shared
    ``run_rows`` (the reconcile and verify pages wrote the same loop twice)."""
    from benchmarks.common import Figure, met_text, run_rows

    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    fig = Figure("memory", "peak RSS, reconcile (full load)", "synthetic firm", 44.8, "MB", "< 500", True,
                 detail={"commit": "1ab0257abcdef", "over_imports_mb": 7.9, "seconds": 6.0, "cpu_seconds": 5.4})
    growth = Figure("memory", "peak RSS growth", "100k → 1M", 2.65, "ratio", "≤ 1.2", False, detail={})
    bench.record("before", [fig], ["--records", "100000"])
    bench.record("after", [fig, growth], [])
    doc = json.loads((tmp_path / "reconcile_memory.json").read_text(encoding="utf-8"))
    assert list(doc["runs"]) == ["before", "after"] and "loadavg_1m" in doc["runs"]["after"]
    page = (tmp_path / "reconcile_memory.md").read_text(encoding="utf-8")
    at = doc["runs"]["after"]["measured_at"]
    assert (f"| after ({at}) | `1ab0257abc` | synthetic firm | 44.8 | MB | < 500 | met | 7.9 | 6.0 | 5.4 | "
            f"{doc['runs']['after']['loadavg_1m'] or '-'} |") in page
    assert f"| after ({at}) | `` | 100k → 1M | 2.65 | ratio | ≤ 1.2 | **not met** |  |  |  |" in page
    assert "|---|---|---|---|---|---|---|---|---|---|---|" in page
    assert [met_text(m) for m in (None, True, False)] == ["-", "met", "**not met**"]
    assert run_rows({"runs": {}}, ["a", "b"], lambda *a: []) == ["| a | b |", "|---|---|"]
