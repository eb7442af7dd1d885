"""Execute a rollback plan (:mod:`clio2sf.rollback`) against the org, writing rollback ledger lines.

Deletes go through ``client.composite_delete`` (files through their ContentDocument ids, first: the links
and notes a ContentDocument delete takes along get no call of their own, counted ``cascaded``),
re-creations through ``client.composite_upsert`` on the object's external id when the
before-image has one (so a retried chunk cannot make a second copy), else
``client.composite_create``; restores through ``client.composite_update`` (a Contact restored from the journal of
a batch that died: then the direct AccountContactRelation Salesforce made when the batch moved it is deleted,
:func:`_made_by_move`). Every executed chunk is written to the ledger at once (phase
``rollback`` under the rolled-back run's id), so an interrupted rollback resumes where it stopped
and a finished one plans nothing the second time.

The plan is never held whole (a full-load run has one operation per record): :func:`spool_plan` writes it,
a step at a time (:func:`clio2sf.rollback.iter_rollback`), to a spool under the migration's staging root,
and :func:`write_reports` and the execution read it back one spool file at a time. Nor is the map of re-created
records' new ids (:class:`clio2sf.rollback.IdMap`, an SQLite file in a temporary directory): a rollback that
re-creates every record of a run, or deletes them by their new ids, holds no entry per record.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import groupby, islice
from typing import Any

from clio2sf import reports, rollback, staging
from clio2sf.delta import DEFAULT_LOAD_ORDER
from clio2sf.ledger import LedgerWriter, utc_now_iso
from clio2sf.load import COMPOSITE_CHUNK, soql_in
from clio2sf.reports import json_default
from clio2sf.verify import existing_ids, query_in

#: Errors meaning the record is already gone: the delete's goal is met.
GONE_CODES = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})
#: Before-image keys that are not writable fields.
NOT_WRITABLE = frozenset({"Id", "attributes"})
#: The link object Salesforce keeps in step with a Contact's ``AccountId``.
RELATION = "AccountContactRelation"
#: What one rollback run did (beside its plan, ``rollback.{json,csv,html}``, in its own report folder).
RESULT_FILE = "rollback_result.json"


def _errors(result: dict[str, Any]) -> tuple[str, str]:
    errs = result.get("errors") or []
    first = errs[0] if errs else {}
    code = str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN_ERROR")
    return code, f"{code}: {str(first.get('message') or '')[:300]}"


def _existing_relations(client: Any, bodies: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(AccountId, ContactId) → Id (15 characters) of the AccountContactRelations that exist for ``bodies``' pairs.

    Restoring a Contact's ``AccountId`` (before the relations are re-created) makes Salesforce relate it to
    that Account again, directly: the relation a window deleted (the one Salesforce had demoted) is there
    once more, and creating it a second time would fail (``DUPLICATE_VALUE``)."""
    contacts = sorted({str(b.get("ContactId")) for b in bodies if b.get("ContactId")})
    out: dict[tuple[str, str], str] = {}
    for start in range(0, len(contacts), COMPOSITE_CHUNK):
        soql = (f"SELECT Id, AccountId, ContactId FROM AccountContactRelation "
                f"WHERE {soql_in('ContactId', contacts[start:start + COMPOSITE_CHUNK])}")
        for r in client.query_all_iter(soql):
            out[(str(r["AccountId"])[:15], str(r["ContactId"])[:15])] = str(r["Id"])
    return out


