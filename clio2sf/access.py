"""What the integration user must be able to see and write in Salesforce, granted and checked.

In a real org a custom field created through Tooling (or the Metadata API) is hidden from every
profile until field-level security is granted: REST answers ``INVALID_FIELD``, Bulk ``Field name
not found``. The migration therefore:

* plans its needs from the mapping spec and the schema plan (:func:`access_plan`): every field it
  writes (and the standard fields its transforms add, :data:`IMPLICIT_WRITES`), every object it
  loads;
* grants them in one permission set, ``Clio_Migration``, assigned to the connected user
  (:func:`apply_permission_set`, part of discover's opt-in schema apply);
* checks them before any write (:func:`missing_access`): the field describe as that user must show
  the field, ``createable`` or ``updateable``; the message names every gap.

Audit fields (``CreatedDate``...) are not needs: the loader sends them only when the describe says
the org lets the user set them. ``client`` is duck-typed (``ClioSalesforceHook``): ``describe``,
``query_all_iter``, ``composite_create``, ``composite_update``, ``current_user_id``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clio2sf.mapping.spec import NATURAL_KEY_OBJECTS, MappingSpec

PERMISSION_SET = "Clio_Migration"
PERMISSION_SET_LABEL = "Clio Migration"
AUDIT_FIELDS = frozenset({"CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById"})
#: Object permissions granted on every object the migration loads: upserts must find records whatever
#: their owner (View All), and rollback deletes them (Modify All implies Delete).
OBJECT_FLAGS = ("PermissionsRead", "PermissionsCreate", "PermissionsEdit", "PermissionsDelete",
                "PermissionsViewAllRecords", "PermissionsModifyAllRecords")
#: Standard fields the transforms write besides the spec's ``fields``, ``links`` and natural keys
#: (tests/integration/test_pipeline_e2e.py checks every transformed column is covered).
IMPLICIT_WRITES: dict[str, tuple[str, ...]] = {
    "Contact": ("AccountId",),
    "Case": ("AccountId", "ContactId", "Type"),
    "Opportunity": ("AccountId", "ContactId", "Type"),
    "Event": ("StartDateTime", "EndDateTime", "ActivityDate", "IsAllDayEvent", "WhoId", "WhatId", "OwnerId"),
    "Task": ("WhoId", "WhatId", "OwnerId", "TaskSubtype"),
    "AccountContactRelation": ("Roles", "IsActive"),
    "Rate_Structure__c": ("Name",),
    "CaseTeamMember": ("TeamRoleId",),
    "OpportunityTeamMember": ("TeamMemberRole", "OpportunityAccessLevel"),
    "EventRelation": ("IsInvitee",),
    "ContentDocumentLink": ("ShareType", "Visibility"),
    "ContentVersion": ("ContentDocumentId",),  # a document's later versions join its ContentDocument
}
#: Loader columns that become another field (see clio2sf.load.prepare_rows).
DIRECTIVE_COLUMNS = {"RecordType.DeveloperName": "RecordTypeId", "ContentVersion.Clio_Id__c": "ContentDocumentId",
                     "ContentNote.source_system_id": "ContentDocumentId", "TeamRole.Name": "TeamRoleId"}


class AccessError(RuntimeError):
    """The permission set could not be created or completed; the message lists Salesforce's error codes."""


def lookup_field(column: str) -> str:
    """The lookup field behind a relationship column (``Account.X`` → ``AccountId``, ``Case:What.X`` →
    ``WhatId``, ``Matter__r.X`` → ``Matter__c``); a plain field name is returned unchanged."""
    if column in DIRECTIVE_COLUMNS:
        return DIRECTIVE_COLUMNS[column]
    if "." not in column:
        return column
    rel = column.split(".", 1)[0].rpartition(":")[2]
    return rel[:-3] + "__c" if rel.endswith("__r") else rel + "Id"


