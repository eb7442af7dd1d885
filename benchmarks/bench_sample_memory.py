"""Peak RSS and CPU of the sample phase's ``select_sample`` work as the firm grows, without Clio or Salesforce.

``python -m benchmarks.bench_sample_memory [--sizes 100000,1000000] [--no-write]``

For each size N (:func:`stage`) the sandbox's Clio firm of 4,000 matters (``sandbox.clio.firm``: the
large preset, about 98,000 records of the transformed objects with their real shapes, strata, custom
fields and parent links) is staged as raw envelopes in batches of 2,000 with their manifests under a
file:// staging root, as the extraction leaves them; for 1M, ten copies of it (each copy's ids and
references moved by 10^9; users and activity descriptions once). Then, **in a fresh process** read through
``ObjectStoragePath`` as the task reads, what ``mig_04_sample``'s ``select_sample`` runs once its guards
pass: :func:`clio2sf.sample.choose_sample` over :func:`clio2sf.sample.staged_index` and
:func:`clio2sf.sample.stage_sample` (the sample's raw batches written); on code before those existed
(this file copied into a checkout of an older commit) the task's body as it was then. Peak RSS is
``VmHWM`` (:func:`benchmarks.memory_worker.peak_rss_kb`), CPU the process's user + system seconds; the
reads of each object's staged records are counted (``clio2sf.extract.read_records`` calls).

Then ``diff_sample``'s work (:func:`clio2sf.verify.sample_diff`: the field-level diff and the
source-to-target verifier on the sample), each in a fresh process: the sample is transformed first
(:func:`prepare_diff`, with a user map matching every staged Clio user), and the org is a stand-in
(:class:`SampleOrg`) holding the sample's transformed rows as loaded, answering SOQL; once holding the
sample only (the DAG: the sample is loaded before the full load), once also the rest of the firm
(records made as a query reads the whole sobject: a firm sampled again after its full load). The
staged files the diff reads are counted by folder (``files_read``: only ``sample`` expected). The
diff's CPU includes the stand-in org's (SOQL evaluation, the firm's records made).

Target (issue #20): every task under 500 MB and flat (≤ 1.2×) from 100k to 1M records. Prints one JSON
line per size and writes ``benchmarks/results/sample_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Figure, figures_page, growth_figure, ints, shown_args

LIMIT_MB = 500
FLAT = 1.2
BATCH = 2_000
RESULTS = ROOT / "benchmarks" / "results"
FIRM = "harlow_vance"
MIGRATION = "m1"

#: Matters of the sandbox firm one copy is generated from (about 98,000 staged records: the large preset).
BASE_MATTERS = 4_000
#: Clio id offset of each further copy of the firm.
COPY_OFFSET = 10 ** 9


def _shift(obj: str, data: dict[str, Any], offset: int) -> dict[str, Any]:
    """``data`` with its id and every reference the sampler follows moved by ``offset`` (another copy)."""
    from clio2sf.sample import PARENTS

    def moved(value: Any) -> Any:  # calendar entry ids are text
        return str(int(value) + offset) if isinstance(value, str) and value.isdigit() else value + offset

    if not offset:
        return data
    data = dict(data, id=moved(data["id"]))
    for ref in PARENTS.get(obj, ()):
        head = ref.path[0]
        value = data.get(head)
        if isinstance(value, (int, str)) and not isinstance(value, bool) and str(value).isdigit():
            data[head] = moved(value)
        elif isinstance(value, dict) and isinstance(value.get("id"), int):
            data[head] = {**value, "id": value["id"] + offset}
        elif isinstance(value, list):
            data[head] = [{**v, "id": v["id"] + offset} if isinstance(v, dict) and isinstance(v.get("id"), int) else v
                          for v in value]
    cfvs = data.get("custom_field_values")
    if cfvs:
        data["custom_field_values"] = [
            {**c, "value": str(int(c["value"]) + offset)} if isinstance(c, dict) and c.get("field_type") in
            ("contact", "matter") and isinstance(c.get("value"), str) and c["value"].strip().isdigit() else c
            for c in cfvs]
    return data


def _firm(seed: int) -> dict[str, list[dict[str, Any]]]:
    """The sandbox Clio firm of :data:`BASE_MATTERS` matters, as the extraction stages it (object → records)."""
    from clio2sf_airflow.phases import load_common
    from sandbox.clio.firm import FirmBuilder

    b = FirmBuilder(seed, BASE_MATTERS, 0.0)
    b.build()
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, recs in b.data.items():
        for rec in recs:
            data = {k: v for k, v in rec.items() if not k.startswith("_")}
            name = kind
            if kind == "notes":
                name = "matter_notes" if data.get("matter") else "contact_notes"
            if name in load_common.TRANSFORMED:
                out.setdefault(name, []).append(data)
    return out


def stage(mroot: Path, size: int, seed: int = 20, objects: Any = None) -> dict[str, int]:
    """Raw batches and manifests under ``mroot/raw`` of copies of the sandbox firm (:func:`_firm`, ids
    moved by :data:`COPY_OFFSET` a copy) up to about ``size`` records; returns the records per object.
    ``objects``: stage only these (the copies are still those of the whole firm's size)."""
    from clio2sf import staging
    from clio2sf.extract import envelope

    firm = _firm(seed)
    per_copy = sum(len(v) for v in firm.values())
    copies = max(1, round(size / per_copy))
    n = {}
    for name, recs in sorted(firm.items()):
        if objects is not None and name not in objects:
            continue
        folder = staging.raw_dir(mroot, name)
        staging.ensure_dir(folder)
        entries: list[dict[str, Any]] = []
        batch: list[dict[str, Any]] = []
        reference = name in ("users", "activity_descriptions")  # one firm's configuration, not copied
        for copy in range(1 if reference else copies):
            for data in recs:
                batch.append(envelope(name, _shift(name, data, copy * COPY_OFFSET), "2026-12-03T22:00:00Z"))
                if len(batch) == BATCH:
                    entries.append(staging.write_jsonl_gz(folder / staging.batch_name(len(entries) + 1), batch))
                    batch = []
        if batch:
            entries.append(staging.write_jsonl_gz(folder / staging.batch_name(len(entries) + 1), batch))
        n[name] = sum(e["records"] for e in entries)
        staging.write_json(folder / staging.MANIFEST, {"object": name, "batches": entries, "records": n[name],
                                                        "complete": True})
    return n


# ------------------------------------------------------------------------------------------ worker


def _select(root: Any, objects: list[str], seed: int, size: int) -> Any:
    """What ``select_sample`` runs after its guards (on older code: its body as it was)."""
    from clio2sf import sample as mod

    if hasattr(mod, "stage_sample"):
        chosen = mod.choose_sample(mod.staged_index(root, objects), seed=seed, max_total=size)
        mod.stage_sample(root, objects, chosen, out="sample")
        return chosen
    from clio2sf import extract, staging  # the task body before staged_index/stage_sample

    def index(name: str) -> Any:
        return extract.read_records(root, name) if name in objects else iter(())

    chosen = mod.choose_sample(index, seed=seed, max_total=size)
    gaps = mod.closure_violations(chosen, index)
    if gaps:
        raise RuntimeError(f"sample is not closed under relationships: {gaps[:5]}")
    staging.write_json(root / "sample" / "selection.json", chosen.to_json())
    for name in objects:
        envs = list(mod.filter_envelopes(chosen, name, extract.read_records(root, name)))
        folder = root / "sample" / "raw" / name
        batches = [staging.write_jsonl_gz(folder / "sample-00001.jsonl.gz", envs)] if envs else []
        staging.write_json(folder / staging.MANIFEST, {"object": name, "batches": batches, "complete": True})
    return chosen


def worker(root_url: str, idle: bool) -> None:
    """``select_sample``'s work on the firm staged at ``root_url`` in this (fresh) process; one JSON line."""
    from airflow.sdk import ObjectStoragePath

    from benchmarks.memory_worker import peak_rss_kb
    from clio2sf import extract, staging
    from clio2sf_airflow.phases import load_common

    root = ObjectStoragePath(root_url)
    if idle:
        print(json.dumps({"peak_rss_mb": round(peak_rss_kb() / 1024, 1)}))
        return
    reads: dict[str, int] = {}
    real = extract.read_records

    def counting(mroot: Any, name: str, *args: Any, **kw: Any) -> Any:
        reads[name] = reads.get(name, 0) + 1
        return real(mroot, name, *args, **kw)

    extract.read_records = counting  # type: ignore[assignment]
    objects = [o for o in load_common.TRANSFORMED if staging.read_manifest(root, o) is not None]
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    chosen = _select(root, objects, 7, 500)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1),
                      "cpu_s": round(usage.ru_utime - usage0.ru_utime + usage.ru_stime - usage0.ru_stime, 1),
                      "peak_rss_mb": round(peak_rss_kb() / 1024, 1), "sample": chosen.total,
                      "max_reads_per_object": max(reads.values()), "reads": sum(reads.values())}))


