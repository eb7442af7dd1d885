"""Peak RSS of each task type at growing sizes, each in a fresh subprocess (proof of streaming).

See :mod:`benchmarks.memory_worker` for what each task runs.  Targets: under 500 MB, and the
peak at the largest size at most 1.2× the peak at the previous size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.bench_salesforce import EXT, make_row
from benchmarks.common import ROOT, Figure, growth_figure, use_salesforce
from clio2sf import staging

TASKS = ("extract", "transform", "load")
LIMIT_MB = 500
FLAT = 1.2


def _worker(task: str, work: Path, size: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory_worker", task, str(work), str(size)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker {task} {size} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _contact_batches(work: Path, size: int, per_batch: int = 10_000) -> None:
    """Write transformed Contact batches (streamed, one batch in memory at a time)."""
    out = work / "m" / "transformed" / "Contact"
    staging.ensure_dir(out)
    for b, start in enumerate(range(0, size, per_batch), 1):
        rows = (make_row("Contact", i, f"mem{size}") for i in range(start, min(start + per_batch, size)))
        staging.write_jsonl_gz(out / staging.batch_name(b), (
            {"sobject": "Contact", "source_system_id": r[EXT], "external_id_field": EXT, "natural_key": None,
             "row": r} for r in rows))


def run(work: Path, sizes: list[int], seed: int = 42) -> list[Figure]:
    from sandbox.salesforce.testing import run_sf_sandbox

    results: dict[str, list[dict]] = {t: [] for t in TASKS}
    with run_sf_sandbox(work / "sf-memory", seed=seed, data_storage_mb=16_384) as sb:
        use_salesforce(sb)
        from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

        ClioSalesforceHook().ensure_external_id_field("Contact")
        for size in sizes:
            wdir = work / f"mem-{size}"
            results["extract"].append(_worker("extract", wdir, size))
            results["transform"].append(_worker("transform", wdir, size))
            shutil.rmtree(wdir / "m" / "transformed", ignore_errors=True)
            _contact_batches(wdir, size)
            results["load"].append(_worker("load", wdir, size))
            shutil.rmtree(wdir, ignore_errors=True)
    figs: list[Figure] = []
    for task, runs in results.items():
        for r in runs:
            if r["records"] != r["size"]:
                raise RuntimeError(f"memory {task} {r['size']}: processed {r['records']} records")
            figs.append(Figure("memory", f"peak RSS, {task} one object", f"{r['size']:,} records",
                               r["peak_rss_mb"], "MB", f"< {LIMIT_MB}", r["peak_rss_mb"] < LIMIT_MB,
                               detail={"seconds": r["seconds"]}))
        if len(runs) >= 2:
            figs.append(growth_figure("memory", f"peak RSS growth, {task}", (runs[-2]["size"], runs[-1]["size"]),
                                      (runs[-2]["peak_rss_mb"], runs[-1]["peak_rss_mb"]), "", FLAT))
    return figs
