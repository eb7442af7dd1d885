"""One delta window against the org: changed records to upsert, deleted ones, conflicts.

:func:`plan_window` reads the changes extracted since the watermark (``<delta_root>/raw/``), the
ids Clio lists now, the Salesforce state of the affected records and the ledger's last writes,
and splits them with :func:`clio2sf.delta.plan_delta`. Non-conflicting changes are written back
as raw batches under ``<delta_root>/raw_ok/<object>/`` for the normal transform + load path;
deletions go to ``<delta_root>/deletes.jsonl`` for :func:`apply_deletes`; conflicts are queued
in ``<delta_root>/conflicts.{jsonl,html}``. Only paths and counts are returned.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from clio2sf import delta, ledger_index, staging
from clio2sf.ledger import LedgerWriter
from clio2sf.load import COMPOSITE_CHUNK, chunked, soql_quote
from clio2sf.mapping.spec import MappingSpec
from clio2sf.verify import (
    EXT,
    NATURAL_KEY_OBJECTS,
    base_id,
    is_primary,
    iter_raw,
    query_in,
    raw_objects,
)

RAW_OK = "raw_ok"
DELETES_FILE = "deletes.jsonl"
BATCH_SIZE = 1000
STATE_FIELDS = ("SystemModstamp", "LastModifiedById")
#: Field types that cannot be written back as they were read (compound, binary).
NO_BEFORE_TYPES = frozenset({"address", "location", "base64"})

log = logging.getLogger(__name__)


def candidate_sobjects(spec: MappingSpec, clio_object: str) -> list[str]:
    """Salesforce objects with ``Clio_Id__c`` that ``clio_object``'s records can land in (load order)."""
    out = []
    for key, ospec in spec.objects.items():
        src = ospec.get("source")
        if clio_object in (src if isinstance(src, list) else [src]):
            sobject = key.split("@", 1)[0]
            if sobject not in NATURAL_KEY_OBJECTS and not ospec.get("natural_key"):
                out.append(sobject)
    order = {s: i for i, s in enumerate(spec.load_order)}
    return sorted(dict.fromkeys(out), key=lambda s: order.get(s, len(order)))


def integration_users(client: Any, user_ids: Iterable[str] | None = None, username: str | None = None) -> list[str]:
    """The integration user's id(s): given, or looked up by ``Username``."""
    ids = [str(u) for u in user_ids or ()]
    if username:
        soql = f"SELECT Id FROM User WHERE Username = {soql_quote(username)}"
        ids += [str(r["Id"]) for r in client.query_all_iter(soql)]
        if not ids:
            raise ValueError(f"delta: no Salesforce user with Username {username!r}")
    if not ids:
        raise ValueError("delta: pass integration_user_ids or integration_username (conflicts need them)")
    return ids


def _fields_present(client: Any, sobject: str) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in client.describe(sobject)["fields"]}


def _state(rec: Mapping[str, Any]) -> delta.SfState:
    return delta.SfState(str(rec["Id"]), str(rec.get("SystemModstamp") or ""), rec.get("LastModifiedById"))