def _run_worker(root: Path, idle: bool = False, diff_scale: int = 0) -> dict[str, Any]:
    """A fresh process: ``select_sample``'s work, or (``diff_scale``) ``diff_sample``'s against an org of
    the sample times ``diff_scale``; or (``idle``) the imports only."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    args = ["--diff-worker", f"file://{root}", str(diff_scale)] if diff_scale else \
        ["--worker", f"file://{root}", "1" if idle else "0"]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_sample_memory", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(f"{'diff_sample' if diff_scale else 'select_sample'} worker: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ diff_sample


def prepare_diff(root: Path) -> dict[str, int]:
    """What ``transform_sample`` and ``mig_03_resolve_users`` leave for ``diff_sample``: a user map (each
    staged Clio user matched to a Salesforce user id) and the sample's raw batches transformed into
    ``sample/transformed`` with the firm's spec and look-ups (as ``load_common.transform_one`` does)."""
    from clio2sf import extract, staging
    from clio2sf.mapping.spec import load_spec
    from clio2sf.mapping.users import UserMap
    from clio2sf.pipeline import build_lookup, lookup_names, transform_batch

    users = [e["data"] for e in extract.read_records(root, "users")]
    doc = {"users": {str(u["id"]): f"005{i:012d}AAA" for i, u in enumerate(users, 1)},
           "status": {str(u["id"]): "matched" for u in users}, "fallback_owner": "005999999999999AAA"}
    staging.write_json(root / "users" / "user_map.json", doc)
    spec, umap = load_spec(FIRM), UserMap.from_json(doc)
    rows: dict[str, int] = {}
    raw = root / "sample" / "raw"
    for folder in sorted(p for p in raw.iterdir() if p.is_dir()):
        manifest = staging.read_json(folder / staging.MANIFEST) or {}
        lookup = build_lookup(root, lookup_names(folder.name), spec)
        for b in manifest.get("batches", []):
            out = transform_batch(folder / b["file"], folder.name, spec, umap, lookup, root / "sample")
            for sobject, n in out["rows"].items():
                rows[sobject] = rows.get(sobject, 0) + n
    return rows


