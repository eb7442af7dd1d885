"""The verification report of one run: ``verification.{csv,html,json}``.

CSV cells go through ``reports.csv_cell`` (a text a spreadsheet would read as a formula gets a
leading apostrophe): client data is not trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from clio2sf import reports
from clio2sf.verify.compare import EXPLAINED, MISMATCH, Finding, Result

HEADERS = ["status", "sobject", "field", "check", "key", "source", "clio_path", "expected", "actual", "reason"]


def csv_text(rows: Iterable[Sequence[Any]], headers: Sequence[str] = HEADERS) -> str:
    return reports.csv_text(headers, rows)


def finding_rows(findings: Iterable[Finding]) -> Iterator[list[Any]]:
    order = {MISMATCH: 0, EXPLAINED: 1}
    for f in sorted(findings, key=lambda f: (order.get(f.status, 9), f.sobject, f.field, f.key)):
        yield [f.status, f.sobject, f.field, f.check, f.key, f.source, f.clio_path, f.expected, f.actual, f.reason]


def summary(result: Result, accounting: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-able figures: totals, unexplained per (object, field), per-object counts."""
    by_field = result.by_field()
    out: dict[str, Any] = {
        **result.totals(),
        "unexplained_by_field": [{"sobject": s, "field": f, "count": n} for (s, f), n in sorted(by_field.items())],
        "explained_by_field": [{"sobject": s, "field": f, "count": n}
                               for (s, f), n in sorted(result.by_field(EXPLAINED).items())],
        "by_object": {s: {"records": result.records[s], "fields": result.fields[s], "matches": result.matches[s]}
                      for s in sorted(set(result.fields) | set(result.records))},
        "notes": result.notes,
    }
    if accounting is not None:
        out["accounting"] = accounting
    return out


def failure_message(result: Result, limit: int = 12) -> str | None:
    """``Event.OwnerId: 40 mismatch(es); ...`` or None when nothing is unexplained."""
    by_field = result.by_field()
    if not by_field:
        return None
    parts = [f"{s}.{f}: {n}" for (s, f), n in sorted(by_field.items(), key=lambda kv: (-kv[1], kv[0]))]
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return f"{sum(by_field.values())} unexplained mismatch(es): " + "; ".join(parts[:limit]) + more


def html_text(result: Result, accounting_html: str = "", title: str = "Source-to-target verification") -> str:
    t = result.totals()
    bad = t["mismatches"]
    body = [reports.banner(f"{bad} unexplained mismatch(es), {t['explained']} explained" if bad else
                           f"All {t['fields_compared']} compared values match ({t['explained']} explained)",
                           "bad" if bad else "ok")]
    body.append("<h2>Summary</h2>")
    body.append(reports.table(["Records compared", "Values compared", "Match", "Unexplained", "Explained"],
                              [[t["records_compared"], t["fields_compared"], t["matches"], t["mismatches"],
                                t["explained"]]], numeric=range(5)))
    objs = sorted(set(result.fields) | set(result.records))
    body.append(reports.table(["Object", "Records", "Values", "Match"],
                              [[s, result.records[s], result.fields[s], result.matches[s]] for s in objs],
                              numeric=range(1, 4)))
    by_field = result.by_field()
    if by_field:
        body.append("<h2>Unexplained mismatches by object and field</h2>")
        body.append(reports.table(["Object", "Field", "Count"], [[s, f, n] for (s, f), n in sorted(by_field.items())],
                                  numeric=[2]))
    body.append(accounting_html)
    if result.findings:
        body.append("<h2>Differences</h2>")
        rows = list(finding_rows(result.findings))[:5000]
        body.append(reports.table(HEADERS, rows, row_classes=["bad" if r[0] == MISMATCH else "warn" for r in rows]))
    if result.notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{reports.esc(n)}</li>" for n in result.notes) + "</ul>")
    return reports.page(title, "".join(body), subtitle="What Salesforce holds, compared with what Clio's raw "
                        "extraction and the mapping spec say it must hold")


def write(out_dir: Any, result: Result, accounting: Mapping[str, Any] | None = None, accounting_html: str = "",
          stem: str = "verification", extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``<stem>.csv`` (every difference), ``<stem>.html`` and ``<stem>.json``; return the summary."""
    reports.write_text(out_dir / f"{stem}.csv", csv_text(finding_rows(result.findings)))
    reports.write_text(out_dir / f"{stem}.html", html_text(result, accounting_html))
    data = {**summary(result, accounting), **(extra or {})}
    reports.write_json(out_dir / f"{stem}.json", data)
    return data


def findings_as_dicts(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in findings]
