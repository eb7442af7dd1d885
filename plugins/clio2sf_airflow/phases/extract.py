"""Extract phase: every Clio object into resumable raw batches under the migration root."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException

from clio2sf import catalog, staging
from clio2sf.extract import extract_object as _extract_object
from clio2sf_airflow import migration
from clio2sf_airflow.hooks.clio import ClioAuthError
from clio2sf_airflow.phases.common import RESUME_ADVICE, firm_spec, mroot, params, require_mapping_confirmed

log = logging.getLogger(__name__)

#: The extraction commits batch by batch: the cleared task resumes after the last committed batch.
EXTRACT_ADVICE = RESUME_ADVICE.replace("rows already loaded are upserted by external id, never duplicated",
                                       "the extraction resumes after its last committed batch")


def plan_extraction() -> list[dict[str, Any]]:
    """Return one work item per Clio object to extract (the mapped task's input)."""
    p = params()
    root = mroot(p)
    require_mapping_confirmed(firm_spec(p["firm"]), root)
    wanted = p.get("objects") or [o.name for o in catalog.CLIO_OBJECTS if o.migrated]
    unknown = sorted(set(wanted) - set(catalog.BY_NAME))
    if unknown:
        raise ValueError(f"params.objects names unknown Clio objects {unknown}; known: {sorted(catalog.BY_NAME)}")
    estimates = staging.read_json(root / "discover" / "clio_counts.json", default={}) or {}
    return [{"object": name, "total": estimates.get(name)} for name in wanted]


def extract_object(item: dict[str, Any]) -> dict[str, Any]:
    """Extract one object; a retry resumes from the last committed batch."""
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
    """Write ``raw/_extraction.json`` (records and requests per object) and return it."""
    summaries = list(summaries)
    doc = {
        "objects": {s["object"]: {"records": s["records"], "batches": s["batches"], "requests": s["requests"]} for s in summaries},
        "records": sum(s["records"] for s in summaries),
        "requests": sum(s["requests"] for s in summaries),
        "complete": all(s["complete"] for s in summaries),
    }
    staging.write_json(mroot() / "raw" / "_extraction.json", doc)
    log.info("extracted %d records with %d Clio requests", doc["records"], doc["requests"])
    return {"records": doc["records"], "requests": doc["requests"], "objects": len(summaries)}
