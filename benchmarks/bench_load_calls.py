"""Salesforce calls per 10,000 rows of a volume object, through ``mig_05_full_load``'s load tasks.

``python -m benchmarks.bench_load_calls [--rows 20000] [--sobject Contact]``

Transformed batches of 2,000 rows (what one raw batch's ``transform_batch`` task writes) are staged
under a file:// staging root; then the full load's task callables run as the scheduler would run
them, with their Airflow context: ``list_batches(sobject)`` (the group step) and ``load_batch(item)``
for each work item it returns, against the Salesforce sandbox.  The calls are counted from the
sandbox's own request log (every API call it received: describes, queries, Bulk job steps,
collections), not from the client.  Target: ≤ 10 per 10,000 rows.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

from benchmarks.bench_salesforce import EXT, make_row
from benchmarks.common import Figure, at_most, use_salesforce
from clio2sf import staging

FIRM, MIGRATION = "harlow_vance", "bench-calls"
FILE_ROWS = 2_000


def stage(stage_root: Path, sobject: str, rows: int, source: str = "contacts", file_rows: int = FILE_ROWS,
          first: int = 0) -> Path:
    """Transformed ``sobject`` batches of ``file_rows`` (2,000) rows under the migration root, files
    ``<source>-batch-NNNNN``, rows ``first`` to ``first + rows - 1``; returns the root."""
    mroot = stage_root / FIRM / MIGRATION
    out = mroot / "transformed" / sobject
    staging.ensure_dir(out)
    for b, start in enumerate(range(first, first + rows, file_rows), 1):
        batch = [make_row(sobject, i, "calls") for i in range(start, min(start + file_rows, first + rows))]
        staging.write_jsonl_gz(out / f"{source}-{staging.batch_name(b)}", (
            {"sobject": sobject, "source_system_id": r[EXT], "external_id_field": EXT, "natural_key": None, "row": r}
            for r in batch))
    return mroot


@contextmanager
def task_context(run_id: str, **params: Any):
    """What the scheduler gives a task: its params, run id, DAG and the runs' states (for the writer
    lease: the runs before this one ran to their end, one after the other)."""
    from clio2sf_airflow.phases import common, load_common

    def dagrun_state(dag_id: str, run_id: str) -> str:
        return "running" if run_id == context["run_id"] else "success"

    context = {"params": {"firm": FIRM, "migration_id": MIGRATION, "load_mode": "auto", **params},
               "run_id": run_id, "dag": SimpleNamespace(dag_id="mig_05_full_load"),
               "ti": SimpleNamespace(get_dagrun_state=dagrun_state)}
    with patch.object(common, "get_current_context", lambda: context), \
            patch.object(load_common, "get_current_context", lambda: context):
        yield context


def call_step(entry: dict[str, Any]) -> str:
    """What one logged API call was, by method and path: ``describe``, ``soql``, ``ingest create``,
    ``ingest upload``, ``ingest close`` (or abort), ``ingest status``, ``ingest successfulResults`` /
    ``failedResults`` / ``unprocessedrecords``, ``query create``, ``query status``, ``query results``,
    ``collection``, ``limits``; else the method and path."""
    m = entry["method"]
    p = re.sub(r"^/services/data/v[\d.]+/", "", entry["path"]).rstrip("/")
    job = re.fullmatch(r"jobs/(ingest|query)(?:/([^/]+)(?:/(\w+))?)?", p)
    if job:
        kind, jid, sub = job.groups()
        if jid is None:
            return f"{kind} create"
        if sub:
            return f"{kind} {'upload' if sub == 'batches' else sub}"
        return f"{kind} {'status' if m == 'GET' else 'close'}"
    if p.endswith("/describe"):
        return "describe"
    if p.startswith(("query", "queryAll")):
        return "soql"
    if p.startswith("composite/sobjects"):
        return "collection"
    if p.startswith("limits"):
        return "limits"
    return f"{m} {p}"


def run_load_tasks(sb: Any, sobject: str, run_id: str = "bench-calls-1", workers: int = 1) -> dict[str, Any]:
    """Run the full load's ``list_batches`` and ``load_batch`` tasks of ``sobject``; calls from the sandbox log.
    ``workers``: load tasks run at once (threads, as a pool of that many slots runs them)."""
    from concurrent.futures import ThreadPoolExecutor

    from clio2sf_airflow.phases import full_load

    start = sb.request_log()
    before = int(start["total_api_calls"])
    with task_context(run_id):
        items = full_load.list_batches(sobject)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            summaries = list(pool.map(full_load.load_batch, items))
    log = sb.request_log()
    calls = int(log["total_api_calls"]) - before
    rows = sum(s["rows"] for s in summaries)
    by_kind = Counter(log["by_kind"]) - Counter(start["by_kind"])
    steps = Counter(call_step(e) for e in log["requests"][len(start["requests"]):] if e.get("api"))
    # status calls of a Bulk job after its first: how many depends on how fast the server worked
    polls = Counter(e["path"].rstrip("/") for e in log["requests"][len(start["requests"]):]
                    if e.get("api") and e["method"] == "GET" and re.search(r"/jobs/(ingest|query)/[^/]+/?$", e["path"]))
    waits = sum(n - 1 for n in polls.values())
    jobs = job_waits(log["requests"][len(start["requests"]):])
    return {"sobject": sobject, "rows": rows, "tasks": len(items), "calls": calls, "by_kind": dict(by_kind),
            "steps": dict(sorted(steps.items())),
            "calls_per_10k": round(calls * 10_000 / rows, 2) if rows else None, "later_status_calls": waits,
            "calls_per_10k_one_status_a_job": round((calls - waits) * 10_000 / rows, 2) if rows else None,
            "failed": sum(s["failed"] for s in summaries), "created": sum(s["created"] for s in summaries),
            "updated": sum(s["updated"] for s in summaries), "ingest_jobs": jobs}


def job_waits(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per Bulk ingest job of ``requests`` (the sandbox's log): its status calls and the extra wait, the
    seconds from the job's end (its final ``systemModstamp``, asked after the fact) to the status call
    that found it ended."""
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook
    from sandbox.salesforce.values import parse_dt

    status: dict[str, list[float]] = {}
    for e in requests:
        m = re.search(r"/jobs/ingest/([^/]+)/?$", e["path"])
        if e.get("api") and m and e["method"] == "GET":
            status.setdefault(m.group(1), []).append(e["ts"])
    out = []
    hook = ClioSalesforceHook() if status else None
    for jid, seen in status.items():
        info = hook.request("GET", f"jobs/ingest/{jid}/").json()
        ended = parse_dt(info["systemModstamp"]).timestamp()
        out.append({"job": jid, "rows": info.get("numberRecordsProcessed"), "status_calls": len(seen),
                    "extra_wait_s": round(max(seen) - ended, 2)})
    return out


