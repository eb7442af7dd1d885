"""Peak RSS and CPU of the extract phase's ``summarize_extraction`` work as the firm grows, without Clio.

``python -m benchmarks.bench_summary_memory [--sizes 100000,1000000] [--no-write]``

For each size N the matters and activity rates of copies of the sandbox's Clio firm (the large preset's
4,000 matters a copy, about 98,000 records of the transformed objects: :func:`benchmarks.bench_sample_memory.stage`,
each copy's ids moved by 10^9) are staged as raw envelopes in batches of 2,000 with complete manifests under a
file:// staging root, as the extraction leaves them, with discover's ``clio_config.json`` (the firm's users,
activity descriptions and bank accounts). The task reads no other object. Then, **in a fresh process** reading
through ``ObjectStoragePath`` as the task reads, what ``mig_02_extract``'s ``summarize_extraction`` runs once
every record object is complete: ``raw/_extraction.json`` written, then
:func:`clio2sf_airflow.phases.discover.complete_reference_files` (matters per billing method, evergreen
retainers, matter and client rates written into the reference files). Peak RSS is ``VmHWM``
(:func:`benchmarks.memory_worker.peak_rss_kb`), CPU the process's user + system seconds. On older code
(this file and ``bench_sample_memory.py`` copied into a checkout of it) the same calls run that code.

Target (issue #20): every task under 500 MB and flat (≤ 1.2×) from 100k to 1M records. Prints one JSON line
per size and writes ``benchmarks/results/summary_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Figure, figures_page, growth_figure, ints, shown_args

LIMIT_MB = 500
FLAT = 1.2
RESULTS = ROOT / "benchmarks" / "results"
FIRM = "harlow_vance"
MIGRATION = "m1"
#: What ``complete_reference_files`` reads of the extraction.
OBJECTS = ("matters", "activity_rates")


def stage(mroot: Path, size: int, seed: int = 20) -> dict[str, Any]:
    """The matters and activity rates of about ``size`` records' worth of copies of the sandbox firm,
    staged complete, and discover's Clio configuration; returns the records staged per object and the
    firm's records (all objects of the copies)."""
    from benchmarks.bench_sample_memory import BASE_MATTERS, _firm
    from benchmarks.bench_sample_memory import stage as stage_firm
    from clio2sf import staging
    from sandbox.clio.firm import FirmBuilder

    n = stage_firm(mroot, size, seed, objects=OBJECTS)
    per_copy = sum(len(v) for v in _firm(seed).values())
    b = FirmBuilder(seed, BASE_MATTERS, 0.0)
    b.build()
    config = {k: [{f: v for f, v in r.items() if not f.startswith("_")} for r in b.data.get(k, [])]
              for k in ("users", "activity_descriptions", "bank_accounts")}
    staging.write_json(mroot / "discover" / "clio_config.json", config)
    return {"staged": n, "firm_records": per_copy * max(1, round(size / per_copy))}


def worker(root_url: str, idle: bool) -> None:
    """``summarize_extraction``'s work on the root at ``root_url`` in this (fresh) process; one JSON line."""
    from airflow.sdk import ObjectStoragePath

    from benchmarks.memory_worker import peak_rss_kb
    from clio2sf import staging
    from clio2sf_airflow.phases import discover
    from clio2sf_airflow.phases.extract import EXTRACTION, _document

    root = ObjectStoragePath(root_url)
    if idle:
        print(json.dumps({"peak_rss_mb": round(peak_rss_kb() / 1024, 1)}))
        return
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    summaries = []
    for name in OBJECTS:
        m = staging.read_manifest(root, name) or {}
        summaries.append({"object": name, "records": m.get("records", 0), "batches": len(m.get("batches", [])),
                          "requests": 0, "complete": bool(m.get("complete"))})
    doc = _document(summaries, documents_pending=False)
    staging.write_json(root / "raw" / EXTRACTION, doc)
    refs = discover.complete_reference_files(root)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1),
                      "cpu_s": round(usage.ru_utime - usage0.ru_utime + usage.ru_stime - usage0.ru_stime, 1),
                      "peak_rss_mb": round(peak_rss_kb() / 1024, 1), "reference_items": refs,
                      "reference_bytes": {p.name: p.stat().st_size
                                          for p in sorted((root / "discover" / "reference").iterdir())}}))


