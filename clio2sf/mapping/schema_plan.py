"""Schema plan: custom objects, fields and record types the confirmed spec needs, and the access to them.

Rendered for the admin (Markdown / CSV) and as Tooling API payloads for an opt-in apply task.
Payloads are ordered: objects, then their plain fields, then lookups (after their targets), then
record types.  Task/Event fields are created on Activity; objects that cannot carry custom fields
(CaseContactRole, EventRelation, ContentDocumentLink, ContentNote, ...) get none.  ``access``
lists the object and field permissions the ``Clio_Migration`` permission set grants the
integration user (see :mod:`clio2sf.access`): new fields are hidden until it is assigned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clio2sf import reports
from clio2sf.access import PERMISSION_SET, AccessPlan, access_plan
from clio2sf.mapping.spec import NATURAL_KEY_OBJECTS, MappingSpec
from clio2sf.mapping.values import api_name, snake_words

NO_CUSTOM_FIELDS = NATURAL_KEY_OBJECTS | {"AccountContactRelation", "CaseTeamMember"}
#: Clio custom field type -> (plan type, extra metadata).  ``time`` has no Tooling type in the
#: payload contract: kept as Text(8) "HH:MM:SS".
CLIO_FIELD_TYPES: dict[str, tuple[str, dict[str, Any]]] = {
    "text_line": ("Text", {"length": 255}),
    "text_area": ("LongTextArea", {"length": 32768}),
    "numeric": ("Number", {"precision": 18, "scale": 2}),
    "currency": ("Currency", {"precision": 16, "scale": 2}),
    "date": ("Date", {}),
    "time": ("Text", {"length": 8}),
    "checkbox": ("Checkbox", {}),
    "picklist": ("Picklist", {}),
    "email": ("Email", {}),
    "url": ("Url", {}),
    "contact": ("Lookup", {"reference_to": "Contact"}),
    "matter": ("Lookup", {"reference_to": "Case"}),
}


@dataclass
class PlannedField:
    sobject: str
    name: str
    type: str
    label: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    external_id: bool = False
    unique: bool = False
    reference_to: str | None = None
    values: list[str] = field(default_factory=list)
    restricted: bool = False
    reason: str = ""
    exists: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.sobject}.{self.name}"

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"label": self.label, "type": self.type}
        t = self.type
        if t == "Text":
            meta["length"] = self.length or 255
        elif t == "LongTextArea":
            meta |= {"length": self.length or 32768, "visibleLines": 5}
        elif t in ("Number", "Currency"):
            meta |= {"precision": self.precision or (16 if t == "Currency" else 18), "scale": 2 if self.scale is None else self.scale}
        elif t == "Checkbox":
            meta["defaultValue"] = False
        elif t == "Picklist":
            meta["valueSet"] = {
                "restricted": self.restricted,
                "valueSetDefinition": {"value": [{"fullName": v, "label": v, "default": False} for v in self.values]},
            }
        elif t == "Lookup":
            rel = self.name[:-3]
            meta |= {"referenceTo": self.reference_to, "relationshipName": rel,
                     "relationshipLabel": snake_words(self.sobject) + " " + snake_words(rel), "deleteConstraint": "SetNull"}
        if self.external_id:
            meta["externalId"] = True
        if self.unique:
            meta["unique"] = True
        return meta


@dataclass
class SchemaPlan:
    objects: list[dict[str, Any]]
    fields: list[PlannedField]
    record_types: list[dict[str, Any]]
    spec_hash: str
    access: AccessPlan = field(default_factory=AccessPlan)

    def planned_fields(self) -> set[tuple[str, str]]:
        """(sobject, field) of every planned field, Activity fields on Task and Event."""
        out = set()
        for f in self.fields:
            for s in (("Task", "Event") if f.sobject == "Activity" else (f.sobject,)):
                out.add((s, f.name))
        return out

    def tooling_payloads(self) -> list[tuple[str, dict[str, Any]]]:
        """``(tooling sobject, body)`` pairs for what does not exist yet, in apply order.

        The tooling sobject is ``CustomObject``, ``CustomField`` or ``RecordType``; POST the body to
        ``/tooling/sobjects/<tooling sobject>``.
        """
        out: list[tuple[str, dict[str, Any]]] = []
        for obj in self.objects:
            if not obj["exists"]:
                out.append(("CustomObject", {"FullName": obj["name"], "Metadata": {
                    "label": obj["label"], "pluralLabel": obj["plural_label"],
                    "nameField": {"type": "Text", "label": "Name"}, "deploymentStatus": "Deployed", "sharingModel": "ReadWrite"}}))
        custom_objects = [o["name"] for o in self.objects]
        plain = [f for f in self.fields if f.type != "Lookup" and not f.exists]
        lookups = [f for f in self.fields if f.type == "Lookup" and not f.exists]
        # lookups to standard objects first, then to custom objects in declaration order
        lookups.sort(key=lambda f: custom_objects.index(f.reference_to) + 1 if f.reference_to in custom_objects else 0)
        for f in plain + lookups:
            out.append(("CustomField", {"FullName": f.full_name, "Metadata": f.metadata()}))
        for rt in self.record_types:
            if not rt["exists"]:
                out.append(("RecordType", {"FullName": f"{rt['sobject']}.{rt['name']}", "Metadata": {"label": rt["label"], "active": True}}))
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per planned item (objects, fields, record types)."""
        out = [{"kind": "CustomObject", "object": o["name"], "field": "", "type": "", "details": o["label"],
                "external_id": "", "unique": "", "exists": o["exists"], "reason": "custom object for Clio data"} for o in self.objects]
        for f in self.fields:
            meta = f.metadata()
            details = ", ".join(f"{k}={meta[k]}" for k in ("length", "precision", "scale", "referenceTo") if k in meta)
            if f.type == "Picklist":
                details = "values: " + "; ".join(f.values)
            out.append({"kind": "CustomField", "object": f.sobject, "field": f.name, "type": f.type, "details": details,
                        "external_id": f.external_id, "unique": f.unique, "exists": f.exists, "reason": f.reason})
        out += [{"kind": "RecordType", "object": r["sobject"], "field": r["name"], "type": "", "details": r["label"],
                 "external_id": "", "unique": "", "exists": r["exists"], "reason": "practice area record type"} for r in self.record_types]
        reason = f"permission set {PERMISSION_SET}, assigned to the integration user"
        out += [{"kind": "ObjectPermissions", "object": o, "field": "", "type": "", "details": "Read, Create, Edit, Delete, "
                 "View All, Modify All", "external_id": "", "unique": "", "exists": "", "reason": reason}
                for o in self.access.objects]
        out += [{"kind": "FieldPermissions", "object": s, "field": f, "type": "",
                 "details": "Read, Edit" if edit else "Read", "external_id": "", "unique": "", "exists": "",
                 "reason": reason} for (s, f), edit in sorted(self.access.fields.items())]
        return out

    def to_csv(self) -> str:
        cols = ["kind", "object", "field", "type", "details", "external_id", "unique", "exists", "reason"]
        return reports.csv_text(cols, ([_csv_value(r[c]) for c in cols] for r in self.rows()))

    def to_markdown(self) -> str:
        lines = [f"# Salesforce schema plan (mapping {self.spec_hash[:12]})", "",
                 "Create these before loading (or let the opt-in apply task do it). Items marked *exists* are already in the org.",
                 f"Object and field permissions go into the permission set `{PERMISSION_SET}`, assigned to the integration "
                 "user: fields created through the API stay hidden from every user until field-level security is granted "
                 "(objects or fields that are always accessible are skipped when it is applied).", "",
                 "| Kind | Object | Field | Type | Details | External ID | Unique | Status |", "|---|---|---|---|---|---|---|---|"]
        for r in self.rows():
            status = "grant" if r["exists"] == "" else "exists" if r["exists"] else "to create"
            md = reports.md_text
            lines.append(f"| {md(r['kind'])} | {md(r['object'])} | {md(r['field'])} | {md(r['type'])} | {md(r['details'])} | "
                         f"{'yes' if r['external_id'] is True else ''} | {'yes' if r['unique'] is True else ''} | {status} |")
        return "\n".join(lines) + "\n"