def _recreate(client: Any, sobject: str, ops: Sequence[rollback.RollbackOp],
              remap: MutableMapping[str, str]) -> list[dict]:
    bodies = [rollback.recreate_payload(o, remap) for o in ops]
    found: dict[int, str] = {}  # position → the relation Salesforce made again for a restored AccountId
    if sobject == "AccountContactRelation":
        have = _existing_relations(client, bodies)
        for i, b in enumerate(bodies):
            rid = have.get((str(b.get("AccountId"))[:15], str(b.get("ContactId"))[:15]))
            if rid:
                found[i] = rid
    if found:  # its other fields as the before-image had them (the pair is the relation's key, not updated)
        updates = [{"attributes": {"type": sobject}, "id": found[i],
                    **{k: v for k, v in bodies[i].items() if k not in ("AccountId", "ContactId")}} for i in sorted(found)]
        done = dict(zip(sorted(found), client.composite_update(updates), strict=True))
        done = {i: {**res, "id": found[i], "found": True} for i, res in done.items()}
        rest = [i for i in range(len(ops)) if i not in found]
        made = _recreate(client, sobject, [ops[i] for i in rest], remap) if rest else []
        results = [done[i] if i in done else None for i in range(len(ops))]
        for i, res in zip(rest, made, strict=True):
            results[i] = res
        for o, res in zip(ops, results, strict=True):
            if res.get("success"):
                remap[o.sf_id[:15]] = str(res["id"])
        return results  # type: ignore[return-value]
    meta = client.describe(sobject)["fields"]
    ext = next((f["name"] for f in meta if f.get("externalId") and all(b.get(f["name"]) for b in bodies)), None)
    records = [{"attributes": {"type": sobject}, **b} for b in bodies]
    results = client.composite_upsert(sobject, ext, records) if ext else client.composite_create(records)
    for o, res in zip(ops, results, strict=True):
        if res.get("success") and res.get("id"):
            remap[o.sf_id[:15]] = str(res["id"])
    return results


def _direct_relations(client: Any, ops: Sequence[rollback.RollbackOp]) -> set[str]:
    """The AccountContactRelations among ``ops`` (15-character ids) that are their Contact's direct relation now.

    One we created becomes direct when its Contact's primary account changes to its account (a person's
    company changed to one it was related to). Salesforce does not delete a direct relation by itself ("change
    the contact's primary account or delete the contact"): the rollback leaves it, and deleting the Contact (when
    ours) takes it along; the plan keeps it, so a later rollback looks again."""
    soql = f"SELECT Id FROM AccountContactRelation WHERE IsDirect = true AND {soql_in('Id', [o.sf_id for o in ops])}"
    return {str(r["Id"])[:15] for r in client.query_all_iter(soql)}


def _made_by_move(client: Any, ops: Sequence[rollback.RollbackOp], bodies: Sequence[Mapping[str, Any]]
                  ) -> dict[str, list[str]]:
    """Contacts restored from the journal of a batch that died (``op.relations``: the AccountContactRelations they
    had before it): Contact Id (15 characters) -> the Ids of their direct relations to an Account other than the
    one restored (``bodies``' ``AccountId``) that are not among those: the relation Salesforce made when the batch
    moved the person, which the batch would have ledgered as created (``clio2sf.pipeline.moved_relations``) and
    which the restore leaves behind as indirect. Asked before the restore, while it is direct."""
    todo = {o.sf_id[:15]: (o, str(b["AccountId"])[:15]) for o, b in zip(ops, bodies, strict=True)
            if o.relations is not None and b.get("AccountId")}
    out: dict[str, list[str]] = {}
    ids = sorted(o.sf_id for o, _ in todo.values())
    for start in range(0, len(ids), COMPOSITE_CHUNK):
        soql = (f"SELECT Id, ContactId, AccountId FROM AccountContactRelation WHERE IsDirect = true "
                f"AND {soql_in('ContactId', ids[start:start + COMPOSITE_CHUNK])}")
        for r in client.query_all_iter(soql):
            op, account = todo.get(str(r["ContactId"])[:15], (None, None))
            if op is not None and str(r["AccountId"])[:15] != account \
                    and str(r["Id"])[:15] not in {str(i)[:15] for i in op.relations or ()}:
                out.setdefault(op.sf_id[:15], []).append(str(r["Id"]))
    return out


def _delete_made(client: Any, mroot: Any, migration_id: str, ops: Sequence[rollback.RollbackOp],
                 made: Mapping[str, list[str]], batch: str, counts: dict[str, dict[str, int]]) -> None:
    """Delete the relations :func:`_made_by_move` found for the Contacts ``ops`` restored; rollback ledger lines of
    their own (under the relation's object, a ``delete`` each), so a later rollback finds them done."""
    todo = [(o, rid) for o in ops for rid in made.get(o.sf_id[:15], ())]
    if not todo:
        return
    with LedgerWriter(mroot, migration_id, todo[0][0].run_id, rollback.ROLLBACK_PHASE, RELATION,
                      f"{batch}-moved") as w:
        for start in range(0, len(todo), COMPOSITE_CHUNK):
            part = todo[start:start + COMPOSITE_CHUNK]
            for (o, rid), res in zip(part, client.composite_delete([rid for _, rid in part]), strict=True):
                status, error = "ok", None
                if not res.get("success"):
                    code, error = _errors(res)
                    status = "ok" if code in GONE_CODES else "failed"
                w.record(source_system_id=f"{o.source_system_id}#moved", sf_id=rid, operation="delete",
                         created=False, status=status, error=error)
                counts[RELATION]["failed" if status == "failed" else "already_gone" if error else "deleted"] += 1


