"""Endpoints whose records Clio computes from others: built per request from the stored firm.

Each builder returns complete records (``id``, ``etag``, timestamps and every field it can fill);
paging, filters and ``fields`` are then applied by the same code as for stored collections.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from sandbox.clio.fields import content_etag
from sandbox.clio.store import Store

Builder = Callable[[Store, Mapping[str, str], Mapping[str, list[str]]], list[dict]]


def _stamp(rec: dict, *sources: dict) -> dict:
    """Timestamps from the newest source record, and an etag of the content."""
    srcs = [s for s in sources if s]
    rec.setdefault("created_at", min((s["created_at"] for s in srcs), default=None))
    rec.setdefault("updated_at", max((s["updated_at"] for s in srcs), default=None))
    rec["_created_ts"] = min((s["_created_ts"] for s in srcs), default=0.0)
    rec["_updated_ts"] = max((s["_updated_ts"] for s in srcs), default=0.0)
    rec["etag"] = content_etag(rec)
    return rec


_CONTACT_KEYS = ("name", "first_name", "middle_name", "last_name", "type", "prefix", "title", "initials",
                 "primary_email_address", "primary_phone_number", "secondary_email_address",
                 "secondary_phone_number", "client_connect_user_id", "date_of_birth", "avatar", "company",
                 "addresses", "email_addresses", "phone_numbers", "web_sites", "primary_address",
                 "secondary_address", "primary_web_site", "secondary_web_site", "custom_field_values")


def _contact_part(contact: dict) -> dict:
    return {k: contact.get(k) for k in _CONTACT_KEYS}


def _matter_or_404(store: Store, path: Mapping[str, str]) -> dict:
    matter = store.get("matters", _path_id(path, "matter_id"))
    if matter is None:
        raise LookupError(f"matters {path.get('matter_id')} not found")
    return matter


def _path_id(path: Mapping[str, str], name: str) -> int:
    try:
        return int(path[name])
    except (KeyError, ValueError):
        raise LookupError(f"{name} {path.get(name)!r} is not a record id") from None


def _relationships(store: Store, matter_id: int) -> list[dict]:
    return [r for r in store.scan("relationships") if (r.get("matter") or {}).get("id") == matter_id]


def matter_contacts(store: Store, path: Mapping[str, str], params: Mapping[str, list[str]]) -> list[dict]:
    """``matters/{matter_id}/contacts``: the client and every contact related to the matter."""
    matter = _matter_or_404(store, path)
    out = []
    client_id = (matter.get("client") or {}).get("id")
    rows: list[tuple[dict | None, int]] = [(None, client_id)] if client_id else []
    rows += [(rel, (rel.get("contact") or {}).get("id")) for rel in _relationships(store, matter["id"])]
    for rel, cid in rows:
        contact = store.get("contacts", cid) if cid else None
        if contact is None:
            continue
        rec = _contact_part(contact) | {
            "id": rel["id"] if rel else contact["id"], "matter_id": matter["id"],
            "matter_number": matter.get("display_number"), "is_client": rel is None,
            "description": rel.get("description") if rel else None,
            "relationship_name": rel.get("description") if rel else "Client",
            "relationship": {"id": rel["id"], "description": rel.get("description")} if rel else None,
            "contact_created_at": contact.get("created_at"), "contact_updated_at": contact.get("updated_at"),
        }
        out.append(_stamp(rec, rel or contact, contact))
    return out


def matter_related_contacts(store: Store, path: Mapping[str, str], params: Mapping[str, list[str]]) -> list[dict]:
    """``matters/{matter_id}/related_contacts``: contacts linked to the matter by a relationship."""
    matter = _matter_or_404(store, path)
    client_id = (matter.get("client") or {}).get("id")
    out = []
    for rel in _relationships(store, matter["id"]):
        cid = (rel.get("contact") or {}).get("id")
        contact = store.get("contacts", cid) if cid else None
        if contact is None:
            continue
        rec = _contact_part(contact) | {
            "id": rel["id"], "contact_id": contact["id"], "is_matter_client": contact["id"] == client_id,
            "relationship": {"id": rel["id"], "description": rel.get("description")},
        }
        out.append(_stamp(rec, rel, contact))
    return out


def matter_client(store: Store, path: Mapping[str, str], params: Mapping[str, list[str]]) -> list[dict]:
    """``matters/{matter_id}/client``: the matter's client."""
    matter = _matter_or_404(store, path)
    contact = store.get("contacts", (matter.get("client") or {}).get("id") or 0)
    if contact is None:
        raise LookupError(f"matters {matter['id']} has no client")
    rec = _contact_part(contact) | {"id": contact["id"], "is_matter_client": True}
    return [_stamp(rec, contact)]


