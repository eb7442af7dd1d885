"""GET requests: every list and show operation of the official spec, answered from the store.

Routing, parameters, ``order`` values, ``limit`` ranges and fields all come from
:mod:`sandbox.clio.schema`.  Lists page with Clio's cursor (``meta.paging.next`` with an opaque
``page_token``) when ordered by ``id(asc)`` without ``offset``; any other order, or ``offset``,
pages by offset up to 10,000 records (422 beyond).  Show operations send ``ETag`` and
``Last-Modified`` and answer 304 to ``If-None-Match`` (weak or strong, a list, or ``*``) and to
``If-Modified-Since`` where the spec documents 304.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Iterator
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import msgspec

from sandbox.clio.derived import DERIVED
from sandbox.clio.fields import Resolver, compile_plan, project
from sandbox.clio.filters import PAGING, ParamError, Query, build_query, get_path
from sandbox.clio.schema import INT64_MAX, Operation, model
from sandbox.clio.store import Store

OFFSET_CAP = 10_000
#: Show operations answered from something other than ``<list>/{id}``.
SINGLETONS = ("users/who_am_i", "settings/billing", "timer", "internal_notifications/event_metrics")


class NotFound(LookupError):
    """404 RecordNotFound; the message names the record or route."""


class OffsetCapExceeded(ValueError):
    """422: offset paging past Clio's 10,000-record cap."""