#: Clio id offset of the org's further records (:class:`SampleOrg`), beyond the staged copies'.
ORG_OFFSET = 10 ** 12


def _other_record(clio_id: str, copy: int) -> str:
    """``matter-7@v2#contact-5`` of another record of the firm: its first number moved by ``copy`` ×
    :data:`ORG_OFFSET` (``matter-1000000000007@v2#contact-5``)."""
    head, sep, rest = clio_id.partition("-")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    if not sep or not digits:
        return f"{clio_id}-{copy}"
    return f"{head}-{int(rest[:digits]) + copy * ORG_OFFSET}{rest[digits:]}"


class SampleOrg:
    """The org after ``load_sample``, standing in for the Salesforce hook (``describe``, ``query_all_iter``;
    SOQL evaluated by the Salesforce sandbox's parser): every transformed row of the sample (natural-key
    rows included) as a record with an Id, its lookups (``Account.Clio_Id__c``, ``Case__r.Clio_Id__c``,
    ``What:Case.Clio_Id__c``) both as the parent's Id and as the path read back; the user map's users.

    ``scale`` > 1: the org also holds the rest of the firm (as after a full load, when a firm is sampled
    again): per sample record of an sobject ``scale - 1`` more, made when a query reads the whole
    sobject (no ``IN`` list in its WHERE: those ask only about the sample's ids), holding nothing.
    Field types are the describe's ``string`` (each value compared as text)."""

    def __init__(self, root: Path, scale: int = 1):
        from clio2sf import staging
        from clio2sf.verify.reconciliation import transformed_files

        self.records: dict[str, list[dict[str, Any]]] = {}
        self.reference_to: dict[tuple[str, str], set[str]] = {}
        self.scale = max(1, scale)
        by_ext: dict[str, tuple[str, str]] = {}
        n = 0
        for sobject, _, path in transformed_files(root / "sample"):
            for env in staging.read_jsonl_gz(path):
                n += 1
                rec = {"Id": f"{sobject[:3].upper()}{n:012d}AAA", **env["row"]}
                self.records.setdefault(sobject, []).append(rec)
                if rec.get("Clio_Id__c"):
                    by_ext.setdefault(str(rec["Clio_Id__c"]), (sobject, rec["Id"]))
        for sobject, recs in self.records.items():
            for rec in recs:
                for col in [c for c in rec if "." in c]:
                    rel = col.split(".", 1)[0].split(":")[-1]
                    id_field = rel[:-3] + "__c" if rel.endswith("__r") else rel + "Id"
                    hit = by_ext.get(str(rec[col]))
                    if hit:
                        rec[id_field] = hit[1]
                        self.reference_to.setdefault((sobject, id_field), set()).add(hit[0])
        users = staging.read_json(root / "users" / "user_map.json") or {}
        self.records["User"] = [{"Id": u} for u in sorted({*users.get("users", {}).values(),
                                                         users.get("fallback_owner")} - {None})]
        self.queries = 0

    def describe(self, sobject: str) -> dict[str, Any]:
        names = {k for r in self.records.get(sobject, ()) for k in r if "." not in k} | {"Id", "Clio_Id__c"}
        return {"fields": [{"name": n, "type": "reference" if (sobject, n) in self.reference_to else "string",
                            "referenceTo": sorted(self.reference_to.get((sobject, n), ())), "createable": n != "Id",
                            "length": 255, "externalId": n == "Clio_Id__c"} for n in sorted(names)]}

    def query_all_iter(self, soql: str) -> Iterator[dict[str, Any]]:
        from sandbox.salesforce.soql import evaluate, parse

        self.queries += 1
        q = parse(soql)
        recs = self.records.get(q.sobject, ())
        for rec in recs:
            if q.where is None or evaluate(q.where, lambda p, r=rec: (r.get(p), "string")):
                yield {"attributes": {"type": q.sobject}, **{f: rec.get(f) for f in q.fields}}
        if self.scale == 1 or q.sobject == "User" or " IN (" in soql.upper().split(" WHERE ", 1)[-1]:
            return
        for copy in range(1, self.scale):
            for i, rec in enumerate(recs):
                other = {f: rec.get(f) for f in q.fields}
                other["Id"] = f"{rec['Id'][:3]}{copy:06d}{i:06d}BBB"
                for f in q.fields:  # the copy's own Clio ids and parents (another record of the firm)
                    v = other.get(f)
                    if (f == "Clio_Id__c" or "." in f) and isinstance(v, str):
                        other[f] = _other_record(v, copy)
                    elif f.endswith("Id") and f not in ("Id", "OwnerId", "MemberId", "RelationId") and v:
                        other[f] = f"{str(v)[:3]}{copy:06d}{0:06d}BBB"
                getter = lambda p, r=other: (r.get(p), "string")  # noqa: E731
                if q.where is None or evaluate(q.where, getter):
                    yield {"attributes": {"type": q.sobject}, **other}


