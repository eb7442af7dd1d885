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


def stage(stage_root: Path, sobject: str, rows: int, source: str = "contacts", file_rows: int = FILE_ROWS) -> Path:
    """Transformed ``sobject`` batches of ``file_rows`` (2,000) rows under the migration root; returns it."""
    mroot = stage_root / FIRM / MIGRATION
    out = mroot / "transformed" / sobject
    staging.ensure_dir(out)
    for b, start in enumerate(range(0, rows, file_rows), 1):
        batch = [make_row(sobject, i, "calls") for i in range(start, min(start + file_rows, rows))]
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


def run_load_tasks(sb: Any, sobject: str, run_id: str = "bench-calls-1") -> dict[str, Any]:
    """Run the full load's ``list_batches`` and ``load_batch`` tasks of ``sobject``; calls from the sandbox log."""
    from clio2sf_airflow.phases import full_load

    start = sb.request_log()
    before = int(start["total_api_calls"])
    with task_context(run_id):
        items = full_load.list_batches(sobject)
        summaries = [full_load.load_batch(item) for item in items]
    log = sb.request_log()
    calls = int(log["total_api_calls"]) - before
    rows = sum(s["rows"] for s in summaries)
    by_kind = Counter(log["by_kind"]) - Counter(start["by_kind"])
    return {"sobject": sobject, "rows": rows, "tasks": len(items), "calls": calls, "by_kind": dict(by_kind),
            "calls_per_10k": round(calls * 10_000 / rows, 2) if rows else None,
            "failed": sum(s["failed"] for s in summaries), "created": sum(s["created"] for s in summaries)}


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
                   detail={"calls": got["calls"], "by_kind": got["by_kind"], "group_rows": group_rows})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--sobject", default="Contact")
    ap.add_argument("--group-rows", type=int, default=None, help="1: one task per file (before grouping)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        for f in run(Path(tmp), args.rows, args.sobject, group_rows=args.group_rows):
            print(json.dumps(f.as_dict()))


if __name__ == "__main__":
    main()