def encode_token(state: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(tok: str) -> dict:
    try:
        state = json.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
        if not isinstance(state, dict) or not all(isinstance(v, int) for v in state.values()):
            raise ValueError
        return state
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ParamError("Invalid page_token") from exc


def record_id(raw: str, what: str) -> int:
    """A path id: an integer within int64, else 404 (Clio never finds such a record)."""
    try:
        value = int(raw)
    except ValueError:
        raise NotFound(f"{what} {raw!r} not found") from None
    if not 0 < value <= INT64_MAX:
        raise NotFound(f"{what} {raw} not found")
    return value


# ----------------------------------------------------------------------------- shaping records


def _adjust(records: list[dict], q: Query, store: Store, op: Operation, old_quantity: bool) -> list[dict]:
    """Per-request views of records: custom field value subsets, resolved rates, old units."""
    if q.custom_field_ids is None and not q.rate_for and not old_quantity:
        return records
    out = []
    for rec in records:
        rec = dict(rec)
        if q.custom_field_ids is not None and rec.get("custom_field_values") is not None:
            rec["custom_field_values"] = [c for c in rec["custom_field_values"]
                                          if (c.get("custom_field") or {}).get("id") in q.custom_field_ids]
        if q.rate_for and op.schema == "ActivityDescription":
            rec["rate"] = resolve_rate(store, rec, q.rate_for.get("matter_id"), q.rate_for.get("user_id"))
        if old_quantity and rec.get("type") == "TimeEntry":  # before 4.0.4 time was in hours
            rec["quantity"] = rec.get("quantity_in_hours")
            rec["rounded_quantity"] = rec.get("rounded_quantity_in_hours")
        out.append(rec)
    return out


def resolve_rate(store: Store, ad: dict, matter_id: int | None, user_id: int | None) -> dict:
    """``rate_for[matter_id]``/``rate_for[user_id]``: the rate Clio would apply, and which level won."""
    rate = dict(ad.get("rate") or {})
    matter = store.get("matters", matter_id) if matter_id else None
    user = store.get("users", user_id) if user_id else None
    if rate.get("type") == "FlatRate":
        return rate | {"hierarchy": "Activity"}
    custom = (matter or {}).get("custom_rate") or {}
    for r in custom.get("rates") or []:
        if custom.get("type") == "FlatRate" and (r.get("activity_description") or {}).get("id") == ad["id"]:
            return rate | {"amount": r["rate"], "type": "FlatRate", "hierarchy": "Matter"}
        if custom.get("type") == "HourlyRate" and user and (r.get("user") or {}).get("id") == user["id"]:
            return rate | {"amount": r["rate"], "type": "User", "hierarchy": "Matter"}
    client_id = ((matter or {}).get("client") or {}).get("id")
    if client_id and user:
        for ar in store.scan("activity_rates"):
            if ar.get("contact_id") == client_id and (ar.get("user") or {}).get("id") == user["id"]:
                return rate | {"amount": ar["rate"], "type": "User", "hierarchy": "Client"}
    if rate.get("type") == "Custom":
        return rate | {"hierarchy": "Activity"}
    if user:
        return rate | {"amount": user.get("rate"), "type": "User", "hierarchy": "Default"}
    return rate


_encode = msgspec.json.encode


def _project_all(records: list[dict], op: Operation, fields: str | None, store: Store) -> list[dict]:
    plan = compile_plan(op.schema, fields)
    resolver = Resolver(store.get_ref)
    return [project(r, plan, op.schema, resolver) for r in records]


def _cached_page(store: Store, op: Operation, ids: list[int], fields: str | None, q: Query,
                 old_quantity: bool) -> list[bytes]:
    """The page's records projected, from the projection cache where they are already there."""
    key = json.dumps([op.path, fields, old_quantity, sorted(q.custom_field_ids or ()), q.rate_for], sort_keys=True)
    vkey = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    cached = store.cached_views(vkey, ids)
    missing = [i for i in ids if i not in cached]
    if missing:
        found = store.get_many(op.path, missing)
        recs = _adjust([found[i] for i in missing if i in found], q, store, op, old_quantity)
        rows = [(_num(r["id"]), _encode(p)) for r, p in zip(recs, _project_all(recs, op, fields, store), strict=True)]
        store.put_views(vkey, rows)
        cached.update(rows)
    return [cached[i] for i in ids if i in cached]


# ----------------------------------------------------------------------------- lists


def _order(op: Operation, raw: str | None) -> tuple[str, str, bool]:
    """(order value, field path, descending); ParamError for a value the spec does not list."""
    order = raw if raw is not None else op.default_order
    if raw is not None and "order" not in op.params:
        raise ParamError(f"Unknown parameter(s) for {op.path}: order")
    if raw is not None and op.orders and order not in op.orders:
        raise ParamError(f"Invalid order {order!r}; one of {list(op.orders)}")
    if "(" not in order or not order.endswith(("(asc)", "(desc)")):
        raise ParamError(f"Invalid order {order!r}")
    fld, direction = order[:-1].split("(")
    return order, fld, direction == "desc"


def _limit(op: Operation, raw: str | None) -> int:
    if raw is None:
        return op.default_limit
    try:
        limit = int(raw)
    except ValueError:
        raise ParamError("limit must be an integer") from None
    if not 1 <= limit <= op.max_limit:
        raise ParamError(f"limit must be between 1 and {op.max_limit}")
    return limit


def _sort_key(fld: str):
    def key(rec: dict) -> tuple:
        v = get_path(rec, fld)
        return (v is not None, str(v) if not isinstance(v, int | float | bool) else v, _num(rec.get("id")))
    return key


def _num(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def list_page(store: Store, op: Operation, path_params: dict, params: list[tuple[str, str]], base_url: str,
              old_quantity: bool) -> bytes:
    """The JSON body of one list page: ``{"data": [...], "meta": {"paging": {...}}}``."""
    q = build_query(op, params)
    raw = {k: v for k, v in params}
    multi: dict[str, list[str]] = {}
    for k, v in params:
        multi.setdefault(k, []).append(v)
    limit = _limit(op, raw.get("limit"))
    order, fld, desc = _order(op, raw.get("order"))
    if "offset" in raw:
        try:
            offset = int(raw["offset"])
        except ValueError:
            raise ParamError("offset must be an integer") from None
        if offset < 0:
            raise ParamError("offset must not be negative")
    else:
        offset = None
    cursor = order == "id(asc)" and offset is None
    state = decode_token(raw["page_token"]) if "page_token" in raw else {}
    if not cursor and (offset or 0) + limit > OFFSET_CAP:
        raise OffsetCapExceeded(f"offset paging is limited to {OFFSET_CAP} records")
    resolver = Resolver(store.get_ref)
    page: list[bytes] | None = None
    if op.path in DERIVED:
        try:
            records = DERIVED[op.path](store, path_params, multi)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        records = [r for r in records if _visible(r, q) and q.matches(r, resolver)]
        records.sort(key=_sort_key(fld), reverse=desc)
        start = state.get("p", 0) if cursor else (offset or 0)
        rows = records[start:start + limit + 1]
        next_state = {"p": start + limit}
    elif not q.predicates and not q.exclude_ids:
        rows = store.scan_ids(op.path, limit=limit + 1, offset=0 if cursor else offset,
                              after_id=state.get("a", 0) if cursor else None, updated_since=q.updated_since,
                              created_since=q.created_since, created_before=q.created_before, ids=q.ids,
                              include_deleted=q.include_deleted, order_field=fld, descending=desc)
        next_state = {"a": rows[limit - 1]} if cursor and len(rows) > limit else {}
        page = _cached_page(store, op, rows[:limit], raw.get("fields"), q, old_quantity)
    else:
        rows = list(_take(_scan(store, op, q, fld, desc, state.get("a", 0) if cursor else None), q, resolver,
                          0 if cursor else (offset or 0), limit + 1))
        next_state = {"a": _num(rows[limit - 1]["id"])} if cursor and len(rows) > limit else {}
    more = len(rows) > limit
    rows = rows[:limit]
    meta: dict = {"paging": {}}
    if more:
        keep = [(k, v) for k, v in params if k not in ("page_token", "offset")]
        keep.append(("page_token", encode_token(next_state)) if cursor else ("offset", str((offset or 0) + limit)))
        meta["paging"]["next"] = f"{base_url}?{urlencode(keep)}"
    if page is None:
        page = [_encode(p) for p in _project_all(_adjust(rows, q, store, op, old_quantity), op, raw.get("fields"),
                                                 store)]
    return b'{"data":[' + b",".join(page) + b'],"meta":' + _encode(meta) + b"}"


def _visible(rec: dict, q: Query) -> bool:
    if q.ids is not None and _num(rec.get("id")) not in q.ids:
        return False
    ts = rec.get("_updated_ts", 0)
    if q.updated_since is not None and ts <= q.updated_since:
        return False
    if q.created_since is not None and rec.get("_created_ts", 0) <= q.created_since:
        return False
    return q.created_before is None or rec.get("_created_ts", 0) < q.created_before


def _scan(store: Store, op: Operation, q: Query, fld: str, desc: bool, after: int | None) -> Iterator[dict]:
    return store.scan(op.path, after_id=after, updated_since=q.updated_since, created_since=q.created_since,
                      created_before=q.created_before, ids=q.ids, include_deleted=q.include_deleted,
                      order_field=fld, descending=desc)


def _take(records: Iterable[dict], q: Query, resolver: Resolver, skip: int, n: int) -> Iterator[dict]:
    for rec in records:
        if not q.matches(rec, resolver):
            continue
        if skip:
            skip -= 1
            continue
        yield rec
        n -= 1
        if n == 0:
            return


def count(store: Store, path: str, params: list[tuple[str, str]]) -> int:
    """How many records paging ``path`` with ``params`` returns (the admin counts)."""
    match = model().match(path)
    if match is None or not match[0].listing:
        raise NotFound(f"No list operation {path}")
    op, path_params = match
    q = build_query(op, [(k, v) for k, v in params if k not in PAGING])
    resolver = Resolver(store.get_ref)
    if op.path in DERIVED:
        return sum(1 for r in DERIVED[op.path](store, path_params, {}) if _visible(r, q) and q.matches(r, resolver))
    return sum(1 for _ in _take(_scan(store, op, q, "id", False, None), q, resolver, 0, -1))


# ----------------------------------------------------------------------------- single records


def show_record(store: Store, op: Operation, path_params: dict, settings: dict) -> dict:
    """The stored or computed record a show operation answers with (NotFound: 404)."""
    if op.path == "users/who_am_i":
        rec = store.get("users", 1001)
    elif op.path == "settings/billing":
        rec = settings
    elif op.path == "internal_notifications/event_metrics":
        rec = {"id": 1, "unread": 0, "etag": '"0"', "_updated_ts": 0.0}
    elif op.path in DERIVED:
        try:
            rows = DERIVED[op.path](store, path_params, {})
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        rec = rows[0] if rows else None
    else:
        kind = op.path.rsplit("/{", 1)[0]
        name = op.path_params[-1] if op.path_params else "id"
        rec = store.get(kind, record_id(path_params.get(name, ""), kind))
    if rec is None:
        raise NotFound(f"{op.path.replace('{', '').replace('}', '')} {path_params or ''} not found".strip())
    return rec


def not_modified(rec: dict, headers: Any) -> bool:
    """RFC 7232 on a show: If-None-Match (weak comparison, a list or ``*``) wins over If-Modified-Since."""
    inm = headers.get("if-none-match")
    etag = rec.get("etag")
    if inm is not None:
        tags = [t.strip() for t in inm.split(",") if t.strip()]
        if "*" in tags:
            return True
        return etag is not None and _opaque(etag) in {_opaque(t) for t in tags}
    ims = headers.get("if-modified-since")
    if ims is not None:
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError):
            return False  # an invalid date is ignored
        return int(rec.get("_updated_ts") or 0) <= since
    return False


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def show_body(store: Store, op: Operation, rec: dict, params: list[tuple[str, str]], old_quantity: bool) -> dict:
    q = build_query(op, params)
    raw = dict(params)
    (rec,) = _adjust([rec], q, store, op, old_quantity)
    return {"data": _project_all([rec], op, raw.get("fields"), store)[0]}


def last_modified(rec: dict) -> str:
    return formatdate(int(rec.get("_updated_ts") or 0), usegmt=True)
