"""Sandboxes and an Airflow metadata DB for tests that run the real phase DAGs over HTTP."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db() -> dict[str, str]:
    """Migrate the test AIRFLOW_HOME's SQLite DB once per session; return the Airflow env."""
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
    return env
