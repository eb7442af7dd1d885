"""
### Phase 1: discover

Reads the firm's Clio configuration (custom fields, practice areas, matter stages, users,
billing settings, rate hierarchy, workflows and templates) and the record count of every
object, and the Salesforce org's describes and limits. Writes, under
`<staging>/<firm>/<migration id>/discover/`:

- `mapping_spec.html` / `.md`: the mapping specification document (Matter → Case or
  Opportunity, field mappings, value maps, custom fields to create, proposals with confidence
  and reason, volume and duration estimates, capacity pre-flight);
- `schema_plan.md` / `.csv` / `.json`: the custom objects, fields and record types to create;
- `reference/*.json`: workflows, document templates, billing automation and trust accounting
  rules, exported for the Salesforce admin to rebuild (they do not migrate); their parts built
  from matters and activity rates (counted here, not paged) are written after extraction.

`apply_schema` (opt-in param) creates the schema plan through the Tooling API, acting as the
firm's admin. The run ends with **approve_mapping**: a person approves the mapping hash
(Browse → Required Actions), and `record_mapping_approval` stores who approved which hash.
From `preflight` to `apply_schema` the run holds the migration's one-writer lease (released before
the approval waits): a second discover, an extraction or a load of the same migration is refused.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.operators.approval import MigrationApprovalOperator
from clio2sf_airflow.phases import discover as phase
from clio2sf_airflow.phases.common import record_hitl_approval


@dag(
    dag_id="mig_01_discover",
    schedule=None,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "phase-1"],
    doc_md=__doc__,
    max_active_runs=4,  # several firms (or migrations) discover at once; each run writes only its own root
    params=migration_params(
        apply_schema=Param(False, type="boolean", title="Apply the schema plan through the Tooling API"),
        count_records=Param(True, type="boolean", title="Count every Clio object",
                            description="A few requests each: exact up to 10,000 records, estimated beyond"),
    ),
)
def mig_01_discover():
    preflight = task(phase.preflight, task_id="preflight")()
    clio = task(phase.read_clio_schema, task_id="read_clio_schema", pool="clio_api")()
    sf = task(phase.read_salesforce, task_id="read_salesforce", pool="salesforce_api")()
    doc = task(phase.build_mapping_document, task_id="build_mapping_document")()
    schema = task(phase.apply_schema, task_id="apply_schema", pool="salesforce_api")()
    approve_mapping = MigrationApprovalOperator(
        task_id="approve_mapping",
        kind="mapping",
        trigger_rule="none_failed",  # apply_schema is skipped unless asked for
        subject="Approve the Clio → Salesforce mapping for {{ params.firm }}",
        body=phase.approval_body(),
    )
    record = task(record_hitl_approval, task_id="record_mapping_approval")("mapping", "approve_mapping")
    preflight >> [clio, sf] >> doc >> schema >> approve_mapping >> record


mig_01_discover()
