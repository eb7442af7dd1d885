"""The bundle under a real scheduler: scheduler + dag-processor + api-server (LocalExecutor), two firms.

Everything an ops engineer does goes through ``/api/v2`` as a named user of the simple auth
manager (``ops_lead``, ``ops_engineer``, ``firm_reviewer``):

* two firms' discover runs are triggered with params at the same time, each on its own connections
  (``clio_<firm>`` / ``salesforce_<firm>``: no ``*_default`` connection exists at all), its own
  sandbox pair, its own declared staging root and its own Clio rate budget;
* the mapping approval is answered through the HITL API as ``ops_engineer``, and the approval record
  carries that name;
* the other firm's mapping is rejected with a reason: the run fails naming who and why, and extract
  refuses to start;
* the first firm's declared cutover DAG is unpaused and its scheduled window runs against that
  migration (its params are the declaration's, not the form's defaults);
* both firms extract at once, each from its own Clio into its own staging root (the second firm's
  mapping approved again with ``scripts.approve`` as a named approver);
* pools per firm: every API task of a firm's runs (mapped extract and load batches, a scheduled
  window, a cleared batch) runs in that firm's pools (``clio_api_<firm>``, ``salesforce_api_<firm>``,
  or the pool its declaration names); with the first firm's Clio pool at 0 slots its extraction
  waits while the second firm's runs to the end;
* the first firm's sample is rejected through the HITL API as ``ops_lead``: the full load refuses,
  naming the rejection;
* after a new sample approval, one load batch of the full load fails for good (the Salesforce sandbox
  refuses its call as over the API limit), the failed map index is cleared with Downstream (only
  failed) through ``/api/v2``, and the run ends in success with nothing duplicated in the org; while
  the documents' extraction is made incomplete, ``load_documents`` is ``up_for_reschedule`` (no slot
  held), then loads the last batch once it is committed;
* the reports are served by the api-server behind its login, read-only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from clio2sf import catalog
from clio2sf.mapping.spec import DEFAULT_MAPPINGS_DIR
from scripts.cluster import Cluster
from scripts.runner import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.scheduler, pytest.mark.timeout(1500)]

FIRM_A, MIG_A = "harlow_vance", "sa"
FIRM_B, MIG_B = "second_firm", "sb"
#: Each firm's pools: the first firm's are named after it, the second firm declares its Clio pool.
POOLS = {FIRM_A: {"clio_api": f"clio_api_{FIRM_A}", "salesforce_api": f"salesforce_api_{FIRM_A}"},
         FIRM_B: {"clio_api": "clio_api_second_eu", "salesforce_api": f"salesforce_api_{FIRM_B}"}}


def _conn_env(system: str, firm: str, clio=None, sf=None) -> dict[str, str]:
    key = f"AIRFLOW_CONN_{system.upper()}_{firm.upper()}"
    if system == "clio":
        return {key: json.dumps({"conn_type": "http", "host": clio.base_url, "login": clio.client_id,
                                 "password": clio.client_secret, "extra": {"refresh_token": clio.refresh_token}})}
    return {key: sf.connection_json()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sandbox.clio.testing import run_clio_sandbox
    from sandbox.salesforce.testing import run_sf_sandbox

    work = tmp_path_factory.mktemp("scheduler")
    with ExitStack() as stack:
        clio_a = stack.enter_context(run_clio_sandbox(work / "clio_a", seed=42, preset="tiny", rate_limit=50, window=2.0))
        sf_a = stack.enter_context(run_sf_sandbox(work / "sf_a", seed=42))
        clio_b = stack.enter_context(run_clio_sandbox(work / "clio_b", seed=7, preset="tiny", rate_limit=50, window=2.0))
        sf_b = stack.enter_context(run_sf_sandbox(work / "sf_b", seed=7))
        # a deployment's own firm configs: the shipped ones plus a second firm
        mappings = work / "mappings"
        shutil.copytree(DEFAULT_MAPPINGS_DIR, mappings)
        second = yaml.safe_load((mappings / "firms" / "harlow_vance.yaml").read_text())
        second["firm"] = "Second Firm LLP"
        (mappings / "firms" / f"{FIRM_B}.yaml").write_text(yaml.safe_dump(second, sort_keys=False))
        declared = work / "migrations"
        declared.mkdir()
        for firm, mig in ((FIRM_A, MIG_A), (FIRM_B, MIG_B)):
            doc = {"firm": firm, "migration_id": mig, "staging_root": f"file://{work / ('staging_' + firm)}",
                   "cutover": {"schedule": "*/2 * * * *", "timezone": "UTC", "start": "2026-01-01T00:00:00Z"}}
            if firm == FIRM_B:
                doc["clio_pool"] = POOLS[FIRM_B]["clio_api"]
            (declared / f"{firm}-{mig}.yaml").write_text(yaml.safe_dump(doc))
            (work / f"staging_{firm}").mkdir()
        ca = work / "ca-bundle.pem"
        ca.write_text(Path(sf_a.ca_bundle).read_text() + Path(sf_b.ca_bundle).read_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
        env.update({
            **_conn_env("clio", FIRM_A, clio=clio_a), **_conn_env("salesforce", FIRM_A, sf=sf_a),
            **_conn_env("clio", FIRM_B, clio=clio_b), **_conn_env("salesforce", FIRM_B, sf=sf_b),
            "REQUESTS_CA_BUNDLE": str(ca),
            "CLIO2SF_MAPPINGS_DIR": str(mappings),
            "CLIO2SF_MIGRATIONS_DIR": str(declared),
            "CLIO2SF_RATE_DIR": str(work / "rate"),
            "AIRFLOW_VAR_CLIO2SF_STAGING_ROOT": f"file://{work / 'staging_default'}",
        })
        # nothing here changes a DAG file (the declared migrations are written above, before the start):
        # the DAGs are parsed once at start, not again every 5 s beside the runs (CPU the tasks need)
        cluster = Cluster.start(work / "airflow", env, reparse_interval=3600)
        stack.callback(cluster.stop)
        for firm, firm_pools in POOLS.items():  # each firm's own pools, made as an admin does (Admin -> Pools)
            cluster.firm_pools(firm, firm_pools)
        yield {"cluster": cluster, "work": work, "clio_a": clio_a, "clio_b": clio_b, "sf_a": sf_a, "sf_b": sf_b}


def _root(world, firm, mig) -> Path:
    return world["work"] / f"staging_{firm}" / firm / mig


def _pools(c: Cluster, dag_id: str, run_id: str, task_id: str) -> dict[int, str]:
    """The pool of each instance (map index) of ``task_id`` in a run, as the API reports it."""
    tis = c.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})["task_instances"]
    return {t["map_index"]: t["pool"] for t in tis if t["task_id"] == task_id}


def _in_firm_pool(c: Cluster, dag_id: str, run_id: str, firm: str, task_ids: dict[str, str]) -> None:
    """Every instance of each task (``task_id -> shared pool the DAG names``) ran in ``firm``'s pool."""
    for task_id, shared in task_ids.items():
        found = _pools(c, dag_id, run_id, task_id)
        assert found and set(found.values()) == {POOLS[firm][shared]}, (dag_id, task_id, found)


