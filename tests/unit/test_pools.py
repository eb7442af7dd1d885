"""Pools per firm: the cluster policy moves a migration run's tasks from the shared pools to its firm's.

The policy runs in the scheduler's transaction: here it reads the pools through a real SQLAlchemy
session the run belongs to (SQLite in memory, Airflow's own ``slot_pool`` and ``dag_run`` tables),
and must not flush the pending run. Under a real scheduler (mapped tasks, Clear, a scheduled run's
empty conf) it is checked by ``tests/scheduler/test_under_scheduler.py``.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from clio2sf_airflow import pools

pytestmark = pytest.mark.unit


@pytest.fixture
def session():
    from airflow.models.dagrun import DagRun
    from airflow.models.pool import Pool

    engine = create_engine("sqlite://")
    DagRun.metadata.create_all(engine, tables=[Pool.__table__, DagRun.__table__])
    with Session(engine) as s:
        for name in ("default_pool", "clio_api", "salesforce_api", "clio_api_acme", "salesforce_api_acme",
                     "clio_api_acme_eu"):
            s.add(Pool(pool=name, slots=2, include_deferred=False))
        s.commit()
        pools._cache.clear()
        pools._warned.clear()
        yield s
    pools._cache.clear()


def _run(session, dag_id="mig_05_full_load", conf=None):
    from airflow.models.dagrun import DagRun

    dr = DagRun(dag_id=dag_id, run_id="manual__1", conf=conf, run_type="manual")
    session.add(dr)  # pending in the scheduler's session, as when it creates the run's task instances
    return dr


def _ti(pool, params=None):
    dag = SimpleNamespace(params=params or {"firm": "harlow_vance", "migration_id": "m1"})
    return SimpleNamespace(pool=pool, task_id="load_Contact.load_batch", task=SimpleNamespace(dag=dag))


def test_a_firm_with_its_own_pools_runs_in_them(session):
    dr = _run(session, conf={"firm": "acme", "migration_id": "m1"})
    for shared in ("salesforce_api", "clio_api"):
        ti = _ti(shared)
        pools.task_instance_mutation_hook(ti, dag_run=dr)
        assert ti.pool == f"{shared}_acme"
    assert dr in session.new, "the policy flushed the scheduler's pending run"


def test_a_firm_without_pools_shares_them_and_the_scheduler_log_says_so(session, caplog):
    dr = _run(session, conf={"firm": "brook", "migration_id": "m1"})
    with caplog.at_level(logging.WARNING, logger=pools.__name__):
        for _ in range(2):
            ti = _ti("clio_api")
            pools.task_instance_mutation_hook(ti, dag_run=dr)
            assert ti.pool == "clio_api"
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "firm brook has no pool clio_api_brook" in warned[0]  # once, not per task


def test_a_scheduled_run_without_conf_uses_the_dag_params_firm(session):
    dr = _run(session, dag_id="mig_06_delta__acme__m1", conf={})
    ti = _ti("salesforce_api", params={"firm": "acme", "migration_id": "m1"})
    pools.task_instance_mutation_hook(ti, dag_run=dr)
    assert ti.pool == "salesforce_api_acme"


def test_a_declared_pool_wins_even_before_it_exists(session, tmp_path, monkeypatch):
    (tmp_path / "acme-m1.yaml").write_text("firm: acme\nmigration_id: m1\nclio_pool: clio_api_acme_eu\n")
    (tmp_path / "acme-m2.yaml").write_text("firm: acme\nmigration_id: m2\nclio_pool: clio_api_acme_typo\n")
    monkeypatch.setenv("CLIO2SF_MIGRATIONS_DIR", str(tmp_path))
    ti = _ti("clio_api")
    pools.task_instance_mutation_hook(ti, dag_run=_run(session, conf={"firm": "acme", "migration_id": "m1"}))
    assert ti.pool == "clio_api_acme_eu"
    ti = _ti("clio_api")
    pools.task_instance_mutation_hook(ti, dag_run=_run(session, conf={"firm": "acme", "migration_id": "m2"}))
    assert ti.pool == "clio_api_acme_typo"  # a typo is not hidden in the shared pool: the scheduler names it
    ti = _ti("salesforce_api")  # not declared: the firm's own
    pools.task_instance_mutation_hook(ti, dag_run=_run(session, conf={"firm": "acme", "migration_id": "m1"}))
    assert ti.pool == "salesforce_api_acme"


@pytest.mark.parametrize(("dag_id", "pool", "conf"), [
    ("other_team_dag", "clio_api", {"firm": "acme", "migration_id": "m1"}),  # not a bundle DAG
    ("mig_05_full_load", "default_pool", {"firm": "acme", "migration_id": "m1"}),  # not a shared API pool
    ("mig_05_full_load", "clio_api", {"firm": "../acme", "migration_id": "m1"}),  # not a firm name
])
def test_other_tasks_are_left_alone(session, dag_id, pool, conf):
    ti = _ti(pool)
    pools.task_instance_mutation_hook(ti, dag_run=_run(session, dag_id=dag_id, conf=conf))
    assert ti.pool == pool


def test_no_run_yet_leaves_the_pool(session):
    ti = _ti("clio_api")
    pools.task_instance_mutation_hook(ti, dag_run=None)  # TaskInstance() itself calls the hook without a run
    assert ti.pool == "clio_api"


def test_airflow_installs_the_policy_from_the_plugins_folder(session):
    """Airflow's own entry point (what the scheduler calls) routes through the bundle's policy."""
    import airflow.settings

    assert airflow.settings.task_instance_mutation_hook.is_noop is False
    ti = _ti("salesforce_api")
    airflow.settings.task_instance_mutation_hook(ti, dag_run=_run(session, conf={"firm": "acme", "migration_id": "m1"}))
    assert ti.pool == "salesforce_api_acme"
