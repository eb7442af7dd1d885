"""The org: schema, seeded users, and DML with Salesforce's validation and error codes.

All writes go through :meth:`Org.write` in batches (REST single records are batches of one),
so REST, sObject collections and Bulk share one set of rules and one fast path.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sandbox.common.roster import INTEGRATION_USER, staff
from sandbox.salesforce import ids
from sandbox.salesforce.access import Access, object_permissionable
from sandbox.salesforce.metadata import SECURITY_OBJECTS, USER_PERMISSIONS, Schema, SObject
from sandbox.salesforce.store import Store
from sandbox.salesforce.values import FieldError, add_minutes, convert, minutes_between, now_str

AUDIT = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById")
SYSTEM = {"Id", "IsDeleted", "SystemModstamp"} | set(AUDIT)
RECORD_BYTES = 2048
#: Objects unique on a natural key: (the parent field queried first, the key fields).
NATURAL_UNIQUE = {
    "CaseContactRole": ("CasesId", ("CasesId", "ContactId", "Role")),
    "ContentDocumentLink": ("ContentDocumentId", ("ContentDocumentId", "LinkedEntityId")),
    "AccountContactRelation": ("ContactId", ("AccountId", "ContactId")),
    "CaseTeamMember": ("ParentId", ("ParentId", "MemberId")),
    "OpportunityTeamMember": ("OpportunityId", ("OpportunityId", "UserId")),
    "FieldPermissions": ("ParentId", ("ParentId", "Field")),
    "ObjectPermissions": ("ParentId", ("ParentId", "SobjectType")),
    "PermissionSetAssignment": ("AssigneeId", ("AssigneeId", "PermissionSetId")),
}
#: ObjectPermissions flags and the ones each depends on.
OBJECT_PERMISSION_DEPENDS = {
    "PermissionsCreate": ("PermissionsRead",), "PermissionsEdit": ("PermissionsRead",),
    "PermissionsDelete": ("PermissionsRead", "PermissionsEdit"), "PermissionsViewAllRecords": ("PermissionsRead",),
    "PermissionsModifyAllRecords": ("PermissionsRead", "PermissionsEdit", "PermissionsDelete",
                                    "PermissionsViewAllRecords"),
}
_API_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|_(?!_))*(?<!_)$")
#: Deleting a contact's direct AccountContactRelation by itself (⚠ wording unconfirmed against a real org).
DIRECT_RELATION_DELETE = ("You can't delete a direct account-contact relationship. To remove it, change the contact's "
                          "primary account or delete the contact.")
#: Team objects and their user field: the member must be an active user.
TEAM_USER_FIELD = {"CaseTeamMember": "MemberId", "OpportunityTeamMember": "UserId"}
FILE_TYPES = {"pdf": "PDF", "doc": "WORD", "docx": "WORD_X", "xls": "EXCEL", "xlsx": "EXCEL_X",
              "txt": "TEXT", "png": "PNG", "jpg": "JPG", "jpeg": "JPG", "csv": "CSV", "msg": "UNKNOWN",
              "eml": "UNKNOWN", "zip": "ZIP", "html": "HTML", "rtf": "RTF", "pptx": "POWER_POINT_X"}


@dataclass
class Settings:
    """Start-time and runtime knobs."""

    seed: int = 42
    session_ttl: int = 7200
    api_daily_limit: int = 1_000_000
    data_storage_mb: int = 1024
    file_storage_mb: int = 2048
    audit_fields: bool = False  # "Set Audit Fields upon Record Creation": org preference + the permission
    hard_delete: bool = False  # "Bulk API Hard Delete" on the integration user's profile
    bulk_daily_batches: int = 15_000  # DailyBulkApiBatches (Bulk 2.0 counts one per 10,000 rows)
    lock_row_rate: float = 0.0
    fault_503_rate: float = 0.0
    fail_bulk_jobs: int = 0
    session_expire_every: int = 0
    bulk_max_upload_mb: int = 150
    #: Commit a request but lose its response (answered 504 as a gateway would after a timeout):
    #: ``"<METHOD> <path fragment>#<n>[,<n>...]"`` rules separated by ``;``; ``n`` counts the requests
    #: matching the rule since the knob was set (1 = the first). Deterministic: no randomness.
    drop_response: str = ""
    #: Refuse a request as an org whose daily API allowance ran out at that call does (403
    #: ``REQUEST_LIMIT_EXCEEDED``, nothing executed): same rules as ``drop_response``. Deterministic.
    limit_exceeded_on: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _fail(e: FieldError) -> dict:
    return {"success": False, "errors": [e.as_dict()]}


class Org:
    """Everything a Salesforce org holds, persisted in ``data_dir``."""

    def __init__(self, data_dir: Path, settings: Settings):
        self.dir = Path(data_dir)
        (self.dir / "files").mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.store = Store(self.dir / "org.sqlite3")
        self.lock = self.store.lock
        self.schema = Schema()
        self.seq = int(self.store.meta_get("seq", "1"))
        self._counter_lock = threading.Lock()
        self._id_parts: dict[str, tuple[str, str]] = {}  # prefix -> (head, checksum): see ids.make_id
        self.rng_lock = random.Random(settings.seed * 7919 + 1)
        #: Faults injected so far, by kind (``GET /_admin/faults``): tests assert on these, never on luck.
        self.faults_injected: dict[str, int] = {}
        self.fault_lock = threading.Lock()
        self.api_used = int(self.store.meta_get("api_used", "0"))
        self.file_bytes = int(self.store.meta_get("file_bytes", "0"))
        self.bulk_batches_used = int(self.store.meta_get("bulk_batches_used", "0"))
        self.rows = self.store.total_rows()
        self._replay_schema()
        if self.store.meta_get("seeded") is None:
            self._seed()
        self.org_id = self.store.meta_get("org_id")
        self.integration_user_id = self.store.meta_get("integration_user_id")
        self._user_cache: dict[str, dict] = {}
        self.perm_gen = 0  # bumped by every change to the security model; Access caches check it
        self._access: dict[str, tuple[int, Access]] = {}
        if self.store.meta_get("security_seeded") is None:
            self._seed_security()
        self.sync_knobs()

    # -- ids and seeding ----------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        with self._counter_lock:
            self.seq += 1
            seq = self.seq
        parts = self._id_parts.get(prefix)
        if parts is None or seq >= 1_000_000_000:
            rid = ids.make_id(prefix, seq)
            if len(prefix) == 3 and seq < 1_000_000_000:  # the checksum then depends on the prefix only
                self._id_parts[prefix] = (rid[:6], rid[15:])
            return rid
        return f"{parts[0]}{seq:09d}{parts[1]}"

    def persist_counters(self) -> None:
        with self.lock:
            self.store.meta_set("seq", str(self.seq))
            self.store.meta_set("api_used", str(self.api_used))
            self.store.meta_set("file_bytes", str(self.file_bytes))
            self.store.meta_set("bulk_batches_used", str(self.bulk_batches_used))

    def _seed(self) -> None:
        now = now_str()
        org_id = self.new_id("00D")
        integ = self.new_id("005")
        self.store.meta_set("org_id", org_id)
        self.store.meta_set("integration_user_id", integ)
        self.store.meta_set("consumer_secret", secrets.token_hex(24))
        self.store.meta_set("integration_password", secrets.token_urlsafe(12))
        users = [{"Id": integ, "Username": INTEGRATION_USER["username"], "Email": INTEGRATION_USER["email"],
                  "FirstName": INTEGRATION_USER["first_name"], "LastName": INTEGRATION_USER["last_name"],
                  "IsActive": True, "Alias": "integ"}]
        for m in staff(self.settings.seed):
            if m.sf_email is None:
                continue
            users.append({"Id": self.new_id("005"), "Username": m.email.lower() + ".sandbox",
                          "Email": m.sf_email, "FirstName": m.first_name, "LastName": m.last_name,
                          "IsActive": m.sf_match != "inactive", "Alias": (m.first_name[0] + m.last_name)[:8].lower(),
                          "Title": m.role})
        inserts, keys = [], []
        for u in users:
            u.update(Name=f"{u['FirstName']} {u['LastName']}", TimeZoneSidKey="America/New_York",
                     IsDeleted=False, CreatedDate=now, CreatedById=integ, LastModifiedDate=now,
                     LastModifiedById=integ, SystemModstamp=now, FederationIdentifier=None, Title=u.get("Title"))
            inserts.append(("User", u["Id"], u))
            keys += self._keys_for(self.schema.get("User"), u)
        org_rec = json.loads((Path(__file__).parent / "describes" / "Organization.cumulusci.json").read_text())
        org_rec.pop("attributes", None)
        org_rec.update(Id=org_id, Name="Harlow & Vance LLP (sandbox)", IsSandbox=True, CreatedDate=now,
                       CreatedById=integ, LastModifiedDate=now, LastModifiedById=integ, SystemModstamp=now)
        inserts.append(("Organization", org_id, org_rec))
        self.store.write(inserts, [], keys, [])
        self.rows += len(inserts)
        self.store.meta_set("seeded", "1")
        self.persist_counters()

    def _seed_security(self) -> None:
        """Profiles, the permission sets they own, and each user's profile.

        The integration user's profile ("Clio Integration") may change the schema, manage permission
        sets and assign them, but holds neither Modify All Data nor field access to custom fields: a
        field created through Tooling stays hidden from it until a permission set grants it. Staff
        users get "Standard User"; "System Administrator" is assigned to nobody.
        """
        now = now_str()
        integ = self.integration_user_id
        profiles = {
            "System Administrator": {p: True for p in USER_PERMISSIONS if p not in (
                "PermissionsBulkApiHardDelete", "PermissionsCreateAuditFields")},
            "Clio Integration": {p: True for p in ("PermissionsApiEnabled", "PermissionsViewSetup",
                                                   "PermissionsCustomizeApplication", "PermissionsManageUsers",
                                                   "PermissionsAssignPermissionSets")},
            "Standard User": {"PermissionsApiEnabled": True},
        }
        audit = {"CreatedDate": now, "CreatedById": integ, "LastModifiedDate": now, "LastModifiedById": integ,
                 "SystemModstamp": now, "IsDeleted": False}
        inserts, keys, ids_by_name = [], [], {}
        for name, flags in profiles.items():
            pid, psid = self.new_id("00e"), self.new_id("0PS")
            ids_by_name[name] = pid
            perm_flags = {p: bool(flags.get(p)) for p in USER_PERMISSIONS}
            prof = {"Id": pid, "Name": name, "UserType": "Standard", "Description": None, **perm_flags, **audit}
            ps = {"Id": psid, "Name": f"X{pid[:15]}", "Label": f"{name} (profile)", "Description": None,
                  "IsOwnedByProfile": True, "ProfileId": pid, "NamespacePrefix": None,
                  "HasActivationRequired": False, **perm_flags, **audit}
            for sobject, rec in (("Profile", prof), ("PermissionSet", ps)):
                inserts.append((sobject, rec["Id"], rec))
                keys += self._keys_for(self.schema.get(sobject), rec)
        updates = []
        for u in self.store.scan("User", include_deleted=True):
            if u.get("ProfileId"):
                continue
            pid = ids_by_name["Clio Integration" if u["Id"] == integ else "Standard User"]
            u = dict(u, ProfileId=pid)
            updates.append(("User", u["Id"], u))
            keys += [k for k in self._keys_for(self.schema.get("User"), u) if k[1] == "ProfileId"]
        self.store.meta_set("integration_profile_id", ids_by_name["Clio Integration"])
        self.store.write(inserts, updates, keys, [])
        self.rows += len(inserts)
        self.store.meta_set("security_seeded", "1")

    def sync_knobs(self) -> None:
        """Write the permission knobs onto the integration user's profile (and the set it owns)."""
        pid = self.store.meta_get("integration_profile_id")
        if pid is None:
            return
        want = {"PermissionsBulkApiHardDelete": bool(self.settings.hard_delete),
                "PermissionsCreateAuditFields": bool(self.settings.audit_fields)}
        with self.lock:
            ps_ids = self.store.lookup_keys("PermissionSet", "ProfileId", [pid]).get(pid, [])
            updates = []
            for sobject, rid in [("Profile", pid)] + [("PermissionSet", i) for i in ps_ids]:
                got = self.store.fetch(sobject, [rid]).get(rid)
                if got and any(got[1].get(k) != v for k, v in want.items()):
                    updates.append((sobject, rid, dict(got[1], **want, SystemModstamp=now_str())))
            self.store.write([], updates, [], [])
        self.security_changed()

    def security_changed(self) -> None:
        """Drop every cached :class:`Access` (profiles, permission sets, knobs or schema changed)."""
        self.perm_gen += 1
        self._user_cache.clear()

    def access(self, user_id: str | None) -> Access | None:
        """What ``user_id`` may see and do (None: no user, nothing filtered, as for internal callers)."""
        if user_id is None:
            return None
        gen = self.perm_gen
        hit = self._access.get(user_id)
        if hit is not None and hit[0] == gen:
            return hit[1]
        with self.lock:
            acc = Access(self, user_id)
        self._access[user_id] = (gen, acc)
        return acc

    def visible(self, name: str, user_id: str | None) -> SObject | None:
        """The object ``name`` if it exists and ``user_id`` may read it (else None, as for an unknown object)."""
        obj = self.schema.get(name)
        if obj is None or user_id is None:
            return obj
        return obj if self.access(user_id).can(obj, "read") else None

    def _replay_schema(self) -> None:
        for item_id, kind, full_name, data in self.store.schema_items():
            self._apply_schema_item(item_id, kind, full_name, data)

    # -- schema changes (Tooling) ---------------------------------------------------------------
    def schema_rows(self, kind: str) -> list[dict]:
        """Tooling rows for CustomObject / CustomField queries."""
        out = []
        for item_id, k, full_name, data in self.store.schema_items():
            if k != kind:
                continue
            if kind == "CustomField":
                table, _, fname = full_name.partition(".")
                obj = self.schema.get(table)
                table_id = next((i for i, kk, n, _ in self.store.schema_items() if kk == "CustomObject" and n == table), table)
                out.append({"Id": item_id, "DeveloperName": fname[:-3], "TableEnumOrId": table_id,
                            "FullName": full_name, "NamespacePrefix": None, "Metadata": data,
                            "EntityDefinitionId": table_id, "_object": obj.name if obj else table})
            else:
                out.append({"Id": item_id, "DeveloperName": full_name[:-3], "FullName": full_name,
                            "NamespacePrefix": None, "Metadata": data, "TableEnumOrId": item_id})
        return out

    def _apply_schema_item(self, item_id: str, kind: str, full_name: str, data: dict) -> None:
        if kind == "CustomObject":
            prefix = data.get("_prefix", "a00")
            self.schema.add_custom_object(full_name, data, prefix)
        elif kind == "CustomField":
            table, _, fname = full_name.partition(".")
            self.schema.add_custom_field(self.schema.get(table), fname, data)
        elif kind == "RecordType":
            self.schema.ensure_record_type_field(self.schema.get(data["SobjectType"]))

    def create_custom_object(self, full_name: str, md: dict) -> str:
        if not full_name.endswith("__c") or not full_name[:-3].replace("_", "").isalnum():
            raise FieldError("INVALID_FIELD", f"Invalid custom object name: {full_name}", ["FullName"])
        if self.schema.get(full_name):
            raise FieldError("DUPLICATE_DEVELOPER_NAME",
                             f"There is already an object named {full_name}.", ["FullName"])
        for key in ("label", "pluralLabel"):
            if not md.get(key):
                raise FieldError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{key}]", [key])
        n_custom = sum(1 for o in self.schema.objects.values() if o.custom)
        prefix = "a" + ids._B62[(n_custom // 62) % 62] + ids._B62[n_custom % 62]
        data = dict(md, _prefix=prefix)
        item_id = self.new_id("01I")
        with self.lock:
            self._apply_schema_item(item_id, "CustomObject", full_name, data)
            self.store.add_schema_item(item_id, "CustomObject", full_name, data)
        self.security_changed()
        return item_id

    def create_custom_field(self, full_name: str, md: dict) -> str:
        table, _, fname = full_name.partition(".")
        if table == "Activity":
            # Activity custom fields appear on both Task and Event, as in a real org.
            ids = [self.create_custom_field(f"{t}.{fname}", md) for t in ("Task", "Event")]
            return ids[0]
        obj = self.schema.get(table)
        if obj is None:
            raise FieldError("INVALID_TYPE", f"sObject type '{table}' is not supported.", ["FullName"])
        if not obj.allows_custom_fields:
            raise FieldError("INVALID_TYPE",
                             f"Cannot create custom fields on entity: {obj.name}", ["FullName"])
        if not fname.endswith("__c"):
            raise FieldError("INVALID_FIELD", f"Invalid custom field name: {fname}", ["FullName"])
        if obj.field(fname):
            raise FieldError("DUPLICATE_DEVELOPER_NAME",
                             f"There is already a field named {fname[:-3]} on {obj.name}.", ["FullName"])
        from sandbox.salesforce.metadata import TOOLING_TYPES

        ftype = md.get("type")
        if ftype not in TOOLING_TYPES:
            raise FieldError("FIELD_INTEGRITY_EXCEPTION", f"Invalid field type: {ftype}", ["type"])
        if ftype == "Text" and not 1 <= int(md.get("length", 0) or 0) <= 255:
            raise FieldError("FIELD_INTEGRITY_EXCEPTION", "Length: must be between 1 and 255", ["length"])
        if ftype in ("Lookup", "MasterDetail") and not self.schema.get(md.get("referenceTo", "")):
            raise FieldError("FIELD_INTEGRITY_EXCEPTION",
                             f"referenceTo: invalid value {md.get('referenceTo')}", ["referenceTo"])
        if ftype == "Checkbox" and "defaultValue" not in md:
            raise FieldError("REQUIRED_FIELD_MISSING", "Required fields are missing: [defaultValue]", ["defaultValue"])
        if md.get("externalId") and ftype not in ("Text", "Number", "Email"):
            raise FieldError("FIELD_INTEGRITY_EXCEPTION", "External ID is not allowed on this field type", ["externalId"])
        item_id = self.new_id("00N")
        with self.lock:
            self._apply_schema_item(item_id, "CustomField", f"{obj.name}.{fname}", md)
            self.store.add_schema_item(item_id, "CustomField", f"{obj.name}.{fname}", md)
        self.security_changed()
        return item_id

    def create_record_type(self, full_name: str, md: dict) -> str:
        table, _, dev = full_name.partition(".")
        obj = self.schema.get(table)
        if obj is None or not dev:
            raise FieldError("INVALID_TYPE", f"Invalid record type name: {full_name}", ["FullName"])
        for rt in self.record_types():
            if rt["SobjectType"] == obj.name and rt["DeveloperName"].lower() == dev.lower():
                raise FieldError("DUPLICATE_DEVELOPER_NAME",
                                 f"There is already a record type named {dev} on {obj.name}.", ["FullName"])
        now = now_str()
        rid = self.new_id("012")
        rec = {"Id": rid, "Name": md.get("label", dev), "DeveloperName": dev, "NamespacePrefix": None,
               "Description": md.get("description"), "SobjectType": obj.name,
               "IsActive": bool(md.get("active", True)), "BusinessProcessId": None, "IsDeleted": False,
               "CreatedDate": now, "CreatedById": self.integration_user_id, "LastModifiedDate": now,
               "LastModifiedById": self.integration_user_id, "SystemModstamp": now}
        with self.lock:
            self.store.write([("RecordType", rid, rec)], [], [], [])
            self.rows += 1
            self._apply_schema_item(rid, "RecordType", full_name, {"SobjectType": obj.name})
            self.store.add_schema_item(rid, "RecordType", full_name, {"SobjectType": obj.name})
        return rid

    def record_types(self) -> list[dict]:
        with self.lock:
            return list(self.store.scan("RecordType", include_deleted=False))

    def describe(self, obj: SObject, user_id: str | None = None) -> dict:
        return self.schema.describe(obj, audit_fields=self.settings.audit_fields, record_types=self.record_types(),
                                    access=self.access(user_id))

    # -- keys -----------------------------------------------------------------------------------
    def _is_key(self, f: dict, obj: SObject | None = None) -> bool:
        from sandbox.salesforce.metadata import UNINDEXED_REFS

        if f["type"] == "reference":
            return f["name"] not in UNINDEXED_REFS
        return f["type"] != "id" and bool(f["externalId"] or f["unique"] or f["idLookup"])

    @staticmethod
    def key_value(f: dict, v: Any) -> str:
        if f["type"] == "reference" or f["caseSensitive"]:
            return str(v)
        return str(v).lower()

    def _keys_for(self, obj: SObject, rec: dict) -> list[tuple[str, str, str, str]]:
        """The key-index entries (sobject, field, value, id) of one record."""
        out = []
        for name in obj.plan["keys"]:
            v = rec.get(name)
            if v is not None:
                f = obj.fields[name]
                out.append((obj.name, name, str(v) if f["type"] == "reference" or f["caseSensitive"]
                            else str(v).lower(), rec["Id"]))
        return out

    # -- DML ----------------------------------------------------------------------------------
    def write(self, sobject: str, op: str, rows: list, *, user_id: str, ext_field: str | None = None,
              all_or_none: bool = False, from_csv: bool = False, header: list[str] | None = None,
              duplicates: set[str] | None = None) -> list[dict]:
        """Insert, update or upsert ``rows``; one result dict per row, in order.

        Rows are dicts, or, with ``header`` (CSV), lists of values in the header's column order.
        ``duplicates``: external-id keys repeated elsewhere in the same Bulk job (every occurrence fails).
        """
        obj = self.visible(sobject, user_id)
        if obj is None:
            raise FieldError("INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
        with self.lock:
            results = _Batch(self, obj, op, user_id, ext_field, from_csv, header, duplicates).run(rows, all_or_none)
        if obj.name in SECURITY_OBJECTS or obj.name == "User":
            self.security_changed()
        return results

    def delete(self, record_ids: list[str], *, user_id: str, all_or_none: bool = False, hard: bool = False,
               sobject: str | None = None) -> list[dict]:
        with self.lock:
            results: list[dict] = []
            norm: list[str | None] = []
            for rid in record_ids:
                norm.append(ids.normalize(rid) if ids.well_formed(rid) else None)
            found = self.store.fetch(None, [r for r in norm if r])
            targets: list[tuple[str, dict]] = []
            for raw, rid in zip(record_ids, norm, strict=True):
                if rid is None:
                    results.append(_fail(FieldError("MALFORMED_ID", f"malformed id {raw}")))
                    continue
                hit = found.get(rid)
                if hit is None or (sobject and hit[0] != sobject):
                    results.append(_fail(FieldError("INVALID_CROSS_REFERENCE_KEY",
                                                    "invalid cross reference id")))
                    continue
                s, data, deleted = hit
                if deleted and not hard:
                    results.append(_fail(FieldError("ENTITY_IS_DELETED", "entity is deleted")))
                    continue
                obj = self.schema.get(s)
                acc = self.access(user_id)
                if acc is not None and not acc.can(obj, "read"):
                    results.append(_fail(FieldError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")))
                    continue
                if not obj.top.get("deletable", True) or (acc is not None and not acc.can(obj, "delete")):
                    results.append(_fail(FieldError("INSUFFICIENT_ACCESS_OR_READONLY",
                                                    f"insufficient access rights on object id: {rid}")))
                    continue
                if s == "AccountContactRelation" and data.get("IsDirect"):
                    # Help: "to remove a direct relationship between a contact and an account, change the
                    # contact's primary account or delete the contact" (it goes with either, not by itself)
                    results.append(_fail(FieldError("DELETE_FAILED", DIRECT_RELATION_DELETE)))
                    continue
                if self._lock_fault():
                    results.append(_fail(FieldError("UNABLE_TO_LOCK_ROW",
                                                    f"unable to obtain exclusive access to this record or 1 records: {rid}")))
                    continue
                results.append({"id": rid, "success": True, "errors": []})
                targets.append((s, data))
            everything = self._cascade(targets)
            blocked = self._restricted(everything)
            if blocked:  # a target whose cascade reaches a record a restricting child still names
                for i, r in enumerate(results):
                    if r["success"] and r["id"] in blocked:
                        results[i] = _fail(FieldError("DELETE_FAILED", blocked[r["id"]]))
                targets = [(s, d) for s, d in targets if d["Id"] not in blocked]
                everything = self._cascade(targets)
            if all_or_none and any(not r["success"] for r in results):
                return [r if not r["success"] else _rolled_back(r["id"]) for r in results]
            self._apply_delete(everything, hard)
            self._clear_lookups(everything)
            return results

    def _cascade(self, targets: list[tuple[str, dict]]) -> dict[tuple[str, str], tuple[str, dict, str]]:
        """(sobject, id) -> (sobject, data, the target's id it is deleted with): the targets and every live
        record their deletion takes along (:meth:`_cascade_children`, level by level, one index look-up per
        child field and level)."""
        everything: dict[tuple[str, str], tuple[str, dict, str]] = {(s, d["Id"]): (s, d, d["Id"]) for s, d in targets}
        # A ContentNote is a ContentDocument (same Id): deleting one deletes the other and its links.
        for s, d, root in list(everything.values()):
            twin = {"ContentNote": "ContentDocument", "ContentDocument": "ContentNote"}.get(s)
            if twin:
                got = self.store.fetch(twin, [d["Id"]]).get(d["Id"])
                if got and (twin, d["Id"]) not in everything:
                    everything[(twin, d["Id"])] = (twin, got[1], root)
        frontier = list(everything.values())
        while frontier:
            by_obj: dict[str, dict[str, str]] = {}  # sobject -> id -> root, of this level
            for s, d, root in frontier:
                by_obj.setdefault(s, {})[d["Id"]] = root
            nxt = []
            for s, roots in by_obj.items():
                for child_obj, fname in self._cascade_children(s):
                    found = self.store.lookup_keys(child_obj, fname, list(roots))
                    new = {cid: roots[pid] for pid, cids in found.items() for cid in cids
                           if (child_obj, cid) not in everything}
                    for cid, (_s, data, _deleted) in self.store.fetch(child_obj, list(new)).items():
                        if (child_obj, cid) not in everything:
                            everything[(child_obj, cid)] = (child_obj, data, new[cid])
                            nxt.append((child_obj, data, new[cid]))
            frontier = nxt
        return everything

    def _restricted(self, everything: dict[tuple[str, str], tuple[str, dict, str]]) -> dict[str, str]:
        """Target id -> DELETE_FAILED message, for targets whose deletion would remove a record that a live
        record outside the deletion still names through a ``restrictedDelete`` relationship (an Account or a
        Contact with Cases: "Your attempt to delete Mr. Josh Davis could not be completed because it is
        associated with the following cases.: 00001005", as a real org answers)."""
        by_obj: dict[str, list[str]] = {}
        for s, d, _root in everything.values():
            by_obj.setdefault(s, []).append(d["Id"])
        out: dict[str, str] = {}
        for s, parent_ids in by_obj.items():
            for child_obj, fname in self._restricting_children(s):
                found = self.store.lookup_keys(child_obj, fname, parent_ids)
                for pid, cids in found.items():
                    names = [c for c in cids if (child_obj, c) not in everything]
                    root = everything[(s, pid)][2]
                    if not names or root in out:
                        continue
                    child = self.schema.get(child_obj)
                    got = self.store.fetch(child_obj, names)
                    shown = ", ".join(str(got[c][1].get(_name_field(child)) or c) for c in names if c in got)
                    target = next(v for v in everything.values() if v[1]["Id"] == root)
                    tname = target[1].get(_name_field(self.schema.get(target[0]))) or root
                    out[root] = (f"Your attempt to delete {tname} could not be completed because it is associated "
                                 f"with the following {str(child.top.get('labelPlural') or child_obj).lower()}.: "
                                 f"{shown}\n")
        return out

    def _apply_delete(self, everything: dict[tuple[str, str], tuple[str, dict, str]], hard: bool) -> None:
        if any(s in SECURITY_OBJECTS for s, _d, _r in everything.values()):
            self.security_changed()
        now = now_str()
        if hard:
            keys = [k for s, d, _r in everything.values() for k in self._keys_for(self.schema.get(s), d)]
            self.store.hard_delete([(s, i) for (_, i), (s, _d, _r) in everything.items()], keys)
            self.rows -= len(everything)
            return
        updates = []
        for (_, i), (s, d, _r) in everything.items():
            d = dict(d, IsDeleted=True, SystemModstamp=now)
            updates.append((s, i, d))
        self.store.write([], updates, [], [])

    def _clear_lookups(self, everything: dict[tuple[str, str], tuple[str, dict, str]]) -> None:
        """Clear the lookups of live records that named a deleted record (:meth:`_cleared_children`).

        Help, "Object Relationships Overview" (lookup relationships): when the record a lookup names is deleted,
        the lookup field is cleared by default ("Clear the value of this field"); the other choices are to
        refuse the delete or (custom objects) delete the record too, which the describes show as
        ``restrictedDelete`` / ``cascadeDelete``. A real org puts the value back on undelete; the sandbox has no
        undelete, so the value is gone. Only ``SystemModstamp`` moves (the record was not edited by a user).
        """
        by_obj: dict[str, list[str]] = {}
        for s, d, _root in everything.values():
            by_obj.setdefault(s, []).append(d["Id"])
        changed: dict[tuple[str, str], dict] = {}
        drops: list[tuple[str, str, str, str]] = []
        now = now_str()
        for s, parent_ids in by_obj.items():
            for child_obj, fname in self._cleared_children(s):
                found = self.store.lookup_keys(child_obj, fname, parent_ids)
                cids = [c for pid, cs in found.items() for c in cs if (child_obj, c) not in everything]
                for cid, (_s, data, deleted) in self.store.fetch(child_obj, cids).items():
                    if deleted or data.get(fname) is None:
                        continue
                    rec = changed.setdefault((child_obj, cid), dict(data))
                    drops.append((child_obj, fname, str(rec[fname]), cid))
                    rec[fname] = None
                    rec["SystemModstamp"] = now
        if changed:
            self.store.write([], [(s, i, d) for (s, i), d in changed.items()], [], drops)

    def _cleared_children(self, sobject: str) -> list[tuple[str, str]]:
        """(child object, lookup field) pairs a delete of a ``sobject`` record clears: the nillable lookups to it
        that neither take the child along (:meth:`_cascade_children`) nor refuse the delete
        (:meth:`_restricting_children`), where the sandbox indexes the field (not owner or audit fields)."""
        keep = set(self._cascade_children(sobject)) | set(self._restricting_children(sobject))
        out = []
        for o in self.schema.objects.values():
            for f in o.fields.values():
                if (f["type"] == "reference" and sobject in f["referenceTo"] and f["nillable"]
                        and (o.name, f["name"]) not in keep and self._is_key(f)):
                    out.append((o.name, f["name"]))
        return out

    def _cascade_children(self, sobject: str) -> list[tuple[str, str]]:
        """(child object, lookup field) pairs whose records a delete of a ``sobject`` record takes along.

        A field's own ``cascadeDelete`` (master-detail: custom, and the hand-built junctions) and, as a real
        org does for lookups it owns the deletion of, the parent's recorded ``childRelationships`` entries
        with ``cascadeDelete`` (an Account takes its Contacts, Opportunities, activities and file links; a
        Contact its Events and Tasks, EventRelations, CaseContactRoles, ...), where the sandbox has that
        child object and field.
        """
        out = []
        if sobject == "ContentDocument":
            out += [("ContentVersion", "ContentDocumentId"), ("ContentDocumentLink", "ContentDocumentId")]
        for o in self.schema.objects.values():
            for f in o.fields.values():
                if f["cascadeDelete"] and sobject in f["referenceTo"] and f["type"] == "reference":
                    out.append((o.name, f["name"]))
        return out + [pair for pair in self._recorded_children(sobject, "cascadeDelete") if pair not in out]

    def _restricting_children(self, sobject: str) -> list[tuple[str, str]]:
        """(child object, lookup field) pairs whose live records forbid deleting the ``sobject`` record they
        name: the parent's recorded ``childRelationships`` with ``restrictedDelete`` (Case.AccountId,
        Case.ContactId), where the sandbox has that child object and field."""
        return self._recorded_children(sobject, "restrictedDelete")

    def _recorded_children(self, sobject: str, flag: str) -> list[tuple[str, str]]:
        obj = self.schema.get(sobject)
        out = []
        for rel in (obj.top.get("childRelationships") or []) if obj is not None else ():
            child = self.schema.get(rel["childSObject"]) if rel.get(flag) else None
            f = child.field(rel["field"]) if child is not None else None
            if f is not None and f["type"] == "reference" and sobject in f["referenceTo"] and self._is_key(f):
                out.append((child.name, f["name"]))
        return out

    def _lock_fault(self) -> bool:
        rate = self.settings.lock_row_rate
        hit = rate > 0 and self.rng_lock.random() < rate
        if hit:
            self.count_fault("UNABLE_TO_LOCK_ROW")
        return hit

    def count_fault(self, kind: str) -> None:
        with self.fault_lock:
            self.faults_injected[kind] = self.faults_injected.get(kind, 0) + 1

    def user(self, user_id: str) -> dict | None:
        if user_id not in self._user_cache:
            got = self.store.fetch("User", [user_id]).get(user_id)
            if got is None:
                return None
            self._user_cache[user_id] = got[1]
        return self._user_cache[user_id]

    def blob_path(self, record_id: str) -> Path:
        return self.dir / "files" / record_id

    def data_storage_used(self) -> int:
        return self.rows * RECORD_BYTES


def _name_field(obj: SObject) -> str:
    """The field a record is named by (``nameField``: Account.Name, Case.CaseNumber), else Id."""
    return next((f["name"] for f in obj.fields.values() if f.get("nameField")), "Id")


def _rolled_back(rid: str | None) -> dict:
    out: dict[str, Any] = {"success": False, "errors": [{
        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
        "fields": []}]}
    if rid:
        out = {"id": rid, **out}
    return out


class _Batch:
    """One DML batch: parse, resolve references, validate, then write in one transaction."""

    def __init__(self, org: Org, obj: SObject, op: str, user_id: str, ext_field: str | None, from_csv: bool,
                 header: list[str] | None = None, duplicates: set[str] | None = None):
        self.org, self.obj, self.op, self.user_id = org, obj, op, user_id
        self.header = header
        self.access = org.access(user_id)
        self.acts = self.access.object(obj) if self.access is not None else frozenset({"create", "edit"})
        self.duplicates = duplicates or set()
        self.ext = obj.field(ext_field) if ext_field else None
        if self.ext is not None and self.access is not None and not self.access.readable(obj, self.ext):
            self.ext = None  # a field the user cannot see does not exist for it
        self.ext_name = ext_field
        self.from_csv = from_csv
        self.now = now_str()
        self.inserts: list[tuple[str, str, dict]] = []
        self.updates: list[tuple[str, str, dict]] = []
        self.keys_add: list[tuple[str, str, str, str]] = []
        self.keys_drop: list[tuple[str, str, str, str]] = []
        self.blobs: list[tuple[str, bytes]] = []
        self.pending: dict[int, list] = {}
        self._cols: dict[str, tuple] = {}
        self._cur = -1
        # Per-batch memos: CSV rows repeat the same columns and, often, the same values.
        self._conv: dict[str, dict[str, tuple]] = {}
        self._writable: dict[tuple, list[str]] = {}
        self._lookups: dict[tuple[str, str], tuple] = {}
        self._ins_head: dict[str, Any] | None = None
        self._ins_tail: dict[str, Any] = {}
        self._side_heads: dict[str, tuple[SObject, dict]] = {}
        self._key_specs = [(name, obj.fields[name]["type"] == "reference" or bool(obj.fields[name]["caseSensitive"]))
                           for name in obj.plan["keys"]]

    # phase 1 --------------------------------------------------------------------------------
    def _column(self, k: str) -> tuple[str, dict | None, tuple]:
        """Classify one column name (memoized per batch: CSV rows share their header)."""
        obj = self.obj
        if "." in k:
            typ, _, path = k.rpartition(":")
            rel, _, tfield = path.partition(".")
            f = obj.rel_field(rel)
            if f is None or (self.access is not None and not self.access.readable(obj, f)):
                raise FieldError("INVALID_FIELD", f"No such column '{rel}' on sobject of type {obj.name}", [rel])
            targets = f["referenceTo"]
            if typ and len(targets) == 1:
                raise FieldError("INVALID_FIELD", f"type is not needed for non polymorphic foreign key ref {k}", [f["name"]])
            if not typ and len(targets) > 1:
                raise FieldError("INVALID_FIELD", f"Polymorphic foreign key reference needs a type: {k}", [f["name"]])
            return "ref", f, (typ or targets[0], tfield)
        if k.lower() == "id":
            if self.op in ("update", "delete") or (self.ext and self.ext["name"] == "Id"):
                return "id", None, ()
            raise FieldError("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
        f = obj.field(k)
        if f is None or (self.access is not None and not self.access.readable(obj, f)):
            raise FieldError("INVALID_FIELD", f"No such column '{k}' on sobject of type {obj.name}", [k])
        if f["type"] in ("string", "textarea", "phone", "url", "combobox") or (
                f["type"] == "picklist" and not f["restrictedPicklist"]):
            return "text", f, ()
        return "field", f, ()

    def _convert_csv(self, f: dict, v: str) -> object:
        """``convert`` for a CSV string, memoized per field (it is pure for a given field and value)."""
        memo = self._conv.get(f["name"])
        if memo is None:
            memo = self._conv[f["name"]] = {}
        hit = memo.get(v)
        if hit is None:
            try:
                hit = (True, convert(f, v, from_csv=True))
            except FieldError as e:
                hit = (False, (e.code, e.message, tuple(e.fields)))
            if len(memo) < 20000:
                memo[v] = hit
        if hit[0]:
            return hit[1]
        code, message, fields = hit[1]
        raise FieldError(code, message, list(fields))

    def _parse_csv(self, row: dict) -> tuple[dict, list, str | None]:
        """``parse`` for Bulk CSV rows: string values, "" skipped, "#N/A" meaning null."""
        vals: dict[str, Any] = {}
        refs: list = []
        rid = None
        cols = self._cols
        for k, v in (zip(self.header, row, strict=True) if self.header is not None else row.items()):
            if v == "":
                continue
            col = cols.get(k)
            if col is None:
                col = cols[k] = ("skip", None, ()) if k == "attributes" else self._column(k)
            kind, f, extra = col
            if kind == "text":
                if v == "#N/A":
                    vals[f["name"]] = None
                elif len(v) > f["length"]:
                    raise FieldError("STRING_TOO_LONG",
                                     f"{f['label']}: data value too large: {v[:80]} (max length={f['length']})",
                                     [f["name"]])
                else:
                    vals[f["name"]] = v
            elif kind == "field":
                vals[f["name"]] = (False if f["type"] == "boolean" else None) if v == "#N/A" else self._convert_csv(f, v)
            elif kind == "ref":
                if v == "#N/A":
                    vals[f["name"]] = None
                else:
                    refs.append((f, extra[0], extra[1], v))
            elif kind == "id":
                rid = None if v == "#N/A" else v
        return vals, refs, rid

    def parse(self, row: dict) -> tuple[dict, list, str | None]:
        if self.from_csv:
            return self._parse_csv(row)
        _obj, vals, refs, rid = self.obj, {}, [], None
        for k, v in row.items():
            if k == "attributes":
                continue
            if self.from_csv:
                if v == "":
                    continue
                if v == "#N/A":
                    v = None
            if isinstance(v, dict) and "." not in k:
                # REST relationship by external id: {"Account": {"Clio_Id__c": "x"}}
                inner = {key: val for key, val in v.items() if key != "attributes"}
                typ = (v.get("attributes") or {}).get("type")
                if len(inner) != 1:
                    raise FieldError("INVALID_FIELD", f"Invalid foreign key reference for {k}", [k])
                (tf, tv), = inner.items()
                k, v = (f"{typ}:" if typ else "") + f"{k}.{tf}", tv
            col = self._cols.get(k)
            if col is None:
                col = self._cols[k] = self._column(k)
            kind, f, extra = col
            if kind == "ref":
                if v is None:
                    vals[f["name"]] = None
                else:
                    refs.append((f, extra[0], extra[1], str(v)))
                continue
            if kind == "id":
                rid = v
                continue
            if kind == "text" and v.__class__ is str:
                if not v:  # Salesforce has no empty string: it stores null
                    vals[f["name"]] = None
                    continue
                if len(v) > f["length"]:
                    raise FieldError("STRING_TOO_LONG",
                                     f"{f['label']}: data value too large: {v[:80]} (max length={f['length']})",
                                     [f["name"]])
                vals[f["name"]] = v
                continue
            vals[f["name"]] = convert(f, v, from_csv=self.from_csv)
        return vals, refs, rid

    # phase 2 --------------------------------------------------------------------------------
    def resolve_refs(self, parsed: list) -> None:
        groups: dict[tuple[str, str], set[str]] = {}
        for item in parsed:
            if isinstance(item, tuple):
                for _f, target, tfield, v in item[1]:
                    groups.setdefault((target, tfield), set()).add(v)
        self.ref_map: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.ref_errors: dict[tuple[str, str], FieldError] = {}
        for (target, tfield), values in groups.items():
            tobj = self.org.visible(target, self.user_id)
            tf = tobj.field(tfield) if tobj else None
            if tf is not None and self.access is not None and not self.access.readable(tobj, tf):
                tf = None
            if tobj is None or tf is None or not (tf["idLookup"] or tf["externalId"]):
                self.ref_errors[(target, tfield)] = FieldError(
                    "INVALID_FIELD", f"Foreign key external ID field {tfield} is not an external id or lookup field on {target}", [tfield])
                continue
            if tf["type"] == "id":
                got = self.org.store.fetch(tobj.name, [ids.normalize(v) for v in values if ids.well_formed(v)])
                self.ref_map[(target, tfield)] = {v: [ids.normalize(v)] for v in values
                                                  if ids.well_formed(v) and ids.normalize(v) in got}
                continue
            keyed = {self.org.key_value(tf, v): v for v in values}
            found = self.org.store.lookup_keys(tobj.name, tf["name"], keyed)
            self.ref_map[(target, tfield)] = {keyed[k]: v for k, v in found.items()}

    def apply_refs(self, vals: dict, refs: list) -> None:
        for f, target, tfield, v in refs:
            err = self.ref_errors.get((target, tfield))
            if err:
                raise err
            hits = self.ref_map.get((target, tfield), {}).get(v, [])
            if not hits:
                raise FieldError("INVALID_FIELD",
                                 f"Foreign key external ID: {v} not found for field {tfield} in entity {target}",
                                 [f["name"]])
            if len(hits) > 1:
                raise FieldError("INVALID_FIELD",
                                 f"Foreign key external ID: {v} matched more than one record for field {tfield} in entity {target}",
                                 [f["name"]])
            vals[f["name"]] = hits[0]

    # main -----------------------------------------------------------------------------------
    def run(self, rows: list[dict], all_or_none: bool) -> list[dict]:
        org, obj, op = self.org, self.obj, self.op
        n = len(rows)
        results: list[dict | None] = [None] * n
        parsed: list[Any] = []
        parse = self.parse
        for i, row in enumerate(rows):
            try:
                parsed.append(parse(row))
            except FieldError as e:
                results[i] = _fail(e)
                parsed.append(None)
        self.resolve_refs(parsed)
        if op == "upsert" and (self.ext is None or not (self.ext["externalId"] or self.ext["idLookup"])):
            raise FieldError("NOT_FOUND", "The requested resource does not exist")
        # decide insert vs update per row
        plan: list[tuple[str, str | None] | None] = [None] * n
        ext_vals: dict[str, str] = {}
        if op == "upsert" and self.ext["type"] != "id":
            wanted = [p[0].get(self.ext["name"]) for p in parsed if p]
            keyed = [self.org.key_value(self.ext, v) for v in wanted if v is not None]
            found = org.store.lookup_keys(obj.name, self.ext["name"], keyed)
            ext_vals = {k: v for k, v in ((kk, found.get(kk)) for kk in keyed) if v}
        repeated = set(self.duplicates)
        if op == "upsert" and self.ext["type"] != "id":
            # A real org fails every occurrence of an external id repeated within one request or job.
            counts: dict[str, int] = {}
            for p in parsed:
                v = p[0].get(self.ext["name"]) if p else None
                if v is not None:
                    kv = self.org.key_value(self.ext, v)
                    counts[kv] = counts.get(kv, 0) + 1
            repeated |= {k for k, c in counts.items() if c > 1}
        for i, p in enumerate(parsed):
            if p is None:
                continue
            vals, _refs, rid = p
            if op == "insert":
                plan[i] = ("insert", None)
            elif op == "update":
                plan[i] = ("update", rid)
            elif self.ext["type"] == "id":
                plan[i] = ("update", rid) if rid else ("insert", None)
            else:
                v = vals.get(self.ext["name"])
                if v is None:
                    results[i] = _fail(FieldError("MISSING_ARGUMENT", f"{self.ext['name']} not specified"))
                    continue
                kv = self.org.key_value(self.ext, v)
                if kv in repeated:
                    results[i] = _fail(FieldError("DUPLICATE_EXTERNAL_ID",
                                                  f"Duplicate external id specified: {v}", [self.ext["name"]]))
                    continue
                hits = ext_vals.get(kv, [])
                if len(hits) > 1:
                    results[i] = _fail(FieldError(
                        "DUPLICATE_EXTERNAL_ID",
                        f"{self.ext['name']}: more than one record found for external id field: {hits}",
                        [self.ext["name"]]))
                    results[i]["_multiple"] = hits
                    continue
                plan[i] = ("update", hits[0]) if hits else ("insert", None)
        # object permissions: create for new records, edit for existing ones
        for i, pl in enumerate(plan):
            if pl and ("create" if pl[0] == "insert" else "edit") not in self.acts:
                results[i] = _fail(FieldError(
                    "INSUFFICIENT_ACCESS_OR_READONLY", "You do not have the level of access necessary to perform "
                    "the operation you requested. Please contact the owner of the record or your administrator if "
                    "access is necessary."))
                plan[i] = None
        # existing records for updates
        upd_ids = []
        for i, pl in enumerate(plan):
            if pl and pl[0] == "update":
                rid = pl[1]
                if not ids.well_formed(rid):
                    results[i] = _fail(FieldError("MALFORMED_ID", f"{obj.top['label']} ID: id value of incorrect type: {rid}", ["Id"]))
                    plan[i] = None
                    continue
                plan[i] = ("update", ids.normalize(rid))
                upd_ids.append(plan[i][1])
        existing = org.store.fetch(obj.name, upd_ids)  # a ContentNote shares its Id with its ContentDocument
        # reference ids to verify
        prepared: dict[int, dict] = {}
        for i, pl in enumerate(plan):
            if pl is None or results[i] is not None:
                continue
            vals, refs, _ = parsed[i]
            try:
                self.apply_refs(vals, refs)
                if pl[0] == "update":
                    hit = existing.get(pl[1])
                    if hit is None or hit[0] != obj.name:
                        if hit is None and ids.well_formed(pl[1]) and pl[1][:3] == obj.key_prefix:
                            raise FieldError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["Id"])
                        raise FieldError("MALFORMED_ID", f"{obj.top['label']} ID: id value of incorrect type: {pl[1]}", ["Id"])
                    if hit[2]:
                        raise FieldError("ENTITY_IS_DELETED", "entity is deleted", ["Id"])
                self.check_writable(vals, pl[0])
                prepared[i] = vals
            except FieldError as e:
                results[i] = _fail(e)
        self.check_lookups(prepared, results)
        # build final records
        finals: dict[int, tuple[str, dict, dict | None]] = {}
        lock_faults = org.settings.lock_row_rate > 0
        for i, vals in prepared.items():
            if results[i] is not None:
                continue
            kind, rid = plan[i]
            try:
                self._cur = i
                if kind == "insert":
                    rec = self.build_insert(vals)
                    before = None
                else:
                    before = existing[rid][1]
                    rec = self.build_update(before, vals)
                self.object_rules(rec, vals, before)
                if lock_faults and org._lock_fault():
                    raise FieldError("UNABLE_TO_LOCK_ROW",
                                     f"unable to obtain exclusive access to this record or 1 records: {rec['Id']}")
                finals[i] = (kind, rec, before)
            except FieldError as e:
                results[i] = _fail(e)
        self.check_unique(finals, results)
        self.check_storage(finals, results)
        for i, (kind, rec, _before) in finals.items():
            if results[i] is None:
                r = {"id": rec["Id"], "success": True, "errors": []}
                if op == "upsert" or kind == "insert":
                    r["created"] = kind == "insert"
                results[i] = r
        if all_or_none and any(not r["success"] for r in results):
            return [r if not r["success"] else _rolled_back(r["id"]) for r in results]
        for i, (kind, rec, before) in finals.items():
            if not results[i]["success"]:
                continue
            if self.pending:
                self.side_effects(i)
            if kind == "insert":
                self.inserts.append((obj.name, rec["Id"], rec))
                rid = rec["Id"]
                for name, exact in self._key_specs:
                    v = rec.get(name)
                    if v is not None:
                        self.keys_add.append((obj.name, name, str(v) if exact else str(v).lower(), rid))
            else:
                rid = rec["Id"]
                self.updates.append((obj.name, rid, rec))
                for name, exact in self._key_specs:
                    old, new = before.get(name), rec.get(name)
                    if old == new:
                        continue
                    if old is not None:
                        self.keys_drop.append((obj.name, name, str(old) if exact else str(old).lower(), rid))
                    if new is not None:
                        self.keys_add.append((obj.name, name, str(new) if exact else str(new).lower(), rid))
        for rid, data in self.blobs:
            org.blob_path(rid).write_bytes(data)
        org.store.write(self.inserts, self.updates, self.keys_add, self.keys_drop)
        org.rows += len(self.inserts)
        return results  # type: ignore[return-value]

    # checks ---------------------------------------------------------------------------------
    def check_writable(self, vals: dict, kind: str) -> None:
        key = (kind, *vals)
        bad = self._writable.get(key)
        if bad is None:
            bad = self._writable[key] = self._not_writable(vals, kind)
        if bad:
            raise FieldError("INVALID_FIELD_FOR_INSERT_UPDATE",
                             f"Unable to create/update fields: {', '.join(bad)}. Please check the security "
                             "settings of this field and verify that it is read/write for your profile or "
                             "permission set.", list(bad))

    def _not_writable(self, vals: dict, kind: str) -> list[str]:
        obj, acc = self.obj, self.access
        audit = acc.audit if acc is not None else self.org.settings.audit_fields
        bad = []
        for name in vals:
            f = obj.fields[name]
            if kind == "insert":
                ok = f["createable"] or (audit and name in AUDIT and bool(obj.top.get("createable")))
            else:
                ok = f["updateable"] or (self.ext is not None and name == self.ext["name"])
            if ok and acc is not None and not acc.field(obj, f)[1]:
                ok = False  # read-only through field-level security
            if not ok:
                bad.append(name)
        return bad

    def check_lookups(self, prepared: dict[int, dict], results: list) -> None:
        obj, org = self.obj, self.org
        raw = set()
        refs = obj.plan["refs"]
        for vals in prepared.values():
            for name in refs.intersection(vals):
                raw.add(vals[name])
        raw.discard(None)
        found = org.store.fetch_meta({ids.normalize(v) for v in raw if ids.well_formed(v)})
        memo = self._lookups
        for i, vals in prepared.items():
            for name in refs.intersection(vals):
                v = vals[name]
                if v is None:
                    continue
                hit = memo.get((name, v))
                if hit is None:
                    try:
                        hit = (True, self._lookup_ok(name, v, found))
                    except FieldError as e:
                        hit = (False, (e.code, e.message, tuple(e.fields)))
                    memo[(name, v)] = hit
                if hit[0]:
                    vals[name] = hit[1]
                else:
                    code, message, fields = hit[1]
                    results[i] = _fail(FieldError(code, message, list(fields)))
                    break

    def _lookup_ok(self, name: str, v: Any, found: dict) -> str:
        """The normalized id for lookup ``name`` = ``v``, or FieldError (pure for one batch)."""
        obj, org = self.obj, self.org
        f = obj.fields[name]
        if not ids.well_formed(v):
            raise FieldError("MALFORMED_ID", f"{f['label']}: id value of incorrect type: {v}", [name])
        v = ids.normalize(v)
        if name == "RecordTypeId" and v == ids.MASTER_RECORD_TYPE_ID:
            return v
        target = org.schema.by_prefix(v[:3])
        if target is None or target.name not in f["referenceTo"]:
            raise FieldError("FIELD_INTEGRITY_EXCEPTION", f"{f['label']}: id value of incorrect type: {v}", [name])
        hit = found.get(v)
        if hit is None:
            raise FieldError("INVALID_CROSS_REFERENCE_KEY", f"{f['label']}: invalid cross reference id", [name])
        if hit[2]:
            raise FieldError("ENTITY_IS_DELETED", "entity is deleted", [name])
        data = hit[1]
        if name == "RecordTypeId" and (data.get("SobjectType") != obj.name or not data.get("IsActive")):
            raise FieldError("INVALID_CROSS_REFERENCE_KEY",
                             f"Record Type ID: this ID value isn't valid for the user: {v}", [name])
        if name == "OwnerId" and hit[0] == "User" and not data.get("IsActive"):
            raise FieldError("INACTIVE_OWNER_OR_USER",
                             f"operation performed with inactive user [{v}] as owner of {obj.top['label'].lower()}",
                             [name])
        return v

    def check_unique(self, finals: dict, results: list) -> None:
        obj, org = self.obj, self.org
        ufields = [f for f in obj.fields.values() if (f["unique"] or f["externalId"]) and f["type"] != "id"]
        for f in ufields:
            name = f["name"]
            if self.op == "upsert" and self.ext is not None and name == self.ext["name"]:
                continue  # just resolved through the same index: a match became an update
            if not f["unique"]:
                continue
            exact = f["type"] == "reference" or bool(f["caseSensitive"])
            vals: dict[str, list[int]] = {}
            for i, (_kind, rec, before) in finals.items():
                v = rec.get(name)
                if v is None or results[i] is not None or (before is not None and before.get(name) == v):
                    continue
                vals.setdefault(str(v) if exact else str(v).lower(), []).append(i)
            if not vals:
                continue
            found = org.store.lookup_keys(obj.name, name, vals)
            for kv, idxs in vals.items():
                owners = found.get(kv, [])
                if not owners and len(idxs) == 1:
                    continue  # the usual case: a value nobody else holds
                for pos, i in enumerate(idxs):
                    rec = finals[i][1]
                    other = next((o for o in owners if o != rec["Id"]), None)
                    if other is None and pos > 0:
                        other = finals[idxs[0]][1]["Id"]
                    if other:
                        results[i] = _fail(FieldError(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {name} duplicates value on record with id: {other[:15]}", [name]))
        if obj.name in NATURAL_UNIQUE:
            self._check_natural_unique(finals, results)

    def _check_natural_unique(self, finals: dict, results: list) -> None:
        obj, org = self.obj, self.org
        parent, keyf = NATURAL_UNIQUE[obj.name]
        parents = {rec[parent] for kind, rec, _ in finals.values() if rec.get(parent)}
        ex_ids = [i for ids_ in org.store.lookup_keys(obj.name, parent, parents).values() for i in ids_]
        taken = {tuple(d[k] for k in keyf): rid for rid, (_, d, _) in org.store.fetch(obj.name, ex_ids).items()}
        for i, (_kind, rec, _before) in finals.items():
            if results[i] is not None:
                continue
            key = tuple(rec.get(k) for k in keyf)
            other = taken.get(key)
            if other and other != rec["Id"]:
                msg = (f"Document with ID: {rec['ContentDocumentId']} is already linked with the entity with ID: {rec['LinkedEntityId']}"
                       if obj.name == "ContentDocumentLink" else
                       "duplicate value found: <unknown> duplicates value on record with id: <unknown>"
                       if obj.name == "PermissionSetAssignment" else
                       f"duplicate value found: {', '.join(keyf)} duplicates value on record with id: {other[:15]}")
                results[i] = _fail(FieldError("DUPLICATE_VALUE", msg, []))
            else:
                taken[key] = rec["Id"]

    def check_storage(self, finals: dict, results: list) -> None:
        org = self.org
        limit = org.settings.data_storage_mb * 1024 * 1024
        used = org.data_storage_used()
        fused, flimit = org.file_bytes, org.settings.file_storage_mb * 1024 * 1024
        for i, (kind, rec, _b) in finals.items():
            if results[i] is not None or kind != "insert":
                continue
            extra = 2 if self.obj.name in ("ContentVersion", "ContentNote") else 1
            size = rec.get("ContentSize") or 0 if self.obj.name in ("ContentVersion", "ContentNote") else 0
            if used + extra * RECORD_BYTES > limit or (size and fused + size > flimit):
                results[i] = _fail(FieldError("STORAGE_LIMIT_EXCEEDED", "storage limit exceeded"))
                continue
            used += extra * RECORD_BYTES
            fused += size

    # record building --------------------------------------------------------------------------
    def _insert_parts(self) -> None:
        """The constant head (defaults, owner) and tail (Id slot, audit values) of every new record."""
        obj, head, tail = self.obj, dict(self.obj.plan["defaults"]), {}
        if "OwnerId" in obj.fields:
            head["OwnerId"] = self.user_id
        tail["Id"] = None
        tail["IsDeleted"] = False
        for k in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
            if k in obj.fields:
                tail[k] = self.now
        for k in ("CreatedById", "LastModifiedById"):
            if k in obj.fields:
                tail[k] = self.user_id
        self._ins_head, self._ins_tail = head, tail

    def build_insert(self, vals: dict) -> dict:
        obj = self.obj
        plan = obj.plan
        if self._ins_head is None:
            self._insert_parts()
        if obj.name != "ContentVersion" and self._ins_tail.keys().isdisjoint(vals):
            # Fast path (no audit or system value given): same record, same key order as below.
            rec = dict(self._ins_head)
            rec.update(vals)
            rec.update(self._ins_tail)
            rec["Id"] = self.org.new_id(obj.key_prefix)
            missing = [name for name in plan["required"] if rec.get(name) is None]
            if missing:
                raise FieldError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                                 missing)
            return rec
        rec: dict[str, Any] = dict(plan["defaults"])
        if "OwnerId" in obj.fields:
            rec["OwnerId"] = self.user_id
        rec.update(vals)
        rid = self.org.new_id(obj.key_prefix)
        rec["Id"] = rid
        rec["IsDeleted"] = False
        for k in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
            if k in obj.fields and rec.get(k) is None:
                rec[k] = self.now
        for k in ("CreatedById", "LastModifiedById"):
            if k in obj.fields and rec.get(k) is None:
                rec[k] = self.user_id
        if "SystemModstamp" in obj.fields:
            rec["SystemModstamp"] = max(rec["SystemModstamp"], rec.get("LastModifiedDate") or "")
        if rec.get("CreatedDate") and rec["CreatedDate"] > self.now:
            raise FieldError("INVALID_FIELD", "CreatedDate: date cannot be in the future", ["CreatedDate"])
        missing = [name for name in plan["required"] if rec.get(name) is None]
        if obj.name == "ContentVersion" and vals.get("VersionData") is None and rec.get("ContentLocation", "S") == "S":
            missing.append("VersionData")
        if missing:
            raise FieldError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        return rec

    def build_update(self, before: dict, vals: dict) -> dict:
        obj = self.obj
        nulls = [k for k, v in vals.items() if v is None and not obj.fields[k]["nillable"]]
        if nulls:
            raise FieldError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(nulls)}]", nulls)
        rec = dict(before)
        rec.update(vals)
        if "LastModifiedDate" in obj.fields:
            rec["LastModifiedDate"] = self.now
            rec["LastModifiedById"] = self.user_id
        rec["SystemModstamp"] = self.now
        return rec

    def object_rules(self, rec: dict, vals: dict, before: dict | None) -> None:
        name = self.obj.name
        if self.obj.custom:
            if before is None and not rec.get("Name") and "Name" in self.obj.fields:
                rec["Name"] = rec["Id"]  # a custom object's Name defaults to the record Id
            return
        if name in SECURITY_OBJECTS:
            self.security_rules(rec, before)
        elif name in ("Contact", "User") and "LastName" in self.obj.fields:
            first, last = rec.get("FirstName"), rec.get("LastName")
            rec["Name"] = f"{first} {last}" if first and last else (first or last or "")
            if name == "Contact":
                self.primary_account_rules(rec, before)
        elif name == "AccountContactRelation":
            self.account_contact_rules(rec, before)
        elif name in TEAM_USER_FIELD:
            uid = rec.get(TEAM_USER_FIELD[name])
            user = self.org.user(uid) if uid and str(uid).startswith("005") else None
            if user is not None and not user.get("IsActive"):
                raise FieldError("INACTIVE_OWNER_OR_USER", f"operation performed with inactive user [{uid}] as team member",
                                 [TEAM_USER_FIELD[name]])
        elif name == "Case":
            if before is None:
                rec["CaseNumber"] = f"{self.org.seq % 100000000:08d}"
            rec["IsClosed"] = rec.get("Status") == "Closed"
            if rec["IsClosed"] and not rec.get("ClosedDate"):
                rec["ClosedDate"] = self.now
        elif name == "Task":
            rec["IsClosed"] = rec.get("Status") == "Completed"
            if before is None and not rec.get("TaskSubtype"):
                rec["TaskSubtype"] = "Task"
        elif name == "Opportunity":
            stage = rec.get("StageName") or ""
            rec["IsClosed"] = stage.startswith("Closed")
            rec["IsWon"] = stage == "Closed Won"
        elif name == "Event":
            self.event_rules(rec, vals, before)
        elif name == "ContentVersion" and before is None:
            self.content_version(rec, vals)
        elif name == "ContentNote" and before is None:
            self.content_note(rec, vals)
        elif name == "EventRelation":
            rec["IsWhat"] = False

    def security_rules(self, rec: dict, before: dict | None) -> None:
        """PermissionSet names, FieldPermissions/ObjectPermissions targets and dependencies, assignments."""
        name, schema = self.obj.name, self.org.schema

        def restricted(label: str, value: object, field_name: str) -> FieldError:
            return FieldError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                              f"{label}: bad value for restricted picklist field: {value}", [field_name])

        if name == "PermissionSet":
            if before is None:
                rec["IsOwnedByProfile"], rec["ProfileId"] = False, None
            elif before.get("IsOwnedByProfile"):
                raise FieldError("INSUFFICIENT_ACCESS_OR_READONLY",
                                 "insufficient access rights on object id: a profile's permission set", [])
            if not _API_NAME.match(str(rec.get("Name") or "")):
                raise FieldError("FIELD_INTEGRITY_EXCEPTION",
                                 "Name: The API Name can only contain underscores and alphanumeric characters. It "
                                 "must be unique, begin with a letter, not include spaces, not end with an underscore, "
                                 "and not contain two consecutive underscores.", ["Name"])
        elif name == "FieldPermissions":
            target = schema.get(str(rec.get("SobjectType") or ""))
            if target is None or target.name not in schema.permissionable_objects(fields_too=True):
                raise restricted("SObject Type Name", rec.get("SobjectType"), "SobjectType")
            table, _, fname = str(rec.get("Field") or "").partition(".")
            f = target.field(fname) if table.lower() == target.name.lower() else None
            if f is None and table.lower() == target.name.lower():
                f = target.field(fname + "Id")  # API 50+: a lookup may be named without "Id"
            if f is None or not f["permissionable"]:
                raise restricted("Field Name", rec.get("Field"), "Field")
            rec["SobjectType"], rec["Field"] = target.name, f"{target.name}.{f['name']}"
            if rec.get("PermissionsEdit") and not rec.get("PermissionsRead"):
                raise FieldError("FIELD_INTEGRITY_EXCEPTION", "Permission Edit depends on permission(s): Read",
                                 ["PermissionsEdit"])
            if rec.get("PermissionsEdit") and not (f["createable"] or f["updateable"]):
                raise FieldError("FIELD_INTEGRITY_EXCEPTION",
                                 f"{rec['Field']}: edit access cannot be granted on a read-only field",
                                 ["PermissionsEdit"])
        elif name == "ObjectPermissions":
            target = schema.get(str(rec.get("SobjectType") or ""))
            if target is None or not object_permissionable(target):
                raise restricted("SObject Type Name", rec.get("SobjectType"), "SobjectType")
            rec["SobjectType"] = target.name
            for flag, needs in OBJECT_PERMISSION_DEPENDS.items():
                missing = [n.removeprefix("Permissions") for n in needs if rec.get(flag) and not rec.get(n)]
                if missing:
                    raise FieldError("FIELD_INTEGRITY_EXCEPTION",
                                     f"Permission {flag.removeprefix('Permissions')} depends on permission(s): "
                                     + ", ".join(missing), [flag])
        elif name == "PermissionSetAssignment":
            got = self.org.store.fetch("PermissionSet", [rec["PermissionSetId"]]).get(rec["PermissionSetId"])
            if got is not None and got[1].get("IsOwnedByProfile"):
                raise FieldError("FIELD_INTEGRITY_EXCEPTION",
                                 "You can't assign or unassign this permission set because it's associated with "
                                 "a profile.", ["PermissionSetId"])

    def primary_account_rules(self, rec: dict, before: dict | None) -> None:
        """Contacts to Multiple Accounts: a contact's primary Account (``AccountId``) is its direct relation.

        Help, "Considerations for Relating a Contact to Multiple Accounts": the relationship with the primary
        account is direct, every other one indirect; "to remove a direct relationship between a contact and an
        account, change the contact's primary account or delete the contact". "Validation Rules for Account
        Contact Relationships": a direct relation is created with a contact that has an account, and "when a
        contact gets a new primary account, the current direct Account Contact Relationship record is
        modified". So: on insert with an account, a direct relation; on a new account, the relation to it
        becomes the direct one (an indirect one to that account is promoted, else one is created: never a
        second relation to one account) and the old direct one stays as an indirect relation (Account Settings'
        default, "save the previous primary account as an indirect relationship"). The docs do not say what
        clearing ``AccountId`` does; the sandbox removes the direct relation then (the contact is private, and a
        private contact cannot be related to an account), rather than keeping a relation a real org may not.
        """
        new = rec.get("AccountId")
        if before is None:
            if new:
                self._side_insert("AccountContactRelation", {
                    "Id": self.org.new_id("07k"), "AccountId": new, "ContactId": rec["Id"],
                    "IsDirect": True, "IsActive": True})
            return
        old = before.get("AccountId")
        if (old or None) == (new or None):
            return
        store = self.org.store
        rel_ids = store.lookup_keys("AccountContactRelation", "ContactId", [rec["Id"]]).get(rec["Id"], [])
        rels = [d for _s, d, deleted in store.fetch("AccountContactRelation", rel_ids).values() if not deleted]
        stamp = {"SystemModstamp": self.now, "LastModifiedDate": self.now, "LastModifiedById": self.user_id}
        queue = self.pending.setdefault(self._cur, [])
        acr = self.org.schema.get("AccountContactRelation")
        promoted = False
        for r in rels:
            if r.get("IsDirect"):
                # a new primary: the old one stays, indirect; none (a private contact): the relation goes
                queue.append(("update", acr, dict(r, IsDirect=False, **stamp) if new else
                              dict(r, IsDeleted=True, SystemModstamp=self.now)))
            elif new and r.get("AccountId") == new:
                queue.append(("update", acr, dict(r, IsDirect=True, **stamp)))
                promoted = True
        if new and not promoted:
            self._side_insert("AccountContactRelation", {
                "Id": self.org.new_id("07k"), "AccountId": new, "ContactId": rec["Id"],
                "IsDirect": True, "IsActive": True})

    def account_contact_rules(self, rec: dict, before: dict | None) -> None:
        """A private contact (no AccountId) cannot be related to other accounts; direct relations stay direct."""
        if before is None:
            rec["IsDirect"] = False
            got = self.org.store.fetch("Contact", [rec["ContactId"]]).get(rec["ContactId"])
            if got is not None and not got[1].get("AccountId"):
                raise FieldError("FIELD_INTEGRITY_EXCEPTION",
                                 "You can't relate a private contact to an account. Add a primary account to the contact first.",
                                 ["ContactId"])
        if rec.get("EndDate") and rec.get("StartDate") and rec["EndDate"] < rec["StartDate"]:
            raise FieldError("FIELD_INTEGRITY_EXCEPTION", "End Date can't be earlier than Start Date", ["EndDate"])

    def event_rules(self, rec: dict, vals: dict, before: dict | None) -> None:
        def err(msg: str, fields: list[str]) -> FieldError:
            return FieldError("FIELD_INTEGRITY_EXCEPTION", msg, fields)

        if rec.get("IsAllDayEvent"):
            day = rec.get("ActivityDate") or (rec.get("StartDateTime") or rec.get("ActivityDateTime") or "")[:10] or None
            if not day:
                raise FieldError("REQUIRED_FIELD_MISSING", "Required fields are missing: [ActivityDate]", ["ActivityDate"])
            dur = rec.get("DurationInMinutes")
            if "EndDateTime" in vals and vals["EndDateTime"] and "DurationInMinutes" not in vals:
                dur = None
            start = f"{day}T00:00:00.000+0000"
            if dur is None and rec.get("EndDateTime"):
                dur = max(minutes_between(start, rec["EndDateTime"][:10] + "T00:00:00.000+0000") + 1440, 1440)
            dur = dur or 1440
            rec.update(ActivityDate=day, StartDateTime=start, ActivityDateTime=None, DurationInMinutes=dur,
                       EndDateTime=add_minutes(start, dur - 1440) if dur >= 1440 else start)
        else:
            start = vals.get("StartDateTime") or vals.get("ActivityDateTime") or rec.get("StartDateTime")
            if not start:
                raise FieldError("REQUIRED_FIELD_MISSING", "Required fields are missing: [StartDateTime]", ["StartDateTime"])
            dur_given = vals.get("DurationInMinutes")
            end_given = vals.get("EndDateTime")
            if dur_given is not None and end_given is not None:
                if minutes_between(start, end_given) != dur_given:
                    raise err("Event duration and end date/time are inconsistent", ["DurationInMinutes", "EndDateTime"])
                dur = dur_given
            elif end_given is not None:
                dur = minutes_between(start, end_given)
            elif dur_given is not None:
                dur = dur_given
            elif before is not None and before.get("DurationInMinutes") is not None:
                dur = before["DurationInMinutes"]
            else:
                raise FieldError("REQUIRED_FIELD_MISSING", "Required fields are missing: [DurationInMinutes]",
                                 ["DurationInMinutes"])
            if dur < 0:
                raise err("End Date Time: End date cannot be earlier than start date", ["EndDateTime"])
            rec.update(StartDateTime=start, ActivityDateTime=start, ActivityDate=start[:10],
                       DurationInMinutes=dur, EndDateTime=add_minutes(start, dur))
        if rec["DurationInMinutes"] > 14 * 1440:
            raise err("Event duration cannot exceed 14 days", ["DurationInMinutes", "EndDateTime"])
        rec["EndDate"] = rec["EndDateTime"][:10]

    def content_version(self, rec: dict, vals: dict) -> None:
        data: bytes = vals.get("VersionData") or b""
        rec.pop("VersionData", None)
        path = rec.get("PathOnClient") or ""
        ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
        rec.update(Checksum=hashlib.md5(data).hexdigest(), ContentSize=len(data), FileExtension=ext or None,
                   FileType=FILE_TYPES.get(ext, "UNKNOWN"), IsLatest=True,
                   ContentModifiedDate=rec.get("ContentModifiedDate") or self.now)
        self.pending.setdefault(self._cur, []).append(("blob", None, (rec["Id"], data)))
        doc_id = rec.get("ContentDocumentId")
        if doc_id:
            got = self.org.store.fetch("ContentDocument", [doc_id]).get(doc_id)
            if got is None or got[2]:
                raise FieldError("INVALID_CROSS_REFERENCE_KEY", "ContentDocument ID: invalid cross reference id",
                                 ["ContentDocumentId"])
            versions = self.org.store.lookup_keys("ContentVersion", "ContentDocumentId", [doc_id]).get(doc_id, [])
            rec["VersionNumber"] = str(len(versions) + 1)
            for _vid, (_s, old, _d) in self.org.store.fetch("ContentVersion", versions).items():
                self.pending.setdefault(self._cur, []).append(
                    ("update", self.org.schema.get("ContentVersion"), dict(old, IsLatest=False)))
            doc = dict(got[1], LatestPublishedVersionId=rec["Id"], ContentSize=len(data), FileType=rec["FileType"],
                       FileExtension=rec["FileExtension"], Title=rec["Title"], SystemModstamp=self.now,
                       LastModifiedDate=self.now, ContentModifiedDate=self.now)
            self.pending.setdefault(self._cur, []).append(("update", self.org.schema.get("ContentDocument"), doc))
        else:
            doc_id = self.org.new_id("069")
            rec["ContentDocumentId"] = doc_id
            rec["VersionNumber"] = "1"
            self._side_insert("ContentDocument", {
                "Id": doc_id, "Title": rec["Title"], "PublishStatus": "P", "LatestPublishedVersionId": rec["Id"],
                "ParentId": None, "ContentSize": len(data), "FileType": rec["FileType"],
                "FileExtension": rec["FileExtension"], "Description": rec.get("Description"), "IsArchived": False,
                "ArchivedDate": None, "ContentModifiedDate": self.now, "SharingOption": "A",
                "SharingPrivacy": rec.get("SharingPrivacy") or "N", "OwnerId": rec.get("OwnerId"),
                "CreatedDate": rec.get("CreatedDate"), "CreatedById": rec.get("CreatedById")})
            self._link(doc_id, rec.get("OwnerId"), "I")
            loc = rec.get("FirstPublishLocationId")
            if loc and loc != rec.get("OwnerId"):
                self._link(doc_id, loc, "I" if loc[:3] != "005" else "C")

    def content_note(self, rec: dict, vals: dict) -> None:
        data: bytes = vals.get("Content") or b""
        rec.pop("Content", None)
        text = data.decode("utf-8", "replace")
        rec.update(FileType="SNOTE", FileExtension="snote", ContentSize=len(data), TextPreview=text[:300])
        self.pending.setdefault(self._cur, []).append(("blob", None, (rec["Id"], data)))
        self._side_insert("ContentDocument", {
            "Id": rec["Id"], "Title": rec["Title"], "PublishStatus": "P", "LatestPublishedVersionId": None,
            "ContentSize": len(data), "FileType": "SNOTE", "FileExtension": "snote", "IsArchived": False,
            "SharingOption": "A", "SharingPrivacy": "N", "OwnerId": rec.get("OwnerId")})
        self._link(rec["Id"], rec.get("OwnerId"), "I")

    def _link(self, doc_id: str, entity: str | None, share: str) -> None:
        if entity:
            self._side_insert("ContentDocumentLink", {"Id": self.org.new_id("06A"), "LinkedEntityId": entity,
                                                      "ContentDocumentId": doc_id, "ShareType": share,
                                                      "Visibility": "AllUsers"})

    def _side_insert(self, sobject: str, rec: dict) -> None:
        """Queue a record the platform creates with row ``self._cur`` (null fields are not stored)."""
        got = self._side_heads.get(sobject)
        if got is None:
            obj = self.org.schema.get(sobject)
            head: dict[str, Any] = {"IsDeleted": False, "SystemModstamp": self.now}
            for k in ("CreatedDate", "LastModifiedDate"):
                if k in obj.fields:
                    head[k] = self.now
            for k in ("CreatedById", "LastModifiedById"):
                if k in obj.fields:
                    head[k] = self.user_id
            got = self._side_heads[sobject] = (obj, head)
        obj, full = got[0], dict(got[1])
        for k, v in rec.items():
            if v is not None:
                full[k] = v
        self.pending.setdefault(self._cur, []).append(("insert", obj, full))

    def side_effects(self, i: int) -> None:
        for kind, obj, full in self.pending.pop(i, []):
            if kind == "insert":
                self.inserts.append((obj.name, full["Id"], full))
                self.keys_add += self.org._keys_for(obj, full)
            elif kind == "update":
                self.updates.append((obj.name, full["Id"], full))
            elif kind == "blob":
                self.blobs.append(full)
                self.org.file_bytes += len(full[1])
