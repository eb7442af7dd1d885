"""Query parameters of a GET, from the official spec: validated, then turned into record predicates.

Validation follows each parameter's declared type: integers (int64 range; the keyword ``null``
only where the spec's description allows it), booleans (``true``/``false``), enums (exactly as
spelled, except where Clio documents comma lists), dates and timestamps (ISO-8601).  A parameter
the operation does not document gets 400 (``offset`` is Clio's documented offset paging).

Semantics: generic rules cover most parameters (``<assoc>_id`` matches ``<assoc>.id`` or a plain
``<assoc>_id`` field; a boolean or enum parameter named like a field compares with it, case
insensitively); the rest are spelled out in ``SPECIAL`` from the parameter descriptions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sandbox.clio.fields import Resolver
from sandbox.clio.schema import INT64_MAX, Operation, ParamDef, model

#: Parameters the paging layer reads itself.
PAGING = frozenset({"fields", "limit", "page_token", "order", "offset"})
Pred = Callable[[dict, Resolver], bool]


class ParamError(ValueError):
    """A query parameter Clio would refuse (400 ArgumentError); the message names it."""


@dataclass
class Query:
    """What a request's parameters ask for: SQL-able parts and record predicates."""

    ids: list[int] | None = None
    exclude_ids: set[int] = field(default_factory=set)
    updated_since: float | None = None
    created_since: float | None = None
    created_before: float | None = None
    predicates: list[Pred] = field(default_factory=list)
    include_deleted: bool = False
    custom_field_ids: set[int] | None = None  # restricts the custom_field_values returned
    rate_for: dict[str, int] = field(default_factory=dict)
    expanded: bool = False

    def matches(self, rec: dict, resolver: Resolver) -> bool:
        rid = _int_id(rec.get("id"))
        if rid in self.exclude_ids:
            return False
        return all(p(rec, resolver) for p in self.predicates)


# ----------------------------------------------------------------------------- value parsing


def _int_id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_int(name: str, raw: str, null_ok: bool = False) -> int | None:
    if raw == "null":
        if null_ok:
            return None
        raise ParamError(f"Invalid {name}: the keyword null is not valid for this parameter")
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(f"Invalid {name}: {raw!r} is not an integer") from None
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ParamError(f"Invalid {name}: {raw} is out of range")
    return value


def parse_bool(name: str, raw: str) -> bool:
    if raw in ("true", "false"):
        return raw == "true"
    raise ParamError(f"Invalid {name}: {raw!r} is not true or false")


def parse_date(name: str, raw: str) -> str:
    try:
        return date.fromisoformat(raw[:10]).isoformat() if len(raw) == 10 else _dt(raw).date().isoformat()
    except ValueError:
        raise ParamError(f"Invalid {name}: {raw!r} is not an ISO-8601 date") from None


