"""Salesforce API calls per 10,000 records loaded, per object and per method, against the SF sandbox.

For each object (Account, Contact, Case, each with a ``Clio_Id__c`` external id created through
``ClioSalesforceHook.ensure_external_id_field``) three disjoint sets of new rows are loaded:

* ``bulk``: ``load_rows(hook, rows, mode="bulk")`` (Bulk API 2.0, hook defaults: 2 s first poll);
* ``composite``: ``load_rows(hook, rows, mode="composite")`` (sObject collections, 200 per call);
* ``naive REST``: one ``simple_salesforce`` ``<Object>.upsert("Clio_Id__c/<id>", row)`` per record.

Calls are the sandbox's own count of API calls (its request log) made during each load,
scaled to 10,000 records.  The naive run uses fewer rows (it is one call per record by
construction) and is scaled the same way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, at_most, sf_api_calls, use_salesforce
from clio2sf.load import Envelope, load_rows

EXT = "Clio_Id__c"
OBJECTS = ("Account", "Contact", "Case")
TARGET = 10


def make_row(sobject: str, i: int, tag: str) -> dict[str, Any]:
    ext = f"{sobject.lower()}-{tag}-{i}"
    if sobject == "Account":
        return {EXT: ext, "Name": f"Firm {i} LLP", "Phone": f"555-{i % 10000:04d}"}
    if sobject == "Contact":
        return {EXT: ext, "LastName": f"Doe {i}", "FirstName": "Alex", "Email": f"alex{i}@example.com"}
    return {EXT: ext, "Subject": f"Matter {i}", "Status": "New", "Origin": "Web"}


def _per_10k(calls: int, rows: int) -> float:
    return calls * 10_000 / rows


def run(work: Path, *, rows: int, naive_rows: int, seed: int = 42) -> list[Figure]:
    from sandbox.salesforce.testing import run_sf_sandbox

    figs: list[Figure] = []
    with run_sf_sandbox(work / "sf-economy", seed=seed) as sb:
        use_salesforce(sb)
        from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

        setup = ClioSalesforceHook()
        for obj in OBJECTS:
            setup.ensure_external_id_field(obj)
        simple = sb.sf()
        for obj in OBJECTS:
            for mode, n in (("bulk", rows), ("composite", rows), ("naive REST", naive_rows)):
                data = [make_row(obj, i, mode.split()[0]) for i in range(n)]
                hook = ClioSalesforceHook()
                hook.describe(obj)  # the describe is cached per migration (discover phase), not per load
                before, log_before = sf_api_calls(sb), len(sb.request_log()["requests"])
                t0 = time.perf_counter()
                if mode == "naive REST":
                    api = getattr(simple, obj)
                    for row in data:
                        body = {k: v for k, v in row.items() if k != EXT}
                        api.upsert(f"{EXT}/{row[EXT]}", body)
                    failed = 0
                else:
                    envs = [Envelope(obj, row[EXT], row, EXT) for row in data]
                    result = load_rows(hook, envs, mode=mode)  # type: ignore[arg-type]
                    failed = result.failed
                wall = time.perf_counter() - t0
                log = sb.request_log()
                calls = log["total_api_calls"] - before
                kinds: dict[str, int] = {}
                for e in log["requests"][log_before:]:
                    if e.get("api"):
                        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
                if failed:
                    raise RuntimeError(f"{obj} {mode}: {failed} of {n} rows failed to load")
                value = _per_10k(calls, n)
                target = f"≤ {TARGET}" if mode == "bulk" else ""
                met = at_most(value, TARGET) if mode == "bulk" else None
                note = (f"bounded by the fixed calls of one Bulk 2.0 job ({calls} calls: {kinds}) spread over "
                        f"only {n:,} rows; a job carries up to 150,000 rows" if met is False else "")
                figs.append(Figure("salesforce_call_economy", f"API calls per 10,000 records ({mode})", obj,
                                   round(value, 1), "calls", target, met, note=note,
                                   detail={"rows": n, "calls": calls, "by_kind": kinds, "wall_s": round(wall, 2)}))
    return figs
