"""SOQL read-back of what the org holds, keyed the way the expectations are.

``read(client, sobjects, fields)`` reads every record carrying a ``Clio_Id__c`` of each sobject
(only the fields the describe shows: a field the integration user cannot see is reported, not
queried) and builds an index Salesforce Id → (sobject, Clio_Id__c) so that lookups are checked by
the external id of the record they point at; read by object, ``index`` builds that index for
every sobject first and ``select`` says which fields to read of a group's sobjects when the
comparison reaches them. ``read_links`` reads the natural-key children (CaseTeamMember,
OpportunityTeamMember, EventRelation, AccountContactRelation) of one group. The client is the Salesforce hook
(``query_all_iter``, ``describe``).
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

EXT = "Clio_Id__c"


def short(sf_id: Any) -> str | None:
    return None if sf_id is None else str(sf_id)[:15]


def flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in record.items():
        if k == "attributes":
            continue
        if isinstance(v, Mapping):
            out.update({f"{k}.{ik}": iv for ik, iv in flatten(v).items()})
        else:
            out[k] = v
    return out


@dataclass
class ReadBack:
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))  # sobject → key
    duplicates: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # sobject → keys seen twice
    meta: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # sobject → field → describe
    by_id: dict[str, tuple[str, str]] = field(default_factory=dict)  # short Id → (sobject, Clio_Id__c)
    team: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))  # parent Id → members
    relations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # event Id → relation ids
    accounts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # contact Id → account Ids
    notes: list[str] = field(default_factory=list)
    queries: int = 0
    #: ``read(..., by_object=True)``: the records of one sobject are streamed when the comparison reaches
    #: it (:meth:`rows`), none kept; ``columns`` holds what to read.
    loader: Any = None
    columns: dict[str, list[str]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # sobject → records with a Clio_Id__c (read by object)
    unreadable: dict[str, str] = field(default_factory=dict)  # sobject → why it cannot be read back
    indexed: set[str] = field(default_factory=set)  # sobjects whose Ids are in by_id (read by object)
    #: A subset (the sample, :func:`scope`): the lookup targets are indexed only for the Clio ids its
    #: records are expected to point at (:func:`index_targets`' ``keys``), not the org's whole tables;
    #: an Id the comparison meets that is not indexed is read by Id then (:meth:`link_key`).
    scoped: bool = False
    resolver: Any = None  # (Id, sobjects it may be of): index it (:func:`scope`)
    unresolved: set[str] = field(default_factory=set)  # short Ids read by Id and not found
    asked: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # target → Clio ids indexed
    #: A group compared in parts (``run.compare_parts``): each sobject's records, and each link table's rows,
    #: read from the org once and written to one temporary file per part (:class:`Spool`), not asked again
    #: of the org for every part.
    spools: dict[str, Spool] = field(default_factory=dict)

    def key_of(self, sf_id: Any) -> str | None:
        hit = self.by_id.get(short(sf_id) or "")
        return hit[1] if hit else None

    def link_key(self, sobject: str, fld: str, sf_id: Any) -> str | None:
        """The Clio id of the record the lookup ``fld`` of ``sobject`` holds (``sf_id``): as
        :meth:`key_of`; scoped, an Id not indexed is read from the objects the field may point at
        (those an unscoped read indexes whole), so the answer is the same as with every Id indexed."""
        key = self.key_of(sf_id)
        sid = short(sf_id) or ""
        if key is not None or not self.scoped or self.resolver is None or not sid or sid in self.unresolved:
            return key
        self.resolver(str(sf_id), self.link_targets(sobject, fld))
        key = self.key_of(sf_id)
        if key is None:
            self.unresolved.add(sid)
        return key

    def link_targets(self, sobject: str, fld: str) -> list[str]:
        """The sobjects the lookup ``fld`` of ``sobject`` may point at among those counted (all of them
        for a field whose describe does not say): what :func:`index_targets` indexes for it."""
        meta = (self.meta.get(sobject) or {}).get(fld) or {}
        return [t for t in (meta.get("referenceTo") or list(self.sizes)) if t in self.sizes]

    def rows(self, sobject: str, part: Any = None) -> Iterator[dict[str, Any]]:
        """The records of ``sobject``, flattened: read by object, streamed from the org page by page
        (nothing kept); else those read already. ``part`` (``source.Part`` of more than one): at least
        the records of that part, read by object: the first part asked reads the sobject whole from the
        org once and writes each record to its part's file (:class:`Spool`), every part reads its file."""
        if self.loader is None:
            yield from list((self.records.get(sobject) or {}).values())
        elif sobject in self.columns:
            if part is None or part.count <= 1:
                yield from self.loader(sobject)
                return
            spool = self.spools.get(sobject)
            if spool is None or spool.count != part.count:
                if spool is not None:
                    spool.close()
                spool = self.spools[sobject] = Spool(part.count)
                spool.fill((part.of(str(row.get(EXT))), row) for row in self.loader(sobject))
            yield from spool.read(part.index)

    def release_links(self) -> None:
        """Drop the team members and event relations read for one group (:func:`read_links`)."""
        self.team.clear()
        self.relations.clear()
        self.accounts.clear()

    def release_spools(self) -> None:
        """Remove the files of a group compared in parts (:meth:`rows`, :func:`spool_links`)."""
        for spool in self.spools.values():
            spool.close()
        self.spools.clear()


