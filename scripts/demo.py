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
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from scripts.cutover import change_firm
from scripts.runner import airflow_env, run_dag

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
FIRM = "harlow_vance"
MIGRATION = "demo"


def run_phase(dag_id: str, conf: dict, env: dict[str, str], logs: Path) -> float:
    """Run one phase DAG; print its outcome; stop the demo when it fails."""
    print(f"  {dag_id} ...", end="", flush=True)
    run = run_dag(dag_id, conf, env, logs)
    print(f" {'ok' if run.ok else 'FAILED'} ({run.seconds:.0f} s, log {run.log_path.relative_to(ROOT)})")
    if not run.ok:
        print(run.errors())
        sys.exit(f"demo stopped: {dag_id} failed")
    return run.seconds


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
        env = airflow_env(clio, sf, f"file://{staging}", rate_dir=DEMO / "rate")
        base = {"firm": FIRM, "migration_id": MIGRATION}

        timings["discover"] = run_phase("mig_01_discover", {**base, "apply_schema": True}, env, logs)
        approve("mapping", env)
        timings["extract"] = run_phase("mig_02_extract", base, env, logs)
        timings["resolve_users"] = run_phase("mig_03_resolve_users", base, env, logs)
        timings["sample"] = run_phase("mig_04_sample", base, env, logs)
        approve("sample", env)
        timings["full_load"] = run_phase("mig_05_full_load", base, env, logs)
        changed = change_firm(clio)
        print(f"  changed in Clio during cutover: updated {changed['updated']}, created {changed['created']}, "
              f"deleted {changed['deleted']}")
        timings["delta"] = run_phase("mig_06_delta", base, env, logs)
        timings["rollback"] = run_phase("mig_07_rollback", {**base, "dry_run": True}, env, logs)

        if errors := sf.internal_errors():  # a 500 is a sandbox bug, never something a real org would do
            sys.exit(f"demo stopped: the Salesforce sandbox answered 500 to {len(errors)} request(s): {errors[:3]}")
        (DEMO / "timings.json").write_text(json.dumps(timings, indent=2))
        from scripts.summary import print_summary

        print_summary(staging / FIRM / MIGRATION, clio, sf, timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
