"""Peak RSS of the tasks that used to read whole ledgers, as the ledger grows (no sandbox needed).

``python -m benchmarks.bench_ledger_tasks [--sizes 100000,1000000] [--before 100000] [--full-run 100000]
[--full-run-before 100000]``

For each size N a migration root is generated (:func:`stage`): an earlier full-load run ``full`` of N
ledger lines (Contact rows, 1 in 10 a ContentVersion carrying its ContentDocument id; files of 2,000
lines as the load writes them, each with its look-up index twin) and a delta run ``delta-1`` of 2,000
lines (1,000 updates with before-images, 500 deletions with before-images, 500 new versions of files
``full`` holds).  Each task then runs in a fresh process (peak RSS = ``VmHWM``, see
:func:`benchmarks.memory_worker.peak_rss_kb`):

* ``rollback_plan``: what the rollback task does before it touches the org, for the delta run:
  :func:`clio2sf.rollback.plan_rollback_from_ledger` and the plan's three reports (no existence
  check: there is no org);
* ``delta_lookup``: the delta window's ledger look-up (:func:`clio2sf.delta_run.our_last_writes` for
  1,000 changed and 200 deleted Clio records, then ``already_deleted``), the part of the conflict
  check that read the whole ledger (the Salesforce queries and the raw files do not depend on it);
* ``--before`` sizes: the same two through the whole ledger in one DataFrame, as before
  (``plan_rollback(read_ledger(...))``, ``last_write_by_record(read_ledger(...))``);
* ``--full-run`` sizes: the dry-run rollback of the N-line run itself, as the rollback task does it (its
  plan has N operations: planned, spooled and reported a step at a time, :mod:`clio2sf.rollback_run`);
* ``--full-run-before`` sizes: the same with the plan held whole (``plan_rollback_from_ledger``, before).

Target: under 500 MB, and flat (≤ 1.2×) from the first size to the last for ``rollback_plan``,
``delta_lookup`` and ``rollback_plan_full_run``.  Prints
one JSON figure per line and writes ``benchmarks/results/ledger_tasks.{json,md}`` (a separate file:
``latest.md`` belongs to ``benchmarks.run``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Figure, figures_page, growth_figure, ints, machine

LIMIT_MB = 500
FLAT = 1.2
FILE_LINES = 2_000
DELTA = 2_000
RESULTS = ROOT / "benchmarks" / "results"


def _sf(prefix: str, i: int) -> str:
    return f"{prefix}{i:015d}"


def stage(mroot: Path, size: int) -> None:
    """The ledger of a full run of ``size`` lines and of a delta run of 2,000 (see the module docstring)."""
    from clio2sf.ledger import LedgerWriter

    at_full = "2026-11-28T09:00:00.000000Z"
    n_files = size // 10
    for sobject, count in (("Contact", size - n_files), ("ContentVersion", n_files)):
        for f, start in enumerate(range(0, count, FILE_LINES), 1):
            with LedgerWriter(mroot, "m1", "full", "full_load", sobject, f"batch-{f:05d}", clock=lambda: at_full) as w:
                for i in range(start, min(start + FILE_LINES, count)):
                    if sobject == "Contact":
                        w.record(source_system_id=f"contact-{i}", sf_id=_sf("003", i), operation="upsert",
                                 created=True)
                    else:
                        w.record(source_system_id=f"document-{i}@v1", sf_id=_sf("068", i), operation="insert",
                                 created=True, file_ids=[_sf("069", i)])
    at_delta = "2026-11-29T09:00:00.000000Z"
    quarter = DELTA // 4
    with LedgerWriter(mroot, "m1", "delta-1", "delta", "Contact", "batch-00001", clock=lambda: at_delta) as w:
        for i in range(2 * quarter):  # updates of records the full run created
            w.record(source_system_id=f"contact-{i}", sf_id=_sf("003", i), operation="upsert", created=False,
                     before={"LastName": f"Before {i}", "Email": None, "Phone": "+1 555 0100"})
    with LedgerWriter(mroot, "m1", "delta-1", "delta", "Contact", "deletes-00001", clock=lambda: at_delta) as w:
        for i in range(2 * quarter, 3 * quarter):
            w.record(source_system_id=f"contact-{i}", sf_id=_sf("003", i), operation="delete", created=False,
                     before={"LastName": f"Gone {i}", "Email": f"c{i}@example.invalid"})
    with LedgerWriter(mroot, "m1", "delta-1", "delta", "ContentVersion", "batch-00001", clock=lambda: at_delta) as w:
        for i in range(quarter):  # new versions of documents the full run uploaded: their files are shared
            w.record(source_system_id=f"document-{i}@v2", sf_id=_sf("068", n_files + i), operation="insert",
                     created=True, file_ids=[_sf("069", i)])


# ------------------------------------------------------------------------------------------ tasks (worker)


def rollback_plan(mroot: Path) -> int:
    from clio2sf import rollback

    plan = rollback.plan_rollback_from_ledger(mroot, run_id="delta-1", migration_id="m1")
    _reports(mroot, plan)
    return len(plan.operations)


def rollback_plan_full_run(mroot: Path) -> int:
    """What the rollback task does for the whole ``full`` run before it touches the org (dry run, no existence
    check: there is no org): plan it a step at a time into a spool and write the three reports from the spool."""
    from clio2sf.rollback_run import spool_plan, write_reports

    plan = spool_plan(mroot, mroot / "rollback" / "spool-bench", run_id="full", migration_id="m1")
    write_reports(mroot / "reports" / "rollback-bench", plan, dry_run=True)
    return plan.operations


def rollback_plan_full_run_whole(mroot: Path) -> int:
    """The same before: the plan of the whole run held in memory (``plan_rollback_from_ledger``) and its reports."""
    from clio2sf import rollback

    plan = rollback.plan_rollback_from_ledger(mroot, run_id="full", migration_id="m1")
    _reports(mroot, plan)
    return len(plan.operations)


def _reports(mroot: Path, plan: Any) -> None:
    from clio2sf import rollback

    rdir = mroot / "reports" / "rollback-bench"
    rollback.write_rollback_json(rdir / "rollback.json", plan)
    rollback.write_rollback_csv(rdir / "rollback.csv", plan)
    rollback.write_rollback_html(rdir / "rollback.html", plan, dry_run=True)


def _window() -> tuple[set[str], set[str]]:
    changed = {f"contact-{i}" for i in range(0, 2_000, 2)}  # 1,000 changed records
    gone = {f"contact-{i}" for i in range(1, 400, 2)}  # 200 no longer listed by Clio
    return changed, gone


def delta_lookup(mroot: Path) -> int:
    from clio2sf.delta_run import already_deleted, our_last_writes

    changed, gone = _window()
    lw = our_last_writes(mroot, source_ids=gone, primary_of=changed | gone)
    already_deleted(lw)
    return len(lw)


def rollback_plan_whole(mroot: Path) -> int:
    from clio2sf.ledger import read_ledger
    from clio2sf.rollback import plan_rollback

    plan = plan_rollback(read_ledger(mroot), run_id="delta-1")
    _reports(mroot, plan)
    return len(plan.operations)


def delta_lookup_whole(mroot: Path) -> int:
    from clio2sf.delta_run import already_deleted
    from clio2sf.ledger import last_write_by_record, read_ledger

    changed, gone = _window()
    lw = last_write_by_record(read_ledger(mroot))
    already_deleted(lw)
    return int(lw["source_system_id"].isin(changed | gone).sum())


TASKS = {"rollback_plan": rollback_plan, "delta_lookup": delta_lookup, "rollback_plan_whole": rollback_plan_whole,
         "delta_lookup_whole": delta_lookup_whole, "rollback_plan_full_run": rollback_plan_full_run,
         "rollback_plan_full_run_whole": rollback_plan_full_run_whole}


def worker(task: str, mroot: Path, size: int) -> None:
    from benchmarks.memory_worker import peak_rss_kb

    t0 = time.perf_counter()
    result = TASKS[task](mroot)
    print(json.dumps({"task": task, "size": size, "result": result, "seconds": round(time.perf_counter() - t0, 2),
                      "peak_rss_mb": round(peak_rss_kb() / 1024, 1)}))


def _run(task: str, mroot: Path, size: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_ledger_tasks", "--worker", task, str(mroot),
                           str(size)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(f"{task} at {size:,} ledger lines failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ runner

LABELS = {
    "rollback_plan": "peak RSS, rollback planning of a 2,000-line delta run (plan + reports)",
    "delta_lookup": "peak RSS, delta conflict check's ledger look-up (1,000 changed + 200 deleted records)",
    "rollback_plan_whole": "peak RSS, the same rollback planning through the whole ledger (before)",
    "delta_lookup_whole": "peak RSS, the same delta look-up through the whole ledger (before)",
    "rollback_plan_full_run": "peak RSS, dry-run rollback of the full run itself (N operations planned, spooled and "
                              "reported a step at a time, as mig_07_rollback)",
    "rollback_plan_full_run_whole": "peak RSS, the same full-run rollback planning with the plan held whole (before)",
}
#: Tasks with a target: under :data:`LIMIT_MB` at every size, and flat (≤ :data:`FLAT`) from the first to the last.
FLAT_TASKS = ("rollback_plan", "delta_lookup", "rollback_plan_full_run")


def run(work: Path, sizes: list[int], before: list[int], full_run: list[int],
        full_run_before: list[int] = ()) -> list[Figure]:
    measured: dict[str, list[dict[str, Any]]] = {t: [] for t in TASKS}
    for size in sizes:
        mroot = work / f"ledger-{size}" / "m"
        t0 = time.perf_counter()
        stage(mroot, size)
        staged_s = round(time.perf_counter() - t0, 1)
        tasks = ["rollback_plan", "delta_lookup"]
        tasks += ["rollback_plan_whole", "delta_lookup_whole"] if size in before else []
        tasks += ["rollback_plan_full_run"] if size in full_run else []
        tasks += ["rollback_plan_full_run_whole"] if size in full_run_before else []
        for task in tasks:
            r = _run(task, mroot, size)
            r["staged_s"] = staged_s
            measured[task].append(r)
            print(json.dumps(r), file=sys.stderr)
        shutil.rmtree(mroot.parent, ignore_errors=True)
    figs: list[Figure] = []
    for task, runs in measured.items():
        flat = task in FLAT_TASKS
        for r in runs:
            figs.append(Figure("ledger_tasks", LABELS[task], f"{r['size']:,} ledger lines", r["peak_rss_mb"], "MB",
                               f"< {LIMIT_MB}" if flat else "-", r["peak_rss_mb"] < LIMIT_MB if flat else None,
                               detail={"seconds": r["seconds"], "result": r["result"]}))
        if flat and len(runs) >= 2:
            figs.append(growth_figure("ledger_tasks", f"peak RSS growth, {task}", (runs[0]["size"], runs[-1]["size"]),
                                      (runs[0]["peak_rss_mb"], runs[-1]["peak_rss_mb"]), "ledger lines", FLAT))
    return figs


NOTES = [
    "About 130 MB of each figure is the process with its imports (pandas, pyarrow): what grows with the "
    "ledger is the rest.",
    "`rollback_plan` reads the ledger files one at a time (`clio2sf.rollback.plan_rollback_from_ledger`): its "
    "time grows with the ledger (every other run's files are read once when the run has files another run may "
    "share), its memory does not.",
    "`delta_lookup` reads the index twins (`clio2sf.delta_run.our_last_writes`), one file at a time.",
    "Rolling back a whole run (`rollback_plan_full_run`) plans one operation per record of that run: "
    "`clio2sf.rollback.iter_rollback` indexes the run's ledger lines in an SQLite file of the task's own "
    "temporary directory and yields the plan a step at a time (at most 2,000 operations of one action and "
    "object); `clio2sf.rollback_run.spool_plan` writes each step to the staging spool and the reports are "
    "written from the spool, file by file (the HTML lists up to 10,000 operations inline, past that it "
    "summarises per object and links the CSV). The `(before)` row is the same plan held whole, as "
    "`plan_rollback_from_ledger` still builds it for small runs.",
]


def write_results(figs: list[Figure], argv: list[str]) -> None:
    from clio2sf import staging

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    doc = {"measured_at": stamp, "commit": commit, "machine": machine(), "command": argv,
           "figures": [f.as_dict() for f in figs]}
    staging.write_json(RESULTS / "ledger_tasks.json", doc)
    render(doc)


def render(doc: dict[str, Any]) -> None:
    """``ledger_tasks.md`` from the recorded ``ledger_tasks.json``."""
    figures_page(RESULTS / "ledger_tasks.md", "Ledger readers: memory as the ledger grows", doc,
                 "benchmarks.bench_ledger_tasks", ".", NOTES, [("seconds", lambda f: f["detail"].get("seconds", ""))],
                 after=" (generated ledgers, no sandbox; each task in a fresh process, peak RSS = VmHWM)",
                 note=f"({doc['commit_note']}.)" if doc.get("commit_note") else "")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        worker(argv[1], Path(argv[2]), int(argv[3]))
        return
    if argv[:1] == ["--render"]:  # the page again from the recorded figures
        render(json.loads((RESULTS / "ledger_tasks.json").read_text(encoding="utf-8")))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--before", default="100000", help="sizes at which to also measure the whole-ledger read")
    ap.add_argument("--full-run", default="100000", help="sizes at which to also plan the rollback of the full run")
    ap.add_argument("--full-run-before", default="",
                    help="sizes at which to also plan it with the plan held whole (as before the spool)")
    ap.add_argument("--no-write", action="store_true", help="print the figures only")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-ledger-tasks-") as tmp:
        figs = run(Path(tmp), ints(args.sizes), ints(args.before), ints(args.full_run), ints(args.full_run_before))
    for f in figs:
        print(json.dumps(f.as_dict()))
    if not args.no_write:
        write_results(figs, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
