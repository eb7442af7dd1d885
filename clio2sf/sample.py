"""Choose a representative, relationship-closed slice of staged records for the sample run.

The choice is deterministic for a seed and independent of the order records were staged in
(bottom-k by a keyed hash, stratified by record type). It streams each object at most once, parsing
only the fields it reads (:func:`index_decoder`), and keeps per record a few compact columns (Clio id,
stratum, matter id, parent references: :class:`_Table`), never a record: the quota rounds, the
closure and the smaller retries are decided from those.

Closure: every parent of a chosen record is chosen too (a time entry brings its matter, the
matter its client, the client its company, a bill its matters and client, …), repeated until
nothing new is needed. Parents that are not staged are reported in ``Sample.missing``.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

Envelope = dict[str, Any]
Index = Callable[[str], Iterable[Envelope]] | Mapping[str, Iterable[Envelope]]


@dataclass(frozen=True)
class Ref:
    """A parent reference: ``path`` in ``data`` → ``parent`` object.

    ``path`` is a tuple of keys; ``"*"`` walks every item of a list. ``only_type`` keeps
    items whose ``type`` equals it (attendees, senders: Contact vs User).
    """

    path: tuple[str, ...]
    parent: str
    only_type: str | None = None


def _r(path: str, parent: str, only_type: str | None = None) -> Ref:
    return Ref(tuple(path.split(".")), parent, only_type)


#: child object → its parent references (paths in the Clio record as staged).
PARENTS: dict[str, tuple[Ref, ...]] = {
    "contacts": (_r("company.id", "contacts"), _r("related_contacts.*.id", "contacts", "Company")),
    "matters": (_r("client.id", "contacts"),),
    "activity_rates": (_r("contact_id", "contacts"),),
    "relationships": (_r("matter.id", "matters"), _r("contact.id", "contacts")),
    "activities": (_r("matter.id", "matters"), _r("vendor.id", "contacts"), _r("bill.id", "bills")),
    "bills": (_r("client.id", "contacts"), _r("matters.*.id", "matters")),
    "line_items": (_r("bill.id", "bills"), _r("matter.id", "matters"), _r("activity.id", "activities")),
    "bank_transactions": (_r("client.id", "contacts"), _r("matter.id", "matters"), _r("bill.id", "bills")),
    "trust_line_items": (_r("bill.id", "bills"), _r("matter.id", "matters"), _r("client.id", "contacts")),
    "documents": (_r("matter.id", "matters"), _r("contact.id", "contacts")),
    "calendar_entries": (_r("matter.id", "matters"), _r("attendees.*.id", "contacts", "Contact"),
                         _r("parent_calendar_entry_id", "calendar_entries")),
    "tasks": (_r("matter.id", "matters"),),
    "matter_notes": (_r("matter.id", "matters"),),
    "contact_notes": (_r("contact.id", "contacts"),),
    "communications": (_r("matter.id", "matters"), _r("senders.*.id", "contacts", "Contact"),
                       _r("receivers.*.id", "contacts", "Contact")),
    "allocations": (_r("bill.id", "bills"), _r("matter.id", "matters"), _r("contact.id", "contacts"),
                    _r("parent.id", "credit_memos", "CreditMemo")),
    "credit_memos": (_r("contact.id", "contacts"),),
    "interest_charges": (_r("bill.id", "bills"), _r("matters.*.id", "matters")),
    "outstanding_client_balances": (_r("contact.id", "contacts"),),
    "damages": (_r("matter.id", "matters"),),
    "medical_records_details": (_r("matter.id", "matters"), _r("medical_provider.id", "contacts")),
}

#: Small configuration objects every sampled record may look up: passed through whole.
REFERENCE_OBJECTS: frozenset[str] = frozenset({
    "users", "practice_areas", "matter_stages", "custom_fields", "activity_descriptions",
    "expense_categories", "task_types", "bank_accounts",
})

#: How many records each object contributes before closure (the total lands in 200–500).
DEFAULT_QUOTAS: dict[str, int] = {
    "matters": 30, "contacts": 20, "relationships": 15, "activities": 40, "bills": 15,
    "line_items": 10, "bank_transactions": 10, "trust_line_items": 5, "documents": 15,
    "calendar_entries": 12, "tasks": 12, "matter_notes": 8, "contact_notes": 6,
    "communications": 12, "activity_rates": 5,
}

#: Objects whose records are spread over types so each kind shows up.
STRATA: dict[str, str] = {
    "activities": "type", "contacts": "type", "matters": "status", "bills": "state",
    "communications": "type", "bank_transactions": "type",
}

#: Quota pass order: matters first, so children prefer records of chosen matters.
ORDER: tuple[str, ...] = (
    "matters", "relationships", "activities", "bills", "line_items", "bank_transactions",
    "trust_line_items", "documents", "calendar_entries", "tasks", "matter_notes",
    "communications", "contact_notes", "contacts", "activity_rates",
)


@dataclass
class Sample:
    """The chosen ids per object, plus what could not be closed."""

    ids: dict[str, set[int]]
    seed: int
    passthrough: frozenset[str] = REFERENCE_OBJECTS
    missing: dict[str, set[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.ids.values())

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.ids.items())}

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "ids": {k: sorted(v) for k, v in sorted(self.ids.items())},
                "missing": {k: sorted(v) for k, v in sorted(self.missing.items()) if v},
                "passthrough": sorted(self.passthrough)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Sample:
        return cls(ids={k: set(v) for k, v in doc["ids"].items()}, seed=int(doc["seed"]),
                   passthrough=frozenset(doc.get("passthrough", REFERENCE_OBJECTS)),
                   missing={k: set(v) for k, v in doc.get("missing", {}).items()})

    def includes(self, obj: str, clio_id: int) -> bool:
        return obj in self.passthrough or clio_id in self.ids.get(obj, ())


def clio_id_of(envelope: Envelope, obj: str = "?") -> int:
    """The integer Clio id of an envelope; a bad one raises naming the record."""
    raw = envelope.get("clio_id")
    if raw is None:
        raw = (envelope.get("data") or {}).get("id")
    try:
        return int(raw)
    except (TypeError, ValueError):
        ssid = envelope.get("source_system_id", "<no source_system_id>")
        raise ValueError(f"{obj}: {ssid}: clio_id {raw!r} is not an integer id") from None


def _walk(node: Any, path: tuple[str, ...], only_type: str | None) -> Iterator[Any]:
    if not path:
        if node is not None:
            yield node
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for item in node or ():
            if only_type is not None and rest == ("id",) and isinstance(item, dict) and item.get("type") != only_type:
                continue
            yield from _walk(item, rest, only_type)
    elif isinstance(node, dict):
        child = node.get(head)
        if only_type is not None and rest == ("id",) and isinstance(child, dict) and child.get("type") != only_type:
            return  # a polymorphic reference of another kind (an allocation's parent: a payment)
        yield from _walk(child, rest, only_type)


def parent_refs(obj: str, data: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(parent object, parent id) pairs referenced by one Clio record."""
    out = []
    for ref in PARENTS.get(obj, ()):
        only = ref.only_type
        for value in _walk(data, ref.path, only):
            if isinstance(value, bool):
                continue
            try:
                out.append((ref.parent, int(value)))
            except (TypeError, ValueError):
                raise ValueError(f"{obj}: record {data.get('id')!r}: {'.'.join(ref.path)} "
                                 f"is not an id ({type(value).__name__})") from None
    # Contact- and matter-type custom field values hold the referenced record's id as text.
    for cfv in data.get("custom_field_values") or ():
        parent = {"contact": "contacts", "matter": "matters"}.get((cfv or {}).get("field_type"))
        value = (cfv or {}).get("value")
        if parent and isinstance(value, str) and value.strip().isdigit():
            out.append((parent, int(value)))
    return out


