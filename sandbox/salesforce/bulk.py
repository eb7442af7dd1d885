"""Bulk API 2.0 ingest and query jobs, and the minimal Bulk v1 JSON flow Airflow's operator uses.

Ingest jobs are processed by one background thread: the csv module reads the uploaded file and
rows are written in chunks through :meth:`Org.write`, so Bulk shares REST's validation.
"""

from __future__ import annotations

import base64
import csv
import gc
import io
import json
import queue
import threading
import time
from array import array
from pathlib import Path
from typing import Any

from sandbox.salesforce.org import Org
from sandbox.salesforce.query import Runner
from sandbox.salesforce.soql import SoqlError
from sandbox.salesforce.values import FieldError, now_str, to_csv_value

DELIMS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
OPERATIONS = {"insert", "update", "upsert", "delete", "hardDelete"}
CHUNK = 5000
API = "59.0"
QUERY_PAGE = 50_000  # records per set of query results when the client sets no maxRecords
BATCH_ROWS = 10_000  # each 10,000 rows of a Bulk 2.0 ingest job count as one of the daily batches
QUOTA_MESSAGE = "ExceededQuota : The number of batches has exceeded the limit for the past 24 hours (DailyBulkApiBatches)"
HARD_DELETE_MESSAGE = "hardDelete operation requires special user profile permission, please contact your system administrator"


BAD_SHAPE = {"statusCode": "INVALID_FIELD", "message": "Incorrect number of columns", "fields": []}


def sf_error(err: dict) -> str:
    fields = ",".join(err.get("fields") or [])
    return f"{err['statusCode']}:{err['message']}:{fields + ' ' if fields else ''}--"


