"""Records/s of ``mig_05_full_load``'s ``transform_batch`` task, the function the mapped task runs.

``python -m benchmarks.bench_dag_transform [--firm-matters 5000] [--objects activities,contacts]``
``python -m benchmarks.bench_dag_transform --raw-root WORK/stage/large/m1`` (a real extraction)

Stages a firm's raw extraction under a file:// root (the hand-made fixtures replicated with fresh
ids, in 2,000-record batches as the extract writes them; per matter ~2.6 contacts, ~8 activities,
~2 relationships, as docs/clio-sandbox.md describes the sandbox firm) and a user map, then runs
``full_load.plan_transform()`` and ``full_load.transform_batch(item)`` for every raw batch of the
chosen objects with their task context, one process, one core.  Records/s counts the Clio records
of the batches over the CPU time of those task calls (look-ups, reading, transforming, writing;
the wall time is in the detail: on a shared machine it also holds other processes' turns), after one
untimed warm-up call: per object (its batches alone, in the task calls the plan gives them), then
all the objects measured in the task calls the plan packs them in (several objects a task).  With ``--raw-root`` the records are a real extraction's (the sandbox firm's
are ~2 KB each, larger than the fixtures), re-batched as mig_02_extract writes them, every record
object.  Target: ≥ 20,000 records/s per core.
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


def restage(source: Path, mroot: Path) -> dict[str, int]:
    """Copy a real extraction's record objects (``source``: a migration root, e.g. the sandbox firm
    ``benchmarks.bench_verify_memory`` extracted) into ``mroot`` in BATCH-record files, as
    mig_02_extract writes them (10 pages of 200 a batch), with its user map."""
    from clio2sf.extract import read_records

    counts = {}
    for odir in sorted((source / "raw").iterdir()):
        name = odir.name
        if staging.read_manifest(source, name) is None or name == "documents":
            continue
        out = staging.raw_dir(mroot, name)
        staging.ensure_dir(out)
        stream, entries, n = iter(read_records(source, name)), [], 0
        while batch := [env for _, env in zip(range(BATCH), stream, strict=False)]:
            entries.append(staging.write_jsonl_gz(out / staging.batch_name(len(entries) + 1), batch))  # with sha256
            n += len(batch)
        staging.write_json(out / staging.MANIFEST, {"object": name, "batches": entries, "records": n, "complete": True})
        counts[name] = n
    staging.write_json(mroot / "users" / "user_map.json", staging.read_json(source / "users" / "user_map.json"))
    return counts


def run(work: Path, matters: int, objects: list[str] | None, raw_root: Path | None = None) -> list[Figure]:
    os.environ["AIRFLOW_VAR_CLIO2SF_STAGING_ROOT"] = f"file://{work / 'stage'}"
    mroot = work / "stage" / FIRM / MIGRATION
    if raw_root is not None:
        counts = restage(raw_root, mroot)
        firm = f"{raw_root} ({sum(counts.values()):,} records)"
    else:
        counts = stage(mroot, matters)
        firm = f"firm of {matters:,} matters"
    from clio2sf_airflow.phases import full_load

    figs = []
    with task_context("bench-transform"):
        items = full_load.plan_transform()
        chosen = objects or sorted({o for i in items for o in i["objects"]})
        # Warm-up (not timed): the first call in a process imports and compiles what every later one reuses;
        # a DAG task pays that in its start-up (see the DAG benchmark), not per record.
        smallest = min((o for o in chosen if counts.get(o)), key=lambda o: counts[o], default=None)
        if smallest is not None:
            full_load.transform_batch(next(_only(i, [smallest]) for i in items if smallest in i["objects"]))
        for name in chosen:  # each object's batches alone, in the tasks the plan gives them
            mine = [_only(i, [name]) for i in items if name in i["objects"]]
            records, cpu, seconds = _timed(full_load, mine)
            if not records:
                continue
            rate = records / cpu  # per core: CPU time of this one process (the machine may be shared)
            figs.append(Figure("transform", f"DAG transform_batch task records/s per core ({name})",
                               f"{records:,} records in {len(mine)} task call(s), {firm}",
                               round(rate), "records/s", "≥ 20,000", at_least(rate, 20_000),
                               detail={"cpu_seconds": round(cpu, 2), "wall_seconds": round(seconds, 2),
                                       "records_per_wall_second": round(records / seconds)}))
        if len(figs) > 1:  # the objects measured as the plan packs them: several objects a task
            planned = [_only(i, chosen) for i in items if set(i["objects"]) & set(chosen)]
            records, cpu, seconds = _timed(full_load, planned)
            rate = records / cpu
            figs.append(Figure("transform", "DAG transform_batch task records/s per core (all objects measured)",
                               f"{records:,} records in {len(planned)} task call(s) as planned, {firm}", round(rate),
                               "records/s", "≥ 20,000", at_least(rate, 20_000),
                               detail={"cpu_seconds": round(cpu, 2), "wall_seconds": round(seconds, 2),
                                       "per_object_cpu_seconds": round(sum(f.detail["cpu_seconds"] for f in figs), 2)}))
    return figs


def _only(item: dict, names: list[str]) -> dict:
    """The part of a planned work item (``load_common.raw_groups``) holding the batches of ``names``."""
    keep = [(p, o) for p, o in zip(item["paths"], item["objects"], strict=True) if o in names]
    return {"object": keep[0][1], "path": keep[0][0], "paths": [p for p, _ in keep], "objects": [o for _, o in keep]}


def _timed(full_load, items: list[dict]) -> tuple[int, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    records = sum(full_load.transform_batch(item)["records"] for item in items)
    return records, time.process_time() - c0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--firm-matters", type=int, default=5_000)
    ap.add_argument("--objects", default=None,
                    help="comma-separated (default: activities,contacts,relationships; with --raw-root every object)")
    ap.add_argument("--raw-root", default=None, help="a migration root holding a real extraction to transform "
                    "(e.g. bench_verify_memory's WORK/stage/large/m1) instead of the replicated fixtures")
    args = ap.parse_args()
    objects = args.objects.split(",") if args.objects else None if args.raw_root else ["activities", "contacts",
                                                                                          "relationships"]
    with tempfile.TemporaryDirectory(prefix="bench-dag-transform-") as tmp:
        for f in run(Path(tmp), args.firm_matters, objects, Path(args.raw_root) if args.raw_root else None):
            print(json.dumps(f.as_dict()))


if __name__ == "__main__":
    main()
