"""``benchmarks.bench_rollback_memory``: its rollbacks do the real work on the generated ledger (every
re-creation, every delete, the re-created records deleted by their new ids), the id map of re-created records
does not grow the task with their number, and its page renders from its record."""

from __future__ import annotations

import json
import tracemalloc
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


def _traced_peak(mroot: Path, task: str, purged: int) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = run_rollback(bench.Org(purged), mroot, run_id=task, migration_id=bench.MIGRATION, dry_run=False)
        assert out["failed"] == 0
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_the_id_map_of_re_created_records_is_not_held_in_memory(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-creating 6x as many records (the map grows as they come back), then deleting them by their new ids (the
    map read back from the ledger), costs the task no more Python memory (ledger files of 200 lines, steps of 100
    operations and an HTML report that lists 50 at most, so what is held by design is small beside the map).
    Before the map was an SQLite table (``rollback.IdMap``) it was a dict of every re-created record (~260 bytes
    an entry; 1.2 GB at 4.5M), copied for the execution: this test failed there (+1.3 MB re-creating, +1.7 MB
    deleting; now -0.1 and +0.2 MB; the bound is 0.8 MB)."""
    from clio2sf import rollback

    monkeypatch.setattr(rollback, "STREAM_CHUNK", 100)
    monkeypatch.setattr(rollback, "HTML_INLINE_MAX", 50)
    monkeypatch.setattr(bench, "FILE_LINES", 200)
    monkeypatch.setattr(bench, "PURGED", 2)  # half the Contacts deleted by the delta and re-created
    warm = tmp_path / "warm" / "m"  # the imports of a first rollback are not the map's
    warm_purged = bench.stage(warm, 200)["purged"]
    for task in bench.TASKS:
        _traced_peak(warm, task, warm_purged)
    peaks = {}
    for size in (4_000, 24_000):
        mroot = tmp_path / str(size) / "m"
        purged = bench.stage(mroot, size)["purged"]
        peaks[size] = (_traced_peak(mroot, "purge", purged), _traced_peak(mroot, "full", purged))
    (small_purge, small_full), (large_purge, large_full) = peaks[4_000], peaks[24_000]
    assert large_purge - small_purge < 800_000, peaks
    assert large_full - small_full < 800_000, peaks


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
