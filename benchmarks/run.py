"""Run every benchmark and write the results: ``python -m benchmarks.run [--size tiny|full]``.

``--size tiny`` is the CI smoke run (every isolated benchmark at a tiny size, a couple of minutes, no
target asserted); the default full run adds ``dags`` (:mod:`benchmarks.bench_dags`: the phase DAGs
under a real scheduler on the ``large`` preset, about an hour) and is run by hand (``make bench``).
``--only dags_xl`` runs the DAGs on the ``xl`` preset (≈1M records; ``make bench-xl``, hours) and
merges its figures into the previous results; ``--only dags_xl_records`` runs them on the ``xl`` preset
with the extraction's ``objects`` leaving documents out (the extract → transform → load path of ≈1M
records, for memory and ledger scaling; ``make bench-xl-records``); ``--size tiny --only dags`` runs the DAG path on the
tiny preset (``make bench-dags-smoke``).  The full run also measures the peak RSS of four phase steps in
fresh processes: ``summary_memory`` (:mod:`benchmarks.bench_summary_memory`, ``summarize_extraction``'s
work at 100k and 1M records), ``sample_memory`` (:mod:`benchmarks.bench_sample_memory`, ``select_sample``'s work at 100k
and 1M staged records), ``reconcile_memory`` (:mod:`benchmarks.bench_reconcile_memory`, the full load's
reconcile on a synthetic firm of 100k and 1M records), ``rollback_memory`` (:mod:`benchmarks.bench_rollback_memory`,
``mig_07_rollback``'s rollback executed on generated ledgers of 100k and 1M lines against a fake org) and ``verify_memory``
(:mod:`benchmarks.bench_verify_memory`, the full load's verify on the sandbox's ``large`` firm, about 30 min
of set-up); ``--size tiny --only reconcile_memory`` (1k and 5k records) is the quick check of that wiring.  Results: ``benchmarks/results/<date>-<size>.{md,json}``
plus ``latest.{md,json}`` (full) or ``smoke.{md,json}`` (tiny), with the machine, the date and the
git commit measured; ``latest.reading.md`` (``smoke.reading.md``), when present, is appended to the
Markdown: what whoever ran it found behind the figures (why a goal is missed: which task, which call).  Exit status 1 if a benchmark crashed or produced no figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Figure, commit, machine

RESULTS = ROOT / "benchmarks" / "results"

#: name -> (tiny, full) callables taking a work dir.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"clio": {"preset": "tiny", "window": 1.0}, "sf": {"rows": 300, "naive_rows": 50},
             "transform": 1000, "memory": [1000, 5000], "sf_sandbox": 2000,
             "dags": {"preset": "tiny", "window": 1.0}, "sample_memory": [1], "reconcile_memory": [1000, 5000],
             "verify_memory": "tiny", "summary_memory": [1], "rollback_memory": [1000, 5000]},
    "full": {"clio": {"preset": "demo", "window": 10.0, "real_rate_preset": "tiny"},
             "sf": {"rows": 10_000, "naive_rows": 1000}, "transform": 20_000,
             "memory": [10_000, 100_000, 1_000_000], "sf_sandbox": 50_000,
             "dags": {"preset": "large", "window": 5.0}, "dags_xl": {"preset": "xl", "window": 5.0},
             "dags_xl_records": {"preset": "xl", "window": 5.0}, "sample_memory": [100_000, 1_000_000],
             "reconcile_memory": [100_000, 1_000_000], "verify_memory": "large",
             "summary_memory": [100_000, 1_000_000], "rollback_memory": [100_000, 1_000_000]},
}
BENCHMARKS = ("clio", "salesforce", "transform", "memory", "sf_sandbox", "end_to_end", "dags", "dags_xl",
              "dags_xl_records", "sample_memory", "reconcile_memory", "verify_memory", "summary_memory", "rollback_memory")
#: what a run without ``--only`` runs at each size (the DAG paths take an hour and more; the tiny sample
#: firm is still one copy of the large firm, so the step memory benchmarks are left to the full run).
DEFAULT = {"tiny": BENCHMARKS[:6],
           "full": (*BENCHMARKS[:6], "sample_memory", "reconcile_memory", "summary_memory", "rollback_memory", "dags",
                    "verify_memory")}
#: runner benchmark -> the ``Figure.benchmark`` labels it produces.
FIGURE_LABELS = {"clio": ("clio_request_economy", "rate_limit_utilisation"), "salesforce": ("salesforce_call_economy",),
                 "transform": ("transform_throughput",), "memory": ("memory",),
                 "sf_sandbox": ("sf_sandbox_throughput",), "end_to_end": ("end_to_end",),
                 "dags": ("dags_large", "dags_tiny"), "dags_xl": ("dags_xl",),
                 "dags_xl_records": ("dags_xl_records",), "sample_memory": ("sample_memory",),
                 "reconcile_memory": ("reconcile_memory",), "verify_memory": ("verify_memory",),
                 "summary_memory": ("summary_memory",), "rollback_memory": ("rollback_memory",)}


def _labelled(label: str, got: Any) -> list[Figure]:
    """A step memory benchmark's figures under its own ``Figure.benchmark`` label (``label``): the
    benchmark's own label may be the isolated ``memory`` one, which a re-run of it must not replace.
    ``got``: its figures, or (figures, runs) as :func:`benchmarks.bench_sample_memory.run` returns."""
    figs = got[0] if isinstance(got, tuple) else got
    for f in figs:
        f.benchmark = label
    return list(figs)


def _verify_memory(work: Path, preset: str) -> list[Figure]:
    """:func:`benchmarks.bench_verify_memory.run`, leaving this process's environment as it was (the
    benchmark points ``os.environ`` at its own sandboxes, gone once it returns)."""
    import os

    from benchmarks import bench_verify_memory

    saved = dict(os.environ)
    try:
        return _labelled("verify_memory", bench_verify_memory.run(work, preset))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _plan(size: str, work: Path, out: Path, dags_timeout: float | None = None) -> dict[str, Callable[[], list[Figure]]]:
    from benchmarks import (
        bench_clio,
        bench_dags,
        bench_e2e,
        bench_memory,
        bench_reconcile_memory,
        bench_rollback_memory,
        bench_salesforce,
        bench_sample_memory,
        bench_sf_bulk,
        bench_summary_memory,
        bench_transform,
    )

    cfg = SIZES[size]
    limit = {} if dags_timeout is None else {"timeout": dags_timeout}
    return {
        "clio": lambda: bench_clio.run(work / "clio", **cfg["clio"]),
        "salesforce": lambda: bench_salesforce.run(work / "sf", **cfg["sf"]),
        "transform": lambda: bench_transform.figures(cfg["transform"]),
        "memory": lambda: bench_memory.run(work / "memory", cfg["memory"]),
        "sf_sandbox": lambda: bench_sf_bulk.figures(cfg["sf_sandbox"]),
        "end_to_end": lambda: bench_e2e.run(),
        "dags": lambda: bench_dags.run(work / "dags", raw=out / f"dags-{cfg['dags']['preset']}.raw.json",
                                       **cfg["dags"], **limit),
        "dags_xl": lambda: bench_dags.run(work / "dags-xl", raw=out / "dags-xl.raw.json", **cfg["dags_xl"], **limit),
        "dags_xl_records": lambda: bench_dags.run(work / "dags-xl", raw=out / "dags-xl-records.raw.json",
                                                  preset="xl", window=cfg["dags_xl_records"]["window"],
                                                  objects=bench_dags.record_objects(), **limit),
        "sample_memory": lambda: _labelled("sample_memory", bench_sample_memory.run(work / "sample-memory",
                                                                                    cfg["sample_memory"])),
        "reconcile_memory": lambda: _labelled("reconcile_memory", bench_reconcile_memory.run(
            work / "reconcile-memory", cfg["reconcile_memory"])),
        "verify_memory": lambda: _verify_memory(work / "verify-memory", cfg["verify_memory"]),
        "summary_memory": lambda: _labelled("summary_memory", bench_summary_memory.run(work / "summary-memory",
                                                                                      cfg["summary_memory"])),
        "rollback_memory": lambda: _labelled("rollback_memory", bench_rollback_memory.run(
            work / "rollback-memory", cfg["rollback_memory"])),
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


#: The goals of issue #20 through the DAGs: headline key -> (figure, goal, isolated-function figure to
#: quote beside it as (Figure.benchmark, Figure.figure, pick) or None).
HEADLINES = (
    ("clio", "Clio requests served ÷ minimum", "≤ 1.05", ("clio_request_economy", "requests used ÷ minimum", max)),
    ("sf", "Salesforce calls received per 10k rows, bulk objects", "≤ 10",
     ("salesforce_call_economy", "API calls per 10,000 records (bulk)", max)),
    ("transform", "Transform records/s per core", "≥ 20,000", ("transform_throughput", "records/s per core", min)),
    ("rss", "Peak RSS of a task process (largest)", "< 500 MB", ("memory", "peak RSS, load one object", max)),
    ("e2e", "End to end ÷ Clio floor, compressed window", "-", None),
    ("e2e_real:100k records + 20k documents", "End to end ÷ Clio floor at 50/60 s, 100k records + 20k documents",
     "≤ 1.05", None),
    ("e2e_real:1M records + 200k documents", "End to end ÷ Clio floor at 50/60 s, 1M records + 200k documents",
     "≤ 1.05", None),
)


def side_by_side(figures: list[dict]) -> list[str]:
    """The issue #20 table: each goal, the DAG-path figure per preset and the isolated-function figure."""
    dag = {}
    for f in figures:
        if f["benchmark"].startswith("dags_") and f["detail"].get("headline"):
            dag[(f["detail"]["headline"], f["benchmark"].removeprefix("dags_"))] = f
    if not dag:
        return []
    presets = [p for p in ("tiny", "large", "xl", "xl_records") if p in ("large", "xl") or any(k[1] == p for k in dag)]
    lines = ["## Through the DAGs: goals side by side", "",
             "| figure | goal | " + " | ".join(f"through the DAGs ({p.replace('_records', ', records only')})"
                                                for p in presets) + " | isolated function |",
             "|---|---|" + "---|" * (len(presets) + 1)]
    for key, label, goal, isolated in HEADLINES:
        cells = []
        for p in presets:
            f = dag.get((key, p))
            cells.append("not run" if f is None else "not measured (see the notes)" if f["value"] is None else
                         f"{_fmt(f['value'])}{' (' + {True: 'met', False: '**not met**', None: '-'}[f['met']] + ')'}")
        iso = "-"
        if isolated:
            vals = [f["value"] for f in figures if f["benchmark"] == isolated[0] and f["figure"] == isolated[1]
                    and isinstance(f["value"], int | float) and (f["target"] or isolated[0] == "memory")]
            iso = _fmt(isolated[2](vals)) if vals else "-"
        lines.append(f"| {label} | {goal} | " + " | ".join(cells) + f" | {iso} |")
    lines.append("")
    for f in figures:
        if f["benchmark"].startswith("dags_") and f["figure"] == "machine load during the run" and f["note"]:
            lines += [f"Load during the {f['benchmark'].removeprefix('dags_')} run ({f['subject']}): {f['note']}.", ""]
    return lines


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# Benchmarks ({doc['size']})", "",
             f"Measured {doc['date']} on {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}; "
             f"took {doc['seconds']:.0f} s. Produced by `python -m benchmarks.run"
             f"{' --size tiny' if doc['size'] == 'tiny' else ''}`."
             + (f" Re-run of {', '.join(doc['rerun']['benchmarks'])}; the other figures are from "
                f"{doc['rerun']['previous_date']} or earlier." if doc.get("rerun") else ""), "",
             *([f"Commit measured: `{doc['commit']}`.", ""] if doc.get("commit") else []),
             *side_by_side(doc["figures"]),
             "| benchmark | figure | subject | value | unit | target | met |", "|---|---|---|---|---|---|---|"]
    for f in doc["figures"]:
        met = {True: "met", False: "**not met**", None: "-"}[f["met"]]
        lines.append(f"| {f['benchmark']} | {f['figure']} | {f['subject']} | {_fmt(f['value'])} | {f['unit']} | "
                     f"{f['target'] or '-'} | {met} |")
    notes = [f for f in doc["figures"] if f["note"] or f["detail"].get("profile")]
    if notes or doc["errors"]:
        lines += ["", "## Notes", ""]
        for f in notes:
            text = f["note"] or ""
            if f["detail"].get("profile"):
                text += " Top functions (cProfile, self time): " + "; ".join(f["detail"]["profile"][:5])
            lines.append(f"- {f['benchmark']} / {f['figure']} / {f['subject']}: {text.strip()}")
        for name, err in doc["errors"].items():
            lines.append(f"- **{name} crashed**: {err}")
    return "\n".join(lines) + "\n"


