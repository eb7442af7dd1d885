"""JSON reference exports for what does not migrate (workflows, templates, billing configuration,
trust rules, webhooks, the rate hierarchy, groups, custom field sets, document categories,
reminders): the Salesforce admin rebuilds them with Flow etc.

Everything comes from Clio resources that exist: Clio's API has no billing-automation or trust-rule
endpoint, so "billing automation" is the billing settings, bill themes, rates and custom actions,
and the trust rules are the trust accounts plus each matter's evergreen retainer (the minimum
trust balance Clio asks the client to keep).

Secrets never leave Clio: keys that look like secrets are dropped, URL query values are
redacted and bank account numbers are masked to their last four digits.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from clio2sf.reports import Streamed

SOURCE = "Clio Manage API v4"
_SECRET_KEY = re.compile(r"secret|token|password|passwd|api_key|apikey|private_key|signature|credential", re.I)
_MASKED_KEYS = frozenset({"account_number", "transit_number", "swift"})
_URL_KEYS = frozenset({"url", "target_url"})

REBUILD_HINTS: dict[str, str] = {
    "workflows.json": (
        "Clio task template lists do not migrate. Rebuild each list as a record-triggered Flow on the "
        "matter object (Case or Opportunity) that creates the listed Tasks, or as Salesforce Task templates "
        "/ Action Plans; the practice area of each list tells which matters it applies to."
    ),
    "document_templates.json": (
        "Clio document templates (and their merge fields) do not migrate. Upload the template files to a "
        "Salesforce Files library and rebuild merge fields with your document-generation tool."
    ),
    "billing_automation.json": (
        "Clio billing settings, bill themes, activity rates and custom actions do not migrate as automation "
        "(Clio's API has no billing-automation resource). Rebuild invoice numbering, rate defaults, invoice "
        "layouts and buttons with Flow, formula fields and Lightning actions; the migrated Clio_Billing__c, "
        "Clio_Payment__c, Time_Entry__c and Rate_Structure__c records keep the history."
    ),
    "trust_accounting_rules.json": (
        "Clio enforces trust rules that Salesforce does not know. Rebuild them on Ledger__c: a validation "
        "rule or before-save Flow that refuses a withdrawal taking a matter's trust balance below zero, a "
        "Flow that asks for a top-up when a matter with an evergreen retainer falls below its minimum, and "
        "a Flow for trust requests (a trust bill asking the client to replenish funds)."
    ),
    "groups.json": (
        "Clio groups (the firm, teams, each user's own group) do not migrate: they grant matter access and "
        "carry group rates. Rebuild them as Public Groups or Queues with sharing rules; group rates are in "
        "rate_hierarchy.json and on the migrated Rate_Structure__c records."
    ),
    "custom_field_sets.json": (
        "Clio custom field sets only group custom fields on a screen. The fields migrate (as __c fields); "
        "rebuild the grouping as page layout sections or Dynamic Forms field sections."
    ),
    "document_categories.json": (
        "Each migrated file keeps its Clio category in ContentVersion.Clio_Category__c; this is the list of "
        "categories, to turn that field into a picklist or Files library folders if wanted."
    ),
    "reminders.json": (
        "Clio reminders (email or popup notifications before a calendar entry or task, per user) do not "
        "migrate: a Salesforce Event or Task reminder is a popup for its owner only. Recreate the ones still "
        "ahead with ReminderDateTime on the migrated Event/Task, or notify through Flow."
    ),
    "webhooks.json": (
        "Clio webhooks do not migrate. Re-register the receiving endpoints against Salesforce with Platform "
        "Events, Change Data Capture or a Flow HTTP callout; shared secrets are not exported and must be "
        "issued anew."
    ),
    "rate_hierarchy.json": (
        "Clio resolves rates by precedence (entry custom rate, flat rate, matter, client, activity "
        "description, user default). Salesforce has no rate engine: the levels are migrated as "
        "Rate_Structure__c records; rebuild the resolution with a Flow or Apex if billing moves to Salesforce."
    ),
}

#: One line per reference file, for the mapping document's "what does not migrate" list.
REFERENCE_TITLES: dict[str, str] = {
    "workflows.json": "task template lists and their task templates; rebuild as Flow / Task templates",
    "document_templates.json": "document templates; upload to a Files library, rebuild merge fields",
    "billing_automation.json": "billing settings, activity and expense rates, custom actions, billing methods",
    "trust_accounting_rules.json": "trust bank accounts, evergreen retainers and the rules Clio enforces; rebuild as validation rule / Flow on Ledger__c",
    "webhooks.json": "webhooks (without their secrets); re-register against Salesforce",
    "rate_hierarchy.json": "the full rate hierarchy (user, client, matter, activity rates) in precedence order",
    "groups.json": "groups (firm, teams, users) and their members; rebuild as Public Groups / sharing",
    "custom_field_sets.json": "custom field sets (screen groupings of custom fields); rebuild as layout sections",
    "document_categories.json": "document categories (each file keeps its category in Clio_Category__c)",
    "reminders.json": "reminders on calendar entries and tasks (per-user notifications)",
}

TRUST_SEMANTICS: dict[str, Any] = {
    "clio_enforces": [
        "a matter's (or client's) trust balance can never go negative: Clio refuses a withdrawal or "
        "payment from trust larger than the funds held for that matter",
        "trust requests (POST /trust_requests, client or matter level) create trust bills (bills with kind "
        "trust_kind) asking the client to replenish funds; Clio's API cannot list trust requests",
        "trust and operating money are kept in separate bank accounts (BankAccount.type Trust / Operating)",
        "payments of revenue bills from trust are recorded as trust line items on the bill and as "
        "allocations whose source bank account is the trust account",
        "a matter with an evergreen retainer (Matter.evergreen_retainer.minimum_threshold) asks the client to "
        "top up trust when its balance falls below the minimum",
    ],
    "rebuild_in_salesforce": [
        "Ledger__c holds every migrated bank transaction (funds in/out, matter, client, bill); Clio_Payment__c "
        "says which payment (from trust or operating) paid which bill",
        "a roll-up or Flow-maintained trust balance per matter from Ledger__c where the bank account is a trust account",
        "a validation rule or before-save Flow on Ledger__c that blocks an entry taking that balance below zero",
        "a Flow that creates a trust request (e.g. a Clio_Billing__c record of type trust) when the balance falls under a threshold",
    ],
}


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query and not parts.password:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    query = urlencode([(k, "REDACTED") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def scrub(value: Any) -> Any:
    """A copy without secret-looking keys, with masked account numbers and redacted URL queries
    (a :class:`~clio2sf.reports.Streamed` list: each item when it is written)."""
    if isinstance(value, Streamed):
        return value.map(scrub)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if _SECRET_KEY.search(str(key)):
                continue
            if key in _MASKED_KEYS and item not in (None, ""):
                text = str(item)
                out[key] = "*" * max(len(text) - 4, 0) + text[-4:]
            elif key in _URL_KEYS and isinstance(item, str):
                out[key] = _redact_url(item)
            else:
                out[key] = scrub(item)
        return out
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _records(config: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = config.get(key) or []
    if isinstance(value, Mapping):
        value = value.get("data", [value])
    if not isinstance(value, list):
        raise ValueError(f"clio_config[{key!r}] must be a list of records, got {type(value).__name__}")
    for i, rec in enumerate(value):
        if not isinstance(rec, Mapping):
            raise ValueError(f"clio_config[{key!r}][{i}] must be a record (object), got {type(rec).__name__}")
    return value


def _file(name: str, items: list[Any], generated_at: str, **extra: Any) -> dict[str, Any]:
    return {"generated_at": generated_at, "source": SOURCE, "rebuild_hint": REBUILD_HINTS[name],
            "items": scrub(items), **scrub(extra)}


def _workflows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    by_list: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for tpl in _records(config, "task_templates"):
        by_list[(tpl.get("task_template_list") or {}).get("id")].append(tpl)
    items = []
    for lst in _records(config, "task_template_lists"):
        tasks = by_list.pop(lst.get("id"), [])
        items.append({"list": dict(lst), "practice_area": (lst.get("practice_area") or {}).get("name"),
                      "rebuild_in_salesforce_as": "Flow creating these Tasks (or Task templates / Action Plan)",
                      "task_templates": tasks})
    for list_id, tasks in by_list.items():  # templates whose list was not returned
        items.append({"list": {"id": list_id, "name": None}, "practice_area": None,
                      "rebuild_in_salesforce_as": "Task templates", "task_templates": tasks})
    return items


def _billing(config: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    settings = config.get("settings/billing") or config.get("billing_settings") or {}
    if isinstance(settings, Mapping) and "data" in settings and isinstance(settings["data"], Mapping):
        settings = settings["data"]
    items: list[dict[str, Any]] = [{"kind": "billing_settings", "settings": settings}]
    for ad in _records(config, "activity_descriptions"):
        items.append({"kind": "activity_description_rate", "id": ad.get("id"), "name": ad.get("name"),
                      "category_type": ad.get("category_type"), "rate": ad.get("rate")})
    for ec in _records(config, "expense_categories"):
        items.append({"kind": "expense_category", "id": ec.get("id"), "name": ec.get("name"),
                      "rate": ec.get("rate"), "entry_type": ec.get("entry_type")})
    for ca in _records(config, "custom_actions"):
        items.append({"kind": "custom_action", **ca})
    for theme in _records(config, "bill_themes"):
        items.append({"kind": "bill_theme", "id": theme.get("id"), "name": theme.get("name"),
                      "default": theme.get("default")})
    methods = config.get("matter_billing_methods")
    if methods is None:
        matters = _records(config, "matters")
        methods = dict(Counter(m.get("billing_method") or "unknown" for m in matters)) if matters else None
    summary = {"matter_billing_methods": methods if methods is not None
               else f"not counted at discovery ({AFTER_EXTRACTION} matters)"}
    return items, summary


def _trust(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for acct in _records(config, "bank_accounts"):
        if acct.get("type") not in ("Trust", "TrustAccount"):
            continue
        out.append({"id": acct.get("id"), "name": acct.get("name"), "settings": dict(acct)})
    return out


def _evergreen(config: Mapping[str, Any]) -> list[dict[str, Any]] | str:
    """Matters with an evergreen retainer (Clio's trust minimum), or why they are not listed."""
    if "matters" not in config:
        return f"not read at discovery ({AFTER_EXTRACTION} matters)"

    def retainers(matters: Iterable[Mapping[str, Any]]) -> Iterable[dict[str, Any]]:
        return ({"matter_id": m.get("id"), "display_number": m.get("display_number"),
                 "minimum_threshold": (m.get("evergreen_retainer") or {}).get("minimum_threshold")}
                for m in matters if m.get("evergreen_retainer"))

    matters = config["matters"]
    if isinstance(matters, Streamed):  # the extracted matters: written as read, never held
        return Streamed(lambda: retainers(matters.items()))
    return list(retainers(_records(config, "matters")))


def _reminders(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"id": r.get("id"), "duration_minutes": r.get("duration"), "state": r.get("state"),
             "next_delivery_at": r.get("next_delivery_at"), "method": (r.get("notification_method") or {}).get("type"),
             "subject": r.get("subject")} for r in _records(config, "reminders")]