def _dt(raw: str) -> datetime:
    value = datetime.fromisoformat(raw.strip().replace(" ", "+").replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_ts(name: str, raw: str) -> float:
    try:
        return _dt(raw).timestamp()
    except ValueError:
        raise ParamError(f"Invalid {name}: {raw!r} is not an ISO-8601 timestamp") from None


def parse_enum(p: ParamDef, raw: str) -> str:
    if p.enum and raw not in p.enum:
        raise ParamError(f"Invalid {p.name}: {raw!r} is not one of {list(p.enum)}")
    return raw


# ----------------------------------------------------------------------------- record access


def get_path(rec: Mapping, path: str, resolver: Resolver | None = None) -> Any:
    """``a.b`` through nested dicts; ``kind:a.b`` resolves ``a`` as a live record of ``kind``."""
    cur: Any = rec
    for part in path.split("."):
        if isinstance(cur, list):
            return [get_path(x, part, resolver) for x in cur if isinstance(x, Mapping)]
        if not isinstance(cur, Mapping):
            return None
        kind, _, name = part.rpartition(":")
        cur = cur.get(name)
        if kind and resolver is not None:
            if isinstance(cur, Mapping):
                cur = resolver.record(kind, cur.get("id")) or cur
            elif isinstance(cur, list):
                cur = [(resolver.record(kind, x.get("id")) or x) for x in cur if isinstance(x, Mapping)]
    return cur


def _ids_of(value: Any) -> set[int]:
    if isinstance(value, list):
        return {i for v in value for i in _ids_of(v)}
    if isinstance(value, Mapping):
        value = value.get("id")
    rid = _int_id(value)
    return set() if rid is None else {rid}


def _day(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    return value[:10]


def _ts(value: Any) -> float | None:
    try:
        return _dt(value).timestamp() if isinstance(value, str) else None
    except ValueError:
        return None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return " ".join(_text(v) for k, v in value.items() if k not in ("id", "etag") and not k.startswith("_"))
    return "" if value is None else str(value)


# ----------------------------------------------------------------------------- predicate makers


def id_match(path: str) -> Callable[[int | None], Pred]:
    """``path`` (an association, a list of them, or a plain id field) has the given id; None: has none."""

    def make(value: int | None) -> Pred:
        def pred(rec: dict, r: Resolver) -> bool:
            ids = _ids_of(get_path(rec, path, r))
            return not ids if value is None else value in ids
        return pred
    return make


def equals(path: str, fold: bool = True) -> Callable[[Any], Pred]:
    def make(value: Any) -> Pred:
        want = str(value).casefold() if fold else value

        def pred(rec: dict, r: Resolver) -> bool:
            got = get_path(rec, path, r)
            values = got if isinstance(got, list) else [got]
            return any((str(g).casefold() if fold and g is not None else g) == want for g in values)
        return pred
    return make


def flag(test: Callable[[dict, Resolver], bool]) -> Callable[[bool], Pred]:
    """A boolean parameter: true keeps records passing ``test``, false those failing it."""
    return lambda value: (lambda rec, r: bool(test(rec, r)) == value)


def contains(*paths: str) -> Callable[[str], Pred]:
    """Case-insensitive substring search over ``paths`` (Clio's wildcard ``query``)."""

    def make(value: str) -> Pred:
        needle = value.casefold().strip("*%")

        def pred(rec: dict, r: Resolver) -> bool:
            return any(needle in _text(get_path(rec, p, r)).casefold() for p in paths)
        return pred
    return make


def day_cmp(path: str, op: str) -> Callable[[str], Pred]:
    ops = {">=": str.__ge__, "<=": str.__le__, "=": str.__eq__, ">": str.__gt__, "<": str.__lt__}

    def make(value: str) -> Pred:
        def pred(rec: dict, r: Resolver) -> bool:
            got = _day(get_path(rec, path, r))
            return got is not None and ops[op](got, value)
        return pred
    return make


def ts_cmp(path: str, op: str) -> Callable[[float], Pred]:
    def make(value: float) -> Pred:
        def pred(rec: dict, r: Resolver) -> bool:
            got = _ts(get_path(rec, path, r))
            return got is not None and (got >= value if op == ">=" else got <= value if op == "<=" else got == value)
        return pred
    return make


def is_set(path: str) -> Callable[[dict, Resolver], bool]:
    return lambda rec, r: get_path(rec, path, r) not in (None, "", [])


def positive(path: str) -> Callable[[dict, Resolver], bool]:
    return lambda rec, r: (get_path(rec, path, r) or 0) > 0


def never(_rec: dict, _r: Resolver) -> bool:
    return False


def _no_filter(_value: Any) -> Pred | None:
    return None


# ----------------------------------------------------------------------------- explicit semantics

#: (value kind, maker): kind is how the raw value is parsed (int | bool | date | ts | str | enum | csv_enum
#: | list_int | list_enum | ops_date) and maker turns it into a predicate (None: no filtering).
Rule = tuple[str, Callable[[Any], Pred | None]]

_ACCOUNT_TYPE = {"OperatingAccount": "Operating", "TrustAccount": "Trust"}


def _activity_status(value: str) -> Pred:
    tests = {
        "billed": lambda a: bool(a.get("billed")),
        "draft": lambda a: bool(a.get("on_bill")) and not a.get("billed"),
        "unbilled": lambda a: not a.get("on_bill") and not a.get("non_billable"),
        "non_billable": lambda a: bool(a.get("non_billable")),
        "billable": lambda a: not a.get("non_billable"),
        "written_off": lambda a: bool(a.get("_written_off")),
    }
    test = tests[value]
    return lambda rec, r: test(rec)


def _overdue(rec: dict, r: Resolver) -> bool:
    due = rec.get("due_at")
    return rec.get("state") == "awaiting_payment" and (rec.get("balance") or 0) > 0 and \
        isinstance(due, str) and due < date.today().isoformat()


def _bill_status(value: str) -> Pred | None:
    return None if value == "all" else _overdue


def _bill_type(value: str) -> Pred:
    return lambda rec, r: (rec.get("kind") == "trust_kind") == (value == "trust")


def _bank_account_type(value: str) -> Pred:
    return equals("type")(_ACCOUNT_TYPE[value])


def _bank_transaction_type(value: str) -> Pred:
    want = "Trust" if value == "liability" else "Operating"
    return lambda rec, r: (get_path(rec, "bank_accounts:bank_account.type", r) or
                           (r.record("bank_accounts", rec.get("bank_account_id")) or {}).get("type")) == want


def _assignee(value: int | None) -> Pred:
    return id_match("assignee")(value)


def _assignee_type(value: str) -> Pred:
    return lambda rec, r: ((rec.get("assignee") or {}).get("type") or "").casefold() == value


def _initial(value: str) -> Pred:
    def pred(rec: dict, r: Resolver) -> bool:
        name = rec.get("last_name") if rec.get("type") == "Person" else rec.get("name")
        return bool(name) and str(name)[:1].upper() == value
    return pred


def _matter_statuses(values: list[str]) -> Pred:
    wanted = {v.casefold() for v in values}
    return lambda rec, r: str(rec.get("status") or "").casefold() in wanted


def _date_ops(path: str) -> Callable[[list[tuple[str, str]]], Pred]:
    def make(conds: list[tuple[str, str]]) -> Pred:
        preds = [day_cmp(path, op)(value) for op, value in conds]
        return lambda rec, r: all(p(rec, r) for p in preds)
    return make


def _allocation_parent(value: int) -> Pred:
    kinds = {0: "Payment", 1: "CreditMemo"}
    if value not in kinds:
        raise ParamError(f"Invalid parent_type: {value} (0 = Payment, 1 = CreditMemo)")
    return lambda rec, r: (rec.get("parent") or {}).get("type") == kinds[value]


def _allocation_status(value: str) -> Pred:
    return lambda rec, r: (rec.get("voided_at") is None) == (value == "valid")


def _descendant_of(rec: dict, folder: int, r: Resolver) -> bool:
    parent = rec.get("parent")
    for _ in range(64):
        pid = _int_id((parent or {}).get("id"))
        if pid is None:
            return False
        if pid == folder:
            return True
        parent = (r.record("folders", pid) or {}).get("parent")
    return False


def _task_client(value: int | None) -> Pred:
    return id_match("matters:matter.client")(value)


def _subject_type(value: str) -> Pred:
    want = {"calendar_entry": "CalendarEntry", "task": "Task"}[value]
    return lambda rec, r: (rec.get("subject") or {}).get("type") == want


def _communication_contact(value: int) -> Pred:
    def pred(rec: dict, r: Resolver) -> bool:
        return any(p.get("type") in ("Person", "Company", "Contact") and _int_id(p.get("id")) == value
                   for p in (rec.get("senders") or []) + (rec.get("receivers") or []))
    return pred


def _conversation_contact(value: int) -> Pred:
    return lambda rec, r: value in set(rec.get("_contact_ids") or ())


def _billable(path: str) -> Callable[[int | None], Pred]:
    return id_match(path)


SPECIAL: dict[str, dict[str, Rule]] = {
    "activities": {
        "start_date": ("date", day_cmp("date", ">=")), "end_date": ("date", day_cmp("date", "<=")),
        "status": ("enum", _activity_status), "query": ("str", contains("note")),
        "only_unaccounted_for": ("bool", flag(lambda a, r: not a.get("on_bill") and not a.get("non_billable"))),
        "grant_id": ("int", id_match("_grant")),
    },
    "activity_descriptions": {
        "flat_rate": ("bool", flag(lambda a, r: (a.get("rate") or {}).get("type") == "FlatRate")),
        "type": ("enum", lambda v: (lambda rec, r: (rec.get("type") or "clio") == v)),
        "user_id": ("int", lambda v: (lambda rec, r: bool(rec.get("accessible_to_user", True)))),
        "rate_for[matter_id]": ("int", _no_filter), "rate_for[user_id]": ("int", _no_filter),
    },
    "allocations": {"parent_type": ("int", _allocation_parent), "status": ("enum", _allocation_status)},
    "bank_accounts": {
        "type": ("enum", _bank_account_type), "user_id": ("int", id_match("user")),
        "show_empty_accounts": ("bool", flag(lambda a, r: not (a.get("balance") or 0))),
    },
    "bank_transactions": {"type": ("enum", _bank_transaction_type)},
    "bills": {
        "due_after": ("date", day_cmp("due_at", ">=")), "due_before": ("date", day_cmp("due_at", "<=")),
        "due_at": ("date", day_cmp("due_at", "=")),
        "issued_after": ("date", day_cmp("issued_at", ">=")), "issued_before": ("date", day_cmp("issued_at", "<=")),
        "last_sent_start_date": ("date", day_cmp("last_sent_at", ">=")),
        "last_sent_end_date": ("date", day_cmp("last_sent_at", "<=")),
        "overdue_only": ("bool", flag(_overdue)), "status": ("enum", _bill_status), "type": ("enum", _bill_type),
        "query": ("int", lambda v: equals("number")(str(v))),
        "originating_attorney_id": ("int", id_match("matters:matters.originating_attorney")),
        "responsible_attorney_id": ("int", id_match("matters:matters.responsible_attorney")),
    },
    "calendar_entries": {
        "calendar_id": ("int", lambda v: (lambda rec, r: v in _ids_of(rec.get("calendar_owner"))
                                           | _ids_of([a for a in rec.get("attendees") or []
                                                      if a.get("type") == "Calendar"]))),
        "from": ("ts", ts_cmp("end_at", ">=")), "to": ("ts", ts_cmp("start_at", "<=")),
        "has_court_rule": ("bool", flag(lambda e, r: bool(e.get("court_rule")))),
        "is_all_day": ("bool", flag(lambda e, r: bool(e.get("all_day")))),
        "query": ("str", contains("summary", "description", "location")),
        "source": ("enum", equals("calendars:calendar_owner.source")),
        "visible": ("bool", flag(lambda e, r: bool(get_path(e, "calendars:calendar_owner.visible", r)))),
        "expanded": ("bool", _no_filter), "owner_entries_across_all_users": ("bool", _no_filter),
    },
    "calendars": {
        "filter_inactive_users": ("bool", lambda v: (lambda rec, r: not v or rec.get("type") != "UserCalendar"
                                                      or bool(get_path(rec, "users:_owner.enabled", r)))),
        "owner": ("bool", flag(lambda c, r: c.get("permission") == "owner")),
        "writeable": ("bool", flag(lambda c, r: c.get("permission") in ("owner", "editor"))),
    },
    "comments": {"item_id": ("int", id_match("_item"))},
    "communications": {
        "contact_id": ("int", _communication_contact), "date": ("date", day_cmp("date", "=")),
        "having_time_entries": ("bool", flag(positive("time_entries_count"))),
        "query": ("str", contains("subject", "body")),
        "received_at": ("ts", lambda v: (lambda rec, r: _day(rec.get("received_at")) ==
                                         datetime.fromtimestamp(v, UTC).date().isoformat())),
        "received_before": ("date", day_cmp("received_at", "<=")),
        "received_since": ("date", day_cmp("received_at", ">=")),
    },
    "contacts": {
        "client_only": ("bool", lambda v: (lambda rec, r: not v or bool(rec.get("is_client")))),
        "clio_connect_only": ("bool", lambda v: (lambda rec, r: not v or bool(rec.get("clio_connect_email")))),
        "email_only": ("bool", lambda v: (lambda rec, r: not v or bool(rec.get("primary_email_address")))),
        "initial": ("enum", _initial),
        "query": ("str", contains("name", "title", "email_addresses", "phone_numbers", "addresses", "company.name")),
        "shared_resource_id": ("int", lambda v: never),
    },
    "conversation_messages": {"query": ("str", contains("body"))},
    "conversations": {
        "contact_id": ("int", _conversation_contact), "date": ("date", day_cmp("created_at", "=")),
        "for_user": ("bool", lambda v: (lambda rec, r: v or bool(rec.get("current_user_is_member")))),
        "read_status": ("bool", flag(lambda c, r: bool(c.get("read")))),
        "time_entries": ("bool", flag(positive("time_entries_count"))),
    },
    "custom_field_sets": {"query": ("str", contains("name"))},
    "custom_fields": {
        "query": ("str", contains("name")),
        "visible_and_required": ("bool", flag(lambda c, r: bool(c.get("displayed")) and bool(c.get("required")))),
    },
    "document_categories": {"query": ("enum", contains("name"))},
    "documents": {"query": ("str", contains("name", "filename"))},
    "folders": {"query": ("str", contains("name"))},
    "folders/list": {"query": ("str", contains("name"))},
    "expense_categories": {"query": ("str", contains("name"))},
    "groups": {"query": ("str", contains("name")), "name": ("str", equals("name"))},
    "line_items": {
        "query": ("str", contains("description", "note")),
        "display": ("bool", lambda v: (lambda rec, r: not v or rec.get("type") != "NoChargeLineItem")),
    },
    "matters": {
        "status": ("csv_enum", _matter_statuses),
        "query": ("str", contains("display_number", "number", "description", "contacts:client.name",
                                  "contacts:client.first_name", "contacts:client.last_name")),
        "open_date[]": ("ops_date", _date_ops("open_date")), "close_date[]": ("ops_date", _date_ops("close_date")),
        "pending_date[]": ("ops_date", _date_ops("pending_date")),
        "grant_id": ("int", id_match("_grant")),
        "notification_event_subscriber_user_id": ("int", id_match("_subscribers")),
        "subscriber_user_id": ("int", id_match("_subscribers")),
    },
    "medical_records_details": {
        "treatment_start_date": ("date", day_cmp("treatment_start_date", ">=")),
        "treatment_end_date": ("date", day_cmp("treatment_end_date", "<=")),
    },
    "notes": {
        "has_time_entries": ("bool", flag(positive("time_entries_count"))),
        "query": ("str", contains("subject", "detail")),
    },
    "outstanding_client_balances": {
        "last_paid_start_date": ("date", day_cmp("last_payment_date", ">=")),
        "last_paid_end_date": ("date", day_cmp("last_payment_date", "<=")),
        "newest_bill_due_start_date": ("date", day_cmp("newest_issued_bill_due_date", ">=")),
        "newest_bill_due_end_date": ("date", day_cmp("newest_issued_bill_due_date", "<=")),
        "originating_attorney_id": ("int", id_match("_originating_attorney_ids")),
        "responsible_attorney_id": ("int", id_match("_responsible_attorney_ids")),
    },
    "practice_areas": {"matter_id": ("int", _no_filter), "name": ("str", equals("name")),
                       "code": ("str", equals("code"))},
    "reminders": {"subject_type": ("enum", _subject_type), "user_id": ("int", id_match("_user"))},
    "settings/text_snippets": {"query": ("str", contains("snippet", "phrase"))},
    "task_template_lists": {"query": ("str", contains("name")),
                            "empty": ("bool", flag(lambda t, r: not t.get("_template_count")))},
    "task_templates": {"query": ("str", contains("name", "description"))},
    "task_types": {"enabled": ("bool", flag(lambda t, r: t.get("deleted_at") is None)),
                   "name": ("str", equals("name")), "query": ("str", contains("name"))},
    "tasks": {
        "assignee_id": ("int", _assignee), "assignee_type": ("enum", _assignee_type),
        "client_id": ("int", _task_client), "complete": ("bool", flag(lambda t, r: t.get("status") == "complete")),
        "due_at_from": ("date", day_cmp("due_at", ">=")), "due_at_to": ("date", day_cmp("due_at", "<=")),
        "due_at_present": ("bool", flag(is_set("due_at"))),
        "query": ("str", contains("name", "description")),
        "responsible_attorney_id": ("int", id_match("matters:matter.responsible_attorney")),
        "statuses[]": ("list_enum", lambda vs: (lambda rec, r: rec.get("status") in vs)),
        "time_entries_present": ("bool", flag(positive("time_entries_count"))),
        "cascading_source_id": ("int", id_match("_cascading_source")),
    },
    "users": {
        "include_co_counsel": ("bool", lambda v: (lambda rec, r: v or not rec.get("_co_counsel"))),
        "pending_setup": ("bool", flag(lambda u, r: bool(u.get("_pending_setup")))),
        "name": ("str", equals("name")), "role": ("enum", equals("roles")),
    },
    "billable_clients": {"query": ("str", contains("name"))},
    "billable_matters": {"query": ("str", contains("display_number"))},
    "settings/billing": {"duration": ("str", _no_filter)},
    "bills/{id}": {"navigation.next": ("int", _no_filter), "navigation.previous": ("int", _no_filter)},
    "documents/{id}/versions": {"id": ("int", id_match("id"))},
}
for _path in ("documents", "folders", "folders/list", "communications", "calendar_entries"):
    SPECIAL.setdefault(_path, {}).update({
        "external_property_name": ("str", equals("external_properties.name", fold=False)),
        "external_property_value": ("str", equals("external_properties.value", fold=False)),
    })
for _path in ("documents", "folders", "folders/list"):
    SPECIAL[_path]["show_uncompleted"] = ("bool", lambda v: (lambda rec, r: v or not rec.get("_uploading")))
    # parent_id with scope (children by default, or descendants): combined in build_query
    SPECIAL[_path]["parent_id"] = ("int", _no_filter)
    SPECIAL[_path]["scope"] = ("enum", _no_filter)
SPECIAL.setdefault("court_rules/jurisdictions", {})["for_current_account"] = (
    "bool", flag(lambda j, r: bool(j.get("_for_current_account"))))
SPECIAL.setdefault("court_rules/matter_dockets", {})["matter_status"] = ("enum", equals("matters:matter.status"))
SPECIAL["groups"]["archived"] = ("bool", flag(lambda g, r: bool(g.get("_archived"))))
SPECIAL["report_presets"] = SPECIAL.get("report_presets", {}) | {
    "has_schedule": ("bool", flag(is_set("report_schedule"))), "output_format": ("str", equals("_output_format")),
    "schedule_frequency": ("enum", equals("report_schedules:report_schedule.frequency"))}
SPECIAL["reports"] = SPECIAL.get("reports", {}) | {"output_format": ("str", equals("_output_format"))}
for _path in ("billable_clients", "billable_matters", "billable_matters/ids"):
    SPECIAL.setdefault(_path, {}).update({
        "start_date": ("date", _no_filter), "end_date": ("date", _no_filter),
        "matter_id": ("int", _billable("_matter_ids")), "client_id": ("int", _billable("_client_ids")),
        "originating_attorney_id": ("int", _billable("_originating_attorney_ids")),
        "responsible_attorney_id": ("int", _billable("_responsible_attorney_ids")),
    })
for _path in ("court_rules/jurisdictions", "court_rules/jurisdictions/{jurisdiction_id}/triggers",
              "court_rules/matter_dockets", "report_presets", "reports", "conversation_messages"):
    SPECIAL.setdefault(_path, {}).setdefault("query", ("str", contains("name", "description", "body")))
# UK legal aid rate tables (empty for a US firm): each parameter matches the rate field it names.
for _path in ("lauk_civil_certificated_rates", "lauk_civil_controlled_rates", "lauk_criminal_controlled_rates",
              "lauk_expense_categories"):
    _op = model().operations[_path]
    for _p in _op.params.values():
        if _p.name not in PAGING and not _p.name.endswith("_since") and _p.name != "ids[]":
            SPECIAL.setdefault(_path, {})[_p.name] = (
                "bool" if _p.type == "boolean" else "str",
                (lambda n: lambda v: (lambda rec, r: rec.get(n) == v))(_p.name))
#: A required query parameter the sandbox does not insist on: the versions of a document are
#: listed by the path id; the spec's extra required ``id`` (of a version) would make listing impossible.
NOT_REQUIRED = {("documents/{id}/versions", "id")}
#: Parameters that only select which records are visible (handled by the paging layer).
SCOPE = {"include_deleted": "include_deleted", "custom_field_ids[]": "custom_field_ids",
         "expanded": "expanded"}


# ----------------------------------------------------------------------------- building a Query


def _raw_values(params: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in params:
        out.setdefault(k, []).append(v)
    return out


def _parse(kind: str, p: ParamDef, values: list[str]) -> Any:
    raw = values[-1]  # a repeated plain parameter: the last one wins (Rails)
    if kind == "int":
        return parse_int(p.name, raw, p.null_allowed)
    if kind == "bool":
        return parse_bool(p.name, raw)
    if kind == "date":
        return parse_date(p.name, raw)
    if kind == "ts":
        return parse_ts(p.name, raw)
    if kind == "enum":
        return parse_enum(p, raw)
    if kind == "csv_enum":
        parts = [x.strip() for x in raw.split(",") if x.strip()]
        for x in parts:
            parse_enum(p, x)
        return parts
    if kind == "list_int":
        return [parse_int(p.name, v) for v in values for v in v.split(",")]
    if kind == "list_enum":
        return {parse_enum(p, v) for v in values}
    if kind == "ops_date":
        conds = []
        for v in values:
            m = re.fullmatch(r"(>=|<=|=|>|<)(\d{4}-\d{2}-\d{2})", v)
            if not m:
                raise ParamError(f"Invalid {p.name}: {v!r} (expected an operator and a date, e.g. >=2020-01-01)")
            conds.append((m.group(1), parse_date(p.name, m.group(2))))
        return conds
    return raw


def _kind_of(p: ParamDef) -> str:
    if p.name.endswith("[]"):
        return "list_enum" if p.enum else "list_int" if p.items_type == "integer" or p.type == "integer" else "str"
    if p.type == "integer":
        return "int"
    if p.type == "boolean":
        return "bool"
    if p.enum:
        return "enum"
    if p.format == "date-time":
        return "ts"
    if p.format == "date":
        return "date"
    return "str"


def _generic(op: Operation, p: ParamDef) -> Rule | None:
    """The rule for a parameter named like a field of the record, or None."""
    props = model().fields(op.schema)
    name = p.name
    if name.endswith("_id") and p.type == "integer":
        stem = name[:-3]
        if name in props and not props[name].nested:
            return "int", id_match(name)
        for assoc in (stem, stem + "s", stem + "es"):
            if assoc in props and props[assoc].nested:
                return "int", id_match(assoc)
        return None
    fdef = props.get(name)
    if fdef is None or fdef.nested:
        return None
    if fdef.type == "integer" and p.type == "integer":
        return "int", id_match(name)
    if fdef.type == "boolean" and p.type == "boolean":
        return "bool", (lambda path: lambda v: (lambda rec, r: bool(rec.get(path)) == v))(name)
    if p.type == "string":
        return _kind_of(p), equals(name)
    return None


def rule_for(op: Operation, p: ParamDef) -> Rule | None:
    return (SPECIAL.get(op.path) or {}).get(p.name) or _generic(op, p)


def build_query(op: Operation, items: Iterable[tuple[str, str]]) -> Query:
    """Validate a request's query parameters against ``op`` and build its Query (ParamError: 400)."""
    raw = _raw_values(items)
    q = Query()
    cfv = {k: v for k, v in raw.items() if k.startswith("custom_field_values[")}
    for k in cfv:
        raw.pop(k)
    if cfv:
        if "custom_field_values" not in op.params:
            raise ParamError(f"Unknown parameter: custom_field_values is not a parameter of {op.path}")
        q.predicates.append(custom_field_values_filter(cfv))
    unknown = sorted(k for k in raw if k not in op.params and k not in PAGING)
    if unknown:
        raise ParamError(f"Unknown parameter(s) for {op.path}: {', '.join(unknown)}")
    missing = sorted(k for k, p in op.params.items() if p.required and k not in raw
                     and (op.path, k) not in NOT_REQUIRED)
    if missing:
        raise ParamError(f"Missing required parameter(s) for {op.path}: {', '.join(missing)}")
    for name, values in raw.items():
        if name in PAGING or name in ("custom_field_values",):
            if name == "custom_field_values":
                raise ParamError("custom_field_values needs a custom field id: custom_field_values[<id>]=<op><value>")
            continue
        p = op.params[name]
        if name == "ids[]":
            q.ids = [v for v in _parse("list_int", p, values) if v is not None]
        elif name == "exclude_ids[]":
            q.exclude_ids = {v for v in _parse("list_int", p, values) if v is not None}
        elif name == "updated_since":
            q.updated_since = parse_ts(name, values[-1])
        elif name == "created_since":
            q.created_since = parse_ts(name, values[-1])
        elif name == "created_before":
            q.created_before = parse_ts(name, values[-1])
        elif name in SCOPE:
            if name == "custom_field_ids[]":
                q.custom_field_ids = {v for v in _parse("list_int", p, values) if v is not None}
            else:
                setattr(q, SCOPE[name], parse_bool(name, values[-1]))
        elif name.startswith("rate_for["):
            q.rate_for[name[9:-1]] = parse_int(name, values[-1])
        else:
            rule = rule_for(op, p)
            if rule is None:
                raise ParamError(f"{op.path}: the {name} filter is documented but not supported by the sandbox")
            kind, maker = rule
            pred = maker(_parse(kind, p, values))
            if pred is not None:
                q.predicates.append(pred)
    if "parent_id" in raw and op.path in ("documents", "folders", "folders/list"):
        folder = parse_int("parent_id", raw["parent_id"][-1], op.params["parent_id"].null_allowed)
        descendants = raw.get("scope", ["children"])[-1] == "descendants"
        if folder is None:
            q.predicates.append(id_match("parent")(None))
        elif descendants:
            q.predicates.append(lambda rec, r: _descendant_of(rec, folder, r))
        else:
            q.predicates.append(id_match("parent")(folder))
    return q


# ----------------------------------------------------------------------------- custom field values

_OPS = {"=": lambda a, b: a == b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
_ORDERED = frozenset({"currency", "date", "time", "numeric"})


def _cf_conditions(key: str, values: list[str]) -> tuple[int, list[tuple[str, str]]]:
    cid = parse_int(key, key[len("custom_field_values["):-1])
    conds = []
    for raw in values:
        items = [x.strip() for x in raw[1:-1].split(",")] if raw.startswith("[") and raw.endswith("]") else [raw]
        for item in items:
            m = re.fullmatch(r"(>=|<=|=|<|>)?(.*)", item, re.S)
            conds.append((m.group(1) or "=", m.group(2)))  # type: ignore[union-attr]
    return cid, conds  # type: ignore[return-value]


def custom_field_values_filter(raw: Mapping[str, list[str]]) -> Pred:
    """``custom_field_values[<id>]=<op><value>``: every condition on every named field must hold."""
    wanted = [_cf_conditions(k, v) for k, v in raw.items()]

    def pred(rec: dict, r: Resolver) -> bool:
        values = {_int_id((c.get("custom_field") or {}).get("id")): c for c in rec.get("custom_field_values") or []}
        for cid, conds in wanted:
            cfv = values.get(cid)
            if cfv is None:
                return False
            ftype = cfv.get("field_type")
            for op, value in conds:
                if op != "=" and ftype not in _ORDERED:
                    raise ParamError(f"custom_field_values[{cid}]: operator {op} is not supported for {ftype} fields")
                got: Any = cfv.get("value")
                want: Any = value
                if ftype in ("currency", "numeric"):
                    try:
                        got, want = float(got), float(value)
                    except (TypeError, ValueError):
                        return False
                elif ftype == "picklist":
                    got = str((cfv.get("picklist_option") or {}).get("id"))
                    if not value.isdigit():
                        got = cfv.get("value")
                if got is None or not _OPS[op](got, want):
                    return False
        return True
    return pred
