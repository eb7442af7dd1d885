"""The DAG-path benchmark's figures are computed from what the sandboxes logged and the task processes
used: made-up logs with known answers, and seeded defects that must turn a goal to "not met"."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.bench_dags import figures as dag_figures
from benchmarks.bench_dags import projection
from benchmarks.run import markdown, run

T0 = 1_800_000_000.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _ti(uid: str, task_id: str, start: float, end: float, map_index: int = -1) -> dict:
    return {"id": uid, "task_id": task_id, "map_index": map_index, "state": "success",
            "start_date": _iso(start), "end_date": _iso(end)}


MINIMUM = {"total": 101, "fixed": 10, "pages": 60, "downloads": 30, "records": 12_000, "per_object": {}}


def _world(**kw):
    return dag_figures(**_recorded(**kw))


def _recorded(extra_clio: int = 0, load_calls: int = 4, rss_mb: float = 200.0, transform_cpu: float = 0.5) -> dict:
    discover = {"dag_id": "mig_01_discover", "run_id": "r1", "state": "success", "start": T0, "end": T0 + 20,
                "seconds": 20.0, "approval_wait": 0.0,
                "tis": [_ti("a", "discover_clio", T0, T0 + 10)]}
    full = {"dag_id": "mig_05_full_load", "run_id": "r5", "state": "success", "start": T0 + 100, "end": T0 + 200,
            "seconds": 100.0, "approval_wait": 0.0,
            "tis": [_ti("t1", "transform_batch", T0 + 100, T0 + 110, 0),
                    _ti("t2", "transform_batch", T0 + 100, T0 + 110, 1),
                    _ti("l1", "load_Contact.load_batch", T0 + 120, T0 + 130, 0),
                    _ti("l2", "load_Account.load_batch", T0 + 140, T0 + 150, 0)]}
    phases = [discover, full]
    # Clio served the minimum (one token + 100 API requests) during discover, plus ``extra_clio``
    clio_log = [{"time": T0 + 1, "path": "/oauth/token", "status": 200}]
    clio_log += [{"time": T0 + 2 + i * 0.1, "path": "/api/v4/contacts.json", "status": 200}
                 for i in range(100 + extra_clio)]
    clio_log += [{"time": T0 + 3, "path": "/_storage/blob", "status": 200}]  # not an API call
    sf_log = [{"ts": T0 + 121 + i * 0.1, "api": True, "kind": "bulk2_ingest"} for i in range(load_calls)]
    sf_log += [{"ts": T0 + 141, "api": True, "kind": "composite"}, {"ts": T0 + 125, "api": False, "kind": "auth"}]
    tasks = {uid: {"pid": 1, "peak_rss": 150 * 2**20, "cpu_s": transform_cpu, "first": T0, "last": T0}
             for uid in ("a", "t1", "t2", "l2")}
    tasks["l1"] = {"pid": 2, "peak_rss": int(rss_mb * 2**20), "cpu_s": 3.0, "first": T0, "last": T0}
    results = {"t1": {"records": 10_000}, "t2": {"records": 10_000}, "l1": {"rows": 10_000}, "l2": {"rows": 100}}
    return {"preset": "large", "window": 10.0, "limit": 50, "phases": phases, "tasks": tasks, "results": results,
            "minimum": MINIMUM, "clio_log": clio_log, "sf_log": sf_log, "sampling": {"interval_s": 0.2}}


def _one(figs, figure: str, subject_start: str = ""):
    found = [f for f in figs if f.figure == figure and f.subject.startswith(subject_start)]
    assert len(found) == 1, [f.subject for f in figs if f.figure == figure]
    return found[0]


@pytest.mark.unit
def test_figures_come_from_the_logs_and_meet_their_goals_when_the_logs_say_so() -> None:
    figs = _world()
    clio = _one(figs, "Clio requests served ÷ minimum")
    assert clio.value == 1.0 and clio.met is True and clio.detail["served"] == 101
    assert clio.detail["per_phase"] == {"mig_01_discover": 101, "mig_05_full_load": 0}
    contact = _one(figs, "Salesforce calls received per 10,000 rows", "Contact")
    assert contact.value == 4.0 and contact.met is True  # 4 API calls for 10,000 rows; the auth call is not API
    account = _one(figs, "Salesforce calls received per 10,000 rows", "Account")
    assert account.value == 100.0 and account.met is None  # 100 rows: under the bulk threshold, no goal
    bulk = _one(figs, "Salesforce calls received per 10,000 rows", "all bulk objects")
    assert bulk.value == 4.0 and bulk.detail["rows"] == 10_000
    transform = _one(figs, "transform records/s per core")
    assert transform.value == 20_000 and transform.met is True  # 20,000 records over 1.0 CPU second
    rss = _one(figs, "peak RSS of a task process", "largest")
    assert rss.value == 200.0 and rss.met is True
    e2e = _one(figs, "end to end ÷ Clio floor")
    # first start to last end (200 s; the gap between the phases counts), over 100 API requests at 50 per 10 s
    assert e2e.value == pytest.approx(200 / (100 * 10 / 50), abs=1e-3) and e2e.detail["total_s"] == 200.0


@pytest.mark.unit
def test_seeded_defects_turn_each_goal_to_not_met() -> None:
    figs = _world(extra_clio=10, load_calls=40, rss_mb=826.0, transform_cpu=5.0)
    assert _one(figs, "Clio requests served ÷ minimum").met is False
    assert _one(figs, "Salesforce calls received per 10,000 rows", "Contact").met is False
    assert _one(figs, "Salesforce calls received per 10,000 rows", "all bulk objects").met is False
    assert _one(figs, "transform records/s per core").met is False
    worst = _one(figs, "peak RSS of a task process", "largest")
    assert worst.value == 826.0 and worst.met is False
    md = markdown({"size": "full", "date": "2026-12-03T07:00:00Z", "seconds": 1.0, "errors": {}, "commit": "abc123",
                   "machine": {"cpu_count": 2, "python": "3.11", "platform": "Linux"},
                   "figures": [f.as_dict() for f in figs]})
    assert "## Through the DAGs: goals side by side" in md and "Commit measured: `abc123`" in md
    assert "| Peak RSS of a task process (largest) | < 500 MB | 826.0 (**not met**) | not run | - |" in md


@pytest.mark.unit
def test_projection_scales_the_clio_path_and_adds_the_tail_after_the_last_document() -> None:
    minimum = {"total": 101, "fixed": 0, "pages": 50, "downloads": 50, "records": 10_000}
    # the measured firm itself: 100 requests at the real rate (1.2 s each) = 120 s floor
    tl = {"idle_s": 30.0, "record_path_s": 10.0, "tail_s": 12.0, "total_s": 50.0}
    got = projection(tl, minimum, 101, 50, 10.0, 10_000, 50)
    assert got["floor_s"] == pytest.approx(120.0) and got["scale"] == pytest.approx(1.0)
    # record path (10 s − 50 pages × 0.2 s, + 50 pages × 1.2 s = 60 s) fits inside the Clio path (120 s)
    assert got["record_path_s"] == pytest.approx(60.0)
    assert got["critical"] == pytest.approx((120 + 12) / 120) and got["upper"] == pytest.approx((120 + 30) / 120)
    # a record path longer than the Clio path is the critical path; a longer tail adds one for one
    slow = projection({**tl, "record_path_s": 200.0, "tail_s": 24.0}, minimum, 101, 50, 10.0, 10_000, 50)
    assert slow["critical"] == pytest.approx((190 + 60 + 24) / 120)
    # ten times the firm: ten times the floor, the tail scaled by ten (not met at 1.05 when the tail is 10 %)
    big = projection(tl, minimum, 101, 50, 10.0, 100_000, 500)
    assert big["floor_s"] == pytest.approx(1200.0) and big["critical"] == pytest.approx((1200 + 120) / 1200)


@pytest.mark.unit
def test_timeline_splits_the_run_into_clio_idle_time_record_path_and_tail() -> None:
    from benchmarks.bench_dags import timeline

    full = {"dag_id": "mig_05_full_load", "start": T0 + 40, "end": T0 + 100,
            "tis": [_ti("l", "load_Contact.load_batch", T0 + 50, T0 + 60), _ti("d", "load_documents", T0 + 45, T0 + 80)]}
    discover = {"dag_id": "mig_01_discover", "start": T0, "end": T0 + 30,
                "tis": [_ti("w", "approve_mapping", T0 + 10, T0 + 15)]}
    clio = [T0 + 1 + i * 0.1 for i in range(50)] + [T0 + 20 + i * 0.5 for i in range(100)]  # to T0 + 69.5
    tl = timeline([discover, full], clio, 5.0)
    # idle: T0+5.9 → T0+20 (14.1 s, minus the 5 s approval) and T0+69.5 → T0+100 (30.5 s)
    assert tl["idle_s"] == pytest.approx(9.1 + 30.5)
    assert tl["record_path_s"] == pytest.approx(60 - 5) and tl["tail_s"] == pytest.approx(20.0)
    assert tl["total_s"] == pytest.approx(95.0)


@pytest.mark.unit
def test_a_recorded_run_is_recomputed_into_the_results_naming_its_commit(tmp_path: Path) -> None:
    raw = tmp_path / "dags-large.raw.json"
    raw.write_text(json.dumps({"commit": "0123abc", **_recorded(extra_clio=10)}), encoding="utf-8")
    doc = run("full", tmp_path / "out", ["dags"], raw)
    assert doc["commit"].startswith("0123abc (figures recomputed from the recorded run") and doc["errors"] == {}
    md = (tmp_path / "out" / "latest.md").read_text(encoding="utf-8")
    assert "Commit measured: `0123abc (figures recomputed from the recorded run dags-large.raw.json)`" in md
    assert "| Clio requests served ÷ minimum | ≤ 1.05 | 1.099 (**not met**) | not run | - |" in md


@pytest.mark.unit
def test_a_run_without_documents_gets_its_own_column_and_no_end_to_end_projection(tmp_path: Path) -> None:
    """``dags_xl_records`` (the extraction's objects leave documents out): its figures are labelled apart
    from a whole firm's, and end to end is not projected (the firm's documents were not part of it)."""
    raw = tmp_path / "dags-xl-records.raw.json"
    raw.write_text(json.dumps({"commit": "0123abc", **_recorded(extra_clio=10), "preset": "xl",
                               "objects": ["contacts", "matters"]}), encoding="utf-8")
    doc = run("full", tmp_path / "out", ["dags_xl_records"], raw)
    assert doc["errors"] == {} and {f["benchmark"] for f in doc["figures"]} == {"dags_xl_records"}
    assert not [f for f in doc["figures"] if f["figure"].startswith("end to end")]
    md = (tmp_path / "out" / "latest.md").read_text(encoding="utf-8")
    assert "| figure | goal | through the DAGs (large) | through the DAGs (xl) | through the DAGs (xl, records only) |" in md
    assert "| Clio requests served ÷ minimum | ≤ 1.05 | not run | not run | 1.099 (**not met**) | - |" in md
    clio = _one(dag_figures(**{**_recorded(), "objects": ["contacts"]}), "Clio requests served ÷ minimum")
    assert clio.benchmark == "dags_large_records" and "no documents" in clio.subject


@pytest.mark.unit
def test_task_instances_are_read_page_by_page_past_the_api_cap() -> None:
    from benchmarks.bench_dags import task_instances

    class CappedApi:  # an api-server that answers at most 100 rows a page, whatever limit it is asked
        def get(self, path: str, params: dict) -> dict:
            rows = [{"id": f"ti-{i}"} for i in range(250)]
            return {"task_instances": rows[params["offset"]:params["offset"] + min(params["limit"], 100)],
                    "total_entries": len(rows)}

    got = task_instances(CappedApi(), "mig_05_full_load", "r1", page=1000)
    assert [t["id"] for t in got] == [f"ti-{i}" for i in range(250)]


@pytest.mark.unit
def test_a_run_recorded_before_it_ended_gives_no_end_to_end_nor_figures_of_a_group_still_loading() -> None:
    recorded = _recorded()
    full = recorded["phases"][-1]
    full["state"] = "running"
    full["tis"][-1]["end_date"] = None  # load_Account still loading
    figs = dag_figures(**recorded)
    e2e = _one(figs, "end to end ÷ Clio floor")
    assert e2e.value is None and "not measured" in e2e.note and e2e.detail["at_least"] == 10.0
    assert all(f.value is None and f.met is None for f in figs if "projected" in f.figure)
    subjects = [f.subject for f in figs if f.figure == "Salesforce calls received per 10,000 rows"]
    assert subjects == ["Contact (10,000 rows)", "all bulk objects (> 2,000 rows)"]


@pytest.mark.unit
def test_the_load_the_run_ran_under_and_failed_tasks_are_reported() -> None:
    recorded = _recorded()
    load = {"wall_s": 100.0, "cpus": 2, "machine_busy_cpu_s": 150.0, "run_cpu_s": 60.0, "other_cpu_s": 90.0,
            "loadavg_1m": [[T0, 2.0], [T0 + 10, 3.0], [T0 + 20, 4.0]]}
    failed = [{"dag_id": "mig_05_full_load", "task_id": "verify", "map_index": -1,
               "log_tail": ["starting", "HTTPError: 500 on GET /services/data/v62.0/query"]}]
    figs = dag_figures(**recorded, machine_load=load, failures=failed)
    busy = _one(figs, "machine load during the run")
    assert busy.value == 3.0 and "other processes 90 (on average 0.90 of the 2 CPUs)" in busy.note
    assert "min 2.00, median 3.00, max 4.00 over 3 readings" in busy.note
    broken = _one(figs, "failed task")
    assert broken.subject == "mig_05_full_load.verify[-1]" and "HTTPError: 500" in broken.note
    md = markdown({"size": "full", "date": "2026-12-03T07:00:00Z", "seconds": 1.0, "errors": {}, "commit": "abc",
                   "machine": {"cpu_count": 2, "python": "3.11", "platform": "Linux"},
                   "figures": [f.as_dict() for f in figs]})
    assert "Load during the large run (2 CPUs, 100 s): 1-minute load average min 2.00" in md
    # a record without them (an older run) still gives its figures
    assert not [f for f in _world() if f.figure in ("machine load during the run", "failed task")]


@pytest.mark.unit
def test_transform_rate_without_the_task_runner_start_up_is_reported_beside_it() -> None:
    recorded = _recorded(transform_cpu=1.0)  # 20,000 records over 2 transform tasks × 1.0 CPU-s
    recorded["tasks"]["a"]["cpu_s"] = 0.25  # a task that does next to nothing: the runner's start-up
    transform = _one(dag_figures(**recorded), "transform records/s per core")
    assert transform.value == 10_000 and transform.met is False  # the goal is judged with start-up included
    assert transform.detail["startup_cpu_s"] == 0.25 and transform.detail["records_per_cpu_s_net"] == 13_333
    assert "without the task runner's start-up (2 × 0.25 CPU-s" in transform.note


def _recorded_run(tmp_path: Path) -> tuple[Path, Path]:
    """A recorded DAG run on disk and an empty results folder, for ``run(..., from_raw)``."""
    raw = tmp_path / "dags-large.raw.json"
    raw.write_text(json.dumps({"commit": "0123abc", **_recorded()}), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    return raw, out


@pytest.mark.unit
def test_a_reading_written_beside_the_results_is_appended_to_them(tmp_path: Path) -> None:
    raw, out = _recorded_run(tmp_path)
    (out / "latest.reading.md").write_text("## Reading the figures\n\nverify read the whole ledger.\n", encoding="utf-8")
    run("full", out, ["dags"], raw)
    md = (out / "latest.md").read_text(encoding="utf-8")
    assert md.endswith("## Reading the figures\n\nverify read the whole ledger.\n") and "| dags_large |" in md


@pytest.mark.unit
def test_a_re_run_of_a_re_run_keeps_the_date_of_the_figures_it_did_not_redo(tmp_path: Path) -> None:
    raw, out = _recorded_run(tmp_path)
    kept = {"benchmark": "memory", "figure": "peak RSS", "subject": "x", "value": 1.0, "unit": "MB",
            "target": "", "met": None, "note": "", "detail": {}}
    (out / "latest.json").write_text(json.dumps({"size": "full", "date": "2026-11-28T13:18:25Z", "figures": [kept]}),
                                     encoding="utf-8")
    run("full", out, ["dags"], raw)
    run("full", out, ["dags"], raw)  # recomputed again: the memory figure is still from 11-28
    doc = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    assert doc["rerun"]["previous_date"] == "2026-11-28T13:18:25Z"
    assert any(f["benchmark"] == "memory" for f in doc["figures"])
    assert "the other figures are from 2026-11-28T13:18:25Z or earlier." in (out / "latest.md").read_text(encoding="utf-8")


def _verify_log() -> list[dict]:
    """A failed verify task's log as the api-server gives it (structured events; shortened)."""
    def ev(level: str, event: str, **kw) -> dict:
        return {"timestamp": "2026-12-03T11:29:55Z", "level": level, "event": event, "logger": "task", **kw}

    frames = [{"filename": "/venv/airflow/sdk/execution_time/task_runner.py", "lineno": 900, "name": "run"}] * 30
    return [ev("info", "::group::Pre Execute"),
            ev("info", "verification of the full load: 192259 records, 2000000 values compared, 1 unexplained, 0 "
                       "explained; field accounting: 9 values migrated, 3 left behind (not migrated), 0 field(s) unaccounted"),
            ev("error", "Task failed with exception", error_detail=[{
                "exc_type": "AirflowFailException", "frames": frames,
                "exc_value": "verification failed: 1 unexplained mismatch(es): Event.EndDateTime: 1: see /tmp/x.html"}]),
            *[ev("info", f"::group::Post Execute {i}") for i in range(60)]]


