"""Benchmarks through the phase DAGs: the tasks a scheduler runs, measured from outside.

A real Airflow (scheduler + dag-processor + api-server, LocalExecutor: one process per task,
``scripts/cluster.py``) runs discover → extract → resolve users → sample → full load for the
seeded firm of a Clio sandbox preset (``large``: 4,000 matters, ≈98,773 records, 6,000 documents) at a
compressed Clio window (50 requests per ``window`` seconds). The approvals are answered through the
REST API as soon as they wait; their wait is not counted. Every figure comes from what was measured:

* Clio requests: the Clio sandbox's request log (API and OAuth calls it served), against the
  minimum of :func:`clio_minimum` (one token, discover's configuration reads page by page and one
  count per other migrated object, one request per 200 records of each extracted object, one download
  per document with a version);
* Salesforce calls: the Salesforce sandbox's request log (API calls it received), attributed to an
  object by the time span of its ``load_<Object>`` group (the groups run one after another), per
  10,000 rows the group's ``load_batch`` tasks report loading;
* per task: a sampler reads every task process the scheduler starts (title
  ``airflow worker -- <task instance id>``) every ``SAMPLE_S``: peak resident set size (VmRSS) and CPU
  time (user + system); transform records/s per core = records the ``transform_batch`` tasks report
  ÷ their CPU seconds;
* end to end: from the first phase's start to the last phase's end (from Airflow) minus the approval
  waits, against the Clio floor (minimum requests ÷ the allowed rate), and projected to Clio's real
  50 per 60 s for the two firm sizes of issue #20 from the measured Clio path, record path and tail
  (see :func:`timeline` and :func:`projection`);
* the load the machine was under (:class:`TaskSampler`); of a failed task, its errors, summary lines
  and last log lines, and the reports its run wrote (verification, reconciliation: the JSON, the
  CSV's first rows), copied out of the temporary staging area into the record.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, at_least, at_most
from scripts.cluster import log_lines, task_instances

FIRM, MIGRATION = "harlow_vance", "bench"
PHASES = ("mig_01_discover", "mig_02_extract", "mig_03_resolve_users", "mig_04_sample", "mig_05_full_load")
APPROVALS = {"mig_01_discover": "approve_mapping", "mig_04_sample": "approve_sample"}
SAMPLE_S = 0.2
#: How often the machine's 1-minute load average is recorded.
LOAD_EVERY_S = 10.0
TITLE = re.compile(r"^airflow worker -- ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\s*$")
#: Clio Manage v4 at peak (../shared/reference/clio-api-v4.md §3): 50 requests per 60 s window per token.
REAL_LIMIT, REAL_WINDOW = 50, 60.0
#: Firm sizes of issue #20: (records, documents).
FIRM_SIZES = {"100k records + 20k documents": (100_000, 20_000), "1M records + 200k documents": (1_000_000, 200_000)}
GOALS = {"clio": 1.05, "sf_per_10k": 10, "transform": 20_000, "rss_mb": 500, "e2e_real": 1.05}
PAGE = 200
#: The benchmark org's storage: room for the xl firm, so the full load's capacity pre-flight passes (the
#: sandbox's default 2 GB of file storage is less than the large firm's 6,000 documents need: 2,861 MB).
SF_DATA_MB, SF_FILE_MB = 65_536, 1_048_576


class TaskSampler(threading.Thread):
    """Sample every task process below ``root_pid``: peak VmRSS, last CPU time, first and last seen.

    It also records the load the run ran under: the 1-minute load average every ``LOAD_EVERY_S``, the
    CPU seconds the whole machine spent busy (``/proc/stat``) and those of this process tree (the
    benchmark, its sandboxes and the Airflow cluster, every descendant sampled as the tasks are):
    what is left was used by other processes (another test suite, a CPU burner).
    """

    def __init__(self, root_pid: int, interval: float = SAMPLE_S, tree_pid: int | None = None) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.interval = root_pid, interval
        self.tree_pid = os.getpid() if tree_pid is None else tree_pid
        self.tasks: dict[str, dict[str, float]] = {}
        self.samples = 0
        self.loadavg: list[tuple[float, float]] = []
        self._tree_cpu: dict[int, tuple[float, float]] = {}  # pid -> (CPU-s of its earlier processes, of this one)
        self._busy0 = self._t0 = 0.0
        self.load: dict[str, Any] = {}
        self._stop_event = threading.Event()

    @staticmethod
    def _busy() -> float:
        import psutil

        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def run(self) -> None:
        import psutil

        root, tree = psutil.Process(self.root_pid), psutil.Process(self.tree_pid)
        self._busy0, self._t0 = self._busy(), time.time()
        next_load = 0.0
        while not self._stop_event.is_set():
            try:
                kids = root.children(recursive=True)
            except psutil.Error:
                return
            now = time.time()
            for p in kids:
                try:
                    m = TITLE.match(" ".join(p.cmdline()))
                    if not m:
                        continue
                    rss, cpu = p.memory_info().rss, p.cpu_times()
                except psutil.Error:
                    continue
                t = self.tasks.setdefault(m.group(1), {"pid": p.pid, "peak_rss": 0, "cpu_s": 0.0, "first": now})
                t["peak_rss"] = max(t["peak_rss"], rss)
                t["cpu_s"] = max(t["cpu_s"], cpu.user + cpu.system)
                t["last"] = now
            self._sample_tree(tree)
            if now >= next_load:
                self.loadavg.append((round(now, 1), os.getloadavg()[0]))
                next_load = now + LOAD_EVERY_S
            self.samples += 1
            self._stop_event.wait(self.interval)

    def _sample_tree(self, tree: Any) -> None:
        import psutil

        try:
            procs = [tree, *tree.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                cpu = p.cpu_times()
            except psutil.Error:
                continue
            self._note_cpu(p.pid, cpu.user + cpu.system)

    def _note_cpu(self, pid: int, used: float) -> None:
        """Keep ``pid``'s CPU seconds. Keyed by the pid alone, not (pid, create time): psutil derives a
        create time from the boot time, which moves when the clock is stepped, and a process seen under two
        create times was counted twice (the xl run of 2026-12-04 credited itself 23,907 of the machine's
        13,831 busy CPU-s). A pid whose CPU time goes down is a new process: the old one's is banked."""
        banked, last = self._tree_cpu.get(pid, (0.0, 0.0))
        if used < last:
            banked += last
        self._tree_cpu[pid] = (banked, used if used < last else max(used, last))

    def tree_cpu_s(self) -> float:
        """CPU seconds of this process tree so far (as sampled)."""
        return sum(banked + last for banked, last in self._tree_cpu.values())

    def stop(self) -> None:
        if self._stop_event.is_set():
            return
        self._stop_event.set()
        self.join(timeout=10)
        if self._t0:
            wall, busy = time.time() - self._t0, self._busy() - self._busy0
            own = self.tree_cpu_s()
            self.load = {"wall_s": round(wall, 1), "cpus": os.cpu_count(), "machine_busy_cpu_s": round(busy, 1),
                         "run_cpu_s": round(own, 1), "other_cpu_s": round(max(0.0, busy - own), 1),
                         "loadavg_1m": self.loadavg}


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


