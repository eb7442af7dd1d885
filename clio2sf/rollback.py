"""Rollback planning from the run ledger: delete what a run created, restore what it updated,
re-create what it deleted.

The plan is computed from the ledger and the org's current state, so it is idempotent and
resumable: ids already gone are skipped (reported as already done), and the rollback's own
ledger lines (phase ``rollback``, written under the *rolled-back* run's id via
:meth:`RollbackOp.ledger_kwargs`) make a second plan for the same run empty.

Re-creations and restores run first, object by object in load order, each object's re-creations
before its restores (a record a delta deleted comes back from its before-image, with a new
Salesforce id that the ledger line ``recreate`` records next to the old one in ``before["Id"]``; a
restore writes the before-image back: fields that were null get null, lookups to re-created records
get their new ids). So a Contact a delta detached from an Account it deleted is back under the
re-created Account before the AccountContactRelations that went with that Account are re-created
(Salesforce refuses a relation to a private contact). Deletions come last, in reverse
dependency order (files first, Account last). Deleting last matters: Salesforce deletes an
Account's Contacts (and a Contact's activities...) with it, so a Contact the run moved under an
Account it created must get its old AccountId back *before* that Account goes, or the delete
would take it to the Recycle Bin too. Files go first: a ContentDocument delete takes the file's
ContentDocumentLinks with it, and a ContentNote is its ContentDocument (one Id), so a link (when
``link_documents`` names its document) or a note whose ContentDocument this rollback deletes gets no delete
of its own: it is listed as :data:`GOES_WITH_DOCUMENT` (cascaded), not sent to come back already gone. A later rollback that deletes a re-created record deletes
it by its new id. A deleted record that goes with a parent this rollback deletes (:data:`WITH_PARENT`: an
AccountContactRelation whose Contact or Account the migration created, when the whole migration is rolled
back) is not re-created: it would only go with that parent.

A batch whose task died and was not run again (its retries ran out) has no ledger file, only its journal: the
records it created are deleted as any (the journal's ``ok`` lines), and the ones it updated are restored to the
before-images it journalled before its first write (read with ``journal_images``:
:func:`clio2sf.ledger.file_lines`); a Contact's restore also deletes the direct AccountContactRelation Salesforce
made when the batch moved the person (:func:`restore_op`). A batch with a ledger file is planned from it (the
ledger wins; a record's earliest image is restored once).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from clio2sf import reports
from clio2sf.delta import DEFAULT_LOAD_ORDER
from clio2sf.ledger import RELATIONS_BEFORE, updated_with_before

#: sobjects whose rows are removed by deleting the file's ContentDocument (ContentVersion has no delete).
FILE_SOBJECTS = frozenset({"ContentVersion"})
#: Records Salesforce deletes with a parent (field -> the parent's sobject) that it also makes by itself: the
#: direct AccountContactRelation of a Contact we created, which a delta may delete (ledgered, a before-image) once
#: it is indirect. Such a record is not re-created when this rollback deletes its parent: it would go with it.
WITH_PARENT: dict[str, dict[str, str]] = {"AccountContactRelation": {"AccountId": "Account", "ContactId": "Contact"}}
#: Why such a record is not re-created (``already_done``).
GOES_WITH_PARENT = "its Contact or Account is deleted by this rollback: not re-created, it would go with it"
ROLLBACK_PHASE = "rollback"
#: Why a link or a note gets no delete of its own: its ContentDocument's delete takes it along.
GOES_WITH_DOCUMENT = "goes with its ContentDocument, deleted by this rollback: cascaded"
#: The file children a ContentDocument delete takes along (a ContentNote is its ContentDocument: the same Id).
DOCUMENT_CHILDREN = ("ContentDocumentLink", "ContentNote")

ExistsFn = Callable[[str, list[str]], Iterable[str]]
#: ContentDocumentLink ids -> {id (15 characters): its ContentDocumentId}, for the links still in the org.
LinkDocsFn = Callable[[list[str]], Mapping[str, str]]


@dataclass
class RollbackOp:
    action: str  # delete | recreate | restore
    sobject: str
    sf_id: str  # for a recreate: the id the record had before it was deleted
    source_system_id: str
    run_id: str
    values: dict[str, Any] | None = None  # the before-image for a restore or a recreate
    #: a Contact restored from the journal of a batch that died: the Ids (15 characters) of the
    #: AccountContactRelations it had before the batch (:func:`restore_op`)
    relations: list[str] | None = None

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


def restore_op(sobject: str, sf_id: str, ssid: str, run_id: str, before: Mapping[str, Any]) -> RollbackOp:
    """The restore of a record to its before-image. A Contact's image from the journal of a batch that died (read
    with ``journal_images``: :func:`clio2sf.ledger.file_lines`) names the AccountContactRelations it had before
    the batch (:data:`clio2sf.ledger.RELATIONS_BEFORE`): the op's ``relations``, so the direct one Salesforce made
    when the batch moved the person (which the batch would have ledgered as created, had it completed) is deleted
    after the restore (:mod:`clio2sf.rollback_run`)."""
    values = dict(before)
    relations = values.pop(RELATIONS_BEFORE, None)
    return RollbackOp("restore", sobject, sf_id, ssid, run_id, values,
                      relations=[str(i) for i in relations] if isinstance(relations, list) else None)


def _rank(order: Sequence[str]) -> Callable[[str], int]:
    pos = {s: i for i, s in enumerate(order)}
    return lambda s: pos.get(s, len(order))  # unknown sobjects count as leaves: deleted first


def _delete_rank(order: Sequence[str]) -> Callable[[str], int]:
    """:func:`_rank` for the deletes: ContentDocument before everything (whatever the load order): its delete
    takes its links and its note along, which then need no delete of their own."""
    rank = _rank(order)
    return lambda s: len(order) + 1 if s == "ContentDocument" else rank(s)


def _goes_with_parent(sobject: str, before: Any, deleted: Callable[[str, str], bool]) -> bool:
    """Whether a record deleted in the scope (``before``, its before-image) would go with a parent this rollback
    deletes (:data:`WITH_PARENT`; ``deleted(sobject, id)``: created in the scope, by its 15-character id, or the
    id a delete of the plan names): re-creating it would make a record only for the parent's delete to take it
    along (or fail, the parent already gone)."""
    if not isinstance(before, Mapping):
        return False
    return any(before.get(f) and deleted(parent, str(before[f]))
               for f, parent in WITH_PARENT.get(sobject, {}).items())


def plan_rollback(ledger: pd.DataFrame, *, run_id: str | None = None, exists: ExistsFn | None = None,
                  load_order: Sequence[str] = DEFAULT_LOAD_ORDER,
                  link_documents: LinkDocsFn | None = None) -> RollbackPlan:
    """Plan the rollback of one run (or of every run of the migration when ``run_id`` is None).

    ``ledger`` is :func:`clio2sf.ledger.read_ledger` of the whole migration (other runs are
    needed to keep files a later/earlier run still uses), read with ``journal_images=True`` (as
    :func:`plan_rollback_from_ledger` reads it) for the updates of a batch whose task died to be restored. ``exists(sobject, ids)`` returns the
    ids still present in the org; without it every id is assumed present. ``link_documents`` (the org's
    links and their documents) lets a link whose ContentDocument the plan deletes go with it
    (:data:`GOES_WITH_DOCUMENT`); without it links are deleted one by one (checked with ``exists``).
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
    return _plan(work, done, recreated_ids(ok), foreign_files, exists, load_order, link_documents)


