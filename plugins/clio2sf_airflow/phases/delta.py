"""Delta phase: what changed in Clio since the watermark, deletions, conflicts, then a committed load."""

from __future__ import annotations

import logging
import re
from typing import Any

from airflow.sdk import ObjectStoragePath, get_current_context

from clio2sf import delta, loaded_versions, staging
from clio2sf.delta_run import apply_deletes, plan_window
from clio2sf.extract import read_records
from clio2sf.ledger import read_ledger
from clio2sf.pipeline import build_lookup, lookup_names, transform_batch
from clio2sf.verify import base_id, iter_raw, raw_objects
from clio2sf.verify.run import verify_migration
from clio2sf_airflow import migration
from clio2sf_airflow.phases import load_common
from clio2sf_airflow.phases.common import (
    firm_spec,
    hold_lease,
    mroot,
    params,
    release_lease,
    run_id,
)

log = logging.getLogger(__name__)


def window_key() -> str:
    """A folder name for this window, from the run id (stable across task retries)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id())


def delta_root(root: ObjectStoragePath) -> ObjectStoragePath:
    return root / "delta" / window_key()


def _baseline(root: ObjectStoragePath, name: str) -> str | None:
    """Where the first window starts: when the full extraction of the object began, minus the overlap,
    so a record changed after its page was read is caught however long the extraction ran.  An
    extraction without a batch log falls back to the latest ``updated_at`` it saw."""
    return delta.extraction_high_water(staging.raw_dir(root, name)) or delta.next_watermark(
        None, (e["data"].get("updated_at") for e in read_records(root, name)))


def extract_changes() -> dict[str, Any]:
    """Extract this window's changes: webhook events first, ``updated_since`` net, scheduled id sweeps."""
    from clio2sf_airflow.phases import changes

    return changes.extract_changes()


def plan() -> dict[str, Any]:
    """Split changes into upserts and queued conflicts, and find deletions."""
    p = params()
    root = mroot(p)
    droot = delta_root(root)
    current = {}
    for name in load_common.TRANSFORMED:
        path = droot / "ids" / f"{name}.json"
        if path.exists():
            current[name] = staging.read_json(path)
    spec = firm_spec(p["firm"])
    user = spec.options.get("integration_user") or spec.options.get("fallback_owner")
    changed_dir, already = _skip_already_loaded(root, droot)
    result = plan_window(migration.salesforce_hook(params()), root, spec, delta_root=droot, current_ids=current,
                         changed_raw_dir=changed_dir, integration_username=user)
    result["already_loaded"] = already
    if any(already.values()):
        log.info("delta window %s: skipped records already in Salesforce at this Clio version (overlap): %s",
                 window_key(), {k: v for k, v in already.items() if v})
    staging.write_json(droot / "plan.json", result)
    return {k: v for k, v in result.items() if isinstance(v, int | float | str | dict)}


def _full_load_reconciled(root: ObjectStoragePath) -> bool:
    reports = root / "reports"
    return reports.exists() and any((d / "reconciliation.json").exists() for d in reports.iterdir())


def _skip_already_loaded(root: ObjectStoragePath, droot: ObjectStoragePath) -> tuple[ObjectStoragePath, dict[str, int]]:
    """Copy the window's changes to ``raw_new/`` without those whose Clio version already reached Salesforce."""
    raw, out = droot / "raw", droot / "raw_new"
    reconciled = _full_load_reconciled(root)
    skipped: dict[str, int] = {}
    for obj in raw_objects(raw):
        index = loaded_versions.read_index(root, obj)
        if index is None and reconciled and staging.read_manifest(root, obj) is not None:
            index = loaded_versions.build_index(read_records(root, obj))  # what the full load loaded
            loaded_versions.write_index(root, obj, index)
        new, skipped[obj] = loaded_versions.split_new(iter_raw(raw, obj), index or {})
        odir = out / obj
        entries = [staging.write_jsonl_gz(odir / staging.batch_name(1), new)] if new else []
        staging.write_json(odir / staging.MANIFEST, {"object": obj, "batches": entries, "records": len(new),
                                                     "complete": True})
    return out, skipped


def transform_changes() -> list[dict[str, Any]]:
    """Transform the accepted changes; lookups see the full extraction plus this window."""
    p = params()
    root = mroot(p)
    droot = delta_root(root)
    spec = firm_spec(p["firm"])
    items = load_common.raw_batches(droot, raw_dir="raw_ok")
    if not items:
        log.info("delta window %s: no accepted change to transform", window_key())
        return []
    users = load_common.user_map(root)
    out = []
    for item in items:
        names = lookup_names(item["object"])
        lookup = build_lookup(root, names, spec)
        for name, table in build_lookup(droot, names, spec).items():
            lookup.setdefault(name, {}).update(table)
        get_current_context()["batch_label"] = item["object"]
        summary = transform_batch(ObjectStoragePath(item["path"]), item["object"], spec, users, lookup, droot)
        out.append({k: summary[k] for k in ("object", "batch", "records", "rows", "rejects", "repairs")})
    return out