@pytest.mark.unit
def test_a_failed_task_keeps_its_errors_and_the_verifiers_summary_not_only_the_tail() -> None:
    from benchmarks.bench_dags import log_summary

    kept = log_summary(_verify_log())
    assert kept["summary"] == ["2026-12-03T11:29:55Z verification of the full load: 192259 records, 2000000 values "
                               "compared, 1 unexplained, 0 explained; field accounting: 9 values migrated, 3 left "
                               "behind (not migrated), 0 field(s) unaccounted"]
    assert len(kept["errors"]) == 1 and "AirflowFailException: verification failed: 1 unexplained mismatch(es): " \
        "Event.EndDateTime: 1" in kept["errors"][0] and "task_runner.py" not in kept["errors"][0]  # not the frames
    assert len(kept["log_tail"]) == 40 and "verification of the" not in " ".join(kept["log_tail"])  # the tail alone lost it
    text = log_summary("[2026-12-03 11:29:55] INFO - verification of the full load: 1 unexplained\n"
                       "[2026-12-03 11:29:55] ERROR - Task failed with exception\nPost Execute\n")
    assert text["summary"] == ["[2026-12-03 11:29:55] INFO - verification of the full load: 1 unexplained"]
    assert text["errors"] == ["[2026-12-03 11:29:55] ERROR - Task failed with exception"]


