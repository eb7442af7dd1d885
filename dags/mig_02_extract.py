"""
### Phase 2: extract

Reads every Clio object the migration needs into the staging area, one mapped task per
object (`extract_object`), each writing compressed JSON-lines batches under
`<staging>/<firm>/<migration id>/raw/<object>/`. Documents are downloaded as blobs with a
sha256. A retried or cleared task resumes from its last committed page: no duplicate, no gap.

Clio allows 50 requests per minute per token at peak: the `clio_api` pool bounds how many
tasks talk to Clio at once and the hook's rate budget (shared through the response headers
and a host-wide lock) bounds the rate. Requires a confirmed mapping (phase 1).
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.phases import extract as phase


@dag(
    dag_id="mig_02_extract",
    schedule=None,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "phase-2"],
    doc_md=__doc__,
    max_active_runs=1,
    params=migration_params(
        objects=Param([], type="array", title="Objects", description="Clio objects to extract (empty: all)"),
        pages_per_batch=Param(1, type="integer", minimum=1, maximum=50, title="Clio pages per batch file"),
    ),
)
def mig_02_extract():
    plan = task(phase.plan_extraction, task_id="plan_extraction")()
    done = task(phase.extract_object, task_id="extract_object", pool="clio_api",
                map_index_template="{{ clio_object }}").expand(item=plan)
    task(phase.summarize_extraction, task_id="summarize_extraction")(done)


mig_02_extract()
