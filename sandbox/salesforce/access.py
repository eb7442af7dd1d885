"""What one user may see and do: profiles, permission sets, object and field permissions.

As in a real org, a user's access is the union of its profile (through the permission set the
profile owns) and the permission sets assigned to it:

* objects: standard objects keep the profile's default access; ObjectPermissions govern custom
  objects (and ``Modify All Data`` opens every object);
* fields: standard fields stay readable and editable through the profile; a custom field that is
  not required is hidden until a FieldPermissions row grants it (``Modify All Data`` does not
  bypass field-level security), so a field created through Tooling is invisible at first;
* user permissions (``Permissions*`` flags): Tooling schema changes need Customize Application,
  permission sets need Manage Users, assignments need Assign Permission Sets, ``hardDelete`` needs
  Bulk API Hard Delete, and audit fields need Set Audit Fields upon Record Creation plus the org
  preference (the ``audit_fields`` knob).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.salesforce.metadata import OBJECT_PERMISSIONABLE, SECURITY_OBJECTS, USER_PERMISSIONS, SObject

if TYPE_CHECKING:
    from sandbox.salesforce.org import Org

ALL = frozenset({"read", "create", "edit", "delete"})
READ = frozenset({"read"})
OBJECT_FLAGS = (("read", "PermissionsRead"), ("create", "PermissionsCreate"), ("edit", "PermissionsEdit"),
                ("delete", "PermissionsDelete"))
#: The user permission each security object's writes need.
SECURITY_WRITE = {"PermissionSet": "PermissionsManageUsers", "FieldPermissions": "PermissionsManageUsers",
                  "ObjectPermissions": "PermissionsManageUsers",
                  "PermissionSetAssignment": "PermissionsAssignPermissionSets"}
AUDIT_PERMISSION = "PermissionsCreateAuditFields"


def object_permissionable(obj: SObject) -> bool:
    """Whether ObjectPermissions can name this object (its SobjectType picklist)."""
    return obj.custom or obj.name in OBJECT_PERMISSIONABLE


class Access:
    """One user's effective access, read from the org's security records (rebuilt when they change)."""

    def __init__(self, org: Org, user_id: str):
        store = org.store
        self.user_id = user_id
        self.org_audit = org.settings.audit_fields
        user = store.fetch("User", [user_id]).get(user_id)
        profile = user[1].get("ProfileId") if user else None
        ps_ids = list(store.lookup_keys("PermissionSet", "ProfileId", [profile]).get(profile, [])) if profile else []
        assigned = store.lookup_keys("PermissionSetAssignment", "AssigneeId", [user_id]).get(user_id, [])
        for _s, d, deleted in store.fetch("PermissionSetAssignment", assigned).values():
            if not deleted and d.get("PermissionSetId"):
                ps_ids.append(d["PermissionSetId"])
        psets = {rid: d for rid, (_s, d, deleted) in store.fetch("PermissionSet", ps_ids).items() if not deleted}
        self.permission_sets = sorted(psets)
        self.perms = frozenset(p for d in psets.values() for p in USER_PERMISSIONS if d.get(p))
        self.fields: dict[str, tuple[bool, bool]] = {}
        self.objects: dict[str, frozenset[str]] = {}
        parents = list(psets)
        fp = [i for ids in store.lookup_keys("FieldPermissions", "ParentId", parents).values() for i in ids]
        for _s, d, deleted in store.fetch("FieldPermissions", fp).values():
            if deleted:
                continue
            key = str(d.get("Field") or "").lower()
            read, edit = self.fields.get(key, (False, False))
            self.fields[key] = (read or bool(d.get("PermissionsRead")), edit or bool(d.get("PermissionsEdit")))
        op = [i for ids in store.lookup_keys("ObjectPermissions", "ParentId", parents).values() for i in ids]
        for _s, d, deleted in store.fetch("ObjectPermissions", op).values():
            if deleted:
                continue
            key = str(d.get("SobjectType") or "").lower()
            acts = frozenset(a for a, flag in OBJECT_FLAGS if d.get(flag))
            self.objects[key] = self.objects.get(key, frozenset()) | acts

    def has(self, permission: str) -> bool:
        return permission in self.perms

    @property
    def audit(self) -> bool:
        """Audit fields are createable: the org preference is on and the user holds the permission."""
        return self.org_audit and self.has(AUDIT_PERMISSION)

    @property
    def hard_delete(self) -> bool:
        return self.has("PermissionsBulkApiHardDelete")

    def object(self, obj: SObject) -> frozenset[str]:
        """The actions (read, create, edit, delete) the user has on ``obj``."""
        if obj.name in SECURITY_OBJECTS:
            need = SECURITY_WRITE.get(obj.name)
            return ALL if need and self.has(need) else READ
        if not object_permissionable(obj) or self.has("PermissionsModifyAllData"):
            return ALL
        if not obj.custom:
            return ALL  # standard objects: the profile's default access
        acts = self.objects.get(obj.name.lower(), frozenset())
        return acts | READ if self.has("PermissionsViewAllData") else acts

    def can(self, obj: SObject, action: str) -> bool:
        return action in self.object(obj)

    def field(self, obj: SObject, f: dict) -> tuple[bool, bool]:
        """(read, edit) on field ``f`` of ``obj``."""
        if f["name"] == AUDIT_PERMISSION and obj.name in ("PermissionSet", "Profile") and not self.org_audit:
            return False, False  # the permission exists only once the org preference is enabled
        if not (f["custom"] and f["permissionable"]):
            return True, True
        return self.fields.get(f"{obj.name}.{f['name']}".lower(), (False, False))

    def readable(self, obj: SObject, f: dict | None) -> bool:
        return f is not None and self.field(obj, f)[0]
