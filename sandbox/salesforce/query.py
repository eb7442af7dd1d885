"""Run parsed SOQL against the org: field checks, index pushdown, relationships, rendering."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from functools import cmp_to_key
from typing import Any

from sandbox.salesforce import ids
from sandbox.salesforce.metadata import SObject, compound_address
from sandbox.salesforce.org import Org
from sandbox.salesforce.soql import Cond, DateLiteral, Like, Query, SoqlError, evaluate, parse

API = "v59.0"
_STRINGY = {"string", "textarea", "picklist", "multipicklist", "combobox", "email", "phone", "url", "id",
            "reference", "encryptedstring"}
_NUMERIC = {"int", "double", "currency", "percent", "long"}
_TYPE_NAMES = {"int": "integer", "datetime": "dateTime"}


def _no_column(q: str, path: str, obj: str) -> SoqlError:
    return SoqlError("INVALID_FIELD",
                     f"\n{q}\nERROR at Row:1:Column:1\nNo such column '{path}' on entity '{obj}'. If you are "
                     "attempting to use a custom field, be sure to append the '__c' after the custom field name. "
                     "Please reference your WSDL or the describe call for the appropriate names.")


#: The parents one query keeps once read (its relationship paths: ``Event.Clio_Id__c`` of an EventRelation),
#: the most recently used: a query over millions of children (its cursor lives while its pages are read)
#: no longer holds a copy of every parent record it met (at xl, 1.1M Events for the 2.0M EventRelations).
PARENT_CACHE = 10_000
_MISS = object()


class Runner:
    """One query execution."""

    def __init__(self, org: Org, soql: str, *, include_deleted: bool, user_id: str | None = None):
        self.org, self.soql, self.include_deleted = org, soql, include_deleted
        self.access = org.access(user_id)
        self.q: Query = parse(soql)
        obj = org.visible(self.q.sobject, user_id)
        if obj is None:
            raise SoqlError("INVALID_TYPE",
                            f"\n{soql}\nERROR at Row:1:Column:1\nsObject type '{self.q.sobject}' is not supported. "
                            "If you are attempting to use a custom object, be sure to append the '__c' after the "
                            "entity name. Please reference your WSDL or the describe call for the appropriate names.")
        self.obj: SObject = obj
        self._parents: OrderedDict[str, dict | None] = OrderedDict()  # at most PARENT_CACHE, least recent first
        for path in self.q.fields + [p for p, _, _ in self.q.order] + self._where_paths(self.q.where):
            self.check_path(path)
        for path, _desc, _nulls in self.q.order:
            f = self.field_of(path)
            if f is not None and not f["sortable"]:
                raise SoqlError("INVALID_FIELD", f"\n{soql}\nERROR at Row:1:Column:1\nfield '{path}' can not be "
                                "sorted in a query call")
        self._check_filters(self.q.where)
        if obj.name == "ContentDocumentLink" and not self._filters_cdl(self.q.where):
            raise SoqlError("MALFORMED_QUERY",
                            "Implementation restriction: ContentDocumentLink requires a filter by a single Id on "
                            "ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using "
                            "the IN operator.")

    @staticmethod
    def _where_paths(c: Cond | None) -> list[str]:
        if c is None:
            return []
        if c.kind in ("and", "or", "not"):
            return [p for part in c.parts for p in Runner._where_paths(part)]
        return [c.path]

    def _filters_cdl(self, c: Cond | None) -> bool:
        if c is None:
            return False
        if c.kind == "and":
            return any(self._filters_cdl(p) for p in c.parts)
        if c.kind == "or":
            return all(self._filters_cdl(p) for p in c.parts)
        return (c.kind in ("cmp", "in") and (c.kind == "in" or c.op == "=")
                and c.path.lower() in ("contentdocumentid", "linkedentityid", "id"))

    def _visible(self, obj: SObject, f: dict | None) -> bool:
        return f is not None and (self.access is None or self.access.readable(obj, f))

    def check_path(self, path: str) -> None:
        """Unknown or hidden (field-level security) parts of ``path`` raise ``INVALID_FIELD``."""
        self._resolve(path, check=True)

    def field_of(self, path: str) -> dict | None:
        """The describe field a (checked) path ends at; None past a polymorphic relationship."""
        return self._resolve(path, check=False)

    def _resolve(self, path: str, *, check: bool) -> dict | None:
        parts = path.split(".")
        obj = self.obj
        if len(parts) > 1 and parts[0].lower() == obj.name.lower():
            parts = parts[1:]
        for rel in parts[:-1]:
            f = obj.rel_field(rel)
            if check and not self._visible(obj, f):
                raise _no_column(self.soql, path, self.obj.name)
            if len(f["referenceTo"]) != 1:
                return None  # polymorphic: checked per row
            nxt = self.org.schema.get(f["referenceTo"][0])
            if check and (nxt is None or (self.access is not None and not self.access.can(nxt, "read"))):
                raise _no_column(self.soql, path, self.obj.name)
            obj = nxt
        f = obj.field(parts[-1])
        if check and not self._visible(obj, f):
            raise _no_column(self.soql, path, self.obj.name)
        return f

    def _check_filters(self, c: Cond | None) -> None:
        """Filter values must have the field's type, as a real org requires (see the module docstring)."""
        if c is None:
            return
        if c.kind in ("and", "or", "not"):
            for part in c.parts:
                self._check_filters(part)
            return
        f = self.field_of(c.path)
        if f is None:
            return
        where = f"\n{self.soql}\nERROR at Row:1:Column:{c.pos + 1}\n"
        if not f["filterable"]:
            raise SoqlError("INVALID_FIELD", f"{where}field '{c.path}' can not be filtered in a query call")
        t = f["type"]
        values = c.value if c.kind in ("in", "includes", "excludes") else [c.value]
        if c.kind == "like" and t in ("id", "reference"):
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"{where}invalid operator on id field")
        for v in values:
            if v is None:
                continue
            if t in _STRINGY:
                ok = isinstance(v, str | Like)
            elif t == "boolean":
                ok = isinstance(v, bool)
            elif t in _NUMERIC:
                ok = isinstance(v, int | float) and not isinstance(v, bool)
            elif t == "date":
                ok = isinstance(v, DateLiteral) or (isinstance(v, tuple) and v[0] == "d")
            elif t == "datetime":
                ok = isinstance(v, DateLiteral) or (isinstance(v, tuple) and v[0] == "dt")
            else:
                ok = True
            if not ok:
                quoted = t in _STRINGY
                raise SoqlError("INVALID_FIELD", f"{where}value of filter criterion for field '{c.path}' must be of "
                                f"type {_TYPE_NAMES.get(t, 'string' if quoted else t)} and should "
                                f"{'' if quoted else 'not '}be enclosed in quotes")
            if t in ("id", "reference") and isinstance(v, str) and not ids.well_formed(v):
                raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"{where}invalid ID field: {v}")

    # -- row access ---------------------------------------------------------------------------
    def parent(self, pid: str | None) -> dict | None:
        if pid is None:
            return None
        cached = self._parents.get(pid, _MISS)
        if cached is not _MISS:
            self._parents.move_to_end(pid)
            return cached  # type: ignore[return-value]
        hit = self.org.store.fetch(None, [pid]).get(pid)
        got = self._parents[pid] = None if hit is None else {"__type": hit[0], **hit[1]}
        if len(self._parents) > PARENT_CACHE:
            self._parents.popitem(last=False)
        return got

    def get(self, rec: dict, path: str) -> tuple[Any, str]:
        parts = path.split(".")
        obj = self.obj
        if len(parts) > 1 and parts[0].lower() == obj.name.lower():
            parts = parts[1:]
        cur: dict | None = rec
        for rel in parts[:-1]:
            f = obj.rel_field(rel)
            cur = self.parent(cur.get(f["name"])) if cur else None
            if cur is None:
                return None, "string"
            obj = self.org.schema.get(cur["__type"]) if "__type" in cur else obj
        f = obj.field(parts[-1])
        if f is None:
            return None, "string"
        return (cur.get(f["name"]) if cur else None), f["type"]

    # -- candidates ---------------------------------------------------------------------------
    def candidates(self) -> Iterable[dict]:
        """The records the WHERE clause is evaluated on: those the index names, or the whole table.

        A whole-table scan holds the org lock only while the store pins its snapshot (see
        :meth:`Store.scan`) and reads the rows after releasing it, so a query job over millions of
        rows no longer holds up every other request (a job-status GET waited 25 s at xl); the rows
        are those of the table at that moment, in the same order as before.
        """
        ids_ = self._pushdown(self.q.where)
        with self.org.lock:
            rows = self.org.store.scan(self.obj.name, include_deleted=self.include_deleted, ids=ids_)
            if ids_ is not None:
                return list(rows)
        return rows

    def _pushdown(self, c: Cond | None) -> list[str] | None:
        if c is None:
            return None
        conds = c.parts if c.kind == "and" else [c]
        for part in conds:
            if part.kind not in ("cmp", "in") or (part.kind == "cmp" and part.op != "="):
                continue
            if "." in part.path:
                through = self._pushdown_parent(part)
                if through is not None:
                    return through
                continue
            f = self.obj.field(part.path)
            if f is None:
                continue
            values = part.value if part.kind == "in" else [part.value]
            if any(not isinstance(v, str) for v in values):
                continue
            if f["type"] == "id":
                return [ids.normalize(v) for v in values if ids.well_formed(v)]
            if self.org._is_key(f):
                keyed = [ids.normalize(v) if f["type"] == "reference" and ids.well_formed(v)
                         else self.org.key_value(f, v) for v in values]
                with self.org.lock:
                    found = self.org.store.lookup_keys(self.obj.name, f["name"], keyed) if not self.include_deleted \
                        else self._keys_incl_deleted(f["name"], keyed)
                return [i for v in found.values() for i in v]
        return None

    def _pushdown_parent(self, part: Cond) -> list[str] | None:
        """Candidates of ``Parent.Field = v`` / ``IN (...)`` (one hop, a single-target indexed lookup, an
        Id or key field on the parent) through the key index, as a real org's optimizer uses the parent's
        index: parents with the values (deleted ones too: a superset, filtered exactly afterwards),
        then the records whose lookup names one of them.  Anything else: None (a scan)."""
        parts = part.path.split(".")
        if parts[0].lower() == self.obj.name.lower():
            parts = parts[1:]
        if len(parts) != 2:
            return None
        rf = self.obj.rel_field(parts[0])
        if rf is None or len(rf["referenceTo"]) != 1 or not self.org._is_key(rf):
            return None
        parent = self.org.schema.get(rf["referenceTo"][0])
        pf = parent.field(parts[1]) if parent is not None else None
        values = part.value if part.kind == "in" else [part.value]
        if pf is None or any(not isinstance(v, str) for v in values):
            return None
        if pf["type"] == "id":
            parent_ids = [ids.normalize(v) for v in values if ids.well_formed(v)]
        elif pf["type"] != "reference" and self.org._is_key(pf):
            with self.org.lock:
                found = self.org.store.keys_any(parent.name, pf["name"], [self.org.key_value(pf, v) for v in values])
            parent_ids = [i for v in found.values() for i in v]
        else:
            return None
        with self.org.lock:
            found = self.org.store.lookup_keys(self.obj.name, rf["name"], parent_ids) if not self.include_deleted \
                else self._keys_incl_deleted(rf["name"], parent_ids)
        return [i for v in found.values() for i in v]

    def _keys_incl_deleted(self, field: str, values: list[str]) -> dict[str, list[str]]:
        return self.org.store.keys_any(self.obj.name, field, values)

    # -- run ----------------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        q = self.q
        recs = self.candidates()
        if q.where is not None:
            recs = [r for r in recs if evaluate(q.where, lambda p, r=r: self.get(r, p))]
        else:
            recs = list(recs)
        if q.order:
            recs.sort(key=cmp_to_key(self._cmp))
        if q.offset:
            recs = recs[q.offset:]
        if q.limit is not None:
            recs = recs[: q.limit]
        return recs

    def _cmp(self, a: dict, b: dict) -> int:
        for path, desc, nulls_first in self.q.order:
            va, vb = self.get(a, path)[0], self.get(b, path)[0]
            if va == vb:
                continue
            nf = (not desc) if nulls_first is None else nulls_first
            if va is None:
                return -1 if nf else 1
            if vb is None:
                return 1 if nf else -1
            va, vb = (va.lower(), vb.lower()) if isinstance(va, str) and isinstance(vb, str) else (va, vb)
            if va == vb:
                continue
            r = -1 if va < vb else 1
            return -r if desc else r
        return 0

    def render(self, rec: dict) -> dict:
        out: dict[str, Any] = {"attributes": self._attrs(self.obj.name, rec["Id"])}
        for path in self.q.fields:
            self._render_path(out, rec, self.obj, path.split("."))
        return out

    def _attrs(self, sobject: str, rid: str) -> dict:
        return {"type": sobject, "url": f"/services/data/{API}/sobjects/{sobject}/{rid}"}

    def _render_path(self, out: dict, rec: dict, obj: SObject, parts: list[str]) -> None:
        if len(parts) > 1 and parts[0].lower() == obj.name.lower() and obj is self.obj:
            parts = parts[1:]
        if len(parts) == 1:
            f = obj.field(parts[0])
            if f is None:
                return
            v = rec.get(f["name"])
            if f["type"] == "base64":
                v = f"/services/data/{API}/sobjects/{obj.name}/{rec['Id']}/{f['name']}"
            elif f["type"] == "address":
                v = compound_address(obj, f, rec)
            out[f["name"]] = v
            return
        f = obj.rel_field(parts[0])
        rel = f["relationshipName"]
        parent = self.parent(rec.get(f["name"]))
        if parent is None:
            out.setdefault(rel, None)
            return
        pobj = self.org.schema.get(parent["__type"])
        node = out.get(rel) or {"attributes": self._attrs(pobj.name, parent["Id"])}
        out[rel] = node
        self._render_path(node, parent, pobj, parts[1:])

    def count_value(self) -> int:
        q = self.q
        if q.count:
            return sum(1 for r in self.rows() if self.get(r, q.count)[0] is not None)
        return len(self.rows())


def run_tooling(rows: list[dict], soql: str, sobject_check: str) -> list[dict]:
    """Evaluate a tooling query over in-memory rows (CustomField, CustomObject)."""
    q = parse(soql)
    if q.sobject.lower() != sobject_check.lower():
        raise SoqlError("INVALID_TYPE", f"sObject type '{q.sobject}' is not supported.")

    def get(r: dict, p: str) -> tuple[Any, str]:
        key = next((k for k in r if k.lower() == p.lower()), None)
        return (r.get(key) if key else None), "string"

    out = [r for r in rows if q.where is None or evaluate(q.where, lambda p, r=r: get(r, p))]
    if q.limit is not None:
        out = out[: q.limit]
    rendered = []
    for r in out:
        item: dict[str, Any] = {"attributes": {"type": q.sobject, "url": f"/services/data/{API}/tooling/sobjects/{q.sobject}/{r['Id']}"}}
        for f in q.fields:
            item[f] = get(r, f)[0]
        rendered.append(item)
    return rendered