def folder_items(store: Store, path: Mapping[str, str], params: Mapping[str, list[str]]) -> list[dict]:
    """``folders/list``: folders then documents, as Items."""
    out = []
    for kind in ("folders", "documents"):
        for rec in store.scan(kind, include_deleted=True):
            item = {k: rec.get(k) for k in ("id", "etag", "created_at", "updated_at", "deleted_at", "type", "locked",
                                             "name", "parent", "matter", "contact", "document_category", "creator",
                                             "latest_document_version", "group", "external_properties",
                                             "_created_ts", "_updated_ts", "_uploading")}
            out.append(item)
    return out


def document_versions(store: Store, path: Mapping[str, str], params: Mapping[str, list[str]]) -> list[dict]:
    doc = store.get("documents", _path_id(path, "id"))
    if doc is None:
        raise LookupError(f"documents {path.get('id')} not found")
    out = []
    for v in doc.get("_versions", []):
        rec = {k: val for k, val in v.items() if not k.startswith("_")} | {
            "document_id": doc["id"], "created_at": v["received_at"], "updated_at": v["received_at"],
            "creator": doc.get("creator"), "_created_ts": doc["_created_ts"], "_updated_ts": doc["_updated_ts"]}
        rec["etag"] = v.get("etag") or content_etag(rec)
        out.append(rec)
    return out


def _unbilled(store: Store, params: Mapping[str, list[str]]) -> dict[int, dict[str, float]]:
    start = (params.get("start_date") or [None])[-1]
    end = (params.get("end_date") or [None])[-1]
    out: dict[int, dict[str, float]] = defaultdict(lambda: {"hours": 0.0, "amount": 0.0})
    for a in store.scan("activities"):
        if a.get("on_bill") or a.get("non_billable") or not a.get("matter"):
            continue
        if (start and (a.get("date") or "") < start[:10]) or (end and (a.get("date") or "") > end[:10]):
            continue
        acc = out[a["matter"]["id"]]
        acc["hours"] += float(a.get("quantity_in_hours") or 0) if a.get("type") == "TimeEntry" else 0.0
        acc["amount"] += float(a.get("total") or 0)
    return out


def _trust_by_matter(store: Store) -> dict[int, float]:
    trust = {a["id"] for a in store.scan("bank_accounts") if a.get("type") == "Trust"}
    out: dict[int, float] = defaultdict(float)
    for t in store.scan("bank_transactions"):
        if t.get("bank_account_id") in trust and t.get("matter"):
            out[t["matter"]["id"]] += float(t.get("amount") or 0)
    return out


def billable_matters(store: Store, path: Mapping[str, str], params: Mapping[str, list[str]]) -> list[dict]:
    """``billable_matters``: matters with unbilled billable time or expenses."""
    unbilled = _unbilled(store, params)
    trust = _trust_by_matter(store)
    out = []
    for mid, acc in sorted(unbilled.items()):
        m = store.get("matters", mid)
        if m is None:
            continue
        rec = {"id": mid, "unbilled_hours": round(acc["hours"], 4), "unbilled_amount": round(acc["amount"], 2),
               "amount_in_trust": round(trust.get(mid, 0.0), 2), "display_number": m.get("display_number"),
               "client": m.get("client"), "_matter_ids": [mid], "_client_ids": [(m.get("client") or {}).get("id")],
               "_originating_attorney_ids": [(m.get("originating_attorney") or {}).get("id")],
               "_responsible_attorney_ids": [(m.get("responsible_attorney") or {}).get("id")]}
        out.append(_stamp(rec, m))
    return out


