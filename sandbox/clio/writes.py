"""Create, update and delete records the way Clio's POST/PATCH/DELETE do.

Every change (including one to a nested email, phone, address or custom field value) bumps the
record's ``updated_at`` and ``etag``, so ``updated_since`` sees it.
"""

from __future__ import annotations

import copy
import time

from sandbox.clio.schema import model
from sandbox.clio.store import TRASHABLE, Store, etag_of, iso

#: Association name -> (kind, keys copied into the nested object).
ASSOC: dict[str, tuple[str, tuple[str, ...]]] = {
    "matter": ("matters", ("display_number",)),
    "client": ("contacts", ("name", "type")),
    "contact": ("contacts", ("name", "type")),
    "vendor": ("contacts", ("name",)),
    "company": ("contacts", ("name",)),
    "user": ("users", ("name", "email")),
    "author": ("users", ("name", "email")),
    "assigner": ("users", ("name",)),
    "responsible_attorney": ("users", ("name", "email")),
    "originating_attorney": ("users", ("name", "email")),
    "practice_area": ("practice_areas", ("name", "code", "category")),
    "matter_stage": ("matter_stages", ("name",)),
    "activity_description": ("activity_descriptions", ("name",)),
    "expense_category": ("expense_categories", ("name",)),
    "bill": ("bills", ("number",)),
    "task_type": ("task_types", ("name",)),
    "calendar_owner": ("calendars", ("name", "type")),
    "task_template_list": ("task_template_lists", ("name",)),
}
#: Nested collections merged item by item (``_destroy``/``_deleted`` removes an item).
COLLECTIONS = {"email_addresses", "phone_numbers", "addresses", "custom_field_values", "attendees",
               "related_contacts", "senders", "receivers"}
_IMMUTABLE = {"id", "etag", "created_at", "updated_at"}