#: A phase whose later tasks may run beside the next phases (documents off the critical path): the
#: driver moves on once this task succeeded and collects the run at the end.
READY_TASK = {"mig_02_extract": "summarize_extraction"}


def _start(cluster: Any, phase: dict[str, Any], timeout: float) -> None:
    """Answer a triggered phase's approval when it waits; return once the next phase may start."""
    dag_id, run_id = phase["dag_id"], phase["run_id"]
    task_ids = {t["task_id"] for t in cluster.get(f"/api/v2/dags/{dag_id}/tasks")["tasks"]}
    ready = READY_TASK.get(dag_id)
    if dag_id in APPROVALS:
        cluster.wait_parked(dag_id, run_id, APPROVALS[dag_id], timeout=max(1.0, timeout))
        cluster.answer(dag_id, run_id, APPROVALS[dag_id], "Approve", user="ops_lead")
    elif ready and "extract_documents" in task_ids:
        cluster.wait_task(dag_id, run_id, ready, {"success"}, timeout=max(1.0, timeout))
        phase["overlapped"] = True


def _finish(cluster: Any, phase: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Wait for a started phase to end (at most ``timeout`` s); its run times, the approval wait and its
    task instances. A run still going when the time is up is recorded as it stands (``end``: now)."""
    dag_id, run_id = phase["dag_id"], phase["run_id"]
    try:
        state = cluster.wait_run(dag_id, run_id, timeout=max(1.0, timeout))
    except TimeoutError:
        state = cluster.run_state(dag_id, run_id)
    run = cluster.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
    tis = task_instances(cluster, dag_id, run_id)
    waited = 0.0
    if dag_id in APPROVALS:
        # the approval task's own span holds the wait for the person (parked → answered → resumed)
        step = next((t for t in tis if t["task_id"] == APPROVALS[dag_id]), {})
        if step.get("start_date") and step.get("end_date"):
            waited = _ts(step["end_date"]) - _ts(step["start_date"])
    start, end = _ts(run["start_date"]) or time.time(), _ts(run.get("end_date")) or time.time()
    return {**phase, "state": state, "start": start, "end": end, "seconds": end - start - waited,
            "approval_wait": waited, "tis": tis}


#: Log events kept whole from a failed task besides its errors: the verifier's and the reconciliation's
#: summary lines (``full_load.raise_on_failure``, ``full_load.reconcile``).
SUMMARY = re.compile(r"^(verification of the |reconciliation: )")
#: The reports a failed task of a phase may have written under ``reports/<run id>/`` in the staging area.
REPORTS = ("verification", "reconciliation")
REPORT_CSV_ROWS = 500
#: A report JSON's entry larger than this (serialized) is kept as its size only: at xl the
#: reconciliation's per-bill books and per-matter amounts (11.7 MB) made the results 17.9 MB.
REPORT_JSON_ENTRY_MAX = 64 * 1024


def log_summary(content: Any, tail: int = 40) -> dict[str, list[str]]:
    """What explains a failed task, from its log (the api-server's structured events, or plain text):
    every ERROR/CRITICAL event with its exception's type and message (not its frames), the summary
    lines (:data:`SUMMARY`), and the last ``tail`` lines as the log viewer shows them."""
    errors: list[str] = []
    summary: list[str] = []
    if isinstance(content, str):
        for line in content.splitlines():
            text = line.strip()
            if re.search(r"\b(ERROR|CRITICAL)\b", text):
                errors.append(text[:4000])
            elif SUMMARY.search(re.sub(r"^.*?\b(INFO|WARNING)\b\s*-?\s*", "", text)):
                summary.append(text[:4000])
    else:
        for event in content or []:
            if not isinstance(event, dict):
                continue
            text = str(event.get("event") or "")
            level = str(event.get("level") or "").lower()
            if level in ("error", "critical"):
                details = [f"{d.get('exc_type')}: {d.get('exc_value')}" for d in event.get("error_detail") or ()
                           if isinstance(d, dict)]
                errors.append(" | ".join([f"{event.get('timestamp', '')} {level.upper()} {text}".strip(), *details])[:4000])
            elif SUMMARY.search(text):
                summary.append(f"{event.get('timestamp', '')} {text}".strip()[:4000])
    return {"errors": errors, "summary": summary, "log_tail": log_lines(content)[-tail:]}


def bounded_report(doc: Any, limit: int = REPORT_JSON_ENTRY_MAX) -> Any:
    """A report JSON as the record keeps it: each top-level entry whole up to ``limit`` bytes
    serialized, a larger one as ``"(not kept: N bytes)"`` (the verdicts and counts are small)."""
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        size = len(json.dumps(value, default=str))
        out[key] = value if size <= limit else f"(not kept: {size:,} bytes)"
    return out


def reports_of(mroot: Path, run_id: str, rows: int = REPORT_CSV_ROWS) -> dict[str, Any]:
    """The reports a phase run wrote under ``reports/<run_id>/`` (the staging area is a temporary
    folder): each JSON summary (:func:`bounded_report`), and the first ``rows`` rows of each CSV
    (unexplained first)."""
    out: dict[str, Any] = {}
    folder = Path(mroot) / "reports" / run_id
    for stem in REPORTS:
        summary, table = folder / f"{stem}.json", folder / f"{stem}.csv"
        if summary.exists():
            try:
                out[f"{stem}.json"] = bounded_report(json.loads(summary.read_text(encoding="utf-8")))
            except ValueError as exc:
                out[f"{stem}.json"] = f"(not read: {exc})"
        if table.exists():
            lines = table.read_text(encoding="utf-8").splitlines()
            out[f"{stem}.csv"] = {"rows": max(0, len(lines) - 1), "head": lines[:rows + 1]}
    return out


def _log_content(cluster: Any, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> Any:
    """A task try's log as the api-server gives it (structured events, or text); as
    ``Cluster.task_log_lines`` reads it, without flattening."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
    return cluster.request("GET", path, params={"map_index": map_index, "full_content": True},
                           headers={"Accept": "application/json"}).json().get("content")


def _failures(cluster: Any, phases: list[dict], mroot: Path | None = None, lines: int = 40) -> list[dict]:
    """Every failed task's errors, summary lines and last ``lines`` log lines (:func:`log_summary`), and
    the reports its phase run wrote (:func:`reports_of`), kept with the record: the cluster's logs and
    the staging area live in a temporary folder."""
    out = []
    for p in phases:
        for ti in p["tis"]:
            if ti["state"] != "failed":
                continue
            try:
                content = _log_content(cluster, p["dag_id"], p["run_id"], ti["task_id"], ti["map_index"],
                                       max(1, ti.get("try_number") or 1))
            except Exception as exc:  # the record matters more than the log
                content = f"(log not read: {type(exc).__name__}: {exc})"
            kept = {"dag_id": p["dag_id"], "task_id": ti["task_id"], "map_index": ti["map_index"],
                    **log_summary(content, lines)}
            if mroot is not None:
                kept["reports"] = reports_of(mroot, p["run_id"])
            out.append(kept)
    return out


def _xcom(cluster: Any, dag_id: str, run_id: str, ti: dict) -> Any:
    """What a successful task returned (None for a task that returned nothing)."""
    if ti["state"] != "success":
        return None
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/xcomEntries/return_value"
    params = {"map_index": ti["map_index"], "deserialize": True, "stringify": False}
    try:
        return cluster.get(path, params=params).get("value")
    except AssertionError as exc:  # Cluster.request raises AssertionError on a non-2xx answer
        if " 404 " in str(exc):
            return None
        raise


def clio_minimum(clio: Any, mroot: Path, objects: list[str] | None = None) -> dict[str, Any]:
    """The fewest Clio requests that discover and extract this firm, counted from the sandbox's records:

    * one token request;
    * discover (``fixed``): every configuration endpoint it reads in full (``DISCOVERY_ENDPOINTS``: the
      mapping document, the schema plan and the reference files need them), one page per 200 records and
      at least one — the reminders, exported whole as ``reference/reminders.json`` for the admin (Clio has
      no other source for them), are ≈190 pages at xl; a migrated one's read is also its count — plus one
      count request per other migrated object (``COUNTED_OBJECTS``: Clio's lists carry no total, counting
      takes up to a few more, which stay in "served");
    * the extraction (``pages``): one page per 200 records of each migrated object of ``objects`` (the
      extraction's ``params.objects``; discover's requests are all counted, whatever it extracts);
    * documents (as :mod:`benchmarks.bench_clio`, plus what the extraction is asked to do for a document
      with earlier versions: one request listing its versions and one download per earlier version;
      counted from what was staged).

    Earlier the reference objects' pages were counted as extraction pages, so a run whose
    ``objects`` left them out (the xl records run) left the reminders' 192 pages out of the minimum while
    discover read them; and a reference object named in ``DISCOVERY_ENDPOINTS`` was counted twice."""
    from clio2sf import catalog
    from clio2sf.discovery.estimates import COUNTED_OBJECTS, DISCOVERY_ENDPOINTS
    from clio2sf.extract import read_records

    config = clio.counts([catalog.get(n) for n in DISCOVERY_ENDPOINTS if n in catalog.BY_NAME])
    discovery = sum(max(1, math.ceil(n / PAGE)) for n in config.values()) + len(
        [n for n in DISCOVERY_ENDPOINTS if n not in catalog.BY_NAME])
    counts = clio.counts([o for o in catalog.CLIO_OBJECTS if o.migrated and (not objects or o.name in objects)])
    docs = listings = older = 0
    for env in read_records(mroot, "documents") if not objects or "documents" in objects else ():
        docs += bool(env.get("blob"))
        if "versions" in env:
            listings += 1
            older += len(env["versions"])
    pages = sum(max(1, math.ceil(n / PAGE)) for n in counts.values())
    fixed = discovery + len(COUNTED_OBJECTS)
    return {"total": 1 + fixed + pages + docs + listings + older, "fixed": fixed, "pages": pages,
            "downloads": docs + older, "version_listings": listings, "records": sum(counts.values()),
            "per_object": counts, "discovery_reads": config}


def _span(intervals: list[tuple[float, float]], minus: list[tuple[float, float]]) -> float:
    """Seconds covered by ``intervals`` (disjoint) outside the ``minus`` intervals (disjoint)."""
    total = 0.0
    for a, b in intervals:
        total += max(0.0, b - a) - sum(max(0.0, min(b, d) - max(a, c)) for c, d in minus)
    return total


def timeline(phases: list[dict], clio_times: list[float], window: float) -> dict[str, float]:
    """What the run's time went to, from Airflow's task times and the Clio sandbox's request log.

    ``idle_s``: time no Clio request was served for over ``max(2 s, 0.4 × window)`` (Clio waited on
    other work); ``record_path_s``: from the first phase's start until the last record batch was
    loaded into Salesforce (``load_<Object>.load_batch``); ``tail_s``: from the later of the last Clio
    request and the end of ``load_documents`` (every document batch uploaded) to the end (the
    deferred pass, reconcile, verify). Approval waits are left out of all three.
    """
    t0, t1 = phases[0]["start"], max(p["end"] for p in phases)
    waits = []
    for p in phases:
        step = next((t for t in p["tis"] if t["task_id"] == APPROVALS.get(p["dag_id"])), None)
        if step and step.get("start_date") and step.get("end_date"):
            waits.append((_ts(step["start_date"]), _ts(step["end_date"])))
    gap = max(2.0, 0.4 * window)
    marks = sorted(t for t in clio_times if t0 <= t <= t1)
    idle = []
    if marks:
        edges = [t0, *marks, t1]
        idle = [(x, y) for x, y in zip(edges, edges[1:], strict=False) if y - x > gap]
    full = next((p for p in phases if p["dag_id"] == PHASES[-1]), None)
    ends = {"records": t0, "documents": t0}
    for ti in full["tis"] if full else []:
        kind = "records" if ti["task_id"].endswith(".load_batch") else "documents" \
            if ti["task_id"] == "load_documents" else None
        if kind and ti.get("end_date"):
            ends[kind] = max(ends[kind], _ts(ti["end_date"]))
    after_docs = max(marks[-1] if marks else t0, ends["documents"])
    return {"idle_s": _span(idle, waits), "record_path_s": _span([(t0, ends["records"])], waits),
            "tail_s": _span([(after_docs, t1)], waits), "total_s": _span([(t0, t1)], waits)}


def projection(tl: dict[str, float], minimum: dict, served: int, limit: int, window: float, records: int,
               documents: int) -> dict[str, float]:
    """End to end ÷ Clio floor at the real rate (50 per 60 s) for a firm of ``records`` and ``documents``.

    The floor: the firm's fewest requests (discover's fixed ones, one page per 200 records, one
    download per document) at the real rate. The Clio path: the floor × requests served ÷ minimum as
    measured. Work that is not Clio's scales with (records + documents) against the measured firm
    (``scale``). ``critical`` (the value; docs/architecture.md "Critical path"): the longer of the
    Clio path and the record path (discover → extract records → users → sample → record load; its
    record pages at the real rate, the rest scaled), then the tail after the last document (scaled).
    ``upper``: the Clio path plus every measured Clio-idle second scaled, as if nothing overlapped
    more than it did at the compressed rate (where documents took a few minutes, not hours).
    """
    slot_c, slot_r = window / limit, REAL_WINDOW / REAL_LIMIT
    scale = (records + documents) / max(1, minimum["records"] + minimum["downloads"])
    pages = minimum["pages"] * records / max(1, minimum["records"])
    floor = (minimum["fixed"] + pages + documents) * slot_r
    clio_path = floor * served / max(1, minimum["total"])
    record_path = max(0.0, tl["record_path_s"] - minimum["pages"] * slot_c) * scale + pages * slot_r
    tail = tl["tail_s"] * scale
    critical = max(clio_path, record_path) + tail
    upper = clio_path + tl["idle_s"] * scale
    return {"critical": critical / floor, "upper": upper / floor, "floor_s": floor, "clio_path_s": clio_path,
            "record_path_s": record_path, "tail_s": tail, "scale": scale}


def record_objects() -> list[str]:
    """Every migrated Clio object but documents: the extract → transform → load path of the records."""
    from clio2sf import catalog

    return [o.name for o in catalog.CLIO_OBJECTS if o.migrated and o.name != "documents"]


#: The bundle's code a task process imports (the image compiles the same trees: Dockerfile).
BUNDLE = ("dags", "plugins", "clio2sf")


def compile_bundle(root: Path) -> int:
    """Write the bytecode of the bundle's modules (:data:`BUNDLE` under ``root``), as the image does at build
    (Dockerfile: ``python -m compileall``); return how many source files there are.

    Every task is a new process that imports what its DAG file imports. Without a ``__pycache__`` and with
    ``PYTHONDONTWRITEBYTECODE`` set (this project's sessions set it; the DAG benchmark's Airflow inherits
    it), each of them compiled every module of the bundle it imported from source: a ``transform_batch``
    task parsing ``dags/mig_05_full_load.py`` took ~0.13 CPU-s instead of ~0.09, a deployed image's task
    reads the compiled files. ``py_compile`` writes them whatever ``PYTHONDONTWRITEBYTECODE`` says."""
    import compileall

    sources = [p for sub in BUNDLE for p in sorted((root / sub).rglob("*.py"))]
    for path in sources:
        compileall.compile_file(path, quiet=2)
    return len(sources)


def run(work: Path, *, preset: str = "large", window: float = 5.0, limit: int = 50, parallelism: int = 4,
        seed: int = 42, timeout: float = 6 * 3600, raw: Path | None = None,
        objects: list[str] | None = None) -> list[Figure]:
    """Run the phases on ``preset``; keep what was recorded in ``raw`` (JSON; :func:`from_raw` recomputes).

    ``objects``: the extraction's ``params.objects`` as a user sets it in the trigger form (None: every
    object). The figures are then labelled ``dags_<preset>_records`` and end to end is not projected
    (the firm's documents were not part of the run)."""
    from benchmarks.common import ROOT, commit
    from clio2sf import staging
    from sandbox.clio.testing import run_clio_sandbox
    from sandbox.salesforce.testing import run_sf_sandbox
    from scripts.cluster import Cluster
    from scripts.runner import airflow_env

    measured = commit()
    work.mkdir(parents=True, exist_ok=True)
    with run_clio_sandbox(work / f"clio-{preset}", seed=seed, preset=preset, rate_limit=limit,
                          window=window) as clio, run_sf_sandbox(work / "sf", seed=seed, data_storage_mb=SF_DATA_MB,
                                                                 file_storage_mb=SF_FILE_MB) as sf:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__", "AIRFLOW_HOME"))}
        (work / "staging").mkdir(exist_ok=True)
        env = airflow_env(clio, sf, f"file://{work / 'staging'}", base=base, rate_dir=work / "rate")
        env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'plugins'}"
        compile_bundle(ROOT)
        cluster = Cluster.start(work / "airflow", env, parallelism=parallelism)
        sampler = None
        deadline = time.monotonic() + timeout
        stopped: BaseException | None = None
        phases: list[dict] = []
        results: dict[str, Any] = {}
        failures: list[dict] = []
        try:
            sampler = TaskSampler(cluster.procs[-1].pid)
            sampler.start()
            conf = {"firm": FIRM, "migration_id": MIGRATION}
            started_runs: list[dict] = []
            try:
                for dag_id in PHASES:
                    extra = {"apply_schema": True} if dag_id == PHASES[0] else \
                        {"objects": objects} if objects and dag_id == "mig_02_extract" else {}
                    run_id = cluster.trigger(dag_id, {**conf, **extra})
                    started = {"dag_id": dag_id, "run_id": run_id, "overlapped": False}
                    started_runs.append(started)
                    _start(cluster, started, deadline - time.monotonic())
                    if started["overlapped"]:
                        print(f"   {dag_id}: the next phases may start", flush=True)
                        continue
                    phases.append(_finish(cluster, started, deadline - time.monotonic()))
                    if phases[-1]["state"] != "success":
                        break
            except (TimeoutError, AssertionError) as exc:  # a phase failed or the time is up: record it
                stopped = exc
            done = {p["run_id"] for p in phases}
            phases += [_finish(cluster, p, deadline - time.monotonic() if stopped is None else 1.0)
                       for p in started_runs if p["run_id"] not in done]
            phases.sort(key=lambda p: PHASES.index(p["dag_id"]))
            for phase in phases:
                print(f"   {phase['dag_id']}: {phase['state']} in {phase['seconds']:.1f} s "
                      f"(approval wait {phase['approval_wait']:.1f} s)", flush=True)
            sampler.stop()
            full = phases[-1]
            results = {t["id"]: _xcom(cluster, full["dag_id"], full["run_id"], t) for t in full["tis"]
                       if t["task_id"] == "transform_batch" or t["task_id"].endswith(".load_batch")}
            failures = _failures(cluster, phases, staging.migration_root(work / "staging", FIRM, MIGRATION))
        finally:
            if sampler is not None:
                sampler.stop()
            cluster.stop()
        mroot = staging.migration_root(work / "staging", FIRM, MIGRATION)
        minimum = clio_minimum(clio, mroot, objects)
        # the log's token field is a token prefix: not kept
        clio_log = [{k: v for k, v in e.items() if k != "token"} for e in clio.request_log()]
        sf_log = sf_requests(sf)
        if sf_log is None:
            sf_log = []
            stopped = stopped or RuntimeError("the Salesforce sandbox stopped answering (and left no request log)")
        elif getattr(sf_log, "from_file", False):
            stopped = stopped or RuntimeError("the Salesforce sandbox stopped answering: its request log read "
                                              "from its data directory")
    recorded = {"commit": measured, "preset": preset, "window": window, "limit": limit, "phases": phases, "tasks": sampler.tasks,
                "results": results, "minimum": minimum, "clio_log": clio_log, "sf_log": sf_log,
                "sampling": {"interval_s": SAMPLE_S, "samples": sampler.samples, "parallelism": parallelism},
                "machine_load": sampler.load, "failures": failures, "objects": objects}
    if raw is not None:
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(recorded), encoding="utf-8")
    unfinished = [f"{p['dag_id']} ({p['state']})" for p in phases if p["state"] != "success"]
    if stopped is not None or unfinished or len(phases) < len(PHASES):
        # recorded first: `python -m benchmarks.run --only dags --from-raw RAW` gives what was measured
        failed = sorted({f"{f['dag_id']}.{f['task_id']}" for f in failures})
        raise RuntimeError(f"the phases did not all succeed: {', '.join(unfinished) or 'not all started'}"
                           f"{'; ' + str(stopped)[:300] if stopped else ''}; failed tasks: {failed}; "
                           f"recorded in {raw}")
    return figures(**{k: v for k, v in recorded.items() if k != "commit"})


