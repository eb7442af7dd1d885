"""Salesforce hook for the loader: describe cache, Bulk API 2.0 ingest and query jobs, sObject
collections, Tooling, ContentVersion uploads and SOQL, with typed errors and layered retries.

Bulk jobs go through the same :meth:`ClioSalesforceHook.request` as every other call (not
simple-salesforce's ``sf.bulk2``, which has its own session, retries and exceptions and holds each set
of query results as one string): one place for retries, re-login, typed errors and the call count.

Every request goes through :meth:`ClioSalesforceHook.request`, which adds the Bearer header,
re-logs in once on ``INVALID_SESSION_ID``, retries transient failures with jittered backoff,
reads ``Sforce-Limit-Info`` into ``conn.api_usage`` and turns error bodies into typed exceptions.
Exceptions carry error codes, never record bodies or tokens.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

import requests
import tenacity
from airflow.providers.salesforce.hooks.salesforce import SalesforceHook
from simple_salesforce import Salesforce

from clio2sf.access import AccessPlan, apply_permission_set
from clio2sf.load import (
    COMPOSITE_BODY_BUDGET,
    COMPOSITE_CHUNK,
    COMPOSITE_COLLECTIONS,
    TRANSIENT_CODES,
    BulkJobResult,
    QueryTooLarge,
    chunked,
)

if TYPE_CHECKING:
    from simple_salesforce.api import Salesforce as SalesforceClient

BULK_OPERATIONS = ("insert", "upsert", "update", "delete", "hardDelete")
TRANSIENT_STATUS = frozenset({502, 503, 504})
#: Answers after which a write may or may not have been committed (a gateway gave up waiting).
LOST_STATUS = frozenset({500, 502, 504})
TERMINAL_STATES = frozenset({"JobComplete", "Failed", "Aborted"})
#: Rows per set of Bulk query results: a look-up's results (an Id and a key or a few fields a row) come
#: in one GET up to this many rows; each set is streamed to a spooled temp file, never held as one string.
QUERY_MAX_RECORDS = 250_000


class SalesforceApiError(Exception):
    """A Salesforce REST error: HTTP status, ``errorCode``, message and fields (no record body)."""

    def __init__(
        self, status: int, error_code: str, message: str = "", fields: Sequence[str] = (), where: str = ""
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.message = message[:300]
        self.fields = tuple(fields)
        self.where = where
        super().__init__(f"{where}: HTTP {status} {error_code}: {self.message}".strip(": "))

    def as_result(self) -> dict[str, Any]:
        """The error as an sObject-collection item, for per-row handling."""
        return {
            "success": False,
            "errors": [{"statusCode": self.error_code, "message": self.message, "fields": list(self.fields)}],
        }


class SalesforceTransientError(SalesforceApiError):
    """Worth retrying: lock contention, 502/503/504, a dropped connection."""

    transient = True


class SalesforceResponseLost(SalesforceApiError):
    """A non-idempotent write (a POST that creates) whose answer never came: a dropped connection, a read
    timeout or a gateway's 502/504 after the request was sent.  Salesforce may have committed it, so it is
    never resent blindly; the loader looks for what it may have created first (``RESPONSE_LOST``)."""

    transient = True


class SalesforceSessionExpired(SalesforceApiError):
    """401 even after logging in again."""


class SalesforceApiLimitExceeded(SalesforceApiError):
    """403 ``REQUEST_LIMIT_EXCEEDED``: retrying makes it worse; ``used``/``total`` from the last response."""

    def __init__(self, *args: Any, used: int | None = None, total: int | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.used, self.total = used, total
        self.args = (f"{self.args[0]} (API usage {used}/{total})",)


class SalesforceStorageLimitExceeded(SalesforceApiError):
    """``STORAGE_LIMIT_EXCEEDED``: the org's data or file storage is full."""


class SalesforceBulkJobError(SalesforceApiError):
    """A Bulk 2.0 job that could not be created, uploaded or finished in time."""


