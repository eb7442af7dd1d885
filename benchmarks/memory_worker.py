"""One memory measurement in a fresh process: ``python -m benchmarks.memory_worker TASK DIR SIZE``.

Prints one JSON line ``{"task", "size", "records", "seconds", "peak_rss_mb"}`` (peak RSS of this
process, ``VmHWM``: see :func:`peak_rss_kb`).  Tasks, all on the real code paths:

* ``extract``: ``extract_object("activities")`` with a fetch that serves SIZE synthetic records
  in cursor pages of 200 (no HTTP: the sandbox cannot hold 1M records of one object cheaply);
  writes ``DIR/m/raw/activities``.
* ``transform``: ``transform_object("activities")`` streaming over what ``extract`` staged,
  writing transformed batches of 10,000 rows per Salesforce object.
* ``load``: ``SalesforceLoadOperator.execute`` (Bulk 2.0) for every ``DIR/m/transformed/Contact``
  batch (written by the runner), against the sandbox named by ``AIRFLOW_CONN_SALESFORCE_DEFAULT``.
* ``ledger_load``: one DAG load task's work, ``clio2sf.pipeline.load_batch`` (what
  ``mig_05_full_load``'s ``load_batch`` task runs) of ``DIR/m/transformed/Contact/batch-00001``
  beside an earlier run's ledger of SIZE rows (``benchmarks.bench_ledger`` writes both): its ledger
  look-ups go through the index.
* ``ledger_read_all``: the look-up as it was before the index (every ledger line read into one
  DataFrame, ``last_write_by_record(read_ledger(...))``), for the before/after figures.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from clio2sf import catalog, staging

FIXTURES = ROOT / "tests" / "unit" / "mapping" / "fixtures"
OUT_BATCH = 10_000


def _templates() -> list[str]:
    return [json.dumps(e["data"]) for e in json.loads((FIXTURES / "activities.json").read_text(encoding="utf-8"))]


def extract(work: Path, size: int) -> int:
    from clio2sf.extract import extract_object

    templates = _templates()

    def fetch(url: str, params: Any) -> tuple[dict, dict]:
        start = 0 if params is not None else int(url.rsplit("=", 1)[1])
        end = min(start + 200, size)
        data = []
        for i in range(start, end):
            rec = json.loads(templates[i % len(templates)])
            rec["id"] = 100_000 + i
            data.append(rec)
        meta: dict[str, Any] = {"records": size, "paging": {}}
        if end < size:
            meta["paging"]["next"] = f"https://clio.invalid/api/v4/activities.json?page_token={end}"
        return {"data": data, "meta": meta}, {}

    out = extract_object(catalog.get("activities"), fetch, work / "m")
    return int(out["records"])


def transform(work: Path, size: int) -> int:
    from clio2sf.extract import read_records
    from clio2sf.mapping.spec import load_spec
    from clio2sf.mapping.transform import is_reject, transform_object
    from clio2sf.mapping.users import UserMap

    spec = load_spec("harlow_vance")
    users = UserMap({1001: "005000000000001AAA", 1002: "005000000000002AAA"}, "005000000000009AAA")
    mroot = work / "m"
    buffers: dict[str, list[dict]] = {}
    written: dict[str, int] = {}
    rejects = 0

    def flush(sobject: str) -> None:
        written[sobject] = written.get(sobject, 0) + 1
        path = mroot / "transformed" / sobject / staging.batch_name(written[sobject])
        staging.ensure_dir(path.parent)
        staging.write_jsonl_gz(path, buffers.pop(sobject))

    seen = 0

    def counting(it: Iterator[dict]) -> Iterator[dict]:
        nonlocal seen
        for item in it:
            seen += 1
            yield item

    horizon = datetime(2025, 1, 1, tzinfo=UTC)
    for res in transform_object("activities", counting(read_records(mroot, "activities")), spec, users,
                                horizon=horizon):
        if is_reject(res):
            rejects += 1
            continue
        buf = buffers.setdefault(res["sobject"], [])
        buf.append(res)
        if len(buf) >= OUT_BATCH:
            flush(res["sobject"])
    for sobject in list(buffers):
        flush(sobject)
    return seen


def load(work: Path, size: int) -> int:
    from clio2sf_airflow.operators.salesforce_load import SalesforceLoadOperator

    rows = 0
    mroot = work / "m"
    for batch in sorted((mroot / "transformed" / "Contact").glob("batch-*.jsonl.gz")):
        op = SalesforceLoadOperator(task_id=f"load_{batch.stem.split('.')[0]}", sobject="Contact",
                                    batch_path=f"file://{batch}", migration_root=f"file://{mroot}",
                                    migration_id="m1", run_id="bench", mode="bulk")
        summary = op.execute(context={})  # type: ignore[arg-type]
        if summary["failed"]:
            raise RuntimeError(f"{batch.name}: {summary['failed']} rows failed to load")
        rows += summary["rows"]
    return rows


def ledger_load(work: Path, size: int) -> int:
    from clio2sf.pipeline import load_batch
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    mroot = work / "m"
    summary = load_batch(ClioSalesforceHook(), mroot / "transformed" / "Contact" / "batch-00001.jsonl.gz", mroot,
                         migration_id="m1", run_id="bench-second", phase="full_load", mode="auto",
                         load_order=["Account", "Contact"])
    if summary["failed"]:
        raise RuntimeError(f"ledger_load: {summary['failed']} rows failed to load")
    return size


def ledger_read_all(work: Path, size: int) -> int:
    from clio2sf.ledger import last_write_by_record, read_ledger

    last = last_write_by_record(read_ledger(work / "m"))
    return len(last)


def peak_rss_kb() -> int:
    """This process's peak RSS in KiB.

    ``VmHWM`` belongs to the process image, so it starts afresh at exec; ``ru_maxrss`` does not on
    Linux (it keeps the forking parent's high-water mark), so it is only the fallback.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str]) -> None:
    task, work, size = argv[0], Path(argv[1]), int(argv[2])
    t0 = time.perf_counter()
    records = {"extract": extract, "transform": transform, "load": load, "ledger_load": ledger_load,
               "ledger_read_all": ledger_read_all}[task](work, size)
    peak_kb = peak_rss_kb()
    print(json.dumps({"task": task, "size": size, "records": records, "seconds": round(time.perf_counter() - t0, 2),
                      "peak_rss_mb": round(peak_kb / 1024, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
