"""Records/s of ``mig_05_full_load``'s ``transform_batch`` task, the function the mapped task runs.

``python -m benchmarks.bench_dag_transform [--firm-matters 5000] [--objects activities,contacts]``

Stages a firm's raw extraction under a file:// root (the hand-made fixtures replicated with fresh
ids, in 2,000-record batches as the extract writes them; per matter ~2.6 contacts, ~8 activities,
~2 relationships, as docs/clio-sandbox.md describes the sandbox firm) and a user map, then runs
``full_load.plan_transform()`` and ``full_load.transform_batch(item)`` for every raw batch of the
chosen objects with their task context, one process, one core.  Records/s counts the Clio records
of the batches over the CPU time of those task calls (look-ups, reading, transforming, writing;
the wall time is in the detail: on a shared machine it also holds other processes' turns).
Target: ≥ 20,000 records/s per core.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.bench_load_calls import FIRM, MIGRATION, task_context
from benchmarks.bench_transform import FIXTURES
from benchmarks.common import Figure, at_least
from clio2sf import staging

BATCH = 2_000
PER_MATTER = {"matters": 1.0, "contacts": 2.6, "activities": 8.0, "relationships": 2.0, "tasks": 1.0,
              "activity_rates": 0.1, "calendar_entries": 0.5, "bills": 0.5}


def _stream(name: str, size: int, matters: int, contacts: int):
    base = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    if name == "calendar_entries":
        base = [e for e in base if not e["data"].get("recurrence_rule")]
    for i in range(size):
        env = copy.deepcopy(base[i % len(base)])
        new_id = 100000 + i
        d = env["data"]
        d["id"] = str(new_id) if name == "calendar_entries" else new_id
        for key, pool in (("matter", matters), ("client", contacts), ("contact", contacts)):
            if isinstance(d.get(key), dict) and d[key].get("id") is not None:
                d[key]["id"] = 100000 + (i * 7) % pool
        env["clio_id"] = new_id
        env["source_system_id"] = env["source_system_id"].rsplit("-", 1)[0] + f"-{new_id}"
        yield env


def stage(mroot: Path, matters: int) -> dict[str, int]:
    counts = {name: max(1, int(matters * k)) for name, k in PER_MATTER.items()}
    for name, size in counts.items():
        odir = staging.raw_dir(mroot, name)
        staging.ensure_dir(odir)
        stream = _stream(name, size, counts["matters"], counts["contacts"])
        entries = []
        for b, start in enumerate(range(0, size, BATCH), 1):
            n = min(BATCH, size - start)
            staging.write_jsonl_gz(odir / staging.batch_name(b), (next(stream) for _ in range(n)))
            entries.append({"file": staging.batch_name(b), "records": n})
        staging.write_json(odir / staging.MANIFEST, {"object": name, "batches": entries, "records": size,
                                                     "complete": True})
    staging.write_json(mroot / "users" / "user_map.json", {"users": {"1001": "005000000000001AAA", "1002": "005000000000002AAA"}, "status": {"1001": "matched", "1002": "matched"}, "fallback_owner": "005000000000009AAA"})
    return counts


def run(work: Path, matters: int, objects: list[str]) -> list[Figure]:
    os.environ["AIRFLOW_VAR_CLIO2SF_STAGING_ROOT"] = f"file://{work / 'stage'}"
    mroot = work / "stage" / FIRM / MIGRATION
    stage(mroot, matters)
    from clio2sf_airflow.phases import full_load

    figs = []
    with task_context("bench-transform"):
        items = full_load.plan_transform()
        for name in objects:
            mine = [i for i in items if i["object"] == name]
            t0, c0 = time.perf_counter(), time.process_time()
            records = sum(full_load.transform_batch(item)["records"] for item in mine)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            rate = records / cpu  # per core: CPU time of this one process (the machine may be shared)
            figs.append(Figure("transform", f"DAG transform_batch task records/s per core ({name})",
                               f"{records:,} records in {len(mine)} task call(s), firm of {matters:,} matters",
                               round(rate), "records/s", "≥ 20,000", at_least(rate, 20_000),
                               detail={"cpu_seconds": round(cpu, 2), "wall_seconds": round(seconds, 2),
                                       "records_per_wall_second": round(records / seconds)}))
    return figs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--firm-matters", type=int, default=5_000)
    ap.add_argument("--objects", default="activities,contacts,relationships")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dag-transform-") as tmp:
        for f in run(Path(tmp), args.firm_matters, args.objects.split(",")):
            print(json.dumps(f.as_dict()))


if __name__ == "__main__":
    main()