def _write_batches(out_dir: Any, obj: str, envelopes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    odir = out_dir / obj
    entries = []
    for n, part in enumerate(chunked(list(envelopes), BATCH_SIZE), start=1):
        entries.append(staging.write_jsonl_gz(odir / staging.batch_name(n), part))
    staging.write_json(odir / staging.MANIFEST, {"object": obj, "batches": entries, "records": len(envelopes),
                                                 "complete": True})
    return {"records": len(envelopes), "batches": len(entries), "dir": str(odir)}


def known_records(mroot: Any, obj: str, delta_root: Any = None) -> Iterable[dict[str, Any]]:
    """What we know of ``obj`` now: the full extraction, then every earlier delta window's changes (a
    record created during the cutover is known, and can be found deleted, from its window on)."""
    yield from iter_raw(mroot / "raw", obj)
    wdir = mroot / "delta"
    if not wdir.exists():
        return
    for w in sorted((p for p in wdir.iterdir() if p.is_dir()), key=lambda p: p.name):
        if delta_root is not None and w.name == delta_root.name:
            continue
        if (w / "raw" / obj).exists():
            yield from iter_raw(w / "raw", obj)


def already_deleted(last_writes: Any) -> set[str]:
    """Source ids whose last write of ours was a deletion (nothing left to delete).

    ``last_writes``: :func:`clio2sf.ledger.last_write_by_record` output, or :func:`our_last_writes`'."""
    if isinstance(last_writes, list):
        return {str(w.source_system_id) for w in last_writes if w.operation == "delete"}
    if not len(last_writes):
        return set()
    return set(last_writes[last_writes["operation"] == "delete"]["source_system_id"].astype(str))


class LedgerWrite(NamedTuple):
    """One latest write of ours, as a row of :func:`clio2sf.ledger.last_write_by_record`."""

    object: str
    source_system_id: str
    sf_id: str
    at: datetime
    run_id: str
    phase: str
    operation: str


def our_last_writes(mroot: Any, *, source_ids: Iterable[str] = (), primary_of: Iterable[str] = ()) -> list[LedgerWrite]:
    """The rows of ``last_write_by_record(read_ledger(mroot))`` for the asked records only, in its order
    (``at``, then run, phase, object, batch), through the ledger index (:func:`clio2sf.ledger_index.latest_writes`):
    a window's look-up reads one ledger file at a time, whatever the ledger's size."""
    rows = []
    for sobject, t in ledger_index.latest_writes(mroot, source_ids=source_ids, primary_of=primary_of).items():
        cols = {c: t[c].to_pylist() for c in ("source_system_id", "sf_id", "at", "run_id", "phase", "batch",
                                              "operation")}
        for i in range(t.num_rows):
            rows.append(((cols["at"][i], cols["run_id"][i], cols["phase"][i], sobject, cols["batch"][i]), i,
                         LedgerWrite(sobject, cols["source_system_id"][i], cols["sf_id"][i],
                                     delta.parse_ts(cols["at"][i]), cols["run_id"][i], cols["phase"][i],
                                     cols["operation"][i])))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


def plan_window(client: Any, mroot: Any, spec: MappingSpec, *, delta_root: Any,
                current_ids: Mapping[str, Iterable[Any]], changed_raw_dir: Any = None,
                integration_user_ids: Iterable[str] | None = None, integration_username: str | None = None,
                skew: timedelta = timedelta(seconds=5)) -> dict[str, Any]:
    """Plan one delta window (see the module docstring); returns counts and paths.

    ``current_ids``: Clio object → every id Clio lists now; objects left out get no deletion check.
    """
    changed_root = changed_raw_dir if changed_raw_dir is not None else delta_root / "raw"
    users = integration_users(client, integration_user_ids, integration_username)
    changed: dict[str, list[dict[str, Any]]] = {}
    for obj in raw_objects(changed_root):
        envs = delta.dedupe_changes(iter_raw(changed_root, obj))
        if envs:
            changed[obj] = [dict(e) for e in envs]
    deleted: dict[str, list[str]] = {}
    for obj, ids in current_ids.items():
        now = {str(i) for i in ids} | {str(e.get("clio_id")) for e in changed.get(obj, ())}
        gone = sorted({e["source_system_id"] for e in known_records(mroot, obj, delta_root)
                       if str(e.get("clio_id")) not in now and e.get("source_system_id")})
        if gone:
            deleted[obj] = gone
    changed_ids = {e["source_system_id"] for envs in changed.values() for e in envs}
    gone_ids = {s for ssids in deleted.values() for s in ssids}
    # our last writes of these records only (not the whole ledger): the ids that went, and the rows of every
    # changed or gone record
    lw = our_last_writes(mroot, source_ids=gone_ids, primary_of=changed_ids | gone_ids)
    done = already_deleted(lw)
    deleted = {obj: kept for obj, ssids in deleted.items() if (kept := [s for s in ssids if s not in done])}
    affected = changed_ids | {s for ssids in deleted.values() for s in ssids}

    # our writes of the affected records: the record's own rows, not link rows (they follow their parent)
    rows_of: dict[str, set[tuple[str, str]]] = defaultdict(set)
    last_writes: dict[tuple[str, str], delta.LastWrite] = {}
    by_sf_id: dict[tuple[str, str], str] = {}
    for r in lw:
        ssid = str(r.source_system_id)
        if base_id(ssid) in affected and is_primary(ssid):
            rows_of[base_id(ssid)].add((r.object, ssid))
            last_writes[(r.object, ssid)] = delta.LastWrite(str(r.sf_id), r.at)
            by_sf_id[(r.object, str(r.sf_id)[:15])] = ssid

    # Salesforce state: by the ids we wrote, and by Clio_Id__c for rows someone else made
    sf_state: dict[tuple[str, str], delta.SfState] = {}
    ids_by_obj: dict[str, set[str]] = defaultdict(set)
    for (sobject, _), last in last_writes.items():
        ids_by_obj[sobject].add(last.sf_id)
    for sobject, wanted in sorted(ids_by_obj.items()):
        fields = ["Id", *(f for f in STATE_FIELDS if f in _fields_present(client, sobject))]
        for rec in query_in(client, sobject, fields, "Id", wanted):
            ssid = by_sf_id.get((sobject, str(rec["Id"])[:15]))
            if ssid is not None:
                if not rec.get("SystemModstamp"):  # no audit field on this object: only our write is known
                    rec = {**rec, "SystemModstamp": delta._iso(delta.parse_ts(last_writes[(sobject, ssid)].at))}
                sf_state[(sobject, ssid)] = _state(rec)
    candidates = {obj: candidate_sobjects(spec, obj) for obj in {*changed, *deleted}}
    for sobject in sorted({s for c in candidates.values() for s in c}):
        meta = _fields_present(client, sobject)
        if EXT not in meta:
            continue
        objs = [o for o, c in candidates.items() if sobject in c]
        keys = {e["source_system_id"] for o in objs for e in changed.get(o, ())} | {
            s for o in objs for s in deleted.get(o, ())}
        fields = ["Id", EXT, *(f for f in STATE_FIELDS if f in meta)]
        for rec in query_in(client, sobject, fields, EXT, keys):
            ssid = str(rec[EXT])
            sf_state.setdefault((sobject, ssid), _state(rec))
            rows_of[base_id(ssid)].add((sobject, ssid))

    def changes_for(obj: str, ssid: str) -> list[delta.Change]:
        rows = sorted(rows_of.get(ssid, ()))
        if not rows:
            first = (candidates.get(obj) or ["?"])[0]
            return [delta.Change(first, ssid)]
        return [delta.Change(sobject, row_ssid) for sobject, row_ssid in rows]

    changes = [c for obj, envs in changed.items() for e in envs for c in changes_for(obj, e["source_system_id"])]
    deletions = [c for obj, ssids in deleted.items() for s in ssids for c in changes_for(obj, s)]
    plan = delta.plan_delta(changes, deletions, sf_state, last_writes, integration_user_ids=users,
                            load_order=spec.load_order, skew=skew)

    held = {base_id(c.source_system_id) for c in plan.conflicts if c.action == "upsert"}
    upserts: dict[str, Any] = {}
    for obj, envs in sorted(changed.items()):
        ok = [e for e in envs if e["source_system_id"] not in held]
        if ok:
            upserts[obj] = _write_batches(delta_root / RAW_OK, obj, ok)
    deletes = [{"sobject": o.sobject, "source_system_id": o.source_system_id, "sf_id": o.sf_id}
               for o in plan.deletes]
    deletes_path = delta_root / DELETES_FILE
    staging.write_bytes_atomic(deletes_path, "".join(
        json.dumps(d, sort_keys=True) + "\n" for d in deletes).encode("utf-8"))
    delta.write_conflicts_jsonl(delta_root / "conflicts.jsonl", plan.conflicts)
    conflicts_html = delta.write_conflicts_html(delta_root / "conflicts.html", plan.conflicts)
    return {
        "changed": {o: len(e) for o, e in sorted(changed.items())},
        "deleted": {o: len(s) for o, s in sorted(deleted.items())},
        "upserts": {o: u["records"] for o, u in upserts.items()},
        "upsert_dirs": {o: u["dir"] for o, u in upserts.items()},
        "deletes": len(deletes),
        "deletes_path": str(deletes_path),
        "conflicts": len(plan.conflicts),
        "conflicts_path": str(delta_root / "conflicts.jsonl"),
        "conflicts_report": str(conflicts_html),
        "skipped": len(plan.skipped),
    }


def _before_fields(meta: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [n for n, f in meta.items() if f.get("createable") and not f.get("calculated")
            and str(f.get("type")) not in NO_BEFORE_TYPES and n != "Id"]


#: Lookups every record has that no delete of ours clears (the owner and audit users).
SYSTEM_LOOKUPS = frozenset({"OwnerId", "CreatedById", "LastModifiedById", "MasterRecordId"})


class Dependent(NamedTuple):
    """A lookup on a loaded object whose live records a delete of the parent would take along (Salesforce's
    ``cascadeDelete``: an Account's Contacts, Opportunities, Events/Tasks, file links), be refused for
    (``restrictedDelete``: an Account's or a Contact's Cases) or have cleared (any other lookup: "Clear the
    value of this field", the default, and the migration's custom lookups' ``deleteConstraint: SetNull``: a
    bill's client)."""

    sobject: str
    field: str
    detachable: bool  # nillable and updateable: cleared before the parent goes
    restricted: bool


def dependents(client: Any, sobject: str, load_order: Sequence[str] = delta.DEFAULT_LOAD_ORDER) -> list[Dependent]:
    """The lookups of the objects in ``load_order`` whose records a delete of a ``sobject`` record cascades to
    or is restricted by: the parent's ``childRelationships`` (``cascadeDelete`` / ``restrictedDelete``) and the
    child fields' own flags (master-detail), where the child object and field are described; and the other
    nillable, updateable lookups to ``sobject`` (not owner or audit fields), which Salesforce clears when the
    parent goes (no undelete of ours puts them back: they are detached, and ledgered, first)."""
    flags: dict[tuple[str, str], tuple[bool, bool]] = {}
    for rel in client.describe(sobject).get("childRelationships") or ():
        if rel.get("cascadeDelete") or rel.get("restrictedDelete"):
            key = (str(rel.get("childSObject")), str(rel.get("field")))
            flags[key] = (bool(rel.get("cascadeDelete")), bool(rel.get("restrictedDelete")))
    out: list[Dependent] = []
    for child in dict.fromkeys(load_order):
        try:
            fields = client.describe(child)["fields"]
        except Exception:  # an object this org does not have  # noqa: BLE001
            continue
        for f in fields:
            if f.get("type") != "reference" or sobject not in (f.get("referenceTo") or ()):
                continue
            cascade, restricted = flags.get((child, f["name"]), (False, False))
            cascade = cascade or bool(f.get("cascadeDelete"))
            restricted = restricted or bool(f.get("restrictedDelete"))
            detachable = bool(f.get("nillable") and f.get("updateable"))
            if cascade or restricted or (detachable and f["name"] not in SYSTEM_LOOKUPS):
                out.append(Dependent(child, f["name"], detachable, restricted))
    return out


def _child_ssid(rec: Mapping[str, Any], parent_ssid: str, dep: Dependent) -> str:
    """The ledger's name of a child record: its ``Clio_Id__c``, else a link row of the parent it went with."""
    ext = rec.get(EXT)
    return str(ext) if ext else f"{parent_ssid}#{dep.sobject}-{rec['Id']}"


def apply_deletes(client: Any, mroot: Any, plan: Mapping[str, Any], run_id: str, migration_id: str, *,
                  phase: str = "delta", delta_root: Any = None,
                  load_order: Sequence[str] = delta.DEFAULT_LOAD_ORDER) -> dict[str, Any]:
    """Delete the planned records (reverse dependency order), ledgering each with its before-image.

    ``plan`` is :func:`plan_window`'s result; its deletes file is read from ``delta_root`` when
    given, else from ``plan["deletes_path"]`` rebuilt with ``mroot``'s path class.
    ContentVersion rows are deleted through their ContentDocument (``file_ids`` in the ledger).

    Salesforce deletes a record's cascade children with it (an Account's Contacts...), refuses to delete
    one a Case names and clears every other lookup to it (a bill's client). A child still live when its parent's turn comes (children deleted in this window went
    before it: reverse load order) belongs to a record Clio still has, so before the parent goes each live
    child of :func:`dependents` is detached: the lookup cleared (ledger operation ``detach``, the before-image
    ``{"Id", field: parent}``, so a rollback re-creates the parent and then points the child at it again).
    A child that cannot be detached (a required lookup: a junction's, a file link's) goes with its parent: it
    is ledgered as a delete with its before-image (``<parent>#<object>-<id>`` unless it has a ``Clio_Id__c``)
    and counted in ``cascaded``, never silent. A parent with a child whose detach failed is not deleted (failed
    ``DETACH_FAILED``); a parent whose delete fails gets its detached children back (``reattach``).
    Returns ``{"counts", "failed", "detached", "cascaded"}`` (``detached``/``cascaded``: ``Object.Field`` ->
    records).
    """
    path = delta_root / DELETES_FILE if delta_root is not None else type(mroot)(plan["deletes_path"])
    todo = staging.read_jsonl(path)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    detached: dict[str, int] = defaultdict(int)
    cascaded: dict[str, int] = defaultdict(int)
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for d in todo:
        if groups and groups[-1][0] == d["sobject"]:
            groups[-1][1].append(d)
        else:
            groups.append((d["sobject"], [d]))
    step = 0
    for sobject, items in groups:
        meta = {f["name"]: f for f in client.describe(sobject)["fields"]}
        fields = _before_fields(meta)
        deps = dependents(client, sobject, load_order) if sobject != "ContentVersion" else []
        for part in chunked(items, COMPOSITE_CHUNK):
            step += 1
            before = {str(r["Id"])[:15]: {f: r.get(f) for f in fields}
                      for r in query_in(client, sobject, ["Id", *fields], "Id", [d["sf_id"] for d in part])}
            targets = [d["sf_id"] for d in part]
            files: dict[str, str] = {}
            if sobject == "ContentVersion":
                files = {str(r["Id"])[:15]: r["ContentDocumentId"] for r in query_in(
                    client, "ContentVersion", ["Id", "ContentDocumentId"], "Id", targets)}
                targets = [files.get(t[:15], t) for t in targets]
            parents = {d["sf_id"]: d["source_system_id"] for d in part}
            moved, stuck = _detach(client, mroot, deps, parents, run_id, migration_id, phase, step, detached)
            going = _cascade_images(client, deps, parents)
            # a parent with a live child that could not be detached is not deleted (the child would go with it)
            sent = [t for d, t in zip(part, targets, strict=True) if d["sf_id"][:15] not in stuck]
            answers = iter(client.composite_delete(sent) if sent else [])
            results = [next(answers) if d["sf_id"][:15] not in stuck else {"success": False, "errors": [
                {"statusCode": "DETACH_FAILED", "message": "a live record naming it could not be detached "
                 "(see its detach line): not deleted"}]} for d in part]
            with LedgerWriter(mroot, migration_id, run_id, phase, sobject, f"deletes-{step:05d}") as w:
                for d, res in zip(part, results, strict=True):
                    ok = bool(res.get("success"))
                    errs = res.get("errors") or [{}]
                    code = str(errs[0].get("statusCode") or "")
                    gone = not ok and code in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY")
                    w.record(source_system_id=d["source_system_id"], sf_id=d["sf_id"], operation="delete",
                             created=False, before=before.get(d["sf_id"][:15]) if ok else None,
                             file_ids=[files[d["sf_id"][:15]]] if d["sf_id"][:15] in files else [],
                             status="ok" if ok or gone else "failed",
                             error=None if ok else f"{code}: {str(errs[0].get('message') or '')[:300]}")
                    counts[sobject]["deleted" if ok else "already_gone" if gone else "failed"] += 1
            deleted = {d["sf_id"][:15] for d, res in zip(part, results, strict=True) if res.get("success")}
            _reattach(client, mroot, [m for m in moved if m[2][:15] not in deleted], run_id, migration_id, phase,
                      step, detached)
            _ledger_cascade(mroot, [g for g in going if g[2][:15] in deleted], run_id, migration_id, phase, step,
                            cascaded)
    if any(cascaded.values()):
        log.warning("delta deletes: records Salesforce deleted with their parent (ledgered, see 'cascaded'): %s",
                    dict(cascaded))
    return {"counts": {s: dict(c) for s, c in counts.items()},
            "failed": sum(c.get("failed", 0) for c in counts.values()),
            "detached": {k: v for k, v in detached.items() if v}, "cascaded": {k: v for k, v in cascaded.items() if v}}


#: A detached child: (dependent, record's ledger name, parent id, child id).
_Moved = tuple[Dependent, str, str, str]


def _live_children(client: Any, dep: Dependent, parent_ids: Iterable[str], extra: Sequence[str] = ()
                   ) -> Iterable[dict[str, Any]]:
    meta = _fields_present(client, dep.sobject)
    fields = ["Id", dep.field, *([EXT] if EXT in meta else []), *extra]
    return query_in(client, dep.sobject, fields, dep.field, parent_ids)


def _detach(client: Any, mroot: Any, deps: Sequence[Dependent], parents: Mapping[str, str], run_id: str,
            migration_id: str, phase: str, step: int, detached: dict[str, int]) -> tuple[list[_Moved], set[str]]:
    """Clear the lookup of every live child of the parents about to be deleted that can be cleared (ledger:
    ``detach`` with the before-image). ``parents``: parent id -> its ledger name. Returns the children moved
    and the parents (15-character ids) with a child whose detach failed."""
    ssid_of = {k[:15]: v for k, v in parents.items()}
    moved: list[_Moved] = []
    stuck: set[str] = set()
    for dep in deps:
        if not dep.detachable:
            continue
        found = [r for r in _live_children(client, dep, parents) if r.get(dep.field)]
        for part in chunked(found, COMPOSITE_CHUNK):
            results = client.composite_update([{"attributes": {"type": dep.sobject}, "id": r["Id"], dep.field: None}
                                               for r in part])
            with LedgerWriter(mroot, migration_id, run_id, phase, dep.sobject, f"detach-{step:05d}") as w:
                for r, res in zip(part, results, strict=True):
                    parent = str(r[dep.field])
                    ssid = _child_ssid(r, ssid_of.get(parent[:15], parent), dep)
                    ok = bool(res.get("success"))
                    errs = res.get("errors") or [{}]
                    w.record(source_system_id=ssid, sf_id=r["Id"], operation="detach", created=False,
                             before={"Id": r["Id"], dep.field: parent} if ok else None,
                             status="ok" if ok else "failed",
                             error=None if ok else f"{errs[0].get('statusCode')}: {str(errs[0].get('message'))[:300]}")
                    if ok:
                        detached[f"{dep.sobject}.{dep.field}"] += 1
                        moved.append((dep, ssid, parent, str(r["Id"])))
                    else:
                        stuck.add(parent[:15])
    return moved, stuck


def _reattach(client: Any, mroot: Any, moved: Sequence[_Moved], run_id: str, migration_id: str, phase: str,
              step: int, detached: dict[str, int]) -> None:
    """Point the children detached from parents whose delete failed at them again (ledger: ``reattach``)."""
    by_dep: dict[Dependent, list[_Moved]] = defaultdict(list)
    for m in moved:
        by_dep[m[0]].append(m)
    for dep, rows in by_dep.items():
        for part in chunked(rows, COMPOSITE_CHUNK):
            results = client.composite_update([{"attributes": {"type": dep.sobject}, "id": cid, dep.field: parent}
                                               for _d, _s, parent, cid in part])
            with LedgerWriter(mroot, migration_id, run_id, phase, dep.sobject, f"reattach-{step:05d}") as w:
                for (_d, ssid, _parent, cid), res in zip(part, results, strict=True):
                    ok = bool(res.get("success"))
                    errs = res.get("errors") or [{}]
                    w.record(source_system_id=ssid, sf_id=cid, operation="reattach", created=False,
                             before={"Id": cid, dep.field: None} if ok else None, status="ok" if ok else "failed",
                             error=None if ok else f"{errs[0].get('statusCode')}: {str(errs[0].get('message'))[:300]}")
                    if ok:
                        detached[f"{dep.sobject}.{dep.field}"] -= 1


def _cascade_images(client: Any, deps: Sequence[Dependent], parents: Mapping[str, str]
                    ) -> list[tuple[Dependent, str, str, str, dict[str, Any] | None]]:
    """(dependent, ledger name, parent id, child id, before-image) of the live children the delete will take
    along (lookups that cannot be cleared)."""
    ssid_of = {k[:15]: v for k, v in parents.items()}
    out = []
    for dep in deps:
        if dep.detachable or dep.restricted:
            continue  # a restricting child that cannot be cleared makes the delete fail: nothing goes
        meta = _fields_present(client, dep.sobject)
        fields = _before_fields(meta)
        direct = ["IsDirect"] if "IsDirect" in meta else []
        for r in _live_children(client, dep, parents, [f for f in fields if f != dep.field] + direct):
            parent = str(r[dep.field])
            # a direct AccountContactRelation is Salesforce's own (it follows the Contact's AccountId): ledgered
            # without a before-image, so a rollback does not make a second relation of it
            image = None if r.get("IsDirect") else {f: r.get(f) for f in fields}
            out.append((dep, _child_ssid(r, ssid_of.get(parent[:15], parent), dep), parent, str(r["Id"]), image))
    return out


def _ledger_cascade(mroot: Any, going: Sequence[tuple[Dependent, str, str, str, dict[str, Any] | None]], run_id: str,
                    migration_id: str, phase: str, step: int, cascaded: dict[str, int]) -> None:
    """Ledger the children Salesforce deleted with their parent, as deletes with their before-image."""
    by_obj: dict[str, list[tuple[Dependent, str, str, str, dict[str, Any] | None]]] = defaultdict(list)
    for g in going:
        by_obj[g[0].sobject].append(g)
    for child, rows in by_obj.items():
        with LedgerWriter(mroot, migration_id, run_id, phase, child, f"cascade-{step:05d}") as w:
            for dep, ssid, _parent, cid, image in rows:
                w.record(source_system_id=ssid, sf_id=cid, operation="delete", created=False, before=image)
                cascaded[f"{dep.sobject}.{dep.field}"] += 1
