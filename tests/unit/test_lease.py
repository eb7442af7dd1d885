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


def test_documents_lease_is_apart_from_the_one_writer_lease(tmp_path):
    always = lambda d, r: True  # noqa: E731
    lease.hold(tmp_path, dag_id="mig_05_full_load", run_id="l1", phase="full_load", is_active=always)
    # the documents of an extraction download beside the full load of the same migration
    lease.hold(tmp_path, dag_id="mig_02_extract", run_id="e1", phase="documents", is_active=always,
               name=lease.DOCUMENTS_LEASE)
    # but not beside a second extraction's documents
    with pytest.raises(lease.LeaseHeld, match="documents run mig_02_extract / e1"):
        lease.hold(tmp_path, dag_id="mig_02_extract", run_id="e2", phase="documents", is_active=always,
                   name=lease.DOCUMENTS_LEASE)
    assert not lease.release(tmp_path, dag_id="mig_02_extract", run_id="e1")  # not the writer lease's holder
    assert lease.release(tmp_path, dag_id="mig_02_extract", run_id="e1", name=lease.DOCUMENTS_LEASE)
    assert lease.read_lease(tmp_path)["run_id"] == "l1"


class _Context(dict):
    """What the phase task functions read from Airflow's context: params, run, DAG and the runs' states."""

    def __init__(self, dag_id: str, run: str, active: set[tuple[str, str]]):
        from types import SimpleNamespace

        super().__init__(params={"firm": "harlow_vance", "migration_id": "m1", "objects": []}, run_id=run,
                         dag=SimpleNamespace(dag_id=dag_id),
                         ti=SimpleNamespace(get_dagrun_state=lambda dag_id, run_id: (
                             "running" if (dag_id, run_id) in active else "success")))


@pytest.fixture
def phase_tasks(tmp_path, monkeypatch):
    """The extract and sample task functions on a migration root in ``tmp_path``, Clio and Salesforce
    left out; ``as_run(dag_id, run_id)`` makes the next calls those of that run."""
    from clio2sf_airflow.phases import common, extract, sample

    root = tmp_path / "harlow_vance" / "m1"
    root.mkdir(parents=True)
    active: set[tuple[str, str]] = set()
    current = {}
    for module in (common, extract):
        monkeypatch.setattr(module, "get_current_context", lambda: current["ctx"])
    monkeypatch.setattr(common, "migration_root", lambda firm, mig: root)
    for module in (extract, sample):
        monkeypatch.setattr(module, "firm_spec", lambda firm: None)
        monkeypatch.setattr(module, "require_mapping_confirmed", lambda spec, r: {})
    from types import SimpleNamespace

    # Clio left out below the phase's own code: the extraction itself is clio2sf.extract's (tested there)
    monkeypatch.setattr(extract.migration, "clio_hook", lambda p: SimpleNamespace(
        get_page=None, download_document=None, requests_made=0))
    monkeypatch.setattr(extract, "_extract_object", lambda obj, *a, **kw: {
        "object": obj.name, "records": 1, "batches": 1, "requests": 1, "complete": True})
    monkeypatch.setattr(sample, "sample_diff", lambda *a, **kw: {"records": 0, "mismatches": 0})
    monkeypatch.setattr(sample.migration, "salesforce_hook", lambda p: None)

    def as_run(dag_id: str, run: str) -> None:
        active.add((dag_id, run))
        current["ctx"] = _Context(dag_id, run, active)

    return {"root": root, "extract": extract, "sample": sample, "as_run": as_run, "active": active}


