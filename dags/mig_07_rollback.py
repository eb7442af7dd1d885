"""
### Phase 7: rollback

One click in the UI (Trigger with config): give the migration id, and optionally the run id
of one phase run (`target_run_id`; empty = every run of the migration). With `dry_run` on
(the default) it only writes the plan: what it would delete, re-create and restore, per object.
Every run writes its own report, `reports/<this run's id>/rollback.{html,csv,json}` and
`rollback_result.json` (what it did; a retry writes under `<run id>/try-<n>/`): a dry run or a
second rollback never replaces the report of the rollback that deleted the records (Browse →
Migration reports lists them all). With `dry_run` off it re-creates from its before-image
what a delta run deleted, restores the before-images of what they updated, then deletes what the
run(s) created in reverse dependency order, their uploaded files (ContentDocument) first: a file's
links and a note (a ContentNote is its ContentDocument) go with it, without a delete call of their own
(counted `cascaded`). Deleting last keeps a record the run moved under a new Account from going with that Account
(Salesforce deletes an Account's Contacts with it). It is idempotent and resumable: a second
rollback of the same run finds nothing to do.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.phases import rollback as phase


@dag(
    dag_id="mig_07_rollback",
    schedule=None,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "phase-7"],
    doc_md=__doc__,
    max_active_runs=4,  # several migrations at once; the lease keeps one writer per migration (dry runs write only their plan)
    params=migration_params(
        target_run_id=Param(None, type=["null", "string"], title="Run id to roll back (empty: the whole migration)",
                            description="Optional: leave empty to roll back every run of the migration"),
        dry_run=Param(True, type="boolean", title="Dry run: write the plan, change nothing"),
    ),
)
def mig_07_rollback():
    task(phase.rollback, task_id="rollback", pool="salesforce_api")()


mig_07_rollback()
