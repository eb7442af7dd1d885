"""Clio's ``fields`` contract, from the official spec: what a selection may name and how it projects.

* Without ``fields`` a record is ``{id, etag}``.
* Any property of the record schema may be named.  A nested object (or array of them) may be
  named bare, or with one level of braces naming properties of the nested schema
  (``matter{id,display_number}``).  Inside the braces a property that is itself an object is
  allowed bare; braces inside braces, unknown names and unbalanced braces get 400 ``ArgumentError``.
* A bare nested name returns the default fields of a *record* (a schema Clio lists or a
  polymorphic reference: ``id`` and ``etag``), and the whole of an embedded *value object*
  (a matter's custom rate and its rates, a bill's interest, a picklist option: every property,
  as the spec's examples show them).
* A field the record has no value for comes back as ``null``.

Nested objects that are records of their own (a matter, a user, a bill ...) are resolved through
``Resolver`` when the response is built, so their fields and etags are those of the live record.
Owned nested objects (addresses, custom field values, rates ...) come from the stored record;
one without an etag gets one computed from its content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import lru_cache

from sandbox.clio.schema import FieldDef, base_of, model


class FieldError(ValueError):
    """A selection names an unknown field or nests too deep (Clio answers 400)."""


#: A plan: tuple of (name, sub) with sub None for a plain field, or a tuple of (name, sub) pairs
#: for a nested object (a bare nested name inside braces has sub ``DEFAULT``).
Plan = tuple[tuple[str, object], ...]
DEFAULT = ("id", "etag")
ID_ETAG: Plan = (("id", None), ("etag", None))

#: Nested schemas whose records are served under another list path.
SCHEMA_KIND = {"LinkedFolder": "folders", "Activity_CalendarEntry": "calendar_entries", "Activity_Task": "tasks",
               "Activity_TextMessageConversation": "conversations", "Client": "contacts"}
#: Polymorphic nested schemas: the object's own ``type`` names the record kind.
POLYMORPHIC = frozenset({"Participant", "UnredactedParticipant", "Attendee", "PolymorphicObject", "ClioCreator",
                         "NotificationEventSubscriber"})
TYPE_KIND = {"User": "users", "ManageUser": "users", "Contact": "contacts", "Person": "contacts",
             "Company": "contacts", "Calendar": "calendars", "Matter": "matters", "Task": "tasks",
             "CalendarEntry": "calendar_entries", "MatterNote": "notes", "ContactNote": "notes",
             "CreditMemo": "credit_memos", "Document": "documents", "Folder": "folders"}


def split_top(fields: str) -> list[str]:
    """Split a selection on top-level commas, keeping ``a{b,c}`` together."""
    out: list[str] = []
    depth, cur = 0, []
    for ch in fields:
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        cur.append(ch)
    if cur:
        out.append("".join(cur))
    return [p.strip() for p in out]


def is_record(schema: str) -> bool:
    """A schema whose objects are records of their own (listed by Clio, or polymorphic references)."""
    base = base_of(schema)
    return base in model().list_of or base in SCHEMA_KIND or base in POLYMORPHIC


def default_fields(schema: str) -> tuple[str, ...]:
    """What a bare nested name returns: a record's ``id`` and ``etag``, a value object's every property."""
    props = model().fields(schema)
    names = tuple(n for n in DEFAULT if n in props) if is_record(schema) else ()
    return names or tuple(props)


def _bare(schema: str, depth: int) -> Plan:
    names = default_fields(schema)
    return _sub_plan(schema, names, depth)


def _sub_plan(schema: str, names: tuple[str, ...], depth: int = 1) -> Plan:
    props = model().fields(schema)
    return tuple((n, (_bare(props[n].target, depth + 1) if depth < 3 else ()) if props[n].nested else None)
                 for n in names)


@lru_cache(maxsize=2048)
def compile_plan(schema: str, fields: str | None) -> Plan:
    """Parse and validate ``fields`` for records of ``schema``; raise FieldError naming the bad field."""
    props = model().fields(schema)
    if not fields:
        return tuple((n, None) for n in DEFAULT if n in props) or ID_ETAG
    if fields.count("{") != fields.count("}"):
        raise FieldError(f"Malformed fields parameter: unbalanced braces in {fields!r}")
    plan: list[tuple[str, object]] = []
    seen: set[str] = set()
    for part in split_top(fields):
        if not part:
            raise FieldError(f"Malformed fields parameter: empty field name in {fields!r}")
        name, brace, sub = part.partition("{")
        name = name.strip()
        fdef = props.get(name)
        if fdef is None:
            raise FieldError(f"Invalid field: {name!r} is not a field of {schema}")
        if brace:
            if not sub.endswith("}") or "{" in sub[:-1] or "}" in sub[:-1]:
                raise FieldError(f"Nested fields deeper than one level are not supported: {part!r}")
            if not fdef.nested:
                raise FieldError(f"Invalid field: {name!r} of {schema} is not a nested object")
            sub_props = model().fields(fdef.target)
            names = tuple(s.strip() for s in sub[:-1].split(","))
            for s in names:
                if s not in sub_props:
                    raise FieldError(f"Invalid field: {name}{{{s}}} is not a field of {base_of(fdef.target)}")
            entry: object = _sub_plan(fdef.target, tuple(dict.fromkeys(names)))
        elif fdef.nested:
            entry = _bare(fdef.target, 1)
        else:
            entry = None
        if name not in seen:
            seen.add(name)
            plan.append((name, entry))
    return tuple(plan)


def content_etag(value: dict) -> str:
    body = json.dumps({k: v for k, v in value.items() if k != "etag" and not k.startswith("_")},
                      sort_keys=True, default=str)
    return '"' + hashlib.md5(body.encode(), usedforsecurity=False).hexdigest() + '"'


class Resolver:
    """Looks up the live record behind a nested reference (cached for one response)."""

    def __init__(self, get: Callable[[str, int], dict | None]) -> None:
        self._get = get
        self._cache: dict[tuple[str, int], dict | None] = {}

    def record(self, kind: str, rid: object) -> dict | None:
        try:
            key = (kind, int(rid))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if key not in self._cache:
            self._cache[key] = self._get(*key)
        return self._cache[key]

    def source(self, schema: str, value: dict) -> dict:
        """The dict a nested object is projected from."""
        base = base_of(schema)
        if base in POLYMORPHIC:
            kind = TYPE_KIND.get(str(value.get("type")))
            live = self.record(kind, value.get("id")) if kind else None
            if live is None:
                return value
            merged = {**live, **{k: v for k, v in value.items() if v is not None}}
            merged["etag"] = live.get("etag")
            return merged
        kind = SCHEMA_KIND.get(base) or model().list_of.get(base)
        live = self.record(kind, value.get("id")) if kind and "id" in value else None
        return value if live is None else {**value, **live}


def _project_obj(value: dict, plan: Plan, schema: str, resolver: Resolver | None) -> dict:
    src = resolver.source(schema, value) if resolver is not None else value
    props = model().fields(schema)
    out: dict = {}
    for name, sub in plan:
        v = src.get(name)
        if sub is not None and v is not None:
            v = _project_value(v, sub, props[name], resolver)  # type: ignore[arg-type]
        elif name == "etag" and v is None and src:
            v = content_etag(src)
        out[name] = v
    return out


def _project_value(value: object, plan: Plan, fdef: FieldDef, resolver: Resolver | None) -> object:
    if isinstance(value, list):
        return [_project_obj(v, plan, fdef.target, resolver) for v in value if isinstance(v, dict)]
    if isinstance(value, dict):
        return _project_obj(value, plan, fdef.target, resolver)
    return None


def project(record: dict, plan: Plan, schema: str, resolver: Resolver | None = None) -> dict:
    """Apply a compiled plan to a stored record (missing fields come back as null)."""
    props = model().fields(schema)
    out: dict = {}
    get = record.get
    for name, sub in plan:
        value = get(name)
        if sub is not None and value is not None:
            value = _project_value(value, sub, props[name], resolver)  # type: ignore[arg-type]
        out[name] = value
    return out
