"""Field accounting: for every Clio field the extraction returns, where it goes.

A field of a Clio object (per route: a company contact and a person contact go to different
objects) is accounted for by

1. the mapping spec: a ``from``/``template``/``owner``/``ref`` path or a link of the spec key the
   record goes to → *migrated* (Salesforce field);
2. a documented derivation (:data:`DERIVED`, the rules in ``clio2sf.verify.source``) → *migrated*;
3. the spec's ``not_migrated`` section (``not_migrated: {<clio object or "*">: {<field>: <reason>}}``,
   part of the hashed mapping the admin approves) → *left behind*;
4. custom field values: a decision in ``options.custom_fields.decisions`` (target or skip), or the
   automatic ``<Name>__c`` for a custom field discover listed (what the admin saw) → migrated / left
   behind; a custom field discover did not list is unaccounted until the admin decides.

Anything else is *unaccounted*: with data, it is a failure (``failures``). ``account(raw, objects,
spec)`` counts non-empty values per (object, route, field) in the raw extraction.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from clio2sf import reports
from clio2sf.mapping.spec import MappingSpec
from clio2sf.verify.source import EXPENSE_TYPES, ROUTED

#: Data objects accounted for (reference objects such as users or practice areas feed derivations
#: and are exported as reference files by discover).
ACCOUNTED = (*ROUTED, "relationships", "matter_notes", "contact_notes")

#: Documented derivations, per Clio object ("*": every object) or per route (``object:route``).
DERIVED: dict[str, dict[str, str]] = {
    "*": {"id": "Clio_Id__c (external id)", "created_at": "Clio_Created_Date__c"},
    "contacts": {"type": "routing: Company → Account, Person → Contact",
                 "custom_field_values": "custom fields (see the custom field table)"},
    "contacts:Contact": {"company": "Contact.AccountId (primary company)",
                         "related_contacts": "Contact.AccountId / AccountContactRelation (other companies)",
                         "email_addresses": "Clio_Other_Contact_Details__c (non-primary addresses)",
                         "phone_numbers": "Clio_Other_Contact_Details__c (non-primary numbers)",
                         "addresses": "Mailing* (primary) and Clio_Other_Contact_Details__c"},
    "contacts:Account": {"addresses": "Billing* (primary) and Clio_Other_Contact_Details__c",
                         "email_addresses": "Clio_Other_Contact_Details__c (non-primary addresses)",
                         "phone_numbers": "Clio_Other_Contact_Details__c (non-primary numbers)"},
    "matters": {"client": "Case.ContactId/AccountId, Opportunity.AccountId",
                "practice_area": "Case.Type (value map practice_area_case_type) and Clio_Matter_Type__c",
                "responsible_attorney": "OwnerId and the matter team", "originating_attorney": "the matter team",
                "responsible_staff": "the matter team", "custom_rate": "Rate_Structure__c (matter rates)",
                "custom_field_values": "custom fields (see the custom field table)"},
    "relationships": {"contact": "CaseContactRole.ContactId", "matter": "CaseContactRole.CasesId",
                      "description": "CaseContactRole.Role (value map relationship_role)"},
    "activities:Time_Entry__c": {"quantity": "Clio_Hours__c (the same duration, in seconds)",
                                 "rounded_quantity": "Clio_Hours__c (quantity_in_hours; the rounded seconds)"},
    "activities:Task": {"quantity": "Clio_Hours__c (the same duration, in seconds)",
                        "rounded_quantity": "Clio_Hours__c (quantity_in_hours; the rounded seconds)"},
    "activities:Expense__c": {"rounded_quantity": "Clio_Quantity__c (quantity)"},
    "matters:Case": {"number": "Clio_Matter_Number__c (display_number holds it)"},
    "matters:Opportunity": {"number": "Clio_Matter_Number__c (display_number holds it)"},
    "credit_memos": {"allocations": "Clio_Payment__c rows (allocations), linked to the memo"},
    "matter_notes:ContentNote": {"type": "the note's parent kind (the ContentDocumentLink)"},
    "contact_notes:ContentNote": {"type": "the note's parent kind (the ContentDocumentLink)"},
    "activities": {"type": "routing: expense → Expense__c, time → Time_Entry__c or Task",
                   "non_billable": "routing (non-billable time → Task) and Expense Clio_Billable__c",
                   "no_charge": "routing (no-charge time → Task)", "matter": "Case__c / Task.WhatId"},
    "calendar_entries": {"start_at": "StartDateTime / ActivityDate", "end_at": "EndDateTime",
                         "all_day": "IsAllDayEvent", "recurrence_rule": "one Event per occurrence (RFC 5545)",
                         "parent_calendar_entry_id": "Clio_Series_Id__c (edited occurrence)",
                         "attendees": "EventRelation (contacts and users that resolved)",
                         "calendar_owner": "OwnerId (the user of the calendar)"},
    "tasks": {"assignee": "OwnerId (a user) or WhoId (a contact)",
              "permission": "Clio_Private__c (true when Clio's permission is private)"},
    "communications": {"senders": "WhoId and Clio_Participants__c", "receivers": "WhoId and Clio_Participants__c",
                       "type": "Task.Type and TaskSubtype"},
    "documents": {"matter": "ContentDocumentLink", "contact": "ContentDocumentLink",
                  "deleted_at": "documents in Clio's trash are rejected (reported)",
                  "size": "the file itself (checksum verified)", "filename": "PathOnClient",
                  "content_type": "Clio_Content_Type__c", "received_at": "Clio_Received_At__c"},
    "matter_notes": {"matter": "ContentDocumentLink to the matter"},
    "contact_notes": {"contact": "ContentDocumentLink to the contact"},
    "allocations": {"parent": "Clio_Kind__c, Clio_Payment_Reference__c and the credit memo link"},
    "outstanding_client_balances": {"outstanding_bills": "Clio_Outstanding_Bills__c and _Bill_Numbers__c"},
}


def route(obj: str, d: Mapping[str, Any], spec: MappingSpec) -> str:
    """The spec key a raw record goes to (the same rules as ``source``)."""
    if obj == "contacts":
        return "Account" if d.get("type") == "Company" else "Contact"
    if obj == "matters":
        return spec.matter_target(d) if len(spec.matter_objects) > 1 else spec.matter_objects[0]
    if obj == "activities":
        if d.get("type") in EXPENSE_TYPES:
            return "Expense__c"
        return "Task@time_entries" if d.get("non_billable") or d.get("no_charge") else "Time_Entry__c"
    keys = [k for k, o in spec.objects.items()
            if obj in (o.get("source") if isinstance(o.get("source"), list) else [o.get("source")])
            and not o.get("natural_key")]
    keys = keys or [k for k, o in spec.objects.items()
                    if obj in (o.get("source") if isinstance(o.get("source"), list) else [o.get("source")])]
    return keys[0] if keys else "(none)"


def _head(path: str) -> str:
    return path.replace("[", ".").split(".")[0]


def spec_heads(spec: MappingSpec, key: str) -> dict[str, str]:
    """Top-level Clio field → Salesforce field(s) of one spec key."""
    out: dict[str, set[str]] = defaultdict(set)
    ospec = spec.objects.get(key) or {}
    sobject = key.split("@", 1)[0]
    for target, fspec in (ospec.get("fields") or {}).items():
        fspec = fspec or {}
        paths: list[str] = []
        for k in ("from", "owner"):
            v = fspec.get(k)
            paths += [v] if isinstance(v, str) else list(v or [])
        if fspec.get("template"):
            paths += re.findall(r"\{([A-Za-z0-9_.\[\]]+)\}", fspec["template"])
        for p in paths:
            out[_head(p)].add(f"{sobject}.{target}")
    for name, link in (ospec.get("links") or {}).items():
        out[_head(link["from"])].add(f"{sobject} {name} link")
    return {k: ", ".join(sorted(v)) for k, v in out.items()}


def _not_migrated(spec: MappingSpec, obj: str, route_key: str) -> dict[str, str]:
    nm = spec.data.get("not_migrated") or {}
    return {**(nm.get("*") or {}), **(nm.get(obj) or {}), **(nm.get(f"{obj}:{route_key}") or {})}


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


def classify(spec: MappingSpec, obj: str, route_key: str, fname: str) -> tuple[str, str, str]:
    """(destination, status, reason) of one Clio field of one route: migrated | not_migrated | unaccounted."""
    heads = spec_heads(spec, route_key)
    derived = {**DERIVED["*"], **DERIVED.get(obj, {}), **DERIVED.get(f"{obj}:{route_key.split('@')[0]}", {})}
    not_mig = _not_migrated(spec, obj, route_key)
    if fname in heads:
        return heads[fname], "migrated", ""
    if fname in derived:
        return derived[fname], "migrated", "derivation"
    if fname in not_mig:
        return "(not migrated)", "not_migrated", not_mig[fname]
    return "", "unaccounted", "no spec field, derivation or approved reason"


def routes(obj: str, spec: MappingSpec) -> list[str]:
    """Every spec key records of ``obj`` can go to."""
    if obj == "contacts":
        return ["Account", "Contact"]
    if obj == "matters":
        return list(spec.matter_objects)
    if obj == "activities":
        return ["Time_Entry__c", "Task@time_entries", "Expense__c"]
    return [route(obj, {}, spec)]


def plan(spec: MappingSpec, custom_fields: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Discover's table: every field the extraction can return (clio2sf/catalog.py), per route, and
    every custom field discover read, with where it goes. No record is read."""
    from clio2sf import catalog
    from clio2sf.mapping.spec import _top_level_fields

    rows = []
    for obj in ACCOUNTED:
        if obj not in catalog.BY_NAME:
            continue
        for r in routes(obj, spec):
            for fname in sorted(_top_level_fields(catalog.get(obj).fields)):
                dest, status, reason = classify(spec, obj, r, fname)
                rows.append({"object": obj, "route": r, "field": fname, "destination": dest, "status": status,
                             "reason": reason})
    cf = spec.options.get("custom_fields") or {}
    for field_def in custom_fields:
        if field_def.get("deleted"):
            continue
        parent = str(field_def.get("parent_type"))
        obj = "matters" if parent == "Matter" else "contacts"
        target = spec.matter_objects[0] if parent == "Matter" else "Contact"
        dest, status, reason = _custom_decision(parent, str(field_def.get("name")), cf.get("decisions") or {},
                                                cf.get("auto", True), None, target)
        rows.append({"object": obj, "route": "(custom field)", "field": f"custom_field_values[{field_def.get('name')}]",
                     "destination": dest, "status": status, "reason": reason})
    return rows