def load_changes() -> dict[str, Any]:
    """Upsert the transformed changes in dependency order (ledger phase ``delta``)."""
    root = mroot()
    droot = delta_root(root)
    totals = {"rows": 0, "created": 0, "updated": 0, "skipped": 0, "failed": 0}
    paths = load_common.file_items(droot)  # a file over the load group maximum in row slices
    for deferred in (False, True):
        for path in paths:
            summary = load_common.load_one(path, phase="delta", deferred=deferred, window_root=droot,
                                           clear_fields=True)
            for k in totals:
                totals[k] += summary[k]
    return totals


def delete_removed() -> dict[str, Any]:
    """Delete from Salesforce what was deleted in Clio (before-images kept for rollback); live records whose
    lookup names a deleted parent are detached first, so Salesforce's delete cascade cannot take them and
    no lookup it clears (a bill's client) is lost to a rollback (:func:`clio2sf.delta_run.apply_deletes`)."""
    p = params()
    root = mroot(p)
    droot = delta_root(root)
    plan = staging.read_json(droot / "plan.json")
    hold_lease("delta")
    out = apply_deletes(migration.salesforce_hook(params()), root, plan, run_id(), p["migration_id"], delta_root=droot,
                        load_order=firm_spec(p["firm"]).load_order)
    if out["detached"]:
        log.info("delta window %s: live records detached from a parent deleted in Clio (ledgered, restored by a "
                 "rollback): %s", window_key(), out["detached"])
    return out


def commit_watermarks() -> dict[str, str]:
    """Advance each object's watermark to the latest change loaded; only after a committed load, and
    never past a record of this window whose load failed (it is read again by the next window)."""
    root = mroot()
    droot = delta_root(root)
    failed = failed_records(read_ledger(root, run_id=run_id()))
    committed = {}
    held: dict[str, int] = {}
    marks = delta.read_watermarks(root)
    for name in load_common.TRANSFORMED:
        if staging.read_manifest(droot, name) is None:
            continue
        since = (staging.read_json(droot / "since" / f"{name}.json") or {}).get("updated_since")
        current = (marks.get(name) or {}).get("updated_since") or since
        envs = list(read_records(droot, name))
        stuck = [e["data"].get("updated_at") for e in envs if e.get("source_system_id") in failed]
        mark = delta.held_watermark(current, (e["data"].get("updated_at") for e in envs), stuck)
        if stuck:
            held[name] = len(stuck)
        if mark and mark != (marks.get(name) or {}).get("updated_since"):
            delta.commit_watermark(root, name, mark, run_id())
            committed[name] = mark
        if (droot / "raw_ok" / name).exists():  # what this window loaded: the next one skips it
            loaded_versions.record_loaded(root, name, (e for e in iter_raw(droot / "raw_ok", name)
                                                       if e.get("source_system_id") not in failed))
    if held:
        log.warning("watermark held back for records whose load failed (read again next window): %s", held)
    release_lease()
    return committed


def failed_records(ledger: Any) -> set[str]:
    """Clio records (``contact-9001``) with a failed load line in this window's ledger."""
    if not len(ledger):
        return set()
    bad = ledger[(ledger["status"] == "failed") & ledger["phase"].astype(str).str.startswith("delta")]
    return {base_id(str(s)) for s in bad["source_system_id"]}


def verify() -> dict[str, Any]:
    """Source-to-target verification of the window's accepted changes (``raw_ok``), parents read from
    the whole extraction; writes ``reports/<run>/verification.*`` and fails naming object, field and
    count on an unexplained mismatch or an unaccounted field."""
    from clio2sf_airflow.phases.full_load import discovered_custom_fields, raise_on_failure

    p = params()
    root = mroot(p)
    droot = delta_root(root)
    if not (droot / "raw_ok").exists():
        return {"records_compared": 0, "note": "no accepted change in this window"}
    result = verify_migration(migration.salesforce_hook(p), droot, firm_spec(p["firm"]),
                              out_dir=root / "reports" / run_id(), users_dir=root / "users", subset=True,
                              raw_dir="raw_ok", context_root=root,
                              discovered_custom_fields=discovered_custom_fields(root))
    return raise_on_failure(result, "delta window")