class WriteError(Exception):
    """A write Clio would refuse: ``status`` is the HTTP status, the message names the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Writer:
    """Applies writes to the store; ``clock`` is injectable for tests."""

    def __init__(self, store: Store, clock=time.time) -> None:
        self.store = store
        self.clock = clock
        #: ``listener(kind, event, before, after)`` after each write (the webhooks' deliveries).
        self.listeners: list = []

    def _notify(self, kind: str, event: str, before: dict | None, after: dict) -> None:
        for listener in self.listeners:
            listener(kind, event, before, after)

    def _ref(self, name: str, value: object, endpoint: str) -> dict | None:
        if value is None:
            return None
        if not isinstance(value, dict) or "id" not in value:
            raise WriteError(422, f"{endpoint}: field {name!r} must be an object with an id")
        if name == "assignee" or (name in ("senders", "receivers", "attendees")):
            typ = value.get("type", "User")
            kind = "users" if typ == "User" else ("calendars" if typ == "Calendar" else "contacts")
            target = self.store.get(kind, int(value["id"]))
            if target is None:
                raise WriteError(422, f"{endpoint}: {name} {typ} {value['id']} does not exist")
            out = {"id": target["id"], "etag": target.get("etag"), "type": typ if typ != "Contact" else target["type"],
                   "name": target.get("name")}
            if name == "attendees":
                out.update(type=typ, email=target.get("email") or target.get("primary_email_address"), enabled=True)
            return out
        kind, keys = ASSOC[name]
        target = self.store.get(kind, int(value["id"]))
        if target is None:
            raise WriteError(422, f"{endpoint}: {name} {value['id']} does not exist")
        return {"id": target["id"], "etag": target.get("etag")} | {k: target.get(k) for k in keys}

    def _merge_collection(self, name: str, current: list[dict], items: list, endpoint: str, rec: dict) -> list[dict]:
        if not isinstance(items, list):
            raise WriteError(422, f"{endpoint}: field {name!r} must be a list")
        out = [dict(x) for x in current or []]
        for item in items:
            if not isinstance(item, dict):
                raise WriteError(422, f"{endpoint}: items of {name!r} must be objects")
            destroy = item.get("_destroy") or item.get("_deleted")
            iid = item.get("id")
            existing = next((x for x in out if iid is not None and str(x.get("id")) == str(iid)), None)
            if destroy:
                if existing is None:
                    raise WriteError(404, f"{endpoint}: {name} item {iid} not found")
                out.remove(existing)
                continue
            if name == "custom_field_values":
                item = self._cf_value(item, existing, endpoint)
            elif name in ("attendees", "senders", "receivers", "related_contacts"):
                item = self._ref("attendees" if name == "attendees" else "senders", item, endpoint)
            if existing is not None:
                existing.update({k: v for k, v in item.items() if not k.startswith("_")})
            else:
                new = {k: v for k, v in item.items() if not k.startswith("_")}
                if new.get("id") is None:
                    new["id"] = self._next_nested_id(name)
                new.setdefault("etag", None)
                out.append(new)
        if name in ("email_addresses", "phone_numbers", "addresses"):
            for x in out:
                x["etag"] = etag_of(x)
        return out

    def _next_nested_id(self, name: str) -> int:
        key = f"seq:{name}"
        cur = int(self.store.meta(key) or 500000)
        self.store.set_meta(key, str(cur + 1))
        return cur + 1

    def _cf_value(self, item: dict, existing: dict | None, endpoint: str) -> dict:
        if existing is not None:
            cf = self.store.get("custom_fields", existing["custom_field"]["id"])
        else:
            cfid = (item.get("custom_field") or {}).get("id")
            cf = self.store.get("custom_fields", int(cfid)) if cfid is not None else None
            if cf is None:
                raise WriteError(422, f"{endpoint}: custom_field_values needs an existing custom_field id, got {cfid}")
        value = item.get("value")
        out = {"field_name": cf["name"], "field_type": cf["field_type"], "custom_field": {"id": cf["id"],
               "etag": cf.get("etag")}, "value": None if value is None else str(value), "picklist_option": None}
        if cf["field_type"] == "picklist" and value is not None:
            opt = next((o for o in cf["picklist_options"] if str(o["id"]) == str(value) or o["option"] == value), None)
            if opt is None:
                raise WriteError(422, f"{endpoint}: custom field {cf['name']!r} has no picklist option {value!r}")
            out["value"] = opt["option"]
            out["picklist_option"] = {"id": opt["id"], "etag": opt.get("etag"), "option": opt["option"]}
        if existing is None:
            out["id"] = f"{cf['field_type']}-{self._next_nested_id('cfv')}"
            out["etag"] = None
        return out

    def _apply(self, endpoint: str, rec: dict, data: dict) -> None:
        known = model().fields(model().operations[endpoint].schema)
        for key, value in data.items():
            if key in _IMMUTABLE or key.startswith("_"):
                continue
            if key in COLLECTIONS:
                rec[key] = self._merge_collection(key, rec.get(key) or [], value, endpoint, rec)
            elif key in ASSOC or key == "assignee":
                rec[key] = self._ref(key, value, endpoint)
            elif key in known:
                rec[key] = value
            else:
                raise WriteError(422, f"{endpoint}: unknown or read-only field {key!r}")
        self._derive(endpoint, rec)

    @staticmethod
    def _derive(endpoint: str, rec: dict) -> None:
        """Keep denormalised fields consistent, and Clio's casing on enums."""
        if endpoint == "matters":
            if isinstance(rec.get("status"), str):
                rec["status"] = rec["status"].capitalize()
            if rec.get("client"):
                rec["client_id"] = rec["client"]["id"]
        elif endpoint == "contacts":
            if rec.get("type") == "Person" and ("first_name" in rec or "last_name" in rec):
                rec["name"] = " ".join(p for p in (rec.get("first_name"), rec.get("last_name")) if p)
            for coll, first, second in (("email_addresses", "primary_email_address", "secondary_email_address"),
                                        ("phone_numbers", "primary_phone_number", "secondary_phone_number")):
                items = rec.get(coll) or []
                key = "address" if coll == "email_addresses" else "number"
                prim = next((x for x in items if x.get("primary")), items[0] if items else None)
                rest = [x for x in items if x is not prim]
                rec[first] = prim.get(key) if prim else None
                rec[second] = rest[0].get(key) if rest else None
        elif endpoint == "tasks" and isinstance(rec.get("priority"), str):
            rec["priority"] = rec["priority"].capitalize()
        elif endpoint == "activities" and rec.get("type") == "TimeEntry" and rec.get("quantity") is not None:
            hours = float(rec["quantity"]) / 3600
            rec["quantity"] = rec["rounded_quantity"] = float(rec["quantity"])
            rec["quantity_in_hours"] = rec["rounded_quantity_in_hours"] = round(hours, 4)
            price = float(rec.get("price") or 0)
            total = price if rec.get("flat_rate") else round(price * hours, 2)
            rec["total"], rec["non_billable_total"] = (0.0, total) if rec.get("non_billable") else (total, 0.0)

    def _touch(self, kind: str, rec: dict) -> dict:
        now = self.clock()
        rec["_updated_ts"] = max(now, float(rec.get("_updated_ts", 0)) + 1e-3)
        rec["updated_at"] = iso(rec["_updated_ts"])
        rec["etag"] = etag_of(rec)
        self.store.save(kind, rec)
        return rec

    @staticmethod
    def _kind(endpoint: str) -> str:
        op = model().operations.get(endpoint)
        if op is None or not op.listing or op.path_params:
            raise WriteError(404, f"unknown endpoint {endpoint!r}")
        return endpoint

    def create(self, endpoint: str, data: dict) -> dict:
        kind = self._kind(endpoint)
        with self.store.lock:
            rid = self.store.max_id(kind) + 1
            now = self.clock()
            rec: dict = {"id": str(rid) if kind == "calendar_entries" else rid, "_created_ts": now,
                         "created_at": iso(now), "_updated_ts": now}
            if kind == "matters":
                rec.update(number=rid, display_number=f"{rid:05d}-New", status="Open", billable=True,
                           billing_method="hourly", custom_field_values=[])
            if kind == "contacts":
                rec.update(custom_field_values=[], email_addresses=[], phone_numbers=[], addresses=[],
                           related_contacts=[], is_client=False, company=None)
            self._apply(endpoint, rec, data)
            rec = self._touch(kind, rec)
        self._notify(kind, "created", None, rec)
        return rec

    def update(self, endpoint: str, rid: int, data: dict, if_match: str | None = None) -> dict:
        kind = self._kind(endpoint)
        with self.store.lock:
            rec = self.store.get(kind, rid)
            if rec is None:
                raise WriteError(404, f"{endpoint} {rid} not found")
            if if_match is not None and if_match != rec.get("etag"):
                raise WriteError(412, f"{endpoint} {rid}: If-Match does not match the current etag")
            if endpoint == "documents" and data.get("restore"):
                rec["deleted_at"] = None
                data = {k: v for k, v in data.items() if k != "restore"}
            before = copy.deepcopy(rec)
            self._apply(endpoint, rec, data)
            rec = self._touch(kind, rec)
        self._notify(kind, "updated", before, rec)
        return rec

    def purge(self, endpoint: str, rid: int) -> None:
        """Remove a record for good (as when Clio's trash is emptied): reads and downloads answer 404."""
        kind = self._kind(endpoint)
        if not self.store.delete(kind, rid):
            raise WriteError(404, f"{endpoint} {rid} not found")

    def delete(self, endpoint: str, rid: int) -> None:
        kind = self._kind(endpoint)
        with self.store.lock:
            rec = self.store.get(kind, rid)
            if rec is None:
                raise WriteError(404, f"{endpoint} {rid} not found")
            if kind in TRASHABLE:
                rec["deleted_at"] = iso(self.clock())
                self._touch(kind, rec)
            elif kind == "bills":
                if rec.get("paid"):
                    raise WriteError(422, f"bills {rid}: a bill with payments cannot be deleted")
                rec["state"] = "void" if rec["state"] == "awaiting_payment" else "deleted"
                self._touch(kind, rec)
            elif kind in ("custom_fields",):
                rec["deleted"] = True
                self._touch(kind, rec)
            else:
                self.store.delete(kind, rid)
        self._notify(kind, "deleted", None, rec)
