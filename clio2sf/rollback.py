"""Rollback planning from the run ledger: delete what a run created, restore what it updated,
re-create what it deleted.

The plan is computed from the ledger and the org's current state, so it is idempotent and
resumable: ids already gone are skipped (reported as already done), and the rollback's own
ledger lines (phase ``rollback``, written under the *rolled-back* run's id via
:meth:`RollbackOp.ledger_kwargs`) make a second plan for the same run empty.

Deletions run in reverse dependency order (files first, Account last); re-creations follow in
load order (a record a delta deleted comes back from its before-image, with a new Salesforce id
that the ledger line ``recreate`` records next to the old one in ``before["Id"]``); restores
come last, in load order, writing the before-image back (fields that were null get null). A
later rollback that deletes a re-created record deletes it by its new id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from clio2sf import reports
from clio2sf.delta import DEFAULT_LOAD_ORDER
from clio2sf.ledger import updated_with_before

#: sobjects whose rows are removed by deleting the file's ContentDocument (ContentVersion has no delete).
FILE_SOBJECTS = frozenset({"ContentVersion"})
ROLLBACK_PHASE = "rollback"

ExistsFn = Callable[[str, list[str]], Iterable[str]]


@dataclass
class RollbackOp:
    action: str  # delete | recreate | restore
    sobject: str
    sf_id: str  # for a recreate: the id the record had before it was deleted
    source_system_id: str
    run_id: str
    values: dict[str, Any] | None = None  # the before-image for a restore or a recreate

    def ledger_kwargs(self, status: str = "ok", error: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``LedgerWriter(root, mig, self.run_id, "rollback", self.sobject, batch).record``."""
        return {"source_system_id": self.source_system_id, "sf_id": self.sf_id, "operation": self.action,
                "created": False, "before": None, "file_ids": (), "status": status, "error": error}


@dataclass
class RollbackPlan:
    operations: list[RollbackOp]
    already_done: list[tuple[str, str, str, str]] = field(default_factory=list)  # (action, sobject, sf_id, why)
    recreated: dict[str, str] = field(default_factory=dict)  # old id (15) -> id of its re-created record

    @property
    def empty(self) -> bool:
        return not self.operations

    def counts(self) -> dict[str, dict[str, int]]:
        """Dry-run view: sobject → {action: count}, in execution order."""
        out: dict[str, dict[str, int]] = {}
        for op in self.operations:
            out.setdefault(op.sobject, {}).setdefault(op.action, 0)
            out[op.sobject][op.action] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts(), "operations": [asdict(o) for o in self.operations],
                "already_done": [dict(zip(("action", "sobject", "sf_id", "why"), d, strict=True))
                                 for d in self.already_done]}


def _rank(order: Sequence[str]) -> Callable[[str], int]:
    pos = {s: i for i, s in enumerate(order)}
    return lambda s: pos.get(s, len(order))  # unknown sobjects count as leaves: deleted first


def plan_rollback(ledger: pd.DataFrame, *, run_id: str | None = None, exists: ExistsFn | None = None,
                  load_order: Sequence[str] = DEFAULT_LOAD_ORDER) -> RollbackPlan:
    """Plan the rollback of one run (or of every run of the migration when ``run_id`` is None).

    ``ledger`` is :func:`clio2sf.ledger.read_ledger` of the whole migration (other runs are
    needed to keep files a later/earlier run still uses). ``exists(sobject, ids)`` returns the
    ids still present in the org; without it every id is assumed present.
    :func:`plan_rollback_from_ledger` plans the same without holding the whole ledger.
    """
    df = ledger
    ok = df[(df["status"] == "ok") & df["sf_id"].notna()]
    target = ok if run_id is None else ok[ok["run_id"] == run_id]
    work = target[target["phase"] != ROLLBACK_PHASE]
    done_rows = target[target["phase"] == ROLLBACK_PHASE]
    done = {(r.operation, r.object, r.sf_id) for r in done_rows.itertuples(index=False)}
    if run_id is not None:  # a record deleted by any rollback is gone for every run
        all_rb = ok[ok["phase"] == ROLLBACK_PHASE]
        done |= {("delete", r.object, r.sf_id) for r in all_rb.itertuples(index=False) if r.operation == "delete"}
    other_runs = ok[(ok["phase"] != ROLLBACK_PHASE) & ~ok.index.isin(work.index)]
    foreign_files = {f for fs in other_runs["file_ids"] for f in (fs or [])}
    return _plan(work, done, recreated_ids(ok), foreign_files, exists, load_order)