@dataclass
class AccessPlan:
    """Objects the migration loads and the fields it writes (``edit``) or only reads, per object."""

    objects: list[str] = field(default_factory=list)
    fields: dict[tuple[str, str], bool] = field(default_factory=dict)  # (sobject, field) -> edit

    def need(self, sobject: str, name: str, *, edit: bool = True) -> None:
        if name in AUDIT_FIELDS or name == "Id" or name.startswith("_"):
            return
        targets = ("Task", "Event") if sobject == "Activity" else (sobject,)
        for s in targets:
            self.fields[(s, name)] = self.fields.get((s, name), False) or edit

    def column(self, sobject: str, column: str) -> None:
        """Record what writing ``column`` (a field or a relationship column) to ``sobject`` needs."""
        self.need(sobject, lookup_field(column))

    def field_names(self) -> list[str]:
        return [f"{s}.{f}" for s, f in sorted(self.fields)]


def access_plan(spec: MappingSpec, planned_fields: Iterable[Any] = ()) -> AccessPlan:
    """What the migration under ``spec`` writes; ``planned_fields``: the schema plan's fields
    (``sobject``, ``name``), all written (``Clio_Id__c``, ``Clio_Created_Date__c``, spec fields, Clio
    custom fields)."""
    plan = AccessPlan()
    order = spec.load_order
    for key, ospec in spec.objects.items():
        sobject = key.split("@", 1)[0]
        if sobject not in order:
            continue
        if sobject not in plan.objects:
            plan.objects.append(sobject)
        for column in ospec.get("fields") or {}:
            plan.column(sobject, column)
        for link in (ospec.get("links") or {}).values():
            for target, column in (link.get("columns") or {}).items():
                if target not in ("Case", "Opportunity") or target in spec.matter_objects:
                    plan.column(sobject, column)
        for name in ospec.get("natural_key") or ():
            plan.column(sobject, name)
        for name in IMPLICIT_WRITES.get(sobject, ()):
            plan.need(sobject, name)
        if sobject in spec.matter_objects and spec.options.get("practice_area_as") == "record_type":
            plan.need(sobject, "RecordTypeId")
    for pf in planned_fields:
        if pf.sobject in order or pf.sobject == "Activity":
            plan.need(pf.sobject, pf.name)
    plan.objects.sort(key=order.index)
    return plan


# ---------------------------------------------------------------------------------------------
# the pre-flight check


def _describe_or_none(client: Any, sobject: str) -> dict[str, Any] | None:
    try:
        return client.describe(sobject, refresh=True)
    except Exception as exc:  # the hook's typed errors live in plugins/; a 404 means "not visible"
        if getattr(exc, "status", None) == 404:
            return None
        raise


def missing_access(client: Any, plan: AccessPlan) -> list[str]:
    """What the connected user lacks, as ``<Object>.<Field>: <why>`` lines (empty: nothing missing).

    Reads the describes as that user (fresh, not cached): a field it cannot read is absent, a field
    it cannot edit is neither ``createable`` nor ``updateable``.
    """
    problems: list[str] = []
    sobjects = list(dict.fromkeys([*plan.objects, *(s for s, _ in sorted(plan.fields))]))
    for sobject in sobjects:
        desc = _describe_or_none(client, sobject)
        if desc is None:
            problems.append(f"{sobject}: object not visible to the integration user (no Read access, or it does "
                            "not exist)")
            continue
        if sobject in plan.objects:
            lacking = [a for a, flag in (("Create", "createable"), ("Edit", "updateable"))
                       if not desc.get(flag) and (a == "Create" or sobject not in NATURAL_KEY_OBJECTS)]
            if lacking:
                problems.append(f"{sobject}: no {'/'.join(lacking)} access on the object")
        fields = {f["name"].lower(): f for f in desc.get("fields") or ()}
        for (s, name), edit in sorted(plan.fields.items()):
            if s != sobject:
                continue
            f = fields.get(name.lower())
            if f is None:
                problems.append(f"{s}.{name}: not visible to the integration user (no Read field permission, or "
                                "the field does not exist)")
            elif edit and not (f.get("createable") or f.get("updateable")):
                problems.append(f"{s}.{name}: read-only for the integration user (no Edit field permission)")
    return problems


