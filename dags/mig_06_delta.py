"""
### Phase 6: delta window

Runs on a schedule during cutover (hourly by default, each run covering a real data
interval; enable the DAG for the window, e.g. 48 hours, and pause it at go-live), or on
demand. Each run:

1. `extract_changes`: records changed in Clio since the object's watermark (`updated_since`,
   with a small overlap), and the ids Clio has now (for deletion detection);
2. `plan_window`: **conflicts** (a record edited in Salesforce after our last write) are
   queued in `delta/<run>/conflicts.html` instead of being overwritten; deletions found by
   id-set comparison;
3. `transform_changes` / `load_changes`: the accepted changes through the normal path;
4. `delete_removed`: deletes what Clio deleted (before-images in the ledger);
5. `commit_watermarks`: the watermark advances only after a committed load;
6. `purge_staging`: deletes staged migrations (of any firm) whose newest file is older than the
   Variable `clio2sf_staging_retention_days` (skipped while it is unset).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import CronDataIntervalTimetable, dag, task

from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.phases import delta as phase
from clio2sf_airflow.phases import retention


@dag(
    dag_id="mig_06_delta",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "phase-6", "cutover"],
    doc_md=__doc__,
    max_active_runs=1,
    params=migration_params(),
)
def mig_06_delta():
    changes = task(phase.extract_changes, task_id="extract_changes", pool="clio_api")()
    planned = task(phase.plan, task_id="plan_window", pool="salesforce_api")()
    transformed = task(phase.transform_changes, task_id="transform_changes")()
    loaded = task(phase.load_changes, task_id="load_changes", pool="salesforce_api")()
    deleted = task(phase.delete_removed, task_id="delete_removed", pool="salesforce_api")()
    committed = task(phase.commit_watermarks, task_id="commit_watermarks")()
    purge = task(retention.purge_staging, task_id="purge_staging")()
    changes >> planned >> transformed >> loaded >> deleted >> committed >> purge


mig_06_delta()
