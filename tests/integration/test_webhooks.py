"""Delta windows driven by Clio webhooks, end to end over HTTP.

The receiver runs in a real ``airflow api-server`` (HTTPS, a certificate from a test CA that the
Clio sandbox trusts through its ``webhook_ca_bundle`` knob); ``mig_08_webhooks`` registers the
migration's webhooks in the Clio sandbox, which delivers signed events to it. Between windows,
records of several models are created, updated and deleted in Clio; each window must cost Clio
requests in proportion to the changes (no id sweep), and Salesforce must then match Clio field by
field, read from both over HTTP (Clio's own API, not our staged copy), using the mapping spec's
declarations only to know which Salesforce field holds which Clio field. Lost and duplicated
deliveries (the sandbox's deterministic fault knob) still end matching, through the
``updated_since`` net and the final sweep; a forged signature is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import trustme

from clio2sf import staging
from clio2sf import webhook_events as ev
from clio2sf.extract import source_kind
from clio2sf.mapping.spec import load_spec
from clio2sf.verify import iter_raw
from scripts.runner import ROOT
from tests.integration.phases import FIRM, Migration, start_migration

pytestmark = pytest.mark.integration
MODELS = {"matter", "contact", "activity", "bill", "calendar_entry", "communication", "task", "document"}


@dataclass
class ApiServer:
    base_url: str
    ca_file: Path
    process: subprocess.Popen
    log_path: Path

    @property
    def receiver(self) -> str:
        return f"{self.base_url}/clio2sf/webhooks"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def run_api_server(workdir: Path, env: dict[str, str]) -> Iterator[ApiServer]:
    """``airflow api-server`` over HTTPS with this bundle's plugins; stopped on exit."""
    ca = trustme.CA()
    ca_file = workdir / "api-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = workdir / "api-cert.pem", workdir / "api-key.pem"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    port = _free_port()
    log_path = workdir / "api-server.log"
    fh = log_path.open("w")
    proc = subprocess.Popen(
        ["airflow", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--ssl-cert", str(cert), "--ssl-key", str(key)],
        env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    server = ApiServer(f"https://127.0.0.1:{port}", ca_file, proc, log_path)
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"api-server exited: {log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{server.receiver}/health", verify=str(ca_file), timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"api-server did not serve the receiver: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        fh.close()


@pytest.fixture(scope="module")
def mig(tmp_path_factory, airflow_db):
    with ExitStack() as stack:
        work = tmp_path_factory.mktemp("webhooks")
        m = start_migration(stack, work, airflow_db)
        m.api = stack.enter_context(run_api_server(work, m.env))  # type: ignore[attr-defined]
        m.clio.set_knobs(webhook_ca_bundle=str(m.api.ca_file), webhook_retry_base=0.2)  # type: ignore[attr-defined]
        yield m


# ------------------------------------------------------------------ helpers


def clio_get(m: Migration, path: str, **params) -> dict:
    r = requests.get(f"{m.clio.base_url}/api/v4/{path}.json", params=params, timeout=30,
                     headers={"Authorization": f"Bearer {m.clio.access_token()}"})
    r.raise_for_status()
    return r.json()


def first_ids(m: Migration, endpoint: str, n: int, skip: int = 0, **filters) -> list:
    data = clio_get(m, endpoint, fields="id", limit=n + skip, **filters)["data"]
    return [r["id"] for r in data][skip:skip + n]


def wait_deliveries(m: Migration, since: int, expected: int, timeout: float = 60.0) -> list[dict]:
    """Wait until ``expected`` first attempts exist after ``since`` and nothing waits (no sleep-and-hope)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        doc = m.clio.admin("GET", f"webhook_deliveries?since={since}")
        log = [d for d in doc["deliveries"] if d["kind"] == "delivery"]
        firsts = {d["number"] for d in log if d["attempt"] == 0}
        if len(firsts) >= expected and doc["pending"] == 0:
            return log
        time.sleep(0.1)
    raise AssertionError(f"deliveries did not settle: {m.clio.admin('GET', f'webhook_deliveries?since={since}')}")


def window(m: Migration, tag: str, **conf) -> dict:
    before = {p.name for p in (m.root / "delta").iterdir() if p.is_dir()} if (m.root / "delta").exists() else set()
    m.run("mig_06_delta", tag=tag, **conf)
    # the window's own folder (delta/ also holds state folders such as loaded/)
    [new] = [p for p in (m.root / "delta").iterdir()
             if p.is_dir() and p.name not in before and (p / "detection.json").exists()]
    return staging.read_json(new / "detection.json") | {"_dir": str(new)}


def _plain_pairs(ospec: dict) -> dict[str, tuple[str, str | None, int | None]]:
    """Salesforce field → (Clio field, ``as``, ``max``) for the spec's direct copies of a top-level field."""
    out = {}
    for sf_field, f in (ospec.get("fields") or {}).items():
        src = f.get("from") if isinstance(f, dict) else None
        if (isinstance(src, str) and "." not in src and "[" not in src and not f.get("map")
                and f.get("as") in (None, "bool", "date")):
            out[sf_field] = (src, f.get("as"), f.get("max"))
    return out


def assert_sf_matches_clio(m: Migration, obj: str, ids: list, *, deleted: bool = False) -> int:
    """Each record's Salesforce row holds Clio's current value in every directly mapped field."""
    spec = load_spec(FIRM)
    sf = m.sf.sf()
    cands = [(key.split("@", 1)[0], o) for key, o in spec.objects.items()
             if obj in (o.get("source") if isinstance(o.get("source"), list) else [o.get("source")])
             and not o.get("natural_key")]
    compared = 0
    for rid in ids:
        ext = f"{source_kind(obj)}-{rid}"
        if deleted:
            for sobject, _ in cands:
                rows = sf.query(f"SELECT Id FROM {sobject} WHERE Clio_Id__c = '{ext}'")["records"]
                assert rows == [], f"{ext} still in Salesforce {sobject}"
            continue
        found = False
        for sobject, ospec in cands:
            present = {f["name"] for f in getattr(sf, sobject).describe()["fields"]}
            if "Clio_Id__c" not in present:
                continue  # an object this firm's configuration does not load (e.g. Opportunity)
            pairs = {k: v for k, v in _plain_pairs(ospec).items() if k in present}
            rows = sf.query(f"SELECT Id{''.join(', ' + k for k in pairs)} FROM {sobject} "
                            f"WHERE Clio_Id__c = '{ext}'")["records"]
            if not rows:
                continue
            found = True
            [row] = rows
            clio = clio_get(m, f"{obj}/{rid}", fields=",".join(sorted({v[0] for v in pairs.values()})))["data"]
            for sf_field, (src, as_, max_) in pairs.items():
                want, got = clio.get(src), row.get(sf_field)
                if as_ == "bool":
                    assert bool(got) == bool(want), (ext, sf_field, got, want)
                elif as_ == "date":
                    assert (got or None) == (str(want)[:10] if want else None), (ext, sf_field, got, want)
                elif want is not None and max_ and len(str(want)) > max_:
                    continue  # overflowed into another field by design
                else:
                    assert (got or None) == (str(want) if want not in (None, "") else None), (ext, sf_field, got, want)
                compared += 1
        assert found, f"{ext} is not in Salesforce ({[s for s, _ in cands]})"
    return compared


# ------------------------------------------------------------------ the migration, then webhooks


@pytest.mark.timeout(1200)
def test_the_firm_is_migrated_first(mig: Migration):
    mig.run("mig_01_discover", apply_schema=True)
    mig.approve("mapping")
    mig.run("mig_02_extract")
    mig.run("mig_03_resolve_users")


@pytest.mark.timeout(1200)
def test_sample_and_full_load(mig: Migration):
    mig.run("mig_04_sample")
    mig.approve("sample")
    mig.run("mig_05_full_load")


@pytest.mark.timeout(900)
def test_the_migration_registers_its_webhooks(mig: Migration):
    run = mig.run("mig_08_webhooks", receiver_url=mig.api.receiver)  # type: ignore[attr-defined]
    subs = ev.read_subscriptions(mig.root)
    assert set(subs["models"]) == MODELS
    assert {s["status"] for s in subs["models"].values()} == {"enabled"}
    live = {w["id"]: w for w in clio_get(mig, "webhooks", fields="id,url,model,fields,events,status")["data"]}
    for model, sub in subs["models"].items():
        hook = live[sub["webhook_id"]]
        assert hook["url"] == f"{mig.api.receiver}/{FIRM}/{mig.migration_id}/{model}"  # type: ignore[attr-defined]
        assert hook["fields"] == ev.DELIVERY_FIELDS and hook["status"] == "enabled"
        assert "deleted" in hook["events"]
        secret = ev.read_secrets(mig.root, model)[0]
        assert secret not in run.log() and secret not in json.dumps(subs)
    health = staging.read_json(mig.root / "webhooks" / "health.json")
    assert all(h["hours_left"] > 24 * 30 for h in health.values())
    # a second run renews nothing (expiry is a month away) and registers nothing
    again = mig.run("mig_08_webhooks", receiver_url=mig.api.receiver, tag="again")  # type: ignore[attr-defined]
    assert "all current" in again.log()
    mig.first_window = window(mig, "baseline")  # type: ignore[attr-defined]


@pytest.mark.timeout(900)
def test_a_window_reads_only_what_changed_in_several_models(mig: Migration):
    m = mig
    checkpoint = m.clio.admin("GET", "webhook_deliveries")["next"]
    contacts = first_ids(m, "contacts", 2, type="Person")
    matter = first_ids(m, "matters", 1)[0]
    tasks = first_ids(m, "tasks", 2)
    entries = first_ids(m, "calendar_entries", 2)
    comm = first_ids(m, "communications", 1)[0]
    m.clio.mutate("contacts", "update", contacts[0], {"title": "Head of Litigation"})
    m.clio.mutate("contacts", "update", contacts[1], {"title": "General Counsel", "prefix": "Dr."})
    new_contact = m.clio.mutate("contacts", "create", None, {"type": "Person", "first_name": "Ada",
                                                             "last_name": "Webhook", "title": "Witness"})["id"]
    m.clio.mutate("matters", "update", matter, {"description": "Renamed by webhook test"})
    m.clio.mutate("tasks", "update", tasks[0], {"name": "Call opposing counsel", "description": "Before Friday"})
    new_task = m.clio.mutate("tasks", "create", None, {"name": "Webhook follow-up", "priority": "High",
                                                       "status": "pending", "matter": {"id": matter}})["id"]
    m.clio.mutate("tasks", "delete", tasks[1])
    m.clio.mutate("calendar_entries", "update", entries[0], {"summary": "Mediation (moved)", "location": "Room 4"})
    m.clio.mutate("calendar_entries", "delete", entries[1])
    m.clio.mutate("communications", "update", comm, {"subject": "Re: settlement offer"})
    log = wait_deliveries(m, checkpoint, expected=10)
    assert all(d["outcome"] == "delivered" for d in log)
    pending = {model: len(ev.pending_events(m.root, model)) for model in MODELS}
    assert sum(pending.values()) == 10 and pending["contact"] == 3 and pending["task"] == 3

    det = window(m, "events")
    assert det["webhooks"] and det["sweep_requests"] == 0
    objs = det["objects"]
    assert objs["contacts"]["mode"] == "events" and objs["contacts"]["events"] == {"created": 1, "updated": 2}
    assert objs["tasks"]["events"] == {"created": 1, "updated": 1, "deleted": 1}
    assert objs["tasks"]["gone"] == 1 and objs["calendar_entries"]["gone"] == 1
    assert all(not o["sweep"] for o in objs.values())
    staged = {n: {str(e["clio_id"]) for e in iter_raw(Path(det["_dir"]) / "raw", n)} for n in objs}
    assert {str(i) for i in [*contacts, new_contact]} <= staged["contacts"]
    assert {str(i) for i in [tasks[0], new_task]} <= staged["tasks"] and str(tasks[1]) not in staged["tasks"]
    # proportional to the changes: per object one updated_since page (the net; it also re-reads what
    # changed within the watermark's overlap), one ids[] batch per model with changes, the documents'
    # downloads, the token; no id sweep at all
    changed_models = sum(1 for o in objs.values() if o["mode"] == "events" and o.get("records"))
    bound = len(objs) + changed_models + 2 * objs["documents"]["records"] + 2
    assert det["requests"] <= bound, (det["requests"], bound)
    assert sum(1 for o in objs.values() if o["mode"] == "events") == len(MODELS)
    m.figures = {"events_window_requests": det["requests"], "objects": len(objs)}  # type: ignore[attr-defined]
    # consumed events are gone once the window committed
    assert sum(len(ev.pending_events(m.root, model)) for model in MODELS) == 0

    compared = 0
    compared += assert_sf_matches_clio(m, "contacts", [*contacts, new_contact])
    compared += assert_sf_matches_clio(m, "matters", [matter])
    compared += assert_sf_matches_clio(m, "tasks", [tasks[0], new_task])
    compared += assert_sf_matches_clio(m, "calendar_entries", [entries[0]])
    compared += assert_sf_matches_clio(m, "communications", [comm])
    assert compared >= 30
    assert_sf_matches_clio(m, "tasks", [tasks[1]], deleted=True)
    assert_sf_matches_clio(m, "calendar_entries", [entries[1]], deleted=True)


def test_a_forged_or_unsigned_delivery_is_refused(mig: Migration):
    url = f"{mig.api.receiver}/{FIRM}/{mig.migration_id}/contact"  # type: ignore[attr-defined]
    body = json.dumps({"data": {"id": 1, "etag": '"x"'}, "meta": {"event": "deleted", "webhook_id": 1}}).encode()
    verify = str(mig.api.ca_file)  # type: ignore[attr-defined]
    forged = hmac.new(b"not the secret", body, hashlib.sha256).hexdigest()
    for headers in ({"X-Hook-Signature": forged}, {}):
        r = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers},
                          verify=verify, timeout=10)
        assert r.status_code == 401
    handshake = requests.post(url, data=b"{}", headers={"X-Hook-Secret": "guessed"}, verify=verify, timeout=10)
    assert handshake.status_code == 401 and "X-Hook-Secret" not in handshake.headers
    assert ev.pending_events(mig.root, "contact") == []
    assert "refused" in mig.api.log_path.read_text()  # type: ignore[attr-defined]


