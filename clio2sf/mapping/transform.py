"""Streaming transforms: staged Clio envelopes -> Salesforce rows (neutral row format) and rejects.

``transform_object(name, envelopes, spec, users, lookup=..., horizon=...)`` yields one stream of
dicts: transformed-row envelopes (they have ``"sobject"``) and reject lines (they have ``"rule"``;
``is_reject`` tells them apart, ``split`` separates them); with ``lines=True`` (``pipeline.transform_batch``)
a recurring calendar entry's Event rows and its occurrences' EventRelation rows may instead come as
``{"sobject", "lines"}`` results of encoded lines (one per object and entry).  A reject with ``repair`` set describes a
repair on a record that still loads; a reject with ``repair: None`` means the record was quarantined
(field-level conversions that drop a single value also carry a repair text saying so).

``lookup`` gives read access to other staged objects: either a mapping ``{clio object: {clio id:
record data}}`` or a callable ``lookup(clio_object) -> {clio id: record data} | None``.  Used keys:
``contacts`` (``type`` and ``company`` are enough: company vs person, account of a person),
``matters`` (matter target in mixed mode, orphan checks, billing methods per client),
``bills``, ``activity_rates`` (client rates on Contact), ``calendar_entries`` or
``calendar_entry_overrides`` (``{parent id: [child start_at, ...]}``).  Without an entry the
related checks are skipped.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from clio2sf import staging
from clio2sf.mapping import money
from clio2sf.mapping.fields import (
    FieldFn,
    Issues,
    RecordRejected,
    apply_overflows,
    apply_value_map,
    compile_fields,
)
from clio2sf.mapping.recurrence import (
    BadRecurrence,
    UnknownTimeZone,
    clamp_end,
    occurrence_times,
    occurrences,
    utc_suffix,
    zone,
)
from clio2sf.mapping.spec import NATURAL_KEY_OBJECTS, MappingSpec
from clio2sf.mapping.users import UserMap
from clio2sf.mapping.values import (
    BadValue,
    api_name,
    compile_path,
    is_email,
    parse_datetime,
    to_bool,
    to_date,
    to_number,
)

TransformResult = dict[str, Any]
Lookup = Mapping[str, Mapping[Any, Mapping[str, Any]]] | Callable[[str], Mapping[Any, Mapping[str, Any]] | None]

#: Clio objects ``transform_object`` accepts, and the Salesforce objects each can produce.
PRODUCES: dict[str, tuple[str, ...]] = {
    "contacts": ("Account", "Contact", "AccountContactRelation"),
    "matters": ("Case", "Opportunity", "Rate_Structure__c", "CaseTeamMember", "OpportunityTeamMember"),
    "relationships": ("CaseContactRole", "OpportunityContactRole"),
    "bills": ("Clio_Billing__c",),
    "bank_transactions": ("Ledger__c",),
    "activities": ("Time_Entry__c", "Expense__c", "Task"),
    "users": ("Rate_Structure__c",),
    "activity_rates": ("Rate_Structure__c",),
    "activity_descriptions": ("Rate_Structure__c",),
    "calendar_entries": ("Event", "EventRelation"),
    "tasks": ("Task",),
    "communications": ("Task",),
    "documents": ("ContentVersion", "ContentDocumentLink"),
    "matter_notes": ("ContentNote", "ContentDocumentLink"),
    "contact_notes": ("ContentNote", "ContentDocumentLink"),
} | money.PRODUCES

_HTML_TAG = re.compile(r"<(p|div|br|span|b|i|u|em|strong|ul|ol|li|h[1-6]|img|a|table|tr|td)\b", re.I)
EXPENSE_TYPES = frozenset({"ExpenseEntry", "HardCostEntry", "SoftCostEntry"})


def is_reject(result: TransformResult) -> bool:
    """True for a reject/repair line, False for a transformed-row envelope."""
    return "rule" in result


def split(results: Iterable[TransformResult]) -> tuple[list[TransformResult], list[TransformResult]]:
    """Materialise (rows, rejects); for tests and small slices only, never a whole firm."""
    rows, rejects = [], []
    for r in results:
        (rejects if "rule" in r else rows).append(r)
    return rows, rejects


class LookupTables(dict):
    """A lookup mapping (``{clio object: {clio id: record}}``) that also keeps the indexes the
    transforms derive from its tables (billing methods and rates per client, calendar overrides),
    so the ``transform_object`` calls of one task over many batches build each index once.
    Change no table after a transform used it (its indexes would be stale)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.indexes: dict[str, Any] = {}


class _Lookup:
    def __init__(self, lookup: Lookup | None) -> None:
        self._src = lookup
        self._cache: dict[str, Any] = {}
        self._indexes: dict[str, Any] = lookup.indexes if isinstance(lookup, LookupTables) else {}

    def get(self, name: str) -> Mapping[Any, Mapping[str, Any]] | None:
        if name in self._cache:
            return self._cache[name]
        src = self._src
        if src is None:
            found = None
        elif callable(src) and not isinstance(src, Mapping):
            found = src(name)
        else:
            found = src.get(name)
        if found is not None and not isinstance(found, Mapping):
            raise TypeError(f"lookup({name!r}) must return a mapping of clio id -> record, got {type(found).__name__}")
        self._cache[name] = found
        return found

    def record(self, name: str, clio_id: Any) -> tuple[bool, Mapping[str, Any] | None]:
        """(known, record): known is False when the lookup has no data for ``name``."""
        table = self.get(name)
        if table is None or clio_id is None:
            return False, None
        rec = table.get(clio_id)
        if rec is None and not isinstance(clio_id, str):
            rec = table.get(str(clio_id))
        return True, rec

    def index(self, key: str, build: Callable[[], Any]) -> Any:
        """The index ``key`` of the lookup's tables, built once (once per task with :class:`LookupTables`)."""
        if key not in self._indexes:
            self._indexes[key] = build()
        return self._indexes[key]


