"""Peak RSS of the full load's verify step (``verify_migration``, what ``mig_05_full_load.verify`` runs).

``python -m benchmarks.bench_verify_memory [--preset large | --matters N] [--work DIR] [--part-records N]``

Set-up (once per ``--work`` directory, kept for re-runs: ``DIR/ready.json``): the Clio sandbox's
seeded firm of ``--preset`` (``large``: 4,000 matters, ≈98,773 records, 6,000 documents) is extracted
without a rate limit, its users resolved, the schema applied, every batch transformed and loaded into
the Salesforce sandbox (real HTTP, Bulk API 2.0 where it pays), as ``tests/integration/
test_verify_sandbox.py`` does for the tiny firm.  Measure: a fresh process runs ``verify_migration``
over the whole staged extraction against the org read back over HTTP and prints its RSS before the
call (the imports: the Airflow task process image is larger, ~194 MB in the DAG benchmark) and its peak
(``VmHWM``); the figure is the peak, target < 500 MB.  The verification must come out clean (0
unexplained differences): a verify that skipped its work would also be small.  ``--code DIR`` measures
another checkout's verifier on the same set-up (a before figure); ``--record LABEL`` keeps the figure
in ``benchmarks/results/verify_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Figure, at_most, keep_run, met_text, print_figures, runs_page

FIRM, MIGRATION = "large", "m1"


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _part(part: Any) -> str:
    return f" (part {part.index + 1}/{part.count})" if part.count > 1 else ""


def setup(work: Path, preset: str, clio: Any, sf: Any) -> dict[str, Any]:
    """Extract, transform and load the firm once (``work/ready.json`` marks it done)."""
    from clio2sf import catalog, pipeline, staging
    from clio2sf.extract import extract_object, read_records
    from clio2sf.mapping.schema_plan import build_schema_plan
    from clio2sf.mapping.spec import load_spec
    from clio2sf.mapping.transform import PRODUCES
    from clio2sf.mapping.users import UserMap
    from clio2sf.user_resolution import report_csv, resolve_fallback, resolve_users, user_map_document
    from clio2sf_airflow.hooks.clio import ClioHook
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook
    from sandbox.common.roster import INTEGRATION_USER

    t0 = time.monotonic()
    clio_hook = ClioHook()
    hook = ClioSalesforceHook(sleep=lambda s: None, poll_interval=0.05, max_poll_interval=0.5)
    mroot = staging.migration_root(work / "stage", FIRM, MIGRATION)
    wanted = set(PRODUCES) | {"custom_fields", "practice_areas", "bank_accounts"}
    counts = {}
    for obj in catalog.CLIO_OBJECTS:
        if obj.name in wanted:
            counts[obj.name] = extract_object(obj, clio_hook.get_page, mroot, download=clio_hook.download_document,
                                              request_count=lambda: clio_hook.requests_made)["records"]
    spec = load_spec(None)
    sf_users = hook.query_all("SELECT Id, Username, Email, IsActive FROM User")
    fallback = resolve_fallback(sf_users, INTEGRATION_USER["username"])
    resolutions = resolve_users([e["data"] for e in read_records(mroot, "users")], sf_users, fallback)
    staging.write_json(mroot / "users" / "user_map.json", user_map_document(resolutions, fallback))
    (mroot / "users" / "user_report.csv").write_text(report_csv(resolutions))
    users = UserMap.from_json(staging.read_json(mroot / "users" / "user_map.json"))
    plan = build_schema_plan(spec, clio_custom_fields=[e["data"] for e in read_records(mroot, "custom_fields")],
                             practice_areas=[e["data"] for e in read_records(mroot, "practice_areas")])
    pipeline.apply_schema_plan(hook, plan, activity_fallback=False)
    list(pipeline.transform_staged(spec, users, mroot))  # counts per batch; the load reads the files
    for deferred in (False, True):
        for sobject in spec.load_order:
            folder = mroot / "transformed" / sobject
            paths = sorted(folder.glob("*.jsonl.gz")) if folder.exists() else []
            for group in pipeline.group_batches(paths, sobject) if paths else ():
                pipeline.load_batch(hook, group if len(group) > 1 else group[0], mroot, migration_id=MIGRATION,
                                    run_id="run-1", mode="auto", load_order=spec.load_order, deferred=deferred,
                                    sleep=lambda s: None)
    ready = {"preset": preset, "records": sum(counts.values()), "objects": counts,
             "setup_seconds": round(time.monotonic() - t0, 1)}
    staging.write_json(work / "ready.json", ready)
    return ready


def measure(work: Path, part_records: int | None = None) -> dict[str, Any]:
    """In this (fresh) process: verify the whole firm; RSS before and peak. ``part_records``: the
    verifier's cap on a group compared at once (``run.PART_RECORDS``), default the code's."""
    from clio2sf import staging
    from clio2sf.extract import read_records
    from clio2sf.mapping.spec import load_spec
    from clio2sf.verify import accounting, compare, readback, source
    from clio2sf.verify import run as verify_run
    from clio2sf.verify.run import verify_migration
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    steps: list[tuple[str, float, float]] = []  # (step, RSS and peak after it, MB): where memory is held

    def after(step: str, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            steps.append((step, round(_rss_kb("VmRSS") / 1024, 1), round(_rss_kb("VmHWM") / 1024, 1)))
            return out
        return wrapped

    assert verify_run.source is source  # verify_migration calls these through their modules
    if part_records is not None:
        verify_run.PART_RECORDS = part_records
    for mod, name in ((readback, "index"), (accounting, "account")):
        setattr(mod, name, after(name, getattr(mod, name)))
    build, group = source.Builder.build, compare.Comparison.group
    source.Builder.build = lambda self, objects, part=source.WHOLE: after(
        f"build {'+'.join(objects)}{_part(part)}", build)(self, objects, part)
    if hasattr(source.Builder, "build_parts"):  # every part in one pass (lane 35a): a step once it has ended
        build_parts = source.Builder.build_parts

        def each_part(self: Any, objects: Any, count: int, *args: Any, **kwargs: Any) -> Any:
            yield from build_parts(self, objects, count, *args, **kwargs)
            after(f"build {'+'.join(objects)} ({count} parts, one pass)", lambda: None)()

        source.Builder.build_parts = each_part
    compare.Comparison.group = lambda self, exp, part=source.WHOLE, scope=None: after(
        f"compare {'+'.join(sorted({s for s, _ in exp.records} | ({'Event'} if exp.series else set())))}{_part(part)}",
        group)(self, exp, part, scope)
    mroot = staging.migration_root(work / "stage", FIRM, MIGRATION)
    hook = ClioSalesforceHook(sleep=lambda s: None)
    spec = load_spec(None)
    listed = [e["data"] for e in read_records(mroot, "custom_fields")]
    before = _rss_kb("VmRSS")
    t0, c0 = time.monotonic(), time.process_time()
    result = verify_migration(hook, mroot, spec, out_dir=work / "reports" / f"verify-{os.getpid()}",
                              discovered_custom_fields=listed)
    return {"rss_before_mb": round(before / 1024, 1), "peak_rss_mb": round(_rss_kb("VmHWM") / 1024, 1),
            "seconds": round(time.monotonic() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1),
            **{k: result[k] for k in ("records_compared", "fields_compared", "mismatches", "explained", "queries")},
            "unaccounted_fields": len(result["unaccounted_fields"]), "rss_after_steps_mb": steps,
            "part_records": getattr(verify_run, "PART_RECORDS", None)}


def run(work: Path, preset: str = "large", code: Path = ROOT, part_records: int | None = None,
        matters: int | None = None) -> list[Figure]:
    """Set up once, then measure ``code``'s verifier (a checkout: this one, or e.g. a worktree of an
    earlier commit for a before figure) in a fresh process. ``matters``: a firm of that many matters
    (every other collection scaled from it, as the presets are) instead of ``preset``'s."""
    if matters is not None:
        preset = f"{matters}-matter"
    from sandbox.clio.testing import run_clio_sandbox
    from sandbox.salesforce.testing import run_sf_sandbox
    from scripts.runner import airflow_env

    work.mkdir(parents=True, exist_ok=True)
    with run_clio_sandbox(work / "clio", preset="demo" if matters else preset, rate_limit=None,
                          matters=matters) as clio, \
            run_sf_sandbox(work / "sf", seed=42) as sf:
        env = airflow_env(clio, sf, f"file://{work / 'stage'}", rate_dir=work / "rate")
        os.environ.update(env)
        ready = json.loads((work / "ready.json").read_text()) if (work / "ready.json").exists() else None
        if ready is None or ready.get("preset") != preset:
            ready = setup(work, preset, clio, sf)
        env = {**env, "PYTHONPATH": f"{code}:{code / 'plugins'}"}
        load = os.getloadavg()[0]
        extra = ["--part-records", str(part_records)] if part_records is not None else []
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_verify_memory", "--measure", str(work), *extra],
                             cwd=code, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"verify process failed:\n{out.stderr[-4000:]}")
        got = json.loads(out.stdout.strip().splitlines()[-1])
    clean = got["mismatches"] == 0 and got["unaccounted_fields"] == 0
    measured = subprocess.run(["git", "rev-parse", "HEAD"], cwd=code, capture_output=True, text=True).stdout.strip()
    return [Figure("memory", "peak RSS, verify (full load)", f"{preset} firm, {ready['records']:,} records",
                   got["peak_rss_mb"], "MB", "< 500", at_most(got["peak_rss_mb"], 499.9) if clean else False,
                   note="" if clean else f"the verification was not clean: {got['mismatches']} unexplained",
                   detail={**got, "setup_seconds": ready.get("setup_seconds"), "commit": measured,
                           "loadavg_1m_at_start": round(load, 2)})]


