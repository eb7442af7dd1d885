"""Turn transformed rows into Salesforce payloads and Salesforce results back into ledger lines.

Pure logic, no Airflow: the Bulk API 2.0 CSV writer (chunked under the upload limits), the
REST sObject-collection record builder, the parsers for Bulk result CSVs and collection results,
the natural-key insert planner, and a small driver (:func:`load_rows`) that runs a batch through
any client with the :class:`LoadClient` methods (``ClioSalesforceHook`` has them) and retries
transient row failures.  See ``docs/architecture.md`` for the neutral row format and the
reject and ledger lines.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import functools
import gzip
import io
import json
import logging
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any, Literal, Protocol
from urllib.parse import quote_plus

from clio2sf.staging import write_bytes_atomic

log = logging.getLogger(__name__)

NULL = "#N/A"
BULK_MAX_BYTES = 100_000_000  # raw upload size; Salesforce caps 150 MB after its own base64
BULK_MAX_CHARS = 150_000_000
BULK_ROW_CAP = 150_000  # rows per job (each 10,000 rows count as one of the 15,000 daily batches)
COMPOSITE_CHUNK = 200
#: sObject Collections subrequests one ``POST /composite`` call carries (Salesforce: at most 25
#: subrequests a call, of which at most 5 sObject Collections or queries; the whole request counts as one
#: API call), and the JSON bytes it carries at most (a bound kept well under what a REST request may
#: carry; a collection alone over it is sent as its own call): ``ClioSalesforceHook.composite_collections``.
COMPOSITE_COLLECTIONS = 5
COMPOSITE_BODY_BUDGET = 4_000_000
SOQL_IN_CHUNK = 200  # ids per IN (...) keeps the URI well under 16,384 bytes
#: Look-ups by many keys (:func:`soql_in_chunks`): at most this many values in one IN (...) (Salesforce
#: allows 500 ids where junction ids are involved) and this many URL-encoded bytes of them, so the
#: query's URI (a GET) stays under Salesforce's 16,384 bytes with the SELECT around it.
SOQL_IN_MAX = 500
SOQL_IN_BUDGET = 12_000
#: Look-ups by more keys than this go through Bulk API 2.0 query jobs (:func:`lookup_records`) when the
#: client has ``bulk_query``: a job costs at least 3 calls (create, status, results) whatever its size, a
#: GET one call per 500 keys, so below ~2,000 keys the GETs cost no more, answer at once, and the many
#: small batches (samples, delta windows, the tests) keep the plain REST path ...
BULK_LOOKUP_MIN = 2_000
#: ... unless the GETs would be more calls than a query job's least (create, status, results): long keys
#: (``calendar_entry-<id>@<start>``, ~36 characters) fill a GET's URI at ~260 keys, so 800 of them take 4.
QUERY_JOB_CALLS = 3
#: Records a REST query page holds (Salesforce's default and largest ``batchSize``): what
#: :func:`_rest_scan` reads a GET.
REST_QUERY_PAGE = 2_000
#: Salesforce's default limit on a SOQL statement's length: what bounds a query job's IN list (the SOQL
#: is in the job's JSON body, not in a URI).  A little is kept back for the SELECT around the list.
SOQL_MAX_CHARS = 100_000
#: A Bulk look-up needing more than one IN-list job first tries one job over every record with a key
#: (``WHERE key != null``) and keeps those wanted, if that job finds at most this many records per
#: wanted key (bounds what a task downloads, never what it holds: only the wanted records are kept).
SCAN_MAX_RATIO = 20

TRANSIENT_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "API_TEMPORARILY_UNAVAILABLE",
        "SERVER_UNAVAILABLE",
        "REQUEST_RUNNING_TOO_LONG",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "UNPROCESSED",  # never attempted by a Bulk job
        "REQUEST_FAILED",  # the whole request failed transiently (see load_rows)
        "RESPONSE_LOST",  # a create may have been committed: resent only after looking for it
    }
)

NATURAL_KEY_OBJECTS = frozenset(
    {
        "CaseContactRole",
        "OpportunityContactRole",
        "EventRelation",
        "ContentDocumentLink",
        "AccountContactRelation",
        "CaseTeamMember",
        "OpportunityTeamMember",
    }
)

Mode = Literal["auto", "bulk", "composite"]


class WriteJournal(Protocol):
    """Durable intent/result lines around each write call (``clio2sf.ledger.BatchJournal``)."""

    intended: Mapping[str, str | None]

    def intend(self, items: Iterable[tuple[str, str | None]], operation: str = "insert") -> None: ...

    def done(self, outcomes: Iterable[Any]) -> None: ...


class NoJournal:
    """Keeps intents in memory only (tests and callers without a ledger)."""

    def __init__(self) -> None:
        self.intended: dict[str, str | None] = {}

    def intend(self, items: Iterable[tuple[str, str | None]], operation: str = "insert") -> None:
        self.intended.update(items)

    def done(self, outcomes: Iterable[Any]) -> None:
        return None


def transient_exception(exc: BaseException) -> bool:
    """A client error worth another look-and-try (the hook's transient and lost-response errors)."""
    return bool(getattr(exc, "transient", False)) or getattr(exc, "error_code", None) in TRANSIENT_CODES


# ---------------------------------------------------------------------------------------------
# envelopes and columns


@dataclass(frozen=True, slots=True)
class Envelope:
    """One transformed row (see "Neutral row format" in docs/architecture.md)."""

    sobject: str
    source_system_id: str
    row: dict[str, Any]
    external_id_field: str | None = None
    natural_key: tuple[str, ...] | None = None
    blob: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Envelope:
        """Build from a decoded JSON envelope, naming the record on bad input."""
        sid = d.get("source_system_id")
        if not sid:
            raise ValueError(f"transformed row without source_system_id: keys {sorted(d)}")
        for key in ("sobject", "row"):
            if not d.get(key):
                raise ValueError(f"{sid}: transformed envelope has no '{key}'")
        if not isinstance(d["row"], Mapping):
            raise ValueError(f"{sid}: 'row' must be an object")
        ext = d.get("external_id_field")
        nk = d.get("natural_key")
        if ext and ext not in d["row"]:
            raise ValueError(f"{sid}: row lacks its external id field '{ext}'")
        return cls(
            sobject=d["sobject"],
            source_system_id=str(sid),
            row=dict(d["row"]),
            external_id_field=ext or None,
            natural_key=tuple(nk) if nk else None,
            blob=d.get("blob"),
        )

    @property
    def external_id(self) -> str | None:
        return None if not self.external_id_field else str(self.row[self.external_id_field])


@dataclass(frozen=True)
class Column:
    """A parsed Bulk 2.0 column name: ``Field``, ``Rel.Field`` or ``Type:Rel.Field``."""

    name: str
    relationship: str | None = None
    target_field: str | None = None
    target_type: str | None = None

    @classmethod
    def parse(cls, name: str) -> Column:
        if "." not in name:
            return cls(name)
        rel, target = name.split(".", 1)
        typ = None
        if ":" in rel:
            typ, rel = rel.split(":", 1)
        if not rel or not target or "." in target:
            raise ValueError(f"bad relationship column {name!r}")
        return cls(name, rel, target, typ)

    @property
    def is_reference(self) -> bool:
        return self.relationship is not None

    @property
    def id_field(self) -> str:
        """The lookup field behind a relationship (``Account``→``AccountId``, ``X__r``→``X__c``)."""
        if self.relationship is None:
            return self.name
        if self.relationship.endswith("__r"):
            return self.relationship[:-3] + "__c"
        return self.relationship + "Id"


def read_envelopes(fp: IO[bytes], name: str = "") -> list[Envelope]:
    """Read a transformed batch (JSONL, gzip when ``name`` ends in ``.gz``)."""
    stream: IO[bytes] = gzip.GzipFile(fileobj=fp) if name.endswith(".gz") else fp
    out = []
    for lineno, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8"), 1):
        if line.strip():
            try:
                out.append(Envelope.from_dict(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{name or 'batch'} line {lineno}: not JSON ({exc.msg})") from None
    return out


# ---------------------------------------------------------------------------------------------
# values


def _fmt_datetime(v: dt.datetime) -> str:
    if v.tzinfo is None:
        v = v.replace(tzinfo=dt.UTC)
    s = v.isoformat(timespec="milliseconds")
    return s.replace("+00:00", "Z")


def _fmt_number(v: float | Decimal) -> str:
    d = Decimal(repr(v)) if isinstance(v, float) else v
    return format(d, "f")  # never scientific notation


def csv_value(v: Any) -> str:
    """One Bulk 2.0 CSV cell: ``#N/A`` for None, Salesforce date/datetime formats, LF newlines."""
    if v is None:
        return NULL
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.datetime):
        return _fmt_datetime(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float | Decimal):
        return _fmt_number(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list | tuple | set):
        return ";".join(csv_value(x) for x in v)  # multi-select picklist
    if isinstance(v, dict):
        raise TypeError("nested objects have no CSV form")
    return str(v).replace("\r\n", "\n").replace("\r", "\n")


def json_value(v: Any) -> Any:
    """One REST JSON value (None stays null; dates as ISO strings)."""
    if isinstance(v, dt.datetime):
        return _fmt_datetime(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, list | tuple | set):
        return ";".join(str(x) for x in v)
    return v


# ---------------------------------------------------------------------------------------------
# Bulk 2.0 CSV


@dataclass
class BulkChunk:
    """One Bulk 2.0 upload: CSV bytes plus the indexes (into the batch) of its rows."""

    data: bytes
    indexes: list[int]
    columns: list[str]


def header_union(rows: Iterable[Mapping[str, Any]], first: Sequence[str] = ()) -> list[str]:
    """All keys in first-seen order, ``first`` leading (stable across runs for the same input)."""
    seen = dict.fromkeys(k for k in first)
    for row in rows:
        for k in row:
            seen.setdefault(k, None)
    return list(seen)


def _csv_line(values: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def bulk_csv_chunks(
    envelopes: Sequence[Envelope],
    indexes: Sequence[int] | None = None,
    *,
    row_cap: int = BULK_ROW_CAP,
    max_bytes: int = BULK_MAX_BYTES,
    max_chars: int = BULK_MAX_CHARS,
) -> Iterator[BulkChunk]:
    """Write rows as LF-terminated UTF-8 CSV chunks under the Bulk 2.0 size limits.

    A key absent from a row gives an empty cell (field untouched on update); None gives ``#N/A``.
    """
    idx = list(range(len(envelopes))) if indexes is None else list(indexes)
    if not idx:
        return
    ext = envelopes[idx[0]].external_id_field
    columns = header_union((envelopes[i].row for i in idx), [ext] if ext else [])
    header = _csv_line(columns)
    hb, hc = len(header.encode()), len(header)
    lines: list[str] = []
    rows: list[int] = []
    nbytes, nchars = hb, hc
    for i in idx:
        env = envelopes[i]
        try:
            values = [csv_value(env.row[c]) if c in env.row else "" for c in columns]
        except TypeError as exc:
            bad = next(c for c in columns if isinstance(env.row.get(c), dict))
            raise ValueError(f"{env.source_system_id}: field '{bad}': {exc}") from None
        line = _csv_line(values)
        lb, lc = len(line.encode()), len(line)
        if hb + lb > max_bytes or hc + lc > max_chars:
            raise ValueError(f"{env.source_system_id}: row alone exceeds the Bulk upload size limit")
        if rows and (len(rows) >= row_cap or nbytes + lb > max_bytes or nchars + lc > max_chars):
            chunk = BulkChunk((header + "".join(lines)).encode(), rows, columns)
            lines, rows, nbytes, nchars = [], [], hb, hc  # not held while the job runs
            yield chunk
        lines.append(line)
        rows.append(i)
        nbytes += lb
        nchars += lc
    chunk = BulkChunk((header + "".join(lines)).encode(), rows, columns)
    del lines
    yield chunk


# ---------------------------------------------------------------------------------------------
# REST sObject collection records


def composite_record(env: Envelope) -> dict[str, Any]:
    """A collection record: lookups become nested external-id references.

    ``Account.Clio_Id__c`` → ``"Account": {"Clio_Id__c": v}``; ``Case:What.Clio_Id__c`` →
    ``"What": {"attributes": {"type": "Case"}, "Clio_Id__c": v}``; a None lookup nulls the Id field.
    """
    rec: dict[str, Any] = {"attributes": {"type": env.sobject}}
    for key, value in env.row.items():
        col = Column.parse(key)
        if not col.is_reference:
            rec[key] = json_value(value)
        elif value is None:
            rec[col.id_field] = None
        else:
            ref: dict[str, Any] = {}
            if col.target_type:
                ref["attributes"] = {"type": col.target_type}
            ref[col.target_field] = json_value(value)
            rec[col.relationship] = ref
    return rec


def chunked(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class SfError:
    status_code: str
    message: str
    fields: tuple[str, ...] = ()

    @property
    def transient(self) -> bool:
        return self.status_code in TRANSIENT_CODES

    def __str__(self) -> str:
        where = f" [{','.join(self.fields)}]" if self.fields else ""
        return f"{self.status_code}: {self.message}{where}"


_PERMANENT_JOB_ERROR = re.compile(r"\s*(InvalidBatch|ClientInputError|InvalidJob|FeatureNotEnabled)\b")
_FIELDS_RE = re.compile(r"^[A-Za-z0-9_.,: ]*$")


def parse_bulk_error(text: str) -> SfError:
    """Parse an ``sf__Error`` cell: ``CODE:message:Field1,Field2 --`` (the field part optional)."""
    text = (text or "").strip()
    code, _, rest = text.partition(":")
    code = code.strip() or "UNKNOWN_ERROR"
    fields: tuple[str, ...] = ()
    if rest.endswith("--"):
        rest = rest[:-2].rstrip()
        msg, sep, tail = rest.rpartition(":")
        if sep and _FIELDS_RE.match(tail):
            rest = msg
            fields = tuple(f.strip() for f in tail.split(",") if f.strip())
    return SfError(code, rest.strip(), fields)


def parse_rest_errors(errors: Iterable[Mapping[str, Any]]) -> list[SfError]:
    """Collection item errors (``statusCode``) or top-level REST errors (``errorCode``)."""
    return [
        SfError(
            str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN_ERROR"),
            str(e.get("message") or ""),
            tuple(e.get("fields") or ()),
        )
        for e in errors
    ]


@dataclass(slots=True)
class RowOutcome:
    """What happened to one input row."""

    index: int
    source_system_id: str
    success: bool
    sf_id: str | None = None
    created: bool = False
    errors: list[SfError] = field(default_factory=list)
    status: Literal["ok", "failed", "skipped"] | None = None
    operation: str = "upsert"
    file_ids: tuple[str, ...] = ()
    attempts: int = 1

    @property
    def transient(self) -> bool:
        return not self.success and bool(self.errors) and any(e.transient for e in self.errors)

    @property
    def ledger_status(self) -> str:
        return self.status or ("ok" if self.success else "failed")


def _cell(row: Mapping[str, str], key: str) -> str:
    return (row.get(key) or "").strip()


def _signature(values: Mapping[str, str], columns: Sequence[str]) -> tuple[str, ...]:
    return tuple(values.get(c, "") or "" for c in columns)


def parse_bulk_results(
    chunk: BulkChunk,
    envelopes: Sequence[Envelope],
    *,
    successful: IO[str] | str | None,
    failed: IO[str] | str | None,
    unprocessed: IO[str] | str | None,
    job_error: str | None = None,
    operation: str = "upsert",
) -> list[RowOutcome]:
    """Match Bulk result CSVs back to the chunk's rows.

    Rows are matched on the external id when the rows have one, otherwise on the echoed column
    values; Salesforce does not keep input order.  Rows missing from every result (a failed job)
    come back as transient ``UNPROCESSED`` failures.
    """
    ext = envelopes[chunk.indexes[0]].external_id_field if chunk.indexes else None
    by_key: dict[Any, list[int]] = defaultdict(list)
    for i in chunk.indexes:
        env = envelopes[i]
        if ext:
            by_key[str(env.row[ext]).casefold()].append(i)
        else:
            cells = {c: csv_value(env.row[c]) if c in env.row else "" for c in chunk.columns}
            by_key[_signature(cells, chunk.columns)].append(i)

    def take(row: Mapping[str, str]) -> int | None:
        key = _cell(row, ext).casefold() if ext else _signature(row, chunk.columns)
        hits = by_key.get(key)
        return hits.pop(0) if hits else None

    out: dict[int, RowOutcome] = {}

    def reader(src: IO[str] | str | None) -> Iterator[dict[str, str]]:
        if not src:
            return iter(())
        return csv.DictReader(io.StringIO(src) if isinstance(src, str) else src)

    for row in reader(successful):
        i = take(row)
        if i is not None:
            out[i] = RowOutcome(
                i,
                envelopes[i].source_system_id,
                True,
                _cell(row, "sf__Id") or None,
                _cell(row, "sf__Created").lower() == "true",
                operation=operation,
            )
    for row in reader(failed):
        i = take(row)
        if i is not None:
            out[i] = RowOutcome(
                i,
                envelopes[i].source_system_id,
                False,
                _cell(row, "sf__Id") or None,
                errors=[parse_bulk_error(row.get("sf__Error", ""))],
                operation=operation,
            )
    unproc_msg = f"not processed by the Bulk job{': ' + job_error if job_error else ''}"
    # A job refused for its input (bad header, line endings) fails every row the same way again.
    unproc_code = "BULK_JOB_FAILED" if job_error and _PERMANENT_JOB_ERROR.match(job_error) else "UNPROCESSED"
    for row in reader(unprocessed):
        i = take(row)
        if i is not None:
            out[i] = RowOutcome(
                i,
                envelopes[i].source_system_id,
                False,
                errors=[SfError(unproc_code, unproc_msg)],
                operation=operation,
            )
    for i in chunk.indexes:
        if i not in out:
            out[i] = RowOutcome(
                i,
                envelopes[i].source_system_id,
                False,
                errors=[SfError(unproc_code, "missing from the Bulk job results; " + unproc_msg)],
                operation=operation,
            )
    return [out[i] for i in chunk.indexes]


def parse_composite_results(
    indexes: Sequence[int],
    envelopes: Sequence[Envelope],
    results: Sequence[Mapping[str, Any]],
    operation: str = "upsert",
) -> list[RowOutcome]:
    """Collection results come back in request order, one per record."""
    if len(results) != len(indexes):
        raise ValueError(f"collection returned {len(results)} results for {len(indexes)} records")
    return [
        RowOutcome(
            i,
            envelopes[i].source_system_id,
            bool(r.get("success")),
            r.get("id"),
            bool(r.get("created", operation == "insert" and r.get("success"))),
            parse_rest_errors(r.get("errors") or ()),
            operation=operation,
        )
        for i, r in zip(indexes, results, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# ledger and rejects


def ledger_kwargs(outcome: RowOutcome, before: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``LedgerWriter.record`` (no record body, only ids and errors)."""
    return {
        "source_system_id": outcome.source_system_id,
        "sf_id": outcome.sf_id,
        "operation": outcome.operation,
        "created": outcome.created,
        "before": dict(before) if before and outcome.success and not outcome.created else None,
        "file_ids": tuple(outcome.file_ids),
        "status": outcome.ledger_status,
        "error": "; ".join(str(e) for e in outcome.errors)[:1000] if not outcome.success else None,
    }


def reject_line(outcome: RowOutcome, phase: str, sobject: str) -> dict[str, Any]:
    """A reject (quarantine) line naming the record and the field."""
    err = outcome.errors[0] if outcome.errors else SfError("UNKNOWN_ERROR", "no error reported")
    fld = ",".join(err.fields) or None
    others = f" (+{len(outcome.errors) - 1} more)" if len(outcome.errors) > 1 else ""
    on = f" on {fld}" if fld else ""
    return {
        "phase": phase,
        "object": sobject,
        "source_system_id": outcome.source_system_id,
        "field": fld,
        "rule": err.status_code,
        "message": f"{outcome.source_system_id}: {err.status_code}{on}: {err.message[:500]}{others}",
        "repair": None,
    }


def write_rejects(root: Any, phase: str, obj: str, batch: str, rejects: Iterable[Mapping[str, Any]]) -> Any:
    """Write ``rejects/<phase>/<obj>/<batch>.jsonl`` in one go (object stores cannot append)."""
    path = root / "rejects" / phase / obj / f"{batch}.jsonl"
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rejects)
    write_bytes_atomic(path, data.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------
# natural-key objects


@dataclass
class NaturalKeyPlan:
    inserts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (index, flat record)
    existing: list[tuple[int, str | None]] = field(default_factory=list)  # (index, existing sf id)
    failures: list[RowOutcome] = field(default_factory=list)


def _norm_id(v: Any) -> str:
    s = "" if v is None else str(v)
    return s[:15] if len(s) == 18 and s.isalnum() else s


def key_fields(env: Envelope) -> tuple[str, ...]:
    """The natural key as Salesforce field names (``Cases.Clio_Id__c`` → ``CasesId``)."""
    if not env.natural_key:
        raise ValueError(f"{env.source_system_id}: {env.sobject} row has no natural_key")
    return tuple(Column.parse(k).id_field for k in env.natural_key)


def resolve_row(env: Envelope, resolved_ids: Mapping[str, Mapping[str, str]]) -> tuple[dict, list]:
    """Replace external-id lookups with Salesforce ids; return (flat record, unresolved columns)."""
    rec: dict[str, Any] = {}
    missing = []
    for key, value in env.row.items():
        col = Column.parse(key)
        if not col.is_reference:
            rec[key] = json_value(value)
        elif value is None:
            rec[col.id_field] = None
        else:
            sf_id = resolved_ids.get(key, {}).get(str(value))
            if sf_id is None:
                missing.append((key, col.id_field, value))
            rec[col.id_field] = sf_id
    return rec, missing


def natural_key_of(record: Mapping[str, Any], fields: Sequence[str]) -> tuple[str, ...]:
    return tuple(_norm_id(record.get(f)) for f in fields)


def plan_natural_key_inserts(
    envelopes: Sequence[Envelope],
    resolved_ids: Mapping[str, Mapping[str, str]],
    existing_keys: Mapping[tuple[str, ...], str | None] | Iterable[tuple[str, ...]],
    indexes: Sequence[int] | None = None,
) -> NaturalKeyPlan:
    """Decide which natural-key rows to insert.

    :param resolved_ids: column name (``Cases.Clio_Id__c``) → external id → Salesforce id.
    :param existing_keys: natural keys (tuples in ``key_fields`` order, ids as 15 or 18 chars)
        already in Salesforce, optionally mapped to the existing record's id.
    Rows whose parent did not resolve fail permanently (``INVALID_CROSS_REFERENCE_KEY``); rows
    already present or repeated in the batch are skipped, so a rerun inserts nothing.
    """
    existing = {
        tuple(_norm_id(v) for v in k): (existing_keys[k] if isinstance(existing_keys, Mapping) else None)
        for k in existing_keys
    }
    plan = NaturalKeyPlan()
    planned: set[tuple[str, ...]] = set()
    for i in range(len(envelopes)) if indexes is None else indexes:
        env = envelopes[i]
        fields = key_fields(env)
        rec, missing = resolve_row(env, resolved_ids)
        if missing:
            col, id_field, value = missing[0]
            plan.failures.append(
                RowOutcome(
                    i,
                    env.source_system_id,
                    False,
                    errors=[
                        SfError(
                            "INVALID_CROSS_REFERENCE_KEY",
                            f"no {col.split('.')[0]} record with {col.split('.')[-1]} = {value}",
                            (id_field,),
                        )
                    ],
                    operation="insert",
                )
            )
            continue
        key = natural_key_of(rec, fields)
        if key in existing:
            plan.existing.append((i, existing[key]))
        elif key in planned:
            plan.existing.append((i, None))
        else:
            planned.add(key)
            plan.inserts.append((i, rec))
    return plan


def soql_quote(value: Any) -> str:
    s = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{s}'"


def soql_literal(value: Any) -> str:
    """A SOQL literal of the value's own type: date-times and dates unquoted (``2024-01-31T17:00:00Z``),
    as a real org requires for DateTime and Date fields; numbers and booleans unquoted; text quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return _fmt_datetime(value.astimezone(dt.UTC) if value.tzinfo else value).replace(".000Z", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float | Decimal):
        return _fmt_number(value) if not isinstance(value, int) else str(value)
    return soql_quote(value)


def soql_in(field_name: str, values: Iterable[Any]) -> str:
    return f"{field_name} IN ({', '.join(soql_literal(v) for v in values)})"


def _packed(values: Iterable[Any], size_of: Callable[[Any], int], budget: int,
            max_values: int | None = None) -> Iterator[list[Any]]:
    """``values`` in consecutive lists of at most ``budget`` summed ``size_of`` (and ``max_values`` items)."""
    part: list[Any] = []
    size = 0
    for v in values:
        n = size_of(v)
        if part and ((max_values is not None and len(part) >= max_values) or size + n > budget):
            yield part
            part, size = [], 0
        part.append(v)
        size += n
    if part:
        yield part


def soql_in_chunks(values: Iterable[Any], max_values: int = SOQL_IN_MAX,
                   budget: int = SOQL_IN_BUDGET) -> Iterator[list[Any]]:
    """``values`` in as few IN lists as the limits allow: at most ``max_values`` each and ``budget``
    bytes of URL-encoded literals (a 2,000-row batch's ids take 4-5 queries, not 10)."""
    # ", " is "%2C+" in the URI
    return _packed(values, lambda v: len(quote_plus(soql_literal(v))) + 4, budget, max_values)


def soql_in_text_chunks(values: Iterable[Any], room: int) -> Iterator[list[Any]]:
    """``values`` in IN lists of at most ``room`` characters of SOQL each (a query job's body: no URI)."""
    return _packed(values, lambda v: len(soql_literal(v)) + 2, room)  # ", "


def _bulk_query(client: Any) -> Callable[..., Iterator[dict]] | None:
    return getattr(client, "bulk_query", None)


class QueryTooLarge(Exception):
    """A Bulk query job found more records than its caller would read (``bulk_query(max_rows=...)``);
    raised before any row is read."""

    def __init__(self, rows: int, max_rows: int) -> None:
        super().__init__(f"the query job found {rows} records, more than the {max_rows} it may read")
        self.rows, self.max_rows = rows, max_rows


def _field_value(rec: Mapping[str, Any], field: str) -> Any:
    """``rec``'s value of ``field``: a flat key (a Bulk CSV column, ``Event.Clio_Id__c``) or, for a
    relationship path, REST's nested parent record (``{"Event": {"Clio_Id__c": ...}}``)."""
    if field in rec:
        return rec[field]
    node: Any = rec
    for part in field.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _rest_scan(client: Any, sobject: str, select: Sequence[str], field: str, vals: Sequence[str],
               extra: str, max_pages: int = QUERY_JOB_CALLS) -> list[dict[str, Any]] | None:
    """The records asked for, read through REST from every record of ``sobject`` that has a ``field``,
    when those fit in ``max_pages`` pages, else None after one GET (the client lacks ``query_upto``, or
    ``field`` is not selected: None, no call).  ``field`` may be a relationship path."""
    upto = getattr(client, "query_upto", None)
    if upto is None or field not in select:
        return None
    got = upto(f"SELECT {', '.join(select)} FROM {sobject} WHERE {field} != null{extra}", max_pages=max_pages)
    if got is None:
        log.info("look-up of %d %s.%s value(s): more records have one than %d page(s) hold", len(vals), sobject,
                 field, max_pages)
        return None
    wanted = {v.casefold() for v in vals}
    return [r for r in got if (v := _field_value(r, field)) is not None and str(v).casefold() in wanted]


def lookup_records(
    client: Any, sobject: str, select: Sequence[str], field: str, values: Iterable[Any], *, extra: str = "",
    few: bool | int | None = False, written: int = 0,
) -> Iterator[dict[str, Any]]:
    """The records of ``sobject`` whose ``field`` is one of ``values``, with the fields ``select``.

    Up to :data:`BULK_LOOKUP_MIN` values in at most :data:`QUERY_JOB_CALLS` GETs (or with a client
    lacking ``bulk_query``): REST GETs of :func:`soql_in_chunks` (records as REST returns them).
    More: Bulk API 2.0 query jobs (see
    :func:`_bulk_lookup`); a query job Salesforce refuses at once (HTTP 400: an object or a query Bulk
    API does not support) falls back to the GETs.  Bulk rows hold the CSV's text (None for empty),
    keyed by the names in ``select``; :func:`typed_rows` gives them REST's types.  ``field`` must be in
    ``select`` for the one-job read to filter on; ``extra`` is ANDed to the filter.

    ``few``: the caller expects few records of ``sobject`` to have a ``field`` at all (the ledger says
    this migration wrote few, e.g. only a sample's): True (at most one REST page of them), or how many
    (an int, e.g. the ledger's successful writes of the object).  When reading every record that has
    one through REST (:func:`_rest_scan`, exact whatever it finds: it filters what it reads) should take
    fewer GETs than the IN lists' GETs, or at most a query job's :data:`QUERY_JOB_CALLS` calls, that is
    tried first; when they fill more pages than that, its first GET was the one call spent and the
    look-up goes on as without ``few``.  False or None: no hint.  ``written``: how many successful writes
    of ``sobject`` the ledger holds (at least; 0: unknown), for :func:`_bulk_lookup`."""
    vals = sorted({str(v) for v in values if v is not None})
    bulk = _bulk_query(client)
    cols = ", ".join(select)

    def rest(parts: Iterable[list[Any]] | None = None) -> Iterator[dict[str, Any]]:
        for part in soql_in_chunks(vals) if parts is None else parts:
            yield from client.query_all_iter(f"SELECT {cols} FROM {sobject} WHERE {soql_in(field, part)}{extra}")

    gets = list(soql_in_chunks(vals)) if bulk is None or len(vals) <= BULK_LOOKUP_MIN else None
    by_gets = bulk is None or (gets is not None and len(gets) <= QUERY_JOB_CALLS)
    if few is not None and few is not False and vals:
        # the scan pays when it takes fewer GETs than the IN lists, or no more calls than a query job
        # (whose 3 calls are its least, after a wait for its status)
        limit = len(gets) - 1 if by_gets and gets is not None else QUERY_JOB_CALLS
        expected = 1 if few is True else max(1, -(-int(few) // REST_QUERY_PAGE))
        if 0 < limit and expected <= limit:
            scanned = _rest_scan(client, sobject, select, field, vals, extra, max_pages=limit)
            if scanned is not None:
                yield from scanned
                return
    if by_gets:
        yield from rest(gets)
        return
    read = False
    try:
        for rec in _bulk_lookup(bulk, sobject, select, field, vals, extra, written=written):
            read = True
            yield rec
    except Exception as exc:
        if read or getattr(exc, "status", None) != 400:
            raise
        log.warning("look-up of %d %s.%s value(s): the query job was refused (%s); through REST GETs instead",
                    len(vals), sobject, field, getattr(exc, "error_code", type(exc).__name__))
        yield from rest()


def _bulk_lookup(bulk: Callable[..., Iterator[dict]], sobject: str, select: Sequence[str], field: str,
                 vals: Sequence[str], extra: str, *, written: int = 0) -> Iterator[dict[str, Any]]:
    """Query jobs whose IN lists fill the SOQL length limit; when that takes more than one job, first one
    job over every record with a ``field`` (3 calls whatever the number of values) that keeps those
    asked for (case-insensitively, as Salesforce compares external ids and text), unless it finds more
    than :data:`SCAN_MAX_RATIO` records a value: then nothing is read (2 calls spent) and the IN lists
    run.  When ``written`` (the ledger's successful writes of ``sobject``) is already past that, the scan
    is not tried: the org holds at least that many records with a ``field`` unless some were deleted
    since, and a scan that would be refused still costs the org a read of every record (a cost
    decision only: the IN lists find exactly the same records)."""
    cols = ", ".join(select)
    head = f"SELECT {cols} FROM {sobject} WHERE {field} IN (){extra}"
    parts = list(soql_in_text_chunks(vals, SOQL_MAX_CHARS - len(head) - 100))
    if len(parts) > 1 and field in select and written > SCAN_MAX_RATIO * len(vals):
        log.info("look-up of %d %s.%s value(s): the ledger holds %d writes of the object, too many to read "
                 "them all", len(vals), sobject, field, written)
    elif len(parts) > 1 and field in select:
        wanted = {v.casefold() for v in vals}
        read = False
        try:
            for rec in bulk(f"SELECT {cols} FROM {sobject} WHERE {field} != null{extra}",
                            max_rows=SCAN_MAX_RATIO * len(vals)):
                read = True
                v = rec.get(field)
                if v is not None and str(v).casefold() in wanted:
                    yield rec
            log.info("look-up of %d %s.%s value(s): one Bulk query job over the records that have one",
                     len(vals), sobject, field)
            return
        except QueryTooLarge as exc:
            if read:
                raise
            log.info("look-up of %d %s.%s value(s): %d records have one, too many to read them all",
                     len(vals), sobject, field, exc.rows)
    log.info("look-up of %d %s.%s value(s): %d Bulk query job(s)", len(vals), sobject, field, len(parts))
    for part in parts:
        yield from bulk(f"SELECT {cols} FROM {sobject} WHERE {soql_in(field, part)}{extra}")


_CSV_TYPES: dict[str, Callable[[str], Any]] = {
    "boolean": lambda v: v.lower() == "true",
    "int": int,
    "double": float,
    "currency": float,
    "percent": float,
}


def typed_rows(client: Any, sobject: str, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Bulk query rows (CSV text) with the types REST gives the same fields: booleans, numbers, and
    date-times as ``...+0000`` (the CSV writes ``...Z``); text stays text, None stays None.  Rows that
    already hold REST values (non-strings) pass unchanged."""
    describe = getattr(client, "describe", None)
    types = {f["name"].lower(): f["type"] for f in (describe(sobject).get("fields") or ())} if describe else {}
    for row in rows:
        out: dict[str, Any] = {}
        for k, v in row.items():
            t = types.get(k.lower())
            if isinstance(v, str) and t is not None:
                if t in _CSV_TYPES:
                    v = _CSV_TYPES[t](v)
                elif t == "datetime" and v.endswith("Z"):
                    v = v[:-1] + "+0000"
            out[k] = v
        yield out


# ---------------------------------------------------------------------------------------------
# row preparation: loader directives, record types, document ids

#: Objects with their own loader (bytes or HTML bodies, no external id on ContentNote).
SPECIAL_LOADERS = {"ContentVersion": "load_content_versions", "ContentNote": "load_content_notes"}
RECORD_TYPE_COLUMN = "RecordType.DeveloperName"
CV_DOCUMENT_COLUMN = "ContentVersion.Clio_Id__c"  # -> ContentDocumentId of that version
NOTE_DOCUMENT_COLUMN = "ContentNote.source_system_id"  # -> ContentNote Id (= ContentDocument Id)
TEAM_ROLE_COLUMN = "TeamRole.Name"  # -> CaseTeamRole Id (a missing role is created)
#: Audit fields: sent only when the org lets the integration user set them (describe: createable).
AUDIT_FIELDS = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById")
#: Columns :func:`prepare_rows` replaces with a Salesforce id.
_RESOLVED_COLUMNS = (RECORD_TYPE_COLUMN, CV_DOCUMENT_COLUMN, NOTE_DOCUMENT_COLUMN, TEAM_ROLE_COLUMN)


def strip_directives(row: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``_``-prefixed keys: loader directives and notes, never Salesforce columns."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _record_type_ids(client: LoadClient, sobject: str) -> dict[str, str]:
    soql = f"SELECT Id, DeveloperName FROM RecordType WHERE SobjectType = {soql_quote(sobject)} AND IsActive = true"
    return {str(r["DeveloperName"]).casefold(): r["Id"] for r in client.query_all_iter(soql)}


def _settable_audit_fields(client: LoadClient, sobject: str) -> set[str]:
    """Audit fields the org accepts on insert ("Set Audit Fields upon Record Creation"); none without a describe."""
    describe = getattr(client, "describe", None)
    if describe is None:
        return set()
    return {f["name"] for f in describe(sobject).get("fields") or () if f["name"] in AUDIT_FIELDS and f.get("createable")}


def case_team_role_ids(client: LoadClient, names: Iterable[str], access_level: str = "Edit") -> dict[str, str]:
    """CaseTeamRole Id per role name (casefolded); roles the org lacks are created with ``access_level``.

    A role that cannot be created is left out (its rows then fail naming the role)."""
    wanted = {str(n) for n in names if n}
    if not wanted:
        return {}
    have = {str(r["Name"]).casefold(): r["Id"] for r in client.query_all_iter("SELECT Id, Name FROM CaseTeamRole")}
    missing = sorted(n for n in wanted if n.casefold() not in have)
    if missing:
        results = client.composite_create(
            [{"attributes": {"type": "CaseTeamRole"}, "Name": n, "AccessLevel": access_level} for n in missing])
        for name, res in zip(missing, results, strict=True):
            if res.get("success") and res.get("id"):
                have[name.casefold()] = res["id"]
    return have


def _document_ids(client: LoadClient, version_ids: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for rec in lookup_records(client, "ContentVersion", ["ContentDocumentId", "Clio_Id__c"], "Clio_Id__c",
                              version_ids):
        if rec.get("Clio_Id__c") and rec.get("ContentDocumentId"):
            out[str(rec["Clio_Id__c"]).casefold()] = rec["ContentDocumentId"]
    return out


def prepare_rows(
    client: LoadClient, envelopes: Sequence[Envelope], *, note_ids: Mapping[str, str] | None = None,
    team_access: str = "Edit",
) -> tuple[list[Envelope], dict[int, RowOutcome]]:
    """Rewrite rows into what Salesforce accepts; return (envelopes, permanent failures by index).

    - ``_``-prefixed keys are dropped (never sent);
    - ``RecordType.DeveloperName`` becomes ``RecordTypeId`` (SOQL on RecordType; Bulk 2.0
      relationship columns on RecordType are not reliable);
    - ``ContentVersion.Clio_Id__c`` becomes that version's ``ContentDocumentId``;
    - ``ContentNote.source_system_id`` becomes ``ContentDocumentId`` from ``note_ids`` (the
      ledger's source id → ContentNote Id; a ContentNote Id is its ContentDocument Id);
    - ``TeamRole.Name`` becomes ``TeamRoleId`` (CaseTeamRole by name, created when missing);
    - audit fields (``CreatedDate``...) are dropped unless the org lets them be set on insert.
    An unresolvable value fails the row with ``INVALID_CROSS_REFERENCE_KEY`` naming the column.
    """
    failed: dict[int, RowOutcome] = {}
    if not envelopes:
        return [], failed
    sobject = envelopes[0].sobject
    blocked: set[str] = set()
    if any(k in e.row for e in envelopes for k in AUDIT_FIELDS):
        blocked = set(AUDIT_FIELDS) - _settable_audit_fields(client, sobject)
    rewritten = blocked | set(_RESOLVED_COLUMNS)

    def prepared(row: dict[str, Any]) -> dict[str, Any]:
        # a row with nothing to drop or resolve is sent as it is (not copied: a load task holds every row)
        if not any(k[:1] == "_" or k in rewritten for k in row):
            return row
        return {k: v for k, v in row.items() if not k.startswith("_") and k not in blocked}

    rows = [prepared(e.row) for e in envelopes]
    teams = (case_team_role_ids(client, (r[TEAM_ROLE_COLUMN] for r in rows if r.get(TEAM_ROLE_COLUMN)), team_access)
             if any(TEAM_ROLE_COLUMN in r for r in rows) else {})
    rtypes = _record_type_ids(client, sobject) if any(RECORD_TYPE_COLUMN in r for r in rows) else {}
    docs = _document_ids(client, (str(r[CV_DOCUMENT_COLUMN]) for r in rows if r.get(CV_DOCUMENT_COLUMN)))
    notes = {str(k).casefold(): v for k, v in (note_ids or {}).items()}
    for i, row in enumerate(rows):
        for col, target, table, what in (
            (RECORD_TYPE_COLUMN, "RecordTypeId", rtypes, f"active {sobject} record type"),
            (CV_DOCUMENT_COLUMN, "ContentDocumentId", docs, "ContentVersion"),
            (NOTE_DOCUMENT_COLUMN, "ContentDocumentId", notes, "loaded ContentNote"),
            (TEAM_ROLE_COLUMN, "TeamRoleId", teams, "CaseTeamRole"),
        ):
            if col not in row:
                continue
            value = row.pop(col)
            if value is None:
                row[target] = None
                continue
            sf_id = table.get(str(value).casefold())
            if sf_id is None:
                failed[i] = _fail(
                    i, envelopes[i], "INVALID_CROSS_REFERENCE_KEY", f"no {what} for {col} = {value}", (target,)
                )
                break
            row[target] = sf_id
    out = [
        e if row is e.row else Envelope(e.sobject, e.source_system_id, row, e.external_id_field, e.natural_key, e.blob)
        for e, row in zip(envelopes, rows, strict=True)
    ]
    return out, failed


def deferred_columns(client: LoadClient, envelopes: Sequence[Envelope], load_order: Sequence[str]) -> set[str]:
    """Reference columns pointing at an object loaded at the same step or later (self-references,
    ``Account.Primary_Matter__r`` → Case): sent in a second pass, once every object is in."""
    if not envelopes or envelopes[0].external_id_field is None:
        return set()
    sobject = envelopes[0].sobject
    pos = load_order.index(sobject) if sobject in load_order else len(load_order)
    cols = {k for e in envelopes for k in e.row if Column.parse(k).is_reference}
    targets = client.reference_targets(sobject, cols) if cols else {}
    return {c for c, t in targets.items() if t in load_order and load_order.index(t) >= pos}


def split_deferred(
    envelopes: Sequence[Envelope], columns: Iterable[str]
) -> tuple[list[Envelope], list[Envelope]]:
    """(rows without ``columns``, second-pass rows holding only the external id and ``columns``)."""
    cols = set(columns)
    if not cols:
        return list(envelopes), []
    first, second = [], []
    for e in envelopes:
        first.append(Envelope(e.sobject, e.source_system_id, {k: v for k, v in e.row.items() if k not in cols},
                              e.external_id_field, e.natural_key, e.blob))
        late = {k: v for k, v in e.row.items() if k in cols and v is not None}
        if late and e.external_id_field:
            second.append(Envelope(e.sobject, e.source_system_id, {e.external_id_field: e.row[e.external_id_field], **late},
                                   e.external_id_field))
    return first, second


def existing_external_ids(client: LoadClient, envelopes: Sequence[Envelope], few: bool | int | None = False,
                          written: int = 0) -> set[str]:
    """External ids (casefolded) of the batch already in Salesforce.  ``few``, ``written``: as
    :func:`lookup_records` (how many records of the object the ledger says were written: what the look-up
    costs, never what it finds)."""
    if not envelopes or not envelopes[0].external_id_field:
        return set()
    ext, sobject = envelopes[0].external_id_field, envelopes[0].sobject
    found: set[str] = set()
    for rec in lookup_records(client, sobject, [ext], ext, (e.external_id for e in envelopes), few=few,
                              written=written):
        if rec.get(ext) is not None:
            found.add(str(rec[ext]).casefold())
    return found


def _strip_create_only(client: LoadClient, envelopes: list[Envelope], few: bool | int | None = False,
                       written: int = 0) -> tuple[list[Envelope], set[str] | None]:
    """Drop create-only fields (``Task.TaskSubtype``) from rows that already exist: an upsert that
    updates would fail on them.  Needs ``client.describe``; without it rows pass unchanged.  Returns the
    rows and, when it had to look, the external ids (casefolded) already in Salesforce, else None.
    ``few``, ``written``: :func:`existing_external_ids`."""
    describe = getattr(client, "describe", None)
    if describe is None or not envelopes or not envelopes[0].external_id_field:
        return envelopes, None
    present = {k for e in envelopes for k in e.row}
    create_only = {
        f["name"] for f in describe(envelopes[0].sobject).get("fields") or ()
        if f.get("createable") and not f.get("updateable") and f["name"] in present
    }
    if not create_only:
        return envelopes, None
    have = existing_external_ids(client, envelopes, few, written)
    return [
        Envelope(e.sobject, e.source_system_id, {k: v for k, v in e.row.items() if k not in create_only},
                 e.external_id_field, e.natural_key, e.blob)
        if str(e.external_id).casefold() in have else e
        for e in envelopes
    ], have


# ---------------------------------------------------------------------------------------------
# driver


@dataclass
class BulkJobResult:
    """A finished Bulk 2.0 ingest job: its final state and its three result CSVs."""

    job_id: str
    state: str
    records_processed: int = 0
    records_failed: int = 0
    error_message: str | None = None
    successful: IO[str] | str | None = None
    failed: IO[str] | str | None = None
    unprocessed: IO[str] | str | None = None


class LoadClient(Protocol):
    """What :func:`load_rows` needs from a Salesforce client (``ClioSalesforceHook`` has it)."""

    def bulk_ingest(
        self, sobject: str, operation: str, data: bytes, external_id_field: str | None, *, rows: int | None = None
    ) -> BulkJobResult: ...
    # ``rows``: the data rows uploaded; a finished job that processed fewer has its unprocessed records read

    def composite_upsert(self, sobject: str, external_id_field: str, records: Sequence[dict]) -> list: ...

    def composite_create(self, records: Sequence[dict]) -> list: ...

    def composite_update(self, records: Sequence[dict]) -> list: ...

    def query_all_iter(self, soql: str) -> Iterator[dict]: ...

    # optional: ``bulk_query(soql, max_rows=None) -> Iterator[dict]`` (a Bulk API 2.0 query job's rows);
    # with it, look-ups of more than BULK_LOOKUP_MIN keys, or of more than QUERY_JOB_CALLS GETs' worth,
    # use query jobs (lookup_records)

    def reference_targets(self, sobject: str, columns: Iterable[str]) -> dict[str, str]: ...


@dataclass
class LoadResult:
    outcomes: list[RowOutcome]
    before: dict[str, dict[str, Any]] = field(default_factory=dict)  # external id → before-image

    def count(self, pred: Callable[[RowOutcome], bool]) -> int:
        return sum(1 for o in self.outcomes if pred(o))

    @property
    def created(self) -> int:
        return self.count(lambda o: o.success and o.created)

    @property
    def updated(self) -> int:
        return self.count(lambda o: o.success and not o.created and o.ledger_status == "ok")

    @property
    def skipped(self) -> int:
        return self.count(lambda o: o.ledger_status == "skipped")

    @property
    def failed(self) -> int:
        return self.count(lambda o: not o.success)


def choose_mode(mode: Mode, rows: int, bulk_threshold: int) -> Literal["bulk", "composite"]:
    if mode not in ("auto", "bulk", "composite"):
        raise ValueError(f"mode must be auto, bulk or composite, not {mode!r}")
    if mode == "auto":
        return "bulk" if rows > bulk_threshold else "composite"
    return mode


def _check_batch(envelopes: Sequence[Envelope]) -> None:
    first = envelopes[0]
    for env in envelopes:
        if env.sobject != first.sobject or env.external_id_field != first.external_id_field:
            raise ValueError(
                f"{env.source_system_id}: batch mixes {env.sobject}/{env.external_id_field} with "
                f"{first.sobject}/{first.external_id_field}"
            )
        if not env.external_id_field and not env.natural_key:
            raise ValueError(f"{env.source_system_id}: row has neither external_id_field nor natural_key")


def _run_upsert(
    client: LoadClient, envelopes: Sequence[Envelope], idx: Sequence[int], mode: str, row_cap: int,
    journal: WriteJournal,
) -> list[RowOutcome]:
    """Upsert by external id: a resend is harmless, so the journal only records intent and results
    (a record an attempt created but never heard of is then known as ours: see ``pipeline.load_batch``)."""
    env0 = envelopes[idx[0]]
    out: list[RowOutcome] = []
    if mode == "bulk":
        for chunk in bulk_csv_chunks(envelopes, idx, row_cap=row_cap):
            journal.intend(((envelopes[i].source_system_id, envelopes[i].external_id) for i in chunk.indexes), "upsert")
            res = client.bulk_ingest(env0.sobject, "upsert", chunk.data, env0.external_id_field,
                                     rows=len(chunk.indexes))
            chunk.data = b""  # uploaded: not held while its results are read
            got = parse_bulk_results(
                chunk,
                envelopes,
                successful=res.successful,
                failed=res.failed,
                unprocessed=res.unprocessed,
                job_error=res.error_message,
            )
            journal.done(got)
            out += got
    else:
        for part in chunked(list(idx), COMPOSITE_CHUNK):
            journal.intend(((envelopes[i].source_system_id, envelopes[i].external_id) for i in part), "upsert")
            records = [composite_record(envelopes[i]) for i in part]
            results = client.composite_upsert(env0.sobject, env0.external_id_field, records)
            got = parse_composite_results(part, envelopes, results)
            journal.done(got)
            out += got
    return out


def _anchor_column(envelopes: Sequence[Envelope], idx: Sequence[int], anchor: str) -> Column | None:
    """The rows' lookup column (``Event.Clio_Id__c``) that gives the key's ``anchor`` (``EventId``), when
    every row names its parent by it through a non-polymorphic relationship; else None."""
    col: Column | None = None
    for i in idx:
        hits = [c for c in map(Column.parse, envelopes[i].row) if c.is_reference and c.id_field == anchor]
        if len(hits) != 1 or hits[0].target_type or (col is not None and hits[0].name != col.name):
            return None
        col = hits[0]
    return col


def _existing_natural_keys(
    client: LoadClient, sobject: str, fields: Sequence[str], records: Sequence[Mapping[str, Any]],
    by_parent_key: tuple[Column, Iterable[Any]] | None = None, few: bool | int | None = False,
    written: int = 0,
) -> dict[tuple[str, ...], str]:
    """Existing records of the natural keys of ``records`` (flat, resolved), found by the key's first id
    field.  ``by_parent_key`` (the lookup column that gives it and the rows' values of that column): when
    there are more than :data:`BULK_LOOKUP_MIN` (or the ids would take more than :data:`QUERY_JOB_CALLS`
    GETs) and the client has Bulk query jobs, the records are found
    by the parent's external id (``WHERE Event.Clio_Id__c IN (...)``): the same records as by the
    parents' ids, without long lists of ids in a query (Salesforce refuses more than 500 "junction ids"
    in one, and these objects are junctions).  ``few``: as :func:`lookup_records` (how many records of
    ``sobject`` the ledger says exist), for that look-up, and, without ``by_parent_key`` (or below its
    threshold), for the look-up by the ids: when the IN lists take more GETs than the pages (at most
    :data:`QUERY_JOB_CALLS`) every record with the key's first id field fills, those pages are read instead
    (``client.query_upto``; exact either way, as only the ids asked for are kept, compared as ids; not for
    ContentDocumentLink, which refuses such a query).  ``written``: :func:`lookup_records`."""
    # Filter on the first id field of the key: ContentDocumentLink refuses unfiltered queries.
    anchor = next((f for f in fields if f.endswith("Id")), fields[0])
    found: dict[tuple[str, ...], str] = {}
    values = sorted({str(r[anchor]) for r in records if r.get(anchor)})
    if by_parent_key is not None and _bulk_query(client) is not None and sobject != "ContentDocumentLink":
        col, keys = by_parent_key
        keys = {str(k) for k in keys if k is not None}
        if len(keys) > BULK_LOOKUP_MIN or sum(1 for _ in soql_in_chunks(values)) > QUERY_JOB_CALLS:
            path = f"{col.relationship}.{col.target_field}"
            for rec in lookup_records(client, sobject, ["Id", *fields, path], path, keys, few=few, written=written):
                found[natural_key_of(rec, fields)] = rec["Id"]
            return found
    parts = list(soql_in_chunks(values))
    if few is not None and few is not False and len(parts) > 1 and anchor.endswith("Id") \
            and sobject != "ContentDocumentLink":
        # few records of the object written so far: one REST read of every record with the anchor (fewer
        # pages than the IN lists' GETs, at most a query job's calls), kept when they are the ones asked
        # for; more records than that: its first GET was the one call spent, the GETs run as before
        expected = 1 if few is True else max(1, -(-int(few) // REST_QUERY_PAGE))
        upto = getattr(client, "query_upto", None)
        pages = min(len(parts) - 1, QUERY_JOB_CALLS)
        if expected <= pages and upto is not None:
            scanned = upto(f"SELECT Id, {', '.join(fields)} FROM {sobject} WHERE {anchor} != null",
                           max_pages=pages)
            if scanned is not None:
                wanted = {_norm_id(v) for v in values}  # ids: 15 characters compare case-sensitively
                for rec in scanned:
                    if _norm_id(rec.get(anchor)) in wanted:
                        found[natural_key_of(rec, fields)] = rec["Id"]
                return found
            log.info("existing %s keys of %d %s value(s): more records have one than %d page(s) hold", sobject,
                     len(values), anchor, pages)
    for part in parts:
        soql = f"SELECT Id, {', '.join(fields)} FROM {sobject} WHERE {soql_in(anchor, part)}"
        for rec in client.query_all_iter(soql):
            found[natural_key_of(rec, fields)] = rec["Id"]
    return found


#: ``known(object, external id field, values)``: Salesforce ids this run already has for some of
#: ``values`` (keyed by the value casefolded), e.g. ``clio2sf.pipeline.run_known_ids``.
KnownIds = Callable[[str, str, Iterable[str]], Mapping[str, str]]


def resolve_external_ids(
    client: LoadClient, sobject: str, envelopes: Sequence[Envelope], idx: Sequence[int],
    known: KnownIds | None = None,
) -> dict[str, dict[str, str]]:
    """Look up the Salesforce ids of every external id referenced by the rows' lookup columns.

    ``known``: ids this run already got from Salesforce (its own upserts' answers); the values it
    lacks are looked up in Salesforce as without it.  An id of a record deleted since then fails its
    row at the insert with Salesforce's own error (``ENTITY_IS_DELETED``)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for i in idx:
        for key, value in envelopes[i].row.items():
            if value is not None and Column.parse(key).is_reference:
                wanted[key].add(str(value))
    targets = client.reference_targets(sobject, wanted)
    resolved: dict[str, dict[str, str]] = {}
    for key, values in wanted.items():
        col = Column.parse(key)
        target = targets[key]
        got: dict[str, str] = {}
        if known is not None:
            hits = known(target, col.target_field, values)
            got = {v: hits[v.casefold()] for v in values if v.casefold() in hits}
            values = {v for v in values if v not in got}
            log.info("%s.%s: %d id(s) from this run's upserts, %d looked up", target, col.target_field,
                     len(got), len(values))
        folded = {v.casefold(): v for v in values}
        for rec in (lookup_records(client, target, ["Id", col.target_field], col.target_field, values)
                    if values else ()):
            v = rec.get(col.target_field)
            if v is not None:
                got[folded.get(str(v).casefold(), str(v))] = rec["Id"]
        resolved[key] = got
    return resolved


def natural_key_marker(key: Sequence[str]) -> str:
    return "|".join(key)


def _run_natural_key(
    client: LoadClient, envelopes: Sequence[Envelope], idx: Sequence[int], mode: str, row_cap: int,
    journal: WriteJournal, known: KnownIds | None = None, few: bool | int | None = False,
    new_anchors: Collection[str] = (), written: int = 0,
) -> list[RowOutcome]:
    """Insert the rows whose natural key Salesforce lacks.  Every attempt looks first, so a create whose
    answer was lost (``RESPONSE_LOST``) or whose worker died is found, not made twice.  ``known``: parent
    ids this run already has (:func:`resolve_external_ids`); which keys exist is asked of Salesforce
    (``few``: how, see :func:`_existing_natural_keys`), except for the rows whose key's first id field
    names one of ``new_anchors`` and that no attempt of this batch meant to write (``journal.intended``,
    this attempt's resends included): records the run created and on which no attempt of the run wrote a
    row of this object (the caller's word, ``pipeline.new_note_documents``), so none can exist."""
    sobject = envelopes[idx[0]].sobject
    resolved = resolve_external_ids(client, sobject, envelopes, idx, known)
    # First pass without "existing" to learn the candidate records for the existence query.
    draft = plan_natural_key_inserts(envelopes, resolved, {}, idx)
    fields = key_fields(envelopes[idx[0]])
    anchor = next((f for f in fields if f.endswith("Id")), fields[0])
    asked = draft.inserts
    if new_anchors:
        new = {_norm_id(v) for v in new_anchors}
        asked = [(i, r) for i, r in draft.inserts
                 if _norm_id(r.get(anchor)) not in new or envelopes[i].source_system_id in journal.intended]
        if len(asked) < len(draft.inserts):
            log.info("%s: %d of %d key(s) name a record this run created: not looked up", sobject,
                     len(draft.inserts) - len(asked), len(draft.inserts))
    col = _anchor_column(envelopes, [i for i, _ in asked], anchor) if asked else None
    existing = _existing_natural_keys(client, sobject, fields, [r for _, r in asked],
                                      (col, (envelopes[i].row[col.name] for i, _ in asked)) if col else None,
                                      few=few, written=written) if asked else {}
    del draft  # its flat records: the plan below makes them again (a load task holds every row)
    plan = plan_natural_key_inserts(envelopes, resolved, existing, idx)
    out = list(plan.failures)
    for i, sf_id in plan.existing:
        sid = envelopes[i].source_system_id
        # found, and an attempt of this batch meant to create it (only rows not found are ever
        # intended): that attempt's lost or unrecorded create
        ours = sf_id is not None and sid in journal.intended
        out.append(
            RowOutcome(i, sid, True, sf_id, ours, status=None if ours else "skipped", operation="insert")
        )

    def intend(part: Sequence[tuple[int, dict[str, Any]]]) -> None:
        journal.intend((envelopes[i].source_system_id, natural_key_marker(natural_key_of(rec, fields)))
                       for i, rec in part)

    if plan.inserts and mode == "bulk":
        flat = [Envelope(sobject, envelopes[i].source_system_id, rec) for i, rec in plan.inserts]
        for chunk in bulk_csv_chunks(flat, row_cap=row_cap):
            intend([plan.inserts[j] for j in chunk.indexes])
            try:
                res = client.bulk_ingest(sobject, "insert", chunk.data, None, rows=len(chunk.indexes))
                chunk.data = b""  # uploaded: not held while its results are read
            except Exception as exc:
                if not transient_exception(exc):
                    raise
                # the job may have run: the next attempt looks before inserting again
                out += [RowOutcome(plan.inserts[j][0], flat[j].source_system_id, False, operation="insert",
                                   errors=[SfError("RESPONSE_LOST", f"Bulk insert job: {type(exc).__name__}")])
                        for j in chunk.indexes]
                continue
            got = []
            for o in parse_bulk_results(
                chunk,
                flat,
                successful=res.successful,
                failed=res.failed,
                unprocessed=res.unprocessed,
                job_error=res.error_message,
                operation="insert",
            ):
                o.index = plan.inserts[o.index][0]
                o.created = o.success
                got.append(o)
            journal.done(got)
            out += got
    elif plan.inserts:
        for part in chunked(plan.inserts, COMPOSITE_CHUNK):
            intend(part)
            records = [{"attributes": {"type": sobject}, **rec} for _, rec in part]
            results = client.composite_create(records)
            got = parse_composite_results([i for i, _ in part], envelopes, results, operation="insert")
            journal.done(got)
            out += got
    return out


def _written_fields(envelopes: Sequence[Envelope], idx: Iterable[int], ext: str) -> list[str]:
    """The Salesforce fields the rows ``idx`` write (a lookup column as its id field), without Id and ``ext``."""
    fields = [Column.parse(key).id_field for key in header_union(envelopes[i].row for i in idx)]
    return [f for f in dict.fromkeys(fields) if f not in ("Id", ext)]


def capture_before_images(
    client: LoadClient, envelopes: Sequence[Envelope], idx: Sequence[int] | None = None,
    fields_of: Sequence[int] | None = None, *, few: bool | int | None = False, written: int = 0,
) -> dict[str, dict[str, Any]]:
    """Current values of the fields a batch is about to write, keyed by external id (for rollback): of
    the rows ``idx`` (all by default), the fields any row of ``fields_of`` (default ``idx``) writes.
    Only rows whose record exists have one, so the keys also say which exist.  ``few``: few records of
    the object are expected to have an external id (:func:`lookup_records`, as ``written``)."""
    idx = list(range(len(envelopes))) if idx is None else list(idx)
    if not idx or not envelopes[idx[0]].external_id_field:
        return {}
    env0 = envelopes[idx[0]]
    ext = env0.external_id_field
    fields = _written_fields(envelopes, idx if fields_of is None else fields_of, ext)
    out: dict[str, dict[str, Any]] = {}
    ids = {str(envelopes[i].row[ext]) for i in idx}
    found = lookup_records(client, env0.sobject, ["Id", ext, *fields], ext, ids, few=few, written=written)
    # Bulk rows are CSV text; REST rows pass typed_rows unchanged (their values are typed already)
    for rec in typed_rows(client, env0.sobject, found) if _bulk_query(client) is not None else found:
        out[str(rec[ext]).casefold()] = {"Id": rec["Id"], **{f: rec.get(f) for f in fields}}
    return out


def before_images_of(images: Mapping[str, Mapping[str, Any]], envelopes: Sequence[Envelope]) -> dict[str, dict[str, Any]]:
    """``images`` (:func:`capture_before_images` of more rows) cut to ``envelopes``: their rows' images, of
    the fields those rows write, as :func:`capture_before_images` of ``envelopes`` alone gives them."""
    if not envelopes or not envelopes[0].external_id_field:
        return {}
    ext = envelopes[0].external_id_field
    fields = _written_fields(envelopes, range(len(envelopes)), ext)
    keys = {str(e.external_id).casefold() for e in envelopes}
    return {k: {"Id": v["Id"], **{f: v.get(f) for f in fields}} for k, v in images.items() if k in keys}


def repeated_external_ids(envelopes: Sequence[Envelope], skip: Mapping[int, Any] = ()) -> dict[int, RowOutcome]:
    """Rows whose external id (case-insensitive) comes again later in the batch, as permanent failures.

    Salesforce fails *every* occurrence of an external id repeated within one request or Bulk job;
    only the last row of each is sent, and the earlier ones are rejected naming the field.
    """
    last: dict[str, int] = {}
    for i, e in enumerate(envelopes):
        if i not in skip and e.external_id_field:
            last[str(e.external_id).casefold()] = i
    out: dict[int, RowOutcome] = {}
    for i, e in enumerate(envelopes):
        if i not in skip and e.external_id_field and last[str(e.external_id).casefold()] != i:
            out[i] = RowOutcome(i, e.source_system_id, False, errors=[SfError(
                "DUPLICATE_EXTERNAL_ID", f"{e.external_id_field} {e.external_id} comes again later in this batch; "
                "only the last row with it was sent", (e.external_id_field,))])
    return out


def non_finite_numbers(envelopes: Sequence[Envelope], skip: Mapping[int, Any] = ()) -> dict[int, RowOutcome]:
    """Rows holding NaN or an infinity, as permanent failures naming the field.

    Neither JSON nor Salesforce has a form for them: sent, one such row would fail its whole
    sObject-collection request (``requests`` refuses to encode it) and Bulk would load the text
    ``nan``.  The row is rejected with its reason; the rest of the batch goes on.
    """
    out: dict[int, RowOutcome] = {}
    for i, e in enumerate(envelopes):
        if i in skip:
            continue
        bad = sorted(k for k, v in e.row.items() if isinstance(v, float) and not math.isfinite(v))
        if bad:
            out[i] = RowOutcome(i, e.source_system_id, False, errors=[SfError(
                "NON_FINITE_NUMBER", f"{e.source_system_id}: {', '.join(bad)}: NaN/Infinity is not a number "
                "Salesforce can store; the row was not sent", tuple(bad))])
    return out


def holds_bulk_null_marker(env: Envelope) -> bool:
    """True when a text value is ``#N/A``: Bulk API 2.0 would read it as null, so the row goes through REST."""
    return any(isinstance(v, str) and v.strip().upper() == NULL for v in env.row.values())


def _with_row_retries(
    run: Callable[[Sequence[int]], list[RowOutcome]],
    n: int,
    max_row_retries: int,
    retry_wait: float,
    sleep: Callable[[float], None],
    failed: Mapping[int, RowOutcome] | None = None,
) -> list[RowOutcome]:
    final: dict[int, RowOutcome] = dict(failed or {})
    pending = [i for i in range(n) if i not in final]
    attempt = 0
    while pending:
        attempt += 1
        outcomes = run(pending)
        pending = []
        for o in outcomes:
            o.attempts = attempt
            final[o.index] = o
            if o.transient and attempt <= max_row_retries:
                pending.append(o.index)
        if pending:  # codes and counts only: never record values
            codes = Counter(e.status_code for i in pending for e in final[i].errors if e.transient)
            log.warning("%d row(s) failed transiently (%s); resending them (attempt %d of %d)", len(pending),
                        ", ".join(f"{c} x{n}" for c, n in sorted(codes.items())), attempt + 1, max_row_retries + 1)
            sleep(retry_wait * 2 ** (attempt - 1))
    return [final[i] for i in sorted(final)]


def load_rows(
    client: LoadClient,
    envelopes: Sequence[Envelope],
    *,
    mode: Mode = "auto",
    bulk_threshold: int = 2000,
    max_row_retries: int = 3,
    row_cap: int = BULK_ROW_CAP,
    retry_wait: float = 2.0,
    capture_before: bool = False,
    before_images: Mapping[str, Mapping[str, Any]] | None = None,
    few_existing: bool | int | None = False,
    written: int = 0,
    known_ids: KnownIds | None = None,
    note_ids: Mapping[str, str] | None = None,
    new_anchors: Collection[str] = (),
    journal: WriteJournal | None = None,
    settle_before: Callable[[dict[str, dict[str, Any]]], dict[str, dict[str, Any]]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> LoadResult:
    """Load one batch; rows that fail with a transient error are resent up to ``max_row_retries`` times.

    ``journal`` (``clio2sf.ledger.BatchJournal``) gets an intent line before every write call and
    the call's results right after it.

    Rows with an external id are upserted (Bulk 2.0 or sObject collections); natural-key rows
    are resolved, checked for existence and only the missing ones inserted.  Rows are first
    passed through :func:`prepare_rows` (``note_ids``: ContentNote source id → ContentNote Id,
    from the ledger, for ContentDocumentLink rows of notes).  ContentVersion and ContentNote
    rows have their own loaders (:func:`load_content_versions`, :func:`load_content_notes`).
    ``before_images`` (with ``capture_before``): the rows' before-images the caller already took
    (:func:`capture_before_images` of these rows, or :func:`before_images_of`), used instead of asking again.
    ``settle_before`` (with ``capture_before``): called with the before-images (by external id) before the
    first write call, returns the ones to keep (a delta batch's: earlier attempts' values first, journalled:
    ``clio2sf.pipeline.earliest_images``).
    ``few_existing``: few records of the object are expected to exist (``few`` of :func:`lookup_records`:
    what the before-images, or a natural-key batch's look-up of existing keys, cost, never what they find).
    ``written``: the ledger's successful writes of the object, at least (0: unknown), for the look-ups of
    existing keys or before-images (:func:`_bulk_lookup`; again only their cost).  ``known_ids``: parent ids this run already
    has, for natural-key rows' look-ups (:func:`resolve_external_ids`).  ``new_anchors``: ids of records this
    run created on which no attempt of the run wrote a row of this natural-key object (ContentNote ids for
    their ContentDocumentLink rows: ``pipeline.new_note_documents``): keys naming them are not looked up
    unless this batch's journal says an attempt meant to write them (:func:`_run_natural_key`).
    """
    if not envelopes:
        return LoadResult([])
    _check_batch(envelopes)
    if envelopes[0].sobject in SPECIAL_LOADERS:
        raise ValueError(
            f"{envelopes[0].source_system_id}: {envelopes[0].sobject} rows go through "
            f"{SPECIAL_LOADERS[envelopes[0].sobject]}, not load_rows"
        )
    envelopes, failed = prepare_rows(client, envelopes, note_ids=note_ids)
    failed.update(non_finite_numbers(envelopes, failed))
    failed.update(repeated_external_ids(envelopes, failed))
    envelopes, have = _strip_create_only(client, envelopes, few_existing, written)
    natural = envelopes[0].external_id_field is None
    step: Callable[..., list[RowOutcome]] = (functools.partial(_run_natural_key, known=known_ids, few=few_existing,
                                                               new_anchors=new_anchors, written=written)
                                             if natural else _run_upsert)
    before: dict[str, dict[str, Any]] = {}
    if capture_before and not natural and before_images is not None:
        before = {k: dict(v) for k, v in before_images.items()}  # taken by the caller: not looked up again
    elif capture_before and not natural:
        # only rows already in Salesforce have a before-image: when the existence look-up above ran, ask
        # for theirs alone (none at all on a first load) instead of looking up every row again
        there = None if have is None else [i for i, e in enumerate(envelopes) if str(e.external_id).casefold() in have]
        if there is None or there:
            before = capture_before_images(client, envelopes, there, range(len(envelopes)), few=few_existing,
                                           written=written)
    if capture_before and not natural and settle_before is not None:
        before = settle_before(before)

    jr = journal if journal is not None else NoJournal()

    def run(idx: Sequence[int]) -> list[RowOutcome]:
        chosen = choose_mode(mode, len(idx), bulk_threshold)
        if chosen == "bulk":  # rows with the text "#N/A" go through REST, where it stays text
            rest = [i for i in idx if holds_bulk_null_marker(envelopes[i])]
            if rest:
                log.info("%d row(s) hold the text #N/A (the Bulk API's null marker): sent through REST", len(rest))
                taken = set(rest)
                bulk_idx = [i for i in idx if i not in taken]
                return step(client, envelopes, rest, "composite", row_cap, jr) + (
                    step(client, envelopes, bulk_idx, "bulk", row_cap, jr) if bulk_idx else [])
        return step(client, envelopes, idx, chosen, row_cap, jr)

    result = LoadResult(
        _with_row_retries(run, len(envelopes), max_row_retries, retry_wait, sleep, failed=failed)
    )
    for o in result.outcomes:
        ext = envelopes[o.index].external_id
        if ext is not None and ext.casefold() in before:
            result.before[o.source_system_id] = before[ext.casefold()]
    return result


# ---------------------------------------------------------------------------------------------
# ContentVersion (document bytes)

MULTIPART_THRESHOLD = 10 * 1024 * 1024
BASE64_JSON_LIMIT = 37_500_000  # base64 characters in a non-multipart JSON body (about 28 MB raw)


def base64_len(size: int) -> int:
    return 4 * ((size + 2) // 3)


def use_multipart(size: int, threshold: int = MULTIPART_THRESHOLD) -> bool:
    """Multipart above the threshold, and always when base64 JSON would pass Salesforce's cap."""
    return size >= threshold or base64_len(size) > BASE64_JSON_LIMIT


@dataclass(frozen=True)
class BlobDigest:
    size: int
    md5: str
    sha256: str


def digest_blob(fp: IO[bytes], chunk: int = 1 << 20) -> BlobDigest:
    """Stream a blob once for both checksums (sha256 from staging, md5 as Salesforce reports it)."""
    import hashlib

    md5, sha, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    while block := fp.read(chunk):
        md5.update(block)
        sha.update(block)
        size += len(block)
    return BlobDigest(size, md5.hexdigest(), sha.hexdigest())


class ContentClient(LoadClient, Protocol):
    def content_version_create(
        self,
        fields: Mapping[str, Any],
        open_blob: Callable[[], IO[bytes]],
        size: int,
        filename: str,
        multipart: bool,
    ) -> dict[str, Any]: ...


def _fail(i: int, env: Envelope, code: str, msg: str, fields: tuple[str, ...] = (), **kw: Any) -> RowOutcome:
    return RowOutcome(
        i, env.source_system_id, False, errors=[SfError(code, msg, fields)], operation="insert", **kw
    )


def _version_waves(envelopes: Sequence[Envelope]) -> list[list[int]]:
    """Row indexes in upload order: a row naming (``ContentVersion.Clio_Id__c``) a version of the same
    batch as its document comes in a later wave than that version, which creates the ContentDocument."""
    ext = {str(e.row.get("Clio_Id__c") or "").casefold(): i for i, e in enumerate(envelopes)}
    depth: dict[int, int] = {}

    def of(i: int, seen: frozenset[int] = frozenset()) -> int:
        if i not in depth:
            ref = envelopes[i].row.get(CV_DOCUMENT_COLUMN)
            j = ext.get(str(ref).casefold()) if ref is not None else None
            depth[i] = 0 if j is None or j == i or j in seen else of(j, seen | {i}) + 1
        return depth[i]

    waves: dict[int, list[int]] = defaultdict(list)
    for i in range(len(envelopes)):
        waves[of(i)].append(i)
    return [waves[k] for k in sorted(waves)]


def load_content_versions(
    client: ContentClient,
    envelopes: Sequence[Envelope],
    root: Any,
    **kwargs: Any,
) -> LoadResult:
    """Upload ContentVersion rows whose bytes sit at ``root / blob.path``; skip versions already there.

    Every attempt looks for the external id first; ``journal`` (keyword) gets an intent line before each
    upload, so a version found that an attempt of this batch meant to create (its answer was lost,
    ``RESPONSE_LOST``, or its worker died) is reported as created, not skipped.

    Each blob is checked against its staged sha256 before upload, and Salesforce's ``Checksum`` (md5)
    against the local md5 after.  Ledger ``file_ids`` are (ContentVersion Id, ContentDocumentId).
    A document's versions are loaded in order: the first creates the ContentDocument, each later row
    names it by ``ContentVersion.Clio_Id__c`` (the first version's external id) and becomes its next
    version, uploaded in a later wave when both sit in this batch.

    ``update_existing`` (keyword; a delta): a version already there whose title differs (the
    document was renamed in Clio) gets the new title, if it is the document's latest version.
    """
    waves = _version_waves(envelopes)
    if len(waves) <= 1:
        return _load_content_versions(client, envelopes, root, **kwargs)
    outcomes: list[RowOutcome] = []
    before: dict[str, dict[str, Any]] = {}
    for wave in waves:
        part = _load_content_versions(client, [envelopes[i] for i in wave], root, **kwargs)
        before.update(part.before)
        for o in part.outcomes:
            o.index = wave[o.index]
            outcomes.append(o)
    return LoadResult(sorted(outcomes, key=lambda o: o.index), before)


def _load_content_versions(
    client: ContentClient,
    envelopes: Sequence[Envelope],
    root: Any,
    *,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    max_row_retries: int = 3,
    retry_wait: float = 2.0,
    journal: WriteJournal | None = None,
    update_existing: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> LoadResult:
    if not envelopes:
        return LoadResult([])
    _check_batch(envelopes)
    ext = envelopes[0].external_id_field
    if envelopes[0].sobject != "ContentVersion" or not ext:
        raise ValueError(f"{envelopes[0].source_system_id}: not a ContentVersion row with an external id")
    envelopes, failed = prepare_rows(client, envelopes)
    jr = journal if journal is not None else NoJournal()
    before: dict[str, dict[str, Any]] = {}
    inline: dict[int, bytes] = {}
    for i, env in enumerate(envelopes):
        if "VersionData" in env.row:  # small inline image: base64 bytes carried in the row
            try:
                inline[i] = base64.b64decode(str(env.row.pop("VersionData")), validate=True)
            except (binascii.Error, ValueError):
                failed.setdefault(i, _fail(i, env, "BAD_VERSION_DATA", "VersionData is not base64", ("VersionData",)))

    def opener(i: int) -> Callable[[], IO[bytes]]:
        if i in inline:
            return lambda data=inline[i]: io.BytesIO(data)
        return lambda p=root / envelopes[i].blob["path"]: p.open("rb")

    def run(idx: Sequence[int]) -> list[RowOutcome]:
        out: list[RowOutcome] = []
        ready: list[tuple[int, BlobDigest]] = []
        for i in idx:
            env = envelopes[i]
            if i in inline:
                ready.append((i, digest_blob(io.BytesIO(inline[i]))))
                continue
            blob = env.blob or {}
            if not blob.get("path") or not blob.get("sha256"):
                why = "the file was not downloaded into staging" if blob.get("url") else "envelope has no blob path/sha256"
                out.append(_fail(i, env, "MISSING_BLOB", why, ("VersionData",)))
                continue
            try:
                with (root / blob["path"]).open("rb") as fh:
                    d = digest_blob(fh)
            except FileNotFoundError:
                out.append(
                    _fail(i, env, "MISSING_BLOB", f"blob {blob['path']} not in staging", ("VersionData",))
                )
                continue
            if d.sha256 != blob["sha256"]:
                out.append(
                    _fail(
                        i,
                        env,
                        "BLOB_CHECKSUM_MISMATCH",
                        "staged bytes do not match their sha256",
                        ("VersionData",),
                    )
                )
                continue
            ready.append((i, d))
        existing: dict[str, dict] = {}
        ids = sorted({str(envelopes[i].row[ext]) for i, _ in ready})
        for part in chunked(ids, SOQL_IN_CHUNK):
            soql = (f"SELECT Id, ContentDocumentId, Checksum, Title, IsLatest, {ext} FROM ContentVersion "
                    f"WHERE {soql_in(ext, part)}")
            for rec in client.query_all_iter(soql):
                existing[str(rec[ext]).casefold()] = rec
        resolved = resolve_external_ids(client, "ContentVersion", envelopes, [i for i, _ in ready])
        uploaded: list[tuple[int, BlobDigest, str]] = []
        renames: list[tuple[int, dict, tuple[str, str]]] = []
        for i, d in ready:
            env = envelopes[i]
            have = existing.get(str(env.row[ext]).casefold())
            if have:
                ids = (have["Id"], have.get("ContentDocumentId") or "")
                title = env.row.get("Title")
                if ((have.get("Checksum") or "").lower() == d.md5 and update_existing and title is not None
                        and title != have.get("Title") and have.get("IsLatest") is not False):
                    renames.append((i, have, ids))
                    continue
                if (have.get("Checksum") or "").lower() == d.md5:
                    ours = env.source_system_id in jr.intended
                    out.append(
                        RowOutcome(
                            i,
                            env.source_system_id,
                            True,
                            have["Id"],
                            ours,
                            status=None if ours else "skipped",
                            operation="insert",
                            file_ids=ids,
                        )
                    )
                else:
                    out.append(
                        _fail(
                            i,
                            env,
                            "EXISTING_VERSION_DIFFERS",
                            "a ContentVersion with this external id holds other bytes",
                            ("VersionData",),
                            sf_id=have["Id"],
                            file_ids=ids,
                        )
                    )
                continue
            rec, missing = resolve_row(env, resolved)
            if missing:
                col, id_field, value = missing[0]
                out.append(
                    _fail(
                        i, env, "INVALID_CROSS_REFERENCE_KEY", f"no record for {col} = {value}", (id_field,)
                    )
                )
                continue
            fallback_name = env.blob["path"].rsplit("/", 1)[-1] if i not in inline else env.source_system_id
            filename = str(rec.get("PathOnClient") or fallback_name)
            jr.intend([(env.source_system_id, str(env.row[ext]))])
            res = client.content_version_create(
                rec, opener(i), d.size, filename, use_multipart(d.size, multipart_threshold)
            )
            if res.get("success") and res.get("id"):
                uploaded.append((i, d, res["id"]))
            else:
                out.append(
                    RowOutcome(
                        i,
                        env.source_system_id,
                        False,
                        errors=parse_rest_errors(
                            res.get("errors") or [{"statusCode": "UNKNOWN_ERROR", "message": "upload failed"}]
                        ),
                        operation="insert",
                    )
                )
        for part in chunked(renames, COMPOSITE_CHUNK):
            results = client.composite_update([{"attributes": {"type": "ContentVersion"}, "id": have["Id"],
                                                "Title": envelopes[i].row["Title"]} for i, have, _ in part])
            for (i, have, ids), res in zip(part, results, strict=True):
                sid = envelopes[i].source_system_id
                if res.get("success"):
                    before[sid] = {"Id": have["Id"], "Title": have.get("Title")}
                    out.append(RowOutcome(i, sid, True, have["Id"], False, operation="update", file_ids=ids))
                else:
                    out.append(RowOutcome(i, sid, False, have["Id"], False, parse_rest_errors(
                        res.get("errors") or [{"statusCode": "UNKNOWN_ERROR"}]), operation="update", file_ids=ids))
        check: dict[str, dict] = {}
        for part in chunked([cv for _, _, cv in uploaded], SOQL_IN_CHUNK):
            soql = f"SELECT Id, ContentDocumentId, Checksum FROM ContentVersion WHERE {soql_in('Id', part)}"
            for rec in client.query_all_iter(soql):
                check[_norm_id(rec["Id"])] = rec
        for i, d, cv in uploaded:
            env = envelopes[i]
            rec = check.get(_norm_id(cv), {})
            ids = (cv, rec.get("ContentDocumentId") or "")
            if (rec.get("Checksum") or "").lower() == d.md5:
                done = RowOutcome(i, env.source_system_id, True, cv, True, operation="insert", file_ids=ids)
                jr.done([done])
                out.append(done)
            else:
                out.append(
                    _fail(
                        i,
                        env,
                        "CHECKSUM_MISMATCH",
                        f"Salesforce md5 {rec.get('Checksum')!r} differs from local {d.md5}",
                        ("VersionData",),
                        sf_id=cv,
                        file_ids=ids,
                    )
                )
        return out

    result = LoadResult(_with_row_retries(run, len(envelopes), max_row_retries, retry_wait, sleep, failed=failed))
    result.before.update(before)
    return result


# ---------------------------------------------------------------------------------------------
# ContentNote (HTML body, no custom fields: idempotent through the ledger and a title marker)

NOTE_MARKER = "[clio2sf {}] "
TITLE_MAX = 255


def note_marker_title(source_system_id: str, title: Any) -> str:
    """The title a note is created with: a marker naming its source record, then its own title.

    A note cannot carry ``Clio_Id__c``; the marker is what a later attempt finds it by when the
    answer to the create was lost or the worker died before the ledger had its Id.  Once the Id is
    on record the title is set to the real one."""
    return (NOTE_MARKER.format(source_system_id) + str(title or ""))[:TITLE_MAX]


def _instant(v: Any) -> str:
    """A date-time as UTC ``YYYY-MM-DDTHH:MM:SS`` (Salesforce keeps seconds), for comparing look-ups."""
    if v is None:
        return ""
    try:
        t = dt.datetime.fromisoformat(str(v).replace("Z", "+00:00").replace("+0000", "+00:00"))
    except ValueError:
        return str(v)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _note_record(env: Envelope) -> dict[str, Any]:
    rec = {k: json_value(v) for k, v in env.row.items()}
    content = rec.get("Content")
    if content is not None:
        rec["Content"] = base64.b64encode(str(content).encode("utf-8")).decode("ascii")
    return rec


def load_content_notes(
    client: LoadClient,
    envelopes: Sequence[Envelope],
    known_ids: Mapping[str, str] | None = None,
    *,
    update_existing: bool = False,
    max_row_retries: int = 3,
    retry_wait: float = 2.0,
    journal: WriteJournal | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> LoadResult:
    """Create ContentNotes; ``Content`` (HTML) is sent base64-encoded as Salesforce requires.  With a
    client that has ``composite_collections`` (the hook), the creates and the title updates go 1,000 notes
    a call (five sObject Collections in one ``/composite`` request), else 200 a call.

    ContentNote cannot carry ``Clio_Id__c``: ``known_ids`` (source id → ContentNote Id, from the
    ledger, journals of killed attempts included) is the idempotency key.  A note whose known Id
    still exists is skipped, or with ``update_existing`` (a delta: the note was edited in Clio)
    updated in place; one whose Id is gone (deleted, rolled back) is created again.

    Every create follows an intent line in ``journal``, and a row an attempt of this batch meant to
    create is looked for before it is created again, so a create whose answer was lost
    (``RESPONSE_LOST``) or whose worker was killed is found, never made twice.  What it is found by:
    when the org lets the row set ``CreatedDate`` (audit fields), its title and that original
    time (nothing else changes; an update would move ``LastModifiedDate``); otherwise a marker
    title (:func:`note_marker_title`) it is created with and which is replaced by the real title
    once its Id is journalled.  Ledger ``file_ids`` hold the ContentNote Id, which is also its
    ContentDocument Id (what ContentDocumentLink rows need).
    """
    if not envelopes:
        return LoadResult([])
    _check_batch(envelopes)
    if envelopes[0].sobject != "ContentNote":
        raise ValueError(f"{envelopes[0].source_system_id}: not a ContentNote row")
    envelopes, failed = prepare_rows(client, envelopes)
    jr = journal if journal is not None else NoJournal()
    known = {sid: sf for sid, sf in (known_ids or {}).items() if sf}
    alive: dict[str, str] = {}  # normalised Id -> current Title
    wanted = sorted({known[e.source_system_id] for e in envelopes if e.source_system_id in known})
    for part in chunked(wanted, SOQL_IN_CHUNK):
        for rec in client.query_all_iter(f"SELECT Id, Title FROM ContentNote WHERE {soql_in('Id', part)}"):
            alive[_norm_id(rec["Id"])] = str(rec.get("Title") or "")
    before: dict[str, dict[str, Any]] = {}
    # several collections a call when the client has them (``composite_collections``): the notes' creates
    # and title updates take one call per 1,000 notes instead of one per 200
    many = getattr(client, "composite_collections", None)
    chunk = COMPOSITE_CHUNK * (COMPOSITE_COLLECTIONS if many is not None else 1)
    create = functools.partial(many, "POST") if many is not None else client.composite_create
    update = functools.partial(many, "PATCH") if many is not None else client.composite_update

    taken = {_norm_id(v) for v in known.values()}

    def marked(env: Envelope) -> bool:
        return "CreatedDate" not in env.row  # without its original time a note needs the marker title

    def create_title(env: Envelope) -> str:
        return note_marker_title(env.source_system_id, env.row.get("Title")) if marked(env) else str(env.row.get("Title"))

    def look(idx: Sequence[int]) -> dict[int, str]:
        """Index → Id of the notes attempts of this batch created without the Id reaching the ledger."""
        wanted = [i for i in idx if envelopes[i].source_system_id in jr.intended]
        titles = sorted({create_title(envelopes[i]) for i in wanted})
        pool: dict[tuple[str, str], list[str]] = defaultdict(list)
        for part in chunked(titles, SOQL_IN_CHUNK):
            soql = f"SELECT Id, Title, CreatedDate FROM ContentNote WHERE {soql_in('Title', part)} ORDER BY Id"
            for rec in client.query_all_iter(soql):
                if _norm_id(rec["Id"]) not in taken:
                    pool[(str(rec["Title"]), "" if rec["Title"].startswith("[clio2sf ") else _instant(rec.get("CreatedDate")))].append(rec["Id"])
        found: dict[int, str] = {}
        for i in wanted:
            env = envelopes[i]
            key = (create_title(env), "" if marked(env) else _instant(env.row.get("CreatedDate")))
            if pool.get(key):
                found[i] = pool[key].pop(0)
                taken.add(_norm_id(found[i]))
        return found

    def run(idx: Sequence[int]) -> list[RowOutcome]:
        out: list[RowOutcome] = []
        finish: list[tuple[int, str, bool]] = []  # (index, note Id, created by us): set the real title
        fresh: list[int] = []
        for i in idx:
            env = envelopes[i]
            have = known.get(env.source_system_id)
            if have and _norm_id(have) in alive:
                unfinished = alive[_norm_id(have)].startswith(NOTE_MARKER.format(env.source_system_id))
                if unfinished or update_existing:
                    if update_existing and not unfinished:
                        before[env.source_system_id] = {"Id": have, "Title": alive[_norm_id(have)]}
                    finish.append((i, have, unfinished))
                else:
                    out.append(RowOutcome(i, env.source_system_id, True, have, False, status="skipped",
                                          operation="insert", file_ids=(have,)))
                continue
            fresh.append(i)
        found = look(fresh) if fresh else {}
        todo: list[tuple[int, dict[str, Any]]] = []
        for i in fresh:
            env = envelopes[i]
            if i in found:  # created by an attempt whose answer or ledger line was lost
                if marked(env):
                    finish.append((i, found[i], True))
                else:
                    out.append(RowOutcome(i, env.source_system_id, True, found[i], True, operation="insert",
                                          file_ids=(found[i],)))
                continue
            todo.append((i, {"attributes": {"type": "ContentNote"}, **_note_record(env), "Title": create_title(env)}))
        for part in chunked(todo, chunk):
            jr.intend((envelopes[i].source_system_id, r["Title"]) for i, r in part)
            results = create([r for _, r in part])
            made = parse_composite_results([i for i, _ in part], envelopes, results, operation="insert")
            for o in made:
                if o.success and o.sf_id:
                    o.file_ids = (o.sf_id,)
            jr.done(made)
            for o in made:
                if o.success and o.sf_id and marked(envelopes[o.index]):
                    finish.append((o.index, o.sf_id, True))
                else:
                    out.append(o)
        for part in chunked(finish, chunk):
            records = []
            for i, sf_id, created in part:
                rec = {"attributes": {"type": "ContentNote"}, "id": sf_id, "Title": envelopes[i].row.get("Title")}
                if not created:  # an edit: the body too (a new note already has it)
                    rec.update({k: v for k, v in _note_record(envelopes[i]).items() if k in ("Title", "Content")})
                records.append(rec)
            results = update(records)
            for (i, sf_id, created), res in zip(part, results, strict=True):
                sid = envelopes[i].source_system_id
                if res.get("success"):
                    out.append(RowOutcome(i, sid, True, sf_id, created, operation="insert" if created else "update",
                                          file_ids=(sf_id,)))
                else:  # the marker stays: the next attempt finds the note and tries again
                    errs = parse_rest_errors(res.get("errors") or [{"statusCode": "UNKNOWN_ERROR"}])
                    out.append(RowOutcome(i, sid, False, sf_id, created, errs, operation="update",
                                          file_ids=(sf_id,)))
        return out

    result = LoadResult(_with_row_retries(run, len(envelopes), max_row_retries, retry_wait, sleep, failed=failed))
    result.before.update(before)
    return result
