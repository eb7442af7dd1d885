"""Sample phase: a relationship-closed slice, loaded, read back and diffed field by field."""

from __future__ import annotations

import logging
from typing import Any

from clio2sf import staging
from clio2sf.sample import choose_sample, stage_sample, staged_index
from clio2sf.verify import sample_diff
from clio2sf_airflow import migration
from clio2sf_airflow.phases import load_common
from clio2sf_airflow.phases.common import (
    firm_spec,
    hold_lease,
    hold_lease_on_extracted_records,
    mroot,
    params,
    release_lease,
    require_mapping_confirmed,
    run_id,
)

log = logging.getLogger(__name__)

SAMPLE = "sample"


def select_sample() -> dict[str, Any]:
    """Choose the slice and stage it as raw batches under ``sample/raw/``."""
    p = params()
    root = mroot(p)
    spec = firm_spec(p["firm"])
    require_mapping_confirmed(spec, root)
    load_common.user_map(root)  # fails early, naming the phase to run, if users are unresolved
    load_common.check_write_access(spec, root)  # before anything is written
    # one writer per migration: not beside a load, a delta or an extraction; never on a partial extraction
    hold_lease_on_extracted_records(SAMPLE, root, p)
    objects = [o for o in load_common.TRANSFORMED if staging.read_manifest(root, o) is not None]

    # each object's records are read twice: once for the choice (a few fields), once for the records chosen
    sample = choose_sample(staged_index(root, objects), seed=int(p.get("sample_seed", 7)),
                           max_total=int(p.get("sample_size", 500)))
    stage_sample(root, objects, sample, out=SAMPLE)
    log.info("sample chosen: %s", sample.counts())
    return {"records": sample.total, "objects": sample.counts()}


def transform_sample() -> list[dict[str, Any]]:
    """Transform every sample batch into ``sample/transformed/``."""
    root = mroot()
    return [load_common.transform_one(item, out=SAMPLE)
            for item in load_common.raw_batches(root, raw_dir=f"{SAMPLE}/raw")]


def load_sample() -> dict[str, Any]:
    """Load the sample in dependency order, then set the deferred lookups."""
    root = mroot()
    hold_lease(SAMPLE)
    totals = {"rows": 0, "created": 0, "updated": 0, "skipped": 0, "failed": 0}
    paths = load_common.file_items(root, out=SAMPLE)  # a file over the load group maximum in row slices
    for deferred in (False, True):
        for path in paths:
            summary = load_common.load_one(path, phase=SAMPLE, deferred=deferred)
            for k in totals:
                totals[k] += summary[k]
    return totals


def diff_sample() -> dict[str, Any]:
    """Read the sample back from Salesforce and write the field-level diff report."""
    p = params()
    release_lease()  # the writes are done; the approval may wait for days without holding the migration
    result = sample_diff(migration.salesforce_hook(params()), mroot(p), firm_spec(p["firm"]), sample_dir=SAMPLE,
                         run_id=run_id())
    log.info("sample diff: %s", {k: v for k, v in result.items() if k not in ("report", "notes")})
    return result


def approval_body() -> str:
    return (
        "Review the sample diff for firm **{{ params.firm }}**, migration **{{ params.migration_id }}**: "
        "[the sample diff](/clio2sf/{{ params.firm }}/{{ params.migration_id }}/diff) "
        "(differences first, filterable; `sample/diff.html` and `diff.csv` in the staging area; "
        "{{ ti.xcom_pull(task_ids='diff_sample')['records'] }} records, "
        "{{ ti.xcom_pull(task_ids='diff_sample')['mismatches'] }} unexplained mismatches; the "
        "[migration summary](/clio2sf/{{ params.firm }}/{{ params.migration_id }}/summary)). Approving lets the "
        "full load start for this mapping hash. Rejecting (type a reason) fails this run, records your name and "
        "reason, and revokes any earlier sample approval of this hash: the full load refuses to start."
    )