#: Discover counts the objects the extraction reads in full (matters, activity rates) without reading
#: them: the parts of the reference files built from their records are written after extraction.
AFTER_EXTRACTION = "written into this file when the extraction is complete, from the extracted"
#: The reference files that take records of extracted objects (:func:`record_references`).
FROM_EXTRACTED = ("billing_automation.json", "trust_accounting_rules.json", "rate_hierarchy.json")


def record_references(matters: Callable[[], Iterable[Mapping[str, Any]]]) -> dict[str, Any]:
    """What the reference files take from the extracted matters (``matters()``: raw envelopes or bare
    records, read again each time it is called), as :func:`reference_exports` config keys:
    ``matter_billing_methods`` (matters per billing method, counted now) and ``matters`` (only those
    with an evergreen retainer or a custom rate: the rest add nothing), a
    :class:`~clio2sf.reports.Streamed` list read from ``matters()`` when a file is written: none held,
    however many matters the firm has."""
    methods: Counter[str] = Counter()
    for rec in matters():
        methods[_matter(rec).get("billing_method") or "unknown"] += 1

    def kept() -> Iterable[dict[str, Any]]:
        for rec in matters():
            m = _matter(rec)
            if m.get("evergreen_retainer") or (m.get("custom_rate") or {}).get("rates"):
                yield {k: m.get(k) for k in ("id", "display_number", "billing_method", "evergreen_retainer",
                                             "custom_rate")}

    return {"matter_billing_methods": dict(methods), "matters": Streamed(kept)}


