"""Peak RSS of the full load's reconcile step (``reconcile_migration``, what ``mig_05_full_load.reconcile`` runs).

``python -m benchmarks.bench_reconcile_memory [--records 100000 1000000] [--work DIR] [--code DIR]``

A synthetic staged firm of ``--records`` Clio records (no sandbox: the Clio side is written straight
to ``raw/`` and ``transformed/`` the way the extraction and the transform leave them, about 2.5
Salesforce rows per record as in the sandbox's seeded firms: matters, contacts, activities (time
entries, expenses and non-billable ones as Tasks), tasks, bills in every Clio state (a third live:
awaiting payment, or paid by an allocation, half of them from trust), bank transactions (deposits and
withdrawals on every matter, four matters in five through the trust account, whose balance each matter
reports), calendar entries with occurrences, relationships as CaseContactRole rows: natural-key rows
the reconciliation finds through the full load's ledger and their Salesforce ids, 9% of the records as
in the xl run) and an org whose rows are generated as they are read (a
fake client holding nothing: the figure is the reconciliation's).  Every record is loaded once, so the
reconciliation must come out exact, the books included (every live bill ties out and agrees, every
matter's trust ledger balances: a reconcile that skipped its work would also be small).  A fresh
process runs ``reconcile_migration`` and prints its RSS before the call (the imports) and its peak
(``VmHWM``); the figure is the peak, target < 500 MB, and its growth from the smallest to the largest
size, target ≤ 1.2 (flat).  ``--code DIR`` measures another checkout's reconcile on the same firm (a
before figure); ``--record LABEL`` keeps the figures under LABEL in
``benchmarks/results/reconcile_memory.{json,md}`` (``--render`` writes the page again).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Figure, at_most, keep_run, met_text, print_figures, runs_page

FIRM, MIGRATION = "synth", "m1"
FLAT = 1.2
RESULTS = ROOT / "benchmarks" / "results"
#: Clio object → (share of the records, Clio kind); the rows each makes are in :func:`_rows`.
SHARES = {"matters": (0.04, "matter"), "contacts": (0.06, "contact"), "activities": (0.45, "activity"),
          "tasks": (0.10, "task"), "bills": (0.05, "bill"), "allocations": (0.05 / 6, "allocation"),
          "bank_transactions": (0.10, "bank_transaction"), "calendar_entries": (0.20, "calendar_entry"),
          "relationships": (0.09, "relationship")}
OCCURRENCES = 6  # Event rows per calendar entry (a recurring series)
#: natural-key sobjects (no Clio_Id__c: found through the ledger's Salesforce ids) and their keys
NATURAL_KEYS = {"CaseContactRole": ["CasesId", "ContactId", "Role"]}
ORG_ONLY = ("CasesId", "ContactId")  # a natural-key row's lookups as the org holds them (not staged)
LEDGER_RUN = "r-full"
#: Clio bill states, bill ``i`` in ``BILL_STATES[i % 6]`` (live: awaiting_payment, paid); Salesforce's picklist values
BILL_STATES = ("draft", "awaiting_approval", "awaiting_payment", "paid", "void", "deleted")
SF_BILL_STATES = ("Draft", "Awaiting Approval", "Awaiting Payment", "Paid", "Void", "Deleted")
BILL_TOTAL = "1200.10"
TRUST_ACCOUNT, OPERATING_ACCOUNT = 1, 2
DEPOSIT, WITHDRAWAL = "20.02", "-10.01"  # a matter's transactions alternate: its running balance never below zero


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _counts(records: int) -> dict[str, int]:
    counts = {obj: max(1, int(records * share)) for obj, (share, _) in SHARES.items()}
    counts["allocations"] = max(1, (counts["bills"] + 3) // 6)  # allocation j pays bill 6j - 3 (a paid one)
    return counts


def _bank(i: int, counts: dict[str, int]) -> tuple[int, int, str, str]:
    """(matter, account, amount, date) of bank transaction ``i``: on matter
    ``1 + (i - 1) % matters``, its ``k``-th there (a deposit when ``k`` is even, else a withdrawal, a day
    apart), through the operating account for every fifth matter, else the trust account."""
    import datetime as dt

    matters = counts["matters"]
    matter, k = 1 + (i - 1) % matters, (i - 1) // matters
    account = OPERATING_ACCOUNT if matter % 5 == 0 else TRUST_ACCOUNT
    date = (dt.date(2020, 1, 1) + dt.timedelta(days=k)).isoformat()
    return matter, account, DEPOSIT if k % 2 == 0 else WITHDRAWAL, date


def _trust_balance(matter: int, counts: dict[str, int]) -> str | None:
    """The trust balance matter ``matter`` reports (its transactions' sum), None without any."""
    from decimal import Decimal

    matters, n = counts["matters"], counts["bank_transactions"]
    if matter % 5 == 0 or matter > n:
        return None
    k = (n - matter) // matters + 1  # its transactions
    return str((k + 1) // 2 * Decimal(DEPOSIT) + k // 2 * Decimal(WITHDRAWAL))


def _bill(i: int) -> tuple[str, str]:
    """(Clio state, balance) of bill ``i``: a paid bill owes nothing (its allocation paid it), any other its total."""
    state = BILL_STATES[i % 6]
    return state, "0" if state == "paid" else BILL_TOTAL


def _data(obj: str, i: int, counts: dict[str, int]) -> dict[str, Any]:
    d: dict[str, Any] = {"id": i, "created_at": "2024-01-02T03:04:05Z", "description": f"record {i} " * 4}
    if obj == "activities":
        kind = i % 10
        d["type"] = "ExpenseEntry" if kind == 0 else "TimeEntry"
        d["quantity_in_hours"] = "1.5"
        d["total"] = "150.25" if kind != 9 else "0"
    elif obj == "bills":
        d["state"], d["balance"] = _bill(i)
        d["number"] = str(i)
        d["total"] = BILL_TOTAL
        d["currency"] = {"code": "USD"}
        d["client"] = {"id": 1 + i % counts["contacts"]}
    elif obj == "allocations":
        d["amount"] = BILL_TOTAL
        d["bill"] = {"id": 6 * i - 3}
        d["parent"] = {"id": i, "type": "Payment"}
        d["source_bank_account"] = {"id": TRUST_ACCOUNT, "type": "Trust"} if i % 2 else None
    elif obj == "bank_transactions":
        matter, account, d["amount"], d["date"] = _bank(i, counts)
        d["bank_account_id"] = account
        d["matter"] = {"id": matter}
    elif obj == "matters":
        d["display_number"] = f"{i:05d}-Synth"
        if (balance := _trust_balance(i, counts)) is not None:
            d["account_balances"] = [{"id": TRUST_ACCOUNT, "balance": balance, "type": "Trust"}]
    elif obj == "contacts":
        d["name"] = f"Contact {i}"
    return d


def _rows(obj: str, i: int, counts: dict[str, int]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(sobject, row) of one Clio record: what the transform stages and what the org holds."""
    kind = SHARES[obj][1]
    ext = f"{kind}-{i}"
    if obj == "matters":
        yield "Case", {"Clio_Id__c": ext, "Subject": f"{i:05d}-Synth"}
        yield "Opportunity", {"Clio_Id__c": f"{ext}#opportunity", "Name": f"{i:05d}"}
    elif obj == "contacts":
        yield "Contact", {"Clio_Id__c": ext, "LastName": f"Contact {i}"}
        yield "Account", {"Clio_Id__c": f"{ext}#account", "Name": f"Contact {i}"}
    elif obj == "activities":
        if i % 10 == 0:
            yield "Expense__c", {"Clio_Id__c": ext, "Clio_Amount__c": 150.25}
        elif i % 10 == 9:
            yield "Task", {"Clio_Id__c": ext, "Subject": "non-billable", "Clio_Hours__c": 1.5}
        else:
            yield "Time_Entry__c", {"Clio_Id__c": ext, "Clio_Hours__c": 1.5, "Clio_Total__c": 150.25}
        yield "Case_Time__c", {"Clio_Id__c": f"{ext}#matter-{1 + i % 50}"}
    elif obj == "tasks":
        yield "Task", {"Clio_Id__c": ext, "Subject": f"task {i}"}
    elif obj == "bills":
        state, balance = _bill(i)
        yield "Clio_Billing__c", {"Clio_Id__c": ext, "Clio_Invoice_Number__c": str(i), "Clio_Total__c": float(BILL_TOTAL),
                                  "Clio_Status__c": SF_BILL_STATES[BILL_STATES.index(state)],
                                  "Clio_Balance__c": float(balance),
                                  "Contact__r.Clio_Id__c": f"contact-{1 + i % counts['contacts']}"}
    elif obj == "allocations":
        yield "Clio_Payment__c", {"Clio_Id__c": ext, "Clio_Amount__c": float(BILL_TOTAL), "Clio_Kind__c": "Payment",
                                  "Clio_Source_Account_Type__c": "Trust" if i % 2 else None,
                                  "Clio_Billing__r.Clio_Id__c": f"bill-{6 * i - 3}"}
    elif obj == "bank_transactions":
        matter, account, amount, date = _bank(i, counts)
        yield "Ledger__c", {"Clio_Id__c": ext, "Clio_Amount__c": float(amount), "Clio_Date__c": date,
                            "Clio_Bank_Account_Id__c": str(account), "Case__r.Clio_Id__c": f"matter-{matter}"}
    elif obj == "relationships":  # a contact's role on a matter: a natural-key row the org finds by key
        matter, contact = 1 + i % counts["matters"], 1 + i % counts["contacts"]
        yield "CaseContactRole", {"Clio_Id__c": ext, "Cases.Clio_Id__c": f"matter-{matter}",
                                  "Contact.Clio_Id__c": f"contact-{contact}", "Role": "Client",
                                  "CasesId": _sf_id("500", matter), "ContactId": _sf_id("003", contact)}
    elif obj == "calendar_entries":
        for n in range(OCCURRENCES):
            yield "Event", {"Clio_Id__c": f"{ext}@2024{1 + n:02d}01T150000Z", "Subject": f"entry {i}"}


def _sf_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:012d}AAA"


def _org_id(n: int) -> str:
    """The Id the fake org gives the ``n``-th row of an sobject (1-based)."""
    return f"a0{n:013d}"


def _ledger(mroot: Path, sobject: str, batch: str, ssids: list[str], first: int) -> None:
    """The full load's ledger file (and its index twin) of a batch of natural-key rows, rows ``first``... of the org."""
    from clio2sf import ledger_index

    lines = [{"migration_id": MIGRATION, "run_id": LEDGER_RUN, "phase": "full_load", "object": sobject, "batch": batch,
              "source_system_id": ssid, "sf_id": _org_id(first + k), "operation": "insert", "created": True,
              "before": None, "file_ids": [], "status": "ok", "error": None, "at": "2024-01-02T03:04:05Z"}
             for k, ssid in enumerate(ssids)]
    path = mroot / "ledger" / LEDGER_RUN / "full_load" / sobject / f"{batch}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    ledger_index.write_index(ledger_index.index_path(mroot, LEDGER_RUN, "full_load", sobject, batch), lines)


def setup(work: Path, records: int) -> dict[str, Any]:
    """Write the synthetic staging once (``work/ready.json`` marks it done)."""
    from clio2sf import staging

    t0 = time.monotonic()
    mroot = staging.migration_root(work / "stage", FIRM, MIGRATION)
    per_object = _counts(records)
    counts = {"bank_accounts": 2, **per_object}
    info = staging.write_jsonl_gz(staging.batch_path(mroot, "bank_accounts", 1), [
        {"object": "bank_accounts", "source_system_id": f"bank_account-{a}", "clio_id": a,
         "data": {"id": a, "type": kind, "name": kind}}
        for a, kind in ((TRUST_ACCOUNT, "Trust"), (OPERATING_ACCOUNT, "Operating"))])
    staging.write_json(staging.raw_dir(mroot, "bank_accounts") / staging.MANIFEST,
                       {"object": "bank_accounts", "batches": [info]})
    batch = 20_000
    rows = 0
    for obj, n in per_object.items():
        kind = SHARES[obj][1]
        infos = []
        for b, start in enumerate(range(1, n + 1, batch), 1):
            ids = range(start, min(n, start + batch - 1) + 1)
            infos.append(staging.write_jsonl_gz(staging.batch_path(mroot, obj, b), (
                {"object": obj, "source_system_id": f"{kind}-{i}", "clio_id": i, "data": _data(obj, i, per_object)}
                for i in ids),
                level=1))
            per_sobject: dict[str, list[dict[str, Any]]] = {}
            for i in ids:
                for sobject, row in _rows(obj, i, per_object):
                    if sobject in NATURAL_KEYS:
                        ssid = row.pop("Clio_Id__c")
                        env = {"sobject": sobject, "source_system_id": ssid, "external_id_field": None,
                               "natural_key": NATURAL_KEYS[sobject],
                               "row": {k: v for k, v in row.items() if k not in ORG_ONLY}}
                    else:
                        env = {"sobject": sobject, "source_system_id": row["Clio_Id__c"],
                               "external_id_field": "Clio_Id__c", "natural_key": None, "row": row}
                    per_sobject.setdefault(sobject, []).append(env)
            for sobject, envs in per_sobject.items():
                rows += len(envs)
                staging.write_jsonl_gz(mroot / "transformed" / sobject / f"{obj}-batch-{b:05d}.jsonl.gz", envs,
                                       level=1)
                if sobject in NATURAL_KEYS:  # loaded: the ledger names each row's Salesforce id
                    _ledger(mroot, sobject, f"{obj}-batch-{b:05d}", [e["source_system_id"] for e in envs],
                            start)
        staging.write_json(staging.raw_dir(mroot, obj) / staging.MANIFEST, {"object": obj, "batches": infos})
    ready = {"records": sum(counts.values()), "rows": rows, "objects": counts,
             "setup_seconds": round(time.monotonic() - t0, 1)}
    staging.write_json(work / "ready.json", ready)
    return ready


class Org:
    """A fake ``ClioSalesforceHook``: ``describe`` and ``query_all_iter`` over rows generated as read.

    ``reads``: per sobject, how many times it was read whole (``SELECT ... FROM X WHERE Clio_Id__c != null``)."""

    def __init__(self, records: int) -> None:
        self.counts = _counts(records)
        self.fields: dict[str, set[str]] = {}
        for obj in self.counts:
            for sobject, row in (r for i in range(1, 11) for r in _rows(obj, i, self.counts)):
                self.fields.setdefault(sobject, {"Id"}).update(k for k in row if "." not in k)
        self.fields["Ledger__c"].add("Case__c")
        self.fields["Clio_Billing__c"].add("Contact__c")
        self.fields["Clio_Payment__c"].add("Clio_Billing__c")
        self.feeds: dict[str, list[str]] = {}  # sobject → the Clio objects whose records make its rows
        for obj in self.counts:
            for sobject in dict.fromkeys(s for i in range(1, 11) for s, _ in _rows(obj, i, self.counts)):
                self.feeds.setdefault(sobject, []).append(obj)
        self.reads: dict[str, int] = {}

    def describe(self, sobject: str) -> dict[str, Any]:
        types = {"Clio_Amount__c": "currency", "Clio_Total__c": "currency", "Clio_Balance__c": "currency",
                 "Clio_Hours__c": "double", "Clio_Date__c": "date"}
        return {"fields": [{"name": n, "type": types.get(n, "string"), "createable": n != "Id", "length": 255,
                            "externalId": n == "Clio_Id__c"} for n in sorted(self.fields.get(sobject, {"Id"}))]}

    def query_all_iter(self, soql: str) -> Iterator[dict[str, Any]]:
        head, _, rest = soql.partition(" FROM ")
        fields = [f.strip() for f in head[len("SELECT "):].split(",")]
        sobject = rest.split()[0]
        self.reads[sobject] = self.reads.get(sobject, 0) + 1
        n = 0
        for obj in self.feeds.get(sobject, ()):
            for i in range(1, self.counts[obj] + 1):
                for s, row in _rows(obj, i, self.counts):
                    if s != sobject:
                        continue
                    n += 1
                    rec: dict[str, Any] = {"attributes": {"type": sobject}}
                    for f in fields:
                        if f == "Id":
                            rec["Id"] = _org_id(n)
                        elif "." in f:
                            rel, col = f.split(".", 1)
                            rec[rel] = {"attributes": {}, col: row.get(f)}
                        else:
                            rec[f] = row.get(f)
                    yield rec


def measure(work: Path) -> dict[str, Any]:
    """In this (fresh) process: reconcile the synthetic firm; RSS before and peak."""
    from clio2sf import staging
    from clio2sf.mapping.spec import load_spec
    from clio2sf.verify import reconcile_migration

    ready = json.loads((work / "ready.json").read_text())
    mroot = staging.migration_root(work / "stage", FIRM, MIGRATION)
    org = Org(ready["objects"]["matters"] / SHARES["matters"][0])
    spec = load_spec(None)
    label = f"bench-{os.getpid()}"
    before = _rss_kb("VmRSS")
    t0, c0 = time.monotonic(), time.process_time()
    result = reconcile_migration(org, mroot, spec, run_label=label)
    return {"rss_before_mb": round(before / 1024, 1), "peak_rss_mb": round(_rss_kb("VmHWM") / 1024, 1),
            "seconds": round(time.monotonic() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1),
            "exact": bool(result["lost"] == 0 and result["duplicated"] == 0 and result["amounts_ok"]
                          and result["books_ok"]
                          and all(o["unexpected"] == 0 and o["missing"] == 0 for o in result["objects"].values())),
            "books": result["books"], "objects": result["objects"], "reads": org.reads,
            "report_dir": str(mroot / "reports" / label)}


def run(work: Path, records: list[int], code: Path = ROOT) -> list[Figure]:
    """Set up each size once under ``work/<records>``, then measure ``code``'s reconcile in a fresh process."""
    figs = []
    sizes = []
    for n in records:
        wdir = work / str(n)
        wdir.mkdir(parents=True, exist_ok=True)
        ready = json.loads((wdir / "ready.json").read_text()) if (wdir / "ready.json").exists() else None
        if ready is None:
            ready = setup(wdir, n)
        sizes.append(ready["records"])
        env = {**os.environ, "PYTHONPATH": f"{code}:{code / 'plugins'}:{ROOT}"}
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", str(wdir)],
                             cwd=code, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"reconcile process failed:\n{out.stderr[-4000:]}")
        got = json.loads(out.stdout.strip().splitlines()[-1])
        measured = subprocess.run(["git", "rev-parse", "HEAD"], cwd=code, capture_output=True, text=True).stdout.strip()
        figs.append(Figure("memory", "peak RSS, reconcile (full load)",
                           f"synthetic firm, {ready['records']:,} records, {ready['rows']:,} rows",
                           got["peak_rss_mb"], "MB", "< 500",
                           at_most(got["peak_rss_mb"], 499.9) if got["exact"] else False,
                           note="" if got["exact"] else "the reconciliation was not exact",
                           detail={**got, "setup_seconds": ready.get("setup_seconds"), "commit": measured,
                                   "over_imports_mb": round(got["peak_rss_mb"] - got["rss_before_mb"], 1)}))
    if len(figs) >= 2:
        first, last = figs[0], figs[-1]
        growth = round(last.value / first.value, 3)
        figs.append(Figure("memory", "peak RSS growth, reconcile (full load)",
                           f"{sizes[0]:,} → {sizes[-1]:,} records", growth,
                           "ratio", f"≤ {FLAT}", at_most(growth, FLAT) if first.met is not False and last.met is not False
                           else False, detail={"over_imports_mb": [first.detail["over_imports_mb"],
                                                                   last.detail["over_imports_mb"]]}))
    return figs


def record(label: str, figs: list[Figure], argv: list[str]) -> None:
    """Keep the figures under ``label`` (e.g. before / after) in ``benchmarks/results/reconcile_memory.json``
    and render ``reconcile_memory.md`` (``latest.md`` belongs to ``benchmarks.run``)."""
    render(keep_run(RESULTS / "reconcile_memory.json", label, figs, argv, loadavg_1m=round(os.getloadavg()[0], 2)))


NOTES = (
    "Since the compact ids (`clio2sf.reconcile.IdSet`, first cut e54956b): an object's staged Clio ids and the "
    "Clio records its org rows carry are numbers per kind in sorted arrays (8 bytes an id; kept as read when "
    "already in order, else sorted in place in runs), compared kind by kind without a third set; a record "
    "staged twice is found from the count of distinct ids; the trust ledger's entries are one string each "
    "until their matter's running balance is taken (`clio2sf.books._entry`). Since a8c8ef0 an org row whose "
    "Clio_Id__c is a record's number keeps only that number (its repeats are the duplicates) and occurrences "
    "are compared within each run of their record's rows (one number a run): no 8-byte hash per row of the "
    "calendar's 1.2M Event rows.",
    "The runs before 'before, live bills and trust' are on a firm without live books (255,000 rows at 100k): "
    "its bills had no state (none live) and its bank transactions named no bank_account_id (no Clio-side "
    "trust entry), so the books were never compared, and did not agree (`exact` did not look at them). Those "
    "runs measured 1.189 and 1.217 for the same code: at the goal's edge. Since lane 32d the firm's books are "
    "live (1M: 16,667 live bills, 8,333 allocations, 32,000 matters with trust entries, 100,000 Ledger__c "
    "rows) and `exact` includes them: the reconcile of dc5448e grew 4.80 (61.6 -> 295.6 MB), json.dumps of "
    "the whole reconciliation.json taking 135 -> 293 MB at 1M; its reports are now written row by row "
    "(`reports.Streamed`, the same bytes) and its book rows are slotted: 44.8 -> 118.7 MB, growth 2.65, "
    "**not met** (the < 500 MB goal is).",
    "Growing with the firm at 118.7 MB (1ab0257; 1M, over the imports 82.0 MB against 7.9 at 100k): the books of "
    "both sides as Python objects, a bill and a matter at a time (~45 MB: `clio_books` +24, `salesforce_books` "
    "+19, the compared rows +13), the trust figures of the amounts, one per matter on both sides and a row "
    "each (~12 MB), the names of every matter with trust for the page (~5 MB) and the ids of the largest "
    "object as numbers (activities: 3.6 MB staged, 3.6 MB found).",
    "Since lane 32e (df8ff7d, 644d769) a firm whose books' largest object has more than 10,000 staged records "
    "(`verify.reconciliation.BOOK_PART_RECORDS`; 1M: 100,000 bank transactions, 10 parts) has its books and its "
    "per-matter trust figures compared in parts by the last digits of the bill, matter or client number "
    "(`source.Part`, as the verifier's `compare_parts`): each part's books (both sides) and trust figures are "
    "made and compared and their rows spilled to disk (`reports.Spilled`, a pickle a row in a temporary "
    "folder), read back merged in the order of the whole comparison by the report writers; since 30d475f "
    "such a firm's page names (every matter with trust) are a SQLite table in that folder "
    "(`verify.reconciliation.Names`), written to reconciliation.json as read (`reports.StreamedDict`). The "
    "reports are the same bytes as 59f718f's on the 100k and 1M firms (but the run id and the time written). "
    "1M: 118.7 -> 54.6 MB (644d769), 53.9 MB (30d475f, on a main that also reads gzip with zlib-ng, c55fa38): "
    "growth 1.221, then 1.192 (met, at the edge: the same code has measured 1.19-1.22 before). Over the "
    "imports 1M still takes twice 100k's (16.8 against 8.1 MB): the ids of the largest object as numbers "
    "(activities: 3.6 MB staged, 3.6 MB found), a part of the books (a 100k firm's whole books) beside what "
    "the earlier steps left. Cost: each part reads the staged bills, allocations, bank transactions and "
    "matters again, and the org's book rows of its part (d0be67a: a LIKE on the endings of the row's bill, "
    "matter or client id; part 0 reads every row; the bench's fake org ignores WHERE, so its 1M reads every "
    "row each part: Ledger__c 21 reads, Clio_Billing__c and Clio_Payment__c 11): CPU at 1M 45 -> 87-90 s.",
    "Since lane 33b (f88fdf7, landed as 4b08892) an object's ids are not held whole: `reconcile.IdSet(folder=)` keeps a kind of more "
    "than `RUN` (16,384) ids in files in the reconciliation's temporary folder (`reports.SpillFolder`, removed "
    "with it): appended as sorted runs (`reconcile.NumberRuns`, one run in memory), read back merged a 32 KB "
    "block a run, or as a sorted file (`reconcile.NumberFile`: the runs' own file when they came in order, as "
    "staged ids do), compared reading each side once in order; the staged ids (`_Staged`, `_source_ids`, the "
    "money totals' `source_totals`) and the org rows' numbers and records found (`_found_rows`) all go there. "
    "CPU trimmed at the same time (the same results): a row's amount figures looked up by its kind, an "
    "occurrence's record added once a run, report rows without `asdict`'s deep copies, `Part` membership and "
    "`flatten_sf_record` cheaper. Measured on one machine beside the xl DAG benchmark (1-min load 8-9), "
    "eece914's reconcile (the same code as main's bbd0498 and 8705999, which the run's commits name: main "
    "moved during the run, 8705999 adds a writer to staging.py only) then f88fdf7's, one after the other on "
    "the same set-up: 100k 45.2 / 45.2 MB, 1M 53.6 -> 49.4 MB (over the imports 16.5 -> "
    "12.4), growth 1.186 -> 1.093; CPU at 1M 50.6 -> 48.7 s (an earlier pair at load ~1-2: 51.2 -> 49.5 MB, "
    "growth 1.089 -> 1.062, 47.2 -> 44.0 CPU s: this figure moves with the machine's load). Stage peaks at 1M "
    "(VmHWM reset per stage): comparing the objects 48.9 -> 41.3 MB, the money totals 48.3 -> 43.5; the peak "
    "is now the books' parts (~47 MB) and the page's names (SQLite, its page cache now 256 KB, not 2 MB). "
    "The reports are the same bytes as eece914's on both firms (but the run id and the time). What still costs "
    "CPU at 1M (~46 s, per stage without a profiler): the books in parts 13 s and the per-matter trust figures "
    "in parts 11 s (each part reads the staged bills, allocations, bank transactions and matters again; the "
    "fake org returns every book row each part, a real org only the part's), the org's rows 7.5 s, the staged "
    "rows 4.4 s, the money totals 7 s, the reports 4 s.",
    "Since lane 33f the firm has relationships (9% of the records, as the xl records run's 88,000 of 970,000): "
    "CaseContactRole rows, natural-key rows without Clio_Id__c that the reconciliation finds through the full "
    "load's ledger (a ledger file and its Parquet twin per staged batch) and the org's rows by key; before, the "
    "bench had no natural-key object and never reached that path, which the xl run's reconcile did (596 MB "
    "peak through the DAGs, eece914). On the new firm (109,835 / 1,098,335 records), f02f1b2's reconcile: "
    "100k 175.3 MB, 1M 286.7 MB, growth 1.635 (**not met**): pyarrow imported and a first Parquet read "
    "(~125 MB whatever the size), then the ledger look-up and the org's rows grouped by key in memory "
    "(~1.2-1.6 KB a row). 60f0c1d (those rows in an SQLite file in the reconciliation's temporary folder): "
    "159.9 / 182.6 MB, growth 1.142. a947c14 (the ledger's lines read from its files, no pyarrow): "
    "49.9 / 59.4 MB, growth 1.19 (met, near the edge; over the imports 12.6 / 22.1 MB). CPU at 1M "
    "57.8 -> 54.2 s. The three runs one after the other on the same set-up, beside the xl DAG benchmark.",
    "The synthetic firm is set up once per `--work` DIR (1M: about 45 s); the figures of a run are taken in a "
    "fresh process without Airflow's imports (about 36 MB before the call); the machine was shared with a "
    "DAG benchmark and other work (1-min load in the table).",
)


def render(doc: dict[str, Any]) -> None:
    def cells(label: str, entry: dict[str, Any], f: dict[str, Any]) -> list[Any]:
        d = f["detail"]
        return [f"{label} ({entry['measured_at']})", f"`{str(d.get('commit', ''))[:10]}`", f["subject"], f["value"],
                f["unit"], f["target"], met_text(f["met"]), d.get("over_imports_mb", ""), d.get("seconds", ""),
                d.get("cpu_seconds", ""), entry.get("loadavg_1m") or "-"]

    runs_page(RESULTS / "reconcile_memory.md", "Peak RSS of the full load's reconcile step",
              "`python -m benchmarks.bench_reconcile_memory` (see its docstring): `reconcile_migration` over a synthetic "
              "staged firm and a fake org generating its rows as read, in a fresh process; peak RSS = VmHWM.", doc,
              ["run", "commit", "subject", "value", "unit", "target", "met", "over the imports (MB)", "seconds",
               "CPU s", "1-min load"], cells, NOTES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--work", default=None, help="set-up kept here for re-runs (default: a new temp dir)")
    ap.add_argument("--code", default=None, help="measure this checkout's reconcile (a before figure)")
    ap.add_argument("--record", default=None, metavar="LABEL",
                    help="keep the figures under LABEL in benchmarks/results/reconcile_memory.{json,md}")
    ap.add_argument("--render", action="store_true", help="write reconcile_memory.md again from its json")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return
    if args.render:
        render(json.loads((RESULTS / "reconcile_memory.json").read_text(encoding="utf-8")))
        return
    import tempfile

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-reconcile-memory-"))
    figs = run(work, args.records, Path(args.code).resolve() if args.code else ROOT)
    print_figures(figs, args.record, record)


if __name__ == "__main__":
    main()