def _execute(client: Any, mroot: Any, migration_id: str, ops: Sequence[rollback.RollbackOp], batch: str,
             counts: dict[str, dict[str, int]], remap: MutableMapping[str, str]) -> None:
    """Run one chunk of same-action, same-sobject operations and write its ledger lines.

    ``remap`` (old id -> new id of re-created records) grows as records come back, so children
    re-created or restored later point to their parent's new id.
    """
    action, sobject = ops[0].action, ops[0].sobject
    if action == "delete" and sobject == "AccountContactRelation":
        kept = _direct_relations(client, ops)
        if kept:  # Salesforce's own now: it goes with its Contact, or follows the Contact's AccountId
            counts[sobject]["kept_direct"] += len(kept)
            ops = [o for o in ops if o.sf_id[:15] not in kept]
            if not ops:
                return
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
        made = _made_by_move(client, ops, records) if sobject == "Contact" else {}
        results = client.composite_update(records)
        if made:
            _delete_made(client, mroot, migration_id, [o for o, res in zip(ops, results, strict=False)
                                                       if res.get("success")], made, batch, counts)
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
                # one Salesforce made again (a restored AccountId's relation) is not ours: not created
                line.update(sf_id=str(res["id"]) if status == "ok" else op.sf_id,
                            created=status == "ok" and not res.get("found"), before={"Id": op.sf_id})
            writers[op.run_id].record(**line)
            key = {"ok": {"delete": "deleted", "recreate": "recreated"}.get(action, "restored"), "failed": "failed"}[status]
            if status == "ok" and error:
                key = "already_gone"
            elif status == "ok" and res.get("found"):
                key = "found_again"
            counts[sobject][key] += 1
    finally:
        for w in writers.values():
            w.close()


@dataclass
class SpooledPlan:
    """A plan written a step at a time to ``spool`` (gzip JSONL files under the migration's staging root), with
    what its reports need in memory: the counts per object and action and per reason skipped. ``recreated``, the
    old-id -> new-id map of re-created records (which grows as the rollback re-creates more), is an
    :class:`clio2sf.rollback.IdMap`: an SQLite file in a temporary directory of this process, removed by
    :meth:`close`."""

    spool: Any
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # sobject -> {action: n}, in plan order
    done: Counter = field(default_factory=Counter)  # (action, sobject, why) -> n
    operations: int = 0
    already_done: int = 0
    recreated: rollback.IdMap = field(default_factory=rollback.IdMap)
    op_files: list[str] = field(default_factory=list)
    done_files: list[str] = field(default_factory=list)

    def ops(self) -> Iterator[rollback.RollbackOp]:
        """The operations, in plan order, read back one spool file at a time."""
        for name in self.op_files:
            for rec in staging.read_jsonl_gz(self.spool / name):
                yield rollback.RollbackOp(**rec)

    def skipped(self) -> Iterator[tuple[str, str, str, str]]:
        for name in self.done_files:
            for rec in staging.read_jsonl_gz(self.spool / name):
                yield rec["action"], rec["sobject"], rec["sf_id"], rec["why"]

    def close(self) -> None:
        """Remove the id map's file (the spool is removed by the caller)."""
        self.recreated.close()


