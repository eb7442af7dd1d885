"""Transform and load steps shared by the sample, full-load and delta phases."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath, get_current_context
from airflow.sdk.exceptions import AirflowFailException

from clio2sf import staging
from clio2sf.access import PERMISSION_SET, missing_access
from clio2sf.mapping import money
from clio2sf.mapping.schema_plan import build_schema_plan
from clio2sf.mapping.spec import BASE_LOAD_ORDER, MappingSpec
from clio2sf.mapping.users import UserMap
from clio2sf.pipeline import (
    RowSlice,
    build_lookup,
    clio_object_of,
    group_batches,
    group_name,
    load_batch,
    lookup_names,
    owned_fields,
    parse_work_item,
    transform_batch,
    work_item,
)
from clio2sf_airflow import migration
from clio2sf_airflow.phases.common import RESUME_ADVICE, firm_spec, hold_lease, mroot, params, run_id

log = logging.getLogger(__name__)

#: Every Salesforce object a firm can load, in dependency order. The DAGs are static, so they
#: wire one load step per entry; a firm's spec decides which of them get batches.
LOAD_SEQUENCE = BASE_LOAD_ORDER

#: Phases that hold the migration's one-writer lease while they write (the sample writes its own slice).
WRITERS = ("full_load", "delta")

#: Clio objects that are transformed (the rest are configuration or reference only).
TRANSFORMED = (
    "users", "contacts", "matters", "relationships", "activity_rates", "activity_descriptions", "bills",
    "bank_transactions", "activities", "calendar_entries", "tasks", "communications", "documents",
    "matter_notes", "contact_notes", *money.PRODUCES,
)


def user_map(root: ObjectStoragePath) -> UserMap:
    doc = staging.read_json(root / "users" / "user_map.json")
    if doc is None:
        raise RuntimeError("no users/user_map.json: run mig_03_resolve_users before loading")
    return UserMap.from_json(doc)


def describe_cache(root: ObjectStoragePath, run: str) -> ObjectStoragePath:
    """Run ``run``'s describes, ``loads/<run id>/salesforce_describe/<Object>.json``: the full load's
    pre-flight writes the fresh ones it reads (:func:`check_write_access`), and a load task reads its
    object's from here instead of asking Salesforce again (one call a task); an object nobody read yet in
    this run is described by the first task that needs it.  A later run (or a cleared pre-flight)
    describes again."""
    return root / "loads" / run / "salesforce_describe"


def bulk_pace(root: ObjectStoragePath, run: str) -> ObjectStoragePath:
    """Run ``run``'s Bulk ingest pace, ``loads/<run id>/salesforce_bulk_pace.json``: the processing
    seconds a row each object's last finished job reported, which sizes the next job's first wait before
    its status call (``ClioSalesforceHook.first_wait``; a hint only: a later run starts without it)."""
    return root / "loads" / run / "salesforce_bulk_pace.json"


def check_write_access(spec: MappingSpec, root: ObjectStoragePath, describe_run: str | None = None) -> dict[str, Any]:
    """Pre-flight before any write: the integration user can read and edit every field the mapping writes.

    Reads the describes as that user (field-level security applies: a field it cannot read is absent,
    one it cannot edit is neither createable nor updateable) and fails naming every gap.  ``describe_run``:
    keep those fresh describes for that run's load tasks (:func:`describe_cache`).
    """
    config = staging.read_json(root / "discover" / "clio_config.json") or {}
    plan = build_schema_plan(spec, None, clio_custom_fields=config.get("custom_fields") or (),
                             practice_areas=config.get("practice_areas") or ())
    hook = migration.salesforce_hook(params(), **({"describe_cache": describe_cache(root, describe_run)}
                                                  if describe_run else {}))
    missing = missing_access(hook, plan.access)
    if missing:
        raise AirflowFailException(
            f"pre-flight: the integration user cannot write what the mapping writes ({len(missing)} missing "
            f"permission(s); nothing was written): " + "; ".join(missing[:40])
            + (f"; ... and {len(missing) - 40} more" if len(missing) > 40 else "")
            + f". Grant them: run mig_01_discover with apply_schema (it creates the {PERMISSION_SET} permission "
            "set and assigns it), or have the Salesforce admin grant field-level security.")
    log.info("pre-flight: the integration user can write all %d mapped fields on %d objects",
             len(plan.access.fields), len(plan.access.objects))
    return {"fields_checked": len(plan.access.fields), "objects_checked": len(plan.access.objects)}


def raw_batches(root: ObjectStoragePath, objects=TRANSFORMED, raw_dir: str = "raw") -> list[dict[str, str]]:
    """One work item per committed raw batch of every transformed object."""
    items = []
    for name in objects:
        manifest = (staging.read_manifest(root, name) if raw_dir == "raw"
                    else staging.read_json(root / raw_dir / name / staging.MANIFEST))
        for entry in (manifest or {}).get("batches", []):
            items.append({"object": name, "path": str(root / raw_dir / name / entry["file"])})
    return items


#: Clio records one full-load transform task handles at least (when the firm has that many): a task
#: runner's start-up (parsing the DAG file), the spec, the user map and the look-ups (every staged matter
#: and contact) are paid once per task, about as much CPU as transforming 20,000 records, so a task of
#: one 2,000-record batch, or of one small object, spent most of its time on them
#: (``benchmarks.bench_dag_transform``, ``benchmarks.bench_dags``).  A task's memory does not grow with
#: it (one raw batch at a time, its rows encoded as they come; a look-up table is kept while an object
#: of the item still needs it); a firm of 1M records still gets ~20 tasks.
TRANSFORM_GROUP_RECORDS = 50_000


def raw_groups(root: ObjectStoragePath, objects=TRANSFORMED, records: int | None = None) -> list[dict[str, Any]]:
    """Work items of consecutive raw batches holding at least ``records`` Clio records
    (:data:`TRANSFORM_GROUP_RECORDS`), in ``objects`` order, across objects: the small objects of a
    firm (users, rates, credit memos, ...) share a task with their neighbours instead of each paying a
    task's start-up.  ``{"object": first batch's object, "path": first batch, "paths": [...],
    "objects": [object of each path]}``.  The items follow from the manifests alone, so planning again
    (a retried or cleared ``plan_transform``) gives the same items, and each raw batch still has its
    own transformed files and rejects, whatever item it is in."""
    records = TRANSFORM_GROUP_RECORDS if records is None else records
    items: list[dict[str, Any]] = []
    have = records
    for name in objects:
        for entry in (staging.read_manifest(root, name) or {}).get("batches", []):
            path = str(root / "raw" / name / entry["file"])
            if have >= records:
                items.append({"object": name, "path": path, "paths": [], "objects": []})
                have = 0
            items[-1]["paths"].append(path)
            items[-1]["objects"].append(name)
            have += int(entry.get("records") or 1)
    return items


def _parts(item: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """``(object, paths)`` of each run of one object's batches in a work item (:func:`raw_groups`,
    or one batch: ``{"object", "path"}``)."""
    paths = list(item.get("paths") or [item["path"]])
    objects = list(item.get("objects") or [item["object"]] * len(paths))
    if len(objects) != len(paths):
        raise ValueError(f"work item of {item['object']}: {len(paths)} paths, {len(objects)} objects")
    parts: list[tuple[str, list[str]]] = []
    for name, path in zip(objects, paths, strict=True):
        if not parts or parts[-1][0] != name:
            parts.append((name, []))
        parts[-1][1].append(path)
    return parts


def _label(parts: list[tuple[str, list[str]]]) -> str:
    """``contacts/batch-00001`` for one batch, ``contacts/batch-00001-to-00006`` for several of one object,
    ``users/batch-00001-to-relationships/batch-00005`` across objects."""
    (first_obj, first_paths), (last_obj, last_paths) = parts[0], parts[-1]
    first = first_paths[0].rsplit("/", 1)[-1]
    if len(parts) == 1 and len(first_paths) == 1:
        return f"{first_obj}/{first}"
    last = last_paths[-1].rsplit("/", 1)[-1].split(".")[0]
    if len(parts) == 1:
        return f"{first_obj}/{first.split('.')[0]}-to-{last.rsplit('-', 1)[-1]}"
    return f"{first_obj}/{first.split('.')[0]}-to-{last_obj}/{last}"


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside (on again after, if it was on).

    Decoding a raw record makes a dozen dicts and lists, and every 700 new containers start a collection
    of the young ones, every tenth one of older ones too (the look-up tables, the task's imported
    modules): transforming the large extraction's 96,740 records in a process holding Airflow's task
    runner, 905 collections took 0.8 of its 7.0 CPU-s (timed by ``gc.callbacks``, load ~7 on 2 CPUs).
    What the transform makes and drops is freed by reference counting; the cycles it leaves are a few
    (163 unreachable objects found after the same transform with collection off, none uncollectable),
    collected once it is on again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def transform_one(item: dict[str, Any], out: str = "") -> dict[str, Any]:
    """Transform one raw batch (``item["path"]``) or a group of them (``item["paths"]``: :func:`raw_groups`)
    into ``<out>/transformed/...``, one transformed file per raw batch, with the spec and user map read
    once and each look-up table read once (every object's transform gets the tables it needs, as when
    it had a task of its own); return counts (no record data).  Runs with the cyclic garbage collector
    paused (:func:`cyclic_gc_paused`)."""
    with cyclic_gc_paused():
        return _transform_one(item, out)


def _transform_one(item: dict[str, Any], out: str) -> dict[str, Any]:
    p = params()
    # On a local staging root (file://) the files are read and written as plain paths: the same bytes,
    # without ObjectStoragePath's first file access (it imports every provider's filesystem, boto3
    # included: ~0.5 CPU-s of each task's start-up). An object store root stays as it is.
    root = mroot(p)
    make_path = _local_path if staging.is_local(root) else ObjectStoragePath
    root = staging.as_local(root)
    spec = firm_spec(p["firm"])
    parts = _parts(item)
    label = _label(parts)
    get_current_context()["batch_label"] = label
    out_root = root / out if out else root
    users = user_map(root)
    tables: dict[str, Any] = {}
    total: dict[str, Any] = {"object": item["object"], "batch": label.split("/", 1)[1], "records": 0, "rows": {},
                             "rejects": 0, "repairs": 0}
    if len(parts) > 1:
        total["objects"] = {}
    for i, (name, paths) in enumerate(parts):
        needed = {n for later, _ in parts[i:] for n in lookup_names(later)}
        for n in [n for n in tables if n not in needed]:  # no later object of this item reads it
            del tables[n]
        lookup = build_lookup(root, lookup_names(name), spec, tables=tables)
        for path in paths:
            summary = transform_batch(make_path(path), name, spec, users, lookup, out_root)
            for k in ("records", "rejects", "repairs"):
                total[k] += summary[k]
            for sobject, n in summary["rows"].items():
                total["rows"][sobject] = total["rows"].get(sobject, 0) + n
            if "objects" in total:
                total["objects"][name] = total["objects"].get(name, 0) + summary["records"]
    return total


def _local_path(path: str) -> Path:
    """A raw batch of a work item (``file:///...``, or a plain path) as a :class:`pathlib.Path`."""
    return staging.as_local(ObjectStoragePath(path)) if "://" in path else Path(path)


def transformed_batches(root: ObjectStoragePath, sobject: str, out: str = "") -> list[str]:
    folder = (root / out if out else root) / "transformed" / sobject
    if not folder.exists():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(".jsonl.gz"))