class Spool:
    """Rows of one table in ``count`` temporary files, one per part: written once, read a part at a
    time. Rows are buffered and written in batches (pickled lists), all buffers flushed whenever they
    hold :data:`Spool.BUFFER` rows together: memory holds a batch, not the table, and no more than
    one file is open at a time, whatever the number of parts."""

    BUFFER = 5_000

    def __init__(self, count: int, buffer: int | None = None):
        """``buffer``: rows held before they are written (default :data:`BUFFER`; 1 for rows that are
        large themselves, e.g. a piece of a part's expectations, ``run.compare_parts``)."""
        self.count = count
        self.buffer = buffer
        self.dir: str | None = tempfile.mkdtemp(prefix="clio2sf-verify-")
        self.rows = 0

    def _path(self, index: int) -> str:
        assert self.dir is not None
        return os.path.join(self.dir, f"{index}.pickle")

    def fill(self, rows: Iterable[tuple[int, Any]]) -> None:
        """Write ``(part index, row)`` pairs, each to its part's file."""
        buffers: dict[int, list[Any]] = defaultdict(list)
        held = 0
        for index, row in rows:
            buffers[index].append(row)
            held += 1
            self.rows += 1
            if held >= (self.buffer or self.BUFFER):
                self._flush(buffers)
                held = 0
        self._flush(buffers)

    def _flush(self, buffers: dict[int, list[Any]]) -> None:
        for index, batch in buffers.items():
            if batch:
                with open(self._path(index), "ab") as fh:
                    pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
        buffers.clear()

    def read(self, index: int) -> Iterator[Any]:
        """The rows of part ``index``, in the order written."""
        path = self._path(index)
        if not os.path.exists(path):
            return
        with open(path, "rb") as fh:
            while True:
                try:
                    batch = pickle.load(fh)
                except EOFError:
                    return
                yield from batch

    def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def describe(client: Any, sobject: str) -> dict[str, dict[str, Any]]:
    try:
        return {f["name"]: f for f in client.describe(sobject)["fields"]}
    except Exception as exc:  # noqa: BLE001 - an object the org does not have is a finding, not a crash
        raise LookupError(f"{sobject}: describe failed ({type(exc).__name__})") from exc


def read(client: Any, wanted: Mapping[str, Iterable[str]], rb: ReadBack | None = None, *,
         by_object: bool = False) -> ReadBack:
    """Read ``{sobject: fields}`` for every record with a Clio_Id__c (plus Id, OwnerId where present).

    ``by_object``: read only ``Id`` and ``Clio_Id__c`` of every record now (the Id index, duplicates,
    :func:`index`); the fields of one sobject's records are streamed when the comparison reaches
    that sobject (:meth:`ReadBack.rows`), each record compared as it is read, so not even one
    sobject's records are held."""
    rb = rb or ReadBack()
    if by_object:
        index(client, sorted(wanted), rb)
        select(client, rb, wanted)
        return rb
    for sobject, fields in sorted(wanted.items()):
        cols = _columns(client, rb, sobject, fields)
        if cols is None:
            continue
        rb.queries += 1
        for rec in client.query_all_iter(f"SELECT {', '.join(cols)} FROM {sobject} WHERE {EXT} != null"):
            flat = flatten(rec)
            key = str(flat.get(EXT))
            if key in rb.records[sobject]:
                rb.duplicates[sobject].append(key)
            rb.records[sobject][key] = flat
            rb.by_id[short(flat["Id"]) or ""] = (sobject, key)
    return rb


