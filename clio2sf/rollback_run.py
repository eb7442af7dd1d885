"""Execute a rollback plan (:mod:`clio2sf.rollback`) against the org, writing rollback ledger lines.

Deletes go through ``client.composite_delete`` (files through their ContentDocument ids),
re-creations through ``client.composite_upsert`` on the object's external id when the
before-image has one (so a retried chunk cannot make a second copy), else
``client.composite_create``; restores through ``client.composite_update``. Every executed chunk is written to the ledger at once (phase
``rollback`` under the rolled-back run's id), so an interrupted rollback resumes where it stopped
and a finished one plans nothing the second time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from clio2sf import rollback
from clio2sf.delta import DEFAULT_LOAD_ORDER
from clio2sf.ledger import LedgerWriter, utc_now_iso
from clio2sf.load import COMPOSITE_CHUNK, chunked
from clio2sf.verify import existing_ids

#: Errors meaning the record is already gone: the delete's goal is met.
GONE_CODES = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})
#: Before-image keys that are not writable fields.
NOT_WRITABLE = frozenset({"Id", "attributes"})


def _errors(result: dict[str, Any]) -> tuple[str, str]:
    errs = result.get("errors") or []
    first = errs[0] if errs else {}
    code = str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN_ERROR")
    return code, f"{code}: {str(first.get('message') or '')[:300]}"


def _recreate(client: Any, sobject: str, ops: Sequence[rollback.RollbackOp], remap: dict[str, str]) -> list[dict]:
    bodies = [rollback.recreate_payload(o, remap) for o in ops]
    meta = client.describe(sobject)["fields"]
    ext = next((f["name"] for f in meta if f.get("externalId") and all(b.get(f["name"]) for b in bodies)), None)
    records = [{"attributes": {"type": sobject}, **b} for b in bodies]
    results = client.composite_upsert(sobject, ext, records) if ext else client.composite_create(records)
    for o, res in zip(ops, results, strict=True):
        if res.get("success") and res.get("id"):
            remap[o.sf_id[:15]] = str(res["id"])
    return results


def _execute(client: Any, mroot: Any, migration_id: str, ops: Sequence[rollback.RollbackOp], batch: str,
             counts: dict[str, dict[str, int]], remap: dict[str, str]) -> None:
    """Run one chunk of same-action, same-sobject operations and write its ledger lines.

    ``remap`` (old id -> new id of re-created records) grows as records come back, so children
    re-created or restored later point to their parent's new id.
    """
    action, sobject = ops[0].action, ops[0].sobject
    if action == "delete":
        results = client.composite_delete([o.sf_id for o in ops])
    elif action == "recreate":
        results = _recreate(client, sobject, ops, remap)
    else:
        records = []
        for o in ops:
            body = {k: (remap.get(v[:15], v) if isinstance(v, str) and len(v) in (15, 18) else v)
                    for k, v in rollback.restore_payload(o).items() if k not in NOT_WRITABLE}
            records.append({"attributes": {"type": sobject}, "id": o.sf_id, **body})
        results = client.composite_update(records)
    if len(results) != len(ops):
        raise RuntimeError(f"rollback {action} {sobject}: {len(results)} result(s) for {len(ops)} record(s)")
    writers: dict[str, LedgerWriter] = {}
    try:
        for op, res in zip(ops, results, strict=True):
            if op.run_id not in writers:
                writers[op.run_id] = LedgerWriter(mroot, migration_id, op.run_id, rollback.ROLLBACK_PHASE, sobject,
                                                  batch)
            status, error = "ok", None
            if not res.get("success"):
                code, error = _errors(res)
                status = "ok" if action == "delete" and code in GONE_CODES else "failed"
            line = op.ledger_kwargs(status=status, error=error)
            if action == "recreate":  # the new record, and (in before) the id it stands for
                line.update(sf_id=str(res["id"]) if status == "ok" else op.sf_id, created=status == "ok",
                            before={"Id": op.sf_id})
            writers[op.run_id].record(**line)
            key = {"ok": {"delete": "deleted", "recreate": "recreated"}.get(action, "restored"), "failed": "failed"}[status]
            if status == "ok" and error:
                key = "already_gone"
            counts[sobject][key] += 1
    finally:
        for w in writers.values():
            w.close()


def run_rollback(client: Any, mroot: Any, *, run_id: str | None = None, migration_id: str, dry_run: bool,
                 load_order: Sequence[str] = DEFAULT_LOAD_ORDER) -> dict[str, Any]:
    """Plan (and unless ``dry_run`` execute) the rollback of one run, or of every run when ``run_id`` is None.

    Writes ``reports/rollback-<run or migration>/rollback.{json,csv,html}`` (the plan) and returns
    ``{"planned", "counts", "already_done", "failed", "report"}``.
    """
    def exists(sobject: str, ids: list[str]) -> set[str]:
        return existing_ids(client, sobject, ids)

    # file by file: memory follows the run rolled back, not the ledger
    plan = rollback.plan_rollback_from_ledger(mroot, run_id=run_id, migration_id=migration_id, exists=exists,
                                              load_order=load_order)
    rdir = mroot / "reports" / f"rollback-{run_id or migration_id}"
    rollback.write_rollback_json(rdir / "rollback.json", plan)
    rollback.write_rollback_csv(rdir / "rollback.csv", plan)
    report = rollback.write_rollback_html(rdir / "rollback.html", plan, dry_run=dry_run)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if not dry_run:
        stamp = utc_now_iso().replace(":", "").replace("-", "").replace(".", "")
        remap = dict(plan.recreated)
        step = 0
        i = 0
        ops = plan.operations
        while i < len(ops):  # consecutive operations of one action and sobject, in plan order
            j = i
            while j < len(ops) and (ops[j].action, ops[j].sobject) == (ops[i].action, ops[i].sobject):
                j += 1
            for part in chunked(ops[i:j], COMPOSITE_CHUNK):
                step += 1
                _execute(client, mroot, migration_id, list(part), f"rollback-{stamp}-{step:05d}", counts, remap)
            i = j
    failed = sum(c.get("failed", 0) for c in counts.values())
    return {
        "dry_run": dry_run,
        "planned": plan.counts(),
        "counts": {s: dict(c) for s, c in counts.items()},
        "already_done": len(plan.already_done),
        "failed": failed,
        "report": str(report),
    }