def _write_atomically(path: Path, value: dict) -> None:
    """Rewrite a staging JSON file as the extractor does: a task reading it sees the old or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def test_two_firms_discover_at_once_on_their_own_connections_and_approval_names(world):
    c: Cluster = world["cluster"]
    run_a = c.trigger("mig_01_discover", {"firm": FIRM_A, "migration_id": MIG_A, "apply_schema": True})
    run_b = c.trigger("mig_01_discover", {"firm": FIRM_B, "migration_id": MIG_B, "apply_schema": True})
    c.wait_parked("mig_01_discover", run_a, "approve_mapping")
    c.wait_parked("mig_01_discover", run_b, "approve_mapping")
    # both were in flight together (max_active_runs allows it; each writes its own root)
    runs = c.get("/api/v2/dags/mig_01_discover/dagRuns")["dag_runs"]
    spans = {r["dag_run_id"]: (r["start_date"], r["end_date"]) for r in runs}
    assert spans[run_a][1] is None and spans[run_b][1] is None

    detail = c.get(f"/api/v2/dags/mig_01_discover/dagRuns/{run_a}/taskInstances/approve_mapping/-1/hitlDetails")
    assert f"/clio2sf/{FIRM_A}/{MIG_A}/files/discover/mapping_spec.html" in detail["body"]  # link to the report

    for run, firm in ((run_a, FIRM_A), (run_b, FIRM_B)):  # one phase DAG, each firm's run in its own pools
        _in_firm_pool(c, "mig_01_discover", run, firm, {"read_clio_schema": "clio_api", "read_salesforce": "salesforce_api"})
    c.answer("mig_01_discover", run_a, "approve_mapping", "Approve", user="ops_engineer")
    assert c.wait_run("mig_01_discover", run_a) == "success"
    approvals = yaml.safe_load((_root(world, FIRM_A, MIG_A) / "approvals" / "mapping.yaml").read_text())
    assert approvals["confirmations"][-1]["by"] == "ops_engineer"

    c.answer("mig_01_discover", run_b, "approve_mapping", "Reject", user="ops_lead",
             params_input={"reason": "practice areas of the second firm are not mapped"})
    assert c.wait_run("mig_01_discover", run_b) == "failed"
    log = c.task_log("mig_01_discover", run_b, "approve_mapping", try_number=c.try_number("mig_01_discover", run_b,
                                                                                           "approve_mapping"))
    assert "rejected by ops_lead" in log and "practice areas of the second firm are not mapped" in log

    # separate connections, sandboxes, staging roots and rate budgets
    for firm, mig, clio in ((FIRM_A, MIG_A, world["clio_a"]), (FIRM_B, MIG_B, world["clio_b"])):
        assert (_root(world, firm, mig) / "discover" / "mapping_spec.html").exists()
        assert clio.request_log(), f"{firm}'s Clio sandbox saw no request"
    assert not (world["work"] / "staging_default").joinpath(FIRM_A).exists()
    assert len([p for p in (world["work"] / "rate").iterdir() if p.name.startswith("clio-")
                and p.name.endswith(".json")]) == 2  # one budget per token


def test_rejected_mapping_stops_the_next_phase(world):
    c: Cluster = world["cluster"]
    run = c.trigger("mig_02_extract", {"firm": FIRM_B, "migration_id": MIG_B})
    assert c.wait_run("mig_02_extract", run) == "failed"
    log = c.task_log("mig_02_extract", run, "plan_extraction")
    assert "rejected by ops_lead" in log and "practice areas of the second firm are not mapped" in log


def test_a_declared_cutover_runs_scheduled_windows_for_its_migration(world):
    c: Cluster = world["cluster"]
    dag_id = f"mig_06_delta__{FIRM_A}__{MIG_A}"
    c.unpause(dag_id)
    deadline = time.monotonic() + 600
    runs = []
    while time.monotonic() < deadline and not runs:
        runs = [r for r in c.get(f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"] if r["run_type"] == "scheduled"]
        time.sleep(5)
    assert runs, "no scheduled window after unpausing"
    run = runs[0]
    # after discover only (nothing extracted yet) the window finds nothing to change and succeeds
    assert c.wait_run(dag_id, run["dag_run_id"]) == "success", c.task_states(dag_id, run["dag_run_id"])
    c.unpause(dag_id, paused=True)
    assert run["conf"] in ({}, None) and run["logical_date"]  # a scheduled run: no conf, the DAG's params
    _in_firm_pool(c, dag_id, run["dag_run_id"], FIRM_A, {"extract_changes": "clio_api", "plan_window": "salesforce_api",
                                                         "load_changes": "salesforce_api"})
    log = c.task_log(dag_id, run["dag_run_id"], "extract_changes")
    assert f"firm {FIRM_A} migration {MIG_A}" in log and f"clio_{FIRM_A}" in log
    # the window's files are under this migration's declared root
    assert (_root(world, FIRM_A, MIG_A) / "delta").exists()


def _settle(c: Cluster, dag_id: str) -> None:
    """Leave no run of the paused ``dag_id`` queued or running, as an operator would: a window the
    scheduler created before the pause never goes on while the DAG is paused, so mark it failed (it
    committed nothing: its watermarks move only at its end)."""
    for r in c.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]:
        if r["state"] not in ("success", "failed"):
            c.request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{r['dag_run_id']}", json={"state": "failed"})
    states = {r["state"] for r in c.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]}
    assert states <= {"success", "failed"}, states


def test_two_firms_extract_at_once_each_from_its_own_clio_into_its_own_staging(world):
    import subprocess
    import sys

    c: Cluster = world["cluster"]
    _settle(c, f"mig_06_delta__{FIRM_A}__{MIG_A}")  # nothing writes this migration beside us
    # the second firm's mapping, fixed, is approved again with the CLI (a named approver, after the rejection)
    subprocess.run([sys.executable, "-m", "scripts.approve", "mapping", "--firm", FIRM_B, "--migration-id", MIG_B,
                    "--by", "ops_lead"], env=c.env, cwd=ROOT, check=True, capture_output=True)
    before = {firm: len(clio.request_log()) for firm, clio in ((FIRM_A, world["clio_a"]), (FIRM_B, world["clio_b"]))}
    # both runs are queued while the DAG is paused, then it is unpaused: the scheduler starts every queued
    # run that max_active_runs allows in one pass, before any task of either runs (with 1, the second
    # would wait for the first to end); no timing involved
    c.unpause("mig_02_extract", paused=True)
    run_a, run_b = (c.request("POST", "/api/v2/dags/mig_02_extract/dagRuns", json={
        "logical_date": None, "conf": {"firm": firm, "migration_id": mig}}).json()["dag_run_id"]
        for firm, mig in ((FIRM_A, MIG_A), (FIRM_B, MIG_B)))
    # the first firm's Clio pool is closed (0 slots): its Clio tasks wait; the second firm's do not
    a_clio = POOLS[FIRM_A]["clio_api"]
    c.set_pool_slots(a_clio, 0)
    c.unpause("mig_02_extract")
    assert c.wait_run("mig_02_extract", run_b) == "success", c.task_states("mig_02_extract", run_b)
    assert c.run_state("mig_02_extract", run_a) == "running"
    tis = c.get(f"/api/v2/dags/mig_02_extract/dagRuns/{run_a}/taskInstances", params={"limit": 1000})["task_instances"]
    waited = [t for t in tis if t["pool"] == a_clio]
    assert all(t["start_date"] is None for t in waited), [(t["task_id"], t["state"]) for t in waited]
    assert not any(t["task_id"] in ("extract_object", "extract_documents") and t["pool"] != a_clio for t in tis)
    c.set_pool_slots(a_clio, 2)  # opened again
    assert c.wait_run("mig_02_extract", run_a) == "success", c.task_states("mig_02_extract", run_a)
    for run, firm in ((run_a, FIRM_A), (run_b, FIRM_B)):  # mapped instances included
        _in_firm_pool(c, "mig_02_extract", run, firm, {"extract_object": "clio_api", "extract_documents": "clio_api"})
        assert len(_pools(c, "mig_02_extract", run, "extract_object")) > 1
    runs = {r["dag_run_id"]: r for r in c.get("/api/v2/dags/mig_02_extract/dagRuns")["dag_runs"]}
    # one did not wait for the other: each started before the other ended (the runs' own records)
    assert runs[run_b]["start_date"] < runs[run_a]["end_date"] and runs[run_a]["start_date"] < runs[run_b]["end_date"]
    for firm, mig, clio in ((FIRM_A, MIG_A, world["clio_a"]), (FIRM_B, MIG_B, world["clio_b"])):
        extraction = json.loads((_root(world, firm, mig) / "raw" / "_extraction.json").read_text())
        assert extraction["complete"] and extraction["records"] > 0
        expected = clio.counts(catalog.CLIO_OBJECTS)  # what its own Clio holds, by paging it
        assert {name: info["records"] for name, info in extraction["objects"].items()} == {
            name: expected[name] for name in extraction["objects"]}, firm
        assert len(clio.request_log()) > before[firm]  # read from its own Clio
        for held in ("lease.json", "documents_lease.json"):  # released at the end
            assert not (_root(world, firm, mig) / held).exists(), (firm, held)
    assert not (world["work"] / "staging_default").joinpath(FIRM_B).exists()


def test_a_rejected_sample_makes_the_full_load_refuse(world):
    c: Cluster = world["cluster"]
    conf = {"firm": FIRM_A, "migration_id": MIG_A}
    assert c.wait_run("mig_03_resolve_users", c.trigger("mig_03_resolve_users", conf)) == "success"
    run = c.trigger("mig_04_sample", conf)
    c.wait_parked("mig_04_sample", run, "approve_sample")
    detail = c.get(f"/api/v2/dags/mig_04_sample/dagRuns/{run}/taskInstances/approve_sample/-1/hitlDetails")
    assert f"(/clio2sf/{FIRM_A}/{MIG_A}/diff)" in detail["body"]  # links the filterable diff view
    assert not (_root(world, FIRM_A, MIG_A) / "lease.json").exists()  # not held while the approval waits
    c.answer("mig_04_sample", run, "approve_sample", "Reject", user="ops_lead",
             params_input={"reason": "matter stages are wrong in the diff"})
    assert c.wait_run("mig_04_sample", run) == "failed"
    rejected = yaml.safe_load((_root(world, FIRM_A, MIG_A) / "approvals" / "sample.yaml").read_text())
    last = rejected["confirmations"][-1]
    assert (last["by"], last["decision"], last["reason"]) == ("ops_lead", "rejected", "matter stages are wrong in the diff")

    load = c.trigger("mig_05_full_load", conf, user="ops_engineer")
    assert c.wait_run("mig_05_full_load", load) == "failed"
    states = c.task_states("mig_05_full_load", load)
    assert states[("preflight_load", -1)] == "failed"
    assert not any(state == "success" for (task_id, _), state in states.items() if "load_batch" in task_id)
    log = c.task_log("mig_05_full_load", load, "preflight_load")
    assert "no approved sample" in log and "rejected by ops_lead" in log and "matter stages are wrong" in log


def test_a_failed_load_batch_cleared_with_downstream_resumes_to_success_without_duplicates(world):
    """One Contact batch fails for good (the org refuses its call as over the daily API limit: no Airflow
    retry can help), the run fails with everything after it upstream_failed; the cause is fixed and the
    failed map index is cleared with Downstream and Only failed, as the UI's Clear dialog offers: the
    run goes on to success and nothing is duplicated in the org."""
    from clio2sf_airflow.phases.common import RESUME_ADVICE

    c: Cluster = world["cluster"]
    sf = world["sf_a"]
    conf = {"firm": FIRM_A, "migration_id": MIG_A}
    run = c.trigger("mig_04_sample", conf)  # a new sample run and approval after the rejection
    c.wait_parked("mig_04_sample", run, "approve_sample")
    c.answer("mig_04_sample", run, "approve_sample", "Approve", user="ops_engineer")
    assert c.wait_run("mig_04_sample", run) == "success"

    dag_id = "mig_05_full_load"
    # deterministic: the first Contact upsert call of the load is refused (403 REQUEST_LIMIT_EXCEEDED)
    sf.knobs(limit_exceeded_on="PATCH /composite/sobjects/Contact/#1")
    load = c.trigger(dag_id, {**conf, "load_mode": "composite"}, user="ops_engineer")
    assert c.wait_run(dag_id, load, timeout=1500) == "failed"
    assert sf.faults().get("REQUEST_LIMIT_EXCEEDED") == 1
    states = c.task_states(dag_id, load)
    failed = [key for key, state in states.items() if state == "failed" and key[0] != "verify"]
    assert len(failed) == 1 and failed[0][0] == "load_Contact.load_batch", failed
    waiting = [key for key, state in states.items() if state == "upstream_failed"]
    assert ("reconcile", -1) in waiting and len(waiting) >= 10, states
    lines = c.task_log_lines(dag_id, load, failed[0][0], map_index=failed[0][1])
    assert any("REQUEST_LIMIT_EXCEEDED" in line for line in lines)
    assert any(line.strip() == RESUME_ADVICE for line in lines), "the advice is not on its own line"
    assert c.try_number(dag_id, load, *failed[0]) == 1  # not retried: retrying cannot help

    # the documents' extraction is made "still running" (its committed batches held back in _progress.json,
    # as while mig_02_extract downloads): load_documents must give its slot back, not wait in it
    progress_file = _root(world, FIRM_A, MIG_A) / "raw" / "documents" / "_progress.json"
    committed = json.loads(progress_file.read_text())
    assert committed["complete"] and committed["batches"] >= 1
    _write_atomically(progress_file, {**committed, "batches": committed["batches"] - 1, "complete": False})

    sf.knobs(limit_exceeded_on="")  # the cause is fixed (the org's allowance reset)
    cleared = c.clear(dag_id, load, [list(failed[0])], downstream=True, only_failed=True)
    cleared_keys = {(t["task_id"], t["map_index"]) for t in cleared}
    assert failed[0] in cleared_keys and ("reconcile", -1) in cleared_keys and len(cleared_keys) > len(waiting) // 2
    # the state stays (it comes back after each look) until the progress file changes: no race
    c.wait_task(dag_id, load, "load_documents", {"up_for_reschedule"}, timeout=1500)
    marks = _root(world, FIRM_A, MIG_A) / "loads" / load / "documents"
    assert len(list(marks.glob("batch-*.json"))) == committed["batches"] - 1
    started = json.loads((marks / "_wait.json").read_text())["started_at"]
    _write_atomically(progress_file, committed)  # the extraction commits its last batch and completes
    assert c.wait_run(dag_id, load, timeout=1500) == "success", c.task_states(dag_id, load)
    assert set(c.task_states(dag_id, load).values()) <= {"success", "skipped"}
    # the firm's Salesforce pool held every API task, the mapped batches and the cleared one included
    _in_firm_pool(c, dag_id, load, FIRM_A, {"load_Contact.load_batch": "salesforce_api", "load_deferred": "salesforce_api",
                                            "load_documents": "salesforce_api", "verify": "salesforce_api"})
    assert c.try_number(dag_id, load, *failed[0]) == 2
    assert c.try_number(dag_id, load, "load_documents") == 1  # a reschedule is no retry
    assert json.loads((marks / "_wait.json").read_text())["started_at"] == started  # the deadline kept its start
    totals = c.get(f"/api/v2/dags/{dag_id}/dagRuns/{load}/taskInstances/load_documents/xcomEntries/return_value")["value"]
    totals = totals if isinstance(totals, dict) else json.loads(totals)
    batch_marks = [json.loads(m.read_text()) for m in sorted(marks.glob("batch-*.json"))]
    assert len(batch_marks) == committed["batches"] == totals["batches"]
    assert totals["rows"] == sum(m["rows"] for m in batch_marks) > 0 and totals["failed"] == 0, totals

    # no duplicate in the org: every migrated record once by its external id, and no record without one
    client = sf.sf()
    for sobject in ("Account", "Contact"):
        rows = client.query_all(f"SELECT Id, Clio_Id__c FROM {sobject}")["records"]
        ids = [r["Clio_Id__c"] for r in rows if r["Clio_Id__c"]]
        assert ids and len(ids) == len(set(ids)), f"{sobject}: {len(ids)} rows, {len(set(ids))} external ids"
    reconciliation = json.loads((_root(world, FIRM_A, MIG_A) / "reports" / load / "reconciliation.json").read_text())
    assert reconciliation["lost"] == 0 and reconciliation["duplicated"] == 0, reconciliation["headline"]


def test_reports_open_in_chromium_behind_login(world):
    """A browser without a session lands on Airflow's login; with the session cookie the report opens."""
    from tests.scheduler.browser import CHROMIUM, Chromium

    if CHROMIUM is None:
        pytest.fail("chromium is not installed: run `make browser` (make test does)")
    c: Cluster = world["cluster"]
    shots = Path(os.environ.get("CLIO2SF_SCREENSHOTS") or world["work"] / "screenshots")
    browser = Chromium()
    try:
        url = f"{c.base}/clio2sf/{FIRM_A}/{MIG_A}/summary"
        landed = browser.open(url)
        assert "/auth/login" in landed or "/login" in landed, landed
        browser.set_cookie(c.base, "_token", c.token("firm_reviewer"))
        assert browser.open(url) == url
        text = browser.eval("document.body.innerText")
        assert "Migration summary" in text and "ops_engineer" in text
        browser.screenshot(shots / "migration_summary.png")
        spec_url = f"{c.base}/clio2sf/{FIRM_A}/{MIG_A}/files/discover/mapping_spec.html"
        assert browser.open(spec_url) == spec_url and "Mapping" in browser.eval("document.body.innerText")
        browser.open(f"{c.base}/clio2sf/")
        assert f"{FIRM_A}" in browser.eval("document.body.innerText")
        browser.screenshot(shots / "reports_index.png")
        # the filterable views the approval and the listing link, behind the same login
        diff_url = f"{c.base}/clio2sf/{FIRM_A}/{MIG_A}/diff"
        assert browser.open(diff_url) == diff_url
        text = browser.eval("document.body.innerText")
        assert "Sample field-level diff" in text and "compared fields" in text, text[:500]
        rec_url = f"{c.base}/clio2sf/{FIRM_A}/{MIG_A}/reconciliation"
        assert browser.open(rec_url) == rec_url
        text = browser.eval("document.body.innerText")
        assert "Reconciliation against source totals" in text and "exceptions only" in text, text[:500]
    finally:
        browser.close()


def test_reports_behind_airflow_login(world):
    import requests

    c: Cluster = world["cluster"]
    url = f"{c.base}/clio2sf/{FIRM_A}/{MIG_A}/files/discover/mapping_spec.html"
    assert requests.get(url, timeout=30).status_code == 401
    to_login = requests.get(url, headers={"Accept": "text/html"}, allow_redirects=False, timeout=30)
    assert to_login.status_code in (302, 307) and "login" in to_login.headers["location"]
    page = c.request("GET", f"/clio2sf/{FIRM_A}/{MIG_A}/files/discover/mapping_spec.html", user="firm_reviewer")
    assert page.headers["content-type"].startswith("text/html") and "<html" in page.text.lower()
    summary = c.request("GET", f"/clio2sf/{FIRM_A}/{MIG_A}/summary", user="firm_reviewer").text
    assert "ops_engineer" in summary and "Harlow" in summary
    c.request("POST", f"/clio2sf/{FIRM_A}/{MIG_A}/files/discover/mapping_spec.html", user="ops_lead", expect=405)
    assert str(ROOT)  # the bundle served is this checkout's