def diff_worker(root_url: str, scale: int) -> None:
    """``diff_sample``'s work (:func:`clio2sf.verify.sample_diff`) in this (fresh) process against a
    :class:`SampleOrg`; one JSON line."""
    from airflow.sdk import ObjectStoragePath

    from benchmarks.memory_worker import peak_rss_kb
    from clio2sf import staging
    from clio2sf.mapping.spec import load_spec
    from clio2sf.verify import sample_diff

    root = ObjectStoragePath(root_url)
    spec = load_spec(FIRM)
    org = SampleOrg(staging.as_local(root), scale)
    org_mb = round(peak_rss_kb() / 1024, 1)
    reads: dict[str, int] = {}
    real = staging.read_jsonl_gz

    def counting(path: Any, *args: Any, **kw: Any) -> Any:
        where = str(path).split(f"/{MIGRATION}/", 1)[-1].split("/", 1)[0]
        reads[where] = reads.get(where, 0) + 1
        return real(path, *args, **kw)

    staging.read_jsonl_gz = counting  # type: ignore[assignment]
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = sample_diff(org, root, spec, sample_dir="sample", run_id="bench")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1),
                      "cpu_s": round(usage.ru_utime - usage0.ru_utime + usage.ru_stime - usage0.ru_stime, 1),
                      "peak_rss_mb": round(peak_rss_kb() / 1024, 1), "rss_with_org_mb": org_mb,
                      "org_records": sum(len(v) for v in org.records.values()) * org.scale,
                      "queries": org.queries, "files_read": reads,
                      **{k: out[k] for k in ("records", "fields_compared", "matches", "mismatches", "explained",
                                             "missing")},
                      "source_to_target_fields": (out.get("source_to_target") or {}).get("fields_compared")}))


