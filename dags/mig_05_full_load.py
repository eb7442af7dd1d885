"""
### Phase 5: full load

Refuses to start without a confirmed mapping, an **approved sample for the same mapping
hash** and room in the org (capacity pre-flight against `/limits`). Then:

1. `transform_batch`: mapped over groups of raw batches of the record objects (about 20,000
   records a task);
2. one `load_<Object>` group per Salesforce object, **in dependency order** (Account →
   Contact → Case/Opportunity → contact roles → billing, ledger, time, expense, rates →
   Event/EventRelation and Task → notes), each mapped over groups of its transformed batches
   (at least 20,000 rows a task, so volume goes through Bulk API 2.0):
   upsert on `Clio_Id__c` (Bulk API 2.0 above the bulk threshold, REST composite below),
   lookups by external id, transient row failures retried, other failures to the rejects
   report with their source record. A batch that fails for good is resumed by clearing it with
   Downstream (Clear → Downstream): the rest of the run goes on from there;
3. `load_documents`: each committed document batch transformed and uploaded (ContentVersion,
   then its ContentDocumentLinks) as soon as it is staged: the run may start while
   `mig_02_extract` still downloads documents (it needs the record objects only) and this task
   waits for the last document batch (at most `documents_wait_hours` from its first start) without
   holding a worker or pool slot: between looks it is `up_for_reschedule`;
4. `load_deferred`: lookups to objects loaded later (only files whose first pass left such rows);
5. `reconcile`: records per object, bill totals, time-entry hours and amounts, expenses and
   trust balances against the source; `reports/<run id>/reconciliation.html`;
6. `verify`: field by field, what the org holds against what Clio's raw extraction and the
   mapping spec say it must hold (values, owners, lookups, recurrence occurrences, team members,
   attendees, exactly once) and the field accounting (every Clio field with data migrated or left
   behind for an approved reason); `reports/<run id>/verification.html`. Unexplained mismatches
   fail it, naming object, field and count. It runs whatever the batches' outcome; when the
   pre-flight refused the run it fails at once without reading the org (nothing was written).

Every write is in the run ledger (`ledger/<run id>/full_load/...`); `mig_07_rollback` undoes it.
Re-running is idempotent: nothing is duplicated.
"""

from __future__ import annotations

from airflow.sdk import Param, TaskGroup, dag, task

from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.phases import full_load as phase
from clio2sf_airflow.phases.load_common import LOAD_SEQUENCE


@dag(
    dag_id="mig_05_full_load",
    schedule=None,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "phase-5"],
    doc_md=__doc__,
    max_active_runs=4,  # several migrations at once; the lease keeps one writer per migration
    params=migration_params(
        load_mode=Param("auto", enum=["auto", "bulk", "composite"], title="Load API",
                        description="auto: Bulk API 2.0 above the bulk threshold, REST composite below"),
        documents_wait_hours=Param(24, type="number", minimum=0, title="Wait for the documents' extraction (hours)",
                                   description="load_documents fails when mig_02_extract has not staged every "
                                               "document batch by then (counted from its first start)"),
    ),
)
def mig_05_full_load():
    pre = task(phase.preflight_load, task_id="preflight_load")()
    plan = task(phase.plan_transform, task_id="plan_transform")()
    transformed = task(phase.transform_batch, task_id="transform_batch",
                       map_index_template="{{ batch_label }}").expand(item=plan)
    pre >> plan
    previous = transformed
    for sobject in LOAD_SEQUENCE:
        with TaskGroup(group_id=f"load_{sobject}"):
            batches = task(phase.list_batches, task_id="list_batches", trigger_rule="none_failed")(sobject)
            loaded = task(phase.load_batch, task_id="load_batch", pool="salesforce_api",
                          map_index_template="{{ batch_label }}").expand(path=batches)
        previous >> batches
        previous = loaded
    documents = task(phase.load_documents, task_id="load_documents", pool="salesforce_api",
                     trigger_rule="none_failed")()
    every = task(phase.list_all_batches, task_id="list_all_batches", trigger_rule="none_failed")()
    deferred = task(phase.load_deferred, task_id="load_deferred", pool="salesforce_api",
                    map_index_template="{{ batch_label }}").expand(path=every)
    check = task(phase.reconcile, task_id="reconcile", trigger_rule="none_failed")()
    verified = task(phase.verify, task_id="verify", trigger_rule="all_done", pool="salesforce_api")()
    previous >> documents >> every  # the documents' parents exist; the deferred pass sees every batch
    deferred >> check >> verified


mig_05_full_load()
