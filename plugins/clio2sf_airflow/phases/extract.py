"""Extract phase: every Clio object into resumable raw batches under the migration root.

Record objects first (one mapped task each), then documents (``extract_documents``): once the
records are staged, ``raw/_extraction.json`` says ``records_complete`` and the next phases (users,
sample, the full load's record steps) can start while the documents still download; the full load
uploads each committed document batch as it arrives (``full_load.load_documents``).

The record objects are extracted under the migration's one-writer lease (``clio2sf.lease``), taken
by ``plan_extraction`` and released by ``summarize_extraction``: not beside a full load, a delta, a
rollback or another extraction of the same migration. The documents are not (the next phases run
beside them) but hold the documents lease, so two runs never download into one ``raw/documents/``.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from clio2sf import catalog, lease, staging
from clio2sf.extract import extract_object as _extract_object
from clio2sf_airflow import migration
from clio2sf_airflow.hooks.clio import ClioAuthError
from clio2sf_airflow.phases.common import (
    RESUME_ADVICE,
    firm_spec,
    hold_lease,
    mroot,
    params,
    release_lease,
    require_mapping_confirmed,
)

log = logging.getLogger(__name__)

#: The extraction commits batch by batch: the cleared task resumes after the last committed batch.
EXTRACT_ADVICE = RESUME_ADVICE.replace("rows already loaded are upserted by external id, never duplicated",
                                       "the extraction resumes after its last committed batch")


DOCUMENTS = "documents"
EXTRACTION = "_extraction.json"


def _wanted(p: dict[str, Any]) -> list[str]:
    return p.get("objects") or [o.name for o in catalog.CLIO_OBJECTS if o.migrated]


def plan_extraction() -> list[dict[str, Any]]:
    """Return one work item per Clio record object to extract (the mapped task's input); documents
    are extracted after them by ``extract_documents``."""
    p = params()
    root = mroot(p)
    require_mapping_confirmed(firm_spec(p["firm"]), root)
    hold_lease("extract")  # one writer per migration: not beside a load, a delta or another extraction
    wanted = _wanted(p)
    unknown = sorted(set(wanted) - set(catalog.BY_NAME))
    if unknown:
        raise ValueError(f"params.objects names unknown Clio objects {unknown}; known: {sorted(catalog.BY_NAME)}")
    estimates = staging.read_json(root / "discover" / "clio_counts.json", default={}) or {}
    return [{"object": name, "total": estimates.get(name)} for name in wanted if name != DOCUMENTS]


def extract_object(item: dict[str, Any]) -> dict[str, Any]:
    """Extract one record object under the migration's one-writer lease; a retry resumes from the last
    committed batch."""
    hold_lease("extract")  # a task cleared after another run took the lease over is refused, naming it
    return _extract(item)


def _extract(item: dict[str, Any]) -> dict[str, Any]:
    obj = catalog.get(item["object"])
    get_current_context()["clio_object"] = obj.name  # labels the mapped task in the UI
    hook = migration.clio_hook(params())
    try:
        summary = _extract_object(
            obj,
            hook.get_page,
            mroot(),
            download=hook.download_document if obj.endpoint == "documents" else None,
            pages_per_batch=int(params().get("pages_per_batch", 10)),
            total=item.get("total"),
            request_count=lambda: hook.requests_made,
        )
    except ClioAuthError as exc:  # retrying cannot help until someone re-authorises the app
        raise AirflowFailException(f"{obj.name}: {exc}\n{EXTRACT_ADVICE}") from exc
    except Exception:
        log.error("%s failed. %s", obj.name, EXTRACT_ADVICE)  # Airflow retries it; its own log line
        raise
    return {k: summary[k] for k in ("object", "records", "batches", "requests", "complete")}


def summarize_extraction(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``raw/_extraction.json`` once the record objects are staged and return its figures.

    ``records_complete``: every record object is complete (what the full load waits for); then the
    reference files' parts built from extracted records (billing methods, evergreen retainers, matter and
    client rates) are written from the staged copy (``discover.complete_reference_files``, no Clio request);
    ``documents_pending``: this run still extracts documents (``extract_documents`` rewrites the file
    when they are done); ``complete``: everything this run extracts is complete.
    """
    summaries = list(summaries)
    p = params()
    pending = DOCUMENTS in _wanted(p)
    doc = _document(summaries, documents_pending=pending)
    staging.write_json(mroot() / "raw" / EXTRACTION, doc)
    if doc["records_complete"]:  # discover counted matters and activity rates without reading them
        from clio2sf_airflow.phases.discover import complete_reference_files  # not in every extract task

        refs = complete_reference_files(mroot())
        log.info("reference files completed from the extracted records: %s", refs)
    release_lease()  # the record objects are staged: users, the sample, the full load may start
    log.info("extracted %d records with %d Clio requests%s", doc["records"], doc["requests"],
             "; documents next" if pending else "")
    return {"records": doc["records"], "requests": doc["requests"], "objects": len(summaries)}


def _document(summaries: list[dict[str, Any]], *, documents_pending: bool) -> dict[str, Any]:
    records = [s for s in summaries if s["object"] != DOCUMENTS]
    records_complete = all(s["complete"] for s in records)
    return {
        "objects": {s["object"]: {"records": s["records"], "batches": s["batches"], "requests": s["requests"]}
                    for s in summaries},
        "records": sum(s["records"] for s in summaries),
        "requests": sum(s["requests"] for s in summaries),
        "records_complete": records_complete,
        "documents_pending": documents_pending,
        "complete": records_complete and not documents_pending and all(s["complete"] for s in summaries),
    }


def extract_documents() -> dict[str, Any]:
    """Extract documents (listing, bytes, older versions) after the record objects; then rewrite
    ``raw/_extraction.json`` with them. Skipped when the run's ``objects`` leave documents out.

    Not under the one-writer lease (the next phases run beside it) but under the documents lease:
    a second extraction of this migration does not download into ``raw/documents/`` at once."""
    p = params()
    if DOCUMENTS not in _wanted(p):
        raise AirflowSkipException("params.objects leaves documents out")
    root = mroot(p)
    require_mapping_confirmed(firm_spec(p["firm"]), root)
    hold_lease(DOCUMENTS, name=lease.DOCUMENTS_LEASE)
    total = (staging.read_json(root / "discover" / "clio_counts.json", default={}) or {}).get(DOCUMENTS)
    summary = _extract({"object": DOCUMENTS, "total": total})
    previous = staging.read_json(root / "raw" / EXTRACTION, default={}) or {}
    summaries = [{"object": name, **info, "complete": previous.get("records_complete", False)}
                 for name, info in (previous.get("objects") or {}).items() if name != DOCUMENTS]
    doc = _document([*summaries, summary], documents_pending=False)
    staging.write_json(root / "raw" / EXTRACTION, doc)
    release_lease(name=lease.DOCUMENTS_LEASE)
    log.info("documents extracted: %d with %d Clio requests", summary["records"], summary["requests"])
    return summary