# ------------------------------------------------------------------------------------------ runner


def run(work: Path, sizes: list[int], diff: bool = True) -> tuple[list[Figure], list[dict[str, Any]]]:
    """Per size: stage, ``select_sample`` (a fresh process), then (``diff``) the sample transformed
    (:func:`prepare_diff`, here) and ``diff_sample`` (a fresh process each) against an org holding the
    sample (as in the DAG, where the sample is loaded before the full load) and against an org holding
    the firm (the sample's rows × staged records ÷ sample records: a firm sampled again after its full load)."""
    runs = []
    for size in sizes:
        root = work / f"n{size}" / FIRM / MIGRATION
        t0 = time.perf_counter()
        n = stage(root, size)
        staged_s = time.perf_counter() - t0
        r = _run_worker(root)
        r.update(size=size, records=sum(n.values()), staged_s=round(staged_s, 1))
        if diff:
            r["sample_rows"] = prepare_diff(root)
            r["diff"] = _run_worker(root, diff_scale=1)
            r["diff_org_firm"] = _run_worker(root, diff_scale=max(2, round(r["records"] / r["sample"])))
        print(json.dumps(r), file=sys.stderr)
        runs.append(r)
    return figures(runs, _run_worker(work, idle=True)["peak_rss_mb"]), runs


def figures(runs: list[dict[str, Any]], floor: float) -> list[Figure]:
    """The figures of the measured sizes (``runs``, smallest first) and the imports-only floor."""
    figs = []
    for r in runs:
        figs.append(Figure("sample_memory", "peak RSS of select_sample's work", f"{r['records']:,} staged records",
                           r["peak_rss_mb"], "MB", f"< {LIMIT_MB}", r["peak_rss_mb"] < LIMIT_MB,
                           detail={k: r[k] for k in ("cpu_s", "seconds", "sample", "max_reads_per_object", "reads")}))
        figs.append(Figure("sample_memory", "CPU of select_sample's work", f"{r['records']:,} staged records",
                           r["cpu_s"], "CPU-s"))
    if len(runs) >= 2:
        figs.append(growth_figure("sample_memory", "peak RSS growth of select_sample's work",
                                  (runs[0]["records"], runs[-1]["records"]),
                                  (runs[0]["peak_rss_mb"], runs[-1]["peak_rss_mb"]), "records", FLAT))
    for key, org in (("diff", "an org holding the sample"), ("diff_org_firm", "an org holding the firm")):
        measured = [r for r in runs if key in r]
        for r in measured:
            d = r[key]
            figs.append(Figure("sample_memory", f"peak RSS of diff_sample's work, {org}",
                               f"{r['records']:,} staged records", d["peak_rss_mb"], "MB", f"< {LIMIT_MB}",
                               d["peak_rss_mb"] < LIMIT_MB,
                               detail={k: d[k] for k in ("cpu_s", "seconds", "records", "fields_compared",
                                                         "mismatches", "queries", "org_records", "files_read",
                                                         "rss_with_org_mb")}))
            figs.append(Figure("sample_memory", f"CPU of diff_sample's work, {org}", f"{r['records']:,} staged records",
                               d["cpu_s"], "CPU-s"))
        if len(measured) >= 2:
            figs.append(growth_figure("sample_memory", f"peak RSS growth of diff_sample's work, {org}",
                                      (measured[0]["records"], measured[-1]["records"]),
                                      (measured[0][key]["peak_rss_mb"], measured[-1][key]["peak_rss_mb"]), "records",
                                      FLAT))
    figs.append(Figure("sample_memory", "peak RSS of the same process choosing nothing (imports only)", "-", floor, "MB"))
    return figs


