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

# `make test` runs two workers with --dist loadfile: a worker takes whole files from a queue. xdist
# orders that queue by the number of tests in a file, so a file of a few long tests (the scheduler
# test's 8 take minutes, the webhook module's 7 too) started late and ran alone at the end while
# the other worker idled. The files below take the longest: seconds of each file run alone under
# nice -n 19 on the 2-CPU machine at load 12-17 (2026-12-03; about 4x an idle machine's); they are
# queued first, longest first, and every other file after them in xdist's order. A file missing
# here or a wrong figure changes only the order, never which tests run or what they check.
LONG_FILES = {
    "tests/integration/test_phases.py": 1743,  # seven phase DAGs through `airflow dags test`
    "tests/scheduler/test_under_scheduler.py": 1697,  # scheduler + dag-processor + api-server
    "tests/integration/test_webhooks.py": 1327,
    "tests/faults/test_faulty_migration.py": 741,
    "tests/faults/test_bad_configuration.py": 338,
    "tests/integration/test_load_calls.py": 203,
    "tests/faults/test_kill_points.py": 111,
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the longest files first (the LONG_FILES above); others unchanged."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFilesFirst(LoadFileScheduling):
        ordered = False

        def _assign_work_unit(self, node):
            if not self.ordered:  # the first call: the queue is full, in xdist's order (stable sort keeps it)
                units = sorted(self.workqueue.items(), key=lambda unit: -LONG_FILES.get(unit[0], 0))
                self.workqueue.clear()
                self.workqueue.update(units)
                self.ordered = True
            super()._assign_work_unit(node)

    return LongestFilesFirst(config, log)


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
