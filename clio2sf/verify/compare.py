"""Compare the expectations (``source``) with the read-back (``readback``): values, owners, links,
derived records and exactly-once.

Every comparison is counted; only differences are kept as :class:`Finding` rows. A difference is
*explained* when the rejects report holds a repair note for that record and field (or the record's
quarantine with its reason); anything else is *unexplained* and fails the verify task.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from clio2sf.reconcile import IdSet
from clio2sf.verify import normalise as norm
from clio2sf.verify.readback import EXT, ReadBack, short
from clio2sf.verify.source import WHOLE, Expectations, FieldExpectation, Part, RecordExpectation, UserReport

MISMATCH, EXPLAINED = "mismatch", "explained"
NOT_MAPPED_HERE, NO_SOURCE = "its Clio record does not map to this object", "no Clio record is its source"
#: Fields the org sets itself or the integration user cannot set without a permission: not compared
#: unless the describe says they are createable.
AUDIT = frozenset({"CreatedDate", "LastModifiedDate", "CreatedById", "LastModifiedById"})


@dataclass
class Finding:
    sobject: str
    key: str
    source: str
    field: str
    check: str          # value | owner | link | exists | exactly_once | occurrences | team | attendees | account_relations
    expected: Any
    actual: Any
    status: str         # mismatch | explained
    reason: str
    clio_path: str | None = None


@dataclass
class Rejects:
    """What the rejects report says: quarantined records (with reasons) and repairs per field."""

    quarantined: dict[str, str] = field(default_factory=dict)
    repairs: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_lines(cls, lines: Iterable[Mapping[str, Any]]) -> Rejects:
        out = cls()
        for line in lines:
            ssid = str(line.get("source_system_id") or "")
            if not ssid:
                continue
            if line.get("repair"):
                out.repairs.setdefault((ssid, str(line.get("field") or "")), str(line["repair"]))
                base = ssid.split("#", 1)[0].split("@", 1)[0]
                out.repairs.setdefault((base, str(line.get("field") or "")), str(line["repair"]))
            else:
                out.quarantined.setdefault(ssid, f"{line.get('rule')}: {line.get('message')}")
        return out

    def rejected(self, *ssids: str) -> str | None:
        for s in ssids:
            if s in self.quarantined:
                return self.quarantined[s]
        return None

    def repair(self, ssids: Iterable[str], names: Iterable[str | None]) -> str | None:
        keys = [n for n in names if n]
        for s in ssids:
            for n in keys:
                for k in {n, n.split(".")[0], n.split(".")[-1].split("[")[0], n.split("[")[0]}:
                    if (s, k) in self.repairs:
                        return self.repairs[(s, k)]
        return None


class ClioIds(IdSet):
    """Clio ids (``<kind>-<number>``, e.g. ``contact-12``) held compactly: per kind a sorted array of
    numbers (8 bytes an id; a firm's ids kept across groups), any other id as text (the reconciliation's
    :class:`~clio2sf.reconcile.IdSet`, filled a group at a time)."""

    def update(self, ssids: Iterable[str]) -> None:
        for ssid in ssids:
            self.add(ssid)


@dataclass
class Scope:
    """What a whole group asks of the org, when it is compared a part at a time (:class:`Part`):
    the sobjects it expects records in, the team objects of its matters, whether it has attendees
    or recurring entries (and so which sobjects are read, and where records without an expectation
    count as extra, in every part alike)."""

    sobjects: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)  # CaseTeamMember, OpportunityTeamMember, EventRelation, ACR
    series: bool = False

    @classmethod
    def of(cls, exp: Expectations) -> Scope:
        return cls({so for so, _ in exp.records}, set(exp.team_sobject.values()) |
                   ({"EventRelation"} if exp.attendees or exp.series else set()) |
                   ({"AccountContactRelation"} if exp.accounts else set()), bool(exp.series))

    def update(self, other: Scope) -> None:
        self.sobjects |= other.sobjects
        self.links |= other.links
        self.series = self.series or other.series


@dataclass
class Result:
    findings: list[Finding] = field(default_factory=list)
    records: Counter = field(default_factory=Counter)     # sobject → records compared
    fields: Counter = field(default_factory=Counter)      # sobject → field comparisons
    matches: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def unexplained(self) -> list[Finding]:
        return [f for f in self.findings if f.status == MISMATCH]

    def by_field(self, status: str = MISMATCH) -> Counter:
        return Counter((f.sobject, f.field) for f in self.findings if f.status == status)

    def totals(self) -> dict[str, int]:
        return {"records_compared": sum(self.records.values()), "fields_compared": sum(self.fields.values()),
                "matches": sum(self.matches.values()), "mismatches": len(self.unexplained()),
                "explained": sum(1 for f in self.findings if f.status == EXPLAINED)}


class Comparison:
    """One comparison run over one or more groups of expectations (:meth:`group`), then
    :meth:`result`.

    A firm is compared a group at a time (``source.Builder.groups``: the Clio objects that feed one
    set of sobjects): each group's expectations are built, compared and dropped before the next is
    built. Across groups it keeps only the Clio ids of the groups compared so far (whether a record
    without an expectation is "not mapped here" or "without a Clio source" is decided at the end,
    once every id is known) and the counts and differences."""

    def __init__(self, rb: ReadBack, users: UserReport, rejects: Rejects, horizon_days: int, now: Any,
                 subset: bool = False) -> None:
        self.rb, self.users, self.rejects = rb, users, rejects
        self.exp = Expectations()
        self.subset = subset
        self.res = Result()
        self._notes: list[str] = []
        self.horizon_days, self.now = horizon_days, now
        self._clio_ids = ClioIds()
        self._unsourced: list[tuple[Finding, str]] = []  # exactly-once findings whose Clio id was not known yet

    def add(self, rec: RecordExpectation | None, sobject: str, key: str, fld: str, check: str, expected: Any,
            actual: Any, reason: str, path: str | None = None, explain: str | None = None) -> None:
        source = rec.source if rec else key
        status = EXPLAINED if explain else MISMATCH
        self.res.findings.append(Finding(sobject, key, source, fld, check, norm.display(expected),
                                         norm.display(actual), status, explain or reason, path))

    def count(self, sobject: str, ok: bool) -> None:
        self.res.fields[sobject] += 1
        if ok:
            self.res.matches[sobject] += 1

    # -- one record --------------------------------------------------------------------------
    def record(self, rec: RecordExpectation, sf: Mapping[str, Any] | None, key: str | None = None) -> None:
        key = key or rec.key
        sobject = rec.sobject
        ids = (key, rec.source)
        if sf is None:
            why = self.rejects.rejected(*ids)
            if why is None and sobject == "ContentVersion":  # one version not loaded, with its reason
                why = self.rejects.repair(ids, ["versions"])
            if rec.left_behind:
                self.add(rec, sobject, key, "(record)", "exists", "a record", None, "",
                         explain=f"not migrated (approved): {rec.left_behind}")
            elif why:
                self.add(rec, sobject, key, "(record)", "exists", "a record", None, "", explain=f"rejected: {why}")
            else:
                reason = (f"the spec rejects it ({rec.reject_rule}) but no reject was reported" if rec.reject_rule
                          else "no Salesforce record and no reject with a reason")
                self.add(rec, sobject, key, "(record)", "exists", "a record", None, reason)
            return
        self.res.records[sobject] += 1
        if rec.reject_rule and not self.rejects.rejected(*ids):
            self.add(rec, sobject, key, "(record)", "exists", None, "a record",
                     f"the spec rejects it ({rec.reject_rule}) but it was loaded")
        meta = self.rb.meta.get(sobject, {})
        for fld, fx in rec.fields.items():
            self.value(rec, key, sobject, fld, fx, sf, meta)
        for fld, (parent, path) in rec.links.items():
            if fld not in meta:
                continue
            got = self.rb.link_key(sobject, fld, sf.get(fld)) if sf.get(fld) else None
            ok = (got or "").casefold() == (parent or "").casefold()
            self.count(sobject, ok)
            if not ok:
                explain = self.rejects.repair(ids, [fld, path, fld[:-2] if fld.endswith("Id") else fld])
                parent_why = self.rejects.rejected(parent) if parent and not got else None
                explain = explain or (f"the parent {parent} was rejected ({parent_why})" if parent_why else None)
                self.add(rec, sobject, key, fld, "link", parent, got or sf.get(fld),
                         "the lookup does not point at the record of the Clio parent", path,
                         explain=f"repair: {explain}" if explain else None)
        if rec.owner is not None and "OwnerId" in meta:
            self.owner(rec, key, sf)

    def value(self, rec: RecordExpectation, key: str, sobject: str, fld: str, fx: FieldExpectation,
              sf: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        fmeta = meta.get(fld)
        if fmeta is None or (fld in AUDIT and not fmeta.get("createable")):
            return
        typ = str(fmeta.get("type") or "string")
        scale = fmeta.get("scale") if typ in ("double", "currency", "percent") else None
        length = fmeta.get("length") or None
        actual = sf.get(fld)
        try:
            want = None if fx.contains else norm.normalise(fx.value, typ, scale, length)
        except norm.Unparseable:
            want = norm.text(fx.value)
        try:
            got = norm.normalise(actual, typ, scale, length)
        except norm.Unparseable:
            got = norm.text(actual)
        if fx.contains:  # every expected text appears in the field (an overflow target, a details field)
            parts = fx.value if isinstance(fx.value, list) else [fx.value]
            held = norm.text(actual) if actual is not None else ""
            ok = all(norm.text(p) in held for p in parts if p is not None)
            want = "; ".join(norm.text(p) for p in parts if p is not None) if not ok else want
        else:
            ok = want == got
        self.count(sobject, ok)
        if not ok:
            explain = self.rejects.repair((key, rec.source), [fld, fx.path])
            self.add(rec, sobject, key, fld, "value", want, got, f"Salesforce {typ} differs from Clio", fx.path,
                     explain=f"repair: {explain}" if explain else None)

    def owner(self, rec: RecordExpectation, key: str, sf: Mapping[str, Any]) -> None:
        assert rec.owner is not None
        got = short(sf.get("OwnerId"))
        user = rec.owner.clio_user
        matched = self.users.sf_user(user)
        fallback = short(self.users.fallback)
        if matched:
            ok, want, reason = got == short(matched), short(matched), f"not the Salesforce user of Clio user {user}"
        elif user is not None:
            ok, want = got == fallback and user in self.users.listed_fallback, fallback
            reason = (f"Clio user {user} is not in the user report as going to the fallback owner"
                      if got == fallback else "not the fallback owner")
        else:
            ok, want, reason = got == fallback, fallback, f"no Clio user ({rec.owner.why or rec.owner.path}): not the fallback owner"
        self.count(rec.sobject, ok)
        if not ok:
            self.add(rec, rec.sobject, key, "OwnerId", "owner", want, got, reason, rec.owner.path)

    # -- one group, the whole run -------------------------------------------------------------
    def group(self, exp: Expectations, part: Part = WHOLE, scope: Scope | None = None) -> None:
        """Compare one group's expectations, one sobject at a time: each record the org holds is
        compared as it is read (:meth:`ReadBack.rows`), with the checks that read it (team members of
        a matter, attendees and occurrences of an entry, exactly-once), then dropped; what is left
        after the sobject's last record is missing. Read by object, a record of the org is held only
        while it is compared (a duplicated Clio id's records, and one whose Clio id differs from its
        expectation's only in case, until the end of their sobject).

        Read by object, the sobjects with the fewest records in the org come first and each sobject's
        expectations are dropped from ``exp.records`` once compared.

        ``part``: ``exp`` holds one part of the group (``Builder.build(objects, part)``): only the
        org's records of that part are compared (the others are read and skipped); ``scope``: the
        whole group's (:class:`Scope`), default ``exp``'s."""
        self.exp = exp
        self._notes += exp.notes
        scope = scope or Scope.of(exp)
        for ids in exp.clio_ids.values():
            self._clio_ids.update(ids)
        keys: dict[str, list[str]] = {}
        for sobject, key in self.exp.records:
            keys.setdefault(sobject, []).append(key)
        teams = {"Case" if so == "CaseTeamMember" else "Opportunity" for so in scope.links
                 if so in ("CaseTeamMember", "OpportunityTeamMember")}
        events = {"Event"} if "EventRelation" in scope.links else set()
        by_object = self.rb.loader is not None
        order = sorted(scope.sobjects | teams | events,
                       key=lambda so: (self.rb.sizes.get(so, 0), so) if by_object else (0, so))
        for sobject in order:
            self._sobject(sobject, keys.get(sobject, []), part, scope)
            if by_object:
                for key in keys.get(sobject, ()):
                    del self.exp.records[(sobject, key)]
        self.exp = Expectations()

    def note(self, notes: Iterable[str]) -> None:
        """Notes of the expectations of a group compared in parts (``exp.notes`` of the whole group)."""
        self._notes += notes

    def result(self) -> Result:
        """The counts and differences of every group compared."""
        for finding, base in self._unsourced:
            if base in self._clio_ids:
                finding.reason = NOT_MAPPED_HERE
        self._unsourced.clear()
        self.res.notes = self._notes + list(self.rb.notes)
        if self.subset:  # a sample: the org may hold more than the slice, records without a source are not checked
            self.res.notes.append("subset of Clio (a sample): Salesforce records outside it are not checked")
        return self.res

    def _sobject(self, sobject: str, keys: list[str], part: Part = WHOLE, scope: Scope | None = None) -> None:
        exp = self.exp
        scope = scope or Scope.of(exp)
        series = exp.series if sobject == "Event" else {}
        extras = not self.subset and (sobject in scope.sobjects or (sobject == "Event" and scope.series))
        whole = part.count <= 1
        dups = set(self.rb.duplicates.get(sobject, ()))
        matched: set[str] = set()
        starts: dict[str, dict[Any, str]] = {}      # series → occurrence start → the record's Clio id
        by_case: dict[str, dict[str, Any]] = {}     # case-folded Clio id → a record not matched exactly
        folded: set[str] | None = None
        held: dict[str, dict[str, Any]] = {}        # a duplicated Clio id: its last record

        def one(key: str, row: dict[str, Any]) -> None:
            nonlocal folded
            rec = exp.records.get((sobject, key))
            if rec is not None:
                matched.add(key)
                self.found(rec, row)
                return
            sid = key.split("@", 1)[0] if "@" in key else None
            if sid is not None and sid in series:
                self.occurrence(sid, series[sid], key, row, starts.setdefault(sid, {}))
                return
            if extras:
                self.extra(sobject, key)
            if folded is None:
                folded = {k.casefold() for k in keys}
            if key.casefold() in folded:
                by_case.setdefault(key.casefold(), row)

        for row in self.rb.rows(sobject, part):
            key = str(row.get(EXT))
            if not whole and key not in part:  # another part's record (the query asks about a part): skipped
                continue
            if key in dups:
                held[key] = row
            else:
                one(key, row)
        for key, row in held.items():
            one(key, row)
        for key in keys:
            if key not in matched:
                rec = exp.records[(sobject, key)]
                row = by_case.get(key.casefold())
                self.found(rec, row) if row is not None else self.record(rec, None)
        for sid, entry in series.items():
            self.occurrences(sid, entry, starts.get(sid, {}))
        if extras:
            for key in self.rb.duplicates.get(sobject, ()):
                if key not in part:
                    continue
                self.add(None, sobject, key, "(record)", "exactly_once", "one record", "duplicates",
                         "more than one Salesforce record carries this Clio id")

    def found(self, rec: RecordExpectation, row: dict[str, Any]) -> None:
        """A record and the checks that read it: its matter team, its attendees."""
        self.record(rec, row)
        team = self.exp.team_sobject.get(rec.key)
        if team is not None and rec.sobject == ("Case" if team == "CaseTeamMember" else "Opportunity"):
            self.team(rec.key, self.exp.team[rec.key], row)
        if rec.sobject == "Event" and rec.key in self.exp.attendees:
            self.attendance(rec.key, self.exp.attendees[rec.key], row)
        if rec.sobject == "Contact" and rec.key in self.exp.accounts:
            self.account_relations(rec, self.exp.accounts[rec.key], row)

    def occurrence(self, sid: str, series: Mapping[str, Any], key: str, row: dict[str, Any],
                   starts: dict[Any, str]) -> None:
        """One occurrence of a recurring entry the org holds: its values (the series' template; its end
        is its start plus the series' duration), its attendees; its start is kept for
        :meth:`occurrences`."""
        template: RecordExpectation = series["template"]
        all_day = series["all_day"]
        try:
            st = norm.day(row.get("ActivityDate")) if all_day else norm.instant(row.get("StartDateTime"))
        except norm.Unparseable:
            st = None
        starts[st] = key
        inst = RecordExpectation("Event", key, sid, "calendar_entries", dict(template.fields), dict(template.links),
                                 template.owner)
        if not all_day:
            try:
                start = norm.instant(row.get("StartDateTime"))
                inst.fields["EndDateTime"] = FieldExpectation((start + series["duration"]).isoformat(), "end_at",
                                                              "datetime")
            except norm.Unparseable:
                pass
        self.record(inst, row, key)
        self.attendance(key, series["attendees"], row, source=sid)

    def occurrences(self, sid: str, series: Mapping[str, Any], got: Mapping[Any, str]) -> None:
        """The occurrences of a recurring entry the org holds (``got``: start → Clio id) against DTSTART
        and the rule's (RFC 5545), up to the horizon."""
        template: RecordExpectation = series["template"]
        cutoff = self.now + timedelta(days=self.horizon_days) - timedelta(days=7)
        all_day = series["all_day"]

        def stamp(value: Any) -> Any:
            return norm.day(value) if all_day else norm.instant(value)

        # past the limit, the horizon decides; an all-day entry is compared by day on both sides (its local
        # midnight may fall after the cutoff's instant on the cutoff's own day)
        limit = norm.day(cutoff) if all_day else norm.instant(cutoff)
        want = {st: s for s in series["starts"] if (st := stamp(s.date() if all_day else s)) <= limit}
        self.res.fields["Event"] += len(want)
        first = min(want) if want else None
        for st in want:
            if st in got:
                self.res.matches["Event"] += 1
                continue
            rej = self.rejects.rejected(sid)
            which = "the first occurrence (DTSTART)" if st == first else "an occurrence"
            self.add(template, "Event", f"{sid}@{norm.display(st)}", "StartDateTime", "occurrences",
                     norm.display(st), None, f"{which} of the recurring entry is missing", "recurrence_rule",
                     explain=f"rejected: {rej}" if rej else None)
        for st, k in got.items():
            if st is None or (st not in want and st <= limit):
                self.add(template, "Event", k, "StartDateTime", "occurrences", None, norm.display(st),
                         "an occurrence the rule (RFC 5545) does not give", "recurrence_rule")

    def team(self, sid: str, members: Mapping[str, str], parent: Mapping[str, Any]) -> None:
        sobject = self.exp.team_sobject[sid]
        parent_obj = "Case" if sobject == "CaseTeamMember" else "Opportunity"
        got = {m for m, so in self.rb.team.get(short(parent["Id"]) or "", ()) if so == sobject}
        want = set(members)
        rec = self.exp.records.get((parent_obj, sid))
        self.res.fields[sobject] += len(want | got)
        self.res.matches[sobject] += len(want & got)
        for m in sorted(want - got):
            self.add(rec, sobject, f"{sid}#{m}", "MemberId", "team", m, None,
                     f"the matter's {members[m]} (a resolved Clio user) is not a team member", members[m])
        for m in sorted(got - want):
            extra = "the fallback owner" if m == short(self.users.fallback) else "a user"
            self.add(rec, sobject, f"{sid}#{m}", "MemberId", "team", None, m,
                     f"{extra} is a team member but is none of the matter's resolved users", "responsible_attorney")

    def attendance(self, key: str, people: set[str], event: Mapping[str, Any], source: str | None = None) -> None:
        rels = self.rb.relations.get(short(event["Id"]) or "", [])
        got = set()
        for r in rels:
            k = self.rb.link_key("EventRelation", "RelationId", r)
            got.add(k if k else f"id:{r}")
        owner = f"user:{short(event.get('OwnerId'))}"
        if owner not in people:  # Salesforce may list the owner among the relations
            got.discard(owner)
        self.res.fields["EventRelation"] += len(people | got)
        self.res.matches["EventRelation"] += len(people & got)
        rec = self.exp.records.get(("Event", key)) or self.exp.series.get(source or "", {}).get("template")
        for p in sorted(people - got):
            explain = self.rejects.repair((key, source or key), ["attendees"])
            self.add(rec, "EventRelation", f"{key}#{p}", "RelationId", "attendees", p, None,
                     "an attendee of the Clio entry is not an EventRelation", "attendees",
                     explain=f"repair: {explain}" if explain and p.startswith("contact-") else None)
        for p in sorted(got - people):
            self.add(rec, "EventRelation", f"{key}#{p}", "RelationId", "attendees", None, p,
                     "an EventRelation that is none of the Clio entry's attendees", "attendees")

    def account_relations(self, rec: RecordExpectation, accounts: set[str], contact: Mapping[str, Any]) -> None:
        """A person's AccountContactRelations (by their Account's Clio id) against the Accounts Clio relates it
        to (its company, the companies among its related contacts; else the individual-client account):
        one missing, or one Clio does not have (a company the person left, kept by Salesforce as indirect
        when the Contact's AccountId moved), is a difference."""
        got = set()
        for a in self.rb.accounts.get(short(contact["Id"]) or "", []):
            k = self.rb.link_key("AccountContactRelation", "AccountId", a)
            got.add(k if k else f"id:{a}")
        self.res.fields["AccountContactRelation"] += len(accounts | got)
        self.res.matches["AccountContactRelation"] += len(accounts & got)
        for a in sorted(accounts - got):
            why = self.rejects.rejected(a)
            self.add(rec, "AccountContactRelation", f"{rec.key}#account-{a}", "AccountId", "account_relations", a,
                     None, "an Account the Clio person is related to has no AccountContactRelation", "related_contacts",
                     explain=f"the Account was rejected: {why}" if why else None)
        for a in sorted(got - accounts):
            self.add(rec, "AccountContactRelation", f"{rec.key}#account-{a}", "AccountId", "account_relations", None,
                     a, "an AccountContactRelation to an Account the Clio person is not related to", "related_contacts")

    def extra(self, sobject: str, key: str) -> None:
        """A record of the org no expectation of its group claims (exactly once: every record the org
        holds has one Clio source that maps to it); whether its Clio id is another object's (a group
        not compared yet) is settled in :meth:`result`."""
        base = key.split("#", 1)[0].split("@", 1)[0]
        self.add(None, sobject, key, "(record)", "exactly_once", None, "a record",
                 NOT_MAPPED_HERE if base in self._clio_ids else NO_SOURCE)
        if base not in self._clio_ids:
            self._unsourced.append((self.res.findings[-1], base))


def compare(exp: Expectations, rb: ReadBack, users: UserReport, rejects: Rejects, *, horizon_days: int = 730,
            now: Any = None, subset: bool = False) -> Result:
    """``subset``: the expectations cover part of the firm (a sample): skip "no Clio source" checks.
    With a read-back by object (``readback.read(..., by_object=True)``) ``exp.records`` is consumed
    (each sobject's expectations dropped once compared)."""
    from datetime import UTC, datetime

    comparison = Comparison(rb, users, rejects, horizon_days, now or datetime.now(UTC), subset)
    comparison.group(exp)
    return comparison.result()


def wanted_fields(exp: Expectations) -> dict[str, set[str]]:
    """The fields to read back per sobject: every expected value, lookup and owner."""
    out: dict[str, set[str]] = {}
    recs = list(exp.records.values()) + [s["template"] for s in exp.series.values()]
    for rec in recs:
        cols = out.setdefault(rec.sobject, set())
        cols.update(rec.fields)
        cols.update(rec.links)
        if rec.owner is not None:
            cols.add("OwnerId")
        if rec.sobject == "Event":
            cols.update({"StartDateTime", "EndDateTime", "ActivityDate", "IsAllDayEvent"})
    return out


def link_fields(exp: Expectations) -> dict[str, set[str]]:
    """The lookup fields compared per sobject (their targets must be in the read-back's Id index)."""
    out: dict[str, set[str]] = {}
    for rec in [*exp.records.values(), *(s["template"] for s in exp.series.values())]:
        if rec.links:
            out.setdefault(rec.sobject, set()).update(rec.links)
    return out


def link_parents(exp: Expectations) -> set[str]:
    """The Clio ids the expectations' lookups and attendees are expected to point at: what a subset's
    Id index holds of the objects lookups point at (``readback.index_targets`` scoped)."""
    out: set[str] = set()
    for rec in [*exp.records.values(), *(s["template"] for s in exp.series.values())]:
        out.update(parent for parent, _ in rec.links.values() if parent)
    for people in [*exp.attendees.values(), *(s["attendees"] for s in exp.series.values())]:
        out.update(people)
    return out