def load_groups(root: ObjectStoragePath, sobject: str, out: str = "") -> list[str | list[str]]:
    """The transformed files of ``sobject`` as load work items: groups of files holding at least
    ``clio2sf.pipeline.LOAD_GROUP_ROWS`` rows, so volume goes through Bulk API 2.0, and at most
    ``LOAD_GROUP_MAX_ROWS`` (a larger file is split into row slices, ``<path>#rows=a-b``), so a load
    task's memory stays bounded (a single file stays a plain path)."""
    return group_items([ObjectStoragePath(p) for p in transformed_batches(root, sobject, out)], sobject)


def group_items(paths: list[ObjectStoragePath], sobject: str, rows: int | None = None) -> list[str | list[str]]:
    """``clio2sf.pipeline.group_batches`` of ``paths`` as DAG work items (``pipeline.work_item``)."""
    return [work_item(g) for g in group_batches(paths, sobject, rows)]


def file_items(root: ObjectStoragePath, out: str = "") -> list[str]:
    """Every transformed file under ``root`` (``out``) in load order, one work item each, a file over
    the load group maximum in row slices (``<path>#rows=a-b``): the deferred pass, the sample and a
    delta window load these one after the other, so a task's memory is that of one slice."""
    items: list[str] = []
    for sobject in LOAD_SEQUENCE:
        paths = [ObjectStoragePath(p) for p in transformed_batches(root, sobject, out)]
        items += group_items(paths, sobject, rows=0)  # type: ignore[arg-type]
    return items