def event_rows(events: int, contacts: int, per_event: int = 2) -> dict[str, list[dict[str, Any]]]:
    """Envelopes of a calendar like the large firm's: contacts, events named as recurring instances are
    (``calendar_entry-<id>@<start>``, the longest external ids the firm has), and ``per_event`` attendee
    relations an event (``EventRelation``: natural key, both parents by external id)."""
    out: dict[str, list[dict[str, Any]]] = {"Contact": [], "Event": [], "EventRelation": []}
    for i in range(contacts):
        r = make_row("Contact", i, "calls")
        out["Contact"].append({"sobject": "Contact", "source_system_id": r[EXT], "external_id_field": EXT,
                               "natural_key": None, "row": r})
    for i in range(events):
        ext = f"calendar_entry-{100_000 + i}@20260301T090000Z"
        start = f"2026-03-{1 + i % 28:02d}T09:00:00+00:00"
        row = {EXT: ext, "Subject": f"Hearing {i}", "IsAllDayEvent": False, "StartDateTime": start,
               "EndDateTime": start.replace("T09:", "T10:")}
        out["Event"].append({"sobject": "Event", "source_system_id": ext, "external_id_field": EXT,
                             "natural_key": None, "row": row})
        for k in range(per_event):
            who = out["Contact"][(i * per_event + k) % contacts]["row"][EXT]
            out["EventRelation"].append({
                "sobject": "EventRelation", "source_system_id": f"{ext}#{who}", "external_id_field": None,
                "natural_key": ["EventId", "RelationId"],
                "row": {"Event.Clio_Id__c": ext, "Contact:Relation.Clio_Id__c": who, "IsInvitee": True}})
    return out