def billable_clients(store: Store, path: Mapping[str, str], params: Mapping[str, list[str]]) -> list[dict]:
    """``billable_clients``: clients of billable matters, with their matters."""
    by_client: dict[int, list[dict]] = defaultdict(list)
    for bm in billable_matters(store, path, params):
        by_client[(bm.get("client") or {}).get("id")].append(bm)
    out = []
    for cid, matters in sorted((k, v) for k, v in by_client.items() if k is not None):
        contact = store.get("contacts", cid) or {}
        rec = {"id": cid, "name": contact.get("name"), "billable_matters_count": len(matters),
               "unbilled_hours": round(sum(m["unbilled_hours"] for m in matters), 4),
               "unbilled_amount": round(sum(m["unbilled_amount"] for m in matters), 2),
               "amount_in_trust": round(sum(m["amount_in_trust"] for m in matters), 2),
               "billable_matters": [{k: m[k] for k in ("id", "unbilled_hours", "unbilled_amount", "amount_in_trust",
                                                        "display_number")} for m in matters]}
        for key in ("_matter_ids", "_client_ids", "_originating_attorney_ids", "_responsible_attorney_ids"):
            rec[key] = [x for m in matters for x in m[key]]
        out.append(_stamp(rec, *matters))
    return out


def outstanding_client_balances(store: Store, path: Mapping[str, str],
                                params: Mapping[str, list[str]]) -> list[dict]:
    """``outstanding_client_balances``: per client, the unpaid balance of its issued bills."""
    bills: dict[int, list[dict]] = defaultdict(list)
    for b in store.scan("bills"):
        if b.get("state") == "awaiting_payment" and (b.get("balance") or 0) > 0 and b.get("client"):
            bills[b["client"]["id"]].append(b)
    last_paid: dict[int, str] = {}
    for a in store.scan("allocations"):
        cid = (a.get("contact") or {}).get("id")
        if cid is not None and a.get("voided_at") is None and (a.get("parent") or {}).get("type") == "Payment":
            last_paid[cid] = max(last_paid.get(cid, ""), a.get("date") or "")
    out = []
    for cid, bs in sorted(bills.items()):
        contact = store.get("contacts", cid)
        if contact is None:
            continue
        matter_ids = sorted({m["id"] for b in bs for m in b.get("matters") or []})
        matters = [store.get("matters", mid) or {} for mid in matter_ids]
        rec: dict[str, Any] = {
            "id": cid, "contact": {"id": cid}, "associated_matter_ids": matter_ids,
            "total_outstanding_balance": round(sum(float(b["balance"]) for b in bs), 2),
            "outstanding_bills": [{"id": b["id"]} for b in bs], "pending_payments_total": 0.0,
            "last_payment_date": last_paid.get(cid), "last_shared_date": None, "reminders_enabled": False,
            "newest_issued_bill_due_date": max((b.get("due_at") for b in bs if b.get("due_at")), default=None),
            "currency": bs[0].get("currency"),
            "_originating_attorney_ids": [(m.get("originating_attorney") or {}).get("id") for m in matters],
            "_responsible_attorney_ids": [(m.get("responsible_attorney") or {}).get("id") for m in matters],
        }
        out.append(_stamp(rec, *bs))
    return out


def jurisdiction_triggers(store: Store, path: Mapping[str, str], params: Mapping[str, list[str]]) -> list[dict]:
    if store.get("court_rules/jurisdictions", _path_id(path, "jurisdiction_id")) is None:
        raise LookupError(f"court_rules/jurisdictions {path.get('jurisdiction_id')} not found")
    return []


#: Operation path -> builder (lists, and single records answered as a one-element list).
DERIVED: dict[str, Builder] = {
    "matters/{matter_id}/contacts": matter_contacts,
    "matters/{matter_id}/related_contacts": matter_related_contacts,
    "matters/{matter_id}/client": matter_client,
    "folders/list": folder_items,
    "documents/{id}/versions": document_versions,
    "billable_matters": billable_matters,
    "billable_clients": billable_clients,
    "outstanding_client_balances": outstanding_client_balances,
    "court_rules/jurisdictions/{jurisdiction_id}/triggers": jurisdiction_triggers,
}
