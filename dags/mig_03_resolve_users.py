"""
### Phase 3: resolve users

Matches every Clio user (attorneys, paralegals, admins) to a Salesforce user by normalised
email and writes `users/user_map.json` plus a report (`users/user_report.html` and `.csv`)
listing unmatched, inactive and ambiguous users **before any write**. Records of those users
go to the firm's `fallback_owner`, so no record is loaded without a valid OwnerId. Fix users
in Salesforce and re-run this phase to change the outcome.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.phases import resolve_users as phase


@dag(
    dag_id="mig_03_resolve_users",
    schedule=None,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "phase-3"],
    doc_md=__doc__,
    max_active_runs=4,  # several migrations at once; the lease keeps one writer per migration
    params=migration_params(),
)
def mig_03_resolve_users():
    task(phase.resolve, task_id="resolve_users", pool="salesforce_api")()


mig_03_resolve_users()