# ---------------------------------------------------------------------------------------------
# the permission set


def _soql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _picklist(describe: Mapping[str, Any], name: str) -> set[str]:
    f = next((f for f in describe.get("fields") or () if f["name"] == name), None)
    return {p["value"] for p in (f or {}).get("picklistValues") or () if p.get("active", True)}


def _failures(results: Iterable[Mapping[str, Any]], names: Iterable[str]) -> list[str]:
    out = []
    for name, res in zip(names, results, strict=True):
        if not res.get("success"):
            err = (res.get("errors") or [{}])[0]
            out.append(f"{name}: {err.get('statusCode')} {err.get('message', '')}"[:200])
    return out


def _field_grants(client: Any, plan: AccessPlan, planned: set[tuple[str, str]],
                  field_types: set[str]) -> dict[str, bool]:
    """``Object.Field`` → edit, for the needs FieldPermissions can hold (permissionable fields)."""
    out: dict[str, bool] = {}
    describes: dict[str, dict[str, dict]] = {}
    for (sobject, name), edit in sorted(plan.fields.items()):
        if sobject not in field_types:
            continue
        if sobject not in describes:
            desc = _describe_or_none(client, sobject) or {}
            describes[sobject] = {f["name"].lower(): f for f in desc.get("fields") or ()}
        f = describes[sobject].get(name.lower())
        if f is None:
            if (sobject, name.lower()) not in planned and not name.endswith("__c"):
                continue  # a standard field the user cannot see: not ours to grant
            out[f"{sobject}.{name}"] = edit  # hidden custom field: exactly what a grant is for
        elif f.get("permissionable"):
            out[f"{sobject}.{f['name']}"] = edit and not (f.get("calculated") or f.get("autoNumber"))
    return out