def account(raw: Callable[[str], Iterable[Mapping[str, Any]]], objects: Iterable[str], spec: MappingSpec,
            discovered_custom_fields: Iterable[Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """``{"<object>:<route>.<field>": {object, route, field, destination, status, values, migrated,
    left_behind, reason}}`` for every field seen in the raw records of the accounted objects.

    ``discovered_custom_fields``: the custom fields discover listed (``None``: not checked).
    """
    objs = [o for o in ACCOUNTED if o in set(objects)]
    listed = None if discovered_custom_fields is None else {
        (str(c.get("parent_type")), str(c.get("name"))) for c in discovered_custom_fields if not c.get("deleted")}
    cf = spec.options.get("custom_fields") or {}
    decisions = cf.get("decisions") or {}
    out: dict[str, dict[str, Any]] = {}
    for obj in objs:
        for env in raw(obj):
            d = env.get("data")
            if not isinstance(d, Mapping):
                continue
            r = route(obj, d, spec)
            if obj == "documents":
                _older_versions(out, spec, r, d)
            for fname, value in d.items():
                if fname == "custom_field_values" and isinstance(value, list):
                    _custom_values(out, obj, r, value, decisions, cf.get("auto", True), listed)
                key = f"{obj}:{r}.{fname}"
                entry = out.get(key)
                if entry is None:
                    dest, status, reason = classify(spec, obj, r, fname)
                    entry = out[key] = {"object": obj, "route": r, "field": fname, "destination": dest,
                                        "status": status, "reason": reason, "values": 0, "migrated": 0,
                                        "left_behind": 0}
                if not _empty(value):
                    entry["values"] += 1
                    if entry["status"] == "migrated":
                        entry["migrated"] += 1
                    elif entry["status"] == "not_migrated":
                        entry["left_behind"] += 1
    return out


def _custom_decision(parent: str, name: str, decisions: Mapping[str, Any], auto: bool,
                     listed: set[tuple[str, str]] | None, route_key: str) -> tuple[str, str, str]:
    from clio2sf.mapping.values import api_name

    decision = decisions.get(f"{parent}:{name}")
    target = route_key.split("@")[0]
    if decision is not None and decision.get("skip"):
        return "(not migrated)", "not_migrated", str(decision.get("reason") or "skipped by the admin's decision")
    if decision is not None:
        return f"{target}.{decision.get('target')}", "migrated", "admin decision"
    if auto and (listed is None or (parent, name) in listed):
        return f"{target}.{api_name(name)}", "migrated", "automatic <Name>__c (listed by discover)"
    return "", "unaccounted", "a custom field discover did not list: the admin has not decided where it goes"


def _custom_values(out: dict[str, dict[str, Any]], obj: str, r: str, values: list, decisions: Mapping[str, Any],
                   auto: bool, listed: set[tuple[str, str]] | None) -> None:
    parent = "Matter" if obj == "matters" else "Contact"
    for cfv in values:
        if not isinstance(cfv, Mapping):
            continue
        name = str(cfv.get("field_name"))
        key = f"{obj}:{r}.custom_field_values[{name}]"
        entry = out.get(key)
        if entry is None:
            dest, status, reason = _custom_decision(parent, name, decisions, auto, listed, r)
            entry = out[key] = {"object": obj, "route": r, "field": f"custom_field_values[{name}]",
                                "destination": dest, "status": status, "reason": reason, "values": 0,
                                "migrated": 0, "left_behind": 0}
        if not _empty(cfv.get("value")):
            entry["values"] += 1
            if entry["status"] == "migrated":
                entry["migrated"] += 1
            elif entry["status"] == "not_migrated":
                entry["left_behind"] += 1


def _older_versions(out: dict[str, dict[str, Any]], spec: MappingSpec, r: str, d: Mapping[str, Any]) -> None:
    """Versions 1..N-1 of a document whose latest is N: one ContentVersion each, or an approved reason."""
    try:
        older = int((d.get("latest_document_version") or {}).get("version_number") or 1) - 1
    except (TypeError, ValueError):
        older = 0
    reason = _not_migrated(spec, "documents", r).get("older_versions")
    key = f"documents:{r}.older_versions"
    entry = out.setdefault(key, {"object": "documents", "route": r, "field": "older_versions",
                                 "destination": "(not migrated)" if reason else "ContentVersion (one per version)",
                                 "status": "not_migrated" if reason else "migrated",
                                 "reason": reason or "checked record by record by the verifier",
                                 "values": 0, "migrated": 0, "left_behind": 0})
    entry["values"] += max(older, 0)
    entry["left_behind" if reason else "migrated"] += max(older, 0)


def failures(acct: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``contacts:Account.secondary_email_address (12 values)`` for each unaccounted field with data."""
    return [f"{e['object']}:{e['route']}.{e['field']} ({e['values']} values)" for e in acct.values()
            if e["status"] == "unaccounted" and e["values"]]


def summary(acct: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {"fields": len(acct), "values_migrated": sum(e["migrated"] for e in acct.values()),
            "values_left_behind": sum(e["left_behind"] for e in acct.values()),
            "unaccounted": failures(acct), "rows": sorted(acct.values(), key=lambda e: (e["object"], e["route"],
                                                                                      e["field"]))}


def plan_markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    from clio2sf.reports import md_text

    lines = ["## Field accounting", "",
             "Every Clio field the extraction can return, per route, and where it goes. A field that is "
             "*unaccounted* fails the full load's verify task as soon as it holds data.", "",
             "| Clio object | Goes to | Clio field | Destination | Status | Reason |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(md_text(str(r[k])) for k in ("object", "route", "field", "destination",
                                                                      "status", "reason")) + " |")
    return "\n".join(lines) + "\n"


def plan_html(rows: list[Mapping[str, Any]]) -> str:
    bad = [r for r in rows if r["status"] == "unaccounted"]
    head = reports.banner(f"{len(bad)} Clio field(s) have no destination and no approved reason yet: the full load "
                          "fails its verify task if any of them holds data", "warn") if bad else \
        reports.banner("Every Clio field the extraction returns has a destination or an approved reason", "ok")
    return "<h2>Field accounting</h2>" + head + reports.table(
        ["Clio object", "Goes to", "Clio field", "Destination", "Status", "Reason"],
        [[r["object"], r["route"], r["field"], r["destination"], r["status"], r["reason"]] for r in rows],
        row_classes=["warn" if r["status"] == "unaccounted" else "" for r in rows])


def html(acct: Mapping[str, Mapping[str, Any]]) -> str:
    rows = sorted(acct.values(), key=lambda e: (e["status"] != "unaccounted", e["object"], e["route"], e["field"]))
    bad = failures(acct)
    head = reports.banner(f"{len(bad)} Clio field(s) with data go nowhere: " + "; ".join(bad[:10]), "bad") if bad \
        else reports.banner("Every Clio field with data is migrated or left behind for an approved reason", "ok")
    return "<h2>Field accounting</h2>" + head + reports.table(
        ["Clio object", "Goes to", "Clio field", "Destination", "Status", "Reason", "Non-empty values",
         "Migrated", "Left behind"],
        [[e["object"], e["route"], e["field"], e["destination"], e["status"], e["reason"], e["values"],
          e["migrated"], e["left_behind"]] for e in rows], numeric=[6, 7, 8],
        row_classes=["bad" if e["status"] == "unaccounted" and e["values"] else "" for e in rows])