class BulkJobs:
    """Job registry, persistence and the ingest worker."""

    def __init__(self, org: Org):
        self.org = org
        self.dir = org.dir / "jobs"
        self.dir.mkdir(exist_ok=True)
        self.jobs: dict[str, dict] = {}
        for kind in ("ingest", "query", "v1"):
            for j in org.store.list_jobs(kind):
                self.jobs[j["id"]] = j
        self.q: queue.Queue[str] = queue.Queue()
        #: Called with (job, exception) when processing a job raised: a sandbox bug, logged as a 500.
        self.on_internal_error: Any = lambda job, e: None
        self.worker = threading.Thread(target=self._work, name="bulk-worker", daemon=True)
        self.worker.start()
        for j in self.jobs.values():
            if j.get("jobType") in ("V2Ingest", "V2Query") and j["state"] in ("UploadComplete", "InProgress"):
                self.q.put(j["id"])

    def save(self, job: dict) -> None:
        job["systemModstamp"] = now_str()
        kind = {"V2Ingest": "ingest", "V2Query": "query"}.get(job.get("jobType", ""), "v1")
        with self.org.lock:
            self.org.store.save_job(job["id"], kind, job)

    def path(self, job_id: str, name: str) -> Path:
        d = self.dir / job_id
        d.mkdir(exist_ok=True)
        return d / name

    # -- ingest --------------------------------------------------------------------------------
    def create_ingest(self, body: dict, user_id: str) -> dict:
        op = body.get("operation")
        if op not in OPERATIONS:
            raise FieldError("INVALIDJOB", f"InvalidJob : Invalid operation: {op}")
        obj = self.org.visible(str(body.get("object") or ""), user_id)
        if obj is None:
            raise FieldError("INVALIDJOB", f"InvalidJob : Unable to find object: {body.get('object')}")
        if op == "hardDelete" and not self.org.access(user_id).hard_delete:
            raise FieldError("FEATURENOTENABLED", HARD_DELETE_MESSAGE)
        if self.org.bulk_batches_used >= self.org.settings.bulk_daily_batches:
            raise FieldError("LIMIT_EXCEEDED", QUOTA_MESSAGE)
        if op == "upsert" and not body.get("externalIdFieldName"):
            raise FieldError("INVALIDJOB", "InvalidJob : External ID was blank for upsert")
        if body.get("contentType", "CSV") != "CSV":
            raise FieldError("INVALIDJOB", "InvalidJob : contentType must be CSV")
        if body.get("lineEnding", "LF") not in ("LF", "CRLF") or body.get("columnDelimiter", "COMMA") not in DELIMS:
            raise FieldError("INVALIDJOB", "InvalidJob : invalid lineEnding or columnDelimiter")
        jid = self.org.new_id("750")
        now = now_str()
        job = {"id": jid, "operation": op, "object": obj.name, "createdById": user_id, "createdDate": now,
               "systemModstamp": now, "state": "Open", "concurrencyMode": "Parallel", "contentType": "CSV",
               "apiVersion": float(API), "contentUrl": f"services/data/v{API}/jobs/ingest/{jid}/batches",
               "lineEnding": body.get("lineEnding", "LF"), "columnDelimiter": body.get("columnDelimiter", "COMMA"),
               "jobType": "V2Ingest", "numberRecordsProcessed": 0, "numberRecordsFailed": 0, "retries": 0,
               "totalProcessingTime": 0, "apiActiveProcessingTime": 0, "apexProcessingTime": 0}
        if op == "upsert":
            job["externalIdFieldName"] = body["externalIdFieldName"]
        self.jobs[jid] = job
        self.save(job)
        return job

    def upload(self, job: dict, data: bytes) -> None:
        if job["state"] != "Open":
            raise FieldError("INVALIDJOBSTATE", "Job is not in Open state")
        if job.get("_uploaded"):
            raise FieldError("BULK_API_ERROR", f"Found multiple contents for job: <{job['id']}>, please 'Close' / "
                             "'Abort' / 'Delete' the current Job then create a new Job and make sure you only do "
                             "'PUT' once on a given Job.")
        limit = self.org.settings.bulk_max_upload_mb * 1024 * 1024
        p = self.path(job["id"], "data.csv")
        if (p.stat().st_size if p.exists() else 0) + len(data) > limit:
            raise FieldError("INVALIDBATCH", f"InvalidBatch : Upload size exceeds {self.org.settings.bulk_max_upload_mb} MB")
        with p.open("ab") as fh:
            fh.write(data)
        job["_uploaded"] = True
        self.save(job)

    def set_state(self, job: dict, state: str) -> dict:
        if state == "UploadComplete":
            if job["state"] != "Open":
                raise FieldError("INVALIDJOBSTATE", f"Job is in {job['state']} state")
            job["state"] = "UploadComplete"
            job.pop("contentUrl", None)
            self.save(job)
            self.q.put(job["id"])
        elif state == "Aborted":
            if job["state"] in ("JobComplete", "Failed", "Aborted"):
                raise FieldError("INVALIDJOBSTATE", f"Job is in {job['state']} state")
            job["state"] = "Aborted"
            job.pop("contentUrl", None)
            self.save(job)
        else:
            raise FieldError("INVALIDJOBSTATE", f"Invalid state: {state}")
        return job

    def _work(self) -> None:
        while True:
            jid = self.q.get()
            job = self.jobs.get(jid)
            if job is None or job["state"] not in ("UploadComplete", "InProgress"):
                continue
            try:
                if job["jobType"] == "V2Query":
                    self._run_query(job)
                else:
                    self._process(job)
            except Exception as e:  # noqa: BLE001 - a job failure must not kill the worker
                job["state"] = "Failed"
                job["errorMessage"] = f"InternalServerError : {type(e).__name__}: {e}"
                self.save(job)
                self.on_internal_error(job, e)

    def _fail(self, job: dict, message: str, header: list[str] | None, rows: list[list[str]]) -> None:
        job["state"] = "Failed"
        job["errorMessage"] = message
        if header is not None:
            self._write_csv(self.path(job["id"], "unprocessed.csv"), [], header, rows)
        self.save(job)

    def _process(self, job: dict) -> None:
        # A job allocates ~10 containers per row and frees them all at the end; the cyclic collector
        # would rescan that growing heap over and over (a quarter of the time) for nothing.
        paused = gc.isenabled()
        gc.disable()
        try:
            self._process_rows(job)
        finally:
            if paused:
                gc.enable()

    def _process_rows(self, job: dict) -> None:
        started = time.monotonic()
        org = self.org
        raw = self.path(job["id"], "data.csv").read_bytes() if self.path(job["id"], "data.csv").exists() else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self._fail(job, f"ClientInputError : The CSV data is not valid UTF-8 (byte {e.start})", None, [])
            return
        delim = DELIMS[job["columnDelimiter"]]
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
        header = next(reader, None)
        rows = list(reader)
        if org.settings.fail_bulk_jobs > 0:
            org.settings.fail_bulk_jobs -= 1
            org.count_fault("bulk_job_failed")
            self._fail(job, "InternalServerError : The job failed (sandbox fault injection)", header or [], rows)
            return
        if header is None:
            self._fail(job, "InvalidBatch : No data found", None, [])
            return
        crlf = "\r\n" in text
        if (job["lineEnding"] == "LF" and crlf) or (job["lineEnding"] == "CRLF" and "\n" in text and not crlf):
            self._fail(job, "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is "
                       + job["lineEnding"], header, rows)
            return
        obj = org.schema.get(job["object"])
        acc = org.access(job["createdById"])
        seen: set[str] = set()
        for col in header:
            if col.lower() in seen:
                self._fail(job, f"InvalidBatch : Duplicate field name found in header: {col}", header, rows)
                return
            seen.add(col.lower())
            if col.lower() == "id":
                continue
            if "." in col:
                typ, _, path = col.rpartition(":")
                f = obj.rel_field(path.partition(".")[0])
                if f is not None and acc is not None and not acc.readable(obj, f):
                    f = None  # hidden by field-level security: as if it did not exist
                if f is None:
                    self._fail(job, f"InvalidBatch : Field name not found : {col}", header, rows)
                    return
                if typ and len(f["referenceTo"]) == 1:
                    self._fail(job, f"InvalidBatch : type is not needed for non polymorphic foreign key ref {col}",
                               header, rows)
                    return
            elif obj.field(col) is None or (acc is not None and not acc.readable(obj, obj.field(col))):
                self._fail(job, f"InvalidBatch : Field name not found : {col}", header, rows)
                return
        if job["operation"] in ("delete", "hardDelete") and [c.lower() for c in header] != ["id"]:
            self._fail(job, "InvalidBatch : Only the Id column is allowed for delete", header, rows)
            return
        ext = job.get("externalIdFieldName")
        ext_f = obj.field(ext) if ext else None
        if ext and (ext_f is None or (acc is not None and not acc.readable(obj, ext_f))
                    or not (ext_f["externalId"] or ext_f["idLookup"])):
            self._fail(job, f"InvalidBatch : Field name provided, {ext} does not match an External ID, Salesforce Id, "
                       f"or indexed field for {obj.name}", header, rows)
            return
        with org.lock:
            if org.bulk_batches_used >= org.settings.bulk_daily_batches:
                self._fail(job, QUOTA_MESSAGE, header, rows)
                return
            org.bulk_batches_used += max(1, -(-len(rows) // BATCH_ROWS))
        duplicates = self._repeated_ext(header, rows, ext_f) if job["operation"] == "upsert" else set()
        job["state"] = "InProgress"
        self.save(job)
        ok_rows: list[list[str]] = []
        bad_rows: list[list[str]] = []
        n = len(header)
        plain = len(set(header)) == n  # rows go to the org as lists unless a column name repeats
        id_col = header.index("Id") if "Id" in header else None
        for start in range(0, len(rows), CHUNK):
            if self.jobs[job["id"]]["state"] == "Aborted":
                self._write_csv(self.path(job["id"], "unprocessed.csv"), [], header, rows[start:])
                break
            chunk = rows[start:start + CHUNK]
            good = [r for r in chunk if len(r) == n]  # a row with the wrong column count is never written
            user = job["createdById"]
            if job["operation"] in ("delete", "hardDelete"):
                results = org.delete([r[0] for r in good], user_id=user, hard=job["operation"] == "hardDelete",
                                     sobject=obj.name)
            else:
                try:
                    batch = good if plain else [dict(zip(header, r, strict=True)) for r in good]
                    results = org.write(obj.name, job["operation"], batch, user_id=user, from_csv=True,
                                        ext_field=job.get("externalIdFieldName"), header=header if plain else None,
                                        duplicates=duplicates)
                except FieldError as e:
                    self._fail(job, f"InvalidBatch : {e.message}", header, rows)
                    return
            it = iter(results)
            for r in chunk:
                if len(r) != n:
                    bad_rows.append(["", sf_error(BAD_SHAPE), *r])
                    continue
                res = next(it)
                if res["success"]:
                    ok_rows.append([res["id"], "true" if res.get("created") else "false", *r])
                else:
                    rid = res.get("id") or (r[id_col] if id_col is not None and job["operation"] != "insert" else "")
                    bad_rows.append([rid or "", sf_error(res["errors"][0]), *r])
            job["numberRecordsProcessed"] = len(ok_rows) + len(bad_rows)
            job["numberRecordsFailed"] = len(bad_rows)
            self.save(job)
        self._write_csv(self.path(job["id"], "success.csv"), ["sf__Id", "sf__Created"], header, ok_rows)
        self._write_csv(self.path(job["id"], "failed.csv"), ["sf__Id", "sf__Error"], header, bad_rows)
        if job["state"] != "Aborted":
            job["state"] = "JobComplete"
        ms = int((time.monotonic() - started) * 1000)
        job.update(totalProcessingTime=ms, apiActiveProcessingTime=ms)
        org.persist_counters()
        self.save(job)

    def _repeated_ext(self, header: list[str], rows: list[list[str]], ext_f: dict | None) -> set[str]:
        """External-id keys that occur more than once in the whole job (a real org fails every occurrence)."""
        if ext_f is None or ext_f["type"] == "id":
            return set()
        col = next((i for i, c in enumerate(header) if c.lower() == ext_f["name"].lower()), None)
        if col is None:
            return set()
        seen: set[str] = set()
        repeated: set[str] = set()
        n = len(header)
        for r in rows:
            if len(r) == n and r[col] and r[col] != "#N/A":
                kv = self.org.key_value(ext_f, r[col])
                (repeated if kv in seen else seen).add(kv)
        return repeated

    @staticmethod
    def _write_csv(p: Path, sf_cols: list[str], header: list[str], rows: list[list[str]]) -> None:
        """A result file as Salesforce writes it: every value quoted, quotes doubled, LF line ends."""
        out = [",".join([f'"{c}"' for c in sf_cols] + header) + "\n"]
        slow = csv.writer(buf := io.StringIO(), quoting=csv.QUOTE_ALL, lineterminator="\n")
        for r in rows:
            try:
                line = '","'.join(r)
            except TypeError:  # a non-string value: let the csv module write it
                line = None
            if line is not None and line.count('"') == 2 * len(r) - 2:  # no value holds a quote
                out.append('"' + line + '"\n' if r else "\n")
            else:
                buf.seek(0)
                buf.truncate()
                slow.writerow(r)
                out.append(buf.getvalue())
        p.write_text("".join(out), encoding="utf-8")

    def result_file(self, job: dict, kind: str) -> str:
        name = {"successfulresults": "success.csv", "failedresults": "failed.csv",
                "unprocessedrecords": "unprocessed.csv"}[kind.lower()]
        p = self.path(job["id"], name)
        if p.exists():
            return p.read_text(encoding="utf-8")
        if name == "unprocessed.csv" and job["state"] in ("Open", "UploadComplete", "Aborted"):
            data = self.path(job["id"], "data.csv")
            return data.read_text(encoding="utf-8") if data.exists() else ""
        return ""

    # -- query ---------------------------------------------------------------------------------
    # Bulk API 2.0 query jobs as Salesforce documents them ("Bulk API 2.0 Query", API 47.0+): the SOQL
    # travels in the JSON body (so only the SOQL length limit binds it, not a GET's URI), the job is
    # UploadComplete when created, InProgress while it runs, JobComplete (or Failed, or Aborted by the
    # client) at its end; results are CSV pages with every value quoted, null as an empty value, the
    # columns named as the query names them and in its order (API 50.0+), each page answering
    # ``Sforce-NumberOfRecords`` and ``Sforce-Locator`` (an opaque string, ``null`` after the last).

    def create_query(self, body: dict, user_id: str) -> dict:
        op = body.get("operation")
        if op not in ("query", "queryAll"):
            raise FieldError("INVALIDJOB", f"InvalidJob : Invalid operation: {op}")
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise FieldError("INVALIDJOB", "InvalidJob : The query is required")
        if body.get("contentType", "CSV") != "CSV":
            raise FieldError("INVALIDJOB", "InvalidJob : contentType must be CSV")
        if body.get("lineEnding", "LF") not in ("LF", "CRLF") or body.get("columnDelimiter", "COMMA") not in DELIMS:
            raise FieldError("INVALIDJOB", "InvalidJob : invalid lineEnding or columnDelimiter")
        runner = Runner(self.org, soql, include_deleted=op == "queryAll", user_id=user_id)
        if runner.q.count is not None or runner.q.offset:
            raise SoqlError("FeatureNotEnabled", "Aggregate queries and OFFSET are not supported by Bulk API 2.0")
        jid = self.org.new_id("750")
        now = now_str()
        job = {"id": jid, "operation": op, "object": runner.obj.name, "createdById": user_id, "createdDate": now,
               "systemModstamp": now, "state": "UploadComplete", "concurrencyMode": "Parallel", "contentType": "CSV",
               "apiVersion": float(API), "lineEnding": body.get("lineEnding", "LF"),
               "columnDelimiter": body.get("columnDelimiter", "COMMA"), "jobType": "V2Query",
               "numberRecordsProcessed": 0, "retries": 0, "totalProcessingTime": 0, "isPkChunkingSupported": True,
               "_query": soql}
        self.jobs[jid] = job
        self.save(job)
        self.q.put(jid)
        return job

    def set_query_state(self, job: dict, state: str) -> dict:
        """A query job can only be aborted (it starts as UploadComplete: there is nothing to upload)."""
        if state != "Aborted":
            raise FieldError("INVALIDJOBSTATE", f"Invalid state for a query job: {state}")
        if job["state"] in ("JobComplete", "Failed", "Aborted"):
            raise FieldError("INVALIDJOBSTATE", f"Job is in {job['state']} state")
        job["state"] = "Aborted"
        self.save(job)
        return job

    def _run_query(self, job: dict) -> None:
        started = time.monotonic()
        job["state"] = "InProgress"
        self.save(job)
        runner = Runner(self.org, job["_query"], include_deleted=job["operation"] == "queryAll",
                        user_id=job["createdById"])
        cols = runner.q.fields
        # The results as JSON lines (the header first) and each row's byte offset: a page reads only its
        # own rows (parsing a whole 2M-row result for each page made reading it quadratic).
        rows_path, index_path = self.path(job["id"], "rows.jsonl.part"), self.path(job["id"], "rows.idx.part")
        offsets = array("Q")
        with rows_path.open("wb") as fh:
            fh.write(json.dumps(cols).encode() + b"\n")
            for r in runner.rows():
                line = []
                for c in cols:
                    v, typ = runner.get(r, c)
                    if typ == "datetime" and isinstance(v, str) and v.endswith("+0000"):
                        v = v[:-5] + "Z"  # Bulk query CSV writes date-times in UTC with a Z (REST: +0000)
                    line.append(to_csv_value(v))
                offsets.append(fh.tell())
                fh.write(json.dumps(line).encode() + b"\n")
            offsets.append(fh.tell())
        if self.jobs.get(job["id"], job)["state"] == "Aborted":
            return
        index_path.write_bytes(offsets.tobytes())
        index_path.replace(self.path(job["id"], "rows.idx"))
        rows_path.replace(self.path(job["id"], "rows.jsonl"))
        job["numberRecordsProcessed"] = len(offsets) - 1
        job["totalProcessingTime"] = int((time.monotonic() - started) * 1000)
        job["state"] = "JobComplete"
        self.save(job)

    @staticmethod
    def locator(offset: int) -> str:
        """An opaque locator (Salesforce's look like ``MTAwMDA``: base64 of the next set's offset)."""
        return base64.b64encode(str(offset).encode()).decode().rstrip("=")

    @staticmethod
    def _offset(locator: str) -> int | None:
        try:
            text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() and BulkJobs.locator(int(text)) == locator else None

    def query_page(self, job: dict, locator: str | None, max_records: int | None) -> tuple[str, int, str]:
        """One set of results: (CSV, records in it, the next set's locator or ``null``).  An unknown
        locator raises ``FieldError``; the same locator always answers the same set."""
        total = self.path(job["id"], "rows.idx").stat().st_size // 8 - 1
        start = 0 if locator is None else self._offset(locator)
        if start is None or start > total or (start and start == total):
            raise FieldError("INVALIDLOCATOR", f"Invalid locator: {locator}")
        size = max_records or QUERY_PAGE
        header, part = self._rows(job["id"], start, min(start + size, total))
        nxt = start + size
        buf = io.StringIO()
        w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n" if job["lineEnding"] == "CRLF" else "\n",
                       delimiter=DELIMS[job["columnDelimiter"]])
        w.writerow(header)
        w.writerows(part)
        return buf.getvalue(), len(part), (self.locator(nxt) if nxt < total else "null")

    def _rows(self, job_id: str, start: int, stop: int) -> tuple[list[str], list[list[str]]]:
        """The header and the rows ``start:stop`` of a finished query job, read from their offsets."""
        with self.path(job_id, "rows.idx").open("rb") as ix:
            ix.seek(start * 8)
            first = array("Q", ix.read(8))[0]
            ix.seek(stop * 8)
            end = array("Q", ix.read(8))[0]
        with self.path(job_id, "rows.jsonl").open("rb") as fh:
            header = json.loads(fh.readline())
            fh.seek(first)
            data = fh.read(end - first)
        return header, [json.loads(line) for line in data.splitlines()]

    @staticmethod
    def public(job: dict) -> dict:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    # -- Bulk v1 (JSON) ------------------------------------------------------------------------
    def v1_create(self, body: dict, user_id: str) -> dict:
        op = {"hard_delete": "hardDelete"}.get(body.get("operation"), body.get("operation"))
        obj = self.org.visible(str(body.get("object") or ""), user_id)
        if op not in OPERATIONS or obj is None:
            raise FieldError("InvalidJob", f"Invalid job: {body.get('operation')} {body.get('object')}")
        if op == "hardDelete" and not self.org.access(user_id).hard_delete:
            raise FieldError("FeatureNotEnabled", HARD_DELETE_MESSAGE)
        mode = body.get("concurrencyMode", "Parallel")
        mode = {0: "Parallel", 1: "Serial"}.get(mode, mode)
        jid = self.org.new_id("750")
        job = {"id": jid, "operation": op, "object": obj.name, "createdById": user_id, "createdDate": now_str(),
               "systemModstamp": now_str(), "state": "Open", "externalIdFieldName": body.get("externalIdFieldName"),
               "concurrencyMode": mode, "contentType": body.get("contentType", "JSON"), "numberBatchesQueued": 0,
               "numberBatchesInProgress": 0, "numberBatchesCompleted": 0, "numberBatchesFailed": 0,
               "numberBatchesTotal": 0, "numberRecordsProcessed": 0, "numberRetries": 0, "apiVersion": float(API),
               "numberRecordsFailed": 0, "totalProcessingTime": 0, "apiActiveProcessingTime": 0,
               "apexProcessingTime": 0, "_batches": []}
        self.jobs[jid] = job
        self.save(job)
        return job

    def v1_batch(self, job: dict, records: list[dict]) -> dict:
        if job["state"] != "Open":
            raise FieldError("InvalidJobState", "Job is not open")
        if any(not isinstance(r, dict) for r in records):
            raise FieldError("InvalidBatch", "Every record of a JSON batch must be an object")
        with self.org.lock:
            if self.org.bulk_batches_used >= self.org.settings.bulk_daily_batches:
                raise FieldError("ExceededQuota", QUOTA_MESSAGE.split(" : ", 1)[1])
            self.org.bulk_batches_used += 1
        bid = self.org.new_id("751")
        user = job["createdById"]
        if job["operation"] in ("delete", "hardDelete"):
            results = self.org.delete([r.get("Id") or r.get("id") for r in records], user_id=user,
                                      hard=job["operation"] == "hardDelete", sobject=job["object"])
        else:
            results = self.org.write(job["object"], job["operation"], records, user_id=user,
                                     ext_field=job.get("externalIdFieldName"))
        out = []
        for r in results:
            out.append({"success": r["success"], "created": bool(r.get("created")), "id": r.get("id"),
                        "errors": r["errors"]})
        failed = sum(1 for r in out if not r["success"])
        batch = {"id": bid, "jobId": job["id"], "state": "Completed", "stateMessage": None,
                 "createdDate": now_str(), "systemModstamp": now_str(), "numberRecordsProcessed": len(out),
                 "numberRecordsFailed": failed, "totalProcessingTime": 0, "apiActiveProcessingTime": 0,
                 "apexProcessingTime": 0}
        self.path(job["id"], f"{bid}.json").write_text(json.dumps(out))
        job["_batches"].append(batch)
        job["numberBatchesCompleted"] += 1
        job["numberBatchesTotal"] += 1
        job["numberRecordsProcessed"] += len(out)
        job["numberRecordsFailed"] += failed
        self.save(job)
        return batch

    def v1_result(self, job: dict, bid: str) -> list[dict]:
        return json.loads(self.path(job["id"], f"{bid}.json").read_text())