def _ok(line: Mapping[str, Any]) -> bool:
    return line.get("status") == "ok" and line.get("sf_id") is not None


def plan_rollback_from_ledger(root: Any, *, run_id: str | None = None, migration_id: str | None = None,
                              exists: ExistsFn | None = None,
                              load_order: Sequence[str] = DEFAULT_LOAD_ORDER) -> RollbackPlan:
    """:func:`plan_rollback` of ``read_ledger(root)`` (only the lines of ``migration_id`` when given),
    reading the ledger file by file and keeping only what the plan needs: the rolled-back run's lines,
    the rollback lines that name its records, and the files of other runs that are also its files.
    Memory follows the run rolled back, not the ledger (``python -m benchmarks.bench_ledger_tasks``).

    Raises ``ValueError`` when ``run_id`` has no ledger line (of ``migration_id``).
    """
    from clio2sf.ledger import iter_lines, ledger_files, lines_frame

    def ours(line: Mapping[str, Any]) -> bool:
        return migration_id is None or str(line.get("migration_id")) == str(migration_id)

    def other_lines(phase: str | None = None, skip_phase: str | None = None) -> Iterable[dict[str, Any]]:
        for run_dir in sorted({f.parent.parent.parent.name for f in ledger_files(root, None, phase)}):
            if run_dir == run_id:
                continue
            for line in iter_lines(root, run_dir, phase):
                if ours(line) and line.get("phase") != skip_phase:
                    yield line

    seen = False
    work: list[dict[str, Any]] = []
    recreates: list[dict[str, Any]] = []
    done: set[tuple[str, str, str]] = set()
    for line in iter_lines(root, run_id):  # the run rolled back (every run when None)
        if not ours(line):
            continue
        seen = True
        if not _ok(line):
            continue
        if line["phase"] != ROLLBACK_PHASE:
            work.append(line)
            continue
        done.add((line.get("operation"), line["object"], line["sf_id"]))
        if line.get("operation") == "recreate":
            recreates.append(line)
    if run_id is not None and not seen:
        raise ValueError(f"rollback: run {run_id!r} has no ledger lines under {root / 'ledger'}")
    foreign_files: set[str] = set()
    if run_id is not None:
        for line in other_lines(ROLLBACK_PHASE):  # re-created records, any rollback
            if _ok(line) and line.get("operation") == "recreate":
                recreates.append(line)
    recreated = recreated_ids(lines_frame(recreates))
    if run_id is not None:
        # a record deleted by any rollback is gone for every run: those of this run's records (or their new ids)
        names = {str(r["sf_id"]) for r in work} | set(recreated.values())
        names |= {str(f) for r in work for f in (r.get("file_ids") or ())}
        for line in other_lines(ROLLBACK_PHASE):
            if _ok(line) and line.get("operation") == "delete" and str(line["sf_id"]) in names:
                done.add(("delete", line["object"], line["sf_id"]))
        files = {f for r in work for f in (r.get("file_ids") or ())}
        if files:  # files another run also uses are kept
            for line in other_lines(skip_phase=ROLLBACK_PHASE):
                if _ok(line):
                    foreign_files.update(f for f in (line.get("file_ids") or ()) if f in files)
    return _plan(lines_frame(work), done, recreated, foreign_files, exists, load_order)