class _FileLog(list):
    """Request-log entries read from the sandbox's ``requests.jsonl`` (it no longer answered)."""

    from_file = True


def sf_requests(sf: Any) -> list[dict] | None:
    """The Salesforce sandbox's request log: from the sandbox, or, when it no longer answers (at xl it
    was killed out of memory at the end of a run), from the ``requests.jsonl`` it wrote as it went (the
    same entries), so a run's measurements are still recorded.  None: neither."""
    import requests

    try:
        return sf.request_log()["requests"]
    except requests.RequestException:
        path = Path(sf.data_dir) / "requests.jsonl"
        if not path.exists():
            return None
        out = _FileLog()
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # the last line, cut when the process died
                    continue
        return out


def from_raw(path: Path) -> list[Figure]:
    """The figures of a recorded run (``python -m benchmarks.bench_dags RAW.json``)."""
    recorded = json.loads(Path(path).read_text(encoding="utf-8"))
    recorded.pop("commit", None)
    return figures(**recorded)


def _bulk_threshold() -> int:
    import inspect

    from clio2sf.load import load_rows

    return int(inspect.signature(load_rows).parameters["bulk_threshold"].default)


def figures(*, preset: str, window: float, limit: int, phases: list[dict], tasks: dict[str, dict],
            results: dict[str, Any], minimum: dict, clio_log: list[dict], sf_log: list[dict],
            sampling: dict, machine_load: dict | None = None, failures: list[dict] | None = None,
            objects: list[str] | None = None) -> list[Figure]:
    """The DAG-path figures from what the run recorded (pure: unit-tested with made-up logs)."""
    bench = f"dags_{preset}" + ("_records" if objects else "")
    firm = f"{preset} firm" + (f", {len(objects)} objects (no documents)" if objects else "")
    figs: list[Figure] = []
    # ---- the load the run ran under (other processes on the machine)
    if machine_load and machine_load.get("wall_s"):
        loads = sorted(v for _t, v in machine_load.get("loadavg_1m", []))
        cpus, wall = machine_load.get("cpus") or 1, machine_load["wall_s"]
        other = machine_load["other_cpu_s"] / wall
        mean = sum(loads) / len(loads) if loads else None
        figs.append(Figure(bench, "machine load during the run", f"{cpus} CPUs, {wall:,.0f} s",
                           round(mean, 2) if mean is not None else None, "1-min load average (mean)",
                           note=f"1-minute load average min {loads[0]:.2f}, median {loads[len(loads) // 2]:.2f}, "
                                f"max {loads[-1]:.2f} over {len(loads)} readings; the machine was busy "
                                f"{machine_load['machine_busy_cpu_s']:,.0f} CPU-s, of which this run (benchmark, "
                                f"sandboxes, Airflow and its tasks) {machine_load['run_cpu_s']:,.0f} and other "
                                f"processes {machine_load['other_cpu_s']:,.0f} (on average {other:.2f} of the "
                                f"{cpus} CPUs)" if loads else "",
                           detail={k: v for k, v in machine_load.items() if k != "loadavg_1m"}))
    for f in failures or []:
        said = [*f.get("summary", ()), *f.get("errors", ())]
        if said:  # what the task said went wrong (errors, the verifier's summary), else its last lines
            note = "log: " + " / ".join(said)[:900]
        else:
            note = "last log lines: " + " / ".join(line.strip() for line in f["log_tail"][-6:] if line.strip())[:900]
        verdict = (f.get("reports") or {}).get("verification.json")
        if isinstance(verdict, dict) and verdict.get("unexplained_by_field"):
            note += "; unexplained by field (verification.json): " + ", ".join(
                f"{u['sobject']}.{u['field']} {u['count']}" for u in verdict["unexplained_by_field"][:12])
        detail = {k: v for k, v in f.items() if k not in ("dag_id", "task_id", "map_index")}
        if isinstance(detail.get("reports"), dict):  # a raw file recorded before the bound
            detail["reports"] = {name: bounded_report(doc) for name, doc in detail["reports"].items()}
        figs.append(Figure(bench, "failed task", f"{f['dag_id']}.{f['task_id']}[{f['map_index']}]", None, "",
                           note=note, detail=detail))
    # ---- Clio: requests served ÷ minimum, per phase
    counted = [e for e in clio_log if e["path"].startswith(("/api/", "/oauth/"))]
    for p in phases:
        p["clio_requests"] = sum(1 for e in counted if p["start"] <= e["time"] <= p["end"] + 1.0)
    t0, t1 = phases[0]["start"], phases[-1]["end"] + 1.0
    served = [e for e in counted if t0 <= e["time"] <= t1]
    api = [e for e in served if e["path"].startswith("/api/")]
    first = min((e["time"] for e in api), default=t0)
    late_429 = sum(1 for e in api if e["status"] == 429 and e["time"] > first + window)
    ratio = len(served) / minimum["total"]
    figs.append(Figure(bench, "Clio requests served ÷ minimum", f"{firm}, discover → full load", round(ratio, 3),
                       "ratio", f"≤ {GOALS['clio']}", at_most(ratio, GOALS["clio"]),
                       detail={"headline": "clio", "served": len(served), "minimum": minimum["total"],
                               "minimum_parts": {k: minimum.get(k) for k in ("fixed", "pages", "downloads",
                                                                             "version_listings")},
                               "per_phase": {p["dag_id"]: p["clio_requests"] for p in phases},
                               "oauth": sum(1 for e in served if e["path"].startswith("/oauth/"))}))
    figs.append(Figure(bench, "Clio HTTP 429 after the first window", f"{firm}, 50 per {window:g} s", late_429,
                       "responses", "0", late_429 == 0,
                       detail={"all_429": sum(1 for e in api if e["status"] == 429)}))
    # ---- Salesforce: calls received per 10k rows, per load group
    full = phases[-1]
    threshold = _bulk_threshold()
    groups: dict[str, dict[str, Any]] = {}
    for ti in full["tis"]:
        if not ti["task_id"].endswith(".load_batch") or not ti.get("start_date"):
            continue
        sobject = ti["task_id"].split(".")[0].removeprefix("load_")
        g = groups.setdefault(sobject, {"start": math.inf, "end": 0.0, "rows": 0, "tasks": 0, "unfinished": 0})
        g["unfinished"] += not ti.get("end_date")
        g["start"] = min(g["start"], _ts(ti["start_date"]))
        g["end"] = max(g["end"], _ts(ti["end_date"]) if ti.get("end_date") else g["end"])
        g["rows"] += int((results.get(ti["id"]) or {}).get("rows", 0))
        g["tasks"] += 1
    api_calls = [e for e in sf_log if e.get("api")]
    bulk_calls = bulk_rows = 0
    for sobject, g in sorted(groups.items(), key=lambda kv: kv[1]["start"]):
        calls = [e for e in api_calls if g["start"] <= e["ts"] <= g["end"]]
        g["calls"] = len(calls)
        g["by_kind"] = {}
        for e in calls:
            g["by_kind"][e["kind"]] = g["by_kind"].get(e["kind"], 0) + 1
        if not g["rows"] or g["unfinished"]:  # a group still loading when the run was recorded: no figure
            continue
        per = len(calls) / g["rows"] * 10_000
        bulk = g["rows"] > threshold
        if bulk:
            bulk_calls += len(calls)
            bulk_rows += g["rows"]
        figs.append(Figure(bench, "Salesforce calls received per 10,000 rows", f"{sobject} ({g['rows']:,} rows)",
                           round(per, 1), "calls", f"≤ {GOALS['sf_per_10k']}" if bulk else "",
                           at_most(per, GOALS["sf_per_10k"]) if bulk else None,
                           detail={k: v for k, v in g.items() if k not in ("start", "end")}))
    if bulk_rows:
        per = bulk_calls / bulk_rows * 10_000
        figs.append(Figure(bench, "Salesforce calls received per 10,000 rows", f"all bulk objects (> {threshold:,} rows)",
                           round(per, 1), "calls", f"≤ {GOALS['sf_per_10k']}", at_most(per, GOALS["sf_per_10k"]),
                           detail={"headline": "sf", "calls": bulk_calls, "rows": bulk_rows}))
    # ---- per task: peak RSS, transform records/s per core
    by_task: dict[tuple[str, str], list[dict]] = {}
    unseen = 0
    for p in phases:
        for ti in p["tis"]:
            got = tasks.get(ti["id"])
            if got is None:
                unseen += ti["state"] == "success" and not ti["task_id"].startswith("approve_")
                continue
            by_task.setdefault((p["dag_id"], ti["task_id"]), []).append({**got, "ti": ti})
    worst = 0.0
    for (dag_id, task_id), runs in by_task.items():
        peak = max(r["peak_rss"] for r in runs) / 2**20
        worst = max(worst, peak)
        figs.append(Figure(bench, "peak RSS of a task process", f"{dag_id}.{task_id} (×{len(runs)})", round(peak, 1),
                           "MB", f"< {GOALS['rss_mb']}", peak < GOALS["rss_mb"],
                           detail={"median_mb": round(sorted(r["peak_rss"] for r in runs)[len(runs) // 2] / 2**20, 1),
                                   "cpu_s": round(sum(r["cpu_s"] for r in runs), 1)}))
    least = min((r["peak_rss"] for runs in by_task.values() for r in runs), default=0) / 2**20
    figs.append(Figure(bench, "peak RSS of a task process", "largest of all tasks", round(worst, 1), "MB",
                       f"< {GOALS['rss_mb']}", worst < GOALS["rss_mb"] if by_task else None,
                       note=f"VmRSS of each task runner process, sampled every {sampling.get('interval_s')} s; it "
                            "includes the Airflow process image it shares with the worker it was forked from "
                            f"(the smallest task peaked at {least:.0f} MB)"
                            + (f"; {unseen} finished tasks were not sampled" if unseen else ""),
                       detail={"headline": "rss", "sampling": sampling, "tasks_not_sampled": unseen,
                               "smallest_task_mb": round(least, 1)}))
    transforms = by_task.get((full["dag_id"], "transform_batch"), [])
    records = sum(int((results.get(r["ti"]["id"]) or {}).get("records", 0)) for r in transforms)
    cpu = sum(r["cpu_s"] for r in transforms)
    wall = sum(_ts(r["ti"]["end_date"]) - _ts(r["ti"]["start_date"]) for r in transforms)
    rate = records / cpu if cpu else None
    # the task runner's own start-up: the least CPU any sampled task used (a task that does next to nothing)
    startup = min((r["cpu_s"] for runs in by_task.values() for r in runs if r["cpu_s"] > 0), default=0.0)
    net_cpu = cpu - startup * len(transforms)
    net = records / net_cpu if records and net_cpu > 0 else None
    figs.append(Figure(bench, "transform records/s per core", f"transform_batch tasks ({len(transforms)})",
                       round(rate) if rate else None, "records/s", f"≥ {GOALS['transform']:,}",
                       at_least(rate, GOALS["transform"]),
                       note="Clio records the transform_batch tasks report ÷ the CPU seconds (user + system) of "
                            f"their processes, start-up included ({records:,} records, {cpu:,.1f} CPU-s)"
                            + (f"; without the task runner's start-up ({len(transforms)} × {startup:.2f} CPU-s, the "
                               f"least any task used): {net:,.0f} records/s" if net else ""),
                       detail={"headline": "transform", "records": records, "cpu_s": round(cpu, 1),
                               "startup_cpu_s": round(startup, 2), "records_per_cpu_s_net": round(net) if net else None,
                               "task_wall_s": round(wall, 1),
                               "records_per_task_wall_s": round(records / wall) if wall else None}))
    # ---- end to end against the Clio floor
    # wall time from the first phase's start to the last end, without the approval waits: phases may
    # overlap (documents off the critical path); the gaps between phases (trigger → running) count
    ended = all(p["state"] == "success" for p in phases)
    total = max(p["end"] for p in phases) - phases[0]["start"] - sum(p["approval_wait"] for p in phases)
    floor = (minimum["total"] - 1) * window / limit
    for p in phases:
        figs.append(Figure(bench, "phase wall time (no approval wait)", p["dag_id"],
                           round(p["seconds"], 1) if p["state"] == "success" else None, "s",
                           note="" if p["state"] == "success" else
                           f"{p['state']} after {p['seconds']:.0f} s when the run was recorded",
                           detail={"clio_requests": p["clio_requests"], "approval_wait_s": round(p["approval_wait"], 1),
                                   "overlapped": p.get("overlapped")}))
    if objects:  # the firm's documents were not extracted: there is no end to end to project
        return figs
    if not ended:
        unfinished = ", ".join(f"{p['dag_id']} ({p['state']})" for p in phases if p["state"] != "success")
        note = (f"not measured: the run was recorded before every phase ended ({unfinished}); at least "
                f"{total:.0f} s against a floor of {floor:.0f} s")
        figs.append(Figure(bench, "end to end ÷ Clio floor", f"{firm}, 50 per {window:g} s (measured)", None,
                           "ratio", note=note, detail={"headline": "e2e", "at_least": round(total / floor, 3)}))
        for label in FIRM_SIZES:
            figs.append(Figure(bench, "end to end ÷ Clio floor, projected to 50 per 60 s", label, None, "ratio",
                               f"≤ {GOALS['e2e_real']}", None, note=note, detail={"headline": f"e2e_real:{label}"}))
        return figs
    figs.append(Figure(bench, "end to end ÷ Clio floor", f"{firm}, 50 per {window:g} s (measured)",
                       round(total / floor, 3), "ratio", detail={"headline": "e2e", "total_s": round(total, 1),
                                                                 "floor_s": round(floor, 1)}))
    tl = timeline(phases, [e["time"] for e in served], window)
    for label, (n_records, n_docs) in FIRM_SIZES.items():
        proj = projection(tl, minimum, len(served), limit, window, n_records, n_docs)
        figs.append(Figure(bench, "end to end ÷ Clio floor, projected to 50 per 60 s", label,
                           round(proj["critical"], 3), "ratio", f"≤ {GOALS['e2e_real']}",
                           at_most(proj["critical"], GOALS["e2e_real"]),
                           note=f"floor {proj['floor_s'] / 3600:,.1f} h; Clio path {proj['clio_path_s'] / 3600:,.2f} h "
                                f"(requests served ÷ minimum as measured), record path "
                                f"{proj['record_path_s'] / 3600:,.2f} h, tail after the last document "
                                f"{proj['tail_s'] / 60:,.1f} min (measured {tl['tail_s']:,.0f} s × {proj['scale']:.2f}); "
                                f"with no more overlap than measured at the compressed rate (every Clio-idle "
                                f"second, {tl['idle_s']:,.0f} s, scaled): {proj['upper']:.3f}; see "
                                "benchmarks/bench_dags.py:projection",
                           detail={"headline": f"e2e_real:{label}", **{k: round(v, 3) for k, v in proj.items()},
                                   "measured": {k: round(v, 1) for k, v in tl.items()}}))
    return figs


if __name__ == "__main__":
    for f in from_raw(Path(sys.argv[1])):
        print(f"{f.benchmark} | {f.figure} | {f.subject} | {f.value} {f.unit} | {f.target or '-'} | {f.met}")