@pytest.mark.unit
def test_a_failed_verify_keeps_its_report_out_of_the_temporary_staging(tmp_path: Path) -> None:
    from benchmarks.bench_dags import log_summary, reports_of

    folder = tmp_path / "reports" / "manual__r5"
    folder.mkdir(parents=True)
    verdict = {"mismatches": 1, "unexplained_by_field": [{"sobject": "Event", "field": "EndDateTime", "count": 1}]}
    (folder / "verification.json").write_text(json.dumps(verdict))
    (folder / "verification.csv").write_text("status,sobject\n" + "".join(f"mismatch,Event{i}\n" for i in range(600)))
    kept = reports_of(tmp_path, "manual__r5", rows=500)
    assert kept["verification.json"] == verdict
    assert kept["verification.csv"]["rows"] == 600 and len(kept["verification.csv"]["head"]) == 501
    assert reports_of(tmp_path, "another_run") == {}
    failed = [{"dag_id": "mig_05_full_load", "task_id": "verify", "map_index": -1, **log_summary(_verify_log()),
               "reports": kept}]
    broken = _one(dag_figures(**_recorded(), failures=failed), "failed task")
    assert "verification of the full load: 192259 records" in broken.note
    assert "Event.EndDateTime: 1" in broken.note and "unexplained by field (verification.json): Event.EndDateTime 1" \
        in broken.note
    assert broken.detail["reports"]["verification.json"] == verdict


