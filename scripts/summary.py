"""The demo's closing summary: records on both sides, rejects, diff mismatches, verification, API calls, reports."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from clio2sf import catalog

CLIO_TO_SF = {
    "contacts": "Contact / Account", "matters": "Case", "relationships": "CaseContactRole",
    "bills": "Clio_Billing__c", "line_items": "Clio_Line_Item__c", "trust_line_items": "Clio_Trust_Line_Item__c",
    "bank_transactions": "Ledger__c", "activities": "Time_Entry__c / Expense__c / Task",
    "calendar_entries": "Event", "tasks": "Task", "documents": "ContentVersion (each version)", "communications": "Task",
    "matter_notes": "ContentNote", "contact_notes": "ContentNote",
    "allocations": "Clio_Payment__c", "credit_memos": "Clio_Credit_Memo__c", "interest_charges": "Clio_Interest_Charge__c",
    "outstanding_client_balances": "Clio_Client_Balance__c", "damages": "Clio_Damage__c",
    "medical_records_details": "Clio_Medical_Record__c",
}


def _count_lines(folder: Path, repairs: bool = False) -> Counter:
    """Reject lines per rule: quarantined records, or with ``repairs`` the repairs (records that loaded)."""
    rules: Counter = Counter()
    if folder.exists():
        for f in folder.rglob("*.jsonl"):
            for line in f.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if (rec.get("repair") is not None) == repairs:
                        rules[rec.get("rule", "?")] += 1
    return rules


def _latest(root: Path, pattern: str) -> Path | None:
    found = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def print_summary(root: Path, clio, sf, timings: dict[str, float]) -> None:
    clio_counts = clio.counts(catalog.CLIO_OBJECTS)
    sf_counts = sf.counts()
    print("\n== Summary ==")
    print(f"{'Clio object':<20}{'in Clio':>9}   {'Salesforce object':<34}")
    for obj, target in CLIO_TO_SF.items():
        print(f"{obj:<20}{clio_counts.get(obj, 0):>9}   {target:<34}")
    print("\nSalesforce rows now:", ", ".join(f"{k} {v}" for k, v in sorted(sf_counts.items()) if v))
    transform_rejects = _count_lines(root / "rejects" / "transform")
    load_rejects = _count_lines(root / "rejects" / "load")
    print(f"rejects (quarantined, with reasons): transform {sum(transform_rejects.values())} "
          f"{dict(transform_rejects)}, load {sum(load_rejects.values())} {dict(load_rejects)}")
    repairs = _count_lines(root / "rejects" / "transform", repairs=True)
    if repairs:  # owner_fallback: a record the fallback owner holds because its Clio user is not matched
        print(f"repairs (loaded, noted in the reject report): {dict(sorted(repairs.items()))}")
    diff = root / "sample" / "diff_summary.json"
    if diff.exists():
        d = json.loads(diff.read_text())
        print(f"sample diff: {d.get('records')} records, {d.get('fields_compared')} fields, "
              f"{d.get('mismatches')} unexplained mismatches, {d.get('explained')} explained")
    rec = _latest(root, "reports/*/reconciliation.json")
    if rec is not None:
        r = json.loads(rec.read_text())
        print(f"reconciliation: {r.get('headline') or r.get('summary') or ''}".rstrip())
        book = r.get("books") or {}
        if book:
            print(f"  {book.get('headline')}")
            for row in book.get("bills", [])[:6]:
                c, s = row.get("clio") or {}, row.get("salesforce") or {}
                print(f"    invoice {row.get('number')}: total {c.get('total')} = paid {c.get('paid')} "
                      f"(trust {c.get('paid_from_trust')}) + credited {c.get('credited')} + outstanding "
                      f"{c.get('outstanding')} | Salesforce {s.get('total')} = {s.get('paid')} + {s.get('credited')} "
                      f"+ {s.get('outstanding')}: {'OK' if row.get('ok') else row.get('status')}")
            if len(book.get("bills", [])) > 6:
                print(f"    ... {len(book['bills']) - 6} more bills in the report")
    runs = sorted(root.glob("reports/*/verification.json"), key=lambda p: p.stat().st_mtime)
    loaded = [json.loads(p.read_text()) for p in runs]
    v = next((v for v in reversed(loaded) if v.get("scope", "all") == "all"), None)
    if v is not None:
        acct = v.get("accounting") or {}
        print(f"verification of the full load (Clio raw + spec vs Salesforce): {v.get('records_compared')} records, "
              f"{v.get('fields_compared')} values compared, {v.get('mismatches')} unexplained mismatches, "
              f"{v.get('explained')} explained")
        for row in v.get("unexplained_by_field", [])[:8]:
            print(f"    {row['sobject']}.{row['field']}: {row['count']}")
        print(f"field accounting: {acct.get('fields')} Clio fields, {acct.get('values_migrated')} values migrated, "
              f"{acct.get('values_left_behind')} left behind by an approved \"not migrated\", "
              f"{len(acct.get('unaccounted') or [])} field(s) with data unaccounted")
        for name in (acct.get("unaccounted") or [])[:8]:
            print(f"    unaccounted: {name}")
    w = next((v for v in reversed(loaded) if v.get("scope") == "subset"), None)
    if w is not None:
        print(f"verification of the delta window: {w.get('records_compared')} records, {w.get('fields_compared')} "
              f"values compared, {w.get('mismatches')} unexplained mismatches, {w.get('explained')} explained")
    clio_log = clio.request_log()
    sf_log = sf.request_log()
    sf_calls = sf_log.get("total_api_calls", 0) if isinstance(sf_log, dict) else len(sf_log)
    print(f"API calls: Clio {len(clio_log)} requests, {sum(1 for r in clio_log if r.get('status') == 429)} × 429; "
          f"Salesforce {sf_calls}")
    print("phase wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print("\nReports:")
    for rel in ("discover/mapping_spec.html", "discover/schema_plan.md", "users/user_report.html",
                "sample/diff.html"):
        if (root / rel).exists():
            print(f"  {root / rel}")
    for pattern in ("reports/*/reconciliation.html", "reports/*/verification.html", "delta/*/conflicts.html", "reports/*/rollback.html"):
        found = _latest(root, pattern)
        if found is not None:
            print(f"  {found}")