def stage_envelopes(mroot: Path, sobject: str, envs: list[dict[str, Any]], source: str, first: int = 1,
                    file_rows: int = FILE_ROWS) -> int:
    """``envs`` as transformed files of ``file_rows`` rows numbered from ``first``; returns the next number."""
    out = mroot / "transformed" / sobject
    staging.ensure_dir(out)
    b = first
    for start in range(0, len(envs), file_rows):
        staging.write_jsonl_gz(out / f"{source}-{staging.batch_name(b)}", envs[start:start + file_rows])
        b += 1
    return b


EVENT_OBJECTS = (("Contact", "contacts"), ("Event", "calendar_entries"), ("EventRelation", "calendar_entries"))


def run_events(sb: Any, stage_root: Path, events: int, contacts: int,
               file_rows: int = FILE_ROWS, sample_runs: int = 1, workers: int = 1) -> dict[str, dict[str, Any]]:
    """Contacts, events and their relations through the full load's tasks, after a sample-sized first
    run of each object's first file (its rows are in the ledger, so the full run takes before-images of
    the groups holding them, and finds their relations there): calls per object of the full run.
    ``file_rows``: the rows of each later file (a raw batch of recurring entries makes ~50,000 events
    and ~100,000 relations in one file, loaded in row slices).  ``sample_runs``: how many times that first
    run is made (2: the ledger holds two writes of each of its records, as a sample's deferred pass
    writes some records twice, while Salesforce holds each once).  ``workers``: the full run's tasks of an
    object run that many at once (the DAG's pools run 3: their Bulk jobs queue in Salesforce)."""
    data = event_rows(events, contacts)
    mroot = stage_root / FIRM / MIGRATION
    for sobject, source in EVENT_OBJECTS:  # the first file of each, loaded by an earlier run
        stage_envelopes(mroot, sobject, data[sobject][:FILE_ROWS], source)
    for k in range(sample_runs):
        for sobject, _ in EVENT_OBJECTS:
            run_load_tasks(sb, sobject, run_id="bench-calls-sample" + (f"-{k + 1}" if k else ""))
    for sobject, source in EVENT_OBJECTS:
        stage_envelopes(mroot, sobject, data[sobject][FILE_ROWS:], source, first=2,
                        file_rows=FILE_ROWS if sobject == "Contact" else file_rows)
    return {sobject: run_load_tasks(sb, sobject, run_id="bench-calls-full", workers=workers)
            for sobject, _ in EVENT_OBJECTS}


