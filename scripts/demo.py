"""The demo migration: seeded firm in the sandboxes, all seven phases under a real Airflow, reports, a summary.

Run with ``make demo``. It starts both sandboxes and a real Airflow (``scripts/cluster.py``:
scheduler + dag-processor + api-server, LocalExecutor, SQLite, in ``.demo/airflow/``, the HTTP port a
free one), points the connections at the sandboxes through environment variables, and runs the phases
the way an ops team does, through the REST API as named users of the simple auth manager:

* each phase DAG is triggered with its params by ``ops_engineer``;
* the mapping (``approve_mapping``) and the sample (``approve_sample``) are approved through the HITL
  API by ``ops_lead``, once the step waits for input and the scheduler has seen its worker park
  (:meth:`Cluster.wait_parked`); the approval records in the staging area carry that name (checked);
* extract lets the next phases start once its records are staged (``summarize_extraction``), as the
  runbook says: its documents download beside resolve users, sample and full load;
* then records are changed, added and deleted in Clio (:func:`scripts.cutover.change_firm`), the delta
  DAG runs a window, and the rollback DAG plans a dry run.

Each phase prints ``ok`` or ``FAILED``, its run's wall time (start to end of the DAG run, approvals
included) and the folder of its task logs under ``.demo/airflow/logs/``. A failed phase prints its
failed tasks' error lines and the demo exits non-zero. The cluster and the sandboxes are stopped in
every case. The closing summary (:func:`scripts.summary.print_summary`) and ``.demo/timings.json``
(each phase's run time; extract's overlaps the next three) follow a successful run.

It takes 4.5 to 6.5 minutes: the whole run took 271 s and 386 s on a 2-CPU machine under
``nice -n 19`` while other work kept the load average at 3.8–5.1 and 7.0–9.2 (2026-12-04), of which
30–50 s to seed the sandboxes and start Airflow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from scripts.cutover import change_firm
from scripts.runner import ROOT, airflow_env

DEMO = ROOT / ".demo"
FIRM = "harlow_vance"
MIGRATION = "demo"
#: Who triggers the phases, and who answers the approvals (named users of ``scripts.cluster.USERS``).
OPERATOR, APPROVER = "ops_engineer", "ops_lead"
APPROVALS = {"mig_01_discover": "approve_mapping", "mig_04_sample": "approve_sample"}
#: A phase whose later tasks run beside the next phases: the demo moves on once this task succeeded.
READY_TASK = {"mig_02_extract": "summarize_extraction"}
#: How long one phase may take before the demo calls it failed.
PHASE_TIMEOUT = 3600.0


class PhaseFailed(RuntimeError):
    """A phase run did not succeed (its failed tasks' error lines were printed)."""


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


class Driver:
    """Triggers phases on a cluster (:class:`scripts.cluster.Cluster` or anything with its methods),
    answers their approvals, and reports each run's outcome."""

    def __init__(self, cluster: Any, conf: dict[str, Any], *, out: Callable[[str], None] = print,
                 timeout: float = PHASE_TIMEOUT) -> None:
        self.cluster, self.conf, self.out, self.timeout = cluster, conf, out, timeout
        self.started: dict[str, tuple[str, str]] = {}  # phase -> (dag_id, run_id)
        self.timings: dict[str, float] = {}

    def start(self, phase: str, dag_id: str, extra: dict[str, Any] | None = None) -> str:
        """Trigger ``dag_id`` as the operator; answer its approval once it waits. Returns its run id."""
        c = self.cluster
        run_id = c.trigger(dag_id, {**self.conf, **(extra or {})}, user=OPERATOR)
        self.started[phase] = (dag_id, run_id)
        self.out(f"  {dag_id}: triggered by {OPERATOR} (run {run_id})")
        try:
            if dag_id in APPROVALS:
                c.wait_parked(dag_id, run_id, APPROVALS[dag_id], timeout=self.timeout)
            elif dag_id in READY_TASK:
                c.wait_task(dag_id, run_id, READY_TASK[dag_id], {"success"}, timeout=self.timeout)
        except (AssertionError, TimeoutError):
            return run_id  # the run ended (or hangs) before that step: finish() reports it
        if dag_id in APPROVALS:
            c.answer(dag_id, run_id, APPROVALS[dag_id], "Approve", user=APPROVER)
            self.out(f"  {dag_id}: {APPROVALS[dag_id]} answered Approve by {APPROVER}")
        elif dag_id in READY_TASK:
            self.out(f"  {dag_id}: records staged ({READY_TASK[dag_id]} done), the next phases may start")
        return run_id

    def finish(self, phase: str) -> float:
        """Wait for a started phase's run to end; print its outcome; raise :class:`PhaseFailed` on failure."""
        c = self.cluster
        dag_id, run_id = self.started[phase]
        try:
            state = c.wait_run(dag_id, run_id, timeout=self.timeout)
        except TimeoutError:
            state = c.run_state(dag_id, run_id)
        run = c.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        start, end = _ts(run.get("start_date")) or time.time(), _ts(run.get("end_date")) or time.time()
        seconds = max(0.0, end - start)
        logs = Path(c.home) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        shown = logs.relative_to(ROOT) if logs.is_relative_to(ROOT) else logs
        ok = state == "success"
        self.out(f"  {dag_id} {'ok' if ok else 'FAILED'} ({seconds:.0f} s, logs {shown}/)")
        if not ok:
            self.out(f"  {dag_id} ended {state}")
            for ti in c.task_instances(dag_id, run_id):
                if ti["state"] != "failed":
                    continue
                where = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
                self.out(f"  failed task {where} (try {ti.get('try_number') or 1}):")
                for line in c.task_error_lines(dag_id, run_id, ti["task_id"], ti["map_index"],
                                               max(1, ti.get("try_number") or 1)):
                    self.out(f"    {line}")
            raise PhaseFailed(f"{dag_id} {state}")
        pools = sorted({ti.get("pool") for ti in c.task_instances(dag_id, run_id)} - {None, "default_pool"})
        if pools:  # the pools-per-firm policy's work, as the UI shows it on each task instance
            self.out(f"  {dag_id}: API tasks ran in pool {', '.join(pools)}")
        self.timings[phase] = seconds
        return seconds

    def run(self, phase: str, dag_id: str, extra: dict[str, Any] | None = None) -> float:
        self.start(phase, dag_id, extra)
        return self.finish(phase)


def approved_by(kind: str) -> list[str]:
    """Who approved ``kind`` (``mapping``/``sample``) of the demo migration, from its approval record."""
    from clio2sf.mapping.confirm import read_confirmations

    store = DEMO / "staging" / FIRM / MIGRATION / "approvals" / f"{kind}.yaml"
    return [str(e.get("by")) for e in read_confirmations(store)] if store.exists() else []


def run_phases(driver: Driver, clio: Any, check_approval: Callable[[str], list[str]] = approved_by) -> None:
    """Every phase in order, as the runbook drives them (extract overlaps the next three phases)."""
    driver.run("discover", "mig_01_discover", {"apply_schema": True})
    if APPROVER not in check_approval("mapping"):
        raise PhaseFailed(f"the mapping approval does not record {APPROVER}: {check_approval('mapping')}")
    driver.start("extract", "mig_02_extract")
    driver.run("resolve_users", "mig_03_resolve_users")
    driver.run("sample", "mig_04_sample")
    if APPROVER not in check_approval("sample"):
        raise PhaseFailed(f"the sample approval does not record {APPROVER}: {check_approval('sample')}")
    driver.run("full_load", "mig_05_full_load")
    driver.finish("extract")
    changed = change_firm(clio)
    driver.out(f"  changed in Clio during cutover: updated {changed['updated']}, created {changed['created']}, "
               f"deleted {changed['deleted']}")
    driver.run("delta", "mig_06_delta")
    driver.run("rollback", "mig_07_rollback", {"dry_run": True})
    driver.timings = {k: driver.timings[k] for k in
                      ("discover", "extract", "resolve_users", "sample", "full_load", "delta", "rollback")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", help="Clio sandbox size preset (tiny, demo, ...)")
    parser.add_argument("--window", type=float, default=2.0, help="compressed Clio rate-limit window in seconds")
    args = parser.parse_args(argv)

    from sandbox.clio.testing import run_clio_sandbox
    from sandbox.salesforce.testing import run_sf_sandbox
    from scripts.cluster import Cluster

    began = time.monotonic()
    shutil.rmtree(DEMO, ignore_errors=True)
    staging = DEMO / "staging"
    for d in (staging, DEMO / "rate"):
        d.mkdir(parents=True, exist_ok=True)
    print(f"clio2sf demo: firm {FIRM}, migration {MIGRATION}, Clio preset {args.preset}, "
          f"Clio limit 50 requests per {args.window:g} s window (compressed time)")
    with ExitStack() as stack:
        clio = stack.enter_context(
            run_clio_sandbox(DEMO / "clio", seed=42, preset=args.preset, rate_limit=50, window=args.window)
        )
        sf = stack.enter_context(run_sf_sandbox(DEMO / "salesforce", seed=42))
        print(f"sandboxes: Clio {clio.base_url}, Salesforce {sf.instance_url}")
        # the cluster gets its own Airflow settings: none of the caller's (make's AIRFLOW_HOME, all-admins login)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__", "AIRFLOW_HOME"))}
        env = airflow_env(clio, sf, f"file://{staging}", base=base, rate_dir=DEMO / "rate")
        print("starting Airflow (scheduler, dag-processor, api-server) in .demo/airflow ...", flush=True)
        # the DAG files do not change during the demo: parse each once
        cluster = Cluster.start(DEMO / "airflow", env, reparse_interval=3600)
        stack.callback(cluster.stop)
        print(f"Airflow: {cluster.base} (users {OPERATOR}, {APPROVER}; passwords in "
              f"{(cluster.home / 'passwords.json').relative_to(ROOT)})")
        # the firm's own pools: the pools-per-firm policy puts its API tasks there (docs/architecture.md)
        made = cluster.firm_pools(FIRM)
        print("pools of the firm: " + ", ".join(f"{name} ({slots} slots)" for name, slots in made.items()))
        driver = Driver(cluster, {"firm": FIRM, "migration_id": MIGRATION}, out=lambda s: print(s, flush=True))
        try:
            run_phases(driver, clio)
        except PhaseFailed as exc:
            print(f"demo stopped: {exc}", file=sys.stderr)
            return 1

        if errors := sf.internal_errors():  # a 500 is a sandbox bug, never something a real org would do
            print(f"demo stopped: the Salesforce sandbox answered 500 to {len(errors)} request(s): {errors[:3]}",
                  file=sys.stderr)
            return 1
        (DEMO / "timings.json").write_text(json.dumps(driver.timings, indent=2))
        from scripts.summary import print_summary

        print_summary(staging / FIRM / MIGRATION, clio, sf, driver.timings)
        print(f"demo wall time: {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