def test_extraction_holds_the_writer_lease_for_the_records_only(phase_tasks):
    from airflow.sdk.exceptions import AirflowFailException

    extract, root, as_run = phase_tasks["extract"], phase_tasks["root"], phase_tasks["as_run"]
    as_run("mig_05_full_load", "manual__load")
    lease.hold(root, dag_id="mig_05_full_load", run_id="manual__load", phase="full_load",
               is_active=lambda d, r: True)
    as_run("mig_02_extract", "manual__x1")
    with pytest.raises(AirflowFailException, match="full_load run mig_05_full_load / manual__load") as info:
        extract.plan_extraction()  # a second writer of the same migration is refused, naming the holder
    assert "\n" in str(info.value)
    phase_tasks["active"].discard(("mig_05_full_load", "manual__load"))  # that run ended

    items = extract.plan_extraction()  # the stale lease is taken over
    assert lease.read_lease(root)["run_id"] == "manual__x1" and "documents" not in {i["object"] for i in items}
    summaries = [extract.extract_object(item) for item in items]
    extract.summarize_extraction(summaries)
    assert lease.read_lease(root) is None  # released once the record objects are staged

    as_run("mig_04_sample", "manual__s1")  # the next phase takes the writer lease while documents download
    lease.hold(root, dag_id="mig_04_sample", run_id="manual__s1", phase="sample", is_active=lambda d, r: True)
    as_run("mig_02_extract", "manual__x1")
    extract.extract_documents()  # beside the sample: not under the writer lease
    assert lease.read_lease(root)["run_id"] == "manual__s1"
    assert lease.read_lease(root, lease.DOCUMENTS_LEASE) is None  # its own lease, released at its end

    lease.hold(root, dag_id="mig_02_extract", run_id="manual__x1", phase="documents", is_active=lambda d, r: True,
               name=lease.DOCUMENTS_LEASE)  # as if still downloading
    as_run("mig_02_extract", "manual__x2")
    with pytest.raises(AirflowFailException, match="documents run mig_02_extract / manual__x1"):
        extract.extract_documents()  # a second extraction's documents do not download beside the first's


def test_the_sample_releases_the_writer_lease_before_its_approval_waits(phase_tasks):
    sample, root, as_run = phase_tasks["sample"], phase_tasks["root"], phase_tasks["as_run"]
    as_run("mig_04_sample", "manual__s1")
    lease.hold(root, dag_id="mig_04_sample", run_id="manual__s1", phase="sample", is_active=lambda d, r: True)
    sample.diff_sample()  # the last task before approve_sample
    assert lease.read_lease(root) is None


class _Reached(Exception):
    """Raised by a stand-in just past the guard under test: the task got through it."""


def test_users_and_sample_refuse_a_partial_extraction(phase_tasks, monkeypatch):
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from clio2sf_airflow.phases import load_common, resolve_users

    extract, sample, root, as_run = (phase_tasks[k] for k in ("extract", "sample", "root", "as_run"))
    monkeypatch.setattr(resolve_users, "firm_spec", lambda firm: SimpleNamespace(options={}))
    monkeypatch.setattr(load_common, "user_map", lambda r: {})
    monkeypatch.setattr(load_common, "check_write_access", lambda spec, r, **kw: {})

    def reached(*a, **kw):
        raise _Reached

    monkeypatch.setattr(resolve_users.migration, "salesforce_hook", reached)
    monkeypatch.setattr(sample, "choose_sample", reached)
    tasks = {"mig_03_resolve_users": resolve_users.resolve, "mig_04_sample": sample.select_sample}
    for dag_id, task in tasks.items():  # no extraction yet
        as_run(dag_id, "manual__never")
        with pytest.raises(AirflowFailException, match="'harlow_vance', migration 'm1'.*never finished"):
            task()
        assert lease.read_lease(root) is None  # the refusal leaves the migration free

    as_run("mig_02_extract", "manual__x1")  # one object failed; its lease went stale
    extract.summarize_extraction([{"object": "contacts", "records": 3, "batches": 1, "requests": 2, "complete": True},
                                  {"object": "matters", "records": 1, "batches": 1, "requests": 1, "complete": False}])
    for dag_id, task in tasks.items():
        as_run(dag_id, "manual__partial")
        with pytest.raises(AirflowFailException, match="not complete") as info:
            task()
        assert "mig_02_extract" in str(info.value) and "Clear → Downstream" in str(info.value)
        assert lease.read_lease(root) is None

    as_run("mig_02_extract", "manual__x2")  # records complete, documents still to download: enough
    extract.summarize_extraction([{"object": "contacts", "records": 3, "batches": 1, "requests": 2, "complete": True}])
    for dag_id, task in tasks.items():
        as_run(dag_id, "manual__ok")
        with pytest.raises(_Reached):
            task()
        assert lease.read_lease(root)["run_id"] == "manual__ok"
        lease.release(root, dag_id=dag_id, run_id="manual__ok")