def _ok(line: Mapping[str, Any]) -> bool:
    return line.get("status") == "ok" and line.get("sf_id") is not None


def _run_lines(root: Any, run_id: str | None, migration_id: str | None) -> Iterator[dict[str, Any]]:
    """The written (ok) ledger lines of run ``run_id`` (every run when None) of ``migration_id`` (any when
    None), file by file; raises ``ValueError`` when ``run_id`` has no line of it at all."""
    from clio2sf.ledger import iter_lines

    seen = False
    for line in iter_lines(root, run_id, journal_images=True):  # a dead batch's updates: its journalled images
        if migration_id is not None and str(line.get("migration_id")) != str(migration_id):
            continue
        seen = True
        if _ok(line):
            yield line
    if run_id is not None and not seen:
        raise ValueError(f"rollback: run {run_id!r} has no ledger lines under {root / 'ledger'}")


def plan_rollback_from_ledger(root: Any, *, run_id: str | None = None, migration_id: str | None = None,
                              exists: ExistsFn | None = None,
                              load_order: Sequence[str] = DEFAULT_LOAD_ORDER,
                              link_documents: LinkDocsFn | None = None) -> RollbackPlan:
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

    work: list[dict[str, Any]] = []
    recreates: list[dict[str, Any]] = []
    done: set[tuple[str, str, str]] = set()
    for line in _run_lines(root, run_id, migration_id):  # the run rolled back (every run when None)
        if line["phase"] != ROLLBACK_PHASE:
            work.append(line)
            continue
        done.add((line.get("operation"), line["object"], line["sf_id"]))
        if line.get("operation") == "recreate":
            recreates.append(line)
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
    return _plan(lines_frame(work), done, recreated, foreign_files, exists, load_order, link_documents)