class _Ctx:
    """Everything one ``transform_object`` call needs, compiled once."""

    def __init__(self, spec: MappingSpec, users: UserMap, lookup: Lookup | None, horizon: datetime | None,
                 lines: bool = False) -> None:
        self.spec = spec
        #: a series' Event rows and its occurrences' EventRelation rows may come as encoded lines (transform_object(lines=True))
        self.encode = staging.fast_encoder() if lines else None
        self.users = users
        self.lookup = _Lookup(lookup)
        opts = spec.options
        self.horizon = horizon or datetime.now(UTC) + timedelta(days=opts.get("recurrence_horizon_days", 730))
        self.individual = opts.get("individual_account") or {"clio_id": "individual-client-account", "name": "Individual Client"}
        self._compiled: dict[str, tuple[FieldFn, list[tuple[str, Callable[[Mapping[str, Any]], Any]]]]] = {}
        self._cf_cache: dict[tuple[str, str], str | None] = {}
        self._paths: dict[str, Callable[[Mapping[str, Any]], Any]] = {}
        self._links: dict[str, Mapping[str, Any]] = {}
        self._ref_columns: dict[tuple[str, ...], tuple[str, ...]] = {}

    def compiled(self, key: str) -> tuple[FieldFn, list[tuple[str, Callable[[Mapping[str, Any]], Any]]]]:
        """(the function setting every field but the owners, owner getters) for ``objects.<key>`` of the spec
        (:func:`~clio2sf.mapping.fields.compile_fields`: each field's ``compile_field`` function in turn)."""
        if key not in self._compiled:
            ospec = self.spec.objects.get(key) or {"fields": {}}
            entries: list[tuple[str, Mapping[str, Any], str | None]] = []
            owners: list[tuple[str, Callable[[Mapping[str, Any]], Any]]] = []
            placeholder = self.spec.options.get("last_name_placeholder") if key == "Contact" else None
            for target, fspec in (ospec.get("fields") or {}).items():
                if "owner" in fspec:
                    get = compile_path(fspec["owner"])
                    if fspec.get("owner_of") == "calendar":
                        get = self._calendar_user_getter(get)
                    owners.append((target, get))
                else:
                    entries.append((target, fspec, placeholder if target == "LastName" else None))
            self._compiled[key] = (compile_fields(entries, self.spec), owners)
        return self._compiled[key]

    def _calendar_user_getter(self, get_calendar: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
        """A getter of the Clio user whose calendar ``get_calendar`` names (None: a firm/shared calendar)."""
        return lambda d: self.users.calendar_user(get_calendar(d))

    def links(self, key: str) -> Mapping[str, Any]:
        """``objects.<key>.links`` of the spec ({} without)."""
        links = self._links.get(key)
        if links is None:
            links = self._links[key] = (self.spec.objects.get(key) or {}).get("links") or {}
        return links

    def ref_columns(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        """The columns of ``row`` named ``...__r.Clio_Id__c`` (a reference by external id), in the row's order:
        the rows of one object share a few sequences of columns, each scanned once (up to 4,096 kept)."""
        keys = tuple(row)
        cols = self._ref_columns.get(keys)
        if cols is None:
            cols = tuple(c for c in keys if c.endswith("__r.Clio_Id__c"))
            if len(self._ref_columns) < 4096:
                self._ref_columns[keys] = cols
        return cols

    def path(self, path: str) -> Callable[[Mapping[str, Any]], Any]:
        getter = self._paths.get(path)
        if getter is None:
            getter = self._paths[path] = compile_path(path)
        return getter

    # -- references ---------------------------------------------------------------------------
    def matter_target(self, matter_id: Any, issues: Issues, field: str, required: bool = False) -> str | None:
        """Case/Opportunity for a referenced matter; orphan check when matters are in the lookup."""
        known, rec = self.lookup.record("matters", matter_id)
        if known and rec is None:
            raise RecordRejected(field, "orphan_reference", f"{issues.sid}: {field} points at matter-{matter_id}, which was not extracted")
        if len(self.spec.matter_objects) == 1:
            return self.spec.matter_objects[0]
        if rec is not None:
            return self.spec.matter_target(rec)
        return self.spec.options["matter_object"]

    def matter_columns(self, row: dict[str, Any], d: Mapping[str, Any], link: Mapping[str, Any] | None, issues: Issues) -> str | None:
        """Fill the matter link column of ``row`` from spec ``links.matter``; returns the target object."""
        if not link:
            return None
        matter_id = self.path(link["from"])(d)
        if matter_id is None:
            if link.get("required"):
                raise RecordRejected("matter", "orphan_reference", f"{issues.sid}: matter is required and empty")
            return None
        target = self.matter_target(matter_id, issues, "matter")
        column = link["columns"].get(target)
        if column:
            row[column] = f"matter-{matter_id}"
        return target

    def client_refs(self, client_id: Any, issues: Issues, field: str = "client") -> dict[str, str]:
        """{"Contact": ..., "Account": ...} external ids for a Clio client contact id."""
        if client_id is None:
            return {}
        known, rec = self.lookup.record("contacts", client_id)
        if known and rec is None:
            raise RecordRejected(field, "orphan_reference", f"{issues.sid}: {field} points at contact-{client_id}, which was not extracted")
        if rec is None:
            return {"Contact": f"contact-{client_id}"}
        if rec.get("type") == "Company":
            return {"Account": f"contact-{client_id}"}
        return {"Contact": f"contact-{client_id}", "Account": self.account_of_person(rec)}

    def account_of_person(self, person: Mapping[str, Any]) -> str:
        """The primary Account: ``company``, else the first related company, else the default account."""
        company = person.get("company") or {}
        if company.get("id") is not None:
            return f"contact-{company['id']}"
        for rc in person.get("related_contacts") or ():
            if rc.get("type") == "Company" and rc.get("id") is not None:
                return f"contact-{rc['id']}"
        return self.individual["clio_id"]

    def owner(self, clio_user_id: Any, issues: Issues, why: str | None = None) -> str | None:
        """The matched Salesforce user of ``clio_user_id``, else the fallback owner, listed as a repair
        (rule ``owner_fallback``) so that every record the fallback owner holds is in the report."""
        sf_id = self.users.get(clio_user_id)
        if sf_id is not None:
            return sf_id
        fallback = self.users.resolve(clio_user_id, issues.sid)
        if fallback is None and clio_user_id is not None:
            raise RecordRejected("OwnerId", "unmapped_owner", f"{issues.sid}: Clio user {clio_user_id} has no Salesforce user and no fallback owner is set")
        if fallback is not None:
            if why is None:
                why = (f"Clio user {clio_user_id} has no matched Salesforce user" if clio_user_id is not None
                       else "no Clio user owns this record")
            issues.add("OwnerId", "owner_fallback", f"{issues.sid}: {why}", f"owned by the fallback owner {fallback}")
        return fallback

    # -- custom fields ------------------------------------------------------------------------
    def custom_field_target(self, parent_type: str, name: str) -> str | None:
        key = (parent_type, name)
        if key not in self._cf_cache:
            cf = self.spec.options.get("custom_fields") or {}
            decision = (cf.get("decisions") or {}).get(f"{parent_type}:{name}")
            if decision is not None:
                target = None if decision.get("skip") else decision.get("target")
            else:
                target = api_name(name) if cf.get("auto", True) else None
            self._cf_cache[key] = target
        return self._cf_cache[key]


def _envelope(sobject: str, sid: str, row: dict[str, Any], natural_key: list[str] | None = None,
              blob: Mapping[str, Any] | None = None) -> TransformResult:
    if natural_key is not None:
        out = {"sobject": sobject, "source_system_id": sid, "external_id_field": None, "natural_key": natural_key, "row": row}
    else:
        out = {"sobject": sobject, "source_system_id": sid, "external_id_field": "Clio_Id__c", "natural_key": None, "row": row}
    if blob is not None:
        out["blob"] = dict(blob)
    return out


def _reject(obj: str, sid: str, field: str | None, rule: str, message: str, repair: str | None) -> TransformResult:
    return {"phase": "transform", "object": obj, "source_system_id": sid, "field": field, "rule": rule, "message": message, "repair": repair}


def _issues_out(obj: str, issues: Issues) -> Iterator[TransformResult]:
    for field, rule, message, repair in issues.items:
        yield _reject(obj, issues.sid, field, rule, message, repair)


def _base_row(sid: str, env: Mapping[str, Any], d: Mapping[str, Any]) -> dict[str, Any]:
    return {"Clio_Id__c": sid, "Clio_Created_Date__c": env.get("original_create_date") or d.get("created_at")}


def _map_fields(ctx: _Ctx, key: str, d: Mapping[str, Any], row: dict[str, Any], issues: Issues) -> None:
    fields, owners = ctx.compiled(key)
    overflows: list[tuple[str, str]] = []
    fields(d, row, issues, overflows)
    if overflows:
        apply_overflows(row, overflows)
    for target, get in owners:
        uid = get(d)
        why = None
        if uid is None and key == "Event":
            cal = (d.get("calendar_owner") or {})
            why = f"calendar {cal.get('id')} ({cal.get('type') or 'calendar'}) is no user's own calendar"
        owner = ctx.owner(uid, issues, why)
        if owner is not None:
            row[target] = owner


_NO_TARGET = object()  # a custom field not yet in _Ctx._cf_cache


def _custom_field_values(ctx: _Ctx, parent_type: str, d: Mapping[str, Any], row: dict[str, Any], issues: Issues, matter_object: str | None = None) -> None:
    """Clio custom field values -> ``__c`` columns (type-converted; contact/matter values become lookups)."""
    targets = ctx._cf_cache
    for cfv in d.get("custom_field_values") or ():
        if cfv.get("soft_deleted"):
            continue
        name = cfv.get("field_name")
        if not name:
            continue
        target = targets.get((parent_type, name), _NO_TARGET)
        if target is _NO_TARGET:
            target = ctx.custom_field_target(parent_type, name)
        if target is None:
            continue
        value = cfv.get("value")
        if value is None or value == "":
            continue
        ftype = cfv.get("field_type")
        if ftype == "text_line" or ftype == "url":  # the common plain text first
            if type(value) is str and len(value) <= 255:
                row[target] = value
                continue
        try:
            if ftype in ("numeric", "currency"):
                row[target] = to_number(value)
            elif ftype == "date":
                row[target] = to_date(value)
            elif ftype == "checkbox":
                row[target] = to_bool(value)
            elif ftype == "picklist":
                row[target] = (cfv.get("picklist_option") or {}).get("option") or str(value)
            elif ftype == "email":
                if not is_email(str(value)):
                    field = f"custom field {name!r}"
                    issues.add(field, "invalid_email", f"{issues.sid}: {field} {value!r} is not a valid address", "value dropped, field left empty")
                else:
                    row[target] = str(value)
            elif ftype == "contact":
                ref = (cfv.get("contact") or {}).get("id", value)
                row[target[:-3] + "__r.Clio_Id__c"] = f"contact-{ref}"
            elif ftype == "matter":
                ref = (cfv.get("matter") or {}).get("id", value)
                row[target[:-3] + "__r.Clio_Id__c"] = f"matter-{ref}"
            elif ftype == "time":
                row[target] = str(value)[:8]
            elif ftype == "text_line" or ftype == "url":
                text = str(value)
                if len(text) > 255:
                    field = f"custom field {name!r}"
                    issues.add(field, "too_long", f"{issues.sid}: {field} has {len(text)} characters (max 255)", "truncated to 255")
                    text = text[:255]
                row[target] = text
            else:  # text_area and anything newer: long text
                row[target] = str(value)[:131072]
        except BadValue as exc:
            field = f"custom field {name!r}"
            issues.add(field, exc.rule, f"{issues.sid}: {field}: {exc}", "value dropped, field left empty")


# ---------------------------------------------------------------------------------------------
# one function per Clio object
# ---------------------------------------------------------------------------------------------


def _contacts(ctx: _Ctx, env: Mapping[str, Any], d: Mapping[str, Any], sid: str, issues: Issues, state: dict) -> Iterator[TransformResult]:
    row = _base_row(sid, env, d)
    if d.get("type") == "Company":
        _map_fields(ctx, "Account", d, row, issues)
        other = _other_contact_details(d)
        if other:
            row["Clio_Other_Contact_Details__c"] = other
        _custom_field_values(ctx, "Contact", d, row, issues)
        yield _envelope("Account", sid, row)
        return
    _map_fields(ctx, "Contact", d, row, issues)
    companies = _companies_of_person(ctx, d, issues)
    account = companies[0][0] if companies else ctx.individual["clio_id"]
    if account == ctx.individual["clio_id"] and not state.get("individual_emitted"):
        state["individual_emitted"] = True
        yield _envelope("Account", account, {"Clio_Id__c": account, "Name": ctx.individual["name"]})
    row["Account.Clio_Id__c"] = account
    other = _other_contact_details(d)
    if other:
        row["Clio_Other_Contact_Details__c"] = other
    _client_rate(ctx, d.get("id"), row)
    _billing_methods(ctx, d.get("id"), row)
    _custom_field_values(ctx, "Contact", d, row, issues)
    yield _envelope("Contact", sid, row)
    if "AccountContactRelation" in ctx.spec.objects:
        vm = ctx.spec.value_map("account_contact_role")
        for company_sid, title in companies[1:]:
            role = apply_value_map(vm, title, "Roles", issues) if title else vm.default
            acr = {"Account.Clio_Id__c": company_sid, "Contact.Clio_Id__c": sid, "IsActive": True}
            if role:
                acr["Roles"] = role
            yield _envelope("AccountContactRelation", f"{sid}#account-{company_sid}", acr, ["AccountId", "ContactId"])


def _companies_of_person(ctx: _Ctx, d: Mapping[str, Any], issues: Issues) -> list[tuple[str, str | None]]:
    """(company external id, relationship title) of a person: ``company`` first (the primary Account),
    then the companies among ``related_contacts``; without ``company`` the first related one is primary.
    Companies that were not extracted are left out with a repair note."""
    out: dict[str, str | None] = {}
    candidates = [(d.get("company") or {}, d.get("title"))]
    candidates += [(rc, rc.get("title") or rc.get("relationship") or rc.get("description"))
                   for rc in d.get("related_contacts") or () if rc.get("type") == "Company"]
    for ref, title in candidates:
        cid = ref.get("id")
        if cid is None or f"contact-{cid}" in out:
            continue
        known, rec = ctx.lookup.record("contacts", cid)
        if known and (rec is None or rec.get("type") not in (None, "Company")):
            issues.add("related_contacts", "orphan_reference",
                       f"{issues.sid}: related company contact-{cid} was not extracted or is not a company",
                       "relationship not migrated")
            continue
        out[f"contact-{cid}"] = title
    return list(out.items())


def _other_contact_details(d: Mapping[str, Any]) -> str | None:
    """Non-primary emails, phones and addresses as readable lines (kept in a long-text field)."""
    lines = []
    for e in d.get("email_addresses") or ():
        if not e.get("primary") and e.get("address") and e.get("address") != d.get("secondary_email_address"):
            lines.append(f"{e.get('name') or 'Other'} email: {e['address']}")
    for p in d.get("phone_numbers") or ():
        if not p.get("primary") and p.get("number") and p.get("number") != d.get("secondary_phone_number"):
            lines.append(f"{p.get('name') or 'Other'} phone: {p['number']}")
    for a in d.get("addresses") or ():
        if not a.get("primary"):
            parts = [a.get(k) for k in ("street", "city", "province", "postal_code", "country") if a.get(k)]
            if parts:
                lines.append(f"{a.get('name') or 'Other'} address: {', '.join(parts)}")
    return "\n".join(lines) or None


def _client_rate(ctx: _Ctx, contact_id: Any, row: dict[str, Any]) -> None:
    def build() -> dict[Any, list]:
        idx: dict[Any, list] = defaultdict(list)
        for rate in (ctx.lookup.get("activity_rates") or {}).values():
            if rate.get("contact_id") is not None:
                idx[rate["contact_id"]].append(rate)
        return idx

    rates = ctx.lookup.index("_rates_by_contact", build).get(contact_id)
    if not rates:
        return
    best = max(rates, key=lambda r: float(r.get("rate") or 0))
    row["Clio_Client_Rate__c"] = best.get("rate")
    who = (best.get("user") or best.get("group") or {}).get("name") or "all users"
    note = f"client rate for {who}"
    if len(rates) > 1:
        note += f" (highest of {len(rates)} client rates)"
    row["Clio_Client_Rate_Source__c"] = note[:255]


def _billing_methods(ctx: _Ctx, contact_id: Any, row: dict[str, Any]) -> None:
    def build() -> dict[Any, set]:
        idx: dict[Any, set] = defaultdict(set)
        for m in (ctx.lookup.get("matters") or {}).values():
            cid = (m.get("client") or {}).get("id")
            if cid is not None and m.get("billing_method"):
                idx[cid].add(m["billing_method"])
        return idx

    methods = ctx.lookup.index("_billing_by_client", build).get(contact_id)
    if methods:
        row["Clio_Billing_Methods__c"] = ", ".join(sorted(methods))


def _matters(ctx: _Ctx, env: Mapping[str, Any], d: Mapping[str, Any], sid: str, issues: Issues, state: dict) -> Iterator[TransformResult]:
    target = ctx.spec.matter_target(d)
    row = _base_row(sid, env, d)
    _map_fields(ctx, target, d, row, issues)
    client_id = (d.get("client") or {}).get("id")
    refs = ctx.client_refs(client_id, issues)
    if target == "Case":
        if "Contact" in refs:
            row["Contact.Clio_Id__c"] = refs["Contact"]
        if "Account" in refs:
            row["Account.Clio_Id__c"] = refs["Account"]
    elif "Account" in refs:
        row["Account.Clio_Id__c"] = refs["Account"]
    elif "Contact" in refs:
        issues.add("client", "account_unknown", f"{sid}: the client's account is unknown (no contacts lookup)",
                   f"linked to {ctx.individual['clio_id']}")
        row["Account.Clio_Id__c"] = ctx.individual["clio_id"]
    area = (d.get("practice_area") or {}).get("name")
    if area:
        if ctx.spec.options.get("practice_area_as") == "record_type":
            rt = apply_value_map(ctx.spec.value_map("practice_area_record_type"), area, "RecordTypeId", issues)
            if rt:
                row["RecordType.DeveloperName"] = rt
        elif target == "Case":
            value = apply_value_map(ctx.spec.value_map("practice_area_case_type"), area, "Type", issues)
            if value:
                row["Type"] = value[:40]
    _custom_field_values(ctx, "Matter", d, row, issues)
    yield _envelope(target, sid, row)
    yield from _matter_rates(ctx, d, target)
    yield from _matter_team(ctx, d, sid, target, issues)


TEAM_FIELDS = ("responsible_attorney", "originating_attorney", "responsible_staff")


def _matter_team(ctx: _Ctx, d: Mapping[str, Any], sid: str, target: str, issues: Issues) -> Iterator[TransformResult]:
    """CaseTeamMember / OpportunityTeamMember rows for the matter's attorneys and staff.

    A user is on a team once (Salesforce's key): the first Clio role in ``TEAM_FIELDS`` order names the
    membership.  Users without a Salesforce user are not linked (repair note); the fallback owner is
    never made a team member.
    """
    sobject = "CaseTeamMember" if target == "Case" else "OpportunityTeamMember"
    if sobject not in ctx.spec.objects:
        return
    vm = ctx.spec.value_map("team_role")
    seen: set[str] = set()
    for role_field in TEAM_FIELDS:
        people = d.get(role_field)
        for person in people if isinstance(people, list) else [people] if people else ():
            uid = person.get("id") if isinstance(person, Mapping) else None
            if uid is None:
                continue
            sf_user = ctx.users.get(uid)
            if sf_user is None:  # unmatched: left out, never replaced by the fallback owner
                issues.add(role_field, "unmapped_team_member", f"{sid}: {role_field} user {uid} has no matched Salesforce user",
                           f"not added to the {target} team")
                continue
            if sf_user in seen:
                continue
            seen.add(sf_user)
            role = apply_value_map(vm, role_field, "TeamRole", issues)
            msid = f"{sid}#team-user-{uid}"
            if sobject == "CaseTeamMember":
                row = {"Case:Parent.Clio_Id__c": sid, "MemberId": sf_user, "TeamRole.Name": role}
                yield _envelope(sobject, msid, row, ["ParentId", "MemberId"])
            else:
                row = {"Opportunity.Clio_Id__c": sid, "UserId": sf_user, "TeamMemberRole": role,
                       "OpportunityAccessLevel": ctx.spec.options.get("opportunity_team_access", "Edit")}
                yield _envelope(sobject, msid, row, ["OpportunityId", "UserId"])


def _matter_rates(ctx: _Ctx, d: Mapping[str, Any], target: str) -> Iterator[TransformResult]:
    custom = d.get("custom_rate") or {}
    level = ctx.spec.value_map("rate_level").values.get("matter", "Matter")
    for i, rate in enumerate(custom.get("rates") or (), start=1):
        rid = rate.get("id", i)
        sid = f"rate-matter-{d['id']}-{rid}"
        who = rate.get("user") or rate.get("group") or {}
        value = rate.get("rate")
        row = {"Clio_Id__c": sid, "Clio_Created_Date__c": d.get("created_at"), "Name": f"Matter {d.get('display_number') or d['id']} rate"[:80],
               "Clio_Level__c": level, "Clio_Rate_Type__c": custom.get("type"), "Clio_User_Name__c": who.get("name"),
               "Clio_Activity_Description__c": (rate.get("activity_description") or {}).get("name"),
               f"{target}__r.Clio_Id__c": f"matter-{d['id']}"}
        try:
            row["Clio_Rate__c"] = to_number(value) if value is not None else None
        except BadValue:
            row["Clio_Rate_Detail__c"] = str(value)[:255]  # contingency "1/3" and the like
        yield _envelope("Rate_Structure__c", sid, row)


def _relationships(ctx: _Ctx, env: Mapping[str, Any], d: Mapping[str, Any], sid: str, issues: Issues, state: dict) -> Iterator[TransformResult]:
    matter_id = (d.get("matter") or {}).get("id")
    contact = d.get("contact") or {}
    if matter_id is None or contact.get("id") is None:
        raise RecordRejected("matter" if matter_id is None else "contact", "orphan_reference", f"{sid}: a relationship needs both a matter and a contact")
    target = ctx.matter_target(matter_id, issues, "matter")
    known, crec = ctx.lookup.record("contacts", contact["id"])
    if known and crec is None:
        raise RecordRejected("contact", "orphan_reference", f"{sid}: contact points at contact-{contact['id']}, which was not extracted")
    ctype = (crec or contact).get("type")
    if ctype == "Company":
        raise RecordRejected("contact", "company_contact_role", f"{sid}: contact-{contact['id']} is a company (an Account), contact roles need a person")
    description = (d.get("description") or "").strip()
    roles = [description]
    for sep in ctx.spec.options.get("role_separators") or ():
        roles = [part.strip() for r in roles for part in r.split(sep)]
    roles = [r for r in roles if r] or ["Other"]
    if target == "Case":
        sobject, vm_name, parent_col, nk = "CaseContactRole", "relationship_role", "Cases.Clio_Id__c", ["CasesId", "ContactId", "Role"]
    else:
        sobject, vm_name, parent_col, nk = "OpportunityContactRole", "relationship_role_opportunity", "Opportunity.Clio_Id__c", ["OpportunityId", "ContactId", "Role"]
    vm = ctx.spec.value_map(vm_name)
    seen = set()
    for role in roles:
        mapped = apply_value_map(vm, role, "Role", issues)
        if not mapped or mapped in seen:
            continue
        seen.add(mapped)
        row_sid = sid if len(roles) == 1 else f"{sid}@{api_name(mapped, '')}"
        yield _envelope(sobject, row_sid, {parent_col: f"matter-{matter_id}", "Contact.Clio_Id__c": f"contact-{contact['id']}", "Role": mapped}, nk)


def _generic(key: str, client_link: bool = True):
    """Objects fully described by the spec's fields and links (bills, ledger, ...)."""

    def run(ctx: _Ctx, env: Mapping[str, Any], d: Mapping[str, Any], sid: str, issues: Issues, state: dict) -> Iterator[TransformResult]:
        row = _base_row(sid, env, d)
        _map_fields(ctx, key, d, row, issues)
        links = ctx.links(key)
        ctx.matter_columns(row, d, links.get("matter"), issues)
        client = links.get("client")
        if client:
            refs = ctx.client_refs(ctx.path(client["from"])(d), issues)
            for kind, value in refs.items():
                if kind in client["columns"]:
                    row[client["columns"][kind]] = value
        for col in (ctx.ref_columns(row) if ctx.lookup.get("bills") is not None else ()):  # no bills: nothing to check
            value = row[col]
            if isinstance(value, str) and value.startswith("bill-"):
                known, rec = ctx.lookup.record("bills", int(value[5:]) if value[5:].isdigit() else value[5:])
                if known and rec is None:
                    raise RecordRejected(col, "orphan_reference", f"{sid}: {col} points at {value}, which was not extracted")
        yield _envelope(key.split("@")[0], sid, row)

    return run


_bills = _generic("Clio_Billing__c")
_bank_transactions = _generic("Ledger__c")
_time_entry = _generic("Time_Entry__c")
_expense = _generic("Expense__c")


def _activities(ctx: _Ctx, env: Mapping[str, Any], d: Mapping[str, Any], sid: str, issues: Issues, state: dict) -> Iterator[TransformResult]:
    kind = d.get("type")
    if kind in EXPENSE_TYPES:
        for res in _expense(ctx, env, d, sid, issues, state):
            res["row"]["Clio_Billable__c"] = not bool(d.get("non_billable"))
            yield res
    elif kind == "TimeEntry":
        if d.get("non_billable") or d.get("no_charge"):
            yield from _task_variant(ctx, env, d, sid, issues, "Task@time_entries")
        else:
            yield from _time_entry(ctx, env, d, sid, issues, state)
    else:
        raise RecordRejected("type", "unknown_value", f"{sid}: activity type {kind!r} is not TimeEntry or an expense type")


def _task_variant(ctx: _Ctx, env, d, sid, issues, key: str) -> Iterator[TransformResult]:
    row = _base_row(sid, env, d)
    _map_fields(ctx, key, d, row, issues)
    ctx.matter_columns(row, d, ctx.links(key).get("matter"), issues)
    yield _envelope("Task", sid, row)


def _tasks(ctx: _Ctx, env, d, sid, issues, state) -> Iterator[TransformResult]:
    row = _base_row(sid, env, d)
    _map_fields(ctx, "Task", d, row, issues)
    links = (ctx.spec.objects.get("Task") or {}).get("links") or {}
    ctx.matter_columns(row, d, links.get("matter"), issues)
    assignee = d.get("assignee") or {}
    if assignee.get("type") == "User" or assignee.get("id") is None:
        owner = ctx.owner(assignee.get("id"), issues)
    else:  # assigned to a contact: the contact becomes WhoId, the firm's fallback user owns it
        row["Contact:Who.Clio_Id__c"] = f"contact-{assignee['id']}"
        owner = ctx.owner(None, issues)
    if owner is not None:
        row["OwnerId"] = owner
    if d.get("permission") is not None:  # Clio's "private" task: only its assignee sees it
        row["Clio_Private__c"] = d["permission"] == "private"
    yield _envelope("Task", sid, row)


def _communications(ctx: _Ctx, env, d, sid, issues, state) -> Iterator[TransformResult]:
    row = _base_row(sid, env, d)
    _map_fields(ctx, "Task@communications", d, row, issues)
    links = (ctx.spec.objects.get("Task@communications") or {}).get("links") or {}
    ctx.matter_columns(row, d, links.get("matter"), issues)
    subtype = apply_value_map(ctx.spec.value_map("communication_subtype"), d.get("type"), "TaskSubtype", issues)
    if subtype:
        row["TaskSubtype"] = subtype
    people = list(d.get("senders") or ()) + list(d.get("receivers") or ())
    for p in people:
        if p.get("type") in ("Person", "Contact") and p.get("id") is not None:
            known, rec = ctx.lookup.record("contacts", p["id"])
            if known and rec is None:
                issues.add("senders" if p in (d.get("senders") or ()) else "receivers", "orphan_reference",
                           f"{sid}: contact-{p['id']} was not extracted", "WhoId left empty")
                continue
            if rec is not None and rec.get("type") == "Company":
                continue  # an Account: WhoId takes a Contact or Lead only
            row["Contact:Who.Clio_Id__c"] = f"contact-{p['id']}"
            break
    participants = _participants(d)
    if participants:
        row["Clio_Participants__c"] = participants
    yield _envelope("Task", sid, row)


def _participants(d: Mapping[str, Any]) -> str | None:
    """``From: A; To: B, C`` (names, or kind-id when unnamed) for senders and receivers, max 255."""
    parts = []
    for label, key in (("From", "senders"), ("To", "receivers")):
        names = [str(p.get("name") or f"{str(p.get('type') or 'contact').lower()}-{p.get('id')}") for p in d.get(key) or ()]
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    text = "; ".join(parts)
    return text[:255] or None


def _rates(level: str):
    def run(ctx: _Ctx, env, d, sid, issues, state) -> Iterator[TransformResult]:
        lv = ctx.spec.value_map("rate_level").values.get(level, level)
        row: dict[str, Any] = {"Clio_Created_Date__c": env.get("original_create_date") or d.get("created_at"), "Clio_Level__c": lv}
        if level == "user":
            if d.get("rate") is None:
                return
            rsid = f"rate-user-{d['id']}"
            row |= {"Name": f"{d.get('name') or d['id']} default rate"[:80], "Clio_Rate__c": to_number(d["rate"]),
                    "Clio_User_Name__c": d.get("name"), "Clio_Rate_Type__c": "HourlyRate"}
        elif level == "client":
            rsid = f"rate-client-{d['id']}"
            who = d.get("user") or d.get("group") or {}
            row |= {"Name": f"Client rate {who.get('name') or 'all users'}"[:80], "Clio_Rate__c": to_number(d.get("rate") or 0),
                    "Clio_Flat_Rate__c": bool(d.get("flat_rate")), "Clio_User_Name__c": who.get("name"),
                    "Clio_Rate_Type__c": "FlatRate" if d.get("flat_rate") else "HourlyRate"}
            if d.get("contact_id") is not None:
                _known, client = ctx.lookup.record("contacts", d["contact_id"])
                if client is not None and client.get("type") == "Company":  # an Account: Contact__c cannot hold it
                    issues.add("contact_id", "company_client_rate", f"{issues.sid}: the client contact-{d['contact_id']} is a company",
                               "rate kept without a Contact link")
                else:
                    row["Contact__r.Clio_Id__c"] = f"contact-{d['contact_id']}"
        else:
            rate = d.get("rate") or {}
            rsid = f"rate-activity-{d['id']}"
            row |= {"Name": f"{d.get('name') or d['id']} rate"[:80], "Clio_Activity_Description__c": d.get("name"),
                    "Clio_Rate_Type__c": rate.get("type"), "Clio_Flat_Rate__c": rate.get("type") == "FlatRate",
                    "Clio_Rate_Detail__c": f"hierarchy {rate.get('hierarchy')}" if rate.get("hierarchy") else None}
            if rate.get("amount") is not None:
                row["Clio_Rate__c"] = to_number(rate["amount"])
        row["Clio_Id__c"] = rsid
        yield _envelope("Rate_Structure__c", rsid, {k: v for k, v in row.items() if v is not None})

    return run


def _overrides(ctx: _Ctx) -> dict[Any, list[str]]:
    def build() -> dict[Any, list[str]]:
        direct = ctx.lookup.get("calendar_entry_overrides")
        if direct is not None:
            return {str(k): list(v) for k, v in direct.items()}
        idx: dict[Any, list[str]] = defaultdict(list)
        for rec in (ctx.lookup.get("calendar_entries") or {}).values():
            parent = rec.get("parent_calendar_entry_id")
            if parent is not None and rec.get("start_at"):
                idx[str(parent)].append(rec["start_at"])
        return idx

    return ctx.lookup.index("_cal_overrides", build)


def _calendar_entries(ctx: _Ctx, env, d, sid, issues, state) -> Iterator[TransformResult]:
    opts = ctx.spec.options
    try:
        start = parse_datetime(d.get("start_at"))
    except BadValue as exc:
        raise RecordRejected("start_at", exc.rule if d.get("start_at") else "required_missing", f"{sid}: start_at: {exc}") from None
    try:
        end = parse_datetime(d.get("end_at")) if d.get("end_at") else start
    except BadValue as exc:
        raise RecordRejected("end_at", exc.rule, f"{sid}: end_at: {exc}") from None
    if end < start:
        raise RecordRejected("end_at", "bad_date", f"{sid}: end_at is before start_at")
    max_days = opts.get("event_max_days", 14)
    clamped_end, clamped = clamp_end(start, end, max_days)
    if clamped:
        if opts.get("event_too_long") == "reject":
            raise RecordRejected("end_at", "event_too_long", f"{sid}: the event lasts more than {max_days} days (Salesforce limit)")
        issues.add("end_at", "event_too_long", f"{sid}: the event lasts more than {max_days} days (Salesforce limit)",
                   f"end moved from {end.isoformat()} to {clamped_end.isoformat()}")
    duration = clamped_end - start
    base = _base_row(sid, env, d)
    _map_fields(ctx, "Event", d, base, issues)
    links = (ctx.spec.objects.get("Event") or {}).get("links") or {}
    ctx.matter_columns(base, d, links.get("matter"), issues)
    if d.get("parent_calendar_entry_id") is not None:
        base["Clio_Series_Id__c"] = f"calendar_entry-{d['parent_calendar_entry_id']}"
    all_day = bool(d.get("all_day"))
    rule = d.get("recurrence_rule")
    try:
        tz = zone(d.get("start_at_time_zone"), start.tzinfo or UTC)
    except UnknownTimeZone as exc:
        if rule:  # a fixed offset would move every occurrence after a DST change by an hour
            raise RecordRejected("start_at_time_zone", "unknown_time_zone",
                                 f"{sid}: start_at_time_zone: {exc}; a recurring series needs its zone") from None
        tz = start.tzinfo or UTC
        issues.add("start_at_time_zone", "unknown_time_zone", f"{sid}: start_at_time_zone: {exc}",
                   "times kept at the UTC offset Clio gave")
    if rule:
        local_start = start.astimezone(tz)
        excluded = set()
        for child_start in _overrides(ctx).get(str(d.get("id")), ()):
            try:
                excluded.add(parse_datetime(child_start).astimezone(tz).date())
            except BadValue:
                continue
        max_count = opts.get("recurrence_max_occurrences", 1000)
        # Lines wanted: the occurrences' (id suffix, start, end[, day]) texts, without an aware
        # date-time each (None: a shape worked out by occurrences() below)
        times = occurrence_times(local_start, rule, tz=tz, horizon=ctx.horizon, max_count=max_count + 1, duration=duration,
                                 all_day=all_day, exclude_local_dates=excluded) if ctx.encode is not None else None
        starts = None if times is not None else _occurrence_starts(local_start, rule, tz, ctx.horizon, max_count, excluded, sid)
        found = len(times if times is not None else starts)

        def last_start() -> str:  # an all-day series' times hold its days: its starts worked out again
            kept = starts if starts is not None else _occurrence_starts(local_start, rule, tz, ctx.horizon, max_count, excluded, sid)
            return kept[max_count - 1].isoformat()

        if found > max_count:  # e.g. FREQ=MINUTELY: say so, never cut silently
            issues.add("recurrence_rule", "recurrence_truncated",
                       f"{sid}: recurrence_rule has more than {max_count} occurrences before {ctx.horizon.date().isoformat()}",
                       f"only the first {max_count} loaded (until "
                       f"{times[max_count - 1][1] if times is not None and not all_day else last_start()}); "
                       "options.recurrence_max_occurrences sets the cap")
            if times is not None:
                times = times[:max_count]
            else:
                starts = starts[:max_count]
        base["Clio_Series_Id__c"] = sid
        # (id, start, start in UTC): the UTC start names the occurrence (occurrence_suffix) and times its end
        instances = times if times is not None else _instances(sid, starts)
    else:
        times = None
        instances = [(sid, start, None)]
    cut = len(sid) + 1  # an occurrence's id is f"{sid}@{suffix}"
    # What links each occurrence to its attendees is the same for every occurrence: worked out once
    # (an unlinked attendee is reported once, with the first occurrence), an occurrence only adds its id.
    links: list[tuple[str, str, Any]] = []  # (suffix of the relation's id, relation column, value)
    for att in (d.get("attendees") or ()) if instances else ():
        if att.get("type") == "Contact" and att.get("id") is not None:
            links.append((f"#contact-{att['id']}", "Contact:Relation.Clio_Id__c", f"contact-{att['id']}"))
        elif att.get("id") is not None:
            uid, why = _attendee_user(ctx, att)
            sf_user = ctx.users.get(uid) if uid is not None else None
            if sf_user is not None:
                links.append((f"#user-{uid}", "RelationId", sf_user))
            else:
                if uid is not None:
                    why = f"its user {uid} has no matched Salesforce user"
                issues.add("attendees", "unmapped_attendee", f"{sid}: attendee {att.get('type') or 'User'} {att['id']}: {why}",
                           "attendee not linked")
    # Encoded lines wanted (transform_object(lines=True)): each relation's line is its template with the
    # occurrence's id put in, what the encoder writes for the row (str values only: other types keep the rows).
    templates = None
    if ctx.encode is not None and links and instances and all(type(v) is str for _, _, v in links):
        templates = [_relation_template(ctx.encode, suffix, column, value) for suffix, column, value in links]
        if None in templates:
            templates = None
    # A series' Event lines likewise: one template of the entry's row, each occurrence puts in its id suffix
    # and its times (values of str, int, bool or None only: any other keeps the rows, and json's form).
    event = None
    if ctx.encode is not None and rule and instances and set(map(type, base.values())) <= _PLAIN:
        event = _event_template(ctx.encode, sid, base, all_day)
    events: list[bytes] = []
    relations: list[bytes] = []
    if times is not None:
        if not times:
            return
        if event is not None and (templates is not None or not links):
            # every line from its template: an occurrence's suffix, start and end put in (its id encodes to
            # the entry's encoded "<sid>@" and the suffix, ASCII digits JSON writes as they are)
            fmt, pick = event
            events = [(fmt % pick(values)).encode() for values in times]
            if templates is not None:  # each occurrence's relations in their order, occurrence after occurrence
                prefix = ctx.encode(sid + "@")[1:-1]
                relations = [esid.join(t) for esid in [prefix + values[0].encode() for values in times] for t in templates]
            if events:
                yield {"sobject": "Event", "lines": events}
            if relations:
                yield {"sobject": "EventRelation", "lines": relations}
            return
        # rows one by one (a value json writes, a mark in the text): the occurrences as occurrences() gives them
        instances = _instances(sid, _occurrence_starts(local_start, rule, tz, ctx.horizon, max_count, excluded, sid)[:max_count])
    # Per occurrence only its id and times change: the row is the entry's mapped row with those four
    # columns set (a key the mapping already set keeps its place, as with item assignment).
    for inst_sid, inst_start, inst_utc in instances:
        if all_day:
            inst_end = inst_start + duration
            first = inst_start.astimezone(tz).date() if rule else inst_start.date()
            last_moment = inst_end - timedelta(microseconds=1) if inst_end > inst_start else inst_end
            last = last_moment.astimezone(tz).date() if rule else last_moment.date()
            day = first.isoformat()
            starts, ends = f"{day}T00:00:00+00:00", f"{last.isoformat()}T00:00:00+00:00"
            if event is not None:
                events.append((event[0] % event[1]((inst_sid[cut:], starts, ends, day))).encode())
            else:
                yield {"sobject": "Event", "source_system_id": inst_sid, "external_id_field": "Clio_Id__c", "natural_key": None,
                       "row": {**base, "Clio_Id__c": inst_sid, "IsAllDayEvent": True, "ActivityDate": day,
                               "StartDateTime": starts, "EndDateTime": ends}}
        else:
            # RFC 5545 3.8.5.3: with DTEND every occurrence lasts the same *exact* duration; adding it to the
            # local wall time made an occurrence across a daylight-saving change an hour longer or shorter
            end_utc = (inst_utc if inst_utc is not None else inst_start.astimezone(UTC)) + duration
            starts, ends = inst_start.isoformat(), end_utc.astimezone(inst_start.tzinfo).isoformat()
            if event is not None:
                events.append((event[0] % event[1]((inst_sid[cut:], starts, ends))).encode())
            else:
                yield {"sobject": "Event", "source_system_id": inst_sid, "external_id_field": "Clio_Id__c", "natural_key": None,
                       "row": {**base, "Clio_Id__c": inst_sid, "IsAllDayEvent": False, "StartDateTime": starts,
                               "EndDateTime": ends}}
        if templates is not None:
            esid = ctx.encode(inst_sid)[1:-1]
            relations.extend([esid.join(t) for t in templates])
            continue
        for suffix, column, value in links:
            yield {"sobject": "EventRelation", "source_system_id": inst_sid + suffix, "external_id_field": None,
                   "natural_key": ["EventId", "RelationId"],
                   "row": {"Event.Clio_Id__c": inst_sid, column: value, "IsInvitee": True}}
    # a file holds one object's rows: an entry's lines of each object, in their order, are one result
    if events:
        yield {"sobject": "Event", "lines": events}
    if relations:
        yield {"sobject": "EventRelation", "lines": relations}


def _occurrence_starts(local_start: datetime, rule: str, tz: Any, horizon: datetime, max_count: int, excluded: set,
                       sid: str) -> list[datetime]:
    """A series' occurrence starts (one more than ``max_count`` at most: more says the cap cut it)."""
    try:
        return list(occurrences(local_start, rule, tz=tz, horizon=horizon, max_count=max_count + 1, exclude_local_dates=excluded))
    except BadRecurrence as exc:
        raise RecordRejected("recurrence_rule", "bad_recurrence", f"{sid}: recurrence_rule: {exc}") from None


def _instances(sid: str, starts: list[datetime]) -> list[tuple[str, datetime, datetime]]:
    """(id, start, start in UTC) of each occurrence."""
    instances = []
    for s in starts:
        s_utc = s.astimezone(UTC)
        instances.append((f"{sid}@{utc_suffix(s_utc)}", s, s_utc))
    return instances


#: what stands for an occurrence's id in a relation's template (a private-use character either side)
_SID_MARK = "\ue000sid\ue000"
_SID_MARK_BYTES = _SID_MARK.encode()
#: the value types of a row msgspec writes as json does (pipeline._PLAIN_TYPES)
_PLAIN = frozenset({str, int, bool, type(None)})
#: what stands for an occurrence's values in an Event template: 0 its id suffix, 1 its start, 2 its end, 3 its day
_SLOT = re.compile("\ue000s([0-3])\ue000")


def _relation_template(encode: Callable[[Any], bytes], suffix: str, column: str, value: str) -> list[bytes] | None:
    """The encoded EventRelation line of one attendee link cut where the occurrence's id goes (3 pieces:
    ``esid.join(pieces)`` is the line of the row of the occurrence whose id encodes to ``"esid"``), or
    ``None`` when the link's own text holds the mark (the rows are then built one by one)."""
    line = encode({"sobject": "EventRelation", "source_system_id": _SID_MARK + suffix, "external_id_field": None,
                   "natural_key": ["EventId", "RelationId"],
                   "row": {"Event.Clio_Id__c": _SID_MARK, column: value, "IsInvitee": True}})
    pieces = line.split(_SID_MARK_BYTES)
    return pieces if len(pieces) == 3 else None


def _event_template(encode: Callable[[Any], bytes], sid: str, base: Mapping[str, Any],
                    all_day: bool) -> tuple[str, Callable[[tuple[str, ...]], tuple[str, ...]]] | None:
    """(format, pick) of the Event line of a series' occurrence: ``(format % pick((suffix, start, end[, day]))).encode()``
    is what the encoder writes for the occurrence's row (id ``sid@suffix``, its ``StartDateTime``, ``EndDateTime``
    and, all day, ``ActivityDate``), the four values ASCII text JSON writes as it is (an id suffix, ISO dates and
    times).  ``None`` when the row's own text holds a slot's mark (its rows are then built one by one)."""
    occ_sid = f"{sid}@\ue000s0\ue000"
    if all_day:
        row = {**base, "Clio_Id__c": occ_sid, "IsAllDayEvent": True, "ActivityDate": "\ue000s3\ue000",
               "StartDateTime": "\ue000s1\ue000", "EndDateTime": "\ue000s2\ue000"}
    else:
        row = {**base, "Clio_Id__c": occ_sid, "IsAllDayEvent": False, "StartDateTime": "\ue000s1\ue000",
               "EndDateTime": "\ue000s2\ue000"}
    text = encode({"sobject": "Event", "source_system_id": occ_sid, "external_id_field": "Clio_Id__c",
                   "natural_key": None, "row": row}).decode()
    parts = _SLOT.split(text)  # text, slot, text, slot, ..., text
    order = [int(i) for i in parts[1::2]]
    if sorted(order) != ([0, 0, 1, 2, 3] if all_day else [0, 0, 1, 2]):
        return None
    return "%s".join(p.replace("%", "%%") for p in parts[0::2]), itemgetter(*order)


def _attendee_user(ctx: _Ctx, att: Mapping[str, Any]) -> tuple[Any, str]:
    """(Clio user id, why not) of a non-contact attendee: a ``Calendar`` attendee is the user whose calendar
    it is (Clio lists people by their calendar), a ``User`` attendee is that user."""
    if att.get("type") == "Calendar":
        uid = ctx.users.calendar_user(att.get("id"))
        return uid, "" if uid is not None else "the calendar is no user's own calendar (a firm or shared calendar)"
    return att.get("id"), ""


def _documents(ctx: _Ctx, env, d, sid, issues, state) -> Iterator[TransformResult]:
    if d.get("deleted_at"):
        raise RecordRejected("deleted_at", "deleted_in_clio", f"{sid}: the document is in Clio's trash")
    blob = env.get("blob") or {}
    if not blob.get("path"):
        if env.get("blob_error"):  # listed by Clio, gone when downloaded
            raise RecordRejected("blob", "document_gone", f"{sid}: no file: {env['blob_error']}")
        raise RecordRejected("blob", "missing_blob", f"{sid}: no downloaded file for this document")
    if blob.get("size") == 0:  # Clio holds an empty file: load it as such, but say so in the report
        issues.add("blob", "zero_byte_document", f"{sid}: the file is empty (0 bytes) in Clio",
                   "loaded as an empty file")
    version = (d.get("latest_document_version") or {}).get("version_number") or 1
    vsid = f"{sid}@v{version}"
    # Earlier versions first, oldest first: the first one loaded creates the ContentDocument, every later
    # one (the latest last) is a new version of it ("ContentVersion.Clio_Id__c" -> its ContentDocumentId).
    first_vsid: str | None = None
    for older in env.get("versions") or ():
        vd, vblob = older.get("data") or {}, older.get("blob") or {}
        number = vd.get("version_number")
        if not isinstance(number, int) or number >= version:
            continue
        osid = f"{sid}@v{number}"
        if not vblob.get("path"):
            issues.add("versions", "missing_blob", f"{sid}: version {number} has no downloaded file"
                       + (f" ({older['blob_error']})" if older.get("blob_error") else ""), "version not loaded")
            continue
        orow = _base_row(osid, env, d)
        _map_fields(ctx, "ContentVersion", d, orow, issues)
        orow |= {"PathOnClient": str(vd.get("filename") or orow.get("PathOnClient"))[:255],
                 "Clio_Version_Number__c": number, "Clio_Received_At__c": vd.get("received_at"),
                 "Clio_Content_Type__c": vd.get("content_type") or orow.get("Clio_Content_Type__c"),
                 "Clio_Document_Id__c": sid, "_blob_path": vblob["path"]}
        if first_vsid is not None:
            orow["ContentVersion.Clio_Id__c"] = first_vsid
        first_vsid = first_vsid or osid
        yield _envelope("ContentVersion", osid, orow, blob={k: vblob.get(k) for k in ("path", "sha256", "size")})
    row = _base_row(vsid, env, d)
    _map_fields(ctx, "ContentVersion", d, row, issues)
    row["Clio_Document_Id__c"] = sid
    if first_vsid is not None:
        row["ContentVersion.Clio_Id__c"] = first_vsid
    row["_blob_path"] = blob["path"]  # a note for readers only: the loader strips "_" keys and reads env["blob"]
    yield _envelope("ContentVersion", vsid, row, blob={k: blob.get(k) for k in ("path", "sha256", "size")})
    yield from _links(ctx, d, vsid, issues, {"ContentVersion.Clio_Id__c": vsid})


def _links(ctx: _Ctx, d, sid: str, issues: Issues, doc_cols: dict[str, str]) -> Iterator[TransformResult]:
    matter_id = (d.get("matter") or {}).get("id")
    if matter_id is not None:
        target = ctx.matter_target(matter_id, issues, "matter")
        yield _envelope("ContentDocumentLink", f"{sid}#matter-{matter_id}",
                        doc_cols | {f"{target}:LinkedEntity.Clio_Id__c": f"matter-{matter_id}", "ShareType": "V", "Visibility": "AllUsers"},
                        ["ContentDocumentId", "LinkedEntityId"])
    contact_id = (d.get("contact") or {}).get("id")
    if contact_id is not None:
        known, rec = ctx.lookup.record("contacts", contact_id)
        kind = "Account" if rec is not None and rec.get("type") == "Company" else "Contact"
        yield _envelope("ContentDocumentLink", f"{sid}#contact-{contact_id}",
                        doc_cols | {f"{kind}:LinkedEntity.Clio_Id__c": f"contact-{contact_id}", "ShareType": "V", "Visibility": "AllUsers"},
                        ["ContentDocumentId", "LinkedEntityId"])


def _notes(ctx: _Ctx, env, d, sid, issues, state) -> Iterator[TransformResult]:
    row: dict[str, Any] = {}
    _map_fields(ctx, "ContentNote", d, row, issues)
    content = row.get("Content")
    if content is not None and not _HTML_TAG.search(content):
        row["Content"] = "".join(f"<p>{html.escape(line)}</p>" for line in content.splitlines()) or "<p></p>"
    yield _envelope("ContentNote", sid, row, list(ctx.spec.object_spec("ContentNote").get("natural_key") or ["Title"]))
    yield from _links(ctx, d, sid, issues, {"ContentNote.source_system_id": sid})


_HANDLERS = {
    "contacts": _contacts,
    "matters": _matters,
    "relationships": _relationships,
    "bills": _bills,
    "bank_transactions": _bank_transactions,
    "activities": _activities,
    "users": _rates("user"),
    "activity_rates": _rates("client"),
    "activity_descriptions": _rates("activity"),
    "calendar_entries": _calendar_entries,
    "tasks": _tasks,
    "communications": _communications,
    "documents": _documents,
    "matter_notes": _notes,
    "contact_notes": _notes,
} | money.handlers(_generic, lambda field, rule, message: RecordRejected(field, rule, message))

_KIND = {"matter_notes": "note", "contact_notes": "note", "users": "user", "activity_rates": "activity_rate",
         "activity_descriptions": "activity_description"}


def source_id(clio_object: str, clio_id: Any) -> str:
    """``contact-9001`` style id: the singular Clio kind, a dash, the Clio id."""
    kind = _KIND.get(clio_object) or (clio_object[:-1] if clio_object.endswith("s") else clio_object)
    if kind == "matter_note" or kind == "contact_note":
        kind = "note"
    return f"{kind}-{clio_id}"


def transform_object(
    clio_object_name: str,
    envelopes: Iterable[Mapping[str, Any]],
    spec: MappingSpec,
    users: UserMap,
    *,
    lookup: Lookup | None = None,
    horizon: datetime | None = None,
    lines: bool = False,
) -> Iterator[TransformResult]:
    """Transform staged envelopes of one Clio object into row envelopes and reject lines (one stream).

    :param clio_object_name: a key of ``PRODUCES`` (``contacts``, ``matters``, ``activities`` ...).
    :param envelopes: raw envelopes (``{"object", "source_system_id", "clio_id", "data", ...}``).
    :param lookup: other staged objects, see the module docstring.
    :param horizon: last instant recurring calendar entries are expanded to (default: now +
        ``options.recurrence_horizon_days``).
    :param lines: the caller takes encoded lines: a recurring calendar entry's Event rows and its occurrences'
        EventRelation rows may then come as ``{"sobject": "Event" or "EventRelation", "lines": [...]}`` (after
        the entry's other results; the lines of one object in the order of its rows), each line what
        ``staging.fast_encoder()`` writes for that row (``pipeline.transform_batch``).  Off, every
        result is a row envelope or a reject line.
    :raises ValueError: for an object this engine does not transform.
    """
    handler = _HANDLERS.get(clio_object_name)
    if handler is None:
        raise ValueError(f"no transform for Clio object {clio_object_name!r}; known: {sorted(_HANDLERS)}")
    ctx = _Ctx(spec, users, lookup, horizon, lines)
    state: dict[str, Any] = {}
    for env in envelopes:
        d = env.get("data")
        is_map = type(d) is dict or isinstance(d, Mapping)  # a parsed record is a dict: no ABC check
        sid = env.get("source_system_id") or (source_id(clio_object_name, d.get("id")) if is_map else None)
        if not is_map or sid is None:
            yield _reject(clio_object_name, sid or "unknown", "data", "bad_envelope", f"{sid or 'unknown'}: envelope has no record data", None)
            continue
        issues = Issues(sid, [])
        try:
            rows = list(handler(ctx, env, d, sid, issues, state))
        except RecordRejected as exc:
            yield from _issues_out(clio_object_name, issues)
            yield _reject(clio_object_name, sid, exc.field, exc.rule, str(exc), None)
            continue
        except BadValue as exc:
            yield from _issues_out(clio_object_name, issues)
            yield _reject(clio_object_name, sid, None, exc.rule, f"{sid}: {exc}", None)
            continue
        except OverflowError as exc:  # a date or number past what Python can hold: this record only
            yield from _issues_out(clio_object_name, issues)
            yield _reject(clio_object_name, sid, None, "out_of_range", f"{sid}: a value is out of range ({exc})", None)
            continue
        if issues.items:
            yield from _issues_out(clio_object_name, issues)
        yield from rows


__all__ = ["NATURAL_KEY_OBJECTS", "PRODUCES", "LookupTables", "TransformResult", "is_reject", "source_id", "split", "transform_object"]
