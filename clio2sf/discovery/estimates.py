"""Volume and duration estimates for a migration, and the Salesforce capacity pre-flight.

Clio side: list requests (one page per ``page_size`` records, at least one per object), one
download per document, and the fixed discovery calls, paced by the per-minute limit (50 at peak,
higher off-peak by a region-dependent amount).  Salesforce side: rows per target object, data
storage (about 2 KB per record), file storage (document bytes), Bulk API 2.0 jobs and internal
batches (10,000 rows each) and API calls per object.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from clio2sf.catalog import CLIO_OBJECTS, CLIO_SETTINGS_ENDPOINTS
from clio2sf.load import BULK_ROW_CAP, COMPOSITE_CHUNK

BULK_INTERNAL_BATCH = 10_000
BULK_CALLS_PER_JOB = 6  # create, upload, close, successful/failed/unprocessed results
FILE_OBJECTS = frozenset({"ContentVersion"})  # one REST request per file (binary body)
NO_DATA_STORAGE = frozenset({"ContentVersion", "ContentDocumentLink", "ContentNote"})
DEFAULT_AVG_DOC_BYTES = 500_000

#: Clio's peak hours (Monday-Friday) per region, and the off-peak window to schedule extraction in.
PEAK_HOURS: dict[str, str] = {
    "US/CA": "04:00-19:00 Pacific",
    "EU": "07:00-22:00 GMT",
    "AU": "06:00-21:00 AET",
}
OFFPEAK_WINDOWS: dict[str, str] = {
    "US/CA": "19:00-04:00 Pacific on weekdays, and all weekend",
    "EU": "22:00-07:00 GMT on weekdays, and all weekend",
    "AU": "21:00-06:00 AET on weekdays, and all weekend",
}

#: Discovery reads: the configuration endpoints discover reads in full (the mapping document, the schema
#: plan and the reference files need them; the phase's ``CONFIG_OBJECTS`` are these without the settings),
#: plus a count of each migrated object not among them. Not the objects the extraction reads in full
#: (matters, activity rates): the reference files' parts built from them are written after extraction.
DISCOVERY_ENDPOINTS: tuple[str, ...] = (
    "users", "custom_fields", "practice_areas", "matter_stages", "activity_descriptions",
    "expense_categories", "bank_accounts", *CLIO_SETTINGS_ENDPOINTS, "task_types", "task_template_lists",
    "task_templates", "document_templates", "custom_actions", "webhooks", "groups", "custom_field_sets",
    "document_categories", "bill_themes", "reminders",
)
MIGRATED_OBJECTS: tuple[str, ...] = tuple(o.name for o in CLIO_OBJECTS if o.migrated)
#: The migrated objects discover counts with requests of their own (a configuration object's full read
#: is its count).
COUNTED_OBJECTS: tuple[str, ...] = tuple(n for n in MIGRATED_OBJECTS if n not in DISCOVERY_ENDPOINTS)


def _n(counts: Mapping[str, int], key: str) -> int:
    value = counts.get(key, 0) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"counts[{key!r}] must be a non-negative integer, got {value!r}")
    return value


def human_duration(seconds: float) -> str:
    """``1 d 02 h 05 min`` style text (minutes rounded up)."""
    minutes = math.ceil(seconds / 60)
    days, rem = divmod(minutes, 1440)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days} d {hours:02d} h {mins:02d} min"
    if hours:
        return f"{hours} h {mins:02d} min"
    return f"{mins} min"


def salesforce_targets(
    counts: Mapping[str, int], *, matter_split: Mapping[str, int] | None = None, matter_object: str = "Case"
) -> tuple[dict[str, int], list[str]]:
    """Rows per Salesforce object derived from Clio counts, plus notes on the approximations.

    Optional finer counts (from filtered count requests) sharpen the figures:
    ``contacts:Person`` / ``contacts:Company``, ``activities:TimeEntry`` / ``activities:Expense`` /
    ``activities:NonBillable``, ``calendar_entries:attendees``.  ``matter_split`` gives matters
    per target (``{"Case": 80, "Opportunity": 20}``); else every matter goes to ``matter_object``.
    """
    notes: list[str] = []
    out: dict[str, int] = {}

    def add(obj: str, n: int) -> None:
        if n:
            out[obj] = out.get(obj, 0) + n

    contacts = _n(counts, "contacts")
    if "contacts:Person" in counts or "contacts:Company" in counts:
        add("Contact", _n(counts, "contacts:Person"))
        add("Account", _n(counts, "contacts:Company"))
    else:
        add("Contact", contacts)
        if contacts:
            notes.append("contacts are not split into people and companies: all counted as Contacts")
    if contacts:
        add("Account", 1)  # the default "Individual Client" account
    matters = _n(counts, "matters")
    split = dict(matter_split) if matter_split else {matter_object: matters}
    bad = set(split) - {"Case", "Opportunity"}
    if bad:
        raise ValueError(f"matter_split: unknown target(s) {sorted(bad)}; use Case or Opportunity")
    for target, n in split.items():
        add(target, n)
    relationships = _n(counts, "relationships")
    total_split = sum(split.values()) or 1
    for target, n in split.items():
        role_obj = "CaseContactRole" if target == "Case" else "OpportunityContactRole"
        add(role_obj, round(relationships * n / total_split))
    add("Clio_Billing__c", _n(counts, "bills"))
    add("Ledger__c", _n(counts, "bank_transactions"))
    activities = _n(counts, "activities")
    if any(k in counts for k in ("activities:TimeEntry", "activities:Expense", "activities:NonBillable")):
        add("Time_Entry__c", _n(counts, "activities:TimeEntry"))
        add("Expense__c", _n(counts, "activities:Expense"))
        add("Task", _n(counts, "activities:NonBillable"))
    elif activities:
        add("Time_Entry__c", activities)
        notes.append("activities are not split by type: all counted as billable time entries")
    add("Rate_Structure__c", _n(counts, "users") + _n(counts, "activity_rates") + _n(counts, "activity_descriptions"))
    calendar = _n(counts, "calendar_entries")
    add("Event", calendar)
    if calendar:
        notes.append("recurring calendar entries expand into one Event per occurrence: Event count is a minimum")
    add("EventRelation", _n(counts, "calendar_entries:attendees"))
    add("Task", _n(counts, "tasks") + _n(counts, "communications"))
    documents = _n(counts, "documents")
    add("ContentVersion", documents)
    notes_n = _n(counts, "matter_notes") + _n(counts, "contact_notes")
    add("ContentDocumentLink", documents + notes_n)
    add("ContentNote", notes_n)
    return out, notes


def _object_plan(sobject: str, rows: int, bulk_threshold: int, rows_per_job: int, record_kb: float) -> dict[str, Any]:
    if sobject in FILE_OBJECTS:
        method, jobs, batches, calls = "rest-file", 0, 0, rows
    elif rows > bulk_threshold:
        method = "bulk"
        jobs = math.ceil(rows / rows_per_job)
        batches = math.ceil(rows / BULK_INTERNAL_BATCH)
        calls = jobs * BULK_CALLS_PER_JOB + batches  # plus about one status poll per internal batch
    else:
        method, jobs, batches, calls = "composite", 0, 0, math.ceil(rows / COMPOSITE_CHUNK)
    data_kb = 0.0 if sobject in NO_DATA_STORAGE else rows * record_kb
    return {"records": rows, "method": method, "bulk_jobs": jobs, "bulk_batches": batches,
            "api_calls": calls, "data_storage_mb": round(data_kb / 1024, 2)}


def estimates(
    counts: Mapping[str, int],
    *,
    peak_limit: int = 50,
    offpeak_limit: int | None = None,
    window_s: int = 60,
    page_size: int = 200,
    documents: int | None = None,
    avg_doc_bytes: int = DEFAULT_AVG_DOC_BYTES,
    document_bytes: int | None = None,
    sf_bulk_threshold: int = 2000,
    record_kb: float = 2.0,
    rows_per_job: int = BULK_ROW_CAP,
    matter_split: Mapping[str, int] | None = None,
    matter_object: str = "Case",
    region: str | None = None,
    discovery_calls: int | None = None,
) -> dict[str, Any]:
    """Estimate Clio requests and durations and the Salesforce load (plain, JSON-able dict).

    :param counts: records per Clio catalog object (``contacts``: 401, ...), optionally with the
        finer keys :func:`salesforce_targets` reads.
    :param documents: document downloads (default: ``counts["documents"]``).
    :param document_bytes: sum of document sizes; else ``documents * avg_doc_bytes``.
    :param region: ``US/CA``, ``EU`` or ``AU`` for a single schedule hint (else all regions).
    """
    if peak_limit <= 0 or window_s <= 0 or page_size <= 0:
        raise ValueError("peak_limit, window_s and page_size must be positive")
    if offpeak_limit is not None and offpeak_limit <= 0:
        raise ValueError("offpeak_limit must be positive when given")
    if region is not None and region not in PEAK_HOURS:
        raise ValueError(f"region must be one of {sorted(PEAK_HOURS)}, not {region!r}")
    per_object = {name: max(1, math.ceil(_n(counts, name) / page_size)) for name in MIGRATED_OBJECTS}
    list_requests = sum(per_object.values())
    docs = _n(counts, "documents") if documents is None else documents
    fixed = len(DISCOVERY_ENDPOINTS) + len(COUNTED_OBJECTS) if discovery_calls is None else discovery_calls
    total = list_requests + docs + fixed

    def pace(limit: int) -> dict[str, Any]:
        seconds = total / limit * window_s
        return {"limit_per_window": limit, "window_s": window_s, "seconds": round(seconds, 1),
                "human": human_duration(seconds)}

    peak = pace(peak_limit)
    offpeak = pace(offpeak_limit) if offpeak_limit else None
    regions = [region] if region else list(PEAK_HOURS)
    hint = "Run extraction off-peak: " + "; ".join(f"{r}: {OFFPEAK_WINDOWS[r]}" for r in regions) + "."
    if offpeak:
        hint += (f" At {offpeak_limit} requests/min it takes {offpeak['human']} instead of "
                 f"{peak['human']} at the peak limit of {peak_limit}/min.")
    targets, notes = salesforce_targets(counts, matter_split=matter_split, matter_object=matter_object)
    objects = {o: _object_plan(o, n, sf_bulk_threshold, rows_per_job, record_kb) for o, n in targets.items()}
    doc_bytes = document_bytes if document_bytes is not None else docs * avg_doc_bytes
    if document_bytes is None and docs:
        notes.append(f"file storage assumes an average of {avg_doc_bytes:,} bytes per document")
    sf = {
        "objects": objects,
        "records": sum(targets.values()),
        "data_storage_mb": round(sum(o["records"] * record_kb for s, o in objects.items() if s not in NO_DATA_STORAGE) / 1024, 2),
        "file_storage_mb": round(doc_bytes / 1024 / 1024, 2),
        "bulk_jobs": sum(o["bulk_jobs"] for o in objects.values()),
        "bulk_batches": sum(o["bulk_batches"] for o in objects.values()),
        "api_calls": sum(o["api_calls"] for o in objects.values()),
        # reconciliation counts every loaded object with one Bulk 2.0 query job
        "bulk_query_jobs": len(objects),
    }
    return {
        "clio": {
            "requests_by_object": per_object,
            "list_requests": list_requests,
            "document_downloads": docs,
            "discovery_requests": fixed,
            "total_requests": total,
            "page_size": page_size,
            "peak": peak,
            "offpeak": offpeak,
            "peak_hours": {r: PEAK_HOURS[r] for r in regions},
            "schedule_hint": hint,
        },
        "salesforce": sf,
        "assumptions": {"record_kb": record_kb, "bulk_threshold": sf_bulk_threshold,
                        "rows_per_bulk_job": rows_per_job, "bulk_internal_batch": BULK_INTERNAL_BATCH,
                        "bulk_calls_per_job": BULK_CALLS_PER_JOB, "composite_chunk": COMPOSITE_CHUNK,
                        "document_bytes": doc_bytes},
        "notes": notes,
    }


@dataclass(frozen=True)
class Finding:
    """One capacity pre-flight result: ``level`` is ``error`` (will not fit) or ``warning``."""

    level: str
    limit: str
    needed: float
    remaining: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: limit key -> (estimate path in ``salesforce``, unit, what it measures)
_CHECKS: tuple[tuple[str, str, str, str], ...] = (
    ("DataStorageMB", "data_storage_mb", "MB", "of data storage"),
    ("FileStorageMB", "file_storage_mb", "MB", "of file storage"),
    ("DailyApiRequests", "api_calls", "", "API requests"),
    ("DailyBulkApiBatches", "bulk_batches", "", "Bulk API batches"),
    ("DailyBulkV2QueryJobs", "bulk_query_jobs", "", "Bulk API 2.0 query jobs"),
)


def _fmt(value: float, unit: str) -> str:
    text = f"{math.ceil(value):,}" if value != int(value) else f"{int(value):,}"
    return f"{text} {unit}".rstrip() if unit else text


def capacity_check(estimate: Mapping[str, Any], sf_limits: Mapping[str, Any], *, headroom: float = 0.8) -> list[Finding]:
    """Compare the estimate with the org's ``/limits``: an error when the load exceeds what remains,
    a warning above ``headroom`` of it or when a limit is missing from the response."""
    sf = estimate["salesforce"]
    findings: list[Finding] = []
    for key, path, unit, what in _CHECKS:
        needed = float(sf.get(path) or 0)
        limit = sf_limits.get(key)
        if not isinstance(limit, Mapping) or "Remaining" not in limit:
            findings.append(Finding("warning", key, needed, None,
                                    f"the org's limits do not report {key}: cannot check the {_fmt(needed, unit)} {what} the load needs"))
            continue
        remaining = float(limit["Remaining"])
        of_max = f" (of {_fmt(float(limit['Max']), unit)})" if "Max" in limit else ""
        text = f"the load needs {_fmt(needed, unit)} {what}; the org has {_fmt(remaining, unit)} remaining{of_max}"
        if needed > remaining:
            findings.append(Finding("error", key, needed, remaining, text))
        elif needed and needed > remaining * headroom:
            findings.append(Finding("warning", key, needed, remaining, text + f", above {headroom:.0%} of what remains"))
    return findings