class _MultipartBody:
    """A streamed ``multipart/form-data`` body with a known length (``entity_content`` + ``VersionData``)."""

    def __init__(
        self,
        fields: Mapping[str, Any],
        open_blob: Callable[[], IO[bytes]],
        size: int,
        filename: str,
        boundary: str,
    ) -> None:
        safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "")
        self.head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="entity_content"\r\n'
            f"Content-Type: application/json\r\n\r\n{json.dumps(dict(fields))}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="VersionData"; filename="{safe_name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.size = size
        self._open = open_blob
        self._parts: Iterator[bytes] | None = None
        self._buf = b""

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def _gen(self) -> Iterator[bytes]:
        yield self.head
        with self._open() as fh:
            sent = 0
            while block := fh.read(1 << 20):
                sent += len(block)
                yield block
        if sent != self.size:
            raise OSError(f"blob changed while uploading: {sent} bytes read, {self.size} expected")
        yield self.tail

    def __iter__(self) -> Iterator[bytes]:
        return self._gen()

    def read(self, n: int = -1) -> bytes:
        if self._parts is None:
            self._parts = self._gen()
        while n < 0 or len(self._buf) < n:
            nxt = next(self._parts, None)
            if nxt is None:
                break
            self._buf += nxt
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


#: Records a finished ingest job must have processed for its pace to size later jobs' first waits.
PACE_MIN_ROWS = 1_000


class ClioSalesforceHook(SalesforceHook):
    """The Salesforce side of the migration, on top of the provider's ``SalesforceHook``.

    :param salesforce_conn_id: Airflow connection of type ``salesforce``.
    :param describe_cache: optional folder (pathlib-like, e.g. ``discover/salesforce_describe``)
        holding ``<Object>.json`` describes; read before calling Salesforce and written after.
    :param bulk_pace: optional JSON file (pathlib-like, e.g. ``loads/<run id>/salesforce_bulk_pace.json``)
        of ``{object: seconds of processing a row}`` as finished Bulk ingest jobs reported it
        (``totalProcessingTime``): it sizes a job's first wait (:meth:`first_wait`); read once, written
        after each job (a hint shared by a run's tasks: a lost update costs status calls, nothing else).
    :param max_attempts: tries per HTTP request for transient failures.
    :param retry_wait_max: cap of the jittered exponential wait between tries, in seconds.
    :param poll_interval: least wait between Bulk job status polls (and the first one when no pace is
        known); grows by half each poll.
    :param max_poll_interval: cap of that wait.
    :param bulk_timeout: seconds before an unfinished Bulk job is aborted.
    :param duplicate_rule_allow_save: send ``Sforce-Duplicate-Rule-Header: allowSave=true`` on writes.
    """

    hook_name = "Salesforce (clio2sf)"

    def __init__(
        self,
        salesforce_conn_id: str = SalesforceHook.default_conn_name,
        *,
        describe_cache: Any = None,
        bulk_pace: Any = None,
        max_attempts: int = 5,
        retry_wait_max: float = 30.0,
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        bulk_timeout: float = 6 * 3600,
        request_timeout: float = 600.0,
        duplicate_rule_allow_save: bool = True,
        session_id: str | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(salesforce_conn_id=salesforce_conn_id, session_id=session_id, session=session)
        self.describe_cache = describe_cache
        self.bulk_pace = bulk_pace
        self._pace: dict[str, float] | None = None  # object -> seconds of processing a row
        self.max_attempts = max_attempts
        self.retry_wait_max = retry_wait_max
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.bulk_timeout = bulk_timeout
        self.request_timeout = request_timeout
        self.write_headers = (
            {"Sforce-Duplicate-Rule-Header": "allowSave=true"} if duplicate_rule_allow_save else {}
        )
        self._sleep = sleep
        self._describes: dict[str, dict] = {}
        self._global: dict | None = None
        self.api_calls = 0

    # ------------------------------------------------------------------ transport

    def _url(self, path: str) -> str:
        sf = self.get_conn()
        if path.startswith(("https://", "http://")):
            return path
        if path.startswith("/"):
            return f"https://{sf.sf_instance}{path}"
        return sf.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | Callable[[], Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send one REST call (path relative to ``/services/data/vXX.X/``, or absolute ``/services/...``).

        ``data`` may be a factory so that a retried upload gets a fresh stream.  ``idempotent``
        (default: every method but POST) says whether sending it twice is harmless; a
        non-idempotent request is resent only when Salesforce surely did not act on it (it answered
        503 or a transient error code, or the connection was never made), otherwise it raises
        :class:`SalesforceResponseLost`.
        """
        if idempotent is None:
            idempotent = method.upper() != "POST"
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(SalesforceTransientError),
            wait=tenacity.wait_exponential_jitter(initial=1, max=self.retry_wait_max),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda rs: self.log.warning(
                "Salesforce %s %s: %s; retry %d",
                method,
                path.split("?")[0],
                rs.outcome.exception(),
                rs.attempt_number,
            ),
        )
        return retrying(self._send, method, path, params, json_body, data, headers, stream, idempotent)

    def _send(
        self,
        method: str,
        path: str,
        params: Any,
        json_body: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        stream: bool,
        idempotent: bool = True,
    ) -> requests.Response:
        sf = self.get_conn()
        relogged = False
        where = f"{method} {path.split('?')[0]}"
        while True:
            hdrs = {**sf.headers, **(headers or {})}
            body = data() if callable(data) else data
            try:
                resp = sf.session.request(
                    method,
                    self._url(path),
                    params=params,
                    json=json_body,
                    data=body,
                    headers=hdrs,
                    stream=stream,
                    timeout=(30, self.request_timeout),
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not idempotent and not isinstance(exc, requests.ConnectTimeout):
                    raise SalesforceResponseLost(0, "RESPONSE_LOST", type(exc).__name__, where=where) from None
                raise SalesforceTransientError(
                    0, "CONNECTION_ERROR", type(exc).__name__, where=where
                ) from None
            self.api_calls += 1
            limit_info = resp.headers.get("Sforce-Limit-Info")
            if limit_info:
                sf.api_usage = Salesforce.parse_api_usage(limit_info)
            if resp.status_code < 300:
                return resp
            err = self._error(resp, where)
            if not idempotent and resp.status_code in LOST_STATUS:
                raise SalesforceResponseLost(resp.status_code, "RESPONSE_LOST", err.message, where=where)
            if (
                isinstance(err, SalesforceSessionExpired)
                and not relogged
                and getattr(sf, "_salesforce_login_partial", None) is not None
            ):
                self.log.info("Salesforce session expired; logging in again")
                sf._refresh_session()
                relogged = True
                continue
            raise err

    def _error(self, resp: requests.Response, where: str) -> SalesforceApiError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        first = (
            body[0]
            if isinstance(body, list) and body and isinstance(body[0], dict)
            else (body if isinstance(body, dict) else {})
        )
        code = str(first.get("errorCode") or first.get("error") or f"HTTP_{resp.status_code}")
        msg = str(first.get("message") or first.get("error_description") or resp.reason or "")
        fields = first.get("fields") or ()
        args = (resp.status_code, code, msg, fields)
        if code == "REQUEST_LIMIT_EXCEEDED":
            usage = self.api_usage
            return SalesforceApiLimitExceeded(
                *args, where=where, used=usage.get("used"), total=usage.get("total")
            )
        if code == "STORAGE_LIMIT_EXCEEDED":
            return SalesforceStorageLimitExceeded(*args, where=where)
        if resp.status_code == 401:
            return SalesforceSessionExpired(*args, where=where)
        if code in TRANSIENT_CODES or resp.status_code in TRANSIENT_STATUS:
            return SalesforceTransientError(*args, where=where)
        return SalesforceApiError(*args, where=where)

    @property
    def api_usage(self) -> dict[str, int]:
        """``{"used", "total"}`` from the last ``Sforce-Limit-Info`` header (empty before any call)."""
        usage = getattr(self.get_conn(), "api_usage", {}).get("api-usage")
        return {"used": usage.used, "total": usage.total} if usage else {}

    def limits(self) -> dict[str, Any]:
        """``GET /limits``: every org limit as ``{Max, Remaining}``."""
        return self.request("GET", "limits/").json()

    def current_user_id(self) -> str:
        """The connected user's Id, from ``/services/oauth2/userinfo`` (who the permission set is for)."""
        return str(self.request("GET", "/services/oauth2/userinfo").json()["user_id"])

    def test_connection(self) -> tuple[bool, str]:
        """Log in and read ``/limits``."""
        try:
            daily = self.limits().get("DailyApiRequests", {})
        except Exception as exc:  # the UI shows the message
            return False, str(exc)
        return (
            True,
            f"Connection successfully tested (daily API requests remaining: {daily.get('Remaining')})",
        )

    # ------------------------------------------------------------------ describe and query

    def describe(self, sobject: str, *, refresh: bool = False) -> dict[str, Any]:
        """Describe an object, cached per hook and (optionally) in the staging describe folder."""
        if not refresh and sobject in self._describes:
            return self._describes[sobject]
        cached = None if self.describe_cache is None else self.describe_cache / f"{sobject}.json"
        if not refresh and cached is not None and cached.exists():
            with cached.open("rb") as fh:
                self._describes[sobject] = json.loads(fh.read())
            return self._describes[sobject]
        desc = self.request("GET", f"sobjects/{sobject}/describe/").json()
        self._describes[sobject] = desc
        if cached is not None:
            from clio2sf.staging import write_json

            write_json(cached, desc)
        return desc

    def describe_object(self, obj: str) -> dict:
        """Provider API name for :meth:`describe`."""
        return self.describe(obj)

    def describe_global(self, *, refresh: bool = False) -> dict[str, Any]:
        """``GET /sobjects``: every object's name and capabilities."""
        if self._global is None or refresh:
            self._global = self.request("GET", "sobjects/").json()
        return self._global

    def query_all_iter(
        self, soql: str, *, include_deleted: bool = False, tooling: bool = False
    ) -> Iterator[dict]:
        """Yield every record of a SOQL query, following ``nextRecordsUrl`` pages."""
        endpoint = ("tooling/" if tooling else "") + ("queryAll/" if include_deleted else "query/")
        page = self.request("GET", endpoint, params={"q": soql}).json()
        while True:
            yield from page.get("records", [])
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            page = self.request("GET", page["nextRecordsUrl"]).json()

    def query_upto(self, soql: str, *, max_pages: int) -> list[dict] | None:
        """Every record of a SOQL query through REST when its pages (``totalSize`` over the first page's
        size) are at most ``max_pages``: as many GETs as pages.  More: None, after the one GET that said so
        (nothing else read)."""
        page = self.request("GET", "query/", params={"q": soql}).json()
        records = list(page.get("records") or ())
        if not page.get("done", True):
            total = int(page.get("totalSize") or 0)
            if not records or -(-total // len(records)) > max_pages:
                return None
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            page = self.request("GET", page["nextRecordsUrl"]).json()
            records += page.get("records") or ()
        return records

    def query_count(self, soql: str) -> int:
        """``SELECT COUNT() ...`` through REST: the number of records (one call, no records)."""
        return int(self.request("GET", "query/", params={"q": soql}).json()["totalSize"])

    def query_all(self, soql: str, **kw: Any) -> list[dict]:
        return list(self.query_all_iter(soql, **kw))

    def tooling_query(self, soql: str) -> list[dict]:
        return list(self.query_all_iter(soql, tooling=True))

    def reference_targets(self, sobject: str, columns: Iterable[str]) -> dict[str, str]:
        """Map relationship columns (``Cases.Clio_Id__c``, ``Case:What.Clio_Id__c``) to their parent object."""
        out: dict[str, str] = {}
        rels = None
        for col in columns:
            rel = col.split(".", 1)[0]
            if ":" in rel:
                out[col] = rel.split(":", 1)[0]
                continue
            if rels is None:
                rels = {
                    f.get("relationshipName"): f.get("referenceTo") or []
                    for f in self.describe(sobject)["fields"]
                    if f.get("relationshipName")
                }
            targets = rels.get(rel)
            if not targets:
                raise ValueError(f"{sobject}: column '{col}': no relationship named {rel}")
            if len(targets) > 1:
                raise ValueError(f"{sobject}: column '{col}' is polymorphic; write it as <Type>:{col}")
            out[col] = targets[0]
        return out

    # ------------------------------------------------------------------ Bulk API 2.0

    def bulk_ingest(
        self, sobject: str, operation: str, data: bytes, external_id_field: str | None = None, *,
        rows: int | None = None,
    ) -> BulkJobResult:
        """Run one Bulk 2.0 ingest job on LF-terminated CSV and fetch the result CSVs that hold rows.

        The finished job's counters decide which (Salesforce: ``numberRecordsProcessed`` includes the
        failed records; only a job that did not complete leaves records unprocessed):
        ``successfulResults`` unless every processed record failed, ``failedResults`` when
        ``numberRecordsFailed`` > 0, ``unprocessedrecords`` unless the job is ``JobComplete`` with all
        ``rows`` (the data rows uploaded, when the caller knows them) processed.  A job that is not
        ``JobComplete`` has all three fetched.  A file not fetched is returned as ``""``."""
        if operation not in BULK_OPERATIONS:
            raise ValueError(f"operation must be one of {BULK_OPERATIONS}, not {operation!r}")
        if operation == "upsert" and not external_id_field:
            raise ValueError(f"{sobject}: upsert needs external_id_field")
        job_req = {
            "object": sobject,
            "operation": operation,
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if external_id_field:
            job_req["externalIdFieldName"] = external_id_field
        # a second job after a lost answer stays empty and Open: harmless, so the POST may be resent
        job = self.request(
            "POST", "jobs/ingest/", json_body=job_req, headers=self.write_headers, idempotent=True
        ).json()
        job_id = job["id"]
        try:
            url = (
                "/" + job["contentUrl"].lstrip("/")
                if job.get("contentUrl")
                else f"jobs/ingest/{job_id}/batches"
            )
            put = self.request(
                "PUT", url, data=data, headers={"Content-Type": "text/csv", "Accept": "application/json"}
            )
            if put.status_code != 201:
                raise SalesforceBulkJobError(
                    put.status_code, "UPLOAD_NOT_ACCEPTED", "expected 201", where=url
                )
            self._upload_complete(job_id)
            # a status call made at once finds the job still running: one wait first saves that call, and
            # one as long as its rows take to process at the pace jobs reported saves the calls before
            first = self.first_wait(sobject, rows)
            info = self._wait_for_job(job_id, first_wait=first, rows=rows,
                                      queued_wait=first if first > self.poll_interval else 0.0)
        except BaseException:
            self._abort_quietly(job_id)
            raise
        self.log.info(
            "Bulk job %s %s %s: %s, %s processed, %s failed",
            job_id,
            operation,
            sobject,
            info["state"],
            info.get("numberRecordsProcessed"),
            info.get("numberRecordsFailed"),
        )
        processed = int(info.get("numberRecordsProcessed") or 0)
        failed = int(info.get("numberRecordsFailed") or 0)
        self._note_pace(sobject, info)
        # A finished job's counters say which result files are empty: only failed or aborted jobs leave
        # records unprocessed, and a job that failed none has no failed results.  Not asking for them
        # saves two calls a job (a row missing from every result would still come back UNPROCESSED).
        complete = info["state"] == "JobComplete"
        every_row = rows is None or processed >= rows
        return BulkJobResult(
            job_id=job_id,
            state=info["state"],
            records_processed=processed,
            records_failed=failed,
            error_message=info.get("errorMessage"),
            successful="" if complete and processed == failed else
            self._results_or_none(job_id, "successfulResults", info["state"]),
            failed="" if complete and not failed else self._results_or_none(job_id, "failedResults", info["state"]),
            unprocessed="" if complete and every_row else
            self._results_or_none(job_id, "unprocessedrecords", info["state"]),
        )

    def _paces(self) -> dict[str, float]:
        if self._pace is None:
            self._pace = {}
            if self.bulk_pace is not None:
                from clio2sf.staging import read_json

                try:
                    doc = read_json(self.bulk_pace) or {}
                except Exception:  # noqa: BLE001 - a hint: unreadable is unknown
                    doc = {}
                self._pace = {k: float(v) for k, v in doc.items() if isinstance(v, int | float) and v > 0}
        return self._pace

    def first_wait(self, sobject: str, rows: int | None) -> float:
        """The wait before a new ingest job's first status call: the time its ``rows`` take to process at
        the pace the last finished job of ``sobject`` reported (else the fastest pace of any object seen),
        within ``poll_interval``..``max_poll_interval``: a job cannot be done sooner than its own processing
        (``totalProcessingTime`` leaves out the time a job waits in Salesforce's queue), so the status
        calls before that only find it running.  No pace known (or ``rows``): ``poll_interval``."""
        paces = self._paces()
        pace = paces.get(sobject) or min(paces.values(), default=None)
        if not rows or not pace:
            return self.poll_interval
        return min(max(rows * pace, self.poll_interval), self.max_poll_interval)

    def _note_pace(self, sobject: str, info: Mapping[str, Any]) -> None:
        """Keep the processing seconds a row of a finished job (``totalProcessingTime`` ÷ records
        processed) for :meth:`first_wait`, in this hook and in ``bulk_pace``."""
        ms, done = info.get("totalProcessingTime"), int(info.get("numberRecordsProcessed") or 0)
        # a small job's time is mostly its fixed cost: its pace per row would overstate a large job's
        if info.get("state") != "JobComplete" or not isinstance(ms, int | float) or ms <= 0 or done < PACE_MIN_ROWS:
            return
        paces = self._paces()
        paces[sobject] = ms / 1000 / done
        if self.bulk_pace is not None:
            from clio2sf.staging import read_json, write_json

            try:  # the other tasks' paces written meanwhile are kept; a lost update is only a hint lost
                write_json(self.bulk_pace, {**(read_json(self.bulk_pace) or {}), sobject: paces[sobject]})
            except Exception as exc:  # noqa: BLE001 - a hint: the job's rows are written whatever
                self.log.warning("could not keep the Bulk pace of %s: %s", sobject, type(exc).__name__)

    def _upload_complete(self, job_id: str) -> None:
        """Close the job; if the answer was lost and a resent PATCH is refused, the job's own state decides."""
        try:
            self.request("PATCH", f"jobs/ingest/{job_id}/", json_body={"state": "UploadComplete"})
        except SalesforceApiError as exc:
            if isinstance(exc, SalesforceApiLimitExceeded | SalesforceSessionExpired):
                raise
            state = self.request("GET", f"jobs/ingest/{job_id}/").json().get("state")
            if state not in ("UploadComplete", "InProgress", "JobComplete", "Failed"):
                raise
            self.log.warning("Bulk job %s: closing it answered %s, but the job is %s; waiting for it",
                             job_id, exc.error_code, state)

    def _results_or_none(self, job_id: str, kind: str, state: str) -> IO[str] | None:
        try:
            return self.bulk_results(job_id, kind)
        except SalesforceApiError as exc:
            if state == "JobComplete" or isinstance(exc, SalesforceApiLimitExceeded):
                raise
            return None  # a failed or aborted job may have no results of this kind

    def _wait_for_job(self, job_id: str, kind: str = "ingest", first_wait: float = 0.0,
                      rows: int | None = None, queued_wait: float = 0.0) -> dict[str, Any]:
        """Poll a job's status until it ends (every poll is an API call).  The wait grows by half after
        each poll, up to ``max_poll_interval``; while an ingest job of ``rows`` rows is ``InProgress``
        with some of them processed (Salesforce counts them as its internal batches finish), the next
        wait is the time the rest should take at the rate seen (since the last poll that saw progress, else
        since the job was closed), within the same bounds, so a long job is not polled on a short clock.
        While the job is still ``UploadComplete`` (queued: Salesforce has not started it), the next wait
        is at least ``queued_wait`` (its processing time at the pace known, :meth:`first_wait`).
        ``bulk_timeout`` bounds the whole wait."""
        deadline = time.monotonic() + self.bulk_timeout
        # after a first wait longer than the least, the waits go on from half of it (growing by half)
        wait = max(self.poll_interval, min(first_wait / 2, self.max_poll_interval))
        waited = 0.0
        seen = (0.0, 0)  # (waited, processed) at the last poll that saw records processed
        if first_wait:
            self._sleep(first_wait)
            waited += first_wait
        while True:
            info = self.request("GET", f"jobs/{kind}/{job_id}/").json()
            if info["state"] in TERMINAL_STATES:
                return info
            if time.monotonic() > deadline:
                raise SalesforceBulkJobError(
                    0,
                    "JOB_TIMEOUT",
                    f"still {info['state']} after {self.bulk_timeout}s",
                    where=f"job {job_id}",
                )
            done = int(info.get("numberRecordsProcessed") or 0)
            if rows and 0 < done < rows and waited > 0 and info["state"] == "InProgress":
                since, before = seen if seen[1] < done else (0.0, 0)
                rest = (waited - since) * (rows - done) / (done - before)
                nap = min(max(rest, self.poll_interval), self.max_poll_interval)
                seen = (waited, done)
            else:
                nap, wait = wait, min(wait * 1.5, self.max_poll_interval)
                if info["state"] == "UploadComplete" and queued_wait > nap:  # not started: all of it to come
                    nap = min(queued_wait, self.max_poll_interval)
            self._sleep(nap)
            waited += nap

    def _abort_quietly(self, job_id: str, kind: str = "ingest") -> None:
        try:
            self.request("PATCH", f"jobs/{kind}/{job_id}/", json_body={"state": "Aborted"})
        except SalesforceApiError as exc:
            self.log.warning("could not abort Bulk job %s: %s", job_id, exc.error_code)

    def bulk_query(self, soql: str, *, include_deleted: bool = False, max_records: int = QUERY_MAX_RECORDS,
                   max_rows: int | None = None) -> Iterator[dict[str, str | None]]:
        """Run one Bulk API 2.0 query job and yield its rows as ``{column: value}``, the columns named as
        the query names them, an empty value as None (the CSV cannot tell null from empty text, and
        Salesforce stores no empty text).  Values are the CSV's text: typing them is the caller's job.

        The SOQL travels in the job's JSON body, so it is bound by Salesforce's SOQL length (100,000
        characters by default) rather than by a GET's URI: a look-up by thousands of keys is one job
        (create, status until ``JobComplete``, one GET per ``max_records`` rows of results) instead of
        a GET per few hundred keys.  Each set of results is streamed into a spooled temp file and read
        from there, so memory holds one row at a time.  ``max_rows``: a job that found more records raises
        ``clio2sf.load.QueryTooLarge`` before any is read."""
        job = self.request("POST", "jobs/query/", json_body={
            "operation": "queryAll" if include_deleted else "query", "query": soql,
            "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF",
        }, idempotent=True).json()  # a second job after a lost answer only reads: harmless
        job_id = job["id"]
        try:
            # a status call made at once finds a query job still running: one wait first saves that call
            info = self._wait_for_job(job_id, "query", first_wait=self.poll_interval)
        except BaseException:
            self._abort_quietly(job_id, "query")
            raise
        if info["state"] != "JobComplete":
            raise SalesforceBulkJobError(0, "QUERY_JOB_" + str(info["state"]).upper(),
                                         str(info.get("errorMessage") or "")[:300], where=f"query job {job_id}")
        found = int(info.get("numberRecordsProcessed") or 0)
        if max_rows is not None and found > max_rows:
            raise QueryTooLarge(found, max_rows)
        locator: str | None = None
        while True:
            params: dict[str, Any] = {"maxRecords": max_records}
            if locator:
                params["locator"] = locator
            resp = self.request("GET", f"jobs/query/{job_id}/results", params=params,
                                headers={"Accept": "text/csv"}, stream=True)
            locator = resp.headers.get("Sforce-Locator")
            with self._spooled(resp) as text:
                for row in csv.DictReader(text):
                    yield {k: (v if v != "" else None) for k, v in row.items()}
            if not locator or locator == "null":
                return

    @staticmethod
    def _spooled(resp: requests.Response) -> IO[str]:
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+b")
        with resp:
            for block in resp.iter_content(1 << 16):
                spool.write(block.replace(b"\x00", b""))
        spool.seek(0)
        return io.TextIOWrapper(spool, encoding="utf-8", newline="")

    def bulk_results(self, job_id: str, kind: str) -> IO[str]:
        """Stream one result CSV into a spooled temp file (memory up to 8 MB) and return it as text."""
        resp = self.request(
            "GET", f"jobs/ingest/{job_id}/{kind}/", headers={"Accept": "text/csv"}, stream=True
        )
        return self._spooled(resp)

    # ------------------------------------------------------------------ sObject collections

    def _collection(self, method: str, path: str, records: Sequence[dict]) -> list[dict]:
        """One call per 200 records.  A create whose answer was lost comes back as a ``RESPONSE_LOST``
        failure for each of its records (the loader looks for them before writing again)."""
        out: list[dict] = []
        for part in chunked(list(records), COMPOSITE_CHUNK):
            try:
                resp = self.request(
                    method,
                    path,
                    json_body={"allOrNone": False, "records": list(part)},
                    headers=self.write_headers,
                )
            except SalesforceResponseLost as exc:
                self.log.warning("%s %s: the answer was lost (%s); %d record(s) may exist", method,
                                 path, exc.message or exc.status, len(part))
                out += [exc.as_result() for _ in part]
                continue
            out += resp.json()
        return out

    def composite_collections(self, method: str, records: Sequence[dict]) -> list[dict]:
        """``method`` (``POST``: create, ``PATCH``: update, each record with ``id``) on ``records`` through
        sObject Collections subrequests of 200 records, up to :data:`~clio2sf.load.COMPOSITE_COLLECTIONS` of
        them in one ``POST /composite`` call (Salesforce counts the whole request as one API call) while its
        JSON stays within :data:`~clio2sf.load.COMPOSITE_BODY_BUDGET` bytes; a collection alone over that is
        sent as its own ``/composite/sobjects`` call.  Results in input order, as :meth:`composite_create`
        gives them: a subrequest Salesforce refused whole gives its error to each of its records, and a
        call whose answer was lost a ``RESPONSE_LOST`` failure to each record it carried."""
        parts = [list(p) for p in chunked(list(records), COMPOSITE_CHUNK)]
        sizes = [len(json.dumps(p)) + 100 for p in parts]
        url = urlparse(self.get_conn().base_url).path.rstrip("/") + "/composite/sobjects"
        out: list[dict] = []
        i = 0
        while i < len(parts):
            j, size = i + 1, sizes[i]
            while j < len(parts) and j - i < COMPOSITE_COLLECTIONS and size + sizes[j] <= COMPOSITE_BODY_BUDGET:
                size += sizes[j]
                j += 1
            if j - i == 1:
                out += self._collection(method, "composite/sobjects", parts[i])
                i = j
                continue
            body = {"allOrNone": False, "compositeRequest": [
                {"method": method, "url": url, "referenceId": f"part{k}",
                 "body": {"allOrNone": False, "records": parts[k]},
                 **({"httpHeaders": dict(self.write_headers)} if self.write_headers else {})}
                for k in range(i, j)]}
            try:
                resp = self.request("POST", "composite", json_body=body, headers=self.write_headers,
                                    idempotent=method.upper() != "POST")
            except SalesforceResponseLost as exc:
                self.log.warning("%s composite (%d collections): the answer was lost (%s); %d record(s) may "
                                 "have been written", method, j - i, exc.message or exc.status,
                                 sum(len(parts[k]) for k in range(i, j)))
                out += [exc.as_result() for k in range(i, j) for _ in parts[k]]
                i = j
                continue
            answers = {a.get("referenceId"): a for a in resp.json().get("compositeResponse") or []}
            for k in range(i, j):
                ans = answers.get(f"part{k}") or {}
                status = int(ans.get("httpStatusCode") or 0)
                if 200 <= status < 300 and isinstance(ans.get("body"), list) and len(ans["body"]) == len(parts[k]):
                    out += ans["body"]
                    continue
                if not ans:  # no answer for it: its records may have been written
                    out += [{"success": False, "errors": [{"statusCode": "RESPONSE_LOST", "fields": [],
                                                           "message": "no answer to the composite subrequest"}]}
                            for _ in parts[k]]
                    continue
                errors = ans.get("body") if isinstance(ans.get("body"), list) else []
                first = errors[0] if errors and isinstance(errors[0], Mapping) else {}
                failure = {"success": False, "errors": [{
                    "statusCode": first.get("errorCode") or first.get("statusCode") or "UNKNOWN_ERROR",
                    "message": first.get("message") or f"composite subrequest answered HTTP {status}",
                    "fields": list(first.get("fields") or [])}]}
                out += [failure for _ in parts[k]]
            i = j
        return out

    def composite_create(self, records: Sequence[dict]) -> list[dict]:
        """``POST /composite/sobjects`` in chunks of 200; results in input order."""
        return self._collection("POST", "composite/sobjects", records)

    def composite_update(self, records: Sequence[dict]) -> list[dict]:
        """``PATCH /composite/sobjects`` (each record has ``id``)."""
        return self._collection("PATCH", "composite/sobjects", records)

    def composite_upsert(self, sobject: str, external_id_field: str, records: Sequence[dict]) -> list[dict]:
        """``PATCH /composite/sobjects/{Object}/{extIdField}``; items carry ``created``."""
        return self._collection("PATCH", f"composite/sobjects/{sobject}/{external_id_field}", records)

    def composite_delete(self, ids: Sequence[str]) -> list[dict]:
        """``DELETE /composite/sobjects?ids=...&allOrNone=false`` in chunks of 200."""
        out: list[dict] = []
        for part in chunked(list(ids), COMPOSITE_CHUNK):
            resp = self.request(
                "DELETE", "composite/sobjects", params={"ids": ",".join(part), "allOrNone": "false"}
            )
            out += resp.json()
        return out

    # ------------------------------------------------------------------ Tooling (schema)

    def tooling_create(self, tooling_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /tooling/sobjects/{type}`` (CustomObject, CustomField, RecordType, FieldPermissions, ...)."""
        return self.request("POST", f"tooling/sobjects/{tooling_type}/", json_body=dict(body)).json()

    def create_custom_field(
        self, sobject: str, field_name: str, metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create ``<sobject>.<field_name>`` through Tooling and drop the cached describe."""
        res = self.tooling_create(
            "CustomField", {"FullName": f"{sobject}.{field_name}", "Metadata": dict(metadata)}
        )
        self._describes.pop(sobject, None)
        return res

    def create_custom_object(self, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        res = self.tooling_create("CustomObject", {"FullName": name, "Metadata": dict(metadata)})
        self._global = None
        return res

    def create_record_type(self, sobject: str, developer_name: str, label: str, active: bool = True) -> dict:
        res = self.tooling_create(
            "RecordType",
            {"FullName": f"{sobject}.{developer_name}", "Metadata": {"label": label, "active": active}},
        )
        self._describes.pop(sobject, None)
        return res

    def ensure_external_id_field(
        self, sobject: str, field_name: str = "Clio_Id__c", label: str = "Clio Id", length: int = 80
    ) -> bool:
        """Create a unique, case-insensitive external-id Text field unless it exists, and grant the connected
        user read/edit on it (``Clio_Migration`` permission set, see :mod:`clio2sf.access`); True if created.

        A field the user cannot see yet (created but never granted) is granted, not created again.
        """
        if any(f["name"] == field_name for f in self.describe(sobject, refresh=True)["fields"]):
            return False
        created = True
        try:
            self.create_custom_field(
                sobject,
                field_name,
                {
                    "label": label,
                    "type": "Text",
                    "length": length,
                    "externalId": True,
                    "unique": True,
                    "caseSensitive": False,
                    "required": False,
                    "description": "Source key from Clio",
                },
            )
        except SalesforceApiError as exc:
            if exc.error_code != "DUPLICATE_DEVELOPER_NAME":
                raise
            created = False
        access = AccessPlan()
        access.need(sobject, field_name)
        apply_permission_set(self, access, planned=[(sobject, field_name)])
        self._describes.pop(sobject, None)
        return created

    # ------------------------------------------------------------------ files

    def content_version_create(
        self,
        fields: Mapping[str, Any],
        open_blob: Callable[[], IO[bytes]],
        size: int,
        filename: str,
        multipart: bool,
    ) -> dict[str, Any]:
        """Create one ContentVersion (base64 JSON, or streamed multipart); per-row errors come back as data."""
        try:
            if multipart:
                boundary = f"clio2sf-{uuid.uuid4().hex}"
                resp = self.request(
                    "POST",
                    "sobjects/ContentVersion/",
                    data=lambda: _MultipartBody(fields, open_blob, size, filename, boundary),
                    headers={
                        "Content-Type": f"multipart/form-data; boundary={boundary}",
                        **self.write_headers,
                    },
                )
            else:
                with open_blob() as fh:
                    b64 = base64.b64encode(fh.read()).decode("ascii")
                resp = self.request(
                    "POST",
                    "sobjects/ContentVersion/",
                    json_body={**fields, "VersionData": b64},
                    headers=self.write_headers,
                )
        except (SalesforceApiLimitExceeded, SalesforceStorageLimitExceeded, SalesforceSessionExpired):
            raise
        except SalesforceApiError as exc:
            return exc.as_result()
        return resp.json()

    def get_by_external_id(self, sobject: str, field_name: str, value: str) -> dict[str, Any]:
        return self.request("GET", f"sobjects/{sobject}/{field_name}/{quote(str(value), safe='')}").json()

    def get_conn(self) -> SalesforceClient:
        return self.conn