def run(size: str, out: Path, only: list[str] | None = None, from_raw: Path | None = None,
        dags_timeout: float | None = None) -> dict:
    """Run the benchmarks (``only``, else the size's default) and write the results into ``out``.

    ``from_raw``: the DAG-path figures are recomputed from a recorded run (``dags-<preset>.raw.json``)
    instead of running it again; the results name the commit that run measured. ``dags_timeout``: seconds
    the DAG path may take; a run still going then is recorded as it stands (its figures: "not measured").
    """
    t0 = time.perf_counter()
    measured = commit()  # before the run: what was measured, whatever changes while it runs
    if from_raw is not None:
        measured = json.loads(from_raw.read_text(encoding="utf-8")).get("commit", "unknown (recorded run)")
        measured += f" (figures recomputed from the recorded run {from_raw.name})"
    figures: list[dict] = []
    errors: dict[str, str] = {}
    by_benchmark: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="clio2sf-bench-") as tmp:
        plan = _plan(size, Path(tmp), out, dags_timeout)
        if from_raw is not None:
            from benchmarks import bench_dags

            for name in ("dags", "dags_xl", "dags_xl_records"):
                plan[name] = lambda: bench_dags.from_raw(from_raw)
        for name in only or DEFAULT[size]:
            b0 = time.perf_counter()
            print(f"== {name} ({size})", flush=True)
            try:
                got = plan[name]()
            except Exception as exc:
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {str(exc)[:500]}"
                got = []
            if not got and name not in errors:
                errors[name] = "no figures"
            by_benchmark[name] = len(got)
            for f in got:
                print(f"   {f.figure} | {f.subject} | {_fmt(f.value)} {f.unit} | {f.target or '-'} | "
                      f"{ {True: 'met', False: 'NOT MET', None: '-'}[f.met]}", flush=True)
            figures += [f.as_dict() for f in got]
            print(f"   ({time.perf_counter() - b0:.1f} s)", flush=True)
    doc = {"size": size, "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine(),
           "seconds": round(time.perf_counter() - t0, 1), "benchmarks": by_benchmark, "errors": errors,
           "commit": measured, "figures": figures}
    out.mkdir(parents=True, exist_ok=True)
    stem = "smoke" if size == "tiny" else "latest"
    previous = out / f"{stem}.json"
    if only and previous.exists():
        # A partial re-run replaces only its benchmarks' figures in the previous results.
        old = json.loads(previous.read_text(encoding="utf-8"))
        if old.get("size") == size:
            redone = {label for name in only for label in FIGURE_LABELS[name]}
            figures = [f for f in old["figures"] if f["benchmark"] not in redone] + figures
            doc["figures"] = figures
            doc["benchmarks"] = {**old.get("benchmarks", {}), **by_benchmark}
            doc["errors"] = {**{k: v for k, v in old.get("errors", {}).items() if k not in only}, **errors}
            # The kept figures are as old as the previous run, or older when it was itself a re-run of
            # nothing but what this run redoes (e.g. ``--from-raw`` after ``--only dags``).
            earlier = old.get("rerun") or {}
            kept = (earlier.get("previous_date") if earlier and set(earlier["benchmarks"]) <= set(only)
                    else old.get("date"))
            doc["rerun"] = {"benchmarks": only, "previous_date": kept}
    text, md = json.dumps(doc, indent=1, ensure_ascii=False), markdown(doc)
    reading = out / f"{stem}.reading.md"
    if reading.exists():  # what the person who ran it found behind the figures (kept across re-runs)
        md += "\n" + reading.read_text(encoding="utf-8")
    dated = f"{doc['date'][:10]}-{size}"
    for name in (stem, dated):
        (out / f"{name}.json").write_text(text, encoding="utf-8")
        (out / f"{name}.md").write_text(md, encoding="utf-8")
    print(f"wrote {out / (stem + '.md')} and {out / (stem + '.json')}")
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these benchmarks")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    ap.add_argument("--from-raw", type=Path, help="recompute the DAG-path figures of a recorded run (with --only dags)")
    ap.add_argument("--dags-timeout", type=float, help="seconds the DAG path may take before it is recorded as it "
                                                        "stands (default: 6 hours)")
    args = ap.parse_args(argv)
    doc = run(args.size, args.out, args.only, args.from_raw, args.dags_timeout)
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
