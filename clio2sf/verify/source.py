"""What Salesforce must hold, derived only from the raw Clio extraction and the mapping spec.

Nothing here reads the transform's output rows or what the load sent, and nothing calls the
transform's converters: the spec's declarations (``from``, ``as``, ``map``, ``max``, ``template``,
``const``, ``owner``, ``ref``, ``links``) are interpreted again here, with the documented
derivations the spec cannot express written out (company vs person contacts, billable vs
non-billable time, matter target, calendar owner, recurrence per RFC 5545 with python-dateutil,
team members, attendees, account relations). ``build(raw, spec, users)`` returns an :class:`Expectations`;
``Builder(...).build(objects)`` those of some objects (``Builder.groups()``: the objects that can be
built and compared apart, one group at a time); ``Builder(...).build_parts(objects, count)`` every part
of a group too large to hold (:class:`Part`) in one pass over its raw records, a piece at a time.

Routing and derivation rules (the contract the verifier holds the migration to):

- contacts: ``type == "Company"`` → Account, else Contact; a person's Account is its ``company``,
  else its first related company, else the firm's individual-client account; its
  AccountContactRelations: one to that Account and one to each other company it is related to, no other;
- matters → ``spec.matter_target``; team members: the ``responsible_attorney``,
  ``originating_attorney`` and ``responsible_staff`` users that resolved to a Salesforce user
  (the fallback owner never stands in for one);
- activities: expense types → Expense__c; time entries → Task@time_entries when non-billable or
  no-charge, else Time_Entry__c;
- calendar entries: owned by the Clio user whose calendar is ``calendar_owner`` (a calendar id,
  not a user id: the user is found through the attendee entry of that calendar's email, else the
  calendar's name); attendees: Contacts and the users (calendars) that resolved; a recurring
  entry's occurrences are DTSTART plus the rule's (RFC 5545), minus edited occurrences;
- documents → one ContentVersion (``document-N@vV``) per version: the staged version listing, or
  versions 1..N when only the latest (N) was extracted.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr

from clio2sf.mapping.spec import MappingSpec

EXPENSE_TYPES = frozenset({"ExpenseEntry", "HardCostEntry", "SoftCostEntry"})
TEAM_ROLES = ("responsible_attorney", "originating_attorney", "responsible_staff")
_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(primary|\d+)\])?$")
_TOKEN = re.compile(r"\{([A-Za-z0-9_.\[\]]+)\}")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

#: Clio objects verified record by record, and the spec key(s) they can go to.
ROUTED = ("contacts", "matters", "bills", "bank_transactions", "activities", "calendar_entries", "tasks",
          "communications", "documents", "allocations", "credit_memos", "interest_charges",
          "outstanding_client_balances", "damages", "medical_records_details", "line_items", "trust_line_items")


# ------------------------------------------------------------------ reading the raw extraction


def get_path(data: Any, path: str | None) -> Any:
    """``a.b``, ``list[primary].c``, ``list[0].id`` in a Clio record; None when any step is absent."""
    if not path:
        return None
    cur = data
    for step in path.split("."):
        m = _STEP.match(step)
        if m is None or not isinstance(cur, Mapping):
            return None
        cur = cur.get(m.group(1))
        index = m.group(2)
        if index is None:
            continue
        if not isinstance(cur, list) or not cur:
            return None
        if index == "primary":
            cur = next((x for x in cur if isinstance(x, Mapping) and x.get("primary")), cur[0])
        else:
            cur = cur[int(index)] if int(index) < len(cur) else None
    return cur


def _first(data: Any, paths: str | list[str]) -> tuple[Any, str | None]:
    for p in [paths] if isinstance(paths, str) else paths:
        v = get_path(data, p)
        if v is not None and v != "":
            return v, p
    return None, paths if isinstance(paths, str) else (paths[0] if paths else None)


def _text(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


# ------------------------------------------------------------------ users


@dataclass
class UserReport:
    """The approved user report (mig_03): matched Clio users and those that go to the fallback owner."""

    matched: dict[str, str]                 # Clio user id → Salesforce user id
    listed_fallback: set[str]               # Clio user ids the report lists as not matched
    fallback: str | None

    @classmethod
    def from_files(cls, user_map: Mapping[str, Any], report_csv: str | None) -> UserReport:
        matched: dict[str, str] = {}
        listed: set[str] = set()
        if report_csv:
            for row in csv.DictReader(io.StringIO(report_csv)):
                if row.get("status") == "matched" and row.get("sf_user_id"):
                    matched[str(row["clio_user_id"])] = row["sf_user_id"]
                else:
                    listed.add(str(row["clio_user_id"]))
        else:  # no CSV: users whose owner is the fallback are the listed ones
            fb = user_map.get("fallback_owner")
            for k, v in (user_map.get("users") or {}).items():
                (listed.add(str(k)) if v == fb else matched.__setitem__(str(k), v))
        return cls(matched, listed, user_map.get("fallback_owner"))

    def sf_user(self, clio_user_id: Any) -> str | None:
        return None if clio_user_id is None else self.matched.get(str(clio_user_id))


# ------------------------------------------------------------------ expectations


@dataclass(slots=True)
class FieldExpectation:
    value: Any                  # before normalisation (normalised with the describe's type)
    path: str | None            # the Clio path it came from (for the report)
    kind: str = "text"          # spec ``as`` (text/date/datetime/number/bool/email/json) or "const"/"map"
    contains: bool = False      # the field holds this value among others (an overflow target)


_NOTHING: dict[tuple[Any, str], FieldExpectation] = {}


def _nothing(path: Any, kind: str) -> FieldExpectation:
    """The expectation of an empty field, one instance per path and kind (expectations are never
    changed once made; most fields of most records are empty, and a firm's records are all held)."""
    key = (path if not isinstance(path, list) else tuple(path), kind)
    fx = _NOTHING.get(key)
    if fx is None:
        fx = _NOTHING[key] = FieldExpectation(None, path, kind)
    return fx


@dataclass(slots=True)
class OwnerExpectation:
    clio_user: str | None       # the Clio user who owns the record (None: no user; the fallback owner)
    path: str
    why: str = ""               # how the user was found (calendar owners)


@dataclass(slots=True)
class RecordExpectation:
    sobject: str
    key: str                    # the Clio_Id__c it must carry
    source: str                 # the Clio record (source_system_id)
    clio_object: str
    fields: dict[str, FieldExpectation] = field(default_factory=dict)
    links: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # lookup field → (parent key, path)
    owner: OwnerExpectation | None = None
    reject_rule: str | None = None  # the spec says this record must be rejected (rule)
    left_behind: str | None = None  # the spec's approved not_migrated reason for this record, if any


@functools.lru_cache(maxsize=64)
def _width(count: int) -> int:
    """How many last digits of a Clio number pick its part of ``count`` (:attr:`Part.width`)."""
    return len(str(max(count - 1, 1)))


@dataclass(frozen=True, slots=True)
class Part:
    """Partition ``index`` of ``count`` of a group: the records whose Clio id (without ``#...`` and
    ``@...``: a record, its versions and occurrences fall together) ends in a number whose last
    ``width`` digits are ``index`` modulo ``count``; an id not ending in that many digits is in part 0.
    Digits have no case, so an id differing only in case falls in the same part, and a part other
    than 0 can be asked of the org by its endings (:meth:`endings`: ``Clio_Id__c LIKE '%7'``...). A
    group larger than a cap is built and compared one part at a time (``run.compare_groups``), so its
    expectations are never all held."""

    index: int = 0
    count: int = 1

    @property
    def width(self) -> int:
        return _width(self.count)

    def share(self) -> float:
        """The largest share of a group's numbers a part of ``count`` holds (endings spread evenly)."""
        return -(-(10 ** self.width) // self.count) / 10 ** self.width

    def __contains__(self, key: object) -> bool:
        return self.count <= 1 or self.of(key) == self.index

    def of(self, key: object) -> int:
        """The index of the part of ``count`` that ``key`` (a Clio id) is in."""
        count = self.count
        if count <= 1:
            return 0
        sid = key if key.__class__ is str else str(key)
        if "#" in sid:
            sid = sid.split("#", 1)[0]
        if "@" in sid:
            sid = sid.split("@", 1)[0]
        width = _width(count)
        tail = sid[-width:]
        return int(tail) % count if len(tail) == width and tail.isascii() and tail.isdigit() else 0

    def endings(self) -> list[str] | None:
        """The last digits of the Clio numbers of this part; None for the whole group or part 0 (which
        also holds every id not ending in digits)."""
        if self.count <= 1 or self.index == 0:
            return None
        return [f"{v:0{self.width}d}" for v in range(10 ** self.width) if v % self.count == self.index]


WHOLE = Part()


@dataclass
class Expectations:
    records: dict[tuple[str, str], RecordExpectation] = field(default_factory=dict)
    clio_ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # clio object → ssids
    team: dict[str, dict[str, str]] = field(default_factory=dict)      # matter key → {sf user: role path}
    team_sobject: dict[str, str] = field(default_factory=dict)         # matter key → CaseTeamMember/Opp...
    attendees: dict[str, set[str]] = field(default_factory=dict)       # event key → {"contact-5", "user:005.."}
    accounts: dict[str, set[str]] = field(default_factory=dict)        # person key → its Accounts' Clio ids
    series: dict[str, dict[str, Any]] = field(default_factory=dict)    # series ssid → {"starts": [...], ...}
    notes: list[str] = field(default_factory=list)
    note_at: list[int] = field(default_factory=list)  # each note's raw record (its position in the group)

    def add(self, rec: RecordExpectation) -> RecordExpectation:
        self.records[(rec.sobject, rec.key)] = rec
        return rec

    def extend(self, later: Expectations) -> None:
        """Add the expectations built after these (a later piece of one part, :meth:`Builder.build_parts`):
        the result is what one build of both pieces' records gives (a key built again keeps its place and
        takes the later value, as a build over a Clio id seen twice does)."""
        self.records.update(later.records)
        for obj, ids in later.clio_ids.items():
            self.clio_ids[obj] |= ids
        for mine, theirs in ((self.team, later.team), (self.team_sobject, later.team_sobject),
                             (self.attendees, later.attendees), (self.accounts, later.accounts),
                             (self.series, later.series)):
            mine.update(theirs)
        self.notes += later.notes
        self.note_at += later.note_at

    def size(self) -> int:
        """What these expectations hold, in records: each record and each occurrence start of a series."""
        return len(self.records) + sum(len(s["starts"]) for s in self.series.values())

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled compactly (a part's pieces are written to disk and read back, ``run.compare_parts``):
        each record as a tuple of plain values, not as objects with their attribute names (written and read
        again in less than half the time: activities, tasks and communications of a 400-matter firm, 0.28
        → 0.11 s, against 0.14 s to build them)."""
        series = {sid: {**entry, "template": _flat(entry["template"])} for sid, entry in self.series.items()}
        return _unflat_expectations, ([(k, _flat(rec)) for k, rec in self.records.items()], dict(self.clio_ids),
                                      self.team, self.team_sobject, self.attendees, self.accounts, series, self.notes,
                                      self.note_at)


def _flat(rec: RecordExpectation) -> tuple[Any, ...]:
    owner = rec.owner
    return (rec.sobject, rec.key, rec.source, rec.clio_object,
            [(name, fx.value, fx.path, fx.kind, fx.contains) for name, fx in rec.fields.items()], rec.links,
            None if owner is None else (owner.clio_user, owner.path, owner.why), rec.reject_rule, rec.left_behind)


def _unflat(flat: tuple[Any, ...]) -> RecordExpectation:
    sobject, key, source, clio_object, fields, links, owner, reject_rule, left_behind = flat
    return RecordExpectation(sobject, key, source, clio_object,
                             {name: _nothing(path, kind) if value is None and not contains
                              else FieldExpectation(value, path, kind, contains)
                              for name, value, path, kind, contains in fields}, links,
                             None if owner is None else OwnerExpectation(*owner), reject_rule, left_behind)


def _unflat_expectations(records: list[tuple[Any, tuple[Any, ...]]], clio_ids: dict[str, set[str]], *rest: Any
                         ) -> Expectations:
    team, team_sobject, attendees, accounts, series, notes, note_at = rest
    out = Expectations({k: _unflat(flat) for k, flat in records}, defaultdict(set, clio_ids), team, team_sobject,
                       attendees, accounts, {sid: {**entry, "template": _unflat(entry["template"])}
                                             for sid, entry in series.items()}, notes, note_at)
    return out


def lookup_field(column: str) -> str:
    """The lookup field of a neutral relationship column: ``Case__r.Clio_Id__c`` → ``Case__c``,
    ``Account.Clio_Id__c`` → ``AccountId``, ``Case:What.Clio_Id__c`` → ``WhatId``."""
    rel = column.split(".", 1)[0].split(":")[-1]
    return rel[:-3] + "__c" if rel.endswith("__r") else rel + "Id"


class Builder:
    """Builds expectations from raw envelopes. The parents' compact views (contacts, matters, users)
    are read once (:meth:`index_parents`); :meth:`build` makes new :class:`Expectations` for the
    objects asked each time, streaming their raw batches."""

    def __init__(self, raw: Callable[[str], Iterable[Mapping[str, Any]]], objects: set[str], spec: MappingSpec,
                 users: UserReport, now: datetime,
                 context: Callable[[str], Iterable[Mapping[str, Any]]] | None = None,
                 sizes: Callable[[str], int | None] | None = None) -> None:
        self.raw, self.objects, self.spec, self.users, self.now = raw, objects, spec, users, now
        self.context, self.sizes = context, sizes
        self.part = WHOLE  # the part being built (:meth:`build`)
        self.out = Expectations()
        self.contacts: dict[str, str | tuple[Any, ...]] = {}  # id → COMPANY, or a person's companies (ids)
        self.matters: dict[str, Mapping[str, Any]] = {}  # only when matters go to more than one object
        self.clio_users: dict[str, Mapping[str, Any]] = {}
        self._indexed = False
        self._individual_made = False
        self.passes: Counter[tuple[str, ...]] = Counter()  # objects → passes over their raw records (:meth:`_pass`)
        opts = spec.options
        self.individual = (opts.get("individual_account") or {}).get("clio_id", "individual-client-account")

    # -- spec declarations -------------------------------------------------------------------
    def value_of(self, target: str, fspec: Mapping[str, Any], d: Mapping[str, Any],
                 rec: RecordExpectation, overflow: dict[str, list[str]]) -> None:
        if "owner" in fspec:
            uid = get_path(d, fspec["owner"])
            rec.owner = OwnerExpectation(None if uid is None else str(uid), fspec["owner"])
            return
        if "const" in fspec:
            rec.fields[target] = FieldExpectation(fspec["const"], None, "const")
            return
        if "template" in fspec:
            value, path = self._template(fspec["template"], d), fspec["template"]
        else:
            value, path = _first(d, fspec["from"])
        if value is None or value == "":
            if fspec.get("required"):
                if fspec.get("placeholder") is None and not (target == "LastName" and
                                                              self.spec.options.get("last_name_placeholder")):
                    rec.reject_rule = rec.reject_rule or "required_missing"
                    return
                value = fspec.get("placeholder") or self.spec.options.get("last_name_placeholder")
                rec.fields[target] = FieldExpectation(value, path, "text")
                return
            if "." not in target and not fspec.get("ref"):
                rec.fields.setdefault(target, _nothing(path, fspec.get("as", "text")))
            elif fspec.get("ref"):
                rec.links[lookup_field(target)] = (None, path)
            return
        if fspec.get("ref"):
            rec.links[lookup_field(target)] = (f"{fspec['ref']}-{value}", path)
            return
        kind = fspec.get("as", "text")
        if kind == "json":
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif kind == "email":
            value = _text(value).strip()
            if len(value) > 80 or not _EMAIL.match(value):
                if fspec.get("invalid_to"):
                    rec.fields[fspec["invalid_to"]] = FieldExpectation(value, path, "text")
                rec.fields[target] = _nothing(path, "email")
                return
        elif kind == "text":
            value = _text(value)
        if fspec.get("map"):
            vm = self.spec.value_map(fspec["map"])
            key = _text(value)
            if key in vm.values:
                value = vm.values[key]
            elif vm.on_unknown == "keep":
                value = key
            elif vm.on_unknown == "default" and vm.default is not None:
                value = vm.default
            elif vm.on_unknown == "reject":
                rec.reject_rule = rec.reject_rule or "unknown_value"
                return
            else:
                value = None
            kind = "map"
        limit = fspec.get("max")
        if limit and isinstance(value, str) and len(value) > limit:
            if fspec.get("overflow"):
                overflow[fspec["overflow"]].append(value)
            value = value[:limit]
        rec.fields[target] = FieldExpectation(value, path, kind)

    def _template(self, template: str, d: Mapping[str, Any]) -> str | None:
        out, any_value = template, False
        for m in _TOKEN.finditer(template):
            v = get_path(d, m.group(1))
            any_value = any_value or (v is not None and v != "")
            out = out.replace(m.group(0), "" if v is None else _text(v))
        out = " ".join(out.split())
        return out if any_value and out else None

    def apply_spec(self, key: str, d: Mapping[str, Any], rec: RecordExpectation) -> RecordExpectation:
        ospec = self.spec.objects.get(key) or {}
        overflow: dict[str, list[str]] = defaultdict(list)
        for target, fspec in (ospec.get("fields") or {}).items():
            self.value_of(target, fspec or {}, d, rec, overflow)
        for target in overflow:  # the untruncated value is kept there, with whatever else it held
            rec.fields[target] = FieldExpectation(overflow[target][0], None, "text", contains=True)
        links = ospec.get("links") or {}
        if links.get("matter"):
            self.matter_link(rec, d, links["matter"])
        if links.get("client"):
            cid = get_path(d, links["client"]["from"])
            for kind, value in self.client_refs(cid).items():
                column = links["client"]["columns"].get(kind)
                if column:
                    rec.links[lookup_field(column)] = (value, links["client"]["from"])
        return rec

    def matter_target(self, matter_id: Any) -> str:
        if len(self.spec.matter_objects) == 1:
            return self.spec.matter_objects[0]
        rec = self.matters.get(str(matter_id))
        if rec is None:
            return self.spec.matter_objects[0] if len(self.spec.matter_objects) == 1 else self.spec.options["matter_object"]
        return self.spec.matter_target(rec)

    def matter_link(self, rec: RecordExpectation, d: Mapping[str, Any], link: Mapping[str, Any]) -> None:
        mid = get_path(d, link["from"])
        if mid is None:
            return
        column = link["columns"].get(self.matter_target(mid))
        if column:
            rec.links[lookup_field(column)] = (f"matter-{mid}", link["from"])

    def account_of_person(self, person: Mapping[str, Any]) -> str:
        return self._account_of(_companies_of(person))

    def _account_of(self, companies: tuple[Any, ...]) -> str:
        """A person's Account: its company, else its first related company, that is a company in
        Clio; else the firm's individual-client account."""
        for cid in companies:
            if self._is_company(cid):
                return f"contact-{cid}"
        return self.individual

    def _is_company(self, cid: Any) -> bool:
        return self.contacts.get(str(cid)) == COMPANY

    def client_refs(self, client_id: Any) -> dict[str, str]:
        if client_id is None:
            return {}
        rec = self.contacts.get(str(client_id))
        if rec is None:
            return {"Contact": f"contact-{client_id}"}
        if rec == COMPANY:
            return {"Account": f"contact-{client_id}"}
        return {"Contact": f"contact-{client_id}", "Account": self._account_of(rec)}

    def base(self, sobject: str, key: str, env: Mapping[str, Any], obj: str) -> RecordExpectation:
        d = env.get("data") or {}
        rec = RecordExpectation(sobject, key, env["source_system_id"], obj)
        created = env.get("original_create_date") or d.get("created_at")
        rec.fields["Clio_Created_Date__c"] = FieldExpectation(created, "created_at", "datetime")
        return rec

    # -- per Clio object ---------------------------------------------------------------------
    def run(self) -> Expectations:
        return self.build(self.objects)

    def index_parents(self) -> None:
        """What the derivations of other objects read of contacts, matters and users (:meth:`parent_view`):
        built once, kept while any object is built."""
        if self._indexed:
            return
        self._indexed = True
        names = [("contacts", self.contacts), ("users", self.clio_users)]
        if len(self.spec.matter_objects) > 1:  # else every matter goes to the one object: nothing to read
            names.insert(1, ("matters", self.matters))
        for name, index in names:
            # parents come from the whole extraction (``context``), overlaid by the records verified
            for env in (self.context(name) if self.context is not None else ()):
                if isinstance(env.get("data"), Mapping):
                    index[str(env["data"].get("id"))] = self.parent_view(name, env["data"])
            for env in self.envs(name):
                index[str(env["data"].get("id"))] = self.parent_view(name, env["data"])

    def build(self, objects: Iterable[str], part: Part = WHOLE) -> Expectations:
        """The expectations of the records of ``objects`` (Clio object names), in new
        :class:`Expectations` (the parents' views are shared). ``part``: only the records of that
        partition (:class:`Part`), the raw records of the others read and skipped."""
        [(_, exp)] = list(self._pass(objects, part.count, part.index, None))  # to its end: the targets checked
        return exp

    def build_parts(self, objects: Iterable[str], count: int, flush: int = 5_000) -> Iterator[tuple[int, Expectations]]:
        """Every part of ``count`` (:class:`Part`) of the records of ``objects``, in **one** pass over their raw
        records (each raw batch read once, each record built once): ``(part index, piece)`` pairs, handed out
        whenever the pieces together hold ``flush`` records or occurrence starts (:meth:`Expectations.size`), so
        the pass holds about that much of the group, not the group. A part's pieces come in raw order, and joined
        (:meth:`Expectations.extend`) they are what ``build(objects, Part(index, count))`` gives."""
        return self._pass(objects, count, None, flush)

    def _pass(self, objects: Iterable[str], count: int, only: int | None,
              flush: int | None) -> Iterator[tuple[int, Expectations]]:
        """One pass over the raw records of ``objects``, each built into the expectations of its part of
        ``count``; ``only``: that part's alone (the others' read and skipped), handed out at the end, also
        when empty; else every part, handed out whenever they hold ``flush`` records (None: at the end)."""
        self.index_parents()
        wanted = set(objects)
        self.passes[tuple(sorted(wanted))] += 1
        allowed = set().union(*(self.targets(o) for o in wanted))
        each = [Part(i, count) for i in range(max(1, count))]
        part_of = each[0].of
        home = part_of(self.individual)  # the part the derived individual-client Account is in
        parts: dict[int, Expectations] = {only: Expectations()} if only is not None else {}
        made: set[str] = set()
        held = 0
        self._individual_made = False
        at = itertools.count()
        for obj in ROUTED:
            if obj not in self.objects or obj not in wanted:
                continue
            handler = getattr(self, f"_{obj}", None)
            key = None if handler is not None else self.generic_key(obj)
            for env in self.envs(obj):
                n = next(at)
                sid = env["source_system_id"]
                index = part_of(sid)
                if obj == "contacts" and index != home and only in (None, home):
                    # derived from the people of every part, held by the part its id is in
                    self.out, self.part = parts.setdefault(home, Expectations()), each[home]
                    self._individual_account(env["data"])
                if only is not None and index != only:
                    continue
                out = self.out = parts.setdefault(index, Expectations())
                self.part = each[index]
                size, series, notes = len(out.records), len(out.series), len(out.notes)
                out.clio_ids[obj].add(sid)
                if handler is not None:
                    handler(env, env["data"])
                elif key:
                    out.add(self.apply_spec(key, env["data"], self.base(key.split("@")[0], sid, env, obj)))
                out.note_at += [n] * (len(out.notes) - notes)
                if flush is None:
                    continue
                held += len(out.records) - size
                if len(out.series) > series:
                    held += len(next(reversed(out.series.values()))["starts"])
                if held >= flush:
                    yield from self._hand_out(parts, made)
                    parts, held = {}, 0
        yield from self._hand_out(parts, made)
        self.out, self.part = Expectations(), WHOLE
        if not made <= allowed:  # groups() would have compared a shared sobject before all its sources were built
            raise RuntimeError(f"verifier: {sorted(wanted)} gave records of {sorted(made - allowed)}, not among "
                               f"their targets (Builder.targets)")

    @staticmethod
    def _hand_out(parts: dict[int, Expectations], made: set[str]) -> Iterator[tuple[int, Expectations]]:
        for index, exp in parts.items():
            made.update(so for so, _ in exp.records)
            if exp.series:
                made.add("Event")
            yield index, exp

    def count(self, objects: Iterable[str]) -> int:
        """How many raw records ``objects`` have: ``sizes`` (e.g. the staged manifests), else counted
        by reading them (none kept)."""
        total = 0
        for obj in objects:
            known = self.sizes(obj) if self.sizes is not None and obj in self.objects else None
            total += known if known is not None else sum(1 for _ in self.envs(obj))
        return total

    def targets(self, obj: str) -> set[str]:
        """The Salesforce objects the records of Clio object ``obj`` can be expected in (the routing
        rules above; any other object: its one generic spec key)."""
        fixed = {"contacts": {"Account", "Contact"}, "activities": {"Expense__c", "Task", "Time_Entry__c"},
                 "tasks": {"Task"}, "communications": {"Task"}, "documents": {"ContentVersion"},
                 "calendar_entries": {"Event"}}
        if obj in fixed:
            return fixed[obj]
        if obj == "matters":
            return set(self.spec.matter_objects) | {self.spec.options["matter_object"]}
        key = self.generic_key(obj)
        return {key.split("@")[0]} if key else set()

    def groups(self) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """(Clio objects, Salesforce objects) that can be built and compared apart: Clio objects that
        can send records to one Salesforce object are in one group (Task: activities, tasks and
        communications), so a group's sobjects are compared once all their sources are built."""
        objs = [o for o in ROUTED if o in self.objects]
        groups: list[tuple[set[str], set[str]]] = []
        for obj in objs:
            mine = ({obj}, set(self.targets(obj)))
            for g in [g for g in groups if g[1] & mine[1]]:
                groups.remove(g)
                mine[0].update(g[0])
                mine[1].update(g[1])
            groups.append(mine)
        return [(tuple(o for o in objs if o in g[0]), tuple(sorted(g[1]))) for g in groups]

    def parent_view(self, name: str, d: Mapping[str, Any]) -> Any:
        """What the derivations read of a parent record, not the whole record (a firm's contacts and
        matters would be held in memory): whether a contact is a company (``COMPANY``), else the ids of
        the companies a person's Account may be (:func:`_companies_of`); a matter's target inputs
        (``spec.matter_target``), a user's email and name."""
        if name == "contacts":
            return COMPANY if d.get("type") == "Company" else _companies_of(d)
        if name == "matters":
            cf_name = self.spec.options.get("matter_object_field")
            values = d.get("custom_field_values")
            return {"practice_area": _ids(d.get("practice_area"), "name"),
                    "custom_field_values": [c for c in values if not isinstance(c, Mapping) or c.get("field_name") == cf_name]
                    if cf_name and isinstance(values, list) else None}
        return {"email": d.get("email"), "name": d.get("name")}

    def envs(self, obj: str) -> Iterator[Mapping[str, Any]]:
        if obj not in self.objects:
            return
        for env in self.raw(obj):
            if isinstance(env.get("data"), Mapping) and env.get("source_system_id"):
                yield env

    def generic_key(self, obj: str) -> str | None:
        keys = [k for k, o in self.spec.objects.items()
                if obj in (o.get("source") if isinstance(o.get("source"), list) else [o.get("source")])
                and (o.get("fields") or o.get("links")) and not o.get("natural_key")]
        return keys[0] if len(keys) == 1 else None

    @staticmethod
    def other_details(rec: RecordExpectation, d: Mapping[str, Any]) -> None:
        """Non-primary emails, phones and addresses (other than the secondary ones, which have fields of
        their own) are each kept in Clio_Other_Contact_Details__c."""
        items = [e.get("address") for e in d.get("email_addresses") or ()
                 if not e.get("primary") and e.get("address") and e.get("address") != d.get("secondary_email_address")]
        items += [p.get("number") for p in d.get("phone_numbers") or ()
                  if not p.get("primary") and p.get("number") and p.get("number") != d.get("secondary_phone_number")]
        items += [a.get("street") or a.get("city") for a in d.get("addresses") or ()
                  if not a.get("primary") and (a.get("street") or a.get("city"))]
        if items:
            rec.fields["Clio_Other_Contact_Details__c"] = FieldExpectation(items, "email_addresses", "text",
                                                                           contains=True)

    def _contacts(self, env: Mapping[str, Any], d: Mapping[str, Any]) -> None:
        sid = env["source_system_id"]
        if d.get("type") == "Company":
            rec = self.apply_spec("Account", d, self.base("Account", sid, env, "contacts"))
            self.other_details(rec, d)
            self.out.add(rec)
            return
        rec = self.apply_spec("Contact", d, self.base("Contact", sid, env, "contacts"))
        self.other_details(rec, d)
        rec.links["AccountId"] = (self._individual_account(d) or self.account_of_person(d), "company.id")
        self.out.add(rec)
        if "AccountContactRelation" in self.spec.objects:
            # one AccountContactRelation per Account the person is related to: the direct one to its AccountId,
            # an indirect one to each other company (and no other: a relation Clio does not have is extra)
            self.out.accounts[sid] = {self.account_of_person(d)} | {
                f"contact-{cid}" for cid in _companies_of(d) if self._is_company(cid)}

    def _individual_account(self, d: Mapping[str, Any]) -> str | None:
        """A person without a company goes to the firm's individual-client account, expected once
        (with the first such person); its id when ``d`` is such a person."""
        if d.get("type") == "Company" or self.account_of_person(d) != self.individual:
            return None
        if not self._individual_made and ("Account", self.individual) not in self.out.records \
                and self.individual in self.part:
            self._individual_made = True  # once a build (:meth:`_pass`), whichever piece holds it
            name = (self.spec.options.get("individual_account") or {}).get("name", "Individual Client")
            ind = RecordExpectation("Account", self.individual, self.individual, "(derived)")
            ind.fields["Name"] = FieldExpectation(name, None, "const")
            self.out.records[("Account", self.individual)] = ind
        return self.individual

    def _matters(self, env: Mapping[str, Any], d: Mapping[str, Any]) -> None:
        sid = env["source_system_id"]
        target = self.matter_target(d.get("id"))
        rec = self.apply_spec(target, d, self.base(target, sid, env, "matters"))
        refs = self.client_refs((d.get("client") or {}).get("id"))
        for kind, value in refs.items():
            if target == "Case" or kind == "Account":
                rec.links[f"{kind}Id"] = (value, "client.id")
        area = (d.get("practice_area") or {}).get("name")
        if area and target == "Case" and self.spec.options.get("practice_area_as", "type") == "type":
            vm = self.spec.value_map("practice_area_case_type")
            value = vm.values.get(area, area if vm.on_unknown == "keep" else vm.default)
            rec.fields["Type"] = FieldExpectation(value[:40] if value else None, "practice_area.name", "map")
        self.out.add(rec)
        team_obj = "CaseTeamMember" if target == "Case" else "OpportunityTeamMember"
        if team_obj in self.spec.objects:
            members: dict[str, str] = {}
            for role in TEAM_ROLES:
                people = d.get(role)
                for p in people if isinstance(people, list) else [people] if people else ():
                    sf = self.users.sf_user(p.get("id") if isinstance(p, Mapping) else None)
                    if sf is not None:
                        members.setdefault(sf[:15], role)
            self.out.team[sid] = members
            self.out.team_sobject[sid] = team_obj

    def _activities(self, env: Mapping[str, Any], d: Mapping[str, Any]) -> None:
        sid = env["source_system_id"]
        kind = d.get("type")
        if kind in EXPENSE_TYPES:
            rec = self.apply_spec("Expense__c", d, self.base("Expense__c", sid, env, "activities"))
            rec.fields["Clio_Billable__c"] = FieldExpectation(not bool(d.get("non_billable")), "non_billable", "bool")
        elif kind == "TimeEntry" and (d.get("non_billable") or d.get("no_charge")):
            rec = self.apply_spec("Task@time_entries", d, self.base("Task", sid, env, "activities"))
        elif kind == "TimeEntry":
            rec = self.apply_spec("Time_Entry__c", d, self.base("Time_Entry__c", sid, env, "activities"))
        else:
            rec = self.base("Time_Entry__c", sid, env, "activities")
            rec.reject_rule = "unknown_value"
        self.out.add(rec)

    def _tasks(self, env: Mapping[str, Any], d: Mapping[str, Any]) -> None:
        rec = self.apply_spec("Task", d, self.base("Task", env["source_system_id"], env, "tasks"))
        assignee = d.get("assignee") or {}
        if assignee.get("type") not in (None, "User") and assignee.get("id") is not None:
            rec.links["WhoId"] = (f"contact-{assignee['id']}", "assignee.id")
            rec.owner = OwnerExpectation(None, "assignee", "assigned to a contact: the fallback owner")
        else:
            uid = assignee.get("id")
            rec.owner = OwnerExpectation(None if uid is None else str(uid), "assignee.id")
        # a private Clio task is flagged (compared where the org has the field)
        rec.fields["Clio_Private__c"] = FieldExpectation(d.get("permission") == "private", "permission", "bool")
        self.out.add(rec)

    def _communications(self, env: Mapping[str, Any], d: Mapping[str, Any]) -> None:
        rec = self.apply_spec("Task@communications", d, self.base("Task", env["source_system_id"], env,
                                                                  "communications"))
        vm = self.spec.value_map("communication_subtype")
        sub = vm.values.get(_text(d.get("type")))
        if sub is None and vm.on_unknown == "reject":
            rec.reject_rule = "unknown_value"
        rec.fields["TaskSubtype"] = FieldExpectation(sub, "type", "map")
        rec.fields.pop("CreatedDate", None)  # audit field: checked only where the org allows setting it
        self.out.add(rec)

    def _documents(self, env: Mapping[str, Any], d: Mapping[str, Any]) -> None:
        sid = env["source_system_id"]
        versions = [v for v in d.get("document_versions") or () if isinstance(v, Mapping)]
        latest = d.get("latest_document_version") or {}
        staged = [o.get("data") for o in env.get("versions") or () if isinstance(o, Mapping)]  # the version listing
        if staged and not versions:
            versions = [v for v in staged if isinstance(v, Mapping)
                        and v.get("version_number") != latest.get("version_number")] + [latest]
        if not versions:
            versions = [latest]
            # Clio numbers versions 1..N: the older ones exist even when the extraction only returned the latest
            try:
                newest = int(latest.get("version_number") or 1)
            except (TypeError, ValueError):
                newest = 1
            for n in range(1, newest):
                older = RecordExpectation("ContentVersion", f"{sid}@v{n}", sid, "documents")
                older.fields["Clio_Document_Id__c"] = FieldExpectation(sid, "id", "text")
                older.fields["Clio_Version_Number__c"] = FieldExpectation(n, "latest_document_version.version_number",
                                                                          "number")
                older.left_behind = ((self.spec.data.get("not_migrated") or {}).get("documents") or {}).get(
                    "older_versions")
                if d.get("deleted_at"):
                    older.reject_rule = "deleted_in_clio"
                self.out.records[(older.sobject, older.key)] = older
        for v in versions:
            number = v.get("version_number") or 1
            view = dict(d)
            view["latest_document_version"] = v
            rec = self.apply_spec("ContentVersion", view, self.base("ContentVersion", f"{sid}@v{number}", env,
                                                                    "documents"))
            rec.source = sid
            rec.fields["Clio_Document_Id__c"] = FieldExpectation(sid, "id", "text")
            if d.get("deleted_at"):
                rec.reject_rule = "deleted_in_clio"
            self.out.records[(rec.sobject, rec.key)] = rec

    def _calendar_entries(self, env: Mapping[str, Any], d: Mapping[str, Any]) -> None:
        sid = env["source_system_id"]
        rec = self.apply_spec("Event", d, self.base("Event", sid, env, "calendar_entries"))
        rec.owner = self.calendar_owner(d)
        try:
            start = _aware(d.get("start_at"))
            end = _aware(d.get("end_at")) if d.get("end_at") else start
        except ValueError:
            rec.reject_rule = "bad_datetime"
            self.out.add(rec)
            return
        tz = _zone(d.get("start_at_time_zone"), start)
        attendees = set()
        for att in d.get("attendees") or ():
            if att.get("id") is None:
                continue
            if att.get("type") == "Contact":
                attendees.add(f"contact-{att['id']}")
            else:
                user = self.user_of_calendar(att.get("id"), att)
                sf = self.users.sf_user(user)
                if sf is not None:
                    attendees.add(f"user:{sf[:15]}")
        if d.get("parent_calendar_entry_id") is not None:
            rec.fields["Clio_Series_Id__c"] = FieldExpectation(f"calendar_entry-{d['parent_calendar_entry_id']}",
                                                               "parent_calendar_entry_id", "text")
        rule = d.get("recurrence_rule")
        if not rule:
            self._times(rec, d, start, end, tz)
            self.out.add(rec)
            self.out.attendees[sid] = attendees
            return
        try:
            starts = self.occurrences(start.astimezone(tz), rule, d)
        except (ValueError, TypeError) as exc:
            rec.reject_rule = "bad_recurrence"
            self.out.notes.append(f"{sid}: recurrence rule not expandable ({type(exc).__name__})")
            self.out.add(rec)
            return
        rec.fields["Clio_Series_Id__c"] = FieldExpectation(sid, "id", "text")
        self.out.series[sid] = {"starts": starts, "duration": end - start, "all_day": bool(d.get("all_day")),
                                "tz": tz, "template": rec, "attendees": attendees}

    def _times(self, rec: RecordExpectation, d: Mapping[str, Any], start: datetime, end: datetime, tz: Any) -> None:
        max_days = self.spec.options.get("event_max_days", 14)
        if end - start > timedelta(days=max_days):
            end = start + timedelta(days=max_days)  # clamped (a repair note explains it)
        if d.get("all_day"):
            rec.fields["IsAllDayEvent"] = FieldExpectation(True, "all_day", "bool")
            rec.fields["ActivityDate"] = FieldExpectation(start.date().isoformat(), "start_at", "date")
        else:
            rec.fields["IsAllDayEvent"] = FieldExpectation(False, "all_day", "bool")
            rec.fields["StartDateTime"] = FieldExpectation(start.isoformat(), "start_at", "datetime")
            rec.fields["EndDateTime"] = FieldExpectation(end.isoformat(), "end_at", "datetime")

    def occurrences(self, local_start: datetime, rule: str, d: Mapping[str, Any]) -> list[datetime]:
        """DTSTART and the rule's instances (RFC 5545: DTSTART is the first), edited ones left out.

        Expanded in the entry's zone (wall-clock times across daylight saving changes); an UNTIL in
        UTC (``...Z``) needs an aware DTSTART, a floating UNTIL a floating one: both are accepted.
        """
        opts = self.spec.options
        lines = [ln.strip() for ln in str(rule).replace("\\n", "\n").splitlines() if ln.strip()]
        text = "\n".join(ln if ":" in ln else f"RRULE:{ln}" for ln in lines)
        tz = local_start.tzinfo
        try:
            rset, aware = rrulestr(text, dtstart=local_start, forceset=True), True
        except ValueError:
            rset, aware = rrulestr(text, dtstart=local_start.replace(tzinfo=None), forceset=True), False
        horizon = (self.now + timedelta(days=opts.get("recurrence_horizon_days", 730))).astimezone(tz)
        count = re.search(r"COUNT=(\d+)", str(rule))
        limit = opts.get("recurrence_max_occurrences", 1000)
        first = local_start.replace(microsecond=0)  # the rule's instants are whole seconds
        out = [local_start]
        for inst in rset:
            inst = inst if aware else inst.replace(tzinfo=tz)
            if inst > horizon or len(out) >= limit:
                break
            if inst != first:
                out.append(inst)
        if count:
            out = out[: int(count.group(1))]
        edited = self.edited.get(str(d.get("id")), set())
        return [o for o in out if o.date() not in edited]

    @property
    def edited(self) -> dict[str, set[Any]]:
        if not hasattr(self, "_edited"):
            idx: dict[str, set[Any]] = defaultdict(set)
            for env in self.envs("calendar_entries"):
                c = env["data"]
                if c.get("parent_calendar_entry_id") is not None and c.get("start_at"):
                    try:
                        s = _aware(c["start_at"])
                    except ValueError:
                        continue
                    idx[str(c["parent_calendar_entry_id"])].add(s.astimezone(_zone(c.get("start_at_time_zone"), s)).date())
            self._edited = idx
        return self._edited

    def user_of_calendar(self, calendar_id: Any, ref: Mapping[str, Any] | None) -> str | None:
        """The Clio user a calendar belongs to: by the calendar's email, else its (unique) name."""
        email = (ref or {}).get("email")
        name = (ref or {}).get("name")
        by_email = [u for u, rec in self.clio_users.items()
                    if email and str(rec.get("email") or "").casefold() == str(email).casefold()]
        if len(by_email) == 1:
            return by_email[0]
        by_name = [u for u, rec in self.clio_users.items() if name and rec.get("name") == name]
        return by_name[0] if len(by_name) == 1 else None

    def calendar_owner(self, d: Mapping[str, Any]) -> OwnerExpectation:
        cal = d.get("calendar_owner") or {}
        if cal.get("type") not in (None, "UserCalendar"):
            return OwnerExpectation(None, "calendar_owner", f"a {cal.get('type')}: no Clio user owns it")
        ref = next((a for a in d.get("attendees") or () if a.get("id") == cal.get("id") and a.get("type") != "Contact"),
                   None)
        user = self.user_of_calendar(cal.get("id"), {**cal, **(ref or {})})
        return OwnerExpectation(user, "calendar_owner", f"the user of calendar {cal.get('id')}")


COMPANY = "Company"


def _companies_of(person: Mapping[str, Any]) -> tuple[Any, ...]:
    """The contact ids a person's Account may be, in order: its company, then its related contacts
    of type Company (whether each is a company in Clio is decided by the contacts themselves)."""
    company = person.get("company")
    out = [company.get("id")] if isinstance(company, Mapping) and company.get("id") is not None else []
    for rc in person.get("related_contacts") or ():
        if isinstance(rc, Mapping) and rc.get("type") == "Company" and rc.get("id") is not None:
            out.append(rc["id"])
    return tuple(out)


def _ids(value: Any, *keys: str) -> Any:
    """``value`` reduced to ``keys`` when it is a mapping (anything else as it is)."""
    return {k: value.get(k) for k in keys} if isinstance(value, Mapping) else value


def _aware(value: Any) -> datetime:
    dt = datetime.fromisoformat(str(value).strip())
    if dt.tzinfo is None:
        raise ValueError("naive date-time")
    return dt


def _zone(name: str | None, start: datetime) -> Any:
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return start.tzinfo or UTC


def build(raw: Callable[[str], Iterable[Mapping[str, Any]]], objects: Iterable[str], spec: MappingSpec,
          users: UserReport, now: datetime | None = None,
          context: Callable[[str], Iterable[Mapping[str, Any]]] | None = None) -> Expectations:
    """Expectations for every record of ``objects`` (Clio object names staged under raw).

    ``context``: the whole extraction, read for parents (contacts, matters, users) when ``raw`` is a
    part of it (a delta window).
    """
    return Builder(raw, set(objects), spec, users, now or datetime.now(UTC), context).run()
