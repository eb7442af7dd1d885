"""``benchmarks.bench_rollback_memory``: its rollbacks do the real work on the generated ledger (every
re-creation, every delete, the re-created records deleted by their new ids), and its page renders from its
record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_rollback_memory as bench
from clio2sf.rollback_run import run_rollback

pytestmark = pytest.mark.unit


def test_the_two_rollbacks_do_their_work_on_the_generated_ledger(tmp_path: Path) -> None:
    mroot = tmp_path / "m"
    staged = bench.stage(mroot, 4_000)
    assert staged == {"contacts": 3_600, "files": 400, "purged": 360, "ledger_lines": 4_360}
    purge = bench.measure(mroot, "purge", 4_000)
    assert purge["done"] and purge["counts"] == {"Contact": {"recreated": 360}}, purge
    full = bench.measure(mroot, "full", 4_000)
    assert full["done"] and full["asked"]["deleted_new"] == 360 and full["asked"]["deleted_purged_old"] == 0, full
    # run again, the rollback of the full run plans nothing (its own ledger lines): idempotent
    again = run_rollback(bench.Org(360), mroot, run_id="full", migration_id=bench.MIGRATION, dry_run=False)
    assert again["planned"] == {} and again["already_done"] == 4_000
    assert not list((mroot / "rollback").iterdir())  # the spools are gone


def test_runs_are_kept_under_their_labels_and_the_page_projects_them(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    figs = bench.run(tmp_path / "work", [2_000, 4_000])
    assert [f.met for f in figs] == [True] * 6, [f.as_dict() for f in figs]
    growth = [f for f in figs if f.unit == "ratio"]
    assert [f.figure for f in growth] == ["peak RSS growth, rollback purge", "peak RSS growth, rollback full"]
    assert set(growth[0].detail["projected"]) == {"1,000,000", "4,500,000"}
    bench.record("after", figs, ["--records", "2000", "4000"])
    doc = json.loads((tmp_path / "rollback_memory.json").read_text(encoding="utf-8"))
    assert list(doc["runs"]) == ["after"]
    page = (tmp_path / "rollback_memory.md").read_text(encoding="utf-8")
    assert "| peak RSS growth, rollback full | 2,000 → 4,000 ledger lines |" in page and "4,500,000: " in page
    assert bench._project([100, 200], [10.0, 20.0], 1_000) == 100.0