@pytest.mark.unit
def test_a_failed_task_keeps_a_large_reports_verdict_not_its_books(tmp_path: Path) -> None:
    """At xl the reconciliation's JSON held every bill's books (11.7 MB): the record keeps its verdict
    and counts, and the size of what it leaves."""
    from benchmarks.bench_dags import REPORT_JSON_ENTRY_MAX, log_summary, reports_of

    folder = tmp_path / "reports" / "manual__r6"
    folder.mkdir(parents=True)
    books = {"bills": [{"bill": f"bill-{i}", "status": "ok", "clio": {"total": "4.03"}} for i in range(20_000)]}
    report = {"headline": "0 lost, 0 duplicated", "lost": 0, "duplicated": 0, "exact": True, "books": books}
    (folder / "reconciliation.json").write_text(json.dumps(report))
    kept = reports_of(tmp_path, "manual__r6")["reconciliation.json"]
    assert {k: kept[k] for k in ("headline", "lost", "duplicated", "exact")} == {
        "headline": "0 lost, 0 duplicated", "lost": 0, "duplicated": 0, "exact": True}
    size = len(json.dumps(books))
    assert size > REPORT_JSON_ENTRY_MAX and kept["books"] == f"(not kept: {size:,} bytes)"
    failed = [{"dag_id": "mig_05_full_load", "task_id": "verify", "map_index": -1, **log_summary(_verify_log()),
               "reports": {"reconciliation.json": report}}]  # as a raw file recorded before the bound holds it
    broken = _one(dag_figures(**_recorded(), failures=failed), "failed task")
    assert broken.detail["reports"]["reconciliation.json"]["books"] == f"(not kept: {size:,} bytes)"
    assert len(json.dumps(broken.detail)) < 4 * REPORT_JSON_ENTRY_MAX


