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
