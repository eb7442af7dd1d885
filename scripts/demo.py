"""The demo migration: seeded firm in the sandboxes, all seven phases, reports, a summary.

Run with ``make demo``. It starts both sandboxes, points the Airflow connections at them
through environment variables, runs each phase DAG with ``airflow dags test`` (the real DAGs,
hooks and clients over real HTTP), confirms the mapping and the sample the way an operator
would (``scripts.approve``), changes records in Clio to exercise the delta window, asks the
rollback DAG for a dry-run plan, and prints a summary with the report paths.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
FIRM = "harlow_vance"
MIGRATION = "demo"


def _airflow_env(clio, sf, staging: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_CONN_CLIO_DEFAULT": json.dumps(
                {
                    "conn_type": "http",
                    "host": clio.base_url,
                    "login": clio.client_id,
                    "password": clio.client_secret,
                    "extra": {"refresh_token": clio.refresh_token},
                }
            ),
            "AIRFLOW_CONN_SALESFORCE_DEFAULT": sf.connection_json(),
            "REQUESTS_CA_BUNDLE": str(sf.ca_bundle),
            "AIRFLOW_VAR_CLIO2SF_STAGING_ROOT": f"file://{staging}",
            "CLIO2SF_RATE_STATE_DIR": str(DEMO / "rate"),
        }
    )
    return env


def run_phase(dag_id: str, conf: dict, env: dict[str, str], logs: Path) -> float:
    """Run one phase DAG with ``airflow dags test``; return its wall time or exit on failure."""
    log = logs / f"{dag_id}.log"
    started = time.monotonic()
    print(f"  {dag_id} ...", end="", flush=True)
    with log.open("w") as fh:
        proc = subprocess.run(
            ["airflow", "dags", "test", dag_id, "-c", json.dumps(conf), "--mark-success-pattern", r"^approve_"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    took = time.monotonic() - started
    ok = proc.returncode == 0 and "state=success" in log.read_text()
    print(f" {'ok' if ok else 'FAILED'} ({took:.0f} s, log {log.relative_to(ROOT)})")
    if not ok:
        tail = "\n".join(line for line in log.read_text().splitlines() if "ERROR" in line or "Error" in line)[-3000:]
        print(tail)
        sys.exit(f"demo stopped: {dag_id} failed")
    return took


def approve(kind: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "scripts.approve", kind, "--firm", FIRM, "--migration-id", MIGRATION,
         "--by", "demo-operator@harlow-vance.example"],
        env=env,
        check=True,
        cwd=ROOT,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="demo", help="Clio sandbox size preset (tiny, demo, ...)")
    parser.add_argument("--window", type=float, default=2.0, help="compressed Clio rate-limit window in seconds")
    args = parser.parse_args(argv)

    from sandbox.clio.testing import run_clio_sandbox
    from sandbox.salesforce.testing import run_sf_sandbox

    shutil.rmtree(DEMO, ignore_errors=True)
    logs, staging = DEMO / "logs", DEMO / "staging"
    for d in (logs, staging, DEMO / "rate"):
        d.mkdir(parents=True, exist_ok=True)
    print(f"clio2sf demo: firm {FIRM}, migration {MIGRATION}, Clio preset {args.preset}, "
          f"Clio limit 50 requests per {args.window:g} s window (compressed time)")
    timings: dict[str, float] = {}
    with ExitStack() as stack:
        clio = stack.enter_context(
            run_clio_sandbox(DEMO / "clio", seed=42, preset=args.preset, rate_limit=50, window=args.window)
        )
        sf = stack.enter_context(run_sf_sandbox(DEMO / "salesforce", seed=42))
        print(f"sandboxes: Clio {clio.base_url}, Salesforce {sf.instance_url}")
        env = _airflow_env(clio, sf, staging)
        base = {"firm": FIRM, "migration_id": MIGRATION}

        timings["discover"] = run_phase("mig_01_discover", {**base, "apply_schema": True}, env, logs)
        approve("mapping", env)
        timings["extract"] = run_phase("mig_02_extract", base, env, logs)
        timings["resolve_users"] = run_phase("mig_03_resolve_users", base, env, logs)
        timings["sample"] = run_phase("mig_04_sample", base, env, logs)
        approve("sample", env)
        timings["full_load"] = run_phase("mig_05_full_load", base, env, logs)
        changed = clio.admin("mutate_demo")
        print(f"  changed in Clio during cutover: {changed}")
        timings["delta"] = run_phase("mig_06_delta", base, env, logs)
        timings["rollback"] = run_phase("mig_07_rollback", {**base, "dry_run": True}, env, logs)

        from scripts.summary import print_summary

        print_summary(staging / FIRM / MIGRATION, clio, sf, timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