class _Counts:
    """A Clio sandbox's ``counts(objects)``: records per catalog object, from a table."""

    def __init__(self, table: dict[str, int]):
        self.table = table

    def counts(self, objects):
        return {o.name: self.table.get(o.name, 0) for o in objects}


def test_minimum_counts_what_discover_reads_whatever_the_extraction_leaves_out(tmp_path):
    """Discover reads every configuration endpoint in full (the reminders page by page, for the reference
    file) even when ``params.objects`` leaves them out of the extraction: the minimum counts their pages
    (the old one dropped them with ``objects``, and counted a listed reference object twice)."""
    from benchmarks.bench_dags import clio_minimum
    from clio2sf import catalog
    from clio2sf.discovery.estimates import COUNTED_OBJECTS, DISCOVERY_ENDPOINTS

    table = {o.name: 1 for o in catalog.CLIO_OBJECTS} | {"reminders": 450, "contacts": 1_000, "matters": 401,
                                                           "users": 250}
    got = clio_minimum(_Counts(table), tmp_path, objects=["contacts", "matters", "users"])
    # discover: reminders 3 pages, users 2 pages (also its count), every other endpoint one request,
    # one count per other migrated object; extraction: contacts 5, matters 3, users 2 pages
    assert got["fixed"] == (len(DISCOVERY_ENDPOINTS) - 2 + 3 + 2) + len(COUNTED_OBJECTS)
    assert "users" not in COUNTED_OBJECTS and "matters" in COUNTED_OBJECTS and "reminders" not in COUNTED_OBJECTS
    assert got["pages"] == 5 + 3 + 2 and got["records"] == 1_651
    assert got["total"] == 1 + got["fixed"] + got["pages"]
    everything = clio_minimum(_Counts(table), tmp_path, objects=[o.name for o in catalog.CLIO_OBJECTS
                                                                 if o.migrated and o.name != "documents"])
    assert everything["fixed"] == got["fixed"]  # discover's reads do not depend on what is extracted


