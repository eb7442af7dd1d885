"""Clio's ``fields`` contract: which fields each endpoint serves and how a selection projects.

The allow-lists are built from the extractor's catalog (every catalog field is served) plus a
few extra fields per endpoint.  A selection is parsed once into a *plan* (cached) and applied to
stored records, which hold every field with nested associations already expanded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from clio2sf.catalog import CLIO_OBJECTS

#: Endpoint path (under /api/v4, no .json) -> storage kind.
ENDPOINT_KIND: dict[str, str] = {o.endpoint: o.endpoint for o in CLIO_OBJECTS} | {
    "folders": "folders",
    "calendars": "calendars",
    "billing_automations": "billing_automations",
    "trust_rules": "trust_rules",
}

#: Extra fields served beyond the catalog: endpoint -> (top-level fields, {assoc: subfields}).
_EXTRA: dict[str, tuple[str, dict[str, str]]] = {
    "users": ("initials,time_zone,account_owner,phone_number", {"account": "id,name,state"}),
    "contacts": ("initials,is_co_counsel,clio_connect_email", {}),
    "matters": ("client_id,shared,has_tasks,last_activity_date,matter_stage_updated_at,custom_number", {}),
    "notes": ("time_entries_count", {}),
    "communications": ("time_entries_count", {}),
    "documents": ("locked", {}),
    "tasks": ("notify_completion,statute_of_limitations,time_estimated", {}),
    "calendar_entries": ("court_rule,permission,calendar_owner_id", {}),
    "bank_accounts": ("holder,account_number,transit_number,swift,general_ledger_number", {}),
    "folders": (
        "id,etag,type,name,root,locked,deleted_at,created_at,updated_at",
        {"parent": "id,name,type", "matter": "id,display_number", "contact": "id,name"},
    ),
    "document_versions": (
        "id,etag,uuid,document_id,version_number,filename,size,content_type,received_at,fully_uploaded,"
        "created_at,updated_at",
        {},
    ),
    "settings/billing": (
        "id,etag,rounded_duration,rounding,use_decimal_rounding,currency,currency_sign,tax_rate,tax_name,"
        "apply_tax_by_default,time_on_flat_rate_contingency_matters_is_non_billable,use_secondary_tax,"
        "secondary_tax_rate,secondary_tax_rule,secondary_tax_name,notify_after_bill_created,use_utbms_codes,"
        "created_at,updated_at",
        {},
    ),
    "calendars": ("id,etag,name,type,permission,color,visible,source,created_at,updated_at", {}),
    "billing_automations": (
        "id,etag,name,enabled,frequency,day_of_month,bill_theme,include_expenses,created_at,updated_at",
        {"matter": "id,display_number", "client": "id,name"},
    ),
    "trust_rules": (
        "id,etag,name,minimum_balance,replenish_to,notify,enabled,created_at,updated_at",
        {"matter": "id,display_number", "client": "id,name", "bank_account": "id,name"},
    ),
}

#: Subfields every nested association accepts.
_ALWAYS_SUB = {"id", "etag"}


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
    return [p.strip() for p in out if p.strip()]


@dataclass(frozen=True)
class FieldSpec:
    """Allowed fields of one endpoint: plain names, and associations with their subfields."""

    plain: frozenset[str]
    nested: dict[str, frozenset[str]]

    @property
    def all_names(self) -> frozenset[str]:
        return self.plain | frozenset(self.nested)


def _merge(spec: dict[str, set[str] | None], fields: str) -> None:
    for part in split_top(fields):
        if "{" in part:
            name, sub = part.split("{", 1)
            subs = {s.strip() for s in sub.rstrip("}").split(",") if s.strip()}
            cur = spec.get(name)
            spec[name] = (cur or set()) | subs | _ALWAYS_SUB
        else:
            spec.setdefault(part, None)


def _build() -> dict[str, FieldSpec]:
    raw: dict[str, dict[str, set[str] | None]] = {}
    for obj in CLIO_OBJECTS:
        _merge(raw.setdefault(obj.endpoint, {}), obj.fields)
    for endpoint, (plain, nested) in _EXTRA.items():
        spec = raw.setdefault(endpoint, {})
        _merge(spec, plain)
        for name, subs in nested.items():
            _merge(spec, f"{name}{{{subs}}}")
    out: dict[str, FieldSpec] = {}
    for endpoint, spec in raw.items():
        plain = frozenset(k for k, v in spec.items() if v is None)
        nested = {k: frozenset(v) for k, v in spec.items() if v is not None}
        out[endpoint] = FieldSpec(plain, nested)
    # Notes serve both the matter and the contact association whatever the type.
    return out


FIELD_SPECS: dict[str, FieldSpec] = _build()


class FieldError(ValueError):
    """A selection names an unknown field or nests too deep (Clio answers 400)."""


#: A plan: tuple of (name, None) for plain fields, (name, ()) for a bare association
#: (its default fields), (name, (sub, ...)) for a braced selection.
Plan = tuple[tuple[str, tuple[str, ...] | None], ...]


@lru_cache(maxsize=512)
def compile_plan(endpoint: str, fields: str | None) -> Plan:
    """Parse and validate ``fields`` for ``endpoint``; raise FieldError naming the bad field."""
    spec = FIELD_SPECS[endpoint]
    if not fields:
        return (("id", None), ("etag", None))
    plan: list[tuple[str, tuple[str, ...] | None]] = []
    for part in split_top(fields):
        if part.count("{") != part.count("}"):
            raise FieldError(f"Malformed fields parameter near {part!r}")
        if "{" in part:
            name, sub = part.split("{", 1)
            sub = sub[:-1] if sub.endswith("}") else sub
            if "{" in sub:
                raise FieldError(f"Nested fields deeper than one level are not supported: {part!r}")
            if name not in spec.nested:
                raise FieldError(f"Invalid field: {name!r} is not a nested field of {endpoint}")
            subs = tuple(s.strip() for s in sub.split(",") if s.strip())
            bad = [s for s in subs if s not in spec.nested[name]]
            if bad:
                raise FieldError(f"Invalid field: {name}{{{bad[0]}}} on {endpoint}")
            plan.append((name, subs))
        elif part in spec.nested:
            plan.append((part, ()))
        elif part in spec.plain:
            plan.append((part, None))
        else:
            raise FieldError(f"Invalid field: {part!r} is not a field of {endpoint}")
    return tuple(plan)


def _sub(value: dict, subs: tuple[str, ...]) -> dict:
    if not subs:
        return {k: value[k] for k in ("id", "etag") if k in value}
    return {s: value.get(s) for s in subs}


def project(record: dict, plan: Plan) -> dict:
    """Apply a compiled plan to a stored record (missing fields come back as null)."""
    out: dict = {}
    get = record.get
    for name, subs in plan:
        value = get(name)
        if subs is None or value is None:
            out[name] = value
        elif isinstance(value, list):
            out[name] = [_sub(v, subs) for v in value]
        else:
            out[name] = _sub(value, subs)
    return out
