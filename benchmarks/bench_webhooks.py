"""Clio requests of one delta window's change detection, with and without webhooks.

    python -m benchmarks.bench_webhooks [--presets demo large] [--changes 100]

For each preset: a Clio sandbox (no rate limit), the real webhook receiver app served over HTTPS
in-process (uvicorn, a test CA the sandbox trusts), one webhook per model registered and
activated as ``mig_08_webhooks`` does, then ``--changes`` changes (updates, creations, deletions
over contacts, matters, tasks, calendar entries and communications). The window is then detected
twice, counting every Clio request: without webhooks (full-field ``updated_since`` listing plus the
id sweep of every object, what each window cost before), and with them (events + ``updated_since``
id net + ``ids[]`` reads, :func:`clio2sf.changes.detect_by_events`; no sweep). Both must find the
same changed and deleted records. Results: ``benchmarks/results/webhooks.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import trustme

from benchmarks.common import ROOT, machine
from clio2sf import catalog, changes
from clio2sf import webhook_events as ev

RESULTS = ROOT / "benchmarks" / "results"


def objects() -> list[str]:
    """The objects a delta window covers: the transformed ones that take ``updated_since``."""
    from clio2sf_airflow.phases.load_common import TRANSFORMED

    return [n for n in TRANSFORMED if catalog.get(n).incremental]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Counter:
    def __init__(self, clio: Any) -> None:
        self.clio, self.n = clio, 0
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {clio.access_token()}"

    def __call__(self, path: str, params: Any) -> tuple[dict, Any]:
        self.n += 1
        url = path if path.startswith("http") else f"{self.clio.base_url}/api/v4/{path}.json"
        r = self.s.get(url, params=params, timeout=60)
        r.raise_for_status()
        return r.json(), r.headers


def _serve_receiver(work: Path) -> tuple[str, Path]:
    import uvicorn

    from clio2sf_airflow.webhooks.receiver import app

    ca = trustme.CA()
    ca_file = work / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = work / "cert.pem", work / "key.pem"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ssl_certfile=str(cert), ssl_keyfile=str(key)))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"https://127.0.0.1:{port}", ca_file


def _changes(clio: Any, n: int) -> dict[str, dict[str, set[int]]]:
    token = clio.access_token()

    def ids(endpoint: str, k: int, **f: str) -> list[int]:
        r = requests.get(f"{clio.base_url}/api/v4/{endpoint}.json", params={"fields": "id", "limit": k, **f},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
        return [int(x["id"]) for x in r.json()["data"]]

    share = {"contacts": 0.3, "matters": 0.2, "tasks": 0.3, "calendar_entries": 0.1, "communications": 0.1}
    out: dict[str, dict[str, set[int]]] = {o: {"changed": set(), "deleted": set()} for o in share}
    done = 0
    for obj, frac in share.items():
        k = max(1, round(n * frac))
        if obj == "tasks":
            created = k // 3
            deleted = k // 3
            existing = ids(obj, k - created)
            matter = ids("matters", 1)[0]
            for i in range(created):
                rec = clio.mutate(obj, "create", None, {"name": f"bench {i}", "matter": {"id": matter}})
                out[obj]["changed"].add(int(rec["id"]))
            for rid in existing[:deleted]:
                clio.mutate(obj, "delete", rid)
                out[obj]["deleted"].add(rid)
            for rid in existing[deleted:]:
                clio.mutate(obj, "update", rid, {"description": "bench"})
                out[obj]["changed"].add(rid)
        else:
            field = {"contacts": "title", "matters": "description", "calendar_entries": "summary",
                     "communications": "subject"}[obj]
            for rid in ids(obj, k, **({"type": "Person"} if obj == "contacts" else {})):
                clio.mutate(obj, "update", rid, {field: f"bench {rid}"})
                out[obj]["changed"].add(rid)
        done += k
    return out


def run_preset(preset: str, n_changes: int, work: Path) -> dict[str, Any]:
    from airflow.sdk import ObjectStoragePath

    from sandbox.clio.testing import run_clio_sandbox

    work.mkdir(parents=True, exist_ok=True)
    os.environ["CLIO2SF_STAGING_ROOT"] = f"file://{work / 'staging'}"
    receiver, ca_file = _serve_receiver(work)
    mroot = ObjectStoragePath(f"file://{work / 'staging'}") / "bench" / "m1"
    with run_clio_sandbox(work / "clio", preset=preset, rate_limit=None) as clio:
        clio.set_knobs(webhook_ca_bundle=str(ca_file))
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {clio.access_token()}"
        subs: dict[str, Any] = {}
        for model in ev.OBJECT_MODELS.values():
            r = s.post(f"{clio.base_url}/api/v4/webhooks.json", params={"fields": "id,shared_secret,status,events,"
                                                                                  "expires_at"},
                       json={"data": {"url": ev.receiver_url(f"{receiver}", "bench", "m1", model), "model": model,
                                      "fields": ev.DELIVERY_FIELDS, "events": ["created", "updated", "deleted"]}})
            r.raise_for_status()
            data = r.json()["data"]
            ev.write_secrets(mroot, model, [data["shared_secret"]])
            s.put(f"{clio.base_url}/api/v4/webhooks/{data['id']}/activate.json",
                  headers={"X-Hook-Secret": data["shared_secret"]}).raise_for_status()
            subs[model] = {"status": "enabled", "expires_at": data["expires_at"], "events": data["events"]}
        # a watermark just before the changes, as a committed window leaves it
        since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(1.1)  # Clio timestamps have whole seconds: changes land after ``since``
        truth = _changes(clio, n_changes)
        n_done = sum(len(v["changed"]) + len(v["deleted"]) for v in truth.values())
        deadline = time.time() + 120
        while clio.admin("GET", "webhook_deliveries")["pending"] and time.time() < deadline:
            time.sleep(0.1)
        usable = ev.usable_models({"models": subs}, time.time())
        result: dict[str, Any] = {"preset": preset, "changes": n_done, "records": sum(clio.counts().values())}
        for label, webhooks in (("without_webhooks", False), ("with_webhooks", True)):
            fetch = Counter(clio)
            plans = changes.plan_objects(objects(), usable if webhooks else {}, webhooks=webhooks, sweep="auto",
                                         now=time.time(), baseline=time.time())
            found: dict[str, dict[str, set[int]]] = {}
            for plan in plans:
                obj = catalog.get(plan.name)
                if plan.mode == "events":
                    summary = changes.summarize_events(ev.pending_events(mroot, plan.model))
                    got = changes.detect_by_events(obj, fetch, since=since, events=summary)
                    found[plan.name] = {"changed": {int(r["id"]) for r in got.records}, "deleted": got.gone}
                else:
                    params = {"limit": 200, "fields": obj.fields, **obj.list_params, "updated_since": since}
                    recs = [r for page in changes._pages(fetch, obj.endpoint, params) for r in page["data"]]
                    found[plan.name] = {"changed": {int(r["id"]) for r in recs}, "deleted": set()}
                if plan.sweep:
                    params = {"limit": 200, "fields": "id", **obj.list_params}
                    now_ids = {int(r["id"]) for page in changes._pages(fetch, obj.endpoint, params)
                               for r in page["data"]}
                    expected = truth.get(plan.name, {}).get("deleted", set())
                    found[plan.name]["deleted"] = expected - now_ids  # what the id difference reveals
            for obj, t in truth.items():
                assert t["changed"] <= found[obj]["changed"], (label, obj, t["changed"] - found[obj]["changed"])
                assert t["deleted"] <= found[obj]["deleted"], (label, obj)
            result[label] = fetch.n
        result["ratio"] = round(result["without_webhooks"] / max(1, result["with_webhooks"]), 1)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presets", nargs="+", default=["demo", "large"])
    ap.add_argument("--changes", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    rows = [run_preset(p, args.changes, work / p) for p in args.presets]
    doc = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), "results": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "webhooks.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["# Clio requests per delta window (change detection), with and without webhooks", "",
             f"{doc['date']}; {args.changes} changes over contacts, matters, tasks, calendar entries, communications",
             "", "| preset | Clio records | changes | requests without webhooks | with webhooks | ratio |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['preset']} | {r['records']:,} | {r['changes']} | {r['without_webhooks']} | {r['with_webhooks']} "
              f"| {r['ratio']} |" for r in rows]
    (RESULTS / "webhooks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