def run(work: Path, rows: int, sobject: str = "Contact", seed: int = 42, group_rows: int | None = None) -> list[Figure]:
    """``group_rows=1``: one task per transformed file, as the full load ran before grouping."""
    import os

    from sandbox.salesforce.testing import run_sf_sandbox

    with run_sf_sandbox(work / "sf", seed=seed, data_storage_mb=16_384) as sb:
        use_salesforce(sb)
        os.environ["AIRFLOW_VAR_CLIO2SF_STAGING_ROOT"] = f"file://{work / 'stage'}"
        from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

        ClioSalesforceHook().ensure_external_id_field(sobject)
        stage(work / "stage", sobject, rows)
        from clio2sf import pipeline

        with patch.object(pipeline, "LOAD_GROUP_ROWS", group_rows or pipeline.LOAD_GROUP_ROWS):
            got = run_load_tasks(sb, sobject)
    if got["failed"] or got["rows"] != rows:
        raise RuntimeError(f"load tasks: {got}")
    return [Figure("salesforce", f"Salesforce calls per 10,000 rows through the full load's tasks ({sobject}, "
                   f"{FILE_ROWS:,}-row transformed batches)", f"{rows:,} rows, {got['tasks']} task(s)",
                   got["calls_per_10k"], "calls", "≤ 10", at_most(got["calls_per_10k"], 10),
                   detail={"calls": got["calls"], "by_kind": got["by_kind"], "steps": got["steps"],
                           "group_rows": group_rows})]


def run_calendar(work: Path, events: int, contacts: int, seed: int = 42, file_rows: int = FILE_ROWS,
                 sample_runs: int = 1, workers: int = 1) -> list[Figure]:
    """:func:`run_events` against a fresh sandbox, one figure per object and one for all of them."""
    import os

    from sandbox.salesforce.testing import run_sf_sandbox

    with run_sf_sandbox(work / "sf", seed=seed, data_storage_mb=16_384) as sb:
        use_salesforce(sb)
        os.environ["AIRFLOW_VAR_CLIO2SF_STAGING_ROOT"] = f"file://{work / 'stage'}"
        from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

        for obj in ("Contact", "Event"):
            ClioSalesforceHook().ensure_external_id_field(obj)
        got = run_events(sb, work / "stage", events, contacts, file_rows, sample_runs, workers)
    figs = []
    for sobject, g in got.items():
        if g["failed"]:
            raise RuntimeError(f"load tasks: {g}")
        figs.append(Figure("salesforce", "Salesforce calls per 10,000 rows through the full load's tasks "
                           "(a calendar: look-ups, natural keys, before-images)", f"{sobject}, {g['rows']:,} rows, "
                           f"{g['tasks']} task(s)", g["calls_per_10k"], "calls", "≤ 10", at_most(g["calls_per_10k"], 10),
                           detail={"calls": g["calls"], "by_kind": g["by_kind"], "steps": g["steps"],
                                   "created": g["created"], "ingest_jobs": g["ingest_jobs"]}))
    calls, rows = sum(g["calls"] for g in got.values()), sum(g["rows"] for g in got.values())
    per = round(calls * 10_000 / rows, 2)
    figs.append(Figure("salesforce", "Salesforce calls per 10,000 rows through the full load's tasks "
                       "(a calendar: look-ups, natural keys, before-images)", f"all, {rows:,} rows", per, "calls",
                       "≤ 10", at_most(per, 10), detail={"calls": calls, "rows": rows}))
    return figs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--sobject", default="Contact")
    ap.add_argument("--group-rows", type=int, default=None, help="1: one task per file (before grouping)")
    ap.add_argument("--calendar", type=int, default=0, metavar="EVENTS",
                    help="instead: EVENTS events with 2 relations each and EVENTS/5 contacts (run_calendar)")
    ap.add_argument("--file-rows", type=int, default=FILE_ROWS,
                    help="with --calendar: rows of each event and relation file after the first")
    ap.add_argument("--sample-runs", type=int, default=1,
                    help="with --calendar: times the sample-sized first run is made (2: two writes a record)")
    ap.add_argument("--workers", type=int, default=1,
                    help="with --calendar: the full run's tasks of an object at once (threads)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        figs = (run_calendar(Path(tmp), args.calendar, max(args.calendar // 5, 2_001), file_rows=args.file_rows,
                             sample_runs=args.sample_runs, workers=args.workers)
                if args.calendar
                else run(Path(tmp), args.rows, args.sobject, group_rows=args.group_rows))
        for f in figs:
            print(json.dumps(f.as_dict()))


if __name__ == "__main__":
    main()