def test_an_unreadable_holder_state_never_lets_a_second_writer_in(phase_tasks):
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    from clio2sf_airflow.phases import common

    root, as_run = phase_tasks["root"], phase_tasks["as_run"]
    lease.hold(root, dag_id="mig_05_full_load", run_id="manual__load", phase="full_load", is_active=lambda d, r: True)
    as_run("mig_06_delta", "scheduled__d1")

    def answer(outcome):
        def get_dagrun_state(dag_id, run_id):
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        common.get_current_context()["ti"] = SimpleNamespace(get_dagrun_state=get_dagrun_state)

    answer(ConnectionError("API server unreachable"))
    with pytest.raises(common.LeaseCheckFailed, match="mig_05_full_load / manual__load.*could not be made"):
        common.hold_lease("delta")  # retried by Airflow (not an AirflowFailException), never taken over
    answer(AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 500})))
    with pytest.raises(common.LeaseCheckFailed):
        common.hold_lease("delta")
    answer(AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={})))  # no status at all
    with pytest.raises(common.LeaseCheckFailed):
        common.hold_lease("delta")
    answer("up_for_retry")  # not a state a DAG run finishes in: still a writer
    with pytest.raises(Exception, match="one writer at a time"):
        common.hold_lease("delta")
    assert lease.read_lease(root)["run_id"] == "manual__load"

    answer(AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 404})))
    assert common.hold_lease("delta")["run_id"] == "scheduled__d1"  # the holder run was deleted: stale
    lease.release(root, dag_id="mig_06_delta", run_id="scheduled__d1")
    lease.hold(root, dag_id="mig_05_full_load", run_id="manual__load", phase="full_load", is_active=lambda d, r: True)
    import httpx  # the same 404 asked in-process (airflow dags test): the response's own status
    from airflow.sdk.api.client import ServerResponseError

    request = httpx.Request("GET", "http://in-process/dag-runs/mig_05_full_load/manual__load/state")
    answer(ServerResponseError("Not Found", request=request, response=httpx.Response(404, request=request)))
    assert common.hold_lease("delta")["run_id"] == "scheduled__d1"
    lease.release(root, dag_id="mig_06_delta", run_id="scheduled__d1")
    lease.hold(root, dag_id="mig_05_full_load", run_id="manual__load", phase="full_load", is_active=lambda d, r: True)
    answer("failed")  # known finished
    assert common.hold_lease("delta")["run_id"] == "scheduled__d1"


def test_discover_holds_the_writer_lease_until_apply_schema(phase_tasks, monkeypatch):
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from clio2sf_airflow.phases import common, discover

    root, as_run = phase_tasks["root"], phase_tasks["as_run"]
    hook = SimpleNamespace(conn_id="sf", clio_conn_id="clio", test_connection=lambda: (True, "ok"))
    monkeypatch.setattr(discover, "firm_spec", lambda firm: SimpleNamespace(content_hash="h" * 12))
    monkeypatch.setattr(discover.migration, "clio_hook", lambda p: hook)
    monkeypatch.setattr(discover.migration, "salesforce_hook", lambda p: hook)
    monkeypatch.setattr(discover, "_missing_targets", lambda spec, h: [])

    as_run("mig_01_discover", "manual__d1")
    discover.preflight()
    assert lease.read_lease(root)["run_id"] == "manual__d1"
    as_run("mig_01_discover", "manual__d2")  # a second discover of the same migration, d1 still running
    with pytest.raises(AirflowFailException, match="discover run mig_01_discover / manual__d1"):
        discover.preflight()
    for task in (discover.read_clio_schema, discover.read_salesforce, discover.build_mapping_document):
        with pytest.raises(AirflowFailException, match="manual__d1"):
            task()  # each writing task checks too (a cleared one after a takeover)
    common.get_current_context()["params"]["apply_schema"] = True
    with pytest.raises(AirflowFailException, match="manual__d1"):
        discover.apply_schema()  # never two schema applications at once

    as_run("mig_01_discover", "manual__d1")
    with pytest.raises(AirflowSkipException):
        discover.apply_schema()  # apply_schema off: discover's writes are done
    assert lease.read_lease(root) is None  # released before approve_mapping waits