def test_the_load_sampler_counts_a_process_once_when_its_create_time_moves():
    """A process whose create time psutil reports differently between samples (the boot time moved with
    the clock) is one process: its CPU seconds count once; a pid whose CPU time drops is a new process."""
    import os
    from types import SimpleNamespace

    from benchmarks.bench_dags import TaskSampler

    class Proc:
        def __init__(self, pid: int, cpu: float, created: float) -> None:
            self.pid, self._cpu, self._created = pid, cpu, created

        def cpu_times(self):
            return SimpleNamespace(user=self._cpu, system=0.0)

        def create_time(self) -> float:
            return self._created

    sampler = TaskSampler(os.getpid())
    for cpu, created in ((10.0, 1000.0), (20.0, 1000.0), (30.0, 1001.0), (40.0, 1001.0)):
        tree = Proc(1, 1.0, 500.0)
        tree.children = lambda recursive=True, cpu=cpu, created=created: [Proc(2, cpu, created)]
        sampler._sample_tree(tree)
    tree.children = lambda recursive=True: [Proc(2, 5.0, 2000.0)]  # pid 2 reused by a new process
    sampler._sample_tree(tree)
    assert sampler.tree_cpu_s() == 1.0 + 40.0 + 5.0  # keyed by create time it was 1 + 20 + 40 + 5