def _rank(seed: int, obj: str, clio_id: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{obj}:{clio_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _stream(index: Index, obj: str) -> Iterable[Envelope]:
    if callable(index):
        return index(obj)
    if obj in index:
        value = index[obj]
        if isinstance(value, Iterator):
            raise TypeError(f"index[{obj!r}] is a one-shot iterator; the sample's check and filter read "
                            "the objects again: pass a callable or a list")
        return value
    return ()


def _objects(index: Index) -> list[str]:
    if callable(index):
        return list(ORDER)
    return [o for o in ORDER if o in index]


def _data_fields(obj: str) -> tuple[str, ...]:
    """The fields of ``data`` the choice reads of one object's records (id, stratum, matter, parents)."""
    names = {"id", "matter", "custom_field_values", *(ref.path[0] for ref in PARENTS.get(obj, ()))}
    if obj in STRATA:
        names.add(STRATA[obj])
    return tuple(sorted(names))


_DECODERS: dict[str, msgspec.json.Decoder] = {}


def index_decoder(obj: str) -> msgspec.json.Decoder:
    """A decoder of staged envelopes (``clio2sf.staging.read_jsonl_gz``) that keeps only what
    :func:`choose_sample` reads of ``obj``'s records: msgspec skips the rest of each record."""
    if obj not in _DECODERS:
        data = msgspec.defstruct(f"SampleData_{obj}", [(f, Any, None) for f in _data_fields(obj)])
        env = msgspec.defstruct(f"SampleEnvelope_{obj}", [("clio_id", Any, None), ("source_system_id", Any, None),
                                                          ("data", data | None, None)])
        _DECODERS[obj] = msgspec.json.Decoder(env)
    return _DECODERS[obj]


def _plain(envelope: Any) -> Envelope:
    """An envelope as a dict: one :func:`index_decoder` parsed keeps its few fields (``None`` as absent)."""
    if isinstance(envelope, msgspec.Struct):
        data = envelope.data  # type: ignore[attr-defined]
        return {"clio_id": envelope.clio_id, "source_system_id": envelope.source_system_id,  # type: ignore[attr-defined]
                "data": None if data is None else msgspec.structs.asdict(data)}
    return envelope


#: Parent objects a reference may name (codes of :attr:`_Table.ref_obj`).
_PARENT_NAMES: tuple[str, ...] = tuple(sorted({r.parent for refs in PARENTS.values() for r in refs}
                                              | {"contacts", "matters"}))
_PARENT_CODE = {name: i for i, name in enumerate(_PARENT_NAMES)}
_NO_MATTER = -(2 ** 63)


def _ids() -> array[int] | list[int]:
    return array("q")


def _push(column: Any, value: int) -> Any:
    """Append an id to a compact column; an id too large for 8 bytes turns the column into a list."""
    try:
        column.append(value)
    except OverflowError:
        column = list(column)
        column.append(value)
    return column


class _Table:
    """What the choice needs of one object's records, read in one stream, in stream order and in
    compact columns (a few dozen bytes a record, no record kept): the Clio id, the stratum (a byte until
    a 256th value) and the parent references; a record's matter id is its first matter reference
    (:attr:`matters`; the few records whose matter is another kept apart); the seed's rank is computed when
    a round asks (:meth:`rank`). The quota and closure rounds of
    :func:`choose_sample` (and each smaller retry) are decided from these, not by reading again."""

    def __init__(self, obj: str, envelopes: Iterable[Any], seed: int) -> None:
        self.obj = obj
        strat_key = STRATA.get(obj)
        cids: Any = _ids()
        self.seed = seed
        has_matter = False  # a record names a matter (else :attr:`matters` is None)
        self.matter_other: dict[int, int] = {}  # position → its matter when not its first matter reference
        # the matter is not kept twice: it is the first matter reference (objects whose records name one)
        matter_code = _PARENT_CODE["matters"] if _r("matter.id", "matters") in PARENTS.get(obj, ()) else -1
        self.strata: array[int] = array("B")  # stratum codes: one byte each until a 256th value
        self.values: list[Any] = []  # stratum code → value
        codes: dict[Any, int] = {}
        ref_obj = array("B")
        ref_id: Any = _ids()
        self.ref_end = array("I")
        self.errors: dict[int, ValueError] = {}  # position → a record whose references are not ids
        for pos, raw in enumerate(envelopes):
            env = _plain(raw)
            cid = clio_id_of(env, obj)
            data = env.get("data") or {}
            cids = _push(cids, cid)
            matter = (data.get("matter") or {}).get("id") if isinstance(data.get("matter"), dict) else None
            key = _matter_key(matter)
            has_matter = has_matter or key != _NO_MATTER
            if strat_key:
                stratum = data.get(strat_key)
                if stratum not in codes:
                    codes[stratum] = len(self.values)
                    self.values.append(stratum)
                try:
                    self.strata.append(codes[stratum])
                except OverflowError:
                    self.strata = array("I", self.strata)
                    self.strata.append(codes[stratum])
            try:
                refs = parent_refs(obj, data)
            except ValueError as exc:
                self.errors[pos] = exc
                refs = []
            first: int | None = None
            for parent, pid in refs:
                code = _PARENT_CODE[parent]
                if code == matter_code and first is None:
                    first = pid
                ref_obj.append(code)
                ref_id = _push(ref_id, pid)
            if (_NO_MATTER if first is None else first) != key:
                self.matter_other[pos] = key
            self.ref_end.append(len(ref_obj))
        self.cids, self.ref_obj, self.ref_id = cids, ref_obj, ref_id
        self.has_matter, self.matter_code = has_matter, matter_code
        self._by_rank: dict[int, array[int]] = {}  # stratum code → positions, best rank first
        self._by_id: tuple[array[int] | None, Any] | None = None  # (positions, their ids) in id order

    def __len__(self) -> int:
        return len(self.cids)

    @property
    def matters(self) -> Iterable[int] | None:
        """The matter id of each record in position order (``_NO_MATTER``: none), read from its first
        matter reference (:attr:`matter_other`: those whose matter is another); None when no record
        names a matter."""
        return self._matters() if self.has_matter else None

    def _matters(self) -> Iterator[int]:
        other, ref_obj, ref_id, code = self.matter_other, self.ref_obj, self.ref_id, self.matter_code
        start = 0
        for pos, end in enumerate(self.ref_end):
            if pos in other:
                yield other[pos]
            else:
                yield next((ref_id[i] for i in range(start, end) if ref_obj[i] == code), _NO_MATTER)
            start = end

    def refs(self, pos: int) -> list[tuple[str, int]]:
        if pos in self.errors:
            raise self.errors[pos]
        start = self.ref_end[pos - 1] if pos else 0
        return [(_PARENT_NAMES[self.ref_obj[i]], self.ref_id[i]) for i in range(start, self.ref_end[pos])]

    def position(self, cid: int) -> int | None:
        """The position of the first record with Clio id ``cid`` (None: not staged); the index by id
        (the ids themselves when staged in id order, else sorted ids and positions: 12 bytes a record)
        is built on first use."""
        if self._by_id is None:
            cids = self.cids
            if all(a <= b for a, b in zip(cids, itertools.islice(cids, 1, None), strict=False)):
                self._by_id = (None, cids)  # staged in id order (as Clio pages): the ids are the index
            else:
                order = sorted(range(len(cids)), key=cids.__getitem__)
                keys: Any = _ids()
                for i in order:
                    keys = _push(keys, cids[i])
                self._by_id = (array("I", order), keys)
        order, keys = self._by_id
        at = bisect.bisect_left(keys, cid)
        if at < len(keys) and keys[at] == cid:
            return at if order is None else order[at]
        return None

    def by_rank(self, code: int) -> Iterator[int]:
        """Positions of one stratum's records (code 0 when not stratified), best (lowest) rank first;
        equal ranks (a record staged twice) in stream order. The best :data:`RANKED` are kept once
        found (no sort of the whole object); a round reading past them sorts the stratum."""
        strata, rank = self.strata, self.rank

        def positions() -> Iterable[int]:
            return (i for i, s in enumerate(strata) if s == code) if strata else range(len(self.cids))

        if code not in self._by_rank:
            self._by_rank[code] = array("I", heapq.nsmallest(RANKED, positions(), key=lambda i: (rank(i), i)))
        top = self._by_rank[code]
        yield from top
        if len(top) == RANKED:
            yield from sorted(positions(), key=lambda i: (rank(i), i))[RANKED:]

    def rank(self, pos: int) -> int:
        """The seed's rank of the record at ``pos`` (lower is better; computed, not kept)."""
        return _rank(self.seed, self.obj, self.cids[pos])


#: Positions of each stratum kept in rank order (:meth:`_Table.by_rank`): more than a round reads
#: (a quota plus the records it skips) in all but odd firms.
RANKED = 2048


def _matter_key(matter: Any) -> int:
    """A matter reference as the id compared with chosen matter ids (``_NO_MATTER``: none can match)."""
    if isinstance(matter, float) and matter.is_integer():
        matter = int(matter)
    if isinstance(matter, int) and -(2 ** 63) < matter < 2 ** 63:
        return int(matter)
    return _NO_MATTER


def _quota_pass(table: _Table, quota: int, required: set[int],
                matter_ids: set[int]) -> tuple[set[int], list[tuple[str, int]], set[int]]:
    """One object's round: the required ids plus ``quota`` others, stratified.

    Records of already chosen matters rank first, so children cluster on sampled matters; then by
    the seed's rank, the best ``quota`` of each stratum taken round-robin over the strata.
    Returns (chosen ids, their parent refs, required ids not found).
    """
    cids = table.cids
    chosen: set[int] = set()
    refs: list[tuple[str, int]] = []
    seen_required: set[int] = set()
    if table.errors:  # a record whose references are not ids fails the round that reads it, as streamed
        for pos in sorted(table.errors):
            if quota > 0 or cids[pos] in required:
                raise table.errors[pos]
    if required:
        for pos, cid in enumerate(cids):
            if cid in required and cid not in chosen:
                seen_required.add(cid)
                chosen.add(cid)
                refs.extend(table.refs(pos))
    if quota <= 0 or not len(table):
        return chosen, refs, required - seen_required
    # the best ``quota`` candidates of each stratum: linked to a chosen matter first, then by rank
    codes = range(len(table.values)) if table.obj in STRATA else range(1)
    linked: dict[int, list[int]] = {}
    if matter_ids and table.matters is not None:
        matters, strata = table.matters, table.strata
        for pos, matter in enumerate(matters):
            if matter in matter_ids and cids[pos] not in required:
                linked.setdefault(strata[pos] if strata else 0, []).append(pos)
    ordered: list[tuple[str, list[int]]] = []
    for code in codes:
        best = sorted(linked.get(code, ()), key=lambda p: (table.rank(p), p))[:quota]
        if len(best) < quota:
            taken = set(best)
            for pos in table.by_rank(code):
                if pos in taken or cids[pos] in required:
                    continue
                best.append(pos)
                if len(best) >= quota:
                    break
        if best:
            ordered.append((str(table.values[code]) if table.values else "None", best))
    ordered.sort(key=lambda kv: kv[0])
    lists = [best for _, best in ordered]
    taken_count = 0
    depth = 0
    while taken_count < quota and any(depth < len(h) for h in lists):
        for h in lists:
            if depth < len(h) and taken_count < quota:
                pos = h[depth]
                cid = cids[pos]
                if cid not in chosen:
                    chosen.add(cid)
                    refs.extend(table.refs(pos))
                    taken_count += 1
        depth += 1
    return chosen, refs, required - seen_required


def _choose(table: Callable[[str], _Table], objects: list[str], seed: int, quotas: Mapping[str, int]) -> Sample:
    ids: dict[str, set[int]] = {}
    required: dict[str, set[int]] = {}
    missing: dict[str, set[int]] = {}

    def add_refs(refs: Iterable[tuple[str, int]]) -> None:
        for parent, pid in refs:
            if pid not in ids.get(parent, ()):
                required.setdefault(parent, set()).add(pid)

    for obj in objects:
        need = required.pop(obj, set())
        chosen, refs, not_found = _quota_pass(table(obj), quotas.get(obj, 0), need, ids.get("matters", set()))
        ids.setdefault(obj, set()).update(chosen)
        missing.setdefault(obj, set()).update(not_found)
        add_refs(refs)
    # closure: objects that gained required parents are looked up again until nothing new is needed
    while True:
        pending = {o: r - ids.get(o, set()) - missing.get(o, set()) for o, r in required.items()}
        pending = {o: r for o, r in pending.items() if r}
        required.clear()
        if not pending:
            break
        for obj in sorted(pending):
            chosen, refs, not_found = _quota_pass(table(obj), 0, pending[obj], set())
            ids.setdefault(obj, set()).update(chosen)
            missing.setdefault(obj, set()).update(not_found)
            add_refs(refs)
    return Sample(ids={k: v for k, v in ids.items() if v}, seed=seed,
                  missing={k: v for k, v in missing.items() if v})


def choose_sample(index: Index, *, seed: int = 0, quotas: Mapping[str, int] | None = None,
                  max_total: int = 500) -> Sample:
    """Choose the sample. ``index`` maps an object name to its staged envelopes (re-iterable),
    or is a callable returning a fresh stream per call (envelopes as dicts, or as parsed by
    :func:`index_decoder`).

    Each object is streamed at most once (:class:`_Table`: its ids, strata, matter ids and
    parent references in compact columns); the quota rounds, the closure and the retries are decided
    from those. If the closed sample exceeds ``max_total`` the quotas shrink and the choice is redone;
    when six tries do not bring it within ``max_total`` (a closure that chains most of the firm), each
    candidate is taken with its closure only when that fits (:func:`_choose_within`).
    """
    base = dict(DEFAULT_QUOTAS if quotas is None else quotas)
    tables: dict[str, _Table] = {}

    def table(obj: str) -> _Table:
        if obj not in tables:
            tables[obj] = _Table(obj, _stream(index, obj), seed)
        return tables[obj]

    objects = _objects(index)
    scale = 1.0
    for _ in range(6):
        scaled = {k: max(1, int(v * scale)) if v else 0 for k, v in base.items()}
        sample = _choose(table, objects, seed, scaled)
        if sample.total <= max_total:
            return sample
        scale *= max_total / sample.total * 0.9
    return _choose_within(table, objects, seed, base, max_total)


#: Candidates tried per object and quota record when the budget refuses some (:func:`_choose_within`).
TRIES_PER_PICK = 20
#: One candidate's closure may add at most ``max_total // PICK_SHARE`` records (at least ``PICK_MIN``), so
#: that one pick into a chain cannot take the room of the other objects (:func:`_choose_within`).
PICK_SHARE = 16
PICK_MIN = 8


def _candidates(table: _Table, required: set[int], matter_ids: set[int]) -> Iterator[int]:
    """Positions of ``table`` in the order a quota round prefers them, without the quota's cut: per
    stratum (in order of its value's text) records of chosen matters first, then by rank, taken
    round-robin over the strata."""
    cids = table.cids
    codes = range(len(table.values)) if table.obj in STRATA else range(1)
    linked: dict[int, list[int]] = {}
    if matter_ids and table.matters is not None:
        for pos, matter in enumerate(table.matters):
            if matter in matter_ids and cids[pos] not in required:
                linked.setdefault(table.strata[pos] if table.strata else 0, []).append(pos)

    def stratum(code: int) -> Iterator[int]:
        first = sorted(linked.get(code, ()), key=lambda p: (table.rank(p), p))
        yield from first
        taken = set(first)
        for pos in table.by_rank(code):
            if pos not in taken and cids[pos] not in required:
                yield pos

    named = sorted(((str(table.values[c]) if table.values else "None", c) for c in codes), key=lambda t: t[0])
    streams = [stratum(code) for _, code in named]
    while streams:
        alive = []
        for it in streams:
            pos = next(it, None)
            if pos is not None:
                yield pos
                alive.append(it)
        streams = alive


def _choose_within(table: Callable[[str], _Table], objects: list[str], seed: int, quotas: Mapping[str, int],
                   max_total: int) -> Sample:
    """The choice when shrinking quotas cannot bring the closed sample within ``max_total`` (contact and
    matter custom fields that reference each other chain most of a firm's contacts and matters into one
    closure): the quota rounds in the same order and preference, each candidate taken with its whole
    closure only when that adds at most ``max_total // PICK_SHARE`` records and still fits, so the
    sample stays closed and within ``max_total`` and spans the objects; records of such a chain are left
    out (the budget refuses them)."""
    ids: dict[str, set[int]] = {}
    missing: dict[str, set[int]] = {}
    total = 0
    per_pick = max(PICK_MIN, max_total // PICK_SHARE)  # one candidate's closure may take this many records

    def closure(obj: str, cid: int, budget: int) -> tuple[dict[str, set[int]], dict[str, set[int]]] | None:
        new: dict[str, set[int]] = {}
        gone: dict[str, set[int]] = {}
        count = 0
        stack = [(obj, cid)]
        while stack:
            o, c = stack.pop()
            if c in ids.get(o, ()) or c in new.get(o, ()) or c in missing.get(o, ()) or c in gone.get(o, ()):
                continue
            t = table(o)
            pos = t.position(c)
            if pos is None:
                gone.setdefault(o, set()).add(c)
                continue
            count += 1
            if count > budget:
                return None
            new.setdefault(o, set()).add(c)
            stack.extend(t.refs(pos))
        return new, gone

    for obj in objects:
        quota = quotas.get(obj, 0)
        t = table(obj)
        taken = tries = 0
        for pos in _candidates(t, set(), ids.get("matters", set())) if quota > 0 else ():
            if taken >= quota or tries >= quota * TRIES_PER_PICK:
                break
            cid = t.cids[pos]
            if cid in ids.get(obj, ()):
                continue
            tries += 1
            got = closure(obj, cid, min(max_total - total, per_pick))
            if got is None:
                continue
            new, gone = got
            for o, v in new.items():
                ids.setdefault(o, set()).update(v)
                total += len(v)
            for o, v in gone.items():
                missing.setdefault(o, set()).update(v)
            taken += 1
    return Sample(ids={k: v for k, v in ids.items() if v}, seed=seed,
                  missing={k: v for k, v in missing.items() if v})


def filter_envelopes(sample: Sample, obj: str, envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
    """Yield the envelopes of ``obj`` that belong to the sample (all of a reference object)."""
    if obj in sample.passthrough:
        yield from envelopes
        return
    wanted = sample.ids.get(obj)
    if not wanted:
        return
    for env in envelopes:
        if clio_id_of(env, obj) in wanted:
            yield env


def _gaps(sample: Sample, obj: str, env: Envelope) -> list[str]:
    return [f"{env.get('source_system_id')}: parent {parent} {pid} not in sample"
            for parent, pid in parent_refs(obj, env.get("data") or {})
            if pid not in sample.ids.get(parent, ()) and pid not in sample.missing.get(parent, ())]


def closure_violations(sample: Sample, index: Index) -> list[str]:
    """Chosen records whose parent is neither chosen nor reported missing (empty when closed)."""
    problems = []
    for obj in sorted(sample.ids):
        for env in filter_envelopes(sample, obj, _stream(index, obj)):
            problems.extend(_gaps(sample, obj, env))
    return problems


def staged_index(mroot: Any, objects: Iterable[str]) -> Callable[[str], Iterable[Any]]:
    """The index :func:`choose_sample` reads the staged ``objects`` under ``mroot/raw`` through: one
    fresh stream per call, only the fields the choice reads parsed (:func:`index_decoder`)."""
    from clio2sf.extract import read_records

    objects = list(objects)
    return lambda name: read_records(mroot, name, index_decoder(name)) if name in objects else iter(())


def stage_sample(mroot: Any, objects: Iterable[str], sample: Sample, *, out: str = "sample") -> None:
    """Stage the chosen ``sample`` of the staged ``objects`` under ``mroot/raw``: one raw batch per object
    under ``<out>/raw/`` and ``<out>/selection.json`` (what ``select_sample`` writes).

    Each object's staged records are read once here (after the one read of :func:`choose_sample`
    through :func:`staged_index`) and the records chosen are streamed into the object's batch (only
    its compressed bytes held), the closure checked on them as they pass: a sample that is not closed
    under relationships raises before ``selection.json`` is written.
    """
    from clio2sf import staging
    from clio2sf.extract import read_records

    gaps: list[str] = []

    def checked(name: str) -> Iterator[Envelope]:
        for env in filter_envelopes(sample, name, read_records(mroot, name)):
            if name in sample.ids:
                gaps.extend(_gaps(sample, name, env))
            yield env

    for name in objects:
        folder = mroot / out / "raw" / name
        envs = checked(name)
        first = next(envs, None)
        batches = []
        if first is not None:
            batches.append(staging.write_jsonl_gz(folder / "sample-00001.jsonl.gz", itertools.chain([first], envs)))
        staging.write_json(folder / staging.MANIFEST, {"object": name, "batches": batches, "complete": True})
    if gaps:
        raise RuntimeError(f"sample is not closed under relationships: {gaps[:5]}")
    staging.write_json(mroot / out / "selection.json", sample.to_json())