def spool_plan(mroot: Any, spool: Any, *, run_id: str | None, migration_id: str | None, exists: Any = None,
               load_order: Sequence[str] = DEFAULT_LOAD_ORDER, link_documents: Any = None) -> SpooledPlan:
    """Plan the rollback (:func:`clio2sf.rollback.iter_rollback`) into ``spool``, a step per file: the plan of a
    whole run is never held in memory (files of at most :data:`clio2sf.rollback.STREAM_CHUNK` operations)."""
    plan = SpooledPlan(spool)
    for ops, skipped in rollback.iter_rollback(mroot, run_id=run_id, migration_id=migration_id, exists=exists,
                                               load_order=load_order, recreated=plan.recreated,
                                               link_documents=link_documents):
        if ops:
            name = f"ops-{len(plan.op_files) + 1:06d}.jsonl.gz"
            staging.write_jsonl_gz(spool / name, (asdict(o) for o in ops))
            plan.op_files.append(name)
            plan.operations += len(ops)
            for o in ops:
                plan.counts.setdefault(o.sobject, {}).setdefault(o.action, 0)
                plan.counts[o.sobject][o.action] += 1
        if skipped:
            name = f"done-{len(plan.done_files) + 1:06d}.jsonl.gz"
            staging.write_jsonl_gz(spool / name, (dict(zip(("action", "sobject", "sf_id", "why"), d, strict=True))
                                                  for d in skipped))
            plan.done_files.append(name)
            plan.already_done += len(skipped)
            plan.done.update((a, s, why) for a, s, _, why in skipped)
    return plan