def _plan(work: pd.DataFrame, done: set[tuple[str, str, str]], recreated: dict[str, str], foreign_files: set[str],
          exists: ExistsFn | None, load_order: Sequence[str], link_documents: LinkDocsFn | None = None) -> RollbackPlan:
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
    # one per record: a batch's journal says what its ledger file says until the journal is removed
    gone = work[(work["operation"] == "delete") & work["before"].map(lambda b: isinstance(b, dict))]
    for r in gone.drop_duplicates(["object", "sf_id"], keep="first").itertuples(index=False):
        if (r.object, str(r.sf_id)[:15]) in created_here:
            continue  # created in the same scope: it stays deleted
        if r.object in FILE_SOBJECTS:
            skipped.append(("recreate", r.object, r.sf_id, "file content is not kept by the ledger: not re-created"))
            continue
        if str(r.sf_id)[:15] in recreated:
            skipped.append(("recreate", r.object, r.sf_id, "re-created by an earlier rollback"))
            continue
        if _goes_with_parent(r.object, r.before,
                             lambda obj, i: (obj, i[:15]) in created_here or (obj, i) in deleted_keys):
            skipped.append(("recreate", r.object, r.sf_id, GOES_WITH_PARENT))
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
        restores.append(restore_op(r.object, r.sf_id, r.source_system_id, r.run_id, r.before))

    link_docs: dict[str, str] = {}
    if link_documents is not None:  # the org's links, with their documents: also their existence check
        links = [o for o in ops if o.sobject == "ContentDocumentLink"]
        ops = [o for o in ops if o.sobject != "ContentDocumentLink"]
        link_docs = {str(k)[:15]: str(v)[:15] for k, v in link_documents([o.sf_id for o in links]).items()} \
            if links else {}
        skipped += [(o.action, o.sobject, o.sf_id, "no longer in Salesforce: already done") for o in links
                    if o.sf_id[:15] not in link_docs]
        ops += [o for o in links if o.sf_id[:15] in link_docs]
    if exists is not None:
        checked, unchecked = ([o for o in ops if o.sobject != "ContentDocumentLink"],
                              [o for o in ops if o.sobject == "ContentDocumentLink"]) if link_documents else (ops, [])
        ops, gone = _present(checked, exists)
        ops += unchecked
        restores, gone_r = _present(restores, exists)
        skipped += [(o.action, o.sobject, o.sf_id, "no longer in Salesforce: already done") for o in gone + gone_r]
        still_there, recreates = _present(recreates, exists)
        skipped += [(o.action, o.sobject, o.sf_id, "still in Salesforce: nothing to re-create") for o in still_there]
    docs = {o.sf_id[:15] for o in ops if o.sobject == "ContentDocument"}
    if docs:  # what a ContentDocument delete of this plan takes along: no delete of its own
        def cascades(o: RollbackOp) -> bool:
            if o.sobject == "ContentNote":
                return o.sf_id[:15] in docs
            return o.sobject == "ContentDocumentLink" and link_docs.get(o.sf_id[:15]) in docs

        skipped += [(o.action, o.sobject, o.sf_id, GOES_WITH_DOCUMENT) for o in ops if cascades(o)]
        ops = [o for o in ops if not cascades(o)]
    drank = _delete_rank(load_order)
    ops.sort(key=lambda o: (-drank(o.sobject), o.sobject, o.sf_id))
    # per object in load order: its re-creations, then its restores (a Contact gets its Account back before the
    # AccountContactRelations that a delete took along are re-created)
    back = sorted(recreates + restores, key=lambda o: (rank(o.sobject), o.sobject, o.action != "recreate", o.sf_id))
    return RollbackPlan(back + ops, skipped, recreated)


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


#: Operations the HTML report lists one by one; a larger plan is summarised per object (the CSV lists them all).
HTML_INLINE_MAX = 10_000


def csv_row(order: int, o: RollbackOp) -> list[Any]:
    """One row of ``rollback.csv`` (:data:`CSV_HEADERS`)."""
    return [order, o.action, o.sobject, o.sf_id, o.source_system_id, o.run_id,
            ";".join(sorted(o.values)) if o.values else ""]


def write_rollback_csv(path: Any, plan: RollbackPlan) -> Any:
    return reports.write_csv(path, CSV_HEADERS, [csv_row(i, o) for i, o in enumerate(plan.operations, 1)])


def rollback_html(plan: RollbackPlan, title: str = "Rollback plan", dry_run: bool = True) -> str:
    done = Counter((a, s, why) for a, s, _, why in plan.already_done)
    return rollback_page(len(plan.operations), plan.counts(), done, plan.operations, title=title, dry_run=dry_run)


#: Columns of an executed rollback's outcome (:func:`rollback_page`), as :func:`clio2sf.rollback_run.run_rollback`
#: counts them per object.
OUTCOME_KEYS = ("deleted", "cascaded", "recreated", "restored", "found_again", "already_gone", "kept_direct",
                "failed")