NOTES = [
    "select_sample: what grows with the firm is the choice's compact columns (`clio2sf.sample._Table`: per "
    "staged record its Clio id, stratum code (a byte) and parent references, the matter read from them; about "
    "27 bytes, 34 before c6b9448, which kept each record's matter in a column of its own and the stratum in 4 "
    "bytes). The ratio is taken over the whole process, whose floor here (120 MB) is lower than a task's under "
    "Airflow's task runner (the sample's smallest tasks of the xl run: 146-148 MB).",
    "The sample is 500 records at both sizes: the sandbox firm's contact and matter custom fields chain about "
    "4,000 of its contacts and matters into one closure; before, any sample touching it held the whole chain "
    "(4,111 records here; 4,673 in a large-preset run through the DAGs on 2026-12-04 before this change), now that "
    "chain is left out (`clio2sf.sample._choose_within`).",
    "`reads`: calls of `clio2sf.extract.read_records` (one stream of one object's staged batches).",
    "diff_sample reads only the sample's staged files (the runs' `files_read`: `sample` only: its raw, "
    "transformed and rejects), nothing of the firm's `raw/`, the ledger or the look-ups; with the org holding "
    "only the sample (as in the DAG, where the sample is loaded before the full load) its peak follows the "
    "sample, not the firm (1,774 rows diffed at 100k, 578 at 1M: two different 500-record samples). The xl run's "
    "1,223.7 MB (fbf117a) was the old sample, thousands of records (51 Bulk ingest calls in its load_sample).",
    "diff_sample with the org holding the firm (a firm sampled again after its full load; the stand-in org makes "
    "the firm's other records as a query reads a whole sobject: 517k rows at 100k, 1.74M at 1M): flat since lane "
    "32c. Before, what grew was the verifier's Id index of the objects lookups point at (`readback.index_targets`: "
    "every Account, Contact and Case of the org with a Clio id, about 870k at 1M; on 06f5616: 176.9 and 358.7 MB, "
    "growth 2.028, 65 and 42 queries); now a sample's index holds the records its lookups and attendees are "
    "expected to point at (`readback.scope`, `compare.link_parents`: read by `Clio_Id__c IN (...)`, 81 and 46 "
    "queries), any other Id met read by Id, the same findings (the runs' mismatches and fields compared). What "
    "still follows the org is a hash (8 bytes) of each Clio id while counting its sobjects. Before ec56e48 it also "
    "held every team member and event relation of the org and split the sample's groups into parts by the org's "
    "sizes, each part reading the link tables again (100k: 180.5 MB, 100.8 CPU-s, 93 queries; ec56e48: 177.5 MB, "
    "10.8 CPU-s, 65 queries, the same report files).",
    "diff_sample's CPU includes the stand-in org's (SOQL evaluated in Python, the firm's records made as read).",
]


def write_results(figs: list[Figure], runs: list[dict[str, Any]], argv: list[str], note: str = "") -> None:
    from benchmarks.common import write_results_doc

    write_results_doc(RESULTS / "sample_memory.json", figs, argv, render, note=note, tail={"runs": runs})


def render(doc: dict[str, Any]) -> None:
    """``sample_memory.md`` from the recorded ``sample_memory.json``."""
    figures_page(RESULTS / "sample_memory.md", "Sample phase: select_sample's and diff_sample's memory and CPU as the "
                 "firm grows", doc, "benchmarks.bench_sample_memory",
                 ", on the sandbox's large firm (1 copy, then 10) staged under a file:// root (no Clio, no Salesforce).",
                 NOTES, [("reads per object (max)", lambda f: f["detail"].get("max_reads_per_object", ""))])


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[2] == "1")
        return
    if argv[:1] == ["--diff-worker"]:
        diff_worker(argv[1], int(argv[2]))
        return
    if argv[:1] == ["--render"]:
        render(json.loads((RESULTS / "sample_memory.json").read_text(encoding="utf-8")))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--note", default="", help="a sentence on the conditions, kept with the figures")
    ap.add_argument("--no-write", action="store_true", help="print the figures only")
    ap.add_argument("--no-diff", action="store_true", help="select_sample only (no diff_sample)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sample-memory-") as tmp:
        figs, runs = run(Path(tmp), ints(args.sizes), diff=not args.no_diff)
    for f in figs:
        print(json.dumps(f.as_dict()))
    if not args.no_write:
        write_results(figs, runs, shown_args(argv), args.note)


if __name__ == "__main__":
    main(sys.argv[1:])