def test_a_sandbox_that_died_still_gives_its_request_log_from_its_file(tmp_path):
    """At xl the Salesforce sandbox was killed out of memory at the end of the run and the recorder lost
    every figure with it (it asked the dead process for its log before writing anything).  The log is
    read from the ``requests.jsonl`` the sandbox wrote as it went (a torn last line skipped); a sandbox
    that answers is asked; neither: None."""
    import json

    import requests

    from benchmarks.bench_dags import sf_requests

    class Dead:
        data_dir = tmp_path

        def request_log(self):
            raise requests.ConnectionError("refused")

    class Alive(Dead):
        def request_log(self):
            return {"requests": [{"path": "/alive"}]}

    assert sf_requests(Dead()) is None
    entries = [{"ts": 1.0, "method": "GET", "path": "/a", "kind": "query", "status": 200, "api": True},
               {"ts": 2.0, "method": "POST", "path": "/b", "kind": "bulk2_ingest", "status": 200, "api": True}]
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries) + '{"ts": 3.0, "meth')
    got = sf_requests(Dead())
    assert got == entries and getattr(got, "from_file", False)
    assert sf_requests(Alive()) == [{"path": "/alive"}]


def test_the_bundle_is_compiled_before_the_tasks_run_even_with_bytecode_writing_off(tmp_path, monkeypatch):
    """A task process reads the bundle's modules compiled, as in the image, not compiled again by each task
    (PYTHONDONTWRITEBYTECODE is set in this project's sessions and inherited by the benchmark's Airflow)."""
    import importlib.util
    import sys

    from benchmarks.bench_dags import BUNDLE, compile_bundle

    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    sources = [tmp_path / "dags" / "mig_x.py", tmp_path / "plugins" / "pkg" / "ops.py", tmp_path / "clio2sf" / "m.py"]
    for src in sources:
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text("VALUE = 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("VALUE = 2\n")  # not part of the bundle
    assert compile_bundle(tmp_path) == 3
    for src in sources:
        assert Path(importlib.util.cache_from_source(str(src))).is_file(), src
    assert not Path(importlib.util.cache_from_source(str(tmp_path / "tests" / "t.py"))).exists()
    # the image compiles the same trees where the Dockerfile copies them
    docker = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    copied = {line.split()[-2].rstrip("/"): line.split()[-1].rstrip("/") for line in docker.splitlines()
              if line.startswith("COPY") and line.split()[-2].rstrip("/") in BUNDLE}
    assert set(copied) == set(BUNDLE)
    compiled = [line for line in docker.splitlines() if line.startswith("RUN python -m compileall")]
    assert len(compiled) == 1 and all(dest in compiled[0].split() for dest in copied.values())
