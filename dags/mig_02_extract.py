"""
### Phase 2: extract

Reads every Clio object the migration needs into the staging area, one mapped task per
record object (`extract_object`), each writing compressed JSON-lines batches under
`<staging>/<firm>/<migration id>/raw/<object>/`. Then `extract_documents` downloads the
documents as blobs with a sha256. A retried or cleared task resumes from its last committed
page: no duplicate, no gap.

**Documents off the critical path.** `summarize_extraction` marks the record objects complete
(`raw/_extraction.json`) before the documents start: resolve users, the sample and the full load
can run while this run is still downloading documents (most of a firm's Clio requests); the
full load uploads each committed document batch as it arrives and verifies once all are in.

**Several migrations at once.** Up to 4 runs (firms or migrations) extract side by side. The record
objects hold the migration's one-writer lease (`lease.json`, released by `summarize_extraction`),
so an extraction of a migration never runs beside its full load, delta, rollback or another
extraction; `extract_documents` holds `documents_lease.json` instead (see docs/operations.md, "One
writer per migration").

**Off-peak.** Clio raises its limit outside weekday peak hours (US/CA 04:00–19:00 Pacific, EU
07:00–22:00 GMT, AU 06:00–21:00 AET) and the hook paces on the limit each response announces, so
extraction speeds up by itself off-peak. To start it there, set the environment variable
`CLIO2SF_EXTRACT_SCHEDULE` to a cron expression (e.g. `0 19 * * 1-5`) and `CLIO2SF_EXTRACT_TZ` to
its time zone (default `America/Los_Angeles`) on the scheduler and DAG processor; a scheduled run
uses the params' defaults, and objects already complete are not fetched again. Without the
variable the DAG runs when triggered.

Clio allows 50 requests per minute per token at peak: the firm's Clio pool (`clio_api_<firm>`,
else the shared `clio_api`: docs/architecture.md, "Pools per firm") bounds how many of its
tasks talk to Clio at once and the hook's rate budget bounds the rate: one budget and one access
token per Clio grant, shared by every worker on every host through the `clio2sf_state`
connection's database (one host without it). Requires a confirmed mapping (phase 1).
"""

from __future__ import annotations

import os

from airflow.sdk import CronTriggerTimetable, Param, dag, task

from clio2sf_airflow.dag_defaults import DEFAULT_ARGS, TAGS, migration_params
from clio2sf_airflow.phases import extract as phase

_OFFPEAK = os.environ.get("CLIO2SF_EXTRACT_SCHEDULE")


@dag(
    dag_id="mig_02_extract",
    schedule=CronTriggerTimetable(_OFFPEAK, timezone=os.environ.get("CLIO2SF_EXTRACT_TZ", "America/Los_Angeles"))
    if _OFFPEAK
    else None,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "phase-2"],
    doc_md=__doc__,
    max_active_runs=4,  # several migrations at once; the lease keeps one writer per migration
    params=migration_params(
        objects=Param([], type="array", title="Objects", description="Clio objects to extract (empty: all)"),
        pages_per_batch=Param(10, type="integer", minimum=1, maximum=100, title="Clio pages per batch file",
                              description="10 pages = 2,000 records: one transform task per batch file (keep mapped tasks under max_map_length)"),
    ),
)
def mig_02_extract():
    plan = task(phase.plan_extraction, task_id="plan_extraction")()
    done = task(phase.extract_object, task_id="extract_object", pool="clio_api",
                map_index_template="{{ clio_object }}").expand(item=plan)
    records = task(phase.summarize_extraction, task_id="summarize_extraction")(done)
    documents = task(phase.extract_documents, task_id="extract_documents", pool="clio_api",
                     trigger_rule="none_failed")()
    records >> documents  # records first: the later phases wait for them, not for the documents


mig_02_extract()
