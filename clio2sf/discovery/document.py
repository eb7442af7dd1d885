"""The mapping specification document (Markdown and HTML) a firm's admin reads and approves.

Built from the merged mapping spec, the discovered Clio configuration, the Salesforce describes,
the proposer's proposals, the schema plan and the estimates.  Every value that came from Clio or
Salesforce is escaped (HTML through :mod:`clio2sf.reports`, Markdown by escaping ``<>&|``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from clio2sf.discovery.reference import REFERENCE_TITLES
from clio2sf.reports import banner, esc, md_text, page, table

LOW_CONFIDENCE = 0.6

#: The twelve Clio objects of the product spec: (Clio label, staged objects counted, Salesforce objects,
#: Salesforce objects whose rows the row counts: shared targets such as Task are counted once).
CLIO_OBJECT_ROWS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("Client", ("contacts",), ("Contact", "Account"), ("Contact", "Account")),
    ("Matter", ("matters",), ("Case", "Opportunity"), ("Case", "Opportunity")),
    ("Matter Type", ("practice_areas",), ("Case Type / RecordType",), ()),
    ("Bill / Invoice", ("bills",), ("Clio_Billing__c",), ("Clio_Billing__c",)),
    ("Time Entry", ("activities",), ("Time_Entry__c", "Task"), ("Time_Entry__c",)),
    ("Expense", ("activities",), ("Expense__c",), ("Expense__c",)),
    ("Rate and Rate Hierarchy", ("users", "activity_rates", "activity_descriptions"), ("Rate_Structure__c",),
     ("Rate_Structure__c",)),
    ("Document / File", ("documents",), ("ContentVersion", "ContentDocumentLink"), ("ContentVersion",)),
    ("Calendar / Event", ("calendar_entries",), ("Event", "EventRelation"), ("Event", "EventRelation")),
    ("Task", ("tasks",), ("Task",), ("Task",)),
    ("Contact (on Matter)", ("relationships",), ("CaseContactRole", "OpportunityContactRole"),
     ("CaseContactRole", "OpportunityContactRole")),
    ("Custom Field", ("custom_fields",), ("Custom Field (__c)",), ()),
    # also migrated, outside the twelve headline objects
    ("Trust / bank transaction", ("bank_transactions",), ("Ledger__c",), ("Ledger__c",)),
    ("Note", ("matter_notes", "contact_notes"), ("ContentNote",), ("ContentNote",)),
    ("Communication (email, call)", ("communications",), ("Task",), ()),
    ("Payment / credit allocation", ("allocations",), ("Clio_Payment__c",), ("Clio_Payment__c",)),
    ("Credit memo", ("credit_memos",), ("Clio_Credit_Memo__c",), ("Clio_Credit_Memo__c",)),
    ("Interest charge", ("interest_charges",), ("Clio_Interest_Charge__c",), ("Clio_Interest_Charge__c",)),
    ("Outstanding client balance", ("outstanding_client_balances",), ("Clio_Client_Balance__c",),
     ("Clio_Client_Balance__c",)),
    ("Damage (personal injury)", ("damages",), ("Clio_Damage__c",), ("Clio_Damage__c",)),
    ("Medical records (personal injury)", ("medical_records_details",), ("Clio_Medical_Record__c",),
     ("Clio_Medical_Record__c",)),
)

#: Source values Clio defines for each value map (API v4 enums); practice areas are added from discovery.
KNOWN_SOURCE_VALUES: dict[str, tuple[str, ...]] = {
    "matter_status_case": ("Open", "Pending", "Closed"),
    "matter_status_opportunity": ("Open", "Pending", "Closed"),
    "billing_method": ("hourly", "flat", "contingency"),
    "bill_state": ("draft", "awaiting_approval", "awaiting_payment", "paid", "void", "deleted"),
    "task_status": ("pending", "in_progress", "in_review", "complete"),
    "task_priority": ("High", "Normal", "Low"),
    "communication_subtype": ("EmailCommunication", "PhoneCommunication"),
    "rate_level": ("user", "client", "matter", "activity"),
}
_MATTER_LINKED = {"Case": "Case", "Opportunity": "Opportunity", "CaseContactRole": "Case",
                  "OpportunityContactRole": "Opportunity"}
#: Value maps that only apply under some options (others always apply).
_MAP_APPLIES: dict[str, Any] = {
    "matter_status_case": lambda spec: "Case" in spec.matter_objects,
    "relationship_role": lambda spec: "Case" in spec.matter_objects,
    "matter_status_opportunity": lambda spec: "Opportunity" in spec.matter_objects,
    "relationship_role_opportunity": lambda spec: "Opportunity" in spec.matter_objects,
    "practice_area_case_type": lambda spec: spec.options.get("practice_area_as", "type") == "type",
    "practice_area_record_type": lambda spec: spec.options.get("practice_area_as") == "record_type",
}
PRACTICE_AREA_MAPS = ("practice_area_case_type", "practice_area_record_type")


def _md(value: Any) -> str:
    """Markdown-safe text from data: no live links, images or HTML; pipes escaped; one line."""
    return md_text(value)


class _Doc:
    """Writes Markdown and HTML side by side."""

    def __init__(self) -> None:
        self.md: list[str] = []
        self.html: list[str] = []

    def h2(self, text: str) -> None:
        self.md += [f"## {_md(text)}", ""]
        self.html.append(f"<h2>{esc(text)}</h2>")

    def h3(self, text: str) -> None:
        self.md += [f"### {_md(text)}", ""]
        self.html.append(f"<h3>{esc(text)}</h3>")

    def p(self, text: str, kind: str | None = None) -> None:
        prefix = {"bad": "**Attention:** ", "warn": "**Note:** "}.get(kind or "", "")
        self.md += [prefix + _md(text), ""]
        self.html.append(banner(text, kind) if kind else f"<p>{esc(text)}</p>")

    def bullets(self, items: Iterable[str | tuple[str, str]]) -> None:
        """Items are text or ``(text, link)`` pairs."""
        h = ["<ul>"]
        for item in items:
            text, link = item if isinstance(item, tuple) else (item, None)
            if link:
                self.md.append(f"- [{_md(text)}]({link})")
                h.append(f'<li><a href="{esc(link)}">{esc(text)}</a></li>')
            else:
                self.md.append(f"- {_md(text)}")
                h.append(f"<li>{esc(text)}</li>")
        self.md.append("")
        h.append("</ul>")
        self.html.append("".join(h))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = (),
              row_classes: Sequence[str] | None = None) -> None:
        if not rows:
            self.p("(none)")
            return
        self.md.append("| " + " | ".join(_md(h) for h in headers) + " |")
        self.md.append("|" + "|".join("---:" if i in numeric else "---" for i in range(len(headers))) + "|")
        for r in rows:
            self.md.append("| " + " | ".join(_md(_cell(c)) for c in r) + " |")
        self.md.append("")
        self.html.append(table(headers, [[_cell(c) for c in r] for r in rows], numeric=numeric, row_classes=row_classes))


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return value


def attr(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def flat_proposals(proposals: Any) -> list[tuple[str | None, Any]]:
    if not proposals:
        return []
    if isinstance(proposals, Mapping):
        return [(sobject, p) for sobject, items in proposals.items() for p in items]
    return [(None, p) for p in proposals]


def _records(clio_schema: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = clio_schema.get(key) or []
    if not isinstance(value, list) or any(not isinstance(r, Mapping) for r in value):
        raise ValueError(f"clio_schema[{key!r}] must be a list of records")
    return value


def _column_field(column: str) -> str:
    """The Salesforce field behind a neutral-row column (``Case__r.Clio_Id__c`` -> ``Case__c``)."""
    if "." not in column:
        return column
    rel = column.split(".")[0]
    if ":" in rel:  # polymorphic What/Who
        rel = rel.split(":")[1]
    return rel[:-3] + "__c" if rel.endswith("__r") else rel + "Id"


def _field_exists(describes: Mapping[str, Any], sobject: str, column: str, planned: set[tuple[str, str]]) -> str:
    """``yes`` (in the describe), ``to create`` (in the schema plan), ``?`` (no describe) or ``MISSING``."""
    name = _column_field(column).lower()
    describe = describes.get(sobject)
    if describe and name in {f["name"].lower() for f in describe.get("fields") or ()}:
        return "yes"
    carriers = ("Activity", sobject) if sobject in ("Task", "Event") else (sobject,)
    if any((c, name) in planned for c in carriers):
        return "to create"
    return "?" if not describe else "MISSING"


def _source_text(fspec: Mapping[str, Any]) -> str:
    if "owner" in fspec:
        if fspec.get("owner_of") == "calendar":
            return (f"the Clio user whose calendar is {fspec['owner']} (the user's default_calendar_id; "
                    "resolved through the user map)")
        return f"Clio user {fspec['owner']} (resolved through the user map)"
    if "template" in fspec:
        return f"template {fspec['template']}"
    if "const" in fspec:
        return f"constant {fspec['const']!r}"
    src = fspec.get("from")
    if isinstance(src, list):
        return "first non-empty of " + ", ".join(src)
    text = str(src or "")
    if fspec.get("ref"):
        text += f" (lookup to the migrated {fspec['ref']})"
    return text


def _transform_text(fspec: Mapping[str, Any]) -> str:
    parts = []
    if fspec.get("as"):
        parts.append(f"as {fspec['as']}")
    if fspec.get("max"):
        parts.append(f"max {fspec['max']} chars" + (f" (full value kept in {fspec['overflow']})" if fspec.get("overflow") else ""))
    if fspec.get("required"):
        parts.append("required" + (f", placeholder {fspec['placeholder']!r}" if fspec.get("placeholder") else ", else rejected"))
    if fspec.get("invalid_to"):
        parts.append(f"invalid values kept in {fspec['invalid_to']}")
    return "; ".join(parts)


def _unknown_note(vm: Any) -> tuple[str, str]:
    how = vm.on_unknown
    if how == "default":
        return f"NOT IN MAP: becomes {vm.default!r} with a repair note" if vm.default else "NOT IN MAP: left empty with a repair note", "warn"
    if how == "keep":
        return "NOT IN MAP: the Clio value is copied as is", "warn"
    if how == "drop":
        return "NOT IN MAP: field left empty with a repair note", "bad"
    return "NOT IN MAP: the record is REJECTED", "bad"


def mapping_document(
    spec: Any,
    clio_schema: Mapping[str, Any],
    describes: Mapping[str, Mapping[str, Any]],
    proposals: Any,
    schema_plan: Any,
    estimates: Mapping[str, Any],
    *,
    reference_counts: Mapping[str, int] | None = None,
    generated_at: str | None = None,
) -> tuple[str, str]:
    """Render the mapping specification as ``(markdown, html)``.

    :param spec: a :class:`~clio2sf.mapping.spec.MappingSpec`.
    :param clio_schema: discovery reads: ``counts`` {object: n}, ``custom_fields``, ``practice_areas``,
        ``matter_stages``, ``users`` (lists of Clio records); optional ``firm_name``,
        ``matter_counts_by_practice_area`` {area: n} and ``observed_values`` {value map: [values]}.
    :param describes: Salesforce describes by object name.
    :param proposals: proposer output, a list or ``{sobject: [Proposal, ...]}``.
    :param schema_plan: a :class:`~clio2sf.mapping.schema_plan.SchemaPlan`.
    :param estimates: the dict from :func:`clio2sf.discovery.estimates.estimates`.
    :param reference_counts: items per reference file (links in "what does not migrate").
    """
    at = generated_at or datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    counts: Mapping[str, int] = clio_schema.get("counts") or {}
    sf_objects: Mapping[str, Any] = (estimates.get("salesforce") or {}).get("objects") or {}
    firm = clio_schema.get("firm_name") or spec.data.get("firm") or spec.firm or "(unnamed firm)"
    d = _Doc()
    title = f"Mapping specification: {firm}"
    d.md += [f"# {_md(title)}", ""]
    facts = [("Firm", firm), ("Firm config", spec.firm or "default"), ("Mapping hash", spec.content_hash),
             ("Generated at", at), ("Status", "awaiting approval")]
    d.table(["", ""], facts)
    d.p(f"Status: awaiting approval. Nothing is written to Salesforce until this mapping (hash "
        f"{spec.content_hash[:12]}) is confirmed.", "warn")

    # -- matter decision
    opts = spec.options
    d.h2("Matters: Case or Opportunity")
    matters = counts.get("matters", 0)
    d.p(f"{matters:,} Clio matters. By default matters become {opts['matter_object']} records; practice areas "
        f"are carried as {'Record Types' if opts.get('practice_area_as') == 'record_type' else 'the Type picklist'}.")
    if opts.get("matter_object_field"):
        d.p(f"Mixed mapping: the matter custom field {opts['matter_object_field']!r} (value Case or Opportunity) "
            "decides per matter, before the practice-area rule.")
    split = [(o, sf_objects.get(o, {}).get("records", 0)) for o in spec.matter_objects]
    d.table(["Salesforce object", "Matters (estimated)"], split, numeric=[1])
    by_area = opts.get("matter_object_by_practice_area") or {}
    area_counts = clio_schema.get("matter_counts_by_practice_area") or {}
    areas = [p.get("name") for p in _records(clio_schema, "practice_areas") if p.get("name")]
    areas += [a for a in by_area if a not in areas]
    if areas:
        d.h3("By practice area")
        rows = [(a, spec.matter_target({"practice_area": {"name": a}}),
                 "configured" if a in by_area else "default", area_counts.get(a, "")) for a in areas]
        d.table(["Practice area", "Target", "Rule", "Matters"], rows, numeric=[3])

    # -- object table
    d.h2("Objects")
    obj_rows = []
    for label, sources, targets, counted in CLIO_OBJECT_ROWS:
        n = sum(counts.get(s, 0) for s in sources)
        loaded = [(t, sf_objects[t]) for t in counted if t in sf_objects]
        shown = [t for t in targets if t not in _MATTER_LINKED or _MATTER_LINKED[t] in spec.matter_objects]
        target_text = ", ".join(shown)
        if label == "Matter Type":
            kind = "Record Type" if opts.get("practice_area_as") == "record_type" else "Type"
            target_text = " / ".join(f"{o} {kind}" for o in spec.matter_objects)
        records = sum(p["records"] for _, p in loaded)
        methods = ", ".join(sorted({p["method"] for _, p in loaded})) or "-"
        obj_rows.append((label, " + ".join(sources), n, target_text, records if counted else "", methods))
    d.table(["Clio object", "Clio source", "Clio records", "Salesforce object", "Salesforce rows", "Load method"],
            obj_rows, numeric=[2, 4])
    d.p("Load method: bulk = Bulk API 2.0 upsert on Clio_Id__c; composite = REST sObject collections "
        "(200 rows per request); rest-file = one REST request per file. Task rows (tasks, communications and "
        "non-billable time) are counted once, on the Task line; the estimates below give every object.")

    # -- field mappings
    planned = {(f.sobject, f.name.lower()) for f in schema_plan.fields}
    d.h2("Field mappings")
    for key, ospec in spec.objects.items():
        sobject = key.split("@")[0]
        if sobject in ("Case", "CaseContactRole") and "Case" not in spec.matter_objects:
            continue
        if sobject in ("Opportunity", "OpportunityContactRole") and "Opportunity" not in spec.matter_objects:
            continue
        source = ospec.get("source")
        src_text = ", ".join(source) if isinstance(source, list) else str(source)
        d.h3(f"{key} (from Clio {src_text})")
        if ospec.get("natural_key"):
            d.p(f"Idempotent by natural key: {', '.join(ospec['natural_key'])} (no custom fields on this object).")
        rows, classes = [], []
        for target, fspec in (ospec.get("fields") or {}).items():
            status = _field_exists(describes, sobject, target, planned)
            rows.append((target, _source_text(fspec), _transform_text(fspec), fspec.get("map") or "", status))
            classes.append("bad" if status == "MISSING" else "")
        for link, lspec in (ospec.get("links") or {}).items():
            for target_obj, column in (lspec.get("columns") or {}).items():
                if target_obj in ("Case", "Opportunity") and target_obj not in spec.matter_objects:
                    continue
                status = _field_exists(describes, sobject, column, planned)
                rows.append((column, f"{lspec.get('from')} ({link} link)", f"lookup by Clio_Id__c to {target_obj}", "", status))
                classes.append("bad" if status == "MISSING" else "")
        if rows:
            d.table(["Salesforce field", "Clio source", "Transform", "Value map", "In org"], rows, row_classes=classes)
        elif not ospec.get("natural_key"):
            d.p("Built by the transform from several Clio objects (see the rate hierarchy reference).")
    d.p("Every migrated record also gets Clio_Id__c (external id, e.g. contact-9001) and Clio_Created_Date__c. "
        "In org: yes = the field exists; to create = in the custom field list below; MISSING = neither.")

    # -- value maps
    d.h2("Value mappings")
    observed = clio_schema.get("observed_values") or {}
    for name, vm in spec.value_maps.items():
        if name in _MAP_APPLIES and not _MAP_APPLIES[name](spec):
            continue
        seen = list(KNOWN_SOURCE_VALUES.get(name, ()))
        if name in PRACTICE_AREA_MAPS:
            seen += [p.get("name") for p in _records(clio_schema, "practice_areas") if p.get("name")]
        seen += list(observed.get(name) or ())
        d.h3(name)
        rows, classes = [], []
        for src, tgt in vm.values.items():
            rows.append((src, tgt, ""))
            classes.append("")
        note, cls = _unknown_note(vm)
        for value in dict.fromkeys(v for v in seen if v is not None and v not in vm.values):
            rows.append((value, "", note))
            classes.append(cls)
        if vm.default:
            rows.append(("(any other value)", vm.default, "default"))
            classes.append("")
        d.table(["Clio value", "Salesforce value", "Flag"], rows, row_classes=classes)
        flagged = sum(1 for c in classes if c)
        if flagged:
            d.p(f"{flagged} Clio value(s) seen for {name} are not in the map.", "warn")

    # -- custom fields and record types
    d.h2("Custom objects and fields to create")
    d.p("The Salesforce admin creates these before extraction (or enables the opt-in schema apply task). "
        "Task and Event fields are created on Activity.")
    d.table(["Custom object", "Label", "Status"],
            [(o["name"], o["label"], "exists" if o["exists"] else "to create") for o in schema_plan.objects])
    field_rows = []
    for f in schema_plan.fields:
        size = f"{f.length}" if f.length else (f"{f.precision},{f.scale if f.scale is not None else 2}" if f.precision else "")
        if f.type == "Picklist":
            size = f"{len(f.values)} values"
        if f.type == "Lookup":
            size = f"to {f.reference_to}"
        field_rows.append((f.sobject, f.name, f.label, f.type, size, f.external_id, f.unique,
                           "exists" if f.exists else "to create", f.reason))
    d.table(["Object", "Field API name", "Label", "Type", "Length / precision", "External ID", "Unique", "Status", "Why"],
            field_rows, row_classes=["" if f.exists else "warn" for f in schema_plan.fields])
    d.h2("Record types")
    d.table(["Object", "Developer name", "Label", "Status"],
            [(r["sobject"], r["name"], r["label"], "exists" if r["exists"] else "to create") for r in schema_plan.record_types])

    # -- proposals
    d.h2("Proposals for Clio custom fields and unmapped fields")
    prows, pclasses, low = [], [], 0
    for sobject, p in flat_proposals(proposals):
        src = attr(p, "source")
        parent = attr(src, "parent", "")
        conf = float(attr(p, "confidence", 0.0))
        target = attr(p, "target")
        new = attr(p, "new_field")
        proposal = target if target else f"new field {new.get('name')} ({new.get('type')})" if new else "(none)"
        flag = "needs a decision" if conf < LOW_CONFIDENCE else ""
        low += bool(flag)
        prows.append((f"{parent}: {attr(src, 'name')}", attr(src, "field_type", ""), sobject or "", proposal,
                      f"{conf:.0%}", attr(p, "reason", ""), flag))
        pclasses.append("warn" if flag else "")
    d.table(["Clio field", "Clio type", "Salesforce object", "Proposal", "Confidence", "Why", "Decision"],
            prows, row_classes=pclasses)
    if low:
        d.p(f"{low} proposal(s) below {LOW_CONFIDENCE:.0%} confidence need a decision: record it under "
            "options.custom_fields.decisions in the firm config.", "warn")
    deleted = [cf for cf in _records(clio_schema, "custom_fields") if cf.get("deleted")]
    if deleted:
        d.p(f"{len(deleted)} deleted Clio custom field(s) are not migrated: "
            + ", ".join(f"{cf.get('parent_type')}: {cf.get('name')}" for cf in deleted))

    # -- users
    d.h2("Users")
    users = _records(clio_schema, "users")
    enabled = sum(1 for u in users if u.get("enabled", True))
    d.p(f"{len(users):,} Clio users ({enabled:,} enabled). The user resolution phase matches them to "
        "Salesforce users by email; unmatched users fall back to the firm's fallback owner.")
    by_sub = Counter(u.get("subscription_type") or "(none)" for u in users)
    by_role = Counter(r for u in users for r in (u.get("roles") or ["(no role)"]))
    d.table(["Subscription / role", "Users"],
            [(f"subscription: {k}", v) for k, v in sorted(by_sub.items())] + [(f"role: {k}", v) for k, v in sorted(by_role.items())],
            numeric=[1])

    # -- estimates
    _estimates_section(d, estimates)

    # -- not migrated
    d.h2("What does not migrate")
    d.p("Exported as JSON reference files for the Salesforce admin to rebuild (Flow, validation rules, templates):")
    refs = reference_counts or {}
    d.bullets((f"{name}: {REFERENCE_TITLES[name]}" + (f" ({refs[name]:,} item(s))" if name in refs else ""),
               f"reference/{name}") for name in REFERENCE_TITLES)
    d.bullets(["Clio client portal (Clio for Clients) access and shared items, and its conversations and "
               "messages (not read: client-portal messaging has no Salesforce counterpart in this mapping)",
               "comments on document versions (not read)",
               "log entries (the Recents list: views, not an audit trail)",
               "calendar entry event types (the entry keeps its summary; types are a colour code in Clio)",
               "trust requests as such (only the resulting trust bills are migrated)",
               "outstanding client balances after cutover: Clio_Client_Balance__c is a snapshot taken at each "
               "full extraction (the endpoint has no updated_since, so delta windows do not refresh it; the bills' "
               "own balances do refresh)"])
    return "\n".join(d.md).rstrip() + "\n", page(title, "".join(d.html), subtitle=f"Mapping {spec.content_hash} — {at}")


def _estimates_section(d: _Doc, est: Mapping[str, Any]) -> None:
    d.h2("Estimates")
    clio = est.get("clio") or {}
    sf = est.get("salesforce") or {}
    peak, off = clio.get("peak") or {}, clio.get("offpeak")
    rows: list[tuple[str, Any]] = [
        ("Clio requests (total)", clio.get("total_requests", 0)),
        ("  list pages", clio.get("list_requests", 0)),
        ("  document downloads", clio.get("document_downloads", 0)),
        ("  discovery calls", clio.get("discovery_requests", 0)),
        (f"Extraction at peak ({peak.get('limit_per_window')}/min)", peak.get("human", "")),
    ]
    if off:
        rows.append((f"Extraction off-peak ({off.get('limit_per_window')}/min)", off.get("human", "")))
    rows += [
        ("Salesforce rows", sf.get("records", 0)),
        ("Data storage", f"{sf.get('data_storage_mb', 0):,.1f} MB"),
        ("File storage", f"{sf.get('file_storage_mb', 0):,.1f} MB"),
        ("Bulk API 2.0 jobs", sf.get("bulk_jobs", 0)),
        ("Bulk API batches (10,000 rows each)", sf.get("bulk_batches", 0)),
        ("Salesforce API calls", sf.get("api_calls", 0)),
    ]
    d.table(["Figure", "Value"], rows, numeric=[1])
    if clio.get("schedule_hint"):
        d.p(clio["schedule_hint"])
    objs = sf.get("objects") or {}
    d.table(["Salesforce object", "Rows", "Method", "Bulk jobs", "Bulk batches", "API calls", "Data MB"],
            [(o, p["records"], p["method"], p["bulk_jobs"], p["bulk_batches"], p["api_calls"], p["data_storage_mb"])
             for o, p in objs.items()], numeric=[1, 3, 4, 5, 6])
    for note in est.get("notes") or ():
        d.p(f"Approximation: {note}.")

