"""Compile the spec's field entries into fast per-record functions."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clio2sf.mapping.spec import MappingSpec, SpecError, ValueMap
from clio2sf.mapping.values import (
    BadValue,
    compile_path,
    is_date_text,
    is_email,
    path_key,
    primary_item,
    to_bool,
    to_date,
    to_datetime,
    to_number,
    to_text,
)

_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z0-9_.\[\]]+)\}")


class RecordRejected(Exception):
    """The whole record is quarantined (no row is emitted for it)."""

    def __init__(self, field: str | None, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule


@dataclass
class Issues:
    """Per-record collector of repairs and field-level rejects (the record still loads)."""

    sid: str
    items: list[tuple[str | None, str, str, str | None]]

    def add(self, field: str | None, rule: str, message: str, repair: str | None) -> None:
        self.items.append((field, rule, message, repair))


Getter = Callable[[Mapping[str, Any]], Any]
FieldFn = Callable[[Mapping[str, Any], dict[str, Any], Issues, list], None]


def _getter(spec_from: str | list[str]) -> Getter:
    if isinstance(spec_from, str):
        return compile_path(spec_from)
    getters = [compile_path(p) for p in spec_from]

    def first(d: Mapping[str, Any]) -> Any:
        for g in getters:
            v = g(d)
            if v is not None and v != "":
                return v
        return None

    return first


def _template(text: str) -> Getter:
    parts = [(m.group(0), compile_path(m.group(1))) for m in _TEMPLATE_FIELD.finditer(text)]

    def render(d: Mapping[str, Any]) -> Any:
        out = text
        any_value = False
        for token, g in parts:
            v = g(d)
            if v is not None and v != "":
                any_value = True
            out = out.replace(token, "" if v is None else to_text(v))
        out = " ".join(out.split())
        return out if any_value and out else None

    return render


def apply_value_map(vm: ValueMap, value: Any, field: str, issues: Issues) -> Any:
    """Map a Clio value through ``vm``; unknown values follow ``vm.on_unknown``."""
    key = to_text(value)
    mapped = vm.values.get(key)
    if mapped is not None:
        return mapped
    if vm.on_unknown == "keep":
        return key
    if vm.on_unknown == "default" and vm.default is not None:
        issues.add(field, "unknown_value", f"{issues.sid}: {field} value {key!r} is not in value map {vm.name}",
                   f"mapped to default {vm.default!r}")
        return vm.default
    if vm.on_unknown == "reject":
        raise RecordRejected(field, "unknown_value", f"{issues.sid}: {field} value {key!r} is not in value map {vm.name}")
    issues.add(field, "unknown_value", f"{issues.sid}: {field} value {key!r} is not in value map {vm.name}",
               "field left empty")
    return None


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


#: The conversion of each ``as`` kind but ``email`` (checked in place, it may keep the value elsewhere).
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "text": to_text, "date": to_date, "datetime": to_datetime, "number": to_number, "bool": to_bool, "json": _json_text,
}


def compile_field(target: str, fspec: Mapping[str, Any], spec: MappingSpec, placeholder: str | None = None,
                  plain: bool = True) -> FieldFn:
    """Build ``fn(data, row, issues, overflows)`` that sets ``row[target]`` from a Clio record.

    ``plain``: a field neither required, nor a reference, nor value-mapped, nor an email gets a function of
    fewer steps (:func:`_plain_field`), the same result; False: the general one (tests compare the two)."""
    if "owner" in fspec:
        raise SpecError(f"{target}: owner fields are compiled by the transform, not compile_field")
    if "const" in fspec:
        const = fspec["const"]

        def set_const(d, row, issues, overflows):
            row[target] = const

        return set_const
    get = _template(fspec["template"]) if "template" in fspec else _getter(fspec["from"])
    kind = fspec.get("as", "text")
    vm = spec.value_map(fspec["map"]) if fspec.get("map") else None
    max_len = fspec.get("max")
    overflow = fspec.get("overflow")
    required = bool(fspec.get("required"))
    placeholder = fspec.get("placeholder", placeholder)
    invalid_to = fspec.get("invalid_to")
    ref = fspec.get("ref")

    # The conversion is chosen here, once, not per value (``as`` kinds without one pass the value on).
    email = kind == "email"
    convert = None if email else _CONVERT.get(kind)
    if plain and convert is not None and not required and ref is None and vm is None:  # most fields
        key = path_key(fspec["from"]) if "template" not in fspec and isinstance(fspec["from"], str) else None
        return _plain_field(target, get, key, convert, max_len, overflow)

    def fn(d: Mapping[str, Any], row: dict[str, Any], issues: Issues, overflows: list) -> None:
        value = get(d)
        if value is None or value == "":
            if required:
                if placeholder is None:
                    raise RecordRejected(target, "required_missing", f"{issues.sid}: {target} is required and empty")
                issues.add(target, "required_missing", f"{issues.sid}: {target} is required and empty",
                           f"placeholder {placeholder!r} used")
                row[target] = placeholder
            return
        if ref is not None:
            row[target] = f"{ref}-{value}"
            return
        if convert is not None:
            try:
                value = convert(value)
            except BadValue as exc:
                if required:
                    raise RecordRejected(target, exc.rule, f"{issues.sid}: {target}: {exc}") from None
                issues.add(target, exc.rule, f"{issues.sid}: {target}: {exc}", "value dropped, field left empty")
                return
        elif email:
            value = to_text(value).strip()
            if not is_email(value):
                if invalid_to:
                    row[invalid_to] = value
                    issues.add(target, "invalid_email", f"{issues.sid}: {target} {value!r} is not a valid address",
                               f"email dropped, kept in {invalid_to}")
                else:
                    issues.add(target, "invalid_email", f"{issues.sid}: {target} {value!r} is not a valid address",
                               "email dropped")
                return
        if vm is not None:
            value = apply_value_map(vm, value, target, issues)
            if value is None:
                return
        if max_len is not None and isinstance(value, str) and len(value) > max_len:
            value = _truncated(target, value, max_len, overflow, issues, overflows)
        row[target] = value

    return fn


def _truncated(target: str, value: str, max_len: int, overflow: str | None, issues: Issues, overflows: list) -> str:
    """``value`` cut to ``max_len``, reported (and kept whole in ``overflow`` when the spec names one)."""
    if overflow:
        overflows.append((overflow, value))
        issues.add(target, "too_long", f"{issues.sid}: {target} has {len(value)} characters (max {max_len})",
                   f"truncated to {max_len}, full value kept in {overflow}")
    else:
        issues.add(target, "too_long", f"{issues.sid}: {target} has {len(value)} characters (max {max_len})",
                   f"truncated to {max_len}")
    return value[:max_len]


def _plain_field(target: str, get: Getter, key: str | None, convert: Callable[[Any], Any], max_len: int | None,
                 overflow: str | None) -> FieldFn:
    """``compile_field``'s function of a field neither required, nor a reference, nor value-mapped, with a
    conversion (not ``email``): what the general one does for it (``key``: a path of one key, read in place)."""

    def too_long(value: str, issues: Issues, overflows: list) -> str:
        return _truncated(target, value, max_len, overflow, issues, overflows)  # type: ignore[arg-type]

    if convert is to_text:  # a text needs no try: to_text raises no BadValue
        limit = max_len if max_len is not None else sys.maxsize

        def text(d, row, issues, overflows):
            value = d.get(key) if key is not None else get(d)
            if value is None or value == "":
                return
            if type(value) is not str:
                value = to_text(value)
            if len(value) > limit:
                value = too_long(value, issues, overflows)
            row[target] = value

        return text

    def converted(d, row, issues, overflows):
        value = d.get(key) if key is not None else get(d)
        if value is None or value == "":
            return
        try:
            value = convert(value)
        except BadValue as exc:
            issues.add(target, exc.rule, f"{issues.sid}: {target}: {exc}", "value dropped, field left empty")
            return
        if max_len is not None and isinstance(value, str) and len(value) > max_len:
            value = too_long(value, issues, overflows)
        row[target] = value

    return converted


#: Code objects of :func:`compile_fields`' sources, by source text (at most :data:`_CODE_CACHE_MAX`).
_CODE_CACHE: dict[str, Any] = {}
_CODE_CACHE_MAX = 256


def _compiled_source(src: str) -> Any:
    """``compile(src)``, once per source text: a transform compiles each object's fields once per raw batch
    (the large firm's plan: 90 compiles of 33 sources, ~0.6 ms each, in 2 tasks). A code object is immutable;
    each :func:`compile_fields` call runs it in its own namespace, so what it defines is its own."""
    code = _CODE_CACHE.get(src)
    if code is None:
        if len(_CODE_CACHE) >= _CODE_CACHE_MAX:
            _CODE_CACHE.clear()
        code = _CODE_CACHE[src] = compile(src, "<clio2sf.mapping.fields.compile_fields>", "exec")
    return code


def compile_fields(entries: list[tuple[str, Mapping[str, Any], str | None]], spec: MappingSpec) -> FieldFn:
    """One function ``fn(data, row, issues, overflows)`` doing what the :func:`compile_field` functions of
    ``entries`` (``(target, field spec, placeholder)``, owner fields excepted) do called in turn: the same
    row (keys in the same order), issues and overflows.

    Fewer Python calls a record: a field read by a path of one or two keys has its value read in the
    function itself, an empty value skipped (a required one is left to its own function: placeholder or
    reject), and a value whose result is the value itself set in place: a text of ``str`` within its
    ``max``, a number that is an ``int`` or a finite ``float``, a ``bool`` for ``as: bool``, a ``YYYY-MM-DD`` text
    of a date in Salesforce's range for ``as: date`` (:func:`~clio2sf.mapping.values.is_date_text`), a value-mapped
    ``str`` the map holds, a reference.  Anything else (a conversion, a value too long, another type, a
    template, a list of paths, an email) is the field's own :func:`compile_field` function's, which reads
    the value again."""
    ns: dict[str, Any] = {"primary_item": primary_item}
    body: list[str] = []
    items: dict[str, str] = {}  # list key of a "[primary]" path -> the variable holding its primary item
    for i, (target, fspec, placeholder) in enumerate(entries):
        ns[f"f{i}"] = compile_field(target, fspec, spec, placeholder)
        call = f"f{i}(d, row, issues, overflows)"
        t = repr(target)
        if "const" in fspec:
            ns[f"c{i}"] = fspec["const"]
            body.append(f"row[{t}] = c{i}")
            continue
        steps = primary = None
        if "template" not in fspec and isinstance(fspec["from"], str):
            parts = fspec["from"].split(".")
            if len(parts) <= 2 and all(path_key(p) == p for p in parts):
                steps = parts
            elif len(parts) == 2 and parts[0].endswith("[primary]") and path_key(parts[0][:-9]) == parts[0][:-9] \
                    and path_key(parts[1]) == parts[1]:
                primary = parts[0][:-9]
        if primary is not None:  # "items[primary].key": the list's primary item worked out once a record
            if primary not in items:
                items[primary] = f"p{len(items)}"
                body.append(f"{items[primary]} = primary_item(d.get({primary!r}))")
            x = items[primary]
            body.append(f"v = {x}.get({parts[1]!r}) if type({x}) is dict else None if {x} is None else g{i}(d)")
            ns[f"g{i}"] = compile_path(fspec["from"])
        elif steps is None:
            body.append(call)
            continue
        elif len(steps) == 1:
            body.append(f"v = d.get({steps[0]!r})")
        else:  # compile_path's two-key getter: a dict's value, None, or the getter itself (another Mapping...)
            ns[f"g{i}"] = compile_path(fspec["from"])
            body.append(f"x = d.get({steps[0]!r})")
            body.append(f"v = x.get({steps[1]!r}) if type(x) is dict else None if x is None else g{i}(d)")
        kind = fspec.get("as", "text")
        limit = fspec.get("max")
        ns[f"L{i}"] = limit if limit is not None else sys.maxsize
        fast = None  # (condition, value set) when the value is the result
        if fspec.get("ref") is not None:
            ns[f"r{i}"] = fspec["ref"]
            fast = ("True", f'f"{{r{i}}}-{{v}}"')
        elif fspec.get("map"):
            if kind == "text":
                ns[f"m{i}"] = spec.value_map(fspec["map"]).values
                fast = (f"type(v) is str and type(m := m{i}.get(v)) is str and len(m) <= L{i}", "m")
        elif kind == "text":
            fast = (f"type(v) is str and len(v) <= L{i}", "v")
        elif kind == "number":
            fast = ("type(v) is int or type(v) is float and v - v == 0.0", "v")  # finite: inf - inf, NaN - NaN are NaN
        elif kind == "bool":
            fast = ("type(v) is bool", "v")
        elif kind == "date":  # a YYYY-MM-DD text is its own to_date
            ns["is_date_text"] = is_date_text
            fast = (f"type(v) is str and len(v) <= L{i} and is_date_text(v)", "v")
        body.append("if v is None or v == '':")
        body.append(f"    {call}" if fspec.get("required") else "    pass")
        if fast is not None:
            body.append(f"elif {fast[0]}:")
            body.append(f"    row[{t}] = {fast[1]}")
        body.append("else:")
        body.append(f"    {call}")
    src = "def map_fields(d, row, issues, overflows):\n" + "".join(f"    {line}\n" for line in body or ["pass"])
    exec(_compiled_source(src), ns)  # noqa: S102 - code of the spec's own fields
    out = ns["map_fields"]
    out.source = src  # for a reader (and tests)
    return out


def apply_overflows(row: dict[str, Any], overflows: list[tuple[str, str]]) -> None:
    """Keep untruncated values in their long-text fields (prepended when the field has a value)."""
    for field, full in overflows:
        existing = row.get(field)
        row[field] = full if not existing or existing == full else f"{full}\n\n{existing}"