@pytest.mark.timeout(900)
def test_lost_and_duplicated_deliveries_still_end_matching(mig: Migration):
    m = mig
    checkpoint = m.clio.admin("GET", "webhook_deliveries")["next"]
    m.clio.set_knobs(webhook_fault="drop:2,dup:3")
    try:
        contacts = first_ids(m, "contacts", 4, skip=2, type="Person")
        tasks = first_ids(m, "tasks", 3, skip=1)
        entries = first_ids(m, "calendar_entries", 2, skip=1)
        for i, cid in enumerate(contacts):
            m.clio.mutate("contacts", "update", cid, {"title": f"Partner {i}"})
        m.clio.mutate("tasks", "update", tasks[0], {"name": "Renamed while deliveries fail"})
        m.clio.mutate("tasks", "delete", tasks[1])
        m.clio.mutate("tasks", "delete", tasks[2])
        m.clio.mutate("calendar_entries", "delete", entries[0])
        m.clio.mutate("calendar_entries", "update", entries[1], {"summary": "Hearing (dup test)"})
        log = wait_deliveries(m, checkpoint, expected=9)
    finally:
        m.clio.set_knobs(webhook_fault=None)
    dropped = [d for d in log if d["outcome"].startswith("dropped")]
    dups = [d for d in log if d["outcome"].startswith("duplicate")]
    assert {d["number"] % 2 for d in dropped} == {0} and len(dropped) >= 4 and dups
    lost_deletions = [d for d in dropped if d["event"] == "deleted"]
    assert lost_deletions  # the fault knob is by count: this change set always loses a deletion

    det = window(m, "faults")
    assert det["objects"]["contacts"]["net_only"] >= 2  # updates no delivery announced, found by the net
    assert_sf_matches_clio(m, "contacts", contacts)
    assert_sf_matches_clio(m, "tasks", [tasks[0]])
    assert_sf_matches_clio(m, "calendar_entries", [entries[1]])
    # a deletion whose delivery was lost is only seen by a sweep: the final cutover sweeps everything
    final = window(m, "final", sweep="all")
    assert final["sweep_requests"] >= final["objects"].__len__()
    assert all(o["sweep"] for o in final["objects"].values())
    assert_sf_matches_clio(m, "tasks", tasks[1:], deleted=True)
    assert_sf_matches_clio(m, "calendar_entries", [entries[0]], deleted=True)
    m.figures |= {"final_window_requests": final["requests"], "final_sweep_requests": final["sweep_requests"]}  # type: ignore[attr-defined]


@pytest.mark.timeout(900)
def test_removing_the_webhooks_stops_deliveries(mig: Migration):
    mig.run("mig_08_webhooks", action="remove", tag="remove")
    assert clio_get(mig, "webhooks", fields="id,url")["data"] == [w for w in clio_get(
        mig, "webhooks", fields="id,url")["data"] if "clio2sf/webhooks" not in w["url"]]
    assert ev.read_subscriptions(mig.root)["models"] == {}
    checkpoint = mig.clio.admin("GET", "webhook_deliveries")["next"]
    mig.clio.mutate("contacts", "update", first_ids(mig, "contacts", 1, type="Person")[0], {"title": "After go-live"})
    assert mig.clio.admin("GET", f"webhook_deliveries?since={checkpoint}")["deliveries"] == []
    det = window(mig, "after-removal")
    assert not det["webhooks"] and all(o["mode"] == "listing" and o["sweep"] for o in det["objects"].values())
    print("figures:", json.dumps(mig.figures | {"no_webhooks_window_requests": det["requests"]}))  # type: ignore[attr-defined]