def _meta(client: Any, rb: ReadBack, sobject: str) -> dict[str, dict[str, Any]] | str:
    """The describe of ``sobject``, or why its records cannot be read back."""
    if sobject in rb.unreadable:
        return rb.unreadable[sobject]
    if sobject not in rb.meta:
        try:
            rb.meta[sobject] = describe(client, sobject)
        except LookupError as exc:
            rb.unreadable[sobject] = str(exc)
            return str(exc)
    if EXT not in rb.meta[sobject]:
        return f"{sobject}: {EXT} is not visible to the integration user: not read back"
    return rb.meta[sobject]


def _columns(client: Any, rb: ReadBack, sobject: str, fields: Iterable[str]) -> list[str] | None:
    """The columns to read of ``sobject`` (the wanted fields the describe shows); a note for the
    rest, or for the whole object when it cannot be read (None)."""
    meta = _meta(client, rb, sobject)
    if isinstance(meta, str):
        rb.notes.append(meta)
        return None
    fields = list(fields)
    cols = ["Id", EXT] + [f for f in dict.fromkeys(fields) if f in meta and f not in ("Id", EXT)]
    if "OwnerId" in meta and "OwnerId" not in cols:
        cols.append("OwnerId")
    hidden = sorted(f for f in set(fields) if f not in meta)
    if hidden:
        rb.notes.append(f"{sobject}: not in the describe, not compared: {', '.join(hidden)}")
    return cols


def index(client: Any, sobjects: Iterable[str], rb: ReadBack | None = None, *, ids: bool = True) -> ReadBack:
    """The Clio ids of every record of ``sobjects`` with a Clio_Id__c (duplicates, sizes) and a
    loader of one sobject's fields (:func:`select` says which): what a comparison of one group of
    sobjects at a time needs of the others. ``ids``: also the Id index (Id → Clio_Id__c) of all;
    else only of the sobjects lookups point at, when a group needs them (:func:`index_targets`:
    the parents, not e.g. a calendar's occurrences).

    An sobject that cannot be read back is noted when :func:`select` asks for it (a group with
    records expected there), not here."""
    rb = rb or ReadBack()
    for sobject in sobjects:
        if sobject in rb.sizes or isinstance(_meta(client, rb, sobject), str):
            continue
        _count(client, rb, sobject, ids)
        if ids:
            rb.indexed.add(sobject)
    rb.loader = lambda sobject: _stream_fields(client, rb, sobject)
    return rb


#: Hashes of Clio ids looked at together when counting an sobject's distinct ones (:func:`_count`).
BUCKET = 100_000
_hash = hash  # of a Clio id, within this process (tests replace it to force collisions)


