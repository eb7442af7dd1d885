"""What the official spec declares, compiled once: operations, record fields, query parameters.

Every rule the sandbox enforces on reads comes from here: which fields a record has (with their
type, format and enum), which of them are nested objects (and the schema of the nested object),
which query parameters an operation documents (type, enum, required), the ``order`` values, the
``limit`` range and which operations answer 304.  Nothing is taken from the migration's catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from sandbox.clio.spec import load_spec

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class FieldDef:
    """One property of a record schema."""

    name: str
    type: str | None
    format: str | None = None
    enum: tuple[str, ...] | None = None
    target: str | None = None  # schema of a nested object (``Matter_base``, ``Participant``)
    many: bool = False  # an array (of ``target`` objects, or of ``items_type`` values)
    items_type: str | None = None

    @property
    def nested(self) -> bool:
        return self.target is not None


@dataclass(frozen=True)
class ParamDef:
    """One documented query parameter."""

    name: str
    type: str
    format: str | None
    enum: tuple[str, ...] | None
    required: bool
    description: str
    null_allowed: bool
    items_type: str | None = None


@dataclass(frozen=True)
class Operation:
    """One documented GET path."""

    path: str  # without the leading slash and ``.json``: ``matters/{matter_id}/contacts``
    schema: str  # the record schema of ``data`` (an item of the list, or the single record)
    listing: bool
    params: dict[str, ParamDef]
    headers: frozenset[str]
    orders: tuple[str, ...]
    default_order: str
    max_limit: int
    default_limit: int
    not_modified: bool  # 304 is documented
    path_params: tuple[str, ...] = ()
    pattern: re.Pattern = field(default=re.compile(""), compare=False)

    @property
    def is_show(self) -> bool:
        return not self.listing and bool(self.path_params)


def _name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _field(spec: dict, name: str, prop: dict) -> FieldDef:
    if "$ref" in prop:
        return FieldDef(name, "object", target=_name(prop["$ref"]))
    typ = prop.get("type")
    enum = tuple(str(e) for e in prop["enum"]) if prop.get("enum") else None
    if typ == "array":
        items = prop.get("items") or {}
        if "$ref" in items:
            return FieldDef(name, "array", target=_name(items["$ref"]), many=True)
        item_enum = tuple(str(e) for e in items["enum"]) if items.get("enum") else None
        return FieldDef(name, "array", items.get("format"), item_enum, many=True, items_type=items.get("type"))
    return FieldDef(name, typ, prop.get("format"), enum)


def _properties(spec: dict, name: str) -> dict:
    schema = spec["components"]["schemas"][name]
    out: dict = {}
    for part in schema.get("allOf", [schema]):
        if "$ref" in part:
            out.update(_properties(spec, _name(part["$ref"])))
        else:
            out.update(part.get("properties", {}))
    return out


_LIMIT = re.compile(r"between 1 and (\d+)\. Default: `(\d+)`")
_DEFAULT = re.compile(r"Default: `([^`]+)`")


def _param(p: dict) -> ParamDef:
    schema = p.get("schema") or {}
    items = schema.get("items") or {}
    desc = p.get("description") or ""
    enum = schema.get("enum") or items.get("enum")
    return ParamDef(
        name=p["name"], type=schema.get("type") or "string", format=schema.get("format"),
        enum=tuple(str(e) for e in enum) if enum else None, required=bool(p.get("required")),
        description=desc, null_allowed="Use the keyword `null`" in desc, items_type=items.get("type"),
    )


def _pattern(path: str) -> re.Pattern:
    out = re.escape(path)
    out = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", out)
    return re.compile(f"^{out}$")


class SpecModel:
    """The compiled spec: ``schemas`` (fields per record schema) and GET ``operations``."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self._schemas: dict[str, dict[str, FieldDef]] = {}
        self.operations: dict[str, Operation] = {}
        self.write_methods: dict[str, frozenset[str]] = {}
        for raw_path, ops in spec["paths"].items():
            path = raw_path.strip("/").removesuffix(".json")
            self.write_methods[path] = frozenset(m.upper() for m in ops if m in ("post", "patch", "delete", "put"))
            get = ops.get("get")
            if get is None:
                continue
            op = self._operation(path, get)
            if op is not None:
                self.operations[path] = op
        #: record schema -> the list path serving it (``Matter`` -> ``matters``)
        self.list_of: dict[str, str] = {}
        for op in sorted(self.operations.values(), key=lambda o: (o.path.count("/"), o.path)):
            if op.listing and not op.path_params:
                self.list_of.setdefault(op.schema, op.path)

    def _operation(self, path: str, get: dict) -> Operation | None:
        content = (get.get("responses", {}).get("200") or {}).get("content")
        if not content:
            return None  # downloads and previews answer 303 / HTML
        ref = _name(next(iter(content.values()))["schema"].get("$ref", ""))
        if not ref:
            return None
        data = _properties(self.spec, ref).get("data")
        if data is None:
            schema, listing = ref, not path.endswith("}")
        elif data.get("type") == "array":
            schema, listing = _name(data["items"]["$ref"]), True
        else:
            schema, listing = _name(data["$ref"]), False
        params: dict[str, ParamDef] = {}
        headers: set[str] = set()
        path_params: list[str] = []
        for p in get.get("parameters", []):
            if p["in"] == "query":
                params[p["name"]] = _param(p)
            elif p["in"] == "header":
                headers.add(p["name"].lower())
            elif p["in"] == "path":
                path_params.append(p["name"])
        orders: tuple[str, ...] = ()
        default_order = "id(asc)"
        if "order" in params:
            orders = params["order"].enum or ()
            m = _DEFAULT.search(params["order"].description)
            if m:
                default_order = m.group(1)
        max_limit = default_limit = 200
        if "limit" in params:
            m = _LIMIT.search(params["limit"].description)
            if m:
                max_limit, default_limit = int(m.group(1)), int(m.group(2))
        return Operation(
            path=path, schema=schema, listing=listing, params=params, headers=frozenset(headers),
            orders=orders, default_order=default_order, max_limit=max_limit, default_limit=default_limit,
            not_modified="304" in get.get("responses", {}), path_params=tuple(path_params), pattern=_pattern(path),
        )

    def fields(self, schema: str) -> dict[str, FieldDef]:
        """The properties of a record schema (``allOf`` followed), as FieldDefs."""
        if schema not in self._schemas:
            self._schemas[schema] = {k: _field(self.spec, k, v) for k, v in _properties(self.spec, schema).items()}
        return self._schemas[schema]

    def match(self, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The GET operation for a request path (no leading slash, ``.json`` removed)."""
        op = self.operations.get(path)
        if op is not None:
            return op, {}
        best = None
        for op in self.operations.values():
            if not op.path_params:
                continue
            m = op.pattern.match(path)
            if m and (best is None or len(op.path_params) < len(best[0].path_params)):
                best = (op, m.groupdict())
        return best


@lru_cache(maxsize=1)
def model() -> SpecModel:
    return SpecModel(load_spec())


def base_of(schema: str) -> str:
    """``Matter_base`` -> ``Matter``; other names unchanged."""
    return schema.removesuffix("_base")