def rollback_page(n: int, counts: Mapping[str, Mapping[str, int]], done: Mapping[tuple[str, str, str], int],
                  operations: Sequence[RollbackOp] | None, title: str = "Rollback plan", dry_run: bool = True,
                  outcome: Mapping[str, Mapping[str, int]] | None = None, error: str | None = None) -> str:
    """The HTML report of a plan of ``n`` operations: ``counts`` (sobject -> {action: n}, in plan order), ``done``
    ((action, sobject, why) -> n) and the ``operations`` listed one by one, or, when None (a plan of more than
    :data:`HTML_INLINE_MAX`), a pointer to ``rollback.csv`` beside the page, which lists them all. ``outcome``
    (sobject -> {:data:`OUTCOME_KEYS`: n}), once the rollback was executed, is what it did (``error``: the
    exception it stopped on)."""
    head = reports.banner(("Dry run: " if dry_run else "") + (f"{n} operation(s) to roll back" if n
                          else "Nothing to roll back"), "warn" if n else "ok")
    if outcome is not None:
        failed = sum(c.get("failed", 0) for c in outcome.values())
        head = reports.banner("Executed" + (f": stopped on {error}" if error else "") + (
            f", {failed} failed" if failed else ""), "bad" if error or failed else "ok") + head
        head += "<h2>Outcome by object</h2>" + reports.table(
            ["Object", *OUTCOME_KEYS], [[s, *(c.get(k, 0) for k in OUTCOME_KEYS)] for s, c in outcome.items()],
            numeric=list(range(1, len(OUTCOME_KEYS) + 1)))
    summary = reports.table(["Step", "Object", "Action", "Count"],
                            [[i, s, a, c] for i, (s, acts) in enumerate(counts.items(), 1) for a, c in acts.items()],
                            numeric=[0, 3])
    done_tbl = reports.table(["Action", "Object", "Why skipped", "Count"],
                             [[a, s, why, c] for (a, s, why), c in sorted(done.items())], numeric=[3])
    if operations is not None:
        details = reports.table(["#", "Action", "Object", "Salesforce Id", "Record", "Run", "Fields restored"],
                                [[i, o.action, o.sobject, o.sf_id, o.source_system_id, o.run_id,
                                  ", ".join(sorted(o.values)) if o.values else ""]
                                 for i, o in enumerate(operations, 1)], numeric=[0])
    else:
        details = (f'<p class="muted">{n:,} operations: too many to list on this page. '
                   '<a href="rollback.csv">rollback.csv</a> lists every one, in this order '
                   '(the counts per object are above).</p>')
    body = head + "<h2>Operations by object</h2>" + summary
    body += "<h2>Already done / kept</h2>" + done_tbl + "<h2>Operations</h2>" + details
    return reports.page(title, body, subtitle="Re-creations and before-image restores in load order, then "
                        "deletes in reverse dependency order")


def write_rollback_html(path: Any, plan: RollbackPlan, dry_run: bool = True) -> Any:
    return reports.write_text(path, rollback_html(plan, dry_run=dry_run))


