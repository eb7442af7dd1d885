"""Peak RSS and time of one DAG load task as the ledger grows (``python -m benchmarks.bench_ledger``).

For each size an earlier run's ledger of that many Contact lines (files of 2,000 lines, as the load
writes them, each with its look-up index twin) is staged beside a transformed Contact batch of 2,000
rows, half of which that earlier run wrote (so the look-ups find something and before-images are
taken).  A fresh process then runs ``clio2sf.pipeline.load_batch``, what ``mig_05_full_load``'s
``load_batch`` task runs, against the Salesforce sandbox (``benchmarks.memory_worker ledger_load``).
``--before`` also times the whole-ledger read each load task did before the index
(``ledger_read_all``) at the sizes given to it.  Target: under 500 MB, flat (≤ 1.2×) from the first
size to the last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from benchmarks.bench_memory import FLAT, LIMIT_MB, _worker
from benchmarks.bench_salesforce import EXT, make_row
from benchmarks.common import Figure, growth_figure, use_salesforce
from clio2sf import staging
from clio2sf.ledger import LedgerWriter

FILE_LINES = 2_000
BATCH = 2_000


def stage(work: Path, size: int) -> None:
    """An earlier run's ledger of ``size`` Contact lines and one transformed batch of 2,000 rows."""
    mroot = work / "m"
    at = "2026-11-28T09:00:00.000000Z"
    for f, start in enumerate(range(0, size, FILE_LINES), 1):
        with LedgerWriter(mroot, "m1", "bench-first", "full_load", "Contact", f"contacts-batch-{f:05d}",
                          clock=lambda: at) as w:
            for i in range(start, min(start + FILE_LINES, size)):
                w.record(source_system_id=f"contact-{i}", sf_id=f"003{i:015d}", operation="upsert", created=True)
    # half the batch was written by the earlier run (the last ids), half is new
    first = max(0, size - BATCH // 2)
    rows = [make_row("Contact", i, "ledger") | {EXT: f"contact-{i}"} for i in range(first, first + BATCH)]
    staging.write_jsonl_gz(mroot / "transformed" / "Contact" / "batch-00001.jsonl.gz", (
        {"sobject": "Contact", "source_system_id": r[EXT], "external_id_field": EXT, "natural_key": None, "row": r}
        for r in rows))


def run(work: Path, sizes: list[int], before: list[int], seed: int = 42) -> list[Figure]:
    from sandbox.salesforce.testing import run_sf_sandbox

    runs, old = [], []
    with run_sf_sandbox(work / "sf-ledger", seed=seed, data_storage_mb=16_384) as sb:
        use_salesforce(sb)
        from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

        ClioSalesforceHook().ensure_external_id_field("Contact")
        for size in sizes:
            wdir = work / f"ledger-{size}"
            stage(wdir, size)
            runs.append(_worker("ledger_load", wdir, size))
            if size in before:
                old.append(_worker("ledger_read_all", wdir, size))
            shutil.rmtree(wdir, ignore_errors=True)
    figs = [Figure("memory", "peak RSS, one DAG load task (load_batch, 2,000 Contacts)",
                   f"{r['size']:,} ledger lines", r["peak_rss_mb"], "MB", f"< {LIMIT_MB}", r["peak_rss_mb"] < LIMIT_MB,
                   detail={"seconds": r["seconds"]}) for r in runs]
    if len(runs) >= 2:
        figs.append(growth_figure("memory", "peak RSS growth, one DAG load task", (runs[0]["size"], runs[-1]["size"]),
                                  (runs[0]["peak_rss_mb"], runs[-1]["peak_rss_mb"]), "ledger lines", FLAT))
    figs += [Figure("memory", "peak RSS, whole-ledger read (the look-up before the index)",
                    f"{r['size']:,} ledger lines", r["peak_rss_mb"], "MB", "-", None,
                    detail={"seconds": r["seconds"]}) for r in old]
    return figs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--before", default="100000", help="sizes at which to also time the old whole-ledger read")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    before = [int(s) for s in args.before.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        for f in run(Path(tmp), sizes, before):
            print(json.dumps(f.as_dict()))


if __name__ == "__main__":
    main()
