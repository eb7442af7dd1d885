"""Write the discover phase's files under ``<migration root>/discover/`` (see docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from clio2sf import staging
from clio2sf.discovery.document import LOW_CONFIDENCE, attr, flat_proposals, mapping_document
from clio2sf.discovery.estimates import Finding
from clio2sf.discovery.reference import item_counts, reference_exports
from clio2sf.reports import write_json, write_text
from clio2sf.verify import accounting as field_accounting

DISCOVER_DIR = "discover"


def write_discovery_outputs(
    root: Any,
    *,
    spec: Any,
    clio_schema: Mapping[str, Any],
    describes: Mapping[str, Mapping[str, Any]],
    proposals: Any,
    schema_plan: Any,
    estimate: Mapping[str, Any],
    clio_config: Mapping[str, Any] | None = None,
    rate_document: Mapping[str, Any] | None = None,
    findings: Iterable[Finding] = (),
    spec_problems: Iterable[Any] = (),
    generated_at: str | None = None,
) -> dict[str, Any]:
    """Build the reference exports and the mapping document, write every file, return paths and counts.

    :param root: the migration root (``<staging root>/<firm>/<migration_id>``), any pathlib-like path.
    :param clio_config: the configuration reads for :func:`reference_exports` (default: ``clio_schema``).
    :param findings: capacity pre-flight findings, stored in ``estimates.json`` under ``capacity``.
    :param spec_problems: the spec's problems against the org's describes (``validate_spec_against_describes``):
        listed near the top of the mapping document, before anything else, so the reviewer sees them.
    :returns: a small XCom-able dict: relative paths (under ``root``) and counts.
    """
    out_dir = root / DISCOVER_DIR
    staging.ensure_dir(out_dir)
    refs = reference_exports(clio_config if clio_config is not None else clio_schema,
                             rate_document=rate_document, generated_at=generated_at)
    ref_counts = item_counts(refs)
    markdown, html = mapping_document(spec, clio_schema, describes, proposals, schema_plan, estimate,
                                      reference_counts=ref_counts, generated_at=generated_at)
    findings = list(findings)
    files: dict[str, str] = {}
    accounting_rows = field_accounting.plan(spec, clio_schema.get("custom_fields") or ())
    markdown = markdown + "\n" + field_accounting.plan_markdown(accounting_rows)
    html = html.replace("</body>", field_accounting.plan_html(accounting_rows) + "</body>", 1)
    problems_md, problems_html = spec_problems_section(list(spec_problems))
    markdown = _before_first(markdown, "\n## ", "\n" + problems_md)
    html = _before_first(html, "<h2>", problems_html)

    def put(name: str, writer: Any, payload: Any) -> None:
        writer(out_dir / name, payload)
        files[name] = f"{DISCOVER_DIR}/{name}"

    put("mapping_spec.md", write_text, markdown)
    put("mapping_spec.html", write_text, html)
    put("schema_plan.md", write_text, schema_plan.to_markdown())
    put("schema_plan.csv", write_text, schema_plan.to_csv())
    put("schema_plan.json", write_json, {"spec_hash": schema_plan.spec_hash, "items": schema_plan.rows(),
                                         "tooling_payloads": [{"sobject": s, "body": b} for s, b in schema_plan.tooling_payloads()]})
    put("field_accounting.json", write_json, {"spec_hash": spec.content_hash, "fields": accounting_rows})
    put("estimates.json", write_json, {**estimate, "capacity": [f.to_dict() for f in findings]})
    for name, doc in refs.items():
        put(f"reference/{name}", write_json, doc)
    flat = flat_proposals(proposals)
    return {
        "mapping_hash": spec.content_hash,
        "files": files,
        "counts": {
            "fields_to_create": sum(1 for f in schema_plan.fields if not f.exists),
            "objects_to_create": sum(1 for o in schema_plan.objects if not o["exists"]),
            "record_types_to_create": sum(1 for r in schema_plan.record_types if not r["exists"]),
            "proposals": len(flat),
            "needs_decision": sum(1 for _, p in flat if float(attr(p, "confidence", 0.0)) < LOW_CONFIDENCE),
            "clio_requests": estimate["clio"]["total_requests"],
            "salesforce_records": estimate["salesforce"]["records"],
            "capacity_errors": sum(1 for f in findings if f.level == "error"),
            "capacity_warnings": sum(1 for f in findings if f.level == "warning"),
            "reference_items": ref_counts,
            "fields_unaccounted": sum(1 for r in accounting_rows if r["status"] == "unaccounted"),
        },
    }


_PROBLEM_KEYS = ("rule", "sobject", "field", "where", "message")


def _before_first(text: str, marker: str, insert: str) -> str:
    i = text.find(marker)
    return text + insert if i < 0 else text[:i] + insert + text[i:]


def spec_problems_section(problems: list[Any]) -> tuple[str, str]:
    """The mapping document's "Spec problems found against the org" section (markdown, escaped HTML)."""
    from clio2sf.reports import banner, md_text, table

    rows = [[getattr(p, k, None) if not isinstance(p, Mapping) else p.get(k) for k in _PROBLEM_KEYS]
            if not isinstance(p, str) else ["", "", "", "", p] for p in problems]
    title = "Spec problems found against the org"
    if not rows:
        return (f"## {title}\n\nNone: every mapped field exists in the org with a compatible type.\n",
                f"<h2>{title}</h2>{banner('None: every mapped field exists in the org with a compatible type.')}")
    what = (f"{len(rows)} problem(s) from checking the spec against the org's describes: fields the org lacks, "
            "cannot take as the spec writes them, or requires while the spec leaves them out. Review each before "
            "confirming; to fix one, change the spec key named under Where (or the org) and run discover again.")
    md = [f"## {title}", "", md_text(what), "", "| Rule | Object | Field | Where | Problem |", "|---|---|---|---|---|"]
    md += ["| " + " | ".join(md_text(c) for c in r) + " |" for r in rows]
    html = (f"<h2>{title}</h2>" + banner(what, "bad")
            + table(["Rule", "Object", "Field", "Where", "Problem"], rows))
    return "\n".join(md) + "\n", html
