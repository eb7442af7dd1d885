"""Choose a representative, relationship-closed slice of staged records for the sample run.

The choice is deterministic for a seed and independent of the order records were staged in
(bottom-k by a keyed hash, stratified by record type). It streams: per object only id sets,
the k best candidates and the parent references of chosen records are held.

Closure: every parent of a chosen record is chosen too (a time entry brings its matter, the
matter its client, the client its company, a bill its matters and client, …), repeated until
nothing new is needed. Parents that are not staged are reported in ``Sample.missing``.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

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
            raise TypeError(f"index[{obj!r}] is a one-shot iterator; the sampler streams objects "
                            "more than once: pass a callable or a list")
        return value
    return ()


def _objects(index: Index) -> list[str]:
    if callable(index):
        return list(ORDER)
    return [o for o in ORDER if o in index]


def _quota_pass(index: Index, obj: str, quota: int, seed: int, required: set[int],
                matter_ids: set[int]) -> tuple[set[int], list[tuple[str, int]], set[int]]:
    """One stream of ``obj``: the required ids plus ``quota`` others, stratified.

    Records of already chosen matters rank first, so children cluster on sampled matters.
    Returns (chosen ids, their parent refs, required ids not found).
    """
    strat_key = STRATA.get(obj)
    heaps: dict[Any, list[tuple[int, int, int, list[tuple[str, int]]]]] = {}
    chosen: set[int] = set()
    refs: list[tuple[str, int]] = []
    seen_required: set[int] = set()
    for env in _stream(index, obj):
        cid = clio_id_of(env, obj)
        data = env.get("data") or {}
        if cid in required:
            seen_required.add(cid)
            if cid not in chosen:
                chosen.add(cid)
                refs.extend(parent_refs(obj, data))
            continue
        if quota <= 0:
            continue
        matter = (data.get("matter") or {}).get("id") if isinstance(data.get("matter"), dict) else None
        linked = 0 if (matter is not None and matter in matter_ids) else 1
        key = (-linked, -_rank(seed, obj, cid))  # max-heap of the worst kept candidate
        stratum = data.get(strat_key) if strat_key else None
        heap = heaps.setdefault(stratum, [])
        item = (key[0], key[1], cid, parent_refs(obj, data))
        if len(heap) < quota:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    # round-robin over strata (best first) until the quota is filled
    ordered = [sorted(h, key=lambda t: (-t[0], -t[1])) for _, h in sorted(heaps.items(), key=lambda kv: str(kv[0]))]
    taken = 0
    depth = 0
    while taken < quota and any(depth < len(h) for h in ordered):
        for h in ordered:
            if depth < len(h) and taken < quota:
                _, _, cid, prefs = h[depth]
                if cid not in chosen:
                    chosen.add(cid)
                    refs.extend(prefs)
                    taken += 1
        depth += 1
    return chosen, refs, required - seen_required


def _choose(index: Index, seed: int, quotas: Mapping[str, int]) -> Sample:
    ids: dict[str, set[int]] = {}
    required: dict[str, set[int]] = {}
    missing: dict[str, set[int]] = {}

    def add_refs(refs: Iterable[tuple[str, int]]) -> None:
        for parent, pid in refs:
            if pid not in ids.get(parent, ()):
                required.setdefault(parent, set()).add(pid)

    objects = _objects(index)
    for obj in objects:
        need = required.pop(obj, set())
        chosen, refs, not_found = _quota_pass(index, obj, quotas.get(obj, 0), seed, need,
                                              ids.get("matters", set()))
        ids.setdefault(obj, set()).update(chosen)
        missing.setdefault(obj, set()).update(not_found)
        add_refs(refs)
    # closure: re-stream objects that gained required parents until nothing new is needed
    while True:
        pending = {o: r - ids.get(o, set()) - missing.get(o, set()) for o, r in required.items()}
        pending = {o: r for o, r in pending.items() if r}
        required.clear()
        if not pending:
            break
        for obj in sorted(pending):
            chosen, refs, not_found = _quota_pass(index, obj, 0, seed, pending[obj], set())
            ids.setdefault(obj, set()).update(chosen)
            missing.setdefault(obj, set()).update(not_found)
            add_refs(refs)
    return Sample(ids={k: v for k, v in ids.items() if v}, seed=seed,
                  missing={k: v for k, v in missing.items() if v})


def choose_sample(index: Index, *, seed: int = 0, quotas: Mapping[str, int] | None = None,
                  max_total: int = 500) -> Sample:
    """Choose the sample. ``index`` maps an object name to its staged envelopes (re-iterable),
    or is a callable returning a fresh stream per call.

    If the closed sample exceeds ``max_total`` the quotas shrink and the choice is redone.
    """
    base = dict(DEFAULT_QUOTAS if quotas is None else quotas)
    scale = 1.0
    for _ in range(6):
        scaled = {k: max(1, int(v * scale)) if v else 0 for k, v in base.items()}
        sample = _choose(index, seed, scaled)
        if sample.total <= max_total:
            return sample
        scale *= max_total / sample.total * 0.9
    return sample


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


def closure_violations(sample: Sample, index: Index) -> list[str]:
    """Chosen records whose parent is neither chosen nor reported missing (empty when closed)."""
    problems = []
    for obj in sorted(sample.ids):
        for env in filter_envelopes(sample, obj, _stream(index, obj)):
            for parent, pid in parent_refs(obj, env.get("data") or {}):
                if pid not in sample.ids.get(parent, ()) and pid not in sample.missing.get(parent, ()):
                    problems.append(f"{env.get('source_system_id')}: parent {parent} {pid} not in sample")
    return problems
