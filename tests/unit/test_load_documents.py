"""``full_load.load_documents``: document batches are uploaded as the extraction commits them, while
it still runs; only committed batches; each once per run (a retry or a reschedule skips what it
marked); when nothing new is committed it gives its slot back (``AirflowRescheduleException``, never
a sleep) and gives up, naming what to do, ``documents_wait_hours`` after its first try started.

The extractor is simulated between the task's runs: after each reschedule the test commits the next
batch the way ``clio2sf.extract`` does (batch file, manifest, then ``_progress.json``), and the clock
is the test's, so no timing is involved.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException

from clio2sf import staging
from clio2sf_airflow.phases import full_load


class World:
    def __init__(self, root, batches: int, monkeypatch, *, pending: bool = True) -> None:
        self.root, self.total, self.committed = root, batches, 0
        self.events: list[tuple[str, str]] = []
        self.odir = staging.raw_dir(root, "documents")
        staging.ensure_dir(self.odir)
        self.manifest = staging.ManifestWriter(self.odir, "documents", 0)
        staging.write_json(root / "raw" / "_extraction.json", {"records_complete": True, "documents_pending": pending,
                                                              "objects": {}})
        self.params = {"firm": "f", "migration_id": "m", "documents_wait_hours": 1}
        monkeypatch.setattr(full_load, "params", lambda: dict(self.params))
        monkeypatch.setattr(full_load, "mroot", lambda p=None: root)
        monkeypatch.setattr(full_load, "run_id", lambda: "run1")
        monkeypatch.setattr(full_load.load_common, "transform_one", self.transform)
        monkeypatch.setattr(full_load.load_common, "load_one", self.load)
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        monkeypatch.setattr(full_load, "_now", lambda: self.clock)
        self.reschedules: list[datetime] = []

    def run(self) -> dict:
        """The task as Airflow runs it: again after each reschedule (the extractor commits its next batch
        meanwhile) until it returns. It never sleeps in its slot."""
        while True:
            try:
                return full_load.load_documents()
            except AirflowRescheduleException as e:
                self.reschedules.append(e.reschedule_date)
                self.clock = e.reschedule_date
                self.commit_next()

    def commit_next(self) -> None:
        """One extractor step: the next batch committed."""
        if self.committed >= self.total:
            return
        self.committed += 1
        n = self.committed
        entry = staging.write_jsonl_gz(self.odir / staging.batch_name(n), [{"object": "documents", "clio_id": n}])
        self.manifest.add(n, entry)
        done = n == self.total
        self.manifest.write(n, done)
        staging.write_json(self.odir / staging.PROGRESS, {"batches": n, "records": n, "complete": done})
        self.events.append(("committed", staging.batch_name(n)))

    def transform(self, item, out=""):
        name = item["path"].rsplit("/", 1)[-1]
        self.events.append(("transform", name))
        for sobject in ("ContentVersion", "ContentDocumentLink"):
            staging.write_jsonl_gz(self.root / "transformed" / sobject / f"documents-{name}", [{"row": {}}])
        return {}

    def load(self, path, phase, **kw):
        assert phase == "full_load"
        self.events.append(("load", path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1]))
        return {"rows": 1, "created": 1, "updated": 0, "skipped": 0, "failed": 0}


@pytest.fixture(autouse=True)
def _never_sleeps(monkeypatch):
    def sleep(seconds):
        raise AssertionError(f"load_documents slept {seconds} s in its slot")

    monkeypatch.setattr("time.sleep", sleep)


def test_each_batch_is_uploaded_as_soon_as_it_is_committed(tmp_path, monkeypatch):
    w = World(tmp_path, 3, monkeypatch)
    w.commit_next()
    out = w.run()
    # the totals cover the batches of every run of the task, not only the last one's
    assert out == {"batches": 3, "rows": 6, "created": 6, "updated": 0, "skipped": 0, "failed": 0}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert w.reschedules == [start + timedelta(seconds=full_load.DOCUMENT_RESCHEDULE_SECONDS * n) for n in (1, 2)]
    b = [staging.batch_name(n) for n in (1, 2, 3)]
    assert w.events == [
        ("committed", b[0]), ("transform", b[0]), ("load", f"ContentVersion/documents-{b[0]}"),
        ("load", f"ContentDocumentLink/documents-{b[0]}"),
        ("committed", b[1]), ("transform", b[1]), ("load", f"ContentVersion/documents-{b[1]}"),
        ("load", f"ContentDocumentLink/documents-{b[1]}"),
        ("committed", b[2]), ("transform", b[2]), ("load", f"ContentVersion/documents-{b[2]}"),
        ("load", f"ContentDocumentLink/documents-{b[2]}"),
    ]  # batch 1 was in Salesforce before batch 2 existed: the upload overlaps the download


def test_a_batch_listed_but_not_committed_waits(tmp_path, monkeypatch):
    w = World(tmp_path, 2, monkeypatch)
    w.commit_next()
    # a killed extractor left batch 2 in the manifest without committing it in _progress.json
    entry = staging.write_jsonl_gz(w.odir / staging.batch_name(2), [{"object": "documents", "clio_id": 99}])
    w.manifest.add(2, entry)
    w.manifest.write(2, False)
    with pytest.raises(AirflowRescheduleException):  # it waits (slot given back) instead of loading batch 2
        full_load.load_documents()
    assert [e for e in w.events if e[0] == "transform"] == [("transform", staging.batch_name(1))]


def test_a_retry_skips_the_batches_it_loaded(tmp_path, monkeypatch):
    w = World(tmp_path, 2, monkeypatch)
    w.commit_next()
    w.commit_next()
    assert full_load.load_documents()["created"] == 4
    w.events.clear()
    assert full_load.load_documents()["created"] == 4 and w.events == []  # the run's counts, nothing loaded again
    # a new run loads them again (its own markers), as every load step of a re-run does
    monkeypatch.setattr(full_load, "run_id", lambda: "run2")
    assert full_load.load_documents()["batches"] == 2


def test_nothing_to_wait_for_when_the_run_did_not_extract_documents(tmp_path, monkeypatch):
    w = World(tmp_path, 0, monkeypatch, pending=False)
    staging.raw_dir(tmp_path, "documents").rmdir()
    assert full_load.load_documents()["batches"] == 0 and w.events == []


def test_gives_up_after_the_wait_from_its_first_start_naming_what_to_do(tmp_path, monkeypatch):
    w = World(tmp_path, 0, monkeypatch)  # documents pending, the extractor never commits
    start = w.clock
    with pytest.raises(AirflowRescheduleException):
        full_load.load_documents()
    # each reschedule runs the task afresh: the deadline still counts from the first start
    for minutes in (20, 40, 59):
        w.clock = start + timedelta(minutes=minutes)
        with pytest.raises(AirflowRescheduleException):
            full_load.load_documents()
    w.clock = start + timedelta(hours=1, seconds=1)
    with pytest.raises(AirflowFailException, match="extract_documents finish.*clear this task"):
        full_load.load_documents()
    # cleared after that failure, the task waits afresh (the extraction was resumed)
    w.clock += timedelta(hours=5)
    with pytest.raises(AirflowRescheduleException):
        full_load.load_documents()
    w.clock += timedelta(minutes=59)
    with pytest.raises(AirflowRescheduleException):
        full_load.load_documents()


def test_the_record_steps_leave_the_documents_to_load_documents(tmp_path, monkeypatch):
    """plan_transform and the load_<Object> steps skip documents (raw and transformed): only
    load_documents handles them, once, after the record objects."""
    monkeypatch.setattr(full_load, "mroot", lambda p=None: tmp_path)
    monkeypatch.setattr(full_load, "run_id", lambda: "run1")  # no first pass wrote marks: every file listed
    for name in ("documents", "matters"):
        odir = staging.raw_dir(tmp_path, name)
        staging.ensure_dir(odir)
        entry = staging.write_jsonl_gz(odir / staging.batch_name(1), [{"object": name, "clio_id": 1}])
        staging.write_json(odir / staging.MANIFEST, {"object": name, "batches": [entry], "complete": True})
    assert {i["object"] for i in full_load.plan_transform()} == {"matters"}
    for name in ("documents-batch-00001.jsonl.gz", "matter_notes-batch-00001.jsonl.gz"):
        staging.write_jsonl_gz(tmp_path / "transformed" / "ContentDocumentLink" / name, [{"row": {}}])
    listed = full_load.list_batches("ContentDocumentLink")
    assert [str(x).rsplit("/", 1)[-1] for x in listed] == ["matter_notes-batch-00001.jsonl.gz"]
    assert len(full_load.list_all_batches()) == 2  # the deferred pass sees every file


# --- through Airflow's task runner -------------------------------------------------------------------------


class Runner:
    """``mig_05_full_load``'s own ``load_documents`` task run by the Task SDK's task runner
    (``task_runner.run``: the code a worker runs, from the callable to the state it reports), one
    fresh task instance per run as after each reschedule; the supervisor is a recorder."""

    def __init__(self, monkeypatch) -> None:
        import importlib.util

        from scripts.runner import ROOT

        spec = importlib.util.spec_from_file_location("mig_05_full_load_under_test", ROOT / "dags" / "mig_05_full_load.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.task = module.mig_05_full_load().get_task("load_documents")
        self.monkeypatch = monkeypatch

    def run(self):
        import uuid
        from unittest import mock

        import structlog
        from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
        from airflow.sdk.execution_time import task_runner

        now = datetime.now(UTC)
        dag_run = DagRun(dag_id="mig_05_full_load", run_id="run1", logical_date=None, data_interval_start=None,
                         data_interval_end=None, run_after=now, start_date=now, end_date=None, run_type="manual",
                         state="running", conf={}, consumed_asset_events=[], partition_key=None)
        ti = task_runner.RuntimeTaskInstance.model_construct(
            id=uuid.uuid4(), task_id="load_documents", dag_id="mig_05_full_load", run_id="run1", try_number=1,
            map_index=-1, dag_version_id=uuid.uuid4(), task=self.task, start_date=now, max_tries=3,
            _ti_context_from_server=TIRunContext(dag_run=dag_run, max_tries=3), bundle_instance=None)
        comms = mock.MagicMock()
        self.monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
        state, msg, error = task_runner.run(ti, ti.get_template_context(), structlog.get_logger())
        sent = [c.kwargs.get("msg") or c.args[0] for c in comms.send.call_args_list]
        return state, msg, error, sent


def test_through_the_task_runner_it_gives_its_slot_back_and_ends_with_every_batch(tmp_path, monkeypatch):
    from airflow.sdk.execution_time.comms import RescheduleTask, SetXCom, SucceedTask
    from airflow.utils.state import TaskInstanceState

    w = World(tmp_path, 3, monkeypatch)
    runner = Runner(monkeypatch)
    start = w.clock
    w.commit_next()
    state, msg, error, _ = runner.run()  # batch 1 loaded, then nothing new: up_for_reschedule, no sleep
    assert state == TaskInstanceState.UP_FOR_RESCHEDULE and error is None
    assert isinstance(msg, RescheduleTask)
    assert msg.reschedule_date == start + timedelta(seconds=full_load.DOCUMENT_RESCHEDULE_SECONDS)
    assert [e for e in w.events if e[0] == "transform"] == [("transform", staging.batch_name(1))]

    w.clock = start + timedelta(minutes=59)  # rescheduled, still nothing new: rescheduled again
    state, msg, _, _ = runner.run()
    assert state == TaskInstanceState.UP_FOR_RESCHEDULE and isinstance(msg, RescheduleTask)

    w.commit_next()
    w.commit_next()  # the extraction is complete
    w.clock = start + timedelta(hours=2)
    state, msg, error, sent = runner.run()
    assert state == TaskInstanceState.SUCCESS and isinstance(msg, SucceedTask), error
    xcom = [m for m in sent if isinstance(m, SetXCom) and m.key == "return_value"]
    # the counts of the three batches, loaded over three runs of the task
    assert [x.value for x in xcom] == [{"batches": 3, "rows": 6, "created": 6, "updated": 0, "skipped": 0,
                                       "failed": 0}]
    assert sorted(e[1] for e in w.events if e[0] == "transform") == [staging.batch_name(n) for n in (1, 2, 3)]


def test_through_the_task_runner_the_deadline_counts_from_the_first_run(tmp_path, monkeypatch):
    from airflow.sdk.execution_time.comms import TaskState
    from airflow.utils.state import TaskInstanceState

    w = World(tmp_path, 2, monkeypatch)
    runner = Runner(monkeypatch)
    start = w.clock
    w.commit_next()
    for minutes in (0, 30, 59):  # each run a new task instance start: the deadline stays an hour after the first
        w.clock = start + timedelta(minutes=minutes)
        assert runner.run()[0] == TaskInstanceState.UP_FOR_RESCHEDULE
    w.clock = start + timedelta(minutes=61)
    state, msg, error, _ = runner.run()
    assert state == TaskInstanceState.FAILED and isinstance(msg, TaskState)  # failed for good, not up_for_retry
    assert "extraction not complete after 1 h" in str(error)


def test_a_waiting_task_holds_no_pool_slot():
    """Airflow counts a pool's occupied slots over running and queued task instances (and deferred ones
    when the pool says so): ``up_for_reschedule`` is not among them, whatever the pool."""
    from airflow.models.pool import Pool
    from airflow.utils.state import TaskInstanceState

    for include_deferred in (False, True):
        assert TaskInstanceState.UP_FOR_RESCHEDULE not in Pool(include_deferred=include_deferred).get_occupied_states()