def use_system_allocator() -> None:
    """Let pyarrow allocate through the system allocator in this (task) process.  A load task reads the
    ledger index (parquet, pyarrow) of every earlier batch of its object to know what exists; pyarrow's
    default pool (mimalloc) kept what those reads used, and kept more the more index files there were:
    +53 MB over 1 file of 20,000 lines, +69 over 8, +80 over 30; the system allocator gives it back
    (+22, +26, +29): ``benchmarks.bench_load_task_memory``."""
    import pyarrow as pa

    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def cleared_fields(spec: MappingSpec, group: list[Any]) -> dict[str, list[str]]:
    """The fields a delta may clear on the rows of a load group, per Clio object of its files
    (``owned_fields``): a group spans the Clio objects of one Salesforce object (Task from
    ``activities``, ``communications``, ``tasks``), and each file's rows are cleared with their own
    object's fields, never the first file's."""
    sobject = group[0].parent.name
    return {src: owned_fields(spec, sobject, src) for src in dict.fromkeys(clio_object_of(p) for p in group)}


def load_one(path: str | list[str], phase: str, deferred: bool = False, window_root: ObjectStoragePath | None = None,
             clear_fields: bool = False, count_deferred: bool = False) -> dict[str, Any]:
    """Load one transformed batch (or a group of them, or a row slice of one: :func:`load_groups`) into
    Salesforce, writing its ledger and rejects.

    ``window_root``: where a delta window staged the batch's files (blobs, its rejects).
    ``clear_fields``: send null for mapped fields the record no longer has (a delta), each file's rows
    with its own Clio object's fields (:func:`cleared_fields`).
    ``count_deferred``: note per file the rows left to the deferred pass (``pipeline.deferred_mark``).  Every load task
    shares the ids its upserts got with the run's later natural-key tasks (``share_ids``:
    ``clio2sf.pipeline.run_ids_path``)."""
    # here, not at the top: the hook imports simple_salesforce (with zeep and lxml), which every task
    # parsing a DAG file that imports this module paid for, the transform's included
    from clio2sf_airflow.hooks.salesforce import SalesforceApiLimitExceeded, SalesforceStorageLimitExceeded

    use_system_allocator()
    p = params()
    root = mroot(p)
    spec = firm_spec(p["firm"])
    group = parse_work_item(path, ObjectStoragePath)
    tpath = group[0]
    label = f"{tpath.parent.name}/{tpath.name if len(group) == 1 and not isinstance(tpath, RowSlice) else group_name(group)}"
    get_current_context()["batch_label"] = label
    if phase in WRITERS:
        hold_lease(phase)
    try:
        summary = load_batch(
            migration.salesforce_hook(params(), describe_cache=describe_cache(root, run_id()),
                                      bulk_pace=bulk_pace(root, run_id())),
            group if len(group) > 1 else tpath, root, migration_id=p["migration_id"], run_id=run_id(), phase=phase,
            mode=p.get("load_mode", "auto"), load_order=spec.load_order, deferred=deferred,
            window_root=window_root, share_ids=True, count_deferred=count_deferred,
            clear_fields=cleared_fields(spec, group) if clear_fields else None,
        )
    except (SalesforceApiLimitExceeded, SalesforceStorageLimitExceeded) as exc:
        # Task retries minutes apart cannot help: stop now; a later re-run resumes by external id.
        raise AirflowFailException(
            f"{label}: {exc} (not retried: the org has no room until its limit resets "
            f"or storage is added)\n{RESUME_ADVICE}"
        ) from exc
    except Exception:
        # Airflow retries it; when the retries are spent, this line says what to do (its own log line)
        log.error("%s failed. %s", label, RESUME_ADVICE)
        raise
    log.info("%s %s: %s", summary["sobject"], summary["batch"],
             {k: summary[k] for k in ("rows", "created", "updated", "skipped", "failed")})
    return {k: summary[k] for k in ("sobject", "batch", "rows", "created", "updated", "skipped", "failed")}
