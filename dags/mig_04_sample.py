"""
### Phase 4: sample

Picks a representative slice of 200–500 records spanning matters, clients, bills, time
entries, expenses, events, tasks, matter contacts, documents, notes and communications,
**closed under relationships** (every parent of a chosen child comes along), loads it into
Salesforce exactly as the full load would, reads it back and writes a **field-level diff**
(`sample/diff.html` and `.csv`: Clio value, transformed value, Salesforce value, match per
field, per-object summary). Ends with **approve_sample**: the full load refuses to start
without an approved sample for the same mapping hash. `select_sample` to `load_sample` hold the
migration's one-writer lease; `diff_sample` releases it, so the approval can wait for days without
blocking the migration's other phases.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.operators.approval import MigrationApprovalOperator
from clio2sf_airflow.phases import sample as phase
from clio2sf_airflow.phases.common import record_hitl_approval


@dag(
    dag_id="mig_04_sample",
    schedule=None,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "phase-4"],
    doc_md=__doc__,
    max_active_runs=4,  # several migrations at once; the lease keeps one writer per migration
    params=migration_params(
        sample_size=Param(500, type="integer", minimum=50, maximum=500, title="Most records in the sample"),
        sample_seed=Param(7, type="integer", title="Sample seed (same seed, same slice)"),
    ),
)
def mig_04_sample():
    chosen = task(phase.select_sample, task_id="select_sample")()
    transformed = task(phase.transform_sample, task_id="transform_sample")()
    loaded = task(phase.load_sample, task_id="load_sample", pool="salesforce_api")()
    diffed = task(phase.diff_sample, task_id="diff_sample", pool="salesforce_api")()
    approve_sample = MigrationApprovalOperator(
        task_id="approve_sample",
        kind="sample",
        subject="Approve the sample migration of {{ params.firm }}",
        body=phase.approval_body(),
    )
    record = task(record_hitl_approval, task_id="record_sample_approval")("sample", "approve_sample")
    chosen >> transformed >> loaded >> diffed >> approve_sample >> record


mig_04_sample()
