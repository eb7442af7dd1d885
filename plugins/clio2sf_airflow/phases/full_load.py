"""Full-load phase: transform everything, load in dependency order, reconcile against the source,
verify field by field against Clio's raw data and the mapping spec."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException

from clio2sf import staging
from clio2sf_airflow import migration
from clio2sf_airflow.phases import load_common
from clio2sf_airflow.phases.common import (
    firm_spec,
    hold_lease,
    mroot,
    params,
    release_lease,
    require_mapping_confirmed,
    require_records_extracted,
    require_sample_approved,
    run_id,
)

log = logging.getLogger(__name__)

#: ``reports/<run id>/`` marker: this run's pre-flight passed (verify has something to check).
PREFLIGHT_PASSED = "preflight_passed.json"


def preflight_load() -> dict[str, Any]:
    """Refuse to write without a confirmed mapping, an approved sample and room in the org."""
    p = params()
    root = mroot(p)
    (root / "reports" / run_id() / PREFLIGHT_PASSED).unlink(missing_ok=True)  # a cleared pre-flight decides again
    spec = firm_spec(p["firm"])
    require_mapping_confirmed(spec, root)
    require_sample_approved(spec, root)
    refuse_stale_snapshot(root)
    hold_lease("full_load")
    load_common.user_map(root)
    access = load_common.check_write_access(spec, root, describe_run=run_id())
    extraction = require_records_extracted(root, p)
    counts = {name: info["records"] for name, info in extraction["objects"].items()}
    if extraction.get("documents_pending"):  # still downloading: size the load with discover's count
        discovered = staging.read_json(root / "discover" / "clio_counts.json", default={}) or {}
        counts.setdefault(DOCUMENTS, int(discovered.get(DOCUMENTS) or 0))
    from clio2sf.discovery import capacity_check, estimates  # here: the transform/load tasks never need them

    est = estimates(counts, matter_object=spec.options.get("matter_object", "Case"),
                    offpeak_limit=spec.options.get("offpeak_limit"), region=spec.options.get("clio_region"))
    findings = capacity_check(est, migration.salesforce_hook(params()).limits())
    staging.write_json(root / "reports" / run_id() / "capacity.json", [f.__dict__ for f in findings])
    errors = [f.message for f in findings if f.level == "error"]
    for f in findings:
        log.warning("capacity pre-flight: %s", f.message)
    policy = spec.options.get("capacity_preflight", "refuse")
    if errors and policy == "refuse":
        raise AirflowFailException("capacity pre-flight refused the load: " + "; ".join(errors))
    staging.write_json(root / "reports" / run_id() / PREFLIGHT_PASSED, {"run_id": run_id()})
    return {"records": sum(counts.values()), "capacity_errors": len(errors), "warnings": len(findings) - len(errors),
            **access}


def refuse_stale_snapshot(root) -> None:
    """A full load after a committed delta window would load the old extraction over newer data: refuse."""
    from clio2sf import delta

    marks = delta.read_watermarks(root)
    if not marks:
        return
    last = max(marks.values(), key=lambda m: m.get("committed_at") or "")
    raise AirflowFailException(
        f"delta windows already committed changes for this migration (last: run {last.get('run_id')} at "
        f"{last.get('committed_at')}); the extraction snapshot is older than Salesforce now, so a full load would "
        "bring back stale data (re-create records Clio deleted, overwrite delta updates).\n"
        "Keep Salesforce current with mig_06_delta, or start a new migration id (discover, extract, ...) for a "
        "fresh snapshot."
    )


DOCUMENTS = "documents"
#: How long ``load_documents`` gives its worker slot and ``salesforce_api`` pool slot back
#: (``up_for_reschedule``) before it looks at the documents' extraction again.
DOCUMENT_RESCHEDULE_SECONDS = 30.0
#: ``loads/<run id>/documents/`` file: when this run's ``load_documents`` first started (its wait deadline).
DOCUMENT_WAIT = "_wait.json"
_COUNTS = ("rows", "created", "updated", "skipped", "failed")


def plan_transform() -> list[dict[str, Any]]:
    """The transform's work items: consecutive raw batches of the record objects, ~50,000 records a task
    across objects (``load_common.raw_groups``), so a task's start-up, spec, user map and look-ups are
    paid once per 50,000 records, not once per batch or per object; the documents are transformed by
    ``load_documents`` as their batches arrive."""
    return load_common.raw_groups(mroot(), objects=[o for o in load_common.TRANSFORMED if o != DOCUMENTS])


def transform_batch(item: dict[str, Any]) -> dict[str, Any]:
    return load_common.transform_one(item)


def list_batches(sobject: str) -> list[str | list[str]]:
    """The load work items of ``sobject`` from record objects: their transformed batch files, grouped so
    that each task loads enough rows for Bulk API 2.0 and no more than its memory allows (a larger file
    in row slices; as ``load_common.load_groups``); an empty list skips its load step. The documents'
    own files are loaded by ``load_documents``."""
    paths = [ObjectStoragePath(p) for p in load_common.transformed_batches(mroot(), sobject)
             if not ObjectStoragePath(p).name.startswith(f"{DOCUMENTS}-")]
    return load_common.group_items(paths, sobject)


def load_documents() -> dict[str, Any]:
    """Transform and upload each committed document batch as soon as it is staged, while
    ``mig_02_extract`` may still be downloading the rest; return once every batch is loaded.

    Runs after the record objects' load steps, so a document's parents (matters, contacts) exist.
    Per batch: transform (``transformed/<sobject>/documents-batch-NNNNN``), load its files in load
    order (ContentVersion, then ContentDocumentLink), then mark it done in
    ``loads/<run id>/documents/<batch>.json`` with its counts: a retried or rescheduled task skips the
    marked batches and redoes an unmarked one (its load is idempotent: external ids, the batch journal).

    When nothing new is committed and the extraction is not complete, the task does not wait in its
    slot: it raises ``AirflowRescheduleException`` (state ``up_for_reschedule``, its worker slot and its
    ``salesforce_api`` pool slot free) and Airflow runs it again ``DOCUMENT_RESCHEDULE_SECONDS`` later.
    Fails when the extraction is still not complete ``documents_wait_hours`` after the first try of
    this run started (kept in ``loads/<run id>/documents/_wait.json``: a reschedule or a retry does not
    move it; the failure removes it, so a task cleared after it waits afresh). Returns the counts of
    every batch of the run, summed from the marks (so they cover the earlier reschedules' batches).
    """
    p = params()
    root = mroot(p)
    marks = root / "loads" / run_id() / DOCUMENTS
    hours = float(p.get("documents_wait_hours", 24))
    started = _wait_started(marks)
    while True:
        # Read the extraction's state before listing: a "complete" seen here covers every batch listed next.
        extraction = staging.read_json(root / "raw" / "_extraction.json", default={}) or {}
        progress = staging.read_json(staging.raw_dir(root, DOCUMENTS) / staging.PROGRESS)
        done = bool(progress and progress.get("complete")) or (progress is None and not extraction.get("documents_pending"))
        # Only batches the extractor committed (``_progress.json``): one listed in the manifest but not yet
        # committed may be rewritten by a resumed extraction.
        committed = int((progress or {}).get("batches") or 0)
        items = [i for i in load_common.raw_batches(root, objects=(DOCUMENTS,)) if _batch_number(i) <= committed]
        new = [i for i in items if not (marks / _batch_mark(i)).exists()]
        for item in new:
            summary = _load_document_batch(root, item)
            staging.write_json(marks / _batch_mark(item),
                               {"batch": item["path"].rsplit("/", 1)[-1], "loaded": True, **summary})
        if new:
            continue  # look again at once: more may have been committed while these loaded
        if done:
            break
        now = _now()
        if (now - started).total_seconds() > hours * 3600:
            (marks / DOCUMENT_WAIT).unlink(missing_ok=True)  # a task cleared after this waits afresh
            raise AirflowFailException(
                f"documents: extraction not complete after {p.get('documents_wait_hours', 24)} h "
                f"({len(items)} batches loaded): let mig_02_extract's extract_documents finish (clear it if "
                "it failed), then clear this task; loaded batches are not loaded again")
        log.info("documents: %d batches loaded; the extraction goes on (%s records so far): slot given back, "
                 "looking again in %.0f s", len(items), (progress or {}).get("records", 0), DOCUMENT_RESCHEDULE_SECONDS)
        raise AirflowRescheduleException(now + timedelta(seconds=DOCUMENT_RESCHEDULE_SECONDS))
    totals = {"batches": len(items), **{key: 0 for key in _COUNTS}}
    for item in items:
        mark = staging.read_json(marks / _batch_mark(item), default={}) or {}
        for key in _COUNTS:
            totals[key] += int(mark.get(key) or 0)
    log.info("documents loaded: %s", totals)
    return totals


def _now() -> datetime:
    return datetime.now(UTC)


def _wait_started(marks: ObjectStoragePath) -> datetime:
    """When this run's ``load_documents`` first started: written by its first try, read by the next ones."""
    wait = marks / DOCUMENT_WAIT
    state = staging.read_json(wait, default=None)
    if state and state.get("started_at"):
        return datetime.fromisoformat(state["started_at"])
    started = _now()
    staging.write_json(wait, {"started_at": started.isoformat()})
    return started


def _batch_number(item: dict[str, str]) -> int:
    return int(item["path"].rsplit("/", 1)[-1].removeprefix("batch-").removesuffix(".jsonl.gz"))


def _batch_mark(item: dict[str, str]) -> str:
    return item["path"].rsplit("/", 1)[-1].removesuffix(".jsonl.gz") + ".json"


def _load_document_batch(root: ObjectStoragePath, item: dict[str, str]) -> dict[str, int]:
    """Transform and load one document batch; its counts (the mark keeps them)."""
    load_common.transform_one(item)
    name = f"{DOCUMENTS}-{item['path'].rsplit('/', 1)[-1]}"
    summary = {key: 0 for key in _COUNTS}
    for sobject in load_common.LOAD_SEQUENCE:
        path = root / "transformed" / sobject / name
        if path.exists():
            loaded = load_common.load_one(str(path), phase="full_load")
            for key in _COUNTS:
                summary[key] += int(loaded[key])
    return summary


def load_batch(path: str | list[str]) -> dict[str, Any]:
    return load_common.load_one(path, phase="full_load", count_deferred=True)


def list_all_batches() -> list[str]:
    """The deferred pass's work items: every transformed file, one a task (a file too large for one
    load task in row slices, as ``list_batches``: ``<path>#rows=a-b``), but those the first pass of this
    run left no row to (its ``pipeline.deferred_mark`` says 0; a file without a mark is listed)."""
    from clio2sf.pipeline import deferred_rows, parse_work_item

    root = mroot()
    items = load_common.file_items(root)
    return [i for i in items if deferred_rows(root, run_id(), parse_work_item(i, ObjectStoragePath)[0]) != 0]


def load_deferred(path: str) -> dict[str, Any]:
    """Second pass: lookups to objects loaded later (self-references) on records that exist."""
    return load_common.load_one(path, phase="full_load", deferred=True)


def reconcile() -> dict[str, Any]:
    """Final validation against source totals; writes ``reports/<run>/reconciliation.*``."""
    from clio2sf.verify import reconcile_migration

    p = params()
    release_lease()  # every write of this run is done (reconciliation only reads)
    result = reconcile_migration(migration.salesforce_hook(params()), mroot(p), firm_spec(p["firm"]), run_label=run_id())
    log.info("reconciliation: lost %s, duplicated %s, amounts ok %s",
             result["lost"], result["duplicated"], result["amounts_ok"])
    if result["lost"] or result["duplicated"]:
        raise AirflowFailException(
            f"reconciliation found {result['lost']} lost and {result['duplicated']} duplicated records: "
            f"see {result['report']}"
        )
    return result


def verify() -> dict[str, Any]:
    """Source-to-target verification; writes ``reports/<run>/verification.{html,csv,json}``.

    Fails naming object, field and count when a value, owner, link or derived record differs from
    what Clio's raw extraction and the spec say without a repair note or reject explaining it, and
    when a Clio field with data goes nowhere (field accounting).
    """
    p = params()
    root = mroot(p)
    if not (root / "reports" / run_id() / PREFLIGHT_PASSED).exists():
        # verify runs whatever the load's outcome (all_done), but a refused pre-flight wrote nothing; reading
        # the org then would only report another run's writes (or one still writing) as this run's.  Fail,
        # not skip: verify is the DAG's leaf, and a skipped leaf would turn the refused run green.
        raise AirflowFailException("the pre-flight refused this run (see preflight_load's log): nothing was "
                                   "loaded, so nothing was verified")
    from clio2sf.verify.run import verify_migration

    result = verify_migration(migration.salesforce_hook(p), root, firm_spec(p["firm"]), out_dir=root / "reports" / run_id(),
                              discovered_custom_fields=discovered_custom_fields(root))
    return raise_on_failure(result, "full load")


def raise_on_failure(result: dict[str, Any], what: str) -> dict[str, Any]:
    """Log the verifier's figures; fail naming object, field and count (and unaccounted fields)."""
    log.info("verification of the %s: %s records, %s values compared, %s unexplained, %s explained; field "
             "accounting: %s values migrated, %s left behind (not migrated), %s field(s) unaccounted", what,
             result["records_compared"], result["fields_compared"], result["mismatches"], result["explained"],
             result["values_migrated"], result["values_left_behind"], len(result["unaccounted_fields"]))
    result.pop("findings", None)  # the report has them; XCom gets the figures
    problems = [m for m in (result["failure"],) if m]
    if result["unaccounted_fields"]:
        problems.append(f"{len(result['unaccounted_fields'])} Clio field(s) with data go nowhere (no spec field, "
                        "derivation or approved not_migrated reason): " + "; ".join(result["unaccounted_fields"][:10]))
    if problems:
        raise AirflowFailException("verification failed: " + " | ".join(problems) + f": see {result['report']}")
    return result


def discovered_custom_fields(root: Any) -> list[dict[str, Any]] | None:
    """The custom fields discover listed (what the admin saw when approving), None before discover."""
    config = staging.read_json(root / "discover" / "clio_config.json")
    return None if config is None else list(config.get("custom_fields") or [])