RESULTS = ROOT / "benchmarks" / "results"


def record(label: str, figs: list[Figure], argv: list[str]) -> None:
    """Keep the figure under ``label`` (e.g. before / after) in ``benchmarks/results/verify_memory.json``
    and render ``verify_memory.md`` (a separate file: ``latest.md`` belongs to ``benchmarks.run``)."""
    render(keep_run(RESULTS / "verify_memory.json", label, figs, argv))


def render(doc: dict[str, Any]) -> None:
    steps: list[str] = []

    def cells(label: str, entry: dict[str, Any], f: dict[str, Any]) -> list[Any]:
        d = f["detail"]
        steps.append(f"- {label}: RSS / peak after each step (MB): " + "; ".join(
            f"{name} {rss} / {peak}" for name, rss, peak in d.get("rss_after_steps_mb") or []))
        return [f"{label} ({entry['measured_at']})", f"`{d.get('commit', '')[:10]}`", f["subject"], f["value"],
                d.get("rss_before_mb"), f["target"], met_text(f["met"]), d.get("seconds"), d.get("cpu_seconds", ""),
                d.get("queries", ""), d.get("part_records", ""), f"{d.get('records_compared', 0):,}",
                d.get("mismatches"), d.get("loadavg_1m_at_start", "")]

    runs_page(RESULTS / "verify_memory.md", "Peak RSS of the full load's verify step",
              "`python -m benchmarks.bench_verify_memory` (see its docstring): `verify_migration` over the whole "
              "staged extraction of the sandbox firm against the org read back over HTTP, in a fresh process; "
              "peak RSS = VmHWM; the process with its imports is the RSS before the call.", doc,
              ["run", "commit", "subject", "peak RSS (MB)", "before the call (MB)", "target", "met", "seconds",
               "CPU seconds (verify process)", "queries", "part cap", "records compared", "unexplained",
               "1-min load at start"], cells, NOTES, steps)