def _csv_value(value: Any) -> Any:
    """CSV cells as csv.DictWriter wrote them (True/False, not true/false)."""
    return str(value) if isinstance(value, bool) else value


def _existing_fields(describes: Mapping[str, Mapping[str, Any]] | None, sobject: str) -> set[str] | None:
    if not describes:
        return None
    names = ("Task", "Event") if sobject == "Activity" else (sobject,)
    found = [describes[n] for n in names if n in describes]
    if not found:
        return None
    return {f["name"].lower() for d in found for f in d.get("fields") or ()}


def build_schema_plan(
    spec: MappingSpec,
    describes: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    clio_custom_fields: Iterable[Mapping[str, Any]] = (),
    practice_areas: Iterable[Mapping[str, Any]] = (),
) -> SchemaPlan:
    """Plan the schema for ``spec``.

    :param describes: live describes by object name; what exists is marked and skipped in payloads.
    :param clio_custom_fields: staged Clio ``custom_fields`` records (adds their ``__c`` fields).
    :param practice_areas: staged Clio practice areas (values of ``values_from: practice_areas``).
    """
    describes = describes or {}
    schema = spec.data["schema"]
    area_names = [p["name"] for p in practice_areas if p.get("name")]
    objects = [{"name": n, "label": o["label"], "plural_label": o["plural_label"], "exists": n in describes}
               for n, o in (schema.get("objects") or {}).items()]
    wanted: dict[str, dict[str, PlannedField]] = {}

    def add(pf: PlannedField) -> None:
        wanted.setdefault(pf.sobject, {}).setdefault(pf.name, pf)

    carriers = []
    for sobject in spec.load_order:
        target = "Activity" if sobject in ("Task", "Event") else sobject
        if sobject in NO_CUSTOM_FIELDS or target in carriers:
            continue
        carriers.append(target)
        add(PlannedField(target, "Clio_Id__c", "Text", "Clio Id", length=80, external_id=True, unique=True,
                         reason="Clio id (external id for upserts)"))
        add(PlannedField(target, "Clio_Created_Date__c", "DateTime", "Clio Created Date", reason="original create date"))
    for sobject, fields in (schema.get("fields") or {}).items():
        if sobject in NO_CUSTOM_FIELDS:
            continue
        if sobject in ("Case", "Opportunity") and sobject not in spec.matter_objects:
            continue
        for name, fdef in fields.items():
            if fdef.get("reference_to") in ("Case", "Opportunity") and fdef["reference_to"] not in spec.matter_objects:
                continue
            values = list(fdef.get("values") or ())
            if fdef.get("values_from_map"):
                values = spec.value_map(fdef["values_from_map"]).target_values()
            elif fdef.get("values_from") == "practice_areas":
                values = area_names
            add(PlannedField(sobject, name, fdef["type"], fdef.get("label") or snake_words(name), length=fdef.get("length"),
                             precision=fdef.get("precision"), scale=fdef.get("scale"), external_id=bool(fdef.get("external_id")),
                             unique=bool(fdef.get("unique")), reference_to=fdef.get("reference_to"), values=values,
                             restricted=bool(fdef.get("restricted")), reason="mapping spec"))
    cf_opts = spec.options.get("custom_fields") or {}
    for cf in clio_custom_fields:
        if cf.get("deleted"):
            continue
        parent = cf.get("parent_type")
        decision = (cf_opts.get("decisions") or {}).get(f"{parent}:{cf.get('name')}")
        if decision and decision.get("skip"):
            continue
        if not decision and not cf_opts.get("auto", True):
            continue
        name = (decision or {}).get("target") or api_name(cf["name"])
        ptype, extra = CLIO_FIELD_TYPES.get(cf.get("field_type"), ("LongTextArea", {"length": 32768}))
        if ptype == "Lookup" and extra["reference_to"] == "Case":
            extra = {"reference_to": spec.options["matter_object"]}
        targets = ["Contact", "Account"] if parent == "Contact" else list(spec.matter_objects)
        options = [o["option"] for o in cf.get("picklist_options") or () if not o.get("deleted_at")]
        reason = f"Clio {parent} custom field {cf['name']!r} ({cf.get('field_type')})"
        if cf.get("field_type") == "time":
            reason += ": a time of day, kept as 8-character text HH:MM:SS (this plan creates no Salesforce Time fields)"
        for sobject in targets:
            add(PlannedField(sobject, name, ptype, cf["name"][:40], values=options, reason=reason, **extra))
    fields: list[PlannedField] = []
    for sobject, by_name in wanted.items():
        existing = _existing_fields(describes, sobject)
        for pf in by_name.values():
            pf.exists = existing is not None and pf.name.lower() in existing
            fields.append(pf)
    record_types = []
    if spec.options.get("practice_area_as") == "record_type":
        rt_values = spec.value_map("practice_area_record_type").target_values()
        for sobject in spec.matter_objects:
            have = {(r.get("developerName") or r.get("name")) for r in (describes.get(sobject) or {}).get("recordTypeInfos") or ()}
            for v in rt_values:
                dev = api_name(v, "")
                record_types.append({"sobject": sobject, "name": dev, "label": v, "exists": dev in have})
    return SchemaPlan(objects=objects, fields=fields, record_types=record_types, spec_hash=spec.content_hash,
                      access=access_plan(spec, fields))