def _count(client: Any, rb: ReadBack, sobject: str, ids: bool) -> None:
    """The distinct Clio ids of ``sobject`` (``rb.sizes``) and those held by more than one record
    (``rb.duplicates``: each time seen again, in the org's order), without a set of every Clio id:
    a hash of each (8 bytes) is kept, the hashes seen twice are found a bucket at a time, and only
    the records of those hashes are read again and decide by their Clio ids (a collision of two
    ids is not a duplicate). ``ids``: also the Id index of every record."""
    soql = f"SELECT Id, {EXT} FROM {sobject} WHERE {EXT} != null"
    hashes = array("q")
    rb.queries += 1
    for rec in client.query_all_iter(soql):
        key = str(rec.get(EXT))
        hashes.append(_hash(key))
        if ids:
            rb.by_id[short(rec["Id"]) or ""] = (sobject, key)
    buckets = max(1, -(-len(hashes) // BUCKET))
    distinct, again = 0, set()
    for bucket in range(buckets):
        seen: set[int] = set()
        for h in hashes:
            if h % buckets == bucket:
                (again.add if h in seen else seen.add)(h)
        distinct += len(seen)
    del hashes
    if again:
        rb.queries += 1
        keys: dict[int, set[str]] = {}
        for rec in client.query_all_iter(soql):
            key = str(rec.get(EXT))
            h = _hash(key)
            if h not in again:
                continue
            same = keys.setdefault(h, set())
            if key in same:
                rb.duplicates[sobject].append(key)
            same.add(key)
        distinct += sum(len(same) - 1 for same in keys.values())
    rb.sizes[sobject] = distinct


def index_targets(client: Any, rb: ReadBack, sobject: str, fields: Iterable[str],
                  keys: Iterable[str] | None = None) -> None:
    """Index (Id → Clio_Id__c) the records the lookup ``fields`` of ``sobject`` may point at: the
    objects of each field's ``referenceTo`` among those :func:`index` counted (all of them for a
    field whose describe does not say). Read by object only (read whole, every record is indexed).

    Scoped (:func:`scope`: the sample): only the records whose Clio id is one of ``keys`` (the parents
    the subset's records are expected to point at, :func:`clio2sf.verify.compare.link_parents`), read
    by ``Clio_Id__c IN (...)``; none without ``keys`` (any other Id is read when met:
    :meth:`ReadBack.link_key`). Memory follows the subset, not the org."""
    if rb.loader is None:
        return
    if rb.scoped:
        wanted = sorted({str(k) for k in keys or ()})
        for target in sorted({t for fld in fields if fld in (rb.meta.get(sobject) or {})
                              for t in rb.link_targets(sobject, fld)}):
            todo = [k for k in wanted if k not in rb.asked[target]]
            rb.asked[target].update(todo)
            for start in range(0, len(todo), IN_CHUNK):
                part = ", ".join(_literal(k) for k in todo[start:start + IN_CHUNK])
                rb.queries += 1
                for rec in client.query_all_iter(f"SELECT Id, {EXT} FROM {target} WHERE {EXT} IN ({part})"):
                    rb.by_id[short(rec["Id"]) or ""] = (target, str(rec.get(EXT)))
        return
    meta = rb.meta.get(sobject) or {}
    for fld in fields:
        if fld not in meta:  # not visible: not compared
            continue
        targets = meta[fld].get("referenceTo") or list(rb.sizes)
        for target in targets:
            if target in rb.sizes and target not in rb.indexed:
                rb.indexed.add(target)
                rb.queries += 1
                for rec in client.query_all_iter(f"SELECT Id, {EXT} FROM {target} WHERE {EXT} != null"):
                    rb.by_id[short(rec["Id"]) or ""] = (target, str(rec.get(EXT)))


#: Values per ``IN (...)`` of a scoped read (:func:`index_targets`, :func:`scope`).
IN_CHUNK = 200


def _literal(value: str) -> str:
    """A SOQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _index_ids(client: Any, rb: ReadBack, ids: Iterable[str], targets: Iterable[str]) -> None:
    """Scoped: index the records of ``ids`` (as the org gives them) among ``targets``, by ``Id IN (...)``;
    those found in none are :attr:`ReadBack.unresolved`."""
    todo = sorted({i for i in ids if short(i) not in rb.by_id})
    for target in targets:
        for start in range(0, len(todo), IN_CHUNK):
            part = ", ".join(_literal(i) for i in todo[start:start + IN_CHUNK])
            rb.queries += 1
            for rec in client.query_all_iter(f"SELECT Id, {EXT} FROM {target} WHERE Id IN ({part})"):
                if rec.get(EXT) is not None:
                    rb.by_id[short(rec["Id"]) or ""] = (target, str(rec[EXT]))
        todo = [i for i in todo if short(i) not in rb.by_id]
    rb.unresolved.update(short(i) or "" for i in todo)


def scope(client: Any, rb: ReadBack) -> None:
    """Scope ``rb``'s Id index to a subset (the sample; read by object, after :func:`index`): lookup
    targets are indexed for the Clio ids the subset's records are expected to point at only
    (:func:`index_targets` with ``keys``), and an Id met that is not indexed is read by Id from the
    objects its field may point at (:meth:`ReadBack.link_key`, one query per object; the attendees
    of the subset's entries when their relations are read, :func:`read_links`): the comparison's
    answers are those of an index of the org's whole target tables."""
    rb.scoped = True

    rb.resolver = lambda sf_id, targets: _index_ids(client, rb, [sf_id], targets)


def select(client: Any, rb: ReadBack, wanted: Mapping[str, Iterable[str]]) -> None:
    """The fields to read of each sobject of ``wanted`` when the comparison reaches it (read by
    object: after :func:`index`), with the notes of what cannot be read."""
    for sobject, fields in sorted(wanted.items()):
        cols = _columns(client, rb, sobject, fields)
        if cols is not None:
            rb.columns[sobject] = cols


def _stream_fields(client: Any, rb: ReadBack, sobject: str) -> Iterator[dict[str, Any]]:
    """The records of one sobject with the columns :func:`select` chose, one at a time (read by object)."""
    rb.queries += 1
    for rec in client.query_all_iter(f"SELECT {', '.join(rb.columns[sobject])} FROM {sobject} WHERE {EXT} != null"):
        yield flatten(rec)


def read_link_targets(client: Any, rb: ReadBack, wanted: Mapping[str, Iterable[str]]) -> None:
    """Index (Id → Clio_Id__c) the records lookups point at that were not read back themselves.

    A delta window verifies a few records whose parents (a contact's company Account, a matter's
    client) are not in the window: their external ids are read by Id, from the objects each lookup
    field may reference (its describe's ``referenceTo``)."""
    pending: dict[str, set[str]] = defaultdict(set)  # target sobject -> Ids not indexed yet
    for sobject, fields in wanted.items():
        meta = rb.meta.get(sobject, {})
        for fld in fields:
            targets = [t for t in (meta.get(fld, {}).get("referenceTo") or ()) if t != "User"]
            if not targets:
                continue
            for rec in rb.records.get(sobject, {}).values():
                sid = short(rec.get(fld))
                if sid and sid not in rb.by_id:
                    for t in targets:
                        pending[t].add(str(rec[fld]))
    for target, ids in sorted(pending.items()):
        try:
            meta = rb.meta.setdefault(target, describe(client, target))
        except LookupError as exc:
            rb.notes.append(str(exc))
            continue
        if EXT not in meta:
            continue
        todo = sorted(i for i in ids if short(i) not in rb.by_id)
        for start in range(0, len(todo), 200):
            part = ", ".join(f"'{i}'" for i in todo[start:start + 200])
            rb.queries += 1
            for rec in client.query_all_iter(f"SELECT Id, {EXT} FROM {target} WHERE Id IN ({part})"):
                if rec.get(EXT):
                    rb.by_id.setdefault(short(rec["Id"]) or "", (target, str(rec[EXT])))


def read_users(client: Any, rb: ReadBack) -> None:
    """Users count as lookup targets (OwnerId, MemberId, RelationId): index them as ``user:<Id>``."""
    rb.queries += 1
    for rec in client.query_all_iter("SELECT Id FROM User"):
        sid = short(rec["Id"]) or ""
        rb.by_id.setdefault(sid, ("User", f"user:{sid}"))


#: The record a team member or event relation belongs to.
LINK_PARENT = {"CaseTeamMember": "Case", "OpportunityTeamMember": "Opportunity", "EventRelation": "Event",
               "AccountContactRelation": "Contact"}


#: The lookup of each natural-key child to the record it belongs to (its field, its relationship) and to
#: the member (Salesforce's standard objects: fixed names).
LINK_FIELDS = {"CaseTeamMember": ("ParentId", "Parent", "MemberId"),
               "OpportunityTeamMember": ("OpportunityId", "Opportunity", "UserId"),
               "EventRelation": ("EventId", "Event", "RelationId"),
               "AccountContactRelation": ("ContactId", "Contact", "AccountId")}


def ids_in(client: Any, rb: ReadBack, sobject: str, keep: Any) -> set[str]:
    """The Ids (15 characters) of the records of ``sobject`` whose Clio id is in ``keep`` (a subset's
    records: ``run.SubsetKeys``); none when it cannot be read back."""
    if sobject not in rb.sizes:
        return set()
    rb.queries += 1
    return {short(rec["Id"]) or "" for rec in client.query_all_iter(f"SELECT Id, {EXT} FROM {sobject} WHERE {EXT} != null")
            if str(rec.get(EXT)) in keep}


def read_links(client: Any, rb: ReadBack, sobjects: Iterable[str], parents: set[str] | None = None,
               keys: Iterable[str] | None = None, part: Any = None) -> None:
    """Team members, event relations and account-contact relations of the records read back (whole tables,
    streamed).

    ``parents``: keep only those of these records (Ids, 15 characters: a subset's matters or entries,
    :func:`ids_in`); the rest of the table is read and skipped. ``keys``: the Clio ids the attendees are
    expected to be (scoped: :func:`index_targets`). ``part`` (``source.Part`` of more than one: a group
    compared in parts): those of the records of that part, by the Clio id of the record each belongs to
    (``EventRelation.Event.Clio_Id__c``...): the first part asked reads each table once from the org and
    writes each row to its part's file (:class:`Spool`); every part reads its own file."""
    for sobject in sobjects:
        parent, rel, member = LINK_FIELDS[sobject]
        spooled = part is not None and part.count > 1
        name = f"links:{sobject}"
        if spooled and name in rb.spools and rb.spools[name].count == part.count:
            rows: Iterable[tuple[str, Any]] = rb.spools[name].read(part.index)
        else:
            try:
                meta = rb.meta.setdefault(sobject, describe(client, sobject))
            except LookupError as exc:
                rb.notes.append(str(exc))
                meta = None
            if meta is not None and (parent not in meta or member not in meta):
                rb.notes.append(f"{sobject}: {parent}/{member} not visible: not read back")
                meta = None
            if meta is None:
                if spooled:  # noted once for the group, not for each part
                    rb.spools[name] = Spool(part.count)
                continue
            if sobject == "EventRelation":  # attendees are compared by the Clio id of the relation
                index_targets(client, rb, sobject, [member], keys)
            rb.queries += 1
            if spooled:
                spool = rb.spools[name] = Spool(part.count)
                spool.fill(_parted_links(client, sobject, part))
                rows = spool.read(part.index)
            else:
                rows = ((short(rec.get(parent)) or "", rec.get(member))
                        for rec in client.query_all_iter(f"SELECT Id, {parent}, {member} FROM {sobject}"))
        members: dict[str, str] = {}  # one string per contact or user (a firm's attendees are few people)
        unknown: set[str] = set()  # scoped: attendees not indexed (their Ids as the org gives them)
        for p, raw in rows:
            if parents is not None and p not in parents:
                continue
            m = short(raw) or ""
            m = members.setdefault(m, m)
            if sobject == "EventRelation":
                rb.relations[p].append(m)
                if rb.scoped and m and m not in rb.by_id:
                    unknown.add(str(raw))
            elif sobject == "AccountContactRelation":
                rb.accounts[p].append(m)
                if m and m not in rb.by_id:  # an Account outside the records read (a window's): read by Id
                    unknown.add(str(raw))
            else:
                rb.team[p].append((m, sobject))
        if unknown:
            _index_ids(client, rb, unknown, rb.link_targets(sobject, member) or ["Account"])


def _parted_links(client: Any, sobject: str, part: Any) -> Iterator[tuple[int, tuple[str, Any]]]:
    """Every row of a natural-key child table with the part of the Clio id of the record it belongs to
    (read through the relationship: ``Event.Clio_Id__c``); a row whose record has none is in no part
    (no record without a Clio id is compared)."""
    parent, rel, member = LINK_FIELDS[sobject]
    for rec in client.query_all_iter(f"SELECT Id, {parent}, {member}, {rel}.{EXT} FROM {sobject}"):
        ref = rec.get(rel)
        key = ref.get(EXT) if isinstance(ref, Mapping) else rec.get(f"{rel}.{EXT}")
        if key is not None:
            yield part.of(str(key)), (short(rec.get(parent)) or "", rec.get(member))