NOTES = (
    "Since the group-by-group build (`clio2sf/verify/run.py`, `compare_groups`) the verifier holds one group's "
    "expectations at a time and streams the org's records (none held); since the parts (`run.compare_parts`) a "
    "group of more than `run.PART_RECORDS` (25,000) records, expected from Clio or held by the org (the calendar's "
    "occurrences), is built and compared a part at a time (by the last digits of the Clio number, the org asked "
    "about that part's records), with only that part's "
    "occurrence starts and event relations: the largest group no longer sets the peak, the cap does. Kept across "
    "groups: the parents' compact views (a contact: company, or its candidate company ids), the Id index of the "
    "objects lookups point at, the Clio ids as numbers per kind (8 bytes each); the index counts each sobject's "
    "distinct Clio ids from an 8-byte hash of each (not a set of the ids).",
    "Still growing with the firm, not cut in parts: the Id index of the lookup targets (Account, Contact, the "
    "matters), the parents' views, the Clio ids (8 bytes each) and, while the index runs, one 8-byte hash per "
    "record of the largest sobject. A group in parts reads each of its sobjects and link tables from the org once "
    "and writes each row to its part's temporary file (disk, not memory; lane 34a: before, part 0 read its "
    "sobjects whole and every other part asked again about its own records).",
    "The large firm: `python -m benchmarks.bench_verify_memory --work DIR --record 'after (large)'`, and "
    "`--code <a worktree of 9a253d0> --record 'before (large)'` for the before figure (set-up about 30 min, "
    "once per DIR); `--part-records N` measures another cap, `--matters N` a firm of N matters.",
    "The large firm (`/tmp` set-up of lane 20j, extracted, transformed and loaded 10:03–10:32 UTC at the code of that time) was loaded before the daylight-saving fix `ffe2726` (11:27 UTC): its org holds one Event whose `EndDateTime` the old transform computed in local wall time (`calendar_entry-3532`, an occurrence on 2024-11-03, the US fall-back day: org 07:37:18Z, Clio's exact duration gives 06:37:18Z). Both large runs report exactly that one unexplained mismatch and nothing else (0 unaccounted fields, the same 192,259 records and 2,502,407 fields compared), so \"met\" reads **not met** by the script's rule (a figure counts only from a clean verification), but the memory figure is still valid: the verifier did all of its work. Peak 587.9 MB before (9a253d0: every expectation built, then the org's records read and held) → 316.3 MB after (one group at a time; the largest, activities + tasks + communications, is the peak); the process with its imports is 177 MB in both. Both ran under `nice -n 19` beside the coordinator's full test suite and a CPU burner on 2 CPUs (the after run also beside `bench_load_task_memory`), so the seconds are not comparable. (Kept in `NOTES` since lane 34a, so that `--render` keeps it.)",
    "Lane 20n (added by hand, like the note above): `before 20n` = `d1ac0ea` (group by group, no parts), `after 20n` = the parts (a group of more than `run.PART_RECORDS` = 25,000 records in parts by the last digits of the Clio number, each part's records asked of the org by their endings), the index counting Clio ids from 8-byte hashes, the parents' compact views; measured 16:35–17:09 UTC on a copy of the large firm's set-up above (so the same one unexplained Event `EndDateTime`), after the coordinator's large-preset run had ended, with other lanes' benchmarks beside them (seconds not comparable between rows). Large firm: **317.5 → 255.9 MB** peak, 139.9 → 78.4 MB above the 177.5 MB process: activities + tasks + communications in 2 parts (the peak: a part of ~21,000 records), the calendar's 105,742 occurrences in 5; the final code (`87930c4`, rebased on other lanes' commits that shrank the process with its imports to 128.8 MB) **206.8 MB**, 78.0 above it; with `--part-records 5000` (at `13f779f`: 9 and 22 parts; 476 s, the sandbox evaluating each part's `LIKE` endings row by row) **224.4 MB**, 47 above the process, each part adding at most 7 MB to the RSS it starts from. Every large run wrote byte-identical `verification.csv`, `.json` and `.html` (192,259 records, 2,502,407 fields), and the demo firm's reports are identical at caps of 25,000, 300 and 50. Demo firm: 192.4 → 192.3 MB (no group over the cap). In-process at development size (`tracemalloc`, an in-memory org, a synthetic firm of tasks, contacts, matters and calendar entries, a cap of 4,000, at `13f779f`): 13,602 → 54,402 raw records, peak traced 18.1 → 72.8 MB before (×4.0, linear), 9.4 → 22.2 MB after; what still grows there is what is kept across groups (2.7 → 10.7 MB at the end). Flat: the groups' expectations, occurrence starts and event relations (bounded by the cap). Not flat yet: the Id index of Account, Contact and the matters (about 400 bytes a record), the parents' views (about 110 bytes a contact), the Clio ids (8 bytes each), the index's hashes of the largest sobject (8 bytes a record, while it runs), and the RSS the index step leaves (184 MB at the demo firm, 199 MB at the large). A 1M-record firm was not measured (the xl set-up takes hours); by these figures its peak would be the cap's part plus about ten times the large firm's kept structures (tens of MB more), under 500 MB but not strictly flat.",
    "Lane 34a (time, not memory): a group compared in parts read the org again for every part (a `LIKE` on the "
    "Clio id's endings of each sobject, evaluated row by row, and the team member / event relation tables whole), "
    "so its reads grew with the square of the group: at xl (Event in 50 parts, 2.0M EventRelation rows read 50 "
    "times) verify was still running after 44 minutes. Now each sobject and link table is read once per group "
    "and spooled to one temporary file per part (`readback.Spool`). Measured on a 1,600-matter firm "
    "(`--matters 1600`, 41,645 records, 46,102 Events, 85,687 EventRelations) with `--part-records 1080`, which "
    "gives it xl's part counts (xl is about 23 times larger; its default cap of 25,000 puts Event in 50 parts), "
    "and at the default cap; see the rows `before 34a` / `after 34a` (the before rows at `e41918b`). The machine "
    "was shared with an xl benchmark and other lanes' tests (1-minute load about 8): the wall seconds include "
    "waiting for a CPU, the CPU seconds of the verify process do not (the Salesforce sandbox's own CPU is "
    "not in them).",
    "Lane 35a (CPU, not memory): a group compared in parts was built twice (a first pass over the parts for what "
    "the group asks of the org, then each part again to compare it) and every build read the group's staged raw "
    "records whole, skipping the other parts' records: 2 x parts reads of them (the calendar at xl: 100). Now "
    "`source.Builder.build_parts` builds every part in one pass over the raw records (each read once, each record "
    "built once) and writes each part's expectations, a piece of at most 5,000 records at a time, to that part's "
    "temporary file (pickled as tuples of plain values), which the part reads back to compare. Rows `before 35a` "
    "(at `4fb91bc`) / `after 35a` on the 1600-matter firm: with `--part-records 1080` (xl's part counts) "
    "14.5 -> 10.1 CPU-s and 41.0 -> 29.1 s, peak 154.4 -> 154.7 MB (unrecorded repeats: 15.2-15.7 against "
    "9.8-11.8 CPU-s); at the default cap (only the calendar in 2 parts) 9.1 -> 9.4 CPU-s, the same within the "
    "noise (repeats 8.5-8.8 both). The same 81,205 records and byte-identical `verification.csv/.json/.html` "
    "in every run. Load 8-10 (an xl benchmark beside them): the wall seconds include waiting for a CPU.",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="large")
    ap.add_argument("--matters", type=int, default=None,
                    help="a firm of this many matters instead of --preset's (collections scale from it)")
    ap.add_argument("--work", default=None, help="set-up kept here for re-runs (default: a new temp dir)")
    ap.add_argument("--code", default=None, help="measure this checkout's verifier (e.g. a worktree of an earlier "
                                                 "commit, for a before figure); default: this one")
    ap.add_argument("--record", default=None, metavar="LABEL",
                    help="keep the figure under LABEL in benchmarks/results/verify_memory.{json,md}")
    ap.add_argument("--render", action="store_true", help="write verify_memory.md again from verify_memory.json")
    ap.add_argument("--part-records", type=int, default=None,
                    help="the verifier's cap on a group compared at once (run.PART_RECORDS); default the code's")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.part_records)))
        return
    if args.render:  # the page again from the recorded figures
        render(json.loads((RESULTS / "verify_memory.json").read_text(encoding="utf-8")))
        return
    import tempfile

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-verify-memory-"))
    figs = run(work, args.preset, Path(args.code).resolve() if args.code else ROOT, args.part_records, args.matters)
    print_figures(figs, args.record, record)


if __name__ == "__main__":
    main()