def _plan(work: pd.DataFrame, done: set[tuple[str, str, str]], recreated: dict[str, str], foreign_files: set[str],
          exists: ExistsFn | None, load_order: Sequence[str]) -> RollbackPlan:
    """The plan from the rolled-back scope's own successful writes (``work``), the rollback lines already
    done, the re-created ids and the file ids other runs also hold."""
    rank = _rank(load_order)
    ops: list[RollbackOp] = []
    skipped: list[tuple[str, str, str, str]] = []
    created = work[work["created"]]
    deleted_keys: set[tuple[str, str]] = set()

    def add_delete(sobject: str, sf_id: str, ssid: str, rid: str) -> None:
        if (sobject, sf_id) in deleted_keys:
            return
        deleted_keys.add((sobject, sf_id))
        if ("delete", sobject, sf_id) in done:
            skipped.append(("delete", sobject, sf_id, "deleted by an earlier rollback"))
            return
        ops.append(RollbackOp("delete", sobject, sf_id, ssid, rid))

    for r in created.itertuples(index=False):
        files = list(r.file_ids or [])
        if r.object in FILE_SOBJECTS:
            for doc in files:
                if doc in foreign_files:
                    skipped.append(("delete", "ContentDocument", doc, "file also used by another run: kept"))
                else:
                    add_delete("ContentDocument", doc, r.source_system_id, r.run_id)
            continue
        add_delete(r.object, recreated.get(str(r.sf_id)[:15], r.sf_id), r.source_system_id, r.run_id)
        for doc in files:
            if doc not in foreign_files:
                add_delete("ContentDocument", doc, r.source_system_id, r.run_id)

    recreates = []
    created_here = {(r.object, str(r.sf_id)[:15]) for r in created.itertuples(index=False)}
    for r in work[(work["operation"] == "delete") & work["before"].map(lambda b: isinstance(b, dict))].itertuples(
            index=False):
        if (r.object, str(r.sf_id)[:15]) in created_here:
            continue  # created in the same scope: it stays deleted
        if r.object in FILE_SOBJECTS:
            skipped.append(("recreate", r.object, r.sf_id, "file content is not kept by the ledger: not re-created"))
            continue
        if str(r.sf_id)[:15] in recreated:
            skipped.append(("recreate", r.object, r.sf_id, "re-created by an earlier rollback"))
            continue
        recreates.append(RollbackOp("recreate", r.object, r.sf_id, r.source_system_id, r.run_id, dict(r.before)))

    restores = []
    deletions = work[work["operation"] == "delete"]
    deleted_here = {(r.object, r.sf_id) for r in deletions.itertuples(index=False)}
    for r in updated_with_before(work).itertuples(index=False):
        if (r.object, r.sf_id) in deleted_here:
            continue  # its before-image is a recreate's, not a restore's
        if (r.object, r.sf_id) in deleted_keys:
            continue  # created then updated in the same scope: the delete wins
        key = ("restore", r.object, r.sf_id)
        if key in done:
            skipped.append(("restore", r.object, r.sf_id, "restored by an earlier rollback"))
            continue
        restores.append(RollbackOp("restore", r.object, r.sf_id, r.source_system_id, r.run_id, dict(r.before)))

    if exists is not None:
        ops, gone = _present(ops, exists)
        restores, gone_r = _present(restores, exists)
        skipped += [(o.action, o.sobject, o.sf_id, "no longer in Salesforce: already done") for o in gone + gone_r]
        still_there, recreates = _present(recreates, exists)
        skipped += [(o.action, o.sobject, o.sf_id, "still in Salesforce: nothing to re-create") for o in still_there]
    ops.sort(key=lambda o: (-rank(o.sobject), o.sobject, o.sf_id))
    recreates.sort(key=lambda o: (rank(o.sobject), o.sobject, o.sf_id))
    restores.sort(key=lambda o: (rank(o.sobject), o.sobject, o.sf_id))
    return RollbackPlan(ops + recreates + restores, skipped, recreated)