def apply_permission_set(client: Any, plan: AccessPlan, *, planned: Iterable[tuple[str, str]] = (),
                         name: str = PERMISSION_SET, label: str = PERMISSION_SET_LABEL) -> dict[str, list[str]]:
    """Create (or complete) permission set ``name`` with the plan's object and field permissions and
    assign it to the connected user; idempotent. Returns what was granted and assigned.

    ``planned``: (sobject, field) the schema plan creates (hidden until granted, so not in describes).
    ``Set Audit Fields upon Record Creation`` is included when the org offers it (the PermissionSet
    describe has ``PermissionsCreateAuditFields``, i.e. the org preference is enabled).

    :raises AccessError: after trying everything, when any permission could not be saved.
    """
    out: dict[str, list[str]] = {"granted": [], "objects_granted": [], "assigned": []}
    failed: list[str] = []
    ps_describe = client.describe("PermissionSet", refresh=True)
    audit = any(f["name"] == "PermissionsCreateAuditFields" and f.get("createable")
                for f in ps_describe.get("fields") or ())
    select = "Id, PermissionsCreateAuditFields" if audit else "Id"
    found = list(client.query_all_iter(f"SELECT {select} FROM PermissionSet WHERE Name = {_soql_quote(name)}"))
    if found:
        ps_id = found[0]["Id"]
        if audit and not found[0].get("PermissionsCreateAuditFields"):
            failed += _failures(client.composite_update([{"attributes": {"type": "PermissionSet"}, "id": ps_id,
                                                          "PermissionsCreateAuditFields": True}]), [name])
    else:
        rec = {"attributes": {"type": "PermissionSet"}, "Name": name, "Label": label,
               "Description": "Granted by clio2sf: the objects and fields the Clio migration reads and writes"}
        if audit:
            rec["PermissionsCreateAuditFields"] = True
        res = client.composite_create([rec])[0]
        if not res.get("success"):
            raise AccessError(f"permission set {name}: " + "; ".join(_failures([res], [name])))
        ps_id = res["id"]

    # the assignment first: what is granted next takes effect at once (and describes show it)
    me = client.current_user_id()
    if not list(client.query_all_iter(f"SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = {_soql_quote(me)} "
                                      f"AND PermissionSetId = {_soql_quote(ps_id)}")):
        res = client.composite_create([{"attributes": {"type": "PermissionSetAssignment"}, "AssigneeId": me,
                                        "PermissionSetId": ps_id}])
        bad = _failures(res, [f"assignment of {name}"])
        failed += bad
        if not bad:
            out["assigned"].append(name)

    # object permissions, on the objects ObjectPermissions can name
    allowed = _picklist(client.describe("ObjectPermissions", refresh=True), "SobjectType")
    have = {r["SobjectType"]: r for r in client.query_all_iter(
        f"SELECT Id, SobjectType, {', '.join(OBJECT_FLAGS)} FROM ObjectPermissions WHERE ParentId = {_soql_quote(ps_id)}")}
    creates, updates = [], []
    for sobject in plan.objects:
        if sobject not in allowed:
            continue
        rec = {flag: True for flag in OBJECT_FLAGS}
        if sobject not in have:
            creates.append((sobject, {"attributes": {"type": "ObjectPermissions"}, "ParentId": ps_id,
                                      "SobjectType": sobject, **rec}))
        elif not all(have[sobject].get(flag) for flag in OBJECT_FLAGS):
            updates.append((sobject, {"attributes": {"type": "ObjectPermissions"}, "id": have[sobject]["Id"], **rec}))
    failed += _save(client, creates, updates, out["objects_granted"])

    # field permissions
    field_types = _picklist(client.describe("FieldPermissions", refresh=True), "SobjectType")
    grants = _field_grants(client, plan, {(s, f.lower()) for s, f in planned}, field_types)
    have_fp = {str(r["Field"]).lower(): r for r in client.query_all_iter(
        f"SELECT Id, Field, PermissionsRead, PermissionsEdit FROM FieldPermissions WHERE ParentId = {_soql_quote(ps_id)}")}
    creates, updates = [], []
    for full, edit in sorted(grants.items()):
        rec = {"PermissionsRead": True, "PermissionsEdit": edit}
        got = have_fp.get(full.lower())
        if got is None:
            creates.append((full, {"attributes": {"type": "FieldPermissions"}, "ParentId": ps_id,
                                   "SobjectType": full.split(".", 1)[0], "Field": full, **rec}))
        elif not got.get("PermissionsRead") or (edit and not got.get("PermissionsEdit")):
            updates.append((full, {"attributes": {"type": "FieldPermissions"}, "id": got["Id"], **rec}))
    failed += _save(client, creates, updates, out["granted"])

    if failed:
        raise AccessError(f"{len(failed)} permission(s) could not be granted: " + "; ".join(failed[:20]))
    if out["granted"] or out["objects_granted"] or out["assigned"]:
        # Describes read before the grant (and cached by the client) miss what was just granted.
        for sobject in sorted({n.split(".", 1)[0] for n in out["granted"]} | set(out["objects_granted"])
                              | ({s for s, _ in plan.fields} if out["assigned"] else set())):
            _describe_or_none(client, sobject)
    return out


def _save(client: Any, creates: list[tuple[str, dict]], updates: list[tuple[str, dict]], done: list[str]) -> list[str]:
    failed: list[str] = []
    for items, call in ((creates, client.composite_create), (updates, client.composite_update)):
        for start in range(0, len(items), 200):
            part = items[start:start + 200]
            results = call([rec for _, rec in part])
            bad = _failures(results, [n for n, _ in part])
            failed += bad
            done += [n for (n, _), r in zip(part, results, strict=True) if r.get("success")]
    return failed
