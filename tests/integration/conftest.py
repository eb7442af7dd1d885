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


@pytest.fixture
def sf_sandbox(tmp_path, monkeypatch):
    """A Salesforce sandbox (seed 42) that ``salesforce_default`` and ``requests`` reach, for this test."""
    from sandbox.salesforce.testing import run_sf_sandbox

    with run_sf_sandbox(tmp_path / "sf", seed=42) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sb.connection_json())
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sb.ca_bundle))
        yield sb


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server on loopback (tests/pgserver.py): the deployment's shared-state database.

    Never skips: without the server binaries every test that needs it fails, naming what is missing.
    """
    from tests.pgserver import PostgresUnavailable, run_postgres

    try:
        with run_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL needed and unavailable: {exc}", pytrace=False)