def recreated_ids(ledger: pd.DataFrame) -> dict[str, str]:
    """Old id (15 characters) -> new id, from the successful ``recreate`` lines of any rollback."""
    rows = ledger[(ledger["phase"] == ROLLBACK_PHASE) & (ledger["operation"] == "recreate")
                  & (ledger["status"] == "ok") & ledger["sf_id"].notna()]
    return {str(r.before["Id"])[:15]: str(r.sf_id) for r in rows.itertuples(index=False)
            if isinstance(r.before, dict) and r.before.get("Id")}


def _present(ops: list[RollbackOp], exists: ExistsFn) -> tuple[list[RollbackOp], list[RollbackOp]]:
    by_obj: dict[str, list[RollbackOp]] = {}
    for o in ops:
        by_obj.setdefault(o.sobject, []).append(o)
    keep, gone = [], []
    for sobject, group in by_obj.items():
        present = {str(i)[:15] for i in exists(sobject, [o.sf_id for o in group])}
        for o in group:
            (keep if o.sf_id[:15] in present else gone).append(o)
    return keep, gone


# ------------------------------------------------------------------ reports

CSV_HEADERS = ["order", "action", "sobject", "sf_id", "source_system_id", "run_id", "fields_restored"]


def write_rollback_json(path: Any, plan: RollbackPlan) -> Any:
    return reports.write_json(path, plan.to_json())


def write_rollback_csv(path: Any, plan: RollbackPlan) -> Any:
    rows = [[i, o.action, o.sobject, o.sf_id, o.source_system_id, o.run_id,
             ";".join(sorted(o.values)) if o.values else ""] for i, o in enumerate(plan.operations, 1)]
    return reports.write_csv(path, CSV_HEADERS, rows)


def rollback_html(plan: RollbackPlan, title: str = "Rollback plan", dry_run: bool = True) -> str:
    n = len(plan.operations)
    head = reports.banner(("Dry run: " if dry_run else "") + (f"{n} operation(s) to roll back" if n
                          else "Nothing to roll back"), "warn" if n else "ok")
    counts = plan.counts()
    summary = reports.table(["Step", "Object", "Action", "Count"],
                            [[i, s, a, c] for i, (s, acts) in enumerate(counts.items(), 1) for a, c in acts.items()],
                            numeric=[0, 3])
    done = Counter((a, s, why) for a, s, _, why in plan.already_done)
    done_tbl = reports.table(["Action", "Object", "Why skipped", "Count"],
                             [[a, s, why, c] for (a, s, why), c in sorted(done.items())], numeric=[3])
    details = reports.table(["#", "Action", "Object", "Salesforce Id", "Record", "Run", "Fields restored"],
                            [[i, o.action, o.sobject, o.sf_id, o.source_system_id, o.run_id,
                              ", ".join(sorted(o.values)) if o.values else ""]
                             for i, o in enumerate(plan.operations, 1)], numeric=[0])
    body = head + "<h2>Operations by object</h2>" + summary
    body += "<h2>Already done / kept</h2>" + done_tbl + "<h2>Operations</h2>" + details
    return reports.page(title, body, subtitle="Deletes in reverse dependency order, then re-creations and "
                        "before-image restores in load order")


def write_rollback_html(path: Any, plan: RollbackPlan, dry_run: bool = True) -> Any:
    return reports.write_text(path, rollback_html(plan, dry_run=dry_run))


def recreate_payload(op: RollbackOp, remap: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The create body that brings back ``op``'s record; ids of re-created records point to their new ids."""
    if op.action != "recreate" or op.values is None:
        raise ValueError(f"{op.sobject} {op.sf_id}: not a recreate operation")
    remap = remap or {}
    return {k: (remap.get(v[:15], v) if isinstance(v, str) and len(v) in (15, 18) else v)
            for k, v in op.values.items() if k != "Id" and v is not None}


def restore_payload(op: RollbackOp, present_fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The update body that restores ``op``'s before-image (None means set null)."""
    if op.action != "restore" or op.values is None:
        raise ValueError(f"{op.sobject} {op.sf_id}: not a restore operation")
    body = dict(op.values)
    if present_fields is not None:
        body = {k: v for k, v in body.items() if k in present_fields}
    return {"Id": op.sf_id, **body}