def _matter(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    return rec["data"] if isinstance(rec.get("data"), Mapping) else rec


def _fallback_rate_hierarchy(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every rate level Clio's discovery reads, in precedence order (matter rates come with matters)."""
    items: list[dict[str, Any]] = []
    for m in _records(config, "matters"):
        if m.get("custom_rate"):
            items.append({"level": "matter", "precedence": 3, "matter_id": m.get("id"),
                          "display_number": m.get("display_number"), "custom_rate": m.get("custom_rate")})
    for r in _records(config, "activity_rates"):
        items.append({"level": "client", "precedence": 4, "id": r.get("id"), "contact_id": r.get("contact_id"),
                      "co_counsel_contact_id": r.get("co_counsel_contact_id"), "rate": r.get("rate"),
                      "flat_rate": r.get("flat_rate"), "user": r.get("user"), "group": r.get("group")})
    for ad in _records(config, "activity_descriptions"):
        if ad.get("rate"):
            items.append({"level": "activity", "precedence": 5, "id": ad.get("id"), "name": ad.get("name"),
                          "rate": ad.get("rate")})
    for u in _records(config, "users"):
        if u.get("rate") is not None:
            items.append({"level": "user", "precedence": 6, "id": u.get("id"), "name": u.get("name"), "rate": u.get("rate")})
    return items


def reference_exports(
    clio_config: Mapping[str, Any],
    *,
    rate_document: Mapping[str, Any] | None = None,
    generated_at: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Build the reference files (file name -> JSON document).

    :param clio_config: discovery reads by name (``task_templates``: [...], ``settings/billing``: {...},
        ...); optional ``matters`` (for matter rates and billing methods) or ``matter_billing_methods``.
    :param rate_document: the mapping engine's ``rate_hierarchy_document(...)`` if available; its
        ``items`` (or the whole document) replace the built-in level list.
    """
    at = generated_at or _now()
    config = clio_config
    billing_items, billing_summary = _billing(config)
    webhooks = [{k: v for k, v in w.items() if k != "shared_secret"} for w in _records(config, "webhooks")]
    if rate_document is not None:
        rate_items = list(rate_document.get("items") or [rate_document])
    else:
        rate_items = _fallback_rate_hierarchy(config)
    trust_counts = Counter(a.get("type") for a in _records(config, "bank_accounts"))
    return {
        "workflows.json": _file("workflows.json", _workflows(config), at),
        "document_templates.json": _file("document_templates.json", list(_records(config, "document_templates")), at),
        "billing_automation.json": _file("billing_automation.json", billing_items, at, summary=billing_summary),
        "trust_accounting_rules.json": _file("trust_accounting_rules.json", _trust(config), at,
                                             semantics=TRUST_SEMANTICS, bank_account_types=dict(trust_counts),
                                             evergreen_retainers=_evergreen(config)),
        "webhooks.json": _file("webhooks.json", webhooks, at),
        "rate_hierarchy.json": _file("rate_hierarchy.json", rate_items, at,
                                     precedence=["entry custom rate", "flat rate", "matter", "client",
                                                 "activity description", "user default"]),
        "groups.json": _file("groups.json", list(_records(config, "groups")), at),
        "custom_field_sets.json": _file("custom_field_sets.json", list(_records(config, "custom_field_sets")), at),
        "document_categories.json": _file("document_categories.json", list(_records(config, "document_categories")),
                                          at),
        "reminders.json": _file("reminders.json", _reminders(config), at),
    }


def item_counts(exports: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Items per reference file (for the mapping document and XCom)."""
    return {name: len(doc.get("items") or []) for name, doc in exports.items()}