def _json_items(items: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """A list inside :func:`clio2sf.reports.write_json`'s top-level object, item by item: the same text."""
    first = True
    for item in items:
        text = json.dumps(item, indent=2, sort_keys=True, default=json_default)
        yield (b"[\n" if first else b",\n") + ("\n".join("    " + ln for ln in text.split("\n"))).encode()
        first = False
    yield b"[]" if first else b"\n  ]"


def write_reports(rdir: Any, plan: SpooledPlan, dry_run: bool) -> Any:
    """``rollback.json``, ``rollback.csv`` and ``rollback.html`` of a spooled plan, streamed from the spool; the
    JSON and CSV are those of :func:`clio2sf.rollback.write_rollback_json`/``_csv`` for the same plan. The HTML
    lists the operations inline up to :data:`clio2sf.rollback.HTML_INLINE_MAX`; past that it keeps the summary
    per object and links the CSV. Returns the HTML's path."""
    def json_parts() -> Iterator[bytes]:
        yield b'{\n  "already_done": '
        yield from _json_items(dict(zip(("action", "sobject", "sf_id", "why"), d, strict=True))
                               for d in plan.skipped())
        counts = json.dumps(plan.counts, indent=2, sort_keys=True, default=json_default)
        yield (',\n  "counts": ' + counts.replace("\n", "\n  ") + ',\n  "operations": ').encode()
        yield from _json_items(asdict(o) for o in plan.ops())
        yield b"\n}\n"

    def csv_parts() -> Iterator[bytes]:
        yield reports.csv_text(rollback.CSV_HEADERS, []).encode()
        rows: list[list[Any]] = []
        for i, o in enumerate(plan.ops(), 1):
            rows.append(rollback.csv_row(i, o))
            if len(rows) >= rollback.STREAM_CHUNK:
                yield reports.csv_text([], rows).split("\r\n", 1)[1].encode()
                rows = []
        if rows:
            yield reports.csv_text([], rows).split("\r\n", 1)[1].encode()

    staging.write_blob(rdir / "rollback.json", json_parts())
    staging.write_blob(rdir / "rollback.csv", csv_parts())
    inline = list(plan.ops()) if plan.operations <= rollback.HTML_INLINE_MAX else None
    html = rollback.rollback_page(plan.operations, plan.counts, plan.done, inline, dry_run=dry_run)
    return reports.write_text(rdir / "rollback.html", html)


def _remove(spool: Any) -> None:
    """Remove a spool directory (its files, then itself where the store has directories)."""
    if not spool.exists():
        return
    for f in spool.iterdir():
        f.unlink()
    try:
        spool.rmdir()
    except OSError:
        pass


def run_rollback(client: Any, mroot: Any, *, run_id: str | None = None, migration_id: str, dry_run: bool,
                 load_order: Sequence[str] = DEFAULT_LOAD_ORDER, report_id: str | None = None) -> dict[str, Any]:
    """Plan (and unless ``dry_run`` execute) the rollback of one run, or of every run when ``run_id`` is None.

    Each call writes its own report, never another rollback's: ``reports/<report_id>/rollback.{json,csv,html}``
    (the plan, written before the first change) and ``rollback_result.json`` (:data:`RESULT_FILE`: the scope,
    dry run or not, what was done per object, written when the run ends, also when it fails mid-way; the HTML
    is written again with those counts). ``report_id`` is the rollback's own run id (``mig_07_rollback``'s
    Airflow run id); by default ``rollback-<run or migration>-<time>``. A dry run or a second rollback of the
    same scope therefore never replaces the report of the rollback that deleted the records.

    Returns ``{"dry_run", "planned", "counts", "already_done", "failed", "report"}`` (``report``: the HTML's
    path). The plan is spooled to ``rollback/spool-<run or migration>-<time>-<nonce>/`` under the migration root
    (removed at the end), then reported and executed from there a file at a time: memory does not grow with the
    run rolled back (``python -m benchmarks.bench_ledger_tasks``).
    """
    def exists(sobject: str, ids: list[str]) -> set[str]:
        return existing_ids(client, sobject, ids)

    def link_documents(ids: list[str]) -> dict[str, str]:
        """The links still in the org and their documents: one query per 200, as ``exists`` would ask."""
        return {str(r["Id"])[:15]: str(r["ContentDocumentId"])
                for r in query_in(client, "ContentDocumentLink", ["Id", "ContentDocumentId"], "Id", ids)}

    started = utc_now_iso()
    stamp = started.replace(":", "").replace("-", "").replace(".", "")
    rdir = mroot / "reports" / (report_id or f"rollback-{run_id or migration_id}-{stamp}")
    spool = mroot / "rollback" / f"spool-{run_id or migration_id}-{stamp}-{uuid.uuid4().hex[:8]}"
    plan = None
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    error: str | None = None
    try:
        plan = spool_plan(mroot, spool, run_id=run_id, migration_id=migration_id, exists=exists,
                          load_order=load_order, link_documents=link_documents)
        report = write_reports(rdir, plan, dry_run)
        if not dry_run:
            remap = plan.recreated  # on disk; grows as records come back
            step = 0
            try:
                # consecutive operations of one action and sobject, in plan order
                for _key, group in groupby(plan.ops(), key=lambda o: (o.action, o.sobject)):
                    same = iter(group)
                    while part := list(islice(same, COMPOSITE_CHUNK)):
                        step += 1
                        _execute(client, mroot, migration_id, part, f"rollback-{stamp}-{step:05d}", counts, remap)
                # the links and notes the ContentDocument deletes took along (no call of their own)
                for (action, sobject, why), n in plan.done.items():
                    if action == "delete" and why == rollback.GOES_WITH_DOCUMENT:
                        counts[sobject]["cascaded"] += n
            except BaseException as exc:
                error = type(exc).__name__
                raise
            finally:  # what this run did, beside its plan: also when it stops mid-way
                done = {s: dict(c) for s, c in counts.items()}
                reports.write_json(rdir / RESULT_FILE, {
                    "migration_id": migration_id, "target_run_id": run_id, "dry_run": dry_run, "started": started,
                    "finished": utc_now_iso(), "completed": error is None, "error": error, "planned": plan.counts,
                    "counts": done, "already_done": plan.already_done,
                    "failed": sum(c.get("failed", 0) for c in done.values())})
                inline = list(plan.ops()) if plan.operations <= rollback.HTML_INLINE_MAX else None
                report = reports.write_text(rdir / "rollback.html", rollback.rollback_page(
                    plan.operations, plan.counts, plan.done, inline, dry_run=False, outcome=done, error=error))
        else:
            reports.write_json(rdir / RESULT_FILE, {
                "migration_id": migration_id, "target_run_id": run_id, "dry_run": True, "started": started,
                "finished": utc_now_iso(), "completed": True, "error": None, "planned": plan.counts, "counts": {},
                "already_done": plan.already_done, "failed": 0})
    finally:
        _remove(spool)
        if plan is not None:
            plan.close()
    failed = sum(c.get("failed", 0) for c in counts.values())
    return {
        "dry_run": dry_run,
        "planned": plan.counts,
        "counts": {s: dict(c) for s, c in counts.items()},
        "already_done": plan.already_done,
        "failed": failed,
        "report": str(report),
    }