def recreate_payload(op: RollbackOp, remap: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The create body that brings back ``op``'s record; ids of re-created records point to their new ids."""
    if op.action != "recreate" or op.values is None:
        raise ValueError(f"{op.sobject} {op.sf_id}: not a recreate operation")
    remap = {} if remap is None else remap  # not ``remap or {}``: an IdMap's len() counts its table
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


# ------------------------------------------------------------------ streamed planning (a whole run)


class IdMap(MutableMapping[str, str]):
    """Old id (15 characters) -> id of its re-created record, kept in an SQLite table, not in memory: a rollback
    that re-creates (or deletes by their new ids) every record of a large run would otherwise hold one entry a
    record (~260 bytes; 1.2 GB for 4.5M). ``db`` (with ``table``) is a connection the map shares, e.g. the plan's
    index (:class:`_Scope`); without it the map makes its own file in a temporary directory of this process on
    its first entry (an empty map makes none) and removes it on :meth:`close` (or when collected).

    A mapping as ``dict`` is: ``get``, ``in``, ``[]``, ``len``, iteration in key order, ``==`` with a dict;
    :meth:`update` from another :class:`IdMap` copies it row by row."""

    def __init__(self, db: Any = None, table: str = "idmap") -> None:
        import weakref

        self._db, self._table, self._dir = db, table, None
        self._cleanup = weakref.finalize(self, lambda: None)
        if db is not None:
            db.execute(f"CREATE TABLE IF NOT EXISTS {table}(old15 TEXT PRIMARY KEY, new_id TEXT) WITHOUT ROWID")
            self._empty = db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None
        else:
            self._empty = True

    def _open(self) -> Any:
        if self._db is None:
            import os
            import shutil
            import sqlite3
            import tempfile
            import weakref

            self._dir = tempfile.mkdtemp(prefix="clio2sf-rollback-ids-")
            db = sqlite3.connect(os.path.join(self._dir, "ids.sqlite"))
            db.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-2000; "
                             f"CREATE TABLE {self._table}(old15 TEXT PRIMARY KEY, new_id TEXT) WITHOUT ROWID;")
            self._db = db

            def drop(db: Any = db, folder: str = self._dir) -> None:
                db.close()
                shutil.rmtree(folder, ignore_errors=True)

            self._cleanup = weakref.finalize(self, drop)
        return self._db

    def close(self) -> None:
        """Remove the map's own file (a map on a shared connection leaves it as it is)."""
        self._cleanup()

    def __getitem__(self, key: str) -> str:
        row = None if self._empty else self._db.execute(
            f"SELECT new_id FROM {self._table} WHERE old15 = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def get(self, key: str, default: Any = None) -> Any:  # the hot path: one look-up, no exception
        if self._empty:
            return default
        row = self._db.execute(f"SELECT new_id FROM {self._table} WHERE old15 = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __setitem__(self, key: str, value: str) -> None:
        self._open().execute(f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?)", (key, value))
        self._empty = False

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._db.execute(f"DELETE FROM {self._table} WHERE old15 = ?", (key,))
        self._empty = self._db.execute(f"SELECT 1 FROM {self._table} LIMIT 1").fetchone() is None

    def __bool__(self) -> bool:  # without a count of the table
        return not self._empty

    def __len__(self) -> int:
        return 0 if self._empty else self._db.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()[0]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.items())

    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        """The entries in key order, read from the table a row at a time."""
        if self._empty:
            return iter(())
        return iter(self._db.execute(f"SELECT old15, new_id FROM {self._table} ORDER BY old15"))

    def update(self, other: Any = (), /, **kw: str) -> None:  # type: ignore[override]
        pairs = other.items() if isinstance(other, Mapping) else other
        db, batch = None, []
        for pair in itertools.chain(pairs, kw.items()):
            batch.append(tuple(pair))
            if len(batch) >= STREAM_CHUNK:
                db = db or self._open()
                db.executemany(f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?)", batch)
                self._empty, batch = False, []
        if batch:
            self._open().executemany(f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?)", batch)
            self._empty = False

    def __repr__(self) -> str:
        return f"IdMap({len(self)} entries)"


#: Operations per step of :func:`iter_rollback`: one existence check, one spool file at most.
STREAM_CHUNK = 2_000
_ORDER = "COALESCE(at, '~'), run_id, phase, obj, batch, seq"  # lines_frame's order (a missing time last)
_ORDER_LAST_FIRST = "COALESCE(at, '~') DESC, run_id DESC, phase DESC, obj DESC, batch DESC, seq DESC"


class _Scope:
    """The ledger lines a rollback plan reads, indexed in an SQLite file of the task's own temporary directory
    (deleted on :meth:`close`; nothing else reads it): the rolled-back scope's successful writes, the rollback
    lines done, and the file ids other runs hold. Memory: SQLite's page cache, whatever the run's size."""

    def __init__(self, root: Any, run_id: str | None, migration_id: str | None) -> None:
        import os
        import sqlite3
        import tempfile

        self._dir = tempfile.mkdtemp(prefix="clio2sf-rollback-")
        self.db = sqlite3.connect(os.path.join(self._dir, "scope.sqlite"))
        try:
            self._read(root, run_id, migration_id)
        except BaseException:
            self.close()
            raise

    def _read(self, root: Any, run_id: str | None, migration_id: str | None) -> None:
        from clio2sf.ledger import iter_lines, ledger_files

        self.db.executescript("""
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE; PRAGMA cache_size=-16000;
            CREATE TABLE raw(seq INTEGER PRIMARY KEY, obj, sf_id, sf15, ssid, run_id, created, operation, before,
                             files, at, phase, batch);
            CREATE TABLE work(k INTEGER PRIMARY KEY, obj, sf_id, sf15, ssid, run_id, created, operation, before, files);
            CREATE TABLE done(op, obj, sf_id);
            CREATE TABLE other_files(doc);
            CREATE TABLE recreates(seq INTEGER PRIMARY KEY, old15, new_id, at, run_id, phase, obj, batch);
        """)

        def ours(line: Mapping[str, Any]) -> bool:
            return migration_id is None or str(line.get("migration_id")) == str(migration_id)

        def other_lines(phase: str | None = None) -> Iterable[dict[str, Any]]:
            for run_dir in sorted({f.parent.parent.parent.name for f in ledger_files(root, None, phase)}):
                if run_dir != run_id:
                    yield from (line for line in iter_lines(root, run_dir, phase) if ours(line))

        def add_recreate(line: Mapping[str, Any]) -> None:
            before = line.get("before")
            if isinstance(before, dict) and before.get("Id"):
                self.db.execute("INSERT INTO recreates(old15, new_id, at, run_id, phase, obj, batch) "
                                "VALUES (?,?,?,?,?,?,?)", (str(before["Id"])[:15], str(line["sf_id"]), line.get("at"),
                                                          line.get("run_id"), line.get("phase"), line.get("object"),
                                                          line.get("batch")))

        rows: list[tuple[Any, ...]] = []
        for line in _run_lines(root, run_id, migration_id):  # one file at a time
            if line["phase"] != ROLLBACK_PHASE:
                before, files = line.get("before"), line.get("file_ids") or None
                rows.append((line["object"], line["sf_id"], str(line["sf_id"])[:15], line.get("source_system_id"),
                             line.get("run_id"), 1 if line.get("created") else 0, line.get("operation"),
                             json.dumps(before) if isinstance(before, dict) else None,
                             json.dumps(list(files)) if files else None, line.get("at"), line.get("phase"),
                             line.get("batch")))
                if len(rows) >= STREAM_CHUNK:
                    self._raw(rows)
                continue
            self.db.execute("INSERT INTO done VALUES (?,?,?)", (line.get("operation"), line["object"], line["sf_id"]))
            if line.get("operation") == "recreate":
                add_recreate(line)
        self._raw(rows)
        if run_id is not None:
            for line in other_lines(ROLLBACK_PHASE):  # any rollback: re-created records, and deletions
                if _ok(line) and line.get("operation") == "recreate":
                    add_recreate(line)
                if _ok(line) and line.get("operation") == "delete":  # gone for every run
                    self.db.execute("INSERT INTO done VALUES ('delete',?,?)", (line["object"], line["sf_id"]))
            if self.db.execute("SELECT 1 FROM raw WHERE files IS NOT NULL LIMIT 1").fetchone():
                docs: list[tuple[str]] = []
                for line in other_lines():  # files another run also uses are kept
                    if line.get("phase") != ROLLBACK_PHASE and _ok(line):
                        docs += [(f,) for f in (line.get("file_ids") or ())]
                        if len(docs) >= STREAM_CHUNK:
                            self.db.executemany("INSERT INTO other_files VALUES (?)", docs)
                            docs = []
                self.db.executemany("INSERT INTO other_files VALUES (?)", docs)
        self.db.executescript(f"""
            INSERT INTO work(obj, sf_id, sf15, ssid, run_id, created, operation, before, files)
                SELECT obj, sf_id, sf15, ssid, run_id, created, operation, before, files FROM raw ORDER BY {_ORDER};
            DROP TABLE raw;
            CREATE INDEX work_obj ON work(obj, sf_id);
            CREATE INDEX work_obj15 ON work(obj, sf15, created);
            CREATE INDEX done_key ON done(op, obj, sf_id);
            CREATE INDEX other_files_doc ON other_files(doc);
        """)
        # old id (15) -> new id, the last recreate line in ledger order winning (as recreated_ids): a table of this
        # file, looked up by the plan's queries (a join), not a dict of every re-created record
        self.db.executescript(f"""
            CREATE TABLE remap(old15 TEXT PRIMARY KEY, new_id TEXT) WITHOUT ROWID;
            INSERT INTO remap SELECT old15, new_id FROM (
                SELECT old15, new_id, ROW_NUMBER() OVER (PARTITION BY old15 ORDER BY {_ORDER_LAST_FIRST}) AS nth
                FROM recreates) WHERE nth = 1;
        """)
        self.recreated = IdMap(self.db, "remap")

    def _raw(self, rows: list[tuple[Any, ...]]) -> None:
        self.db.executemany("INSERT INTO raw(obj, sf_id, sf15, ssid, run_id, created, operation, before, files, at, "
                            "phase, batch) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        rows.clear()

    def close(self) -> None:
        import shutil

        self.db.close()
        shutil.rmtree(self._dir, ignore_errors=True)


Step = tuple[list[RollbackOp], list[tuple[str, str, str, str]]]


def iter_rollback(root: Any, *, run_id: str | None = None, migration_id: str | None = None,
                  exists: ExistsFn | None = None, load_order: Sequence[str] = DEFAULT_LOAD_ORDER,
                  recreated: MutableMapping[str, str] | None = None, chunk: int | None = None,
                  link_documents: LinkDocsFn | None = None) -> Iterable[Step]:
    """The plan of :func:`plan_rollback_from_ledger`, a step at a time: ``(operations, already_done)`` of at most
    ``chunk`` (default :data:`STREAM_CHUNK`) operations of one action and one sobject, in the plan's order
    (per object in load order its re-creations, then its restores; then deletes per object in reverse load
    order, ContentDocument first; each object's by Salesforce id).

    The operations are the plan's, in its order. ``already_done`` holds the same entries as the plan's, in the
    order of the steps (the plan lists them by cause). The ledger is indexed in a temporary SQLite file of
    this process (:class:`_Scope`), so neither the run's lines nor its plan are ever held whole: memory does
    not grow with the run rolled back, nor with the records re-created (their old-id -> new-id map is a table of
    that file, joined in the plan's queries). ``recreated`` (when given: a dict, or an :class:`IdMap` to keep it
    out of memory too) is filled with that map before the first step. Raises ``ValueError`` as :func:`plan_rollback_from_ledger`.
    """
    scope = _Scope(root, run_id, migration_id)
    try:
        if recreated is not None:
            recreated.update(scope.recreated)
        yield from _steps(scope, exists, load_order, chunk or STREAM_CHUNK, link_documents)
    finally:
        scope.close()


def _steps(scope: _Scope, exists: ExistsFn | None, load_order: Sequence[str], chunk: int,
           link_documents: LinkDocsFn | None = None) -> Iterable[Step]:
    db, rank = scope.db, _rank(load_order)
    db.executescript("CREATE TABLE cand(ord INTEGER PRIMARY KEY, obj, sf_id, ssid, run_id);"
                     "CREATE TABLE foreign_skip(ord INTEGER PRIMARY KEY, sf_id);")
    cands: list[tuple[Any, ...]] = []
    foreign: list[tuple[str]] = []

    def flush() -> None:
        db.executemany("INSERT INTO cand(obj, sf_id, ssid, run_id) VALUES (?,?,?,?)", cands)
        db.executemany("INSERT INTO foreign_skip(sf_id) VALUES (?)", foreign)
        cands.clear()
        foreign.clear()

    is_foreign = db.cursor()
    # a record re-created by a rollback is deleted by its new id (the map: scope.recreated's table)
    for obj, sf_id, ssid, rid, files in db.execute("SELECT w.obj, COALESCE(m.new_id, w.sf_id), w.ssid, w.run_id, "
                                                  "w.files FROM work w LEFT JOIN remap m ON m.old15 = w.sf15 "
                                                  "WHERE w.created = 1 ORDER BY w.k"):
        docs = json.loads(files) if files else []
        if obj not in FILE_SOBJECTS:
            cands.append((obj, sf_id, ssid, rid))
        for doc in docs:
            if is_foreign.execute("SELECT 1 FROM other_files WHERE doc = ? LIMIT 1", (doc,)).fetchone():
                if obj in FILE_SOBJECTS:
                    foreign.append((doc,))
            else:
                cands.append(("ContentDocument", doc, ssid, rid))
        if len(cands) >= chunk:
            flush()
    flush()
    # the first candidate of each (sobject, id) is the plan's (SQLite's bare columns come from MIN's row)
    db.executescript("CREATE TABLE dels AS SELECT obj, sf_id, ssid, run_id, MIN(ord) AS ord FROM cand "
                     "GROUP BY obj, sf_id; DROP TABLE cand; CREATE INDEX dels_key ON dels(obj, sf_id);")

    def objects(sql: str) -> list[str]:
        return [r[0] for r in db.execute(sql)]

    link_docs: dict[str, str] = {}  # of the step being checked: link (15) -> its ContentDocumentId (15)

    def ask(sobject: str, ids: list[str]) -> Iterable[str]:
        if sobject == "ContentDocumentLink" and link_documents is not None:  # existence, and each link's document
            link_docs.clear()
            link_docs.update({str(k)[:15]: str(v)[:15] for k, v in link_documents(ids).items()})
            return list(link_docs)
        return exists(sobject, ids) if exists is not None else ids

    def checked(ops: list[RollbackOp], skipped: list[tuple[str, str, str, str]], keep_present: bool,
                why: str) -> Step:
        asked = exists is not None or (link_documents is not None and bool(ops)
                                       and ops[0].sobject == "ContentDocumentLink" and ops[0].action == "delete")
        if asked and ops:
            present = {str(i)[:15] for i in ask(ops[0].sobject, [o.sf_id for o in ops])}
            skipped += [(o.action, o.sobject, o.sf_id, why) for o in ops if (o.sf_id[:15] in present) != keep_present]
            ops = [o for o in ops if (o.sf_id[:15] in present) == keep_present]
        return ops, skipped

    def paged(rows: Iterable[Any], make: Callable[[Any], RollbackOp | tuple[str, str, str, str] | None],
              keep_present: bool, why: str) -> Iterable[Step]:
        ops: list[RollbackOp] = []
        skipped: list[tuple[str, str, str, str]] = []
        for row in rows:
            made = make(row)
            if isinstance(made, RollbackOp):
                ops.append(made)
            elif made is not None:
                skipped.append(made)
            if len(ops) >= chunk or len(skipped) >= chunk:
                yield checked(ops, skipped, keep_present, why)
                ops, skipped = [], []
        if ops or skipped:
            yield checked(ops, skipped, keep_present, why)

    parent_deleted = db.cursor()

    def deleted_here(obj: str, sf_id: str) -> bool:
        """Whether this plan deletes ``obj`` ``sf_id``: created in the scope, or (a re-created copy) a delete's id."""
        return parent_deleted.execute(
            "SELECT 1 FROM work WHERE obj = ? AND sf15 = ? AND created = 1 UNION ALL "
            "SELECT 1 FROM dels WHERE obj = ? AND sf_id = ? LIMIT 1", (obj, sf_id[:15], obj, sf_id)
        ).fetchone() is not None

    def recreate(row: Any) -> RollbackOp | tuple[str, str, str, str] | None:
        obj, sf_id, ssid, rid, before, created_here, recreated_before, _k = row
        if created_here:
            return None  # created in the same scope: it stays deleted
        if obj in FILE_SOBJECTS:
            return "recreate", obj, sf_id, "file content is not kept by the ledger: not re-created"
        if recreated_before:
            return "recreate", obj, sf_id, "re-created by an earlier rollback"
        values = json.loads(before)
        if _goes_with_parent(obj, values, deleted_here):
            return "recreate", obj, sf_id, GOES_WITH_PARENT
        return RollbackOp("recreate", obj, sf_id, ssid, rid, values)

    def recreates_of(obj: str) -> Iterable[Step]:
        rows = db.execute("SELECT obj, sf_id, ssid, run_id, before, EXISTS(SELECT 1 FROM work c WHERE "
                          "c.obj = w.obj AND c.sf15 = w.sf15 AND c.created = 1), EXISTS(SELECT 1 FROM remap m "
                          "WHERE m.old15 = w.sf15), MIN(k) FROM work w WHERE obj = ? AND operation = 'delete' "
                          "AND before IS NOT NULL GROUP BY sf_id ORDER BY sf_id", (obj,))
        yield from paged(rows, recreate, False, "still in Salesforce: nothing to re-create")

    def restore(row: Any) -> RollbackOp | tuple[str, str, str, str] | None:
        obj, sf_id, ssid, rid, before, _k, deleted, done = row
        if deleted:
            return None  # deleted here (its before-image is a recreate's), or created here (the delete wins)
        if done:
            return "restore", obj, sf_id, "restored by an earlier rollback"
        return restore_op(obj, sf_id, ssid, rid, json.loads(before))

    # per object in load order: its re-creations, then the earliest update with a before-image per record
    # (updated_with_before)
    def restores_of(obj: str) -> Iterable[Step]:
        rows = db.execute(
            "SELECT obj, sf_id, ssid, run_id, before, MIN(k), "
            "EXISTS(SELECT 1 FROM work d WHERE d.obj = w.obj AND d.sf_id = w.sf_id AND d.operation = 'delete') "
            "OR EXISTS(SELECT 1 FROM dels x WHERE x.obj = w.obj AND x.sf_id = w.sf_id), "
            "EXISTS(SELECT 1 FROM done r WHERE r.op = 'restore' AND r.obj = w.obj AND r.sf_id = w.sf_id) "
            "FROM work w WHERE obj = ? AND created = 0 AND before IS NOT NULL GROUP BY sf_id ORDER BY sf_id", (obj,))
        yield from paged(rows, restore, True, "no longer in Salesforce: already done")

    back_objs = set(objects("SELECT DISTINCT obj FROM work WHERE operation = 'delete' AND before IS NOT NULL"))
    restore_objs = set(objects("SELECT DISTINCT obj FROM work WHERE created = 0 AND before IS NOT NULL"))
    for obj in sorted(back_objs | restore_objs, key=lambda s: (rank(s), s)):
        if obj in back_objs:
            yield from recreates_of(obj)
        if obj in restore_objs:
            yield from restores_of(obj)

    # deletes last: a restore first takes a record out from under a parent the run created (see the module doc)
    if db.execute("SELECT 1 FROM foreign_skip LIMIT 1").fetchone():
        yield [], [("delete", "ContentDocument", doc, "file also used by another run: kept")
                   for (doc,) in db.execute("SELECT sf_id FROM foreign_skip ORDER BY ord")]

    def delete(row: Any) -> RollbackOp | tuple[str, str, str, str]:
        obj, sf_id, ssid, rid, done = row
        return ("delete", obj, sf_id, "deleted by an earlier rollback") if done else RollbackOp(
            "delete", obj, sf_id, ssid, rid)

    # ContentDocument first (_delete_rank): the documents it deletes (doc_dels) take their links and notes along
    db.execute("CREATE TABLE doc_dels(sf15 TEXT PRIMARY KEY) WITHOUT ROWID")
    goes = db.cursor()

    def cascaded(o: RollbackOp) -> bool:
        doc = o.sf_id[:15] if o.sobject == "ContentNote" else link_docs.get(o.sf_id[:15])
        return doc is not None and goes.execute("SELECT 1 FROM doc_dels WHERE sf15 = ?", (doc,)).fetchone() is not None

    drank = _delete_rank(load_order)
    for obj in sorted(objects("SELECT DISTINCT obj FROM dels"), key=lambda s: (-drank(s), s)):
        rows = db.execute("SELECT obj, sf_id, ssid, run_id, EXISTS(SELECT 1 FROM done d WHERE d.op = 'delete' "
                          "AND d.obj = dels.obj AND d.sf_id = dels.sf_id) FROM dels WHERE obj = ? ORDER BY sf_id",
                          (obj,))
        for ops, skipped in paged(rows, delete, True, "no longer in Salesforce: already done"):
            if obj == "ContentDocument":
                db.executemany("INSERT OR IGNORE INTO doc_dels VALUES (?)", [(o.sf_id[:15],) for o in ops])
            elif obj in DOCUMENT_CHILDREN:
                skipped = skipped + [(o.action, o.sobject, o.sf_id, GOES_WITH_DOCUMENT) for o in ops if cascaded(o)]
                ops = [o for o in ops if not cascaded(o)]
            if ops or skipped:
                yield ops, skipped