def _run_worker(root: Path, idle: bool = False) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_summary_memory", "--worker", f"file://{root}",
                           "1" if idle else "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"summarize_extraction worker: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(work: Path, sizes: list[int]) -> tuple[list[Figure], list[dict[str, Any]]]:
    """Per size: stage, then ``summarize_extraction``'s work in a fresh process."""
    runs = []
    for size in sizes:
        root = work / f"n{size}" / FIRM / MIGRATION
        t0 = time.perf_counter()
        staged = stage(root, size)
        r = _run_worker(root)
        r.update(size=size, records=staged["firm_records"], staged=staged["staged"],
                 staged_s=round(time.perf_counter() - t0 - r["seconds"], 1))
        print(json.dumps(r), file=sys.stderr)
        runs.append(r)
    return figures(runs, _run_worker(work, idle=True)["peak_rss_mb"]), runs


def figures(runs: list[dict[str, Any]], floor: float) -> list[Figure]:
    figs = []
    for r in runs:
        subject = f"{r['records']:,} firm records ({r['staged']['matters']:,} matters)"
        figs.append(Figure("summary_memory", "peak RSS of summarize_extraction's work", subject, r["peak_rss_mb"], "MB",
                           f"< {LIMIT_MB}", r["peak_rss_mb"] < LIMIT_MB,
                           detail={k: r[k] for k in ("cpu_s", "seconds", "staged", "reference_items", "reference_bytes")}))
        figs.append(Figure("summary_memory", "CPU of summarize_extraction's work", subject, r["cpu_s"], "CPU-s"))
    if len(runs) >= 2:
        figs.append(growth_figure("summary_memory", "peak RSS growth of summarize_extraction's work",
                                  (runs[0]["records"], runs[-1]["records"]),
                                  (runs[0]["peak_rss_mb"], runs[-1]["peak_rss_mb"]), "records", FLAT))
    figs.append(Figure("summary_memory", "peak RSS of the same process doing nothing (imports only)", "-", floor, "MB"))
    return figs


NOTES = [
    "What grew with the firm before (the xl run through the DAGs on aa9f79d: 376.4 MB, large 191 MB): "
    "`complete_reference_files` kept every matter with a custom rate or an evergreen retainer (about 55% of the "
    "sandbox firm's matters have a custom rate), built the rate document's matter level from them, a scrubbed copy "
    "of both, and the JSON text of the files whole. Now the matters are counted in one read and read again as each "
    "file listing some of them is written item by item (`clio2sf.reports.Streamed`); since 4547b54 the client "
    "rates (activity rates, one per fifth of the clients here) are held as a tuple each (about 300 bytes) and "
    "their dicts made as the file is written: what still grows is those tuples (5,630 rates at 1M: about 2 MB).",
    "The ratio is taken over the whole process, whose floor here is lower than a task's under Airflow's task runner "
    "(the extract phase's smallest tasks of the xl run: 145-150 MB).",
]


def write_results(figs: list[Figure], runs: list[dict[str, Any]], argv: list[str], note: str = "") -> None:
    from benchmarks.common import write_results_doc

    write_results_doc(RESULTS / "summary_memory.json", figs, argv, render, note=note, tail={"runs": runs})


def render(doc: dict[str, Any]) -> None:
    """``summary_memory.md`` from the recorded ``summary_memory.json``."""
    figures_page(RESULTS / "summary_memory.md", "Extract phase: summarize_extraction's memory and CPU as the firm grows",
                 doc, "benchmarks.bench_summary_memory",
                 ", on the matters and activity rates of the sandbox's large firm (1 copy, then 10) staged under a "
                 "file:// root (no Clio).", NOTES)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[2] == "1")
        return
    if argv[:1] == ["--render"]:
        render(json.loads((RESULTS / "summary_memory.json").read_text(encoding="utf-8")))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--note", default="", help="a sentence on the conditions, kept with the figures")
    ap.add_argument("--no-write", action="store_true", help="print the figures only")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-summary-memory-") as tmp:
        figs, runs = run(Path(tmp), ints(args.sizes))
    for f in figs:
        print(json.dumps(f.as_dict()))
    if not args.no_write:
        write_results(figs, runs, shown_args(argv), args.note)


if __name__ == "__main__":
    main(sys.argv[1:])
