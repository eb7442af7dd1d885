"""Every phase DAG imports cleanly, follows the bundle's policy and does no I/O at parse time."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.dags.integrity import load_dagbag, problems

DAGS = Path(__file__).resolve().parents[2] / "dags"
PHASES = ["discover", "extract", "resolve_users", "sample", "full_load", "delta", "rollback", "webhooks"]

pytestmark = pytest.mark.unit


def test_bundle_has_no_integrity_problems():
    assert problems(DAGS) == []


def test_one_dag_per_phase_plus_one_delta_per_declared_cutover():
    from clio2sf.migrations import scheduled

    ids = sorted(load_dagbag(DAGS).dags)
    declared = [m.delta_dag_id for m in scheduled()]
    assert declared, "the bundle ships the demo firm's declaration with a cutover"
    assert ids == sorted([*(f"mig_{i:02d}_{p}" for i, p in enumerate(PHASES, start=1)), *declared])


def test_scheduled_delta_runs_carry_their_migration():
    from clio2sf.migrations import scheduled

    bag = load_dagbag(DAGS)
    for mig in scheduled():
        d = bag.dags[mig.delta_dag_id]
        assert d.params["firm"] == mig.firm and d.params["migration_id"] == mig.migration_id
        assert d.timetable.expression == mig.cutover.schedule and d.start_date == mig.cutover.start
    # the on-demand DAG has no schedule: a scheduled window always has a declared migration
    assert type(bag.dags["mig_06_delta"].timetable).__name__ == "NullTimetable"


def test_phase_dags_run_several_migrations_at_once_and_a_migrations_windows_one_at_a_time():
    """The lease keeps two writers of one migration apart, so the phases take runs of several at once."""
    from clio2sf.migrations import scheduled

    bag = load_dagbag(DAGS)
    for phase in ("discover", "extract", "resolve_users", "sample", "full_load", "delta", "rollback"):
        dag_id = next(d for d in bag.dags if d.startswith("mig_") and d.endswith(f"_{phase}"))
        assert bag.dags[dag_id].max_active_runs > 1, dag_id
    for mig in scheduled():
        assert bag.dags[mig.delta_dag_id].max_active_runs == 1  # one migration: its windows in order


def test_rollback_target_run_id_is_optional():
    from airflow.sdk.definitions.param import ParamsDict

    params = load_dagbag(DAGS).dags["mig_07_rollback"].params
    assert isinstance(params, ParamsDict)
    params.validate()  # defaults alone validate: the whole migration
    params["target_run_id"] = None
    params.validate()


def test_integrity_check_catches_an_import_error(tmp_path):
    # DagBag's safe mode only parses files that mention both "airflow" and "dag".
    (tmp_path / "broken_dag.py").write_text("from airflow.sdk import dag\nimport module_that_does_not_exist\n")
    found = problems(tmp_path)
    assert len(found) == 1
    assert "broken_dag.py" in found[0] and "module_that_does_not_exist" in found[0]


def test_integrity_check_catches_network_at_parse_time(tmp_path):
    (tmp_path / "chatty_dag.py").write_text(
        textwrap.dedent(
            """
            import socket
            from airflow.sdk import dag
            socket.create_connection(("127.0.0.1", 9))
            """
        )
    )
    found = problems(tmp_path)
    assert found and "parse time" in found[0]


def test_integrity_check_catches_policy_violations(tmp_path):
    (tmp_path / "lax_dag.py").write_text(
        textwrap.dedent(
            """
            from airflow.sdk import dag, task

            @dag(dag_id="lax")
            def lax():
                @task
                def t():
                    return 1
                t()

            lax()
            """
        )
    )
    found = problems(tmp_path)
    assert any("no tags" in f for f in found)
    assert any("no doc_md" in f for f in found)
    assert any("retries" in f for f in found)
    assert any("explicit schedule" in f for f in found)
