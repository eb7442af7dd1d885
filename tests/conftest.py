"""Test-wide setup: an isolated AIRFLOW_HOME and the project on the path.

Environment variables are set before anything imports Airflow, so tests never touch the
developer's ``.airflow`` home or its database.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One Airflow home (and SQLite DB) per pytest-xdist worker: parallel `airflow dags test` runs
# must not share a SQLite file.
_HOME = ROOT / f".airflow-test{'-' + os.environ['PYTEST_XDIST_WORKER'] if 'PYTEST_XDIST_WORKER' in os.environ else ''}"
_HOME.mkdir(exist_ok=True)
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"


import pytest  # noqa: E402 - the environment above must be set before anything imports Airflow


@pytest.fixture(scope="module", autouse=True)
def _salesforce_sandbox_never_answers_500():
    """Fail the module if a Salesforce sandbox it started answered any request with a 500.

    A real org's 500 is its own bug; the sandbox's is ours (every client error is a 4xx with a
    real error code). The request log (``requests.jsonl``) of each sandbox started meanwhile is read.
    """
    try:
        from sandbox.salesforce import testing
    except ImportError:  # pragma: no cover - the sandbox is not installed
        yield
        return
    first = len(testing.STARTED)
    yield
    bad = {str(d): errors for d in testing.STARTED[first:] if (errors := testing.internal_errors(d))}
    assert not bad, f"the Salesforce sandbox answered 500: {bad}"
