"""The Clio rate hierarchy as one JSON document for the admin's billing rebuild."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from clio2sf.reports import Streamed

#: Clio's precedence, highest first (help centre): entry, flat, matter, client, activity, user.
PRECEDENCE = ["entry_custom_rate", "flat_rate", "matter", "client", "activity_description", "user_default"]


def _data(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept raw envelopes or bare records."""
    return rec["data"] if "data" in rec and isinstance(rec["data"], Mapping) else rec


def rate_hierarchy_document(
    users: Iterable[Mapping[str, Any]],
    contacts: Iterable[Mapping[str, Any]],
    matters: Iterable[Mapping[str, Any]],
    activity_descriptions: Iterable[Mapping[str, Any]],
    activity_rates: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """Build the JSON-able rate hierarchy from staged records (envelopes or plain records).

    Only contacts that have client rates and matters that have a custom rate are listed; ``matters``
    a :class:`~clio2sf.reports.Streamed` list (the extracted matters): so are ``matter`` (read when
    written) and ``client`` (the activity rates held as a tuple each, their dicts made when written).
    """
    names = {}
    for c in map(_data, contacts):
        names[c.get("id")] = c.get("name")
    streamed = isinstance(matters, Streamed)
    client_rates: dict[Any, list[tuple[Any, ...]]] = {}  # contact → its rates, a tuple each (CLIENT_RATE)
    texts: dict[str, str] = {}  # one string per user or group name
    for r in map(_data, activity_rates):
        who = r.get("user") or r.get("group") or {}
        name = who.get("name")
        client_rates.setdefault(r.get("contact_id"), []).append((
            r.get("id"), r.get("rate"), bool(r.get("flat_rate")),
            "user" if r.get("user") else "group" if r.get("group") else "all", who.get("id"),
            texts.setdefault(name, name) if isinstance(name, str) else name, r.get("co_counsel_contact_id")))

    def clients() -> Iterable[dict[str, Any]]:
        for cid, rates in sorted(client_rates.items(), key=lambda kv: (kv[0] is None, kv[0])):
            yield {"contact_id": cid, "source_system_id": f"contact-{cid}", "name": names.get(cid),
                   "rates": [dict(zip(CLIENT_RATE, rate, strict=True)) for rate in rates]}

    doc: dict[str, Any] = {
        "precedence": PRECEDENCE,
        "notes": "Highest level wins; when a user's groups conflict the highest rate applies.",
        "user_default": [{"user_id": u.get("id"), "name": u.get("name"), "rate": u.get("rate"), "enabled": u.get("enabled")}
                         for u in map(_data, users)],
        "activity_description": [{"activity_description_id": a.get("id"), "name": a.get("name"),
                                  "category_type": a.get("category_type"), **{k: (a.get("rate") or {}).get(k) for k in ("amount", "non_billable_amount", "type", "hierarchy")}}
                                 for a in map(_data, activity_descriptions)],
    }
    if streamed:  # the extracted matters: written as read, never held; the client level made as written
        doc["client"] = Streamed(clients)
        doc["matter"] = Streamed(lambda: (x for x in map(matter_rate, matters.items()) if x is not None))
    else:
        doc["client"] = list(clients())
        doc["matter"] = [x for x in map(matter_rate, matters) if x is not None]
    return doc


#: The keys of one client rate (``rate_hierarchy_document``'s ``client`` level), in the order it holds them.
CLIENT_RATE = ("rate_id", "rate", "flat_rate", "applies_to", "applies_to_id", "applies_to_name", "co_counsel_contact_id")


def matter_rate(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    """A matter's level of the hierarchy (its custom rate), or None when it has none."""
    m = _data(rec)
    custom = m.get("custom_rate") or {}
    if not custom.get("rates"):
        return None
    return {
        "matter_id": m.get("id"), "source_system_id": f"matter-{m.get('id')}", "display_number": m.get("display_number"),
        "billing_method": m.get("billing_method"), "type": custom.get("type"), "on_invoice": custom.get("on_invoice"),
        "rates": [{"rate": r.get("rate"), "user": (r.get("user") or {}).get("name"), "group": (r.get("group") or {}).get("name"),
                   "activity_description": (r.get("activity_description") or {}).get("name"), "note": r.get("note")}
                  for r in custom["rates"]]}
