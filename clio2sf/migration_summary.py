"""The firm-facing migration summary: one printable HTML page an ops lead can send to the firm.

Built from what the phases already staged (never from what the transform sent):

* what moved: the latest full-load reconciliation (``reports/<run>/reconciliation.json``):
  records per object (in Clio, loaded, rejected, missing) and the amount figures (Clio vs Salesforce);
* what was left behind and why: the rejects by reason, and discover's reference exports
  (workflows, templates, billing and trust rules...) which do not migrate by design;
* sign-offs: every approval and rejection of the mapping and of the sample (who, when, why);
* dates: discover, the approvals, the full load and the latest delta window.

Pure logic: takes a path-like migration root (``pathlib.Path``, ``UPath``, ``ObjectStoragePath``).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import yaml

from clio2sf import reports
from clio2sf.discovery.reference import REFERENCE_TITLES
from clio2sf.reconcile import amounts_html, reconciliation_from_json


def money(value: Any, currency: str | None = None) -> str:
    """``1234.5`` → ``1,234.50`` (``1,234.50 USD`` with a currency); see :func:`clio2sf.reports.money`."""
    return reports.money(value, currency)


def label(name: str) -> str:
    """``Time_Entry__c`` → ``Time Entry``; ``bank_transactions`` → ``Bank transactions``."""
    text = name.removesuffix("__c").replace("__", " ").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _read_json(path: Any) -> Any:
    if not path.exists():
        return None
    with path.open("rb") as fh:
        return json.loads(fh.read())


def _read_yaml(path: Any) -> Any:
    if not path.exists():
        return None
    with path.open("r", encoding="utf-8") as fh:
        return yaml.safe_load(fh.read())


def _children(path: Any) -> list[Any]:
    return sorted(path.iterdir(), key=lambda p: p.name) if path.exists() else []


def latest_reconciliation(root: Any) -> tuple[str | None, dict | None]:
    """(run id, reconciliation.json) of the newest full-load reconciliation, by the run folder's name."""
    found = [(d.name, d / "reconciliation.json") for d in _children(root / "reports") if (d / "reconciliation.json").exists()]
    if not found:
        return None, None
    # run ids start with their kind and an ISO date: sort by the date part, not the kind
    name, path = max(found, key=lambda item: item[0].split("__", 1)[-1])
    return name, _read_json(path)


def signoffs(root: Any) -> list[dict[str, Any]]:
    rows = []
    for kind in ("mapping", "sample"):
        doc = _read_yaml(root / "approvals" / f"{kind}.yaml") or {}
        for entry in doc.get("confirmations") or []:
            rows.append({"what": kind, "decision": entry.get("decision") or "approved", "by": entry.get("by"),
                         "at": entry.get("at"), "hash": str(entry.get("hash"))[:12], "reason": entry.get("reason") or ""})
    return sorted(rows, key=lambda r: str(r["at"]))


def summary_data(root: Any, *, firm: str, firm_name: str | None, migration_id: str) -> dict[str, Any]:
    run, rec = latest_reconciliation(root)
    objects = (rec or {}).get("objects") or []
    reasons: Counter[tuple[str, str]] = Counter()
    for o in objects:
        for reason, n in (o.get("reject_reasons") or {}).items():
            reasons[(o["object"], reason)] += int(n)
    reference = [p.name for p in _children(root / "discover" / "reference") if p.name.endswith(".json")]
    marks = ((_read_json(root / "delta" / "watermarks.json") or {}).get("objects") or {}).values()
    last_delta = max((m.get("committed_at") or "" for m in marks), default="") or None
    return {
        "firm": firm, "firm_name": firm_name or firm, "migration_id": migration_id, "full_load_run": run,
        "exact": (rec or {}).get("exact"), "headline": (rec or {}).get("headline"),
        "currency": (rec or {}).get("currency"), "names": (rec or {}).get("names") or {},
        "objects": objects, "amounts": (rec or {}).get("amounts") or [],
        "rejects": [{"object": o, "reason": r, "count": n} for (o, r), n in sorted(reasons.items())],
        "left_behind": [{"what": name.removesuffix(".json"),
                         "why": REFERENCE_TITLES.get(name, "reference only: does not migrate")}
                        for name in reference],
        "signoffs": signoffs(root), "last_delta": last_delta,
    }


def summary_html(data: dict[str, Any], *, generated_at: datetime | None = None) -> str:
    """The printable page (``@media print`` friendly: no navigation, tables only)."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        reports.table(["Firm", "Migration", "Full load run", "Latest delta window", "Generated"],
                      [[data["firm_name"], data["migration_id"], data["full_load_run"] or "(no full load yet)",
                        data["last_delta"] or "–", when]]),
    ]
    if data["headline"] is not None:
        body.append(reports.banner(f"Reconciliation: {data['headline']}", "ok" if data["exact"] else "bad"))
    else:
        body.append(reports.banner("No full load has been reconciled yet.", "warn"))
    body.append("<h2>What moved</h2>")
    rows = [[label(o["object"]), o.get("expected"), o.get("loaded"), o.get("rejected"), o.get("missing"),
             "OK" if o.get("ok") else "CHECK"] for o in data["objects"]]
    body.append(reports.table(["Records", "In Clio", "In Salesforce", "Rejected", "Missing", "Result"], rows,
                              numeric=range(1, 5)) if rows else "<p class='muted'>Nothing loaded yet.</p>")
    if data["amounts"]:
        body.append("<h2>Amounts</h2>")
        body.append(amounts_html(reconciliation_from_json({"amounts": data["amounts"]}).amounts,
                                 currency=data.get("currency"), labels=data.get("names"),
                                 full="the full load's reconciliation.csv"))
    body.append("<h2>Left behind, and why</h2>")
    left = [[label(r["object"]), r["reason"], r["count"]] for r in data["rejects"]]
    body.append(reports.table(["Records", "Rejected because", "Count"], left, numeric=[2]) if left
                else "<p>No record was rejected.</p>")
    if data["left_behind"]:
        body.append(reports.table(["Configuration (exported for the Salesforce admin, not migrated)", "What it holds, how to rebuild it"],
                                  [[label(r["what"]), r["why"]] for r in data["left_behind"]]))
    body.append("<h2>Sign-offs</h2>")
    body.append(reports.table(["What", "Decision", "By", "At", "Mapping hash", "Reason"],
                              [[r["what"], r["decision"], r["by"], r["at"], r["hash"], r["reason"]]
                               for r in data["signoffs"]])
                if data["signoffs"] else "<p class='muted'>No sign-off recorded.</p>")
    return reports.page(f"Migration summary: {data['firm_name']}", "".join(body),
                        subtitle=f"Clio Manage → Salesforce, migration {data['migration_id']}")
