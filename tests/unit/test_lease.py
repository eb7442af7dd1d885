"""One writer per migration: the lease names the run that holds it; stale leases are taken over."""

from __future__ import annotations

import pytest

from clio2sf import lease

pytestmark = pytest.mark.unit


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    active = {("mig_05_full_load", "manual__1")}
    is_active = lambda d, r: (d, r) in active  # noqa: E731
    lease.hold(tmp_path, dag_id="mig_05_full_load", run_id="manual__1", phase="full_load", is_active=is_active)
    with pytest.raises(lease.LeaseHeld) as info:
        lease.hold(tmp_path, dag_id="mig_06_delta", run_id="scheduled__2", phase="delta", is_active=is_active)
    assert "full_load run mig_05_full_load / manual__1" in str(info.value)
    assert "\n" in str(info.value)  # advice on its own line
    # the holder itself (a retried or cleared task) keeps it
    again = lease.hold(tmp_path, dag_id="mig_05_full_load", run_id="manual__1", phase="full_load", is_active=is_active)
    assert again["run_id"] == "manual__1"


def test_stale_lease_is_taken_over_and_release_only_by_holder(tmp_path):
    notes = []
    lease.hold(tmp_path, dag_id="mig_07_rollback", run_id="r1", phase="rollback", is_active=lambda d, r: True)
    taken = lease.hold(tmp_path, dag_id="mig_06_delta", run_id="r2", phase="delta",
                       is_active=lambda d, r: False, log=notes.append)
    assert taken["run_id"] == "r2" and "stale" in notes[0] and "r1" in notes[0]
    assert not lease.release(tmp_path, dag_id="mig_07_rollback", run_id="r1")  # not the holder
    assert lease.read_lease(tmp_path)["run_id"] == "r2"
    assert lease.release(tmp_path, dag_id="mig_06_delta", run_id="r2")
    assert lease.read_lease(tmp_path) is None


def test_full_load_refuses_after_a_committed_delta(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from clio2sf import delta
    from clio2sf_airflow.phases.full_load import refuse_stale_snapshot

    refuse_stale_snapshot(tmp_path)  # no delta yet: fine
    delta.commit_watermark(tmp_path, "contacts", "2026-12-01T00:00:00Z", "scheduled__w1")
    with pytest.raises(AirflowFailException, match="scheduled__w1.*stale data"):
        refuse_stale_snapshot(tmp_path)
