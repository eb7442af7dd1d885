"""The demo drives the phases as users do (scripts.demo.Driver against a fake of scripts.cluster.Cluster):
each phase triggered by the named operator, each approval answered through the HITL API by the named
approver only after the step parked, extract overlapping the next phases, a failed phase reported with its
failed tasks' error lines. The old demo ran ``airflow dags test`` and had no such driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import demo
from scripts.cluster import error_lines

pytestmark = pytest.mark.unit

T0 = "2026-12-04T10:00:00Z"
T1 = "2026-12-04T10:00:42Z"


class FakeCluster:
    def __init__(self, home: Path, fail: str | None = None) -> None:
        self.home, self.fail = home, fail
        self.calls: list[tuple] = []
        self.runs: dict[str, str] = {}  # run_id -> dag_id

    def trigger(self, dag_id, conf, *, user):
        run_id = f"manual__{dag_id}"
        self.runs[run_id] = dag_id
        self.calls.append(("trigger", dag_id, user, conf))
        return run_id

    def wait_parked(self, dag_id, run_id, task_id, *, timeout):
        if dag_id == self.fail:  # Cluster.wait_task: the run ended before the step waited
            raise AssertionError(f"{dag_id} {run_id} ended with {task_id} upstream_failed")
        self.calls.append(("parked", dag_id, task_id))
        return "ti-1"

    def answer(self, dag_id, run_id, task_id, option, *, user):
        self.calls.append(("answer", dag_id, task_id, option, user))
        return {}

    def wait_task(self, dag_id, run_id, task_id, states, *, timeout):
        self.calls.append(("ready", dag_id, task_id))
        return "success"

    def wait_run(self, dag_id, run_id, *, timeout):
        self.calls.append(("finished", dag_id))
        return "failed" if dag_id == self.fail else "success"

    def run_state(self, dag_id, run_id):
        return "failed" if dag_id == self.fail else "success"

    def get(self, path):
        return {"start_date": T0, "end_date": T1}

    def task_instances(self, dag_id, run_id):
        if dag_id != self.fail:
            return [{"task_id": "load_batch", "map_index": 0, "state": "success", "pool": "salesforce_api_harlow_vance"},
                    {"task_id": "transform_batch", "map_index": 0, "state": "success", "pool": "default_pool"}]
        return [{"task_id": "diff_sample", "map_index": -1, "state": "failed", "try_number": 2},
                {"task_id": "approve_sample", "map_index": -1, "state": "upstream_failed", "try_number": 0}]

    def task_error_lines(self, dag_id, run_id, task_id, map_index, try_number):
        self.calls.append(("errors", dag_id, task_id, try_number))
        return ["Task failed with exception", "RuntimeError: the sample diff could not be written"]


def _drive(tmp_path, monkeypatch, fail=None):
    monkeypatch.setattr(demo, "change_firm", lambda clio: {"updated": 1, "created": 2, "deleted": 3})
    cluster, out = FakeCluster(tmp_path / "airflow", fail), []
    driver = demo.Driver(cluster, {"firm": "harlow_vance", "migration_id": "demo"}, out=out.append)
    return cluster, driver, out


def test_every_phase_is_triggered_by_the_operator_and_approved_by_the_approver_after_it_parked(tmp_path, monkeypatch):
    cluster, driver, out = _drive(tmp_path, monkeypatch)
    demo.run_phases(driver, clio=None, check_approval=lambda kind: [demo.APPROVER])

    triggers = [c for c in cluster.calls if c[0] == "trigger"]
    assert [c[1] for c in triggers] == ["mig_01_discover", "mig_02_extract", "mig_03_resolve_users",
                                        "mig_04_sample", "mig_05_full_load", "mig_06_delta", "mig_07_rollback"]
    assert {c[2] for c in triggers} == {"ops_engineer"}
    assert triggers[0][3] == {"firm": "harlow_vance", "migration_id": "demo", "apply_schema": True}
    assert triggers[-1][3]["dry_run"] is True
    # each approval answered once, by the approver, right after its step parked
    answers = [i for i, c in enumerate(cluster.calls) if c[0] == "answer"]
    assert [cluster.calls[i][1:] for i in answers] == [("mig_01_discover", "approve_mapping", "Approve", "ops_lead"),
                                                      ("mig_04_sample", "approve_sample", "Approve", "ops_lead")]
    assert all(cluster.calls[i - 1] == ("parked", cluster.calls[i][1], cluster.calls[i][2]) for i in answers)
    # extract overlaps: resolve users starts once the records are staged, extract is collected after the full load
    order = [c[:2] for c in cluster.calls]
    assert order.index(("ready", "mig_02_extract")) < order.index(("trigger", "mig_03_resolve_users"))
    assert order.index(("finished", "mig_05_full_load")) < order.index(("finished", "mig_02_extract")) \
        < order.index(("trigger", "mig_06_delta"))
    assert list(driver.timings) == ["discover", "extract", "resolve_users", "sample", "full_load", "delta", "rollback"]
    assert set(driver.timings.values()) == {42.0}
    assert sum(line.endswith("/)") and " ok (42 s, logs " in line for line in out) == 7
    # the pools the API tasks ran in, as the UI shows them (the firm's, by the pools-per-firm policy)
    assert sum(line.endswith(": API tasks ran in pool salesforce_api_harlow_vance") for line in out) == 7
    assert any(f"logs {tmp_path / 'airflow' / 'logs' / 'dag_id=mig_05_full_load'}" in line for line in out)


def test_a_failed_phase_prints_its_failed_tasks_error_lines_and_stops(tmp_path, monkeypatch):
    cluster, driver, out = _drive(tmp_path, monkeypatch, fail="mig_04_sample")
    with pytest.raises(demo.PhaseFailed, match="mig_04_sample failed"):
        demo.run_phases(driver, clio=None, check_approval=lambda kind: [demo.APPROVER])
    assert any("mig_04_sample FAILED (42 s" in line for line in out)
    assert ("errors", "mig_04_sample", "diff_sample", 2) in cluster.calls  # the failed try's log, not try 1
    assert "    RuntimeError: the sample diff could not be written" in out
    assert not any("upstream" in line or "approve_sample" in line.split(":")[0] for line in out if "failed task" in line)
    assert not any(c[0] == "trigger" and c[1] == "mig_05_full_load" for c in cluster.calls)


def test_a_phase_that_fails_before_its_approval_waits_is_reported_not_answered(tmp_path, monkeypatch):
    cluster, driver, out = _drive(tmp_path, monkeypatch, fail="mig_01_discover")
    with pytest.raises(demo.PhaseFailed, match="mig_01_discover failed"):
        demo.run_phases(driver, clio=None, check_approval=lambda kind: [demo.APPROVER])
    assert not any(c[0] == "answer" for c in cluster.calls)
    assert any("mig_01_discover FAILED" in line for line in out)


def test_an_approval_not_recorded_under_the_approvers_name_stops_the_demo(tmp_path, monkeypatch):
    cluster, driver, out = _drive(tmp_path, monkeypatch)
    with pytest.raises(demo.PhaseFailed, match="does not record ops_lead"):
        demo.run_phases(driver, clio=None, check_approval=lambda kind: ["unknown"])
    assert not any(c[0] == "trigger" and c[1] == "mig_02_extract" for c in cluster.calls)


def test_error_lines_keep_errors_and_their_exceptions_not_frames():
    events = [{"event": "starting", "level": "info"},
              {"event": "Task failed with exception", "level": "error",
               "error_detail": [{"exc_type": "RuntimeError", "exc_value": "boom",
                                 "frames": [{"filename": "/x.py", "lineno": 3, "name": "f"}]}]}]
    assert error_lines(events) == ["Task failed with exception", "RuntimeError: boom"]
    assert error_lines("a INFO fine\nb ERROR broke\n") == ["b ERROR broke"]
