"""An in-memory stand-in for ``ClioSalesforceHook`` answering SOQL from dicts (unit tests only)."""

from __future__ import annotations

from sandbox.salesforce.soql import evaluate, parse


class FakeSF:
    """``records``: sobject → list of flat rows (``Account.Clio_Id__c`` style keys for parents). A parent's
    field a row does not hold (``Event.Clio_Id__c`` of an EventRelation) is read through the row's
    lookup (``EventId``) from the record with that Id, as an org's relationship query does."""

    def __init__(self, records: dict[str, list[dict]] | None = None, types: dict[str, dict[str, str]] | None = None):
        self.records = {k: [dict(r) for r in v] for k, v in (records or {}).items()}
        self.types = types or {}
        self.queries: list[str] = []
        self.deleted: list[str] = []
        self.created: list[str] = []

    def describe(self, sobject: str) -> dict:
        names = {k for r in self.records.get(sobject, ()) for k in r if "." not in k}
        names |= set(self.types.get(sobject, {})) | {"Id"}
        return {"fields": [{"name": n, "type": self.types.get(sobject, {}).get(n, "string"), "createable": n != "Id",
                            "length": 255, "externalId": n == "Clio_Id__c"} for n in sorted(names)]}

    def query_all_iter(self, soql: str):
        self.queries.append(soql)
        q = parse(soql)
        for rec in self.records.get(q.sobject, ()):
            if q.where is None or evaluate(q.where, lambda p, r=rec: (r.get(p), "string")):
                yield {"attributes": {"type": q.sobject}, **{f: self._value(rec, f) for f in q.fields}}

    def _value(self, rec: dict, path: str):
        if path in rec or "." not in path:
            return rec.get(path)
        rel, name = path.split(".", 1)
        target = rec.get(f"{rel}Id")
        if not target:
            return None
        for rows in self.records.values():
            for r in rows:
                if str(r.get("Id") or "")[:15] == str(target)[:15]:
                    return r.get(name)
        return None

    def _find(self, sf_id: str):
        for sobject, rows in self.records.items():
            for r in rows:
                if r.get("Id") == sf_id:
                    return sobject, r
        return None, None

    def composite_delete(self, ids):
        out = []
        for i in ids:
            sobject, r = self._find(i)
            if r is None:
                out.append({"id": i, "success": False, "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "gone"}]})
                continue
            self.records[sobject].remove(r)
            self.deleted.append(i)
            out.append({"id": i, "success": True, "errors": []})
        return out

    def composite_update(self, records):
        out = []
        for rec in records:
            _, r = self._find(rec["id"])
            if r is None:
                out.append({"success": False, "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "gone"}]})
                continue
            r.update({k: v for k, v in rec.items() if k not in ("attributes", "id")})
            out.append({"id": rec["id"], "success": True, "errors": []})
        return out

    def composite_create(self, records):
        out = []
        for rec in records:
            sobject = rec["attributes"]["type"]
            new_id = f"{sobject[:3].upper()}NEW{len(self.created):09d}"
            self.records.setdefault(sobject, []).append({"Id": new_id, **{k: v for k, v in rec.items() if k != "attributes"}})
            self.created.append(new_id)
            out.append({"id": new_id, "success": True, "errors": []})
        return out

    def composite_upsert(self, sobject, external_id_field, records):
        out = []
        for rec in records:
            hit = next((r for r in self.records.get(sobject, ()) if r.get(external_id_field) == rec[external_id_field]), None)
            if hit is None:
                out += [{**r, "created": True} for r in self.composite_create([rec])]
            else:
                hit.update({k: v for k, v in rec.items() if k != "attributes"})
                out.append({"id": hit["Id"], "success": True, "errors": [], "created": False})
        return out
