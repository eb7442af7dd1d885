"""Run phase DAGs with ``airflow dags test`` against the sandboxes (the integration tests), and the
environment that points Airflow at the sandboxes (:func:`airflow_env`: also the demo, the scheduler test
and the DAG benchmark, whose phases run under a real scheduler, ``scripts/cluster.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def airflow_env(clio, sf, staging_url: str, *, base: dict[str, str] | None = None, rate_dir: Path | None = None) -> dict[str, str]:
    """Environment that points the connections and the staging Variable at the sandboxes."""
    env = dict(os.environ if base is None else base)
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
            "AIRFLOW_VAR_CLIO2SF_STAGING_ROOT": staging_url,
            "CLIO2SF_STAGING_ROOT": staging_url,
        }
    )
    if rate_dir is not None:
        env["CLIO2SF_RATE_DIR"] = str(rate_dir)
    return env


@dataclass
class PhaseRun:
    dag_id: str
    ok: bool
    seconds: float
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def errors(self, limit: int = 4000) -> str:
        lines = [ln for ln in self.log().splitlines() if "ERROR" in ln or "Error" in ln or "Traceback" in ln]
        return "\n".join(lines)[-limit:]


def run_dag(dag_id: str, conf: dict, env: dict[str, str], log_dir: Path, *, tag: str = "") -> PhaseRun:
    """Run one DAG to completion; HITL approval steps (``approve_*``) are marked successful."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{dag_id}{'-' + tag if tag else ''}.log"
    started = time.monotonic()
    with log_path.open("w") as fh:
        proc = subprocess.run(
            ["airflow", "dags", "test", dag_id, "-c", json.dumps(conf), "--mark-success-pattern", r"approve_.*"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    took = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    ok = proc.returncode == 0 and "state=success" in text and "state=failed" not in text
    return PhaseRun(dag_id, ok, took, log_path)
