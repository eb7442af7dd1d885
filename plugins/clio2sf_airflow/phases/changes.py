"""Delta change detection as tasks: webhook events first (see :mod:`clio2sf.changes`).

``extract_changes`` stages, under ``delta/<window>/``, what the rest of the window expects:
``raw/<object>/`` with the changed records, ``since/<object>.json``, and ``ids/<object>.json``
for objects whose deletions are checked (swept ids, or the staged ids minus what Clio no longer
lists). ``detection.json`` reports per object the mode, why, the events used, and the Clio
requests spent on changes and on sweeps. ``commit_events`` removes the consumed event files
once the window committed.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from clio2sf import catalog, changes, staging
from clio2sf import delta as delta_logic
from clio2sf import webhook_events as ev
from clio2sf.delta_run import known_records
from clio2sf.extract import attach_blob, envelope, extract_object
from clio2sf_airflow import migration
from clio2sf_airflow.hooks.clio import ClioHook
from clio2sf_airflow.phases import load_common
from clio2sf_airflow.phases.common import firm_spec, hold_lease, mroot, params, require_mapping_confirmed
from clio2sf_airflow.phases.delta import _baseline, delta_root, window_key

log = logging.getLogger(__name__)
SWEEPS_FILE = "sweeps.json"


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def _stage(obj: catalog.ClioObject, records: list[dict[str, Any]], droot: Any, hook: ClioHook) -> int:
    """Write fetched records as the window's raw batches (documents with their bytes)."""
    odir = staging.raw_dir(droot, obj.name)
    for old in odir.glob("batch-*.jsonl.gz") if odir.exists() else ():
        old.unlink()
    at = datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: DTZ003 - naive UTC, as extract writes
    envs = [envelope(obj.name, r, at) for r in records]
    if obj.endpoint == "documents":
        for env in envs:
            attach_blob(env, droot, hook.download_document)
    entries = []
    for n, start in enumerate(range(0, len(envs), 1000), start=1):
        entries.append(staging.write_jsonl_gz(odir / staging.batch_name(n), envs[start:start + 1000]))
    staging.write_json(odir / staging.MANIFEST, {"object": obj.name, "batches": entries, "records": len(envs),
                                                 "complete": True})
    return len(envs)


def extract_changes() -> dict[str, Any]:
    """Detect this window's changes (events, net, sweeps) and stage them for the plan."""
    p = params()
    root = mroot(p)
    spec = firm_spec(p["firm"])
    require_mapping_confirmed(spec, root)
    hold_lease("delta")  # one writer per migration: not during a full load or a rollback
    load_common.check_write_access(spec, root)  # before this window writes anything
    droot = delta_root(root)
    hook = migration.clio_hook(p)
    now = time.time()
    subs = ev.read_subscriptions(root)
    sweeps_path = ev.webhooks_root(root) / SWEEPS_FILE
    last_sweeps = {k: float(v) for k, v in (staging.read_json(sweeps_path) or {}).items()}
    names = [n for n in load_common.TRANSFORMED
             if staging.read_manifest(root, n) is not None and catalog.get(n).incremental]
    plans = changes.plan_objects(
        names, ev.usable_models(subs, now), sweep=str(p.get("sweep") or "auto"), webhooks=bool(subs["models"]),
        last_sweeps=last_sweeps, now=now, interval_hours=float(p.get("sweep_interval_hours") or 24),
        baseline=_ts(subs.get("registered_at")))
    report: dict[str, Any] = {}
    consumed: dict[str, list[str]] = {}
    totals = {"change_requests": 0, "sweep_requests": 0}
    for plan in plans:
        obj = catalog.get(plan.name)
        since = delta_logic.read_since(root, plan.name) or _baseline(root, plan.name)
        staging.write_json(droot / "since" / f"{plan.name}.json", {"updated_since": since})
        r0 = hook.requests_made
        entry: dict[str, Any] = {"mode": plan.mode, "sweep": plan.sweep, "reason": plan.reason}
        gone: set[int] = set()
        if plan.mode == "events":
            events = ev.pending_events(root, plan.model)
            summary = changes.summarize_events(events)
            staging.write_json(droot / "events" / f"{plan.model}.json", [doc for _, doc in events])
            found = changes.detect_by_events(obj, hook.get_page, since=since, events=summary)
            _stage(obj, found.records, droot, hook)
            gone = found.gone
            consumed[plan.model] = summary.files
            entry |= {"events": summary.by_event, **found.counts()}
        else:
            got = extract_object(obj, hook.get_page, droot, updated_since=since,
                                 download=hook.download_document if obj.endpoint == "documents" else None,
                                 request_count=lambda: hook.requests_made)
            entry["records"] = got["records"]
        entry["change_requests"] = hook.requests_made - r0
        r1 = hook.requests_made
        if plan.sweep:
            ids = [r["id"] for page in hook.paginate(obj.endpoint, "id", obj.list_params) for r in page["data"]]
            staging.write_json(droot / "ids" / f"{plan.name}.json", ids)
            last_sweeps[plan.name] = now
        elif gone:
            # every id the plan knows (full extraction and earlier windows) minus what Clio no longer lists
            known = [e["clio_id"] for e in known_records(root, plan.name, droot)]
            staging.write_json(droot / "ids" / f"{plan.name}.json", changes.remaining_ids(known, gone))
        entry["sweep_requests"] = hook.requests_made - r1
        totals["change_requests"] += entry["change_requests"]
        totals["sweep_requests"] += entry["sweep_requests"]
        report[plan.name] = entry
    staging.write_json(sweeps_path, last_sweeps)
    health = ev.health(root, subs, now) if subs["models"] else {}
    doc = {"window": window_key(), "webhooks": bool(subs["models"]), "sweep": p.get("sweep") or "auto",
           "requests": hook.requests_made, **totals, "objects": report, "consumed": consumed, "health": health}
    staging.write_json(droot / "detection.json", doc)
    log.info("delta window %s: %d Clio requests (%d for changes, %d for id sweeps); webhooks %s",
             window_key(), hook.requests_made, totals["change_requests"], totals["sweep_requests"],
             "in use" if subs["models"] else "not registered")
    changed = {n: e.get("records", 0) for n, e in report.items()}
    return {"changed": changed, "requests": hook.requests_made, **totals}


def commit_events() -> dict[str, int]:
    """After a committed window: drop the event files it consumed (a copy stays in its folder)."""
    root = mroot()
    doc = staging.read_json(delta_root(root) / "detection.json") or {}
    return {model: ev.consume(root, model, names) for model, names in (doc.get("consumed") or {}).items()}
