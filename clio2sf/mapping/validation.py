"""Pre-load validation against Salesforce describes: the spec (config level) and rows (record level).

Rule names: missing_field, required_missing, bad_type, too_long, bad_picklist, bad_reference
(plus missing_object at config level).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from clio2sf.mapping.spec import MappingSpec
from clio2sf.mapping.values import is_email

_SF_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_TEXT_TYPES = {"string", "textarea", "picklist", "multipicklist", "combobox", "phone", "url", "email", "encryptedstring"}
_NUMBER_TYPES = {"double", "currency", "percent", "int", "long"}
_AS_COMPATIBLE = {
    "text": _TEXT_TYPES,
    "email": {"email", "string", "textarea"},
    "date": {"date", "datetime"},
    "datetime": {"datetime"},
    "number": _NUMBER_TYPES,
    "bool": {"boolean"},
    "json": {"textarea", "string"},
}
_PLAN_TYPE_TO_SF = {"Text": "string", "LongTextArea": "textarea", "Number": "double", "Currency": "currency", "Date": "date",
                    "DateTime": "datetime", "Checkbox": "boolean", "Email": "email", "Url": "url", "Phone": "phone",
                    "Picklist": "picklist", "Lookup": "reference"}


@dataclass(frozen=True)
class Problem:
    """A config-level finding: ``where`` is the spec key to fix."""

    sobject: str
    field: str | None
    rule: str
    message: str
    where: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


class _Describe:
    def __init__(self, describe: Mapping[str, Any]) -> None:
        self.name = describe.get("name")
        self.fields = {f["name"]: f for f in describe.get("fields") or ()}
        self.lower = {n.lower(): f for n, f in self.fields.items()}
        self.by_rel: dict[str, dict] = {}
        for f in self.fields.values():
            if f.get("relationshipName"):
                self.by_rel[f["relationshipName"].lower()] = f

    def field(self, name: str) -> dict | None:
        return self.fields.get(name) or self.lower.get(name.lower())

    def reference(self, column: str) -> tuple[dict | None, str | None]:
        """Resolve ``Rel.Ext__c`` / ``Type:Rel.Ext__c`` to (reference field, error)."""
        head, _, _ext = column.partition(".")
        target_type, _, rel = head.rpartition(":")
        f = self.by_rel.get(rel.lower())
        if f is None:
            return None, f"{self.name} has no relationship {rel!r}"
        if target_type and target_type not in (f.get("referenceTo") or ()):
            return f, f"{self.name}.{f['name']} cannot point at {target_type} (referenceTo {f.get('referenceTo')})"
        return f, None

    def required(self) -> list[str]:
        return [n for n, f in self.fields.items()
                if f.get("createable") and not f.get("nillable") and not f.get("defaultedOnCreate") and f.get("type") != "boolean"]


def _active_values(f: Mapping[str, Any]) -> set[str]:
    return {p["value"] for p in f.get("picklistValues") or () if p.get("active", True)}


def _describe_for(describes: Mapping[str, Mapping[str, Any]], sobject: str) -> _Describe | None:
    d = describes.get(sobject)
    return _Describe(d) if d else None


def validate_spec_against_describes(spec: MappingSpec, describes: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    """Config-level check of the spec against the org: returns problems (empty list = fine).

    Fields the schema plan creates (``schema.fields``, Clio_Id__c, Clio_Created_Date__c) count as
    present.  Objects with no describe are reported as missing_object unless the plan creates them.
    """
    problems: list[Problem] = []
    plan_fields = spec.data["schema"].get("fields") or {}
    plan_objects = set(spec.data["schema"].get("objects") or {})
    for key, ospec in spec.objects.items():
        sobject = key.split("@")[0]
        if sobject not in spec.load_order:
            continue
        desc = _describe_for(describes, sobject)
        where_obj = f"objects.{key}"
        if desc is None:
            if sobject not in plan_objects:
                problems.append(Problem(sobject, None, "missing_object", f"the org has no {sobject} (no describe)", where_obj))
            continue
        planned = dict(plan_fields.get(sobject) or {})
        if sobject in ("Task", "Event"):
            planned |= plan_fields.get("Activity") or {}
        planned |= {"Clio_Id__c": {"type": "Text"}, "Clio_Created_Date__c": {"type": "DateTime"}}
        covered: set[str] = set()
        for target, fspec in (ospec.get("fields") or {}).items():
            where = f"{where_obj}.fields.{target}"
            if "." in target:
                f, err = desc.reference(target)
                if err and not (target.split(".")[0].endswith("__r") and target.split(".")[0][:-3] + "__c" in planned):
                    problems.append(Problem(sobject, target, "bad_reference", err, where))
                covered.add(f["name"] if f else target)
                continue
            f = desc.field(target)
            covered.add(target)
            if f is None:
                if target not in planned:
                    problems.append(Problem(sobject, target, "missing_field",
                                            f"{sobject} has no field {target} and schema.fields.{sobject} does not create it", where))
                continue
            if not f.get("createable") and not f.get("updateable"):
                problems.append(Problem(sobject, target, "bad_type", f"{sobject}.{target} is not writable", where))
            kind = "text" if "owner" in fspec or "template" in fspec or "const" in fspec else fspec.get("as", "text")
            if "owner" in fspec:
                if f.get("type") != "reference":
                    problems.append(Problem(sobject, target, "bad_type", f"{sobject}.{target} is {f.get('type')}, not a user reference", where))
            elif f.get("type") not in _AS_COMPATIBLE.get(kind, _TEXT_TYPES) and not (kind == "text" and f.get("type") in ("reference",)):
                problems.append(Problem(sobject, target, "bad_type",
                                        f"{sobject}.{target} is {f.get('type')}; the spec writes {kind}", where))
            if "const" in fspec and f.get("type") == "reference":
                bad_ref = _const_reference_problem(describes, sobject, target, f, fspec["const"])
                if bad_ref:
                    problems.append(Problem(sobject, target, "bad_reference", bad_ref, where))
            if fspec.get("max") and f.get("type") in _TEXT_TYPES and f.get("length") and fspec["max"] > f["length"]:
                problems.append(Problem(sobject, target, "too_long",
                                        f"max {fspec['max']} exceeds {sobject}.{target} length {f['length']}; set max to {f['length']}", where))
            if f.get("type") == "picklist" and f.get("restrictedPicklist"):
                allowed = _active_values(f)
                values = set()
                if fspec.get("map"):
                    values = set(spec.value_map(fspec["map"]).target_values())
                elif "const" in fspec:
                    values = {str(fspec["const"])}
                bad = sorted(values - allowed)
                if bad:
                    problems.append(Problem(sobject, target, "bad_picklist",
                                            f"{sobject}.{target} is a restricted picklist without {bad}; add the values or change value_maps.{fspec.get('map')}", where))
        for req in desc.required():
            if req not in covered and req not in _IMPLICIT_REQUIRED.get(sobject, ()):
                problems.append(Problem(sobject, req, "required_missing",
                                        f"{sobject}.{req} is required and the spec does not map it", where_obj))
    return problems


def _const_reference_problem(describes: Mapping[str, Mapping[str, Any]], sobject: str, target: str,
                             f: Mapping[str, Any], value: Any) -> str | None:
    """A constant Salesforce id must point at a record of a kind the field accepts (by the org's key prefixes)."""
    text = str(value or "")
    if not re.fullmatch(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?", text):
        return f"{sobject}.{target} takes a Salesforce id; {text!r} is not one"
    targets = list(f.get("referenceTo") or ())
    prefixes = {(describes.get(t) or {}).get("keyPrefix"): t for t in targets}
    prefixes.pop(None, None)
    if not prefixes:
        return f"{sobject}.{target}: no describe of {targets} to check {text!r} against; load their describes"
    if text[:3] not in prefixes:
        return (f"{sobject}.{target} points at {'/'.join(targets)} (id prefixes {sorted(prefixes)}); {text!r} is the id "
                "of another kind of record")
    return None


#: Required fields the transforms fill outside the spec's ``fields`` (references, natural keys).
_IMPLICIT_REQUIRED = {
    "Event": ("DurationInMinutes", "ActivityDateTime", "StartDateTime", "EndDateTime", "IsAllDayEvent"),
    "CaseContactRole": ("CasesId", "ContactId", "Role"),
    "OpportunityContactRole": ("OpportunityId", "ContactId"),
    "EventRelation": ("EventId", "RelationId"),
    "ContentDocumentLink": ("ContentDocumentId", "LinkedEntityId"),
    "ContentVersion": ("VersionData",),
    "Contact": ("AccountId",),
}


def _check_value(sobject: str, name: str, f: Mapping[str, Any], value: Any) -> tuple[str, str] | None:
    ftype = f.get("type")
    if value is None:
        return None
    if ftype in _TEXT_TYPES:
        if not isinstance(value, str):
            return "bad_type", f"{sobject}.{name} expects text, got {type(value).__name__}"
        if f.get("length") and len(value) > f["length"]:
            return "too_long", f"{sobject}.{name} is {len(value)} characters, max {f['length']}"
        if ftype == "email" and not is_email(value):
            return "bad_type", f"{sobject}.{name} {value!r} is not an email address"
        if ftype == "picklist" and f.get("restrictedPicklist") and value not in _active_values(f):
            return "bad_picklist", f"{sobject}.{name} value {value!r} is not allowed by the restricted picklist"
    elif ftype in _NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "bad_type", f"{sobject}.{name} expects a number, got {type(value).__name__}"
    elif ftype == "boolean":
        if not isinstance(value, bool):
            return "bad_type", f"{sobject}.{name} expects true/false, got {type(value).__name__}"
    elif ftype == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return "bad_type", f"{sobject}.{name} expects YYYY-MM-DD, got {value!r}"
    elif ftype == "datetime":
        try:
            if datetime.fromisoformat(value).tzinfo is None:
                raise ValueError
        except (TypeError, ValueError):
            return "bad_type", f"{sobject}.{name} expects an ISO 8601 date-time with offset, got {value!r}"
    elif ftype == "reference":
        if not isinstance(value, str) or not _SF_ID.match(value):
            return "bad_reference", f"{sobject}.{name} expects a Salesforce id, got {value!r}"
    return None


def validate_rows(rows: Iterable[Mapping[str, Any]], describes: Mapping[str, Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Check transformed-row envelopes against describes; yield one reject line per problem.

    Columns starting with ``_`` are loader directives and are skipped.  Rows of objects without a
    describe are not checked (``validate_spec_against_describes`` reports the missing object).
    """
    cache: dict[str, _Describe | None] = {}
    required_cache: dict[str, list[str]] = {}
    for env in rows:
        sobject = env["sobject"]
        if sobject not in cache:
            cache[sobject] = _describe_for(describes, sobject)
            required_cache[sobject] = cache[sobject].required() if cache[sobject] else []
        desc = cache[sobject]
        if desc is None:
            continue
        sid = env.get("source_system_id")
        row = env["row"]
        present: set[str] = set()
        for column, value in row.items():
            if column.startswith("_"):
                continue
            if "." in column:
                if column.endswith(".source_system_id"):
                    present.add(column.split(".")[0] + "Id")
                    continue
                f, err = desc.reference(column)
                if err:
                    yield _reject(sobject, sid, column, "bad_reference", f"{sid}: {err}")
                if f is not None:
                    present.add(f["name"])
                continue
            if column == "RecordType.DeveloperName":
                present.add("RecordTypeId")
                continue
            f = desc.field(column)
            if f is None:
                yield _reject(sobject, sid, column, "missing_field", f"{sid}: {sobject} has no field {column}")
                continue
            if value is not None:
                present.add(f["name"])
            bad = _check_value(sobject, column, f, value)
            if bad:
                yield _reject(sobject, sid, column, bad[0], f"{sid}: {bad[1]}")
        for req in required_cache[sobject]:
            if req not in present and req not in _IMPLICIT_REQUIRED.get(sobject, ()):
                yield _reject(sobject, sid, req, "required_missing", f"{sid}: {sobject}.{req} is required and missing")


def _reject(sobject: str, sid: Any, field: str, rule: str, message: str) -> dict[str, Any]:
    return {"phase": "validate", "object": sobject, "source_system_id": sid, "field": field, "rule": rule,
            "message": message, "repair": None}


def planned_field_types(spec: MappingSpec) -> dict[str, dict[str, str]]:
    """Describe-style field types of the fields the schema plan creates (for previews)."""
    out: dict[str, dict[str, str]] = {}
    for sobject, fields in (spec.data["schema"].get("fields") or {}).items():
        out[sobject] = {name: _PLAN_TYPE_TO_SF[f["type"]] for name, f in fields.items()}
    return out
