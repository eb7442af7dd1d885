"""The pure orchestration the DAG tasks call: lookups, transform of one raw batch, schema apply, load of
one transformed batch.  The DAG passes path objects (``ObjectStoragePath``/``pathlib``) and client
objects (``ClioSalesforceHook``); nothing here imports Airflow.  Only paths and counts are returned.

Staging layout (see docs/architecture.md); ``raw``, ``transformed`` and ``rejects`` sit under the
migration root for the full load, under ``sample/`` for the sample and ``delta/<window>/`` for a delta
window, so a sample's or a delta's rejects never overwrite the full load's::

    raw/<clio object>/batch-NNNNN.jsonl.gz
    transformed/<sobject>/<clio object>-batch-NNNNN.jsonl.gz
    rejects/transform/<clio object>/batch-NNNNN.jsonl
    rejects/load/<sobject>/<clio object>-batch-NNNNN.jsonl
    ledger/<run_id>/<phase>/<sobject>/<clio object>-batch-NNNNN.jsonl

A load group of several files is named ``<clio object>-batch-NNNNN-to-MMMMM`` (across Clio objects
``<clio object>-batch-NNNNN-to-<clio object>-batch-MMMMM``), a row slice of one file
``<clio object>-batch-NNNNN-rows-A-B`` (:func:`group_batches`, :func:`group_name`).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from clio2sf import ledger_index, staging
from clio2sf.access import AccessError, apply_permission_set
from clio2sf.ledger import LINE_KWARGS, BatchJournal, LedgerWriter, norm_id, parse_ledger_lines
from clio2sf.load import (
    COMPOSITE_CHUNK,
    NOTE_DOCUMENT_COLUMN,
    QUERY_JOB_CALLS,
    REST_QUERY_PAGE,
    SCAN_MAX_RATIO,
    SOQL_IN_CHUNK,
    SPECIAL_LOADERS,
    Envelope,
    LoadResult,
    before_images_of,
    capture_before_images,
    chunked,
    deferred_columns,
    existing_external_ids,
    ledger_kwargs,
    load_content_notes,
    load_content_versions,
    load_rows,
    reject_line,
    soql_in,
    split_deferred,
    write_rejects,
)
from clio2sf.mapping import money
from clio2sf.mapping.schema_plan import SchemaPlan
from clio2sf.mapping.spec import MappingSpec
from clio2sf.mapping.transform import LookupTables, transform_object
from clio2sf.mapping.users import UserMap

if TYPE_CHECKING:  # pyarrow is imported where the ledger index is read (not by a transform task)
    import pyarrow as pa

log = logging.getLogger(__name__)

#: Staged objects each transform reads through its lookup (see clio2sf.mapping.transform).
LOOKUP_NEEDS: dict[str, tuple[str, ...]] = {
    "contacts": ("matters", "activity_rates"),
    "matters": ("contacts",),
    "relationships": ("matters", "contacts"),
    "bills": ("matters", "contacts"),
    "bank_transactions": ("matters", "contacts", "bills"),
    "activities": ("matters",),
    "activity_rates": ("contacts",),
    "calendar_entries": ("matters", "calendar_entries"),
    "tasks": ("matters",),
    "communications": ("matters", "contacts"),
    "documents": ("matters", "contacts"),
    "matter_notes": ("matters", "contacts"),
    "contact_notes": ("matters", "contacts"),
} | money.LOOKUP_NEEDS


def _pick(d: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d[k] for k in keys if d.get(k) is not None}


def _ref(d: Mapping[str, Any], key: str, *fields: str) -> dict[str, Any] | None:
    v = d.get(key)
    return _pick(v, *fields) if isinstance(v, Mapping) else None


def _minimal(name: str, d: Mapping[str, Any], matter_object_field: str | None) -> dict[str, Any]:
    """Only the fields the transforms read from a looked-up record (memory stays small)."""
    if name == "contacts":
        out = {"type": d.get("type"), "company": _ref(d, "company", "id")}
        related = [_pick(r, "id", "type") for r in d.get("related_contacts") or ()
                   if isinstance(r, Mapping) and r.get("type") == "Company"]
        if related:  # only people related to companies carry it (memory stays small)
            out["related_contacts"] = related
        return out
    if name == "matters":
        out = {"client": _ref(d, "client", "id"), "billing_method": d.get("billing_method"),
               "practice_area": _ref(d, "practice_area", "name")}
        if matter_object_field:
            out["custom_field_values"] = [
                _pick(c, "field_name", "value", "picklist_option")
                for c in d.get("custom_field_values") or () if c.get("field_name") == matter_object_field
            ]
        return out
    if name == "activity_rates":
        return {"contact_id": d.get("contact_id"), "rate": d.get("rate"), "user": _ref(d, "user", "name"),
                "group": _ref(d, "group", "name")}
    return {}  # existence is all that is checked (bills, ...)


def lookup_names(clio_object: str) -> tuple[str, ...]:
    """The staged objects ``clio_object``'s transform needs in its lookup."""
    return LOOKUP_NEEDS.get(clio_object, ())


#: The fields of each looked-up object that :func:`_minimal` reads (``id`` for the rest): the staged
#: records are parsed into these alone (msgspec skips the others: ~15x faster on the sandbox firm's
#: 2 KB contacts than parsing whole records, which every transform task did for every contact).
_LOOKUP_FIELDS: dict[str, tuple[str, ...]] = {
    "contacts": ("id", "type", "company", "related_contacts"),
    "matters": ("id", "client", "billing_method", "practice_area", "custom_field_values"),
    "activity_rates": ("id", "contact_id", "rate", "user", "group"),
    "calendar_entries": ("id", "parent_calendar_entry_id", "start_at"),
}
_LOOKUP_DECODERS: dict[str, msgspec.json.Decoder] = {}


def _lookup_decoder(name: str) -> msgspec.json.Decoder:
    if name not in _LOOKUP_DECODERS:
        data = msgspec.defstruct(f"LookupData_{name}", [(f, Any, None) for f in _LOOKUP_FIELDS.get(name, ("id",))])
        env = msgspec.defstruct(f"LookupEnvelope_{name}", [("data", data | None, None)])
        _LOOKUP_DECODERS[name] = msgspec.json.Decoder(env)
    return _LOOKUP_DECODERS[name]


def _lookup_data(env: Any) -> Any:
    """The ``data`` of a look-up envelope as a dict: parsed into its fields, or whole (a line the typed
    parse refused, e.g. ``data`` that is not an object, is read as plain JSON and handled as before)."""
    if isinstance(env, msgspec.Struct):
        return None if env.data is None else msgspec.structs.asdict(env.data)
    return env.get("data")


def build_lookup(mroot: Any, names: Iterable[str], spec: MappingSpec | None = None,
                 tables: dict[str, dict[Any, Any]] | None = None) -> dict[str, dict[Any, Any]]:
    """Index staged objects for the transforms: ``{object: {clio id: minimal record}}``.

    ``calendar_entries`` is indexed as ``calendar_entry_overrides`` (``{parent id: [start_at, ...]}``),
    all a series expansion needs.  Objects never extracted are left out (their checks are skipped).
    A :class:`~clio2sf.mapping.transform.LookupTables`: the indexes the transforms derive from it are
    built once for all the batches a task transforms with it.

    Each table is kept beside its object's raw batches (``raw/<object>/_lookup.json.gz``) under a key
    naming every batch file's sha256, the matter-object option and this code's version of the minimal
    record: every transform task needs the firm's contacts and matters, and reading the compact table
    costs a fraction of parsing every staged record again.  A missing or stale table is rebuilt.

    ``tables``: tables already read by this task (``{object: table}``, filled here), so a task
    transforming several objects reads each table once; each call still returns only ``names``.
    """
    mof = spec.options.get("matter_object_field") if spec is not None else None
    out: dict[str, dict[Any, Any]] = LookupTables()
    for name in dict.fromkeys(names):
        label = "calendar_entry_overrides" if name == "calendar_entries" else name
        if tables is not None and name in tables:
            out[label] = tables[name]
            continue
        manifest = staging.read_manifest(mroot, name)
        if manifest is None:
            continue
        key = _lookup_key(name, manifest, mof)
        cache = staging.raw_dir(mroot, name) / LOOKUP_CACHE
        table = _read_lookup(cache, key) if key is not None else None
        if table is None:
            table = _build_table(mroot, name, manifest, mof)
            if key is not None:
                _write_lookup(cache, key, table)
        out[label] = table
        if tables is not None:
            tables[name] = table
    return out


#: File name of a cached look-up table in ``raw/<object>/`` (see :func:`build_lookup`).
LOOKUP_CACHE = "_lookup.json.gz"


def _build_table(mroot: Any, name: str, manifest: Mapping[str, Any], mof: str | None) -> dict[Any, Any]:
    decoder = _lookup_decoder(name)
    envs = (env for entry in manifest.get("batches", ())
            for env in staging.read_jsonl_gz(staging.raw_dir(mroot, name) / entry["file"], decoder))
    if name == "calendar_entries":
        overrides: dict[Any, list[str]] = defaultdict(list)
        for env in envs:
            d = _lookup_data(env) or {}
            if d.get("parent_calendar_entry_id") is not None and d.get("start_at"):
                overrides[str(d["parent_calendar_entry_id"])].append(d["start_at"])
        return dict(overrides)
    table: dict[Any, Any] = {}
    for env in envs:
        d = _lookup_data(env) or {}
        if d.get("id") is not None:
            table[d["id"]] = _minimal(name, d, mof)
    return table


_CODE_VERSION: list[str] = []


def _lookup_key(name: str, manifest: Mapping[str, Any], mof: str | None) -> str | None:
    """What a cached table was built from: every batch's sha256 (None when one has none: not cached),
    the option that changes a matter's minimal record and the code that builds it."""
    batches = manifest.get("batches") or []
    if not batches or any(not entry.get("sha256") for entry in batches):
        return None
    if not _CODE_VERSION:
        import inspect

        code = "".join(inspect.getsource(f) for f in (_minimal, _pick, _ref, _build_table, _lookup_data))
        _CODE_VERSION.append(hashlib.sha256((code + repr(_LOOKUP_FIELDS)).encode()).hexdigest())
    ident = json.dumps([name, mof if name == "matters" else None, _CODE_VERSION[0],
                        [[e["file"], e["sha256"]] for e in batches]], separators=(",", ":"))
    return hashlib.sha256(ident.encode()).hexdigest()


def _read_lookup(path: Any, key: str) -> dict[Any, Any] | None:
    try:
        if not path.exists():
            return None
        with path.open("rb") as fh:
            text = gzip.decompress(fh.read())
        try:
            doc = msgspec.json.decode(text)
        except msgspec.DecodeError:  # what msgspec refuses (a NaN rate) json reads as it was written
            doc = json.loads(text)
    except (OSError, ValueError, EOFError) as exc:
        log.warning("look-up table %s unreadable (%s): rebuilt from the raw batches", path, type(exc).__name__)
        return None
    if not isinstance(doc, dict) or doc.get("key") != key:
        return None
    rows = doc.get("rows")
    return dict(rows) if isinstance(rows, dict) else {k: v for k, v in rows}


def _write_lookup(path: Any, key: str, table: Mapping[Any, Any]) -> None:
    """Keep the table for the next task (ids stay ints or strings: rows are [id, record] pairs)."""
    rows: Any = table if all(isinstance(k, str) for k in table) else [[k, v] for k, v in table.items()]
    try:
        staging.write_bytes_atomic(path, gzip.compress(json.dumps({"key": key, "rows": rows}, separators=(",", ":"))
                                                       .encode(), 1, mtime=0))
    except OSError as exc:  # the table is only a shortcut: the next task builds it again
        log.warning("look-up table %s not kept (%s)", path, type(exc).__name__)


def _batch_of(path: Any) -> str:
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def clio_object_of(path: Any) -> str:
    """The Clio object a transformed file (or a :class:`RowSlice` of one) was made from:
    ``tasks`` of ``transformed/Task/tasks-batch-00001.jsonl.gz``."""
    return _batch_of(path).split("-batch-")[0]


#: Rows a full-load task loads at least (when the object has that many).  A Bulk API 2.0 job costs
#: about 5 calls whatever its size (create, upload, close, status, successful results; the failed and
#: unprocessed files only when the job says they hold rows) and a look-up at least 3 (a query job):
#: 2,000-row tasks cost ~10 calls per 2,000 rows (sObject collections: 2,000 rows are below the Bulk
#: threshold), 20,000-row tasks ~3-7 per 10,000 (``benchmarks.bench_load_calls``).
#: ContentVersion (the documents' bytes) keeps one file per task (:data:`ONE_FILE_A_TASK`).
LOAD_GROUP_ROWS = 20_000

#: Objects whose transformed files load one per task: ContentVersion uploads each row's bytes, which
#: the rows' count and JSONL size do not bound.  ContentNote files are grouped like any object's (their
#: bodies are in the JSONL, so :data:`LOAD_GROUP_MAX_BYTES` bounds them): one task's notes share the
#: ``/composite`` calls of 1,000 notes and one look-up of the ledger's ids, where one task a file paid a
#: part-filled call of creates and one of titles per file (the large firm: 6,409 notes in 5 tasks, 20 calls).
ONE_FILE_A_TASK = frozenset({"ContentVersion"})

#: Rows a full-load task loads at most (so groups of small files hold exactly this many).  A task
#: holds its rows in memory (envelopes, the Bulk CSV, the results, the ledger lines): ~5 KB a row of
#: Event or EventRelation over a ~210 MB process, ~8 KB when the records exist and their before-images
#: are kept for rollback (``benchmarks.bench_load_task_memory``), so one transformed file of recurring
#: calendar entries (~100,000 EventRelation rows from 2,000 entries) took a task to 780 MB.  A file
#: larger than this is loaded in equal row slices (:class:`RowSlice`), each above half of it (10,000
#: rows), so each still pays for its Bulk job.
LOAD_GROUP_MAX_ROWS = 20_000

#: Uncompressed JSONL bytes a full-load task loads at most: rows with long texts (e-mail bodies,
#: descriptions) cost memory by their size, not their count (20,000 Event rows are ~12 MB).
LOAD_GROUP_MAX_BYTES = 24 * 1024 * 1024

#: How a :class:`RowSlice` is written in a work item: ``<path>#rows=<start>-<stop>``.
ROWS_MARK = "#rows="


@dataclass(frozen=True)
class RowSlice:
    """Lines ``start`` to ``stop - 1`` (0-based) of one transformed file: one load task's part of a
    file holding more than :data:`LOAD_GROUP_MAX_ROWS` rows (or :data:`LOAD_GROUP_MAX_BYTES`)."""

    path: Any
    start: int
    stop: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def parent(self) -> Any:
        return self.path.parent


def count_rows(path: Any) -> int:
    """Lines of a gzip JSONL file, streamed (no record is parsed)."""
    return measure_rows(path)[0]


def measure_rows(path: Any) -> tuple[int, int]:
    """(lines, uncompressed bytes) of a gzip JSONL file, streamed (no record is parsed)."""
    n = size = 0
    with path.open("rb") as raw:
        data = raw.read()
    with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as gz:
        while block := gz.read(1 << 20):
            n += block.count(b"\n")
            size += len(block)
    return n, size


def group_batches(paths: Sequence[Any], sobject: str, rows: int | None = None,
                  count: Callable[[Any], tuple[int, int]] = measure_rows, *, max_rows: int | None = None,
                  max_bytes: int | None = None) -> list[list[Any]]:
    """Consecutive transformed files of one Salesforce object, grouped until a group holds ``rows`` rows,
    so a load task reaches the Bulk threshold (see :data:`LOAD_GROUP_ROWS`), and never more than
    ``max_rows`` rows or ``max_bytes`` bytes (:data:`LOAD_GROUP_MAX_ROWS`, :data:`LOAD_GROUP_MAX_BYTES`),
    so a load task's memory does not grow with the firm.  A file over either bound is split into equal
    :class:`RowSlice` groups of one slice each.  Files of different Clio objects (``activities-``,
    ``communications-``, ``tasks-`` of Task) share a group like files of one: an object fed by several
    Clio objects (Rate_Structure__c by four, 2,919 rows in the large firm) loads in one Bulk job, not
    one job or a few sObject collections per Clio object (their rows are upserts by the same external
    id field, or inserts by natural key, written as one CSV with the union of their columns: a column
    a row lacks is an empty cell, the field untouched, as in a file of one Clio object).  ContentVersion
    files are never grouped (:data:`ONE_FILE_A_TASK`).

    The groups follow from the files alone (their order, rows and bytes): listing them again, as a
    retried or cleared ``list_batches`` does, gives the same groups and names (:func:`group_name`).
    ``count``: (rows, uncompressed bytes) of a file."""
    if sobject in ONE_FILE_A_TASK:
        return [[p] for p in paths]
    rows = LOAD_GROUP_ROWS if rows is None else rows
    max_rows = LOAD_GROUP_MAX_ROWS if max_rows is None else max_rows
    max_bytes = LOAD_GROUP_MAX_BYTES if max_bytes is None else max_bytes
    groups: list[list[Any]] = []
    have = have_bytes = 0
    open_group = False  # the last group may take the next file
    for p in paths:
        n, size = count(p)
        pieces = min(n, max(-(-n // max_rows), -(-size // max_bytes)))
        if pieces > 1:
            cuts = record_cuts(p, pieces)
            groups += [[RowSlice(p, a, b)] for a, b in zip(cuts, cuts[1:], strict=False)]
            open_group = False
            continue
        if not open_group or have >= rows or have + n > max_rows or have_bytes + size > max_bytes:
            groups.append([])
            have = have_bytes = 0
            open_group = True
        groups[-1].append(p)
        have += n
        have_bytes += size
    return groups


class _SourceId(msgspec.Struct):
    source_system_id: Any = None


_SOURCE_ID_DECODER = msgspec.json.Decoder(_SourceId)


def record_cuts(path: Any, pieces: int) -> list[int]:
    """Line numbers cutting a transformed file into about ``pieces`` equal slices: ``[0, ..., lines]``.

    A cut never falls between two rows of one Clio record (:func:`clio2sf.verify.base_id`: an event's
    occurrences and their attendees' EventRelation rows stay in one slice), so slices loaded at once
    never carry the same record's rows (or one natural key twice) into two tasks: each cut moves
    forward to the next line of another record."""
    bases: list[str] = []
    with path.open("rb") as raw:
        data = raw.read()
    with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as gz:
        tail = b""
        while True:
            block = gz.read(1 << 20)
            lines = (tail + block).split(b"\n")
            tail = lines.pop()  # at the end: what follows the last newline (nothing in a written file)
            if not block and tail:
                lines.append(tail)
            for line in lines:
                try:
                    sid = _SOURCE_ID_DECODER.decode(line).source_system_id if line.strip() else None
                except (msgspec.DecodeError, UnicodeDecodeError):
                    sid = None  # the load names the bad line; here it is one more line
                bases.append(str(sid).split("#", 1)[0].split("@", 1)[0] if sid is not None else "")
            if not block:
                break
    n = len(bases)
    cuts = [0]
    for k in range(1, pieces):
        c = max(n * k // pieces, cuts[-1] + 1)
        while 0 < c < n and bases[c] and bases[c] == bases[c - 1]:
            c += 1
        if c >= n:
            break
        cuts.append(c)
    return cuts + [n]


def group_name(paths: Sequence[Any]) -> str:
    """The ledger/rejects name of a group of transformed files: ``contacts-batch-00001-to-00005``, across
    Clio objects ``activities-batch-00001-to-tasks-batch-00002`` (never the name of a group of one Clio
    object's files), or of a slice of one: ``calendar_entries-batch-00001-rows-1-34108`` (lines 1 to
    34,108, 1-based)."""
    first = _batch_of(paths[0])
    if isinstance(paths[0], RowSlice):
        if len(paths) != 1:
            raise ValueError(f"{first}: a row slice is a load group of its own")
        return f"{first}-rows-{paths[0].start + 1}-{paths[0].stop}"
    if len(paths) == 1:
        return first
    last = _batch_of(paths[-1])
    if last.split("-batch-")[0] != first.split("-batch-")[0]:
        return f"{first}-to-{last}"
    return f"{first}-to-{last.rsplit('-', 1)[-1]}"


def work_item(group: Sequence[Any]) -> str | list[str]:
    """A group as a DAG work item (XCom): one file's path, a list of them, or one ``<path>#rows=a-b``."""
    refs = [f"{p.path}{ROWS_MARK}{p.start}-{p.stop}" if isinstance(p, RowSlice) else str(p) for p in group]
    return refs[0] if len(refs) == 1 else refs


def parse_work_item(item: str | Sequence[str], make_path: Callable[[str], Any]) -> list[Any]:
    """The group a :func:`work_item` names: paths (``make_path(str)``) or one :class:`RowSlice`."""
    out: list[Any] = []
    for ref in [item] if isinstance(item, str) else list(item):
        path, mark, span = ref.partition(ROWS_MARK)
        if not mark:
            out.append(make_path(ref))
            continue
        a, _, b = span.partition("-")
        if not (a.isdigit() and b.isdigit() and int(a) < int(b)):
            raise ValueError(f"{ref}: bad row slice (expected {ROWS_MARK}<start>-<stop>)")
        out.append(RowSlice(make_path(path), int(a), int(b)))
    return out


#: zlib level of the transformed files, a hand-off the load reads once: on the sandbox firm's
#: contacts level 6 cost ~13 µs of the ~75 µs a record took to transform, level 1 ~5 µs.
TRANSFORMED_GZIP_LEVEL = 1


#: A file's pending lines compressed when this many wait (LinesGz.flush: ~1-3 MB of lines).
_FLUSH_LINES = 4096

_INF = float("inf")
#: The value types of a row msgspec writes as json does (a float is checked for NaN and infinities).
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
_FLOAT_ROW_TYPES = _PLAIN_TYPES | {float}
_INFINITIES = frozenset({_INF, -_INF})


def _scalar_finite_row(env: Mapping[str, Any]) -> bool:
    """A transformed envelope msgspec may write (:func:`clio2sf.staging.encode_jsonl_gz`): its row holds
    scalars and no NaN or infinity (a value passed through from a raw NaN stays NaN, written by json)."""
    values = env["row"].values()
    types = set(map(type, values))
    if types <= _PLAIN_TYPES:  # the common row, checked in C
        return True
    if types <= _FLOAT_ROW_TYPES:  # with floats (a rate, an amount): each checked in C too
        floats = list(filter(float.__instancecheck__, values))
        return _INFINITIES.isdisjoint(floats) and all(map(float.__eq__, floats, floats))  # NaN != NaN
    for v in values:
        t = type(v)
        if t is float:
            if v != v or v == _INF or v == -_INF:
                return False
        elif t is not str and t is not int and t is not bool and v is not None:
            return False
    return True


def transform_batch(
    raw_batch_path: Any,
    clio_object: str,
    spec: MappingSpec,
    user_map: UserMap,
    lookup: Mapping[str, Any] | Callable[[str], Any] | None,
    out_root: Any,
    *,
    horizon: datetime | None = None,
) -> dict[str, Any]:
    """Transform one raw batch into ``transformed/<sobject>/<clio_object>-<batch>.jsonl.gz`` files and
    ``rejects/transform/<clio_object>/<batch>.jsonl``; return counts and paths (JSON-able, for XCom).

    Rejects include repairs (``repair`` set, the record still loads); ``quarantined`` counts the
    records that do not load.
    """
    batch = _batch_of(raw_batch_path)
    # each row is encoded as it comes (a calendar entry's occurrences are many rows) and each 1 MB of a
    # file's lines compressed once complete (staging.LinesGz): what waits for the file is its compressed
    # part and < 1 MB of lines, not the row's dicts nor the batch's lines (a calendar batch's Event lines
    # are ~35 MB: the calendar's task peaked at 191 MB, now 124)
    files: dict[str, staging.LinesGz] = {}
    rejects: list[dict[str, Any]] = []
    records = 0

    def counted(envs: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        nonlocal records
        for env in envs:
            records += 1
            yield env

    def pending(sobject: str) -> list[bytes]:
        file = files.get(sobject)
        if file is None:
            file = files[sobject] = staging.LinesGz(TRANSFORMED_GZIP_LEVEL)
        elif len(file.lines) >= _FLUSH_LINES:
            file.flush()
        return file.lines

    results = transform_object(clio_object, counted(staging.read_jsonl_gz(raw_batch_path)), spec, user_map,
                               lookup=lookup, horizon=horizon, lines=True)
    encode, fast_encode, plain, with_floats = staging.encode_line, staging.fast_encoder(), _PLAIN_TYPES, _FLOAT_ROW_TYPES
    infinities, is_float, same = _INFINITIES, float.__instancecheck__, float.__eq__
    for res in results:
        if "rule" in res:  # is_reject, inline (a calendar batch yields ~100 rows a record)
            rejects.append(res)
        elif "lines" in res:  # a calendar series' Event or EventRelation rows, encoded from their templates
            pending(res["sobject"]).extend(res["lines"])
        elif (types := set(map(type, values := res["row"].values()))) <= plain:  # _scalar_finite_row, inline
            pending(res["sobject"]).append(fast_encode(res))
        elif types <= with_floats and infinities.isdisjoint(floats := list(filter(is_float, values))) \
                and all(map(same, floats, floats)):  # its rows with floats (~60k of the large firm's), no NaN
            pending(res["sobject"]).append(fast_encode(res))
        else:  # what _scalar_finite_row refuses: json's line
            pending(res["sobject"]).append(encode(res))
    paths: dict[str, str] = {}
    for sobject, file in sorted(files.items()):
        path = out_root / "transformed" / sobject / f"{clio_object}-{batch}.jsonl.gz"
        file.write(path)
        paths[sobject] = str(path)
    rejects_path = write_rejects(out_root, "transform", clio_object, batch, rejects) if rejects else None
    quarantined = [r for r in rejects if r.get("repair") is None]
    return {
        "object": clio_object,
        "batch": batch,
        "records": records,
        "rows": {s: len(f) for s, f in sorted(files.items())},
        "paths": paths,
        "rejects": len(quarantined),
        "repairs": len(rejects) - len(quarantined),
        "rejects_by_rule": dict(Counter(r["rule"] for r in quarantined)),
        "repairs_by_rule": dict(Counter(r["rule"] for r in rejects if r.get("repair") is not None)),
        "rejects_path": str(rejects_path) if rejects_path is not None else None,
    }


# ---------------------------------------------------------------------------------------------
# schema


class SchemaApplyError(RuntimeError):
    """Some schema items could not be created; the message lists them with Salesforce's error code."""


def transform_staged(spec: MappingSpec, user_map: UserMap, mroot: Any) -> Iterator[dict[str, Any]]:
    """Transform every staged raw batch of every object the transform produces, one object at a time
    (its look-ups built once); yield :func:`transform_batch`'s result per batch.  For tests and
    benchmarks that run the pipeline without the DAG's task fan-out."""
    from clio2sf.mapping.transform import PRODUCES

    for name in PRODUCES:
        manifest = staging.read_manifest(mroot, name)
        if manifest is None:
            continue
        lookup = build_lookup(mroot, lookup_names(name), spec)
        for entry in manifest["batches"]:
            yield transform_batch(staging.raw_dir(mroot, name) / entry["file"], name, spec, user_map, lookup, mroot)


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", "") or type(exc).__name__)


def existing_schema(hook: Any) -> dict[str, set]:
    """What the org already has, from the Tooling API: custom objects, (object, field) pairs, record types."""
    objects = {r["Id"]: f"{r['DeveloperName']}__c" for r in hook.tooling_query("SELECT Id, DeveloperName FROM CustomObject")}
    fields = set()
    for r in hook.tooling_query("SELECT Id, DeveloperName, TableEnumOrId FROM CustomField"):
        table = objects.get(r.get("TableEnumOrId"), r.get("TableEnumOrId"))
        fields.add((str(table).lower(), f"{r['DeveloperName']}__c".lower()))
    rtypes = {(str(r["SobjectType"]).lower(), str(r["DeveloperName"]).lower())
              for r in hook.query_all("SELECT Id, DeveloperName, SobjectType FROM RecordType")}
    return {"objects": {o.lower() for o in objects.values()}, "fields": fields, "record_types": rtypes}


def apply_schema_plan(hook: Any, plan: SchemaPlan, *, activity_fallback: bool = False,
                      grant_access: bool = True) -> dict[str, list[str]]:
    """Create the plan's custom objects, fields and record types that the org lacks, then grant the
    integration user access to them (idempotent).

    The Tooling API is queried first; existing items are skipped, and a ``DUPLICATE_DEVELOPER_NAME``
    answer (a concurrent creation) counts as existing.  ``activity_fallback``: when the org refuses
    ``Activity.<field>`` with ``INVALID_TYPE`` (emulators; real Salesforce accepts it), the field is
    created on Task and on Event instead and listed under ``fallback``.  ``grant_access``: create
    and assign the ``Clio_Migration`` permission set (:func:`clio2sf.access.apply_permission_set`);
    its grants are listed under ``granted``, ``objects_granted`` and ``assigned``.

    :raises SchemaApplyError: after trying everything, when any item failed.
    """
    have = existing_schema(hook)
    out: dict[str, list[str]] = {"created": [], "existing": [], "fallback": [], "failed": []}

    def attempt(name: str, create: Callable[[], Any]) -> str | None:
        try:
            create()
        except Exception as exc:  # the hook's typed errors live in plugins/, not importable here
            code = _error_code(exc)
            if code == "DUPLICATE_DEVELOPER_NAME":
                out["existing"].append(name)
                return None
            return code
        out["created"].append(name)
        return None

    for kind, body in plan.tooling_payloads():
        full, md = body["FullName"], body["Metadata"]
        table, _, item = full.partition(".")
        if kind == "CustomObject":
            if full.lower() in have["objects"]:
                out["existing"].append(full)
            elif code := attempt(full, lambda f=full, m=md: hook.create_custom_object(f, m)):
                out["failed"].append(f"{full}: {code}")
            continue
        if kind == "RecordType":
            if (table.lower(), item.lower()) in have["record_types"]:
                out["existing"].append(full)
            elif code := attempt(full, lambda t=table, i=item, m=md: hook.create_record_type(t, i, m["label"], m.get("active", True))):
                out["failed"].append(f"{full}: {code}")
            continue
        if (table.lower(), item.lower()) in have["fields"]:
            out["existing"].append(full)
            continue
        code = attempt(full, lambda t=table, i=item, m=md: hook.create_custom_field(t, i, m))
        if code == "INVALID_TYPE" and table == "Activity" and activity_fallback:
            for sub in ("Task", "Event"):
                name = f"{sub}.{item}"
                if (sub.lower(), item.lower()) in have["fields"]:
                    out["existing"].append(name)
                elif sub_code := attempt(name, lambda s=sub, i=item, m=md: hook.create_custom_field(s, i, m)):
                    out["failed"].append(f"{name}: {sub_code}")
                else:
                    out["fallback"].append(name)
        elif code:
            out["failed"].append(f"{full}: {code}")
    if grant_access:
        try:
            out.update(apply_permission_set(hook, plan.access, planned=plan.planned_fields()))
        except AccessError as exc:
            out["failed"].append(str(exc))
    if out["failed"]:
        raise SchemaApplyError(f"{len(out['failed'])} schema item(s) failed: " + "; ".join(out["failed"][:20]))
    return out


# ---------------------------------------------------------------------------------------------
# load


def ledger_sf_ids(mroot: Any, sobject: str, source_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Source id → Salesforce id of the latest successful write of ``sobject`` in any run's ledger.

    With ``source_ids``, only those are looked up through the ledger index (memory: the asked ids,
    not the ledger); without, every source id of ``sobject`` (reports and tests)."""
    if source_ids is not None:
        return ledger_index.latest_sf_ids(mroot, sobject, source_ids)
    import pyarrow as pa

    t = ledger_index.latest(ledger_index.scan(mroot, sobject, lambda t: pa.array([True] * t.num_rows)))
    return dict(zip(t["source_system_id"].to_pylist(), t["sf_id"].to_pylist(), strict=True))


def owned_fields(spec: MappingSpec, sobject: str, clio_object: str) -> list[str]:
    """Plain Salesforce fields the mapping writes on ``sobject`` rows made from ``clio_object``.

    Only when exactly one spec entry maps that pair (variants such as ``Task@time_entries`` would
    otherwise claim each other's fields); owners and lookups are left out."""
    entries = []
    for key, ospec in spec.objects.items():
        src = ospec.get("source")
        if key.split("@", 1)[0] == sobject and clio_object in (src if isinstance(src, list) else [src]):
            entries.append(ospec)
    if len(entries) != 1:
        return []
    out = []
    for name, fspec in (entries[0].get("fields") or {}).items():
        if "." in name or name in ("Id", "OwnerId") or (isinstance(fspec, Mapping) and "owner" in fspec):
            continue
        out.append(name)
    return out


def with_cleared_fields(client: Any, envs: list[Envelope], fields: Iterable[str] | Mapping[str, Iterable[str]],
                        owners: Sequence[str] | None = None) -> tuple[list[Envelope], int]:
    """Rows of records already in Salesforce get ``None`` (Bulk ``#N/A``, REST null) for each owned field
    they lack: the value was cleared in Clio.  Only fields the org lets be nulled (updateable,
    nillable); new records keep the org's defaults.  Returns (rows, fields nulled).

    ``fields``: the owned fields of every row, or, for rows made from several Clio objects (a load group
    spanning them), a mapping Clio object -> its owned fields with ``owners`` naming each row's Clio object
    (a row is cleared only with its own object's fields: a Task from ``tasks`` never loses a field only
    ``activities`` write, nor keeps a ``tasks`` field cleared in Clio)."""
    if not envs or not envs[0].external_id_field:
        return envs, 0
    meta = {f["name"]: f for f in client.describe(envs[0].sobject).get("fields") or ()}
    ext = envs[0].external_id_field

    def nullable(names: Iterable[str]) -> list[str]:
        return [f for f in dict.fromkeys(names) if f != ext and meta.get(f, {}).get("updateable")
                and meta[f].get("nillable") and not meta[f].get("calculated")]

    if isinstance(fields, Mapping):
        if owners is None or len(owners) != len(envs):
            raise ValueError("cleared fields per Clio object need each row's Clio object (owners)")
        by_owner = {k: nullable(v) for k, v in fields.items()}
        if missing := sorted(set(owners) - set(by_owner)):
            raise ValueError(f"no cleared fields given for rows of {', '.join(missing)}")
        clears: Sequence[list[str]] = [by_owner[o] for o in owners]
        if not any(by_owner.values()):
            return envs, 0
    else:
        clear = nullable(fields)
        if not clear:
            return envs, 0
        clears = [clear] * len(envs)
    have = existing_external_ids(client, envs)
    out, n = [], 0
    for e, clear in zip(envs, clears, strict=True):
        missing = [f for f in clear if f not in e.row] if str(e.external_id).casefold() in have else []
        if missing:
            n += len(missing)
            e = Envelope(e.sobject, e.source_system_id, {**e.row, **dict.fromkeys(missing)}, e.external_id_field,
                         e.natural_key, e.blob)
        out.append(e)
    return out, n


def earlier_before_images(path: Any) -> dict[str, dict[str, Any]]:
    """The before-images in a batch's ledger file (``path``) from an earlier attempt that completed (a retried
    task runs every batch again, and this one overwrites the file), by Salesforce id (15 characters)."""
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        lines = parse_ledger_lines(fh.read().decode("utf-8"), where=str(path))
    return {norm_id(line["sf_id"]): line["before"] for line in lines
            if line.get("status") == "ok" and line.get("sf_id") and not line.get("created")
            and line.get("operation") != "delete" and isinstance(line.get("before"), dict)}


def earlier_lines(path: Any) -> dict[str, dict[str, Any]]:
    """The successful lines of a batch's ledger file (``path``) an earlier attempt wrote, as
    :meth:`clio2sf.ledger.LedgerWriter.record` keyword arguments, by Salesforce id (15 characters)."""
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        lines = parse_ledger_lines(fh.read().decode("utf-8"), where=str(path))
    return {norm_id(line["sf_id"]): {k: line.get(k) for k in LINE_KWARGS} for line in lines
            if line.get("status") == "ok" and line.get("sf_id")}


def earliest_images(images: Mapping[str, Mapping[str, Any]], *, journal: BatchJournal,
                    earlier: Callable[[], Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """A delta batch's before-images (``images``, as ``load_rows`` took them: by external id) with each field as it
    was before the batch's first attempt: from the batch's ledger file an earlier attempt completed (``earlier()``:
    :func:`earlier_before_images`) or from the journal of one that died after writing
    (:meth:`clio2sf.ledger.BatchJournal.remember`); this attempt's are journalled before it writes
    (``load_rows``'s ``settle_before``)."""

    def older(image: Mapping[str, Any], old: Mapping[str, Any] | None) -> dict[str, Any]:
        return {**image, **{f: old[f] for f in image if f in old}} if old else dict(image)

    if not images:
        return {}
    ledgered = earlier()
    merged = {k: older(v, ledgered.get(norm_id(v.get("Id")))) for k, v in images.items() if v.get("Id")}
    seen = journal.remember("before_image", {v["Id"]: v for v in merged.values()})
    return {k: older(v, seen.get(norm_id(v["Id"]))) for k, v in merged.items()}


def ledger_links(mroot: Any, sobject: str, envs: Sequence[Envelope]) -> Any:
    """The latest successful ledger write of every ``sobject`` row whose Clio record (:func:`base_id`) is
    one of ``envs``' (a link's earlier rows), read through the ledger index.

    A DataFrame with ``object, source_system_id, sf_id, at, run_id, phase, operation`` (as
    :func:`clio2sf.ledger.last_write_by_record`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from clio2sf.verify import base_id

    bases = pa.array(sorted({base_id(e.source_system_id) for e in envs}), pa.string())

    def keep(t: pa.Table) -> Any:
        sid = t["source_system_id"]
        base = pc.replace_substring_regex(sid, pattern=r"[#@].*$", replacement="")
        return pc.is_in(base, value_set=bases)

    t = ledger_index.latest(ledger_index.scan(mroot, sobject, keep))
    df = t.select(["source_system_id", "sf_id", "at", "run_id", "phase", "operation"]).to_pandas()
    df.insert(0, "object", sobject)
    return df


def stale_links(previous: Any, envs: Sequence[Envelope], result: LoadResult) -> list[tuple[str, str]]:
    """(source id, Salesforce id) of link records a delta replaced: earlier ledger rows of the same Clio
    records (``matter-7`` for ``relationship-3@Witness``, ``note-1#matter-2``) that this batch did not
    write again (a role or a linked record changed).  Records with a failed row keep their old links."""
    from clio2sf.verify import base_id

    bases = {base_id(e.source_system_id) for e in envs}
    failed = {base_id(o.source_system_id) for o in result.outcomes if not o.success}
    kept = {norm_id(o.sf_id) for o in result.outcomes if o.success and o.sf_id}
    out = []
    for r in previous.itertuples(index=False):
        b = base_id(str(r.source_system_id))
        if r.operation != "delete" and b in bases and b not in failed and norm_id(r.sf_id) not in kept:
            out.append((str(r.source_system_id), str(r.sf_id)))
    return out


def delete_stale_links(client: Any, sobject: str, stale: Sequence[tuple[str, str]],
                       journal: BatchJournal | None = None) -> list[dict[str, Any]]:
    """Delete replaced link records; ledger keyword arguments for each (before-image kept for rollback), journalled
    after each delete call when ``journal`` is given (:meth:`clio2sf.ledger.BatchJournal.deleted`).

    An AccountContactRelation that has become its Contact's direct one (the person's company changed to one
    it was related to: Salesforce promoted our relation when the Contact's AccountId changed) is Salesforce's
    own now, following the AccountId: it is left alone, not deleted."""
    meta = {f["name"]: f for f in client.describe(sobject).get("fields") or ()}
    fields = [n for n, f in meta.items() if f.get("createable") and not f.get("calculated") and n != "Id"
              and str(f.get("type")) not in ("address", "location", "base64")]
    direct = ["IsDirect"] if "IsDirect" in meta else []
    before: dict[str, dict[str, Any]] = {}
    for part in chunked(sorted({sf for _, sf in stale}), SOQL_IN_CHUNK):
        soql = f"SELECT Id, {', '.join(fields + direct)} FROM {sobject} WHERE {soql_in('Id', part)}"
        for rec in client.query_all_iter(soql):
            if not rec.get("IsDirect"):
                before[norm_id(rec["Id"])] = {f: rec.get(f) for f in fields}
    lines = []
    present = [(sid, sf) for sid, sf in stale if norm_id(sf) in before]
    for part in chunked(present, COMPOSITE_CHUNK):
        results = client.composite_delete([sf for _, sf in part])
        n = len(lines)
        for (sid, sf), res in zip(part, results, strict=True):
            ok = bool(res.get("success"))
            errs = res.get("errors") or [{}]
            lines.append({"source_system_id": sid, "sf_id": sf, "operation": "delete", "created": False,
                          "before": before[norm_id(sf)] if ok else None, "status": "ok" if ok else "failed",
                          "error": None if ok else f"{errs[0].get('statusCode')}: {str(errs[0].get('message') or '')[:300]}"})
        if journal is not None:
            journal.deleted(lines[n:])
    return lines


#: The link object Salesforce keeps in step with a Contact's ``AccountId`` (Contacts to Multiple Accounts).
RELATION = "AccountContactRelation"


def relations_of(client: Any, envs: Sequence[Envelope]) -> dict[str, dict[str, Any]]:
    """The AccountContactRelations of the Contacts of ``envs`` as they are before a delta batch writes them:
    external id (casefolded) -> ``{"ids": [Id (15 characters)...], "contact": its Id (15)}``, every Contact of
    ``envs`` (none: ``{"ids": []}``); what :func:`moved_relations` tells Salesforce's new ones by (journalled per
    Contact, so a retry keeps the first attempt's: :meth:`clio2sf.ledger.BatchJournal.remember`), and a rollback of
    a batch that died (``clio2sf.ledger.file_lines``, by the Contact's Id)."""
    keys = sorted({str(e.external_id) for e in envs if e.external_id_field and e.external_id is not None})
    ext = envs[0].external_id_field if envs else None
    out: dict[str, dict[str, Any]] = {k.casefold(): {"ids": []} for k in keys}
    for part in chunked(keys, SOQL_IN_CHUNK):
        soql = f"SELECT Id, ContactId, Contact.{ext} FROM {RELATION} WHERE {soql_in(f'Contact.{ext}', part)}"
        for rec in client.query_all_iter(soql):
            ref = rec.get("Contact")
            key = str(ref.get(ext) if isinstance(ref, Mapping) else rec.get(f"Contact.{ext}")).casefold()
            entry = out.setdefault(key, {"ids": []})
            entry["ids"].append(norm_id(rec["Id"]))
            entry["contact"] = norm_id(rec["ContactId"])
    return out


def moved_relations(client: Any, paths: Sequence[Any], result: LoadResult,
                    before: set[str]) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """The AccountContactRelations of the people this delta batch of Contacts wrote, against Clio's: (source id,
    Salesforce id) of the indirect ones to an Account from Clio that Clio does not relate the person to (to
    delete), and ledger lines for the direct ones Salesforce created when a person moved (for a rollback to delete).

    Clio's relations of the batch's people are the AccountContactRelation rows the same transformed batch wrote
    (``transformed/AccountContactRelation/<the Contact file's name>``, source id ``contact-5#account-contact-9``);
    Salesforce's are read for every person the batch wrote. One that Clio does not have goes, named by the source
    id such a row would have, whatever made it: the one Salesforce kept as indirect when the person's company
    changed (Account Settings' default, "save the previous primary account as an indirect relationship"), or ours
    to a related company Clio dropped (no relation row of the person is written again when it has none left, so
    no relation step replaces it). Decided from what both sides have now, not from what the write changed, so a
    retry after a death past the upsert decides the same. A relation to an Account that is not from Clio (no Clio
    id) is the org's own and left; a direct one follows the Contact's ``AccountId`` and is never deleted here.

    A new ``AccountId`` makes the relation to the new Account the direct one (promoted, or created when there
    was none: ``before``, :func:`relations_of`, as the batch's first attempt saw them); a created one is
    Salesforce's, so no ledger line of ours names it. A person's previous Account is its Contact's before-image
    (``AccountId``)."""
    people: dict[str, str] = {}  # Contact Id → its source id
    previous: dict[str, str] = {}  # Contact Id → the AccountId before this batch
    for o in result.outcomes:
        if o.success and o.sf_id:
            people[norm_id(o.sf_id)] = o.source_system_id
            image = result.before.get(o.source_system_id) or {}
            if image.get("AccountId"):
                previous[norm_id(o.sf_id)] = norm_id(image["AccountId"])
    if not people:
        return [], []
    unclaimed: list[tuple[str, str]] = []  # indirect relations to an Account from Clio, to check against Clio's
    created: list[dict[str, Any]] = []
    for part in chunked(sorted(people), SOQL_IN_CHUNK):
        soql = (f"SELECT Id, ContactId, AccountId, Account.Clio_Id__c, IsDirect FROM {RELATION} "
                f"WHERE {soql_in('ContactId', part)}")
        for rec in client.query_all_iter(soql):
            contact = norm_id(rec.get("ContactId"))
            sid = people.get(contact)
            if not sid:
                continue
            ref = rec.get("Account")
            key = ref.get("Clio_Id__c") if isinstance(ref, Mapping) else rec.get("Account.Clio_Id__c")
            ssid = f"{sid}#account-{key or norm_id(rec['AccountId'])}"
            was = previous.get(contact)
            if not rec.get("IsDirect"):
                if key:
                    unclaimed.append((ssid, str(rec["Id"])))
            elif was and norm_id(rec.get("AccountId")) != was and norm_id(rec["Id"]) not in before:
                created.append({"source_system_id": ssid, "sf_id": str(rec["Id"]), "operation": "insert",
                                "created": True, "before": None, "status": "ok", "error": None})
    if not unclaimed:
        return [], created
    sids = set(people.values())
    clio: set[str] = set()
    for path in dict.fromkeys(p.parent.parent / RELATION / p.name for p in paths):
        if path.exists():
            clio.update(str(e["source_system_id"]) for e in read_part(path)
                        if str(e["source_system_id"]).split("#", 1)[0] in sids)
    return [(sid, sf) for sid, sf in unclaimed if sid not in clio], created


def adopt_created(result: LoadResult, journal: BatchJournal, others: Callable[[set[str]], set[str]]) -> int:
    """Mark as created what an attempt of this batch created without hearing of it.

    An upsert resent after a lost answer, or the batch's next attempt after its worker died, finds
    the record there and reports it updated (or skipped).  It is ours, and rollback must remove it,
    when an earlier attempt journalled it as created, or when this batch meant to write it and no
    other ledger line (another batch, run or phase) names its Id.  Returns how many were adopted."""
    todo = [o for o in result.outcomes
            if o.success and o.sf_id and not o.created and o.source_system_id in journal.intended]
    if not todo:
        return 0
    unsure = {norm_id(o.sf_id) for o in todo if norm_id(o.sf_id) not in journal.created}
    known = others(unsure) if unsure else set()  # which of them other ledger lines name
    n = 0
    for o in todo:
        if norm_id(o.sf_id) not in journal.created and norm_id(o.sf_id) in known:
            continue
        o.created, o.status = True, None
        result.before.pop(o.source_system_id, None)
        n += 1
    return n


def read_part(part: Any) -> Iterator[Any]:
    """The envelopes (dicts) of a transformed file or of a :class:`RowSlice` of one."""
    if isinstance(part, RowSlice):
        return staging.read_jsonl_gz(part.path, rows=(part.start, part.stop))
    return staging.read_jsonl_gz(part)


def run_ids_path(mroot: Any, run_id: str) -> Any:
    """``loads/<run id>/salesforce_ids/<Object>/<phase>-<batch>.json``: external id (casefolded) →
    Salesforce id of every row this run's upsert tasks wrote with success, as Salesforce answered them
    (:func:`load_batch` with ``share_ids``); the natural-key rows' parents are read from there
    (:func:`run_known_ids`) instead of asked again.  Through the staging root, so a task on another worker
    reads what this one wrote."""
    return mroot / "loads" / run_id / "salesforce_ids"


def deferred_mark(mroot: Any, run_id: str, part: Any) -> Any:
    """``loads/<run id>/deferred/<Object>/<file>[.rows-a-b].json``: ``{"rows": n}``, the rows of one
    transformed file (or :class:`RowSlice`) that the first pass of ``run_id`` left to the deferred pass
    (lookups to objects loaded later: :func:`clio2sf.load.split_deferred`); written by
    :func:`load_batch` with ``count_deferred``."""
    span = f".rows-{part.start}-{part.stop}" if isinstance(part, RowSlice) else ""
    return mroot / "loads" / run_id / "deferred" / part.parent.name / f"{part.name}{span}.json"


def deferred_rows(mroot: Any, run_id: str, part: Any) -> int | None:
    """What :func:`deferred_mark` says of ``part`` for ``run_id``; None when its first pass wrote no mark
    (then the deferred pass must look at it)."""
    mark = staging.read_json(deferred_mark(mroot, run_id, part), default=None)
    return int(mark["rows"]) if isinstance(mark, dict) and "rows" in mark else None


def run_known_ids(mroot: Any, run_id: str) -> Callable[[str, str, Iterable[str]], dict[str, str]]:
    """``known(object, field, values)`` (``clio2sf.load.KnownIds``) over :func:`run_ids_path`: of
    ``values``, those an upsert of this run answered for, keyed casefolded.  A value two files name with
    different ids is left out (asked of Salesforce).  Nothing once a rollback of this run has run
    (``ledger/<run>/rollback``): the records it deleted must not be named again."""
    folder = run_ids_path(mroot, run_id)

    def known(sobject: str, field: str, values: Iterable[str]) -> dict[str, str]:
        want = {str(v).casefold() for v in values}
        out: dict[str, str] = {}
        if not want or (mroot / "ledger" / run_id / "rollback").exists():
            return out
        clash: set[str] = set()
        try:
            files = sorted((p for p in (folder / sobject).iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
        except (FileNotFoundError, NotADirectoryError):
            return out
        for f in files:
            doc = staging.read_json(f) or {}
            if doc.get("field") != field:
                continue
            for k, v in (doc.get("ids") or {}).items():
                if k in want:
                    if out.setdefault(k, v) != v:
                        clash.add(k)
        for k in clash:
            del out[k]
        return out

    return known


def _share_ids(mroot: Any, run_id: str, phase: str, sobject: str, batch: str, envs: Sequence[Envelope],
               result: LoadResult) -> None:
    """Write the batch's successful upserts to :func:`run_ids_path` (external id → Salesforce id)."""
    ext_of = {e.source_system_id: e.external_id for e in envs}
    ids = {str(ext_of[o.source_system_id]).casefold(): o.sf_id for o in result.outcomes
           if o.success and o.sf_id and ext_of.get(o.source_system_id) is not None}
    staging.write_json(run_ids_path(mroot, run_id) / sobject / f"{phase}-{batch}.json",
                       {"field": envs[0].external_id_field, "ids": ids})


def new_note_documents(mroot: Any, run_id: str, envs: Sequence[Envelope], note_ids: Mapping[str, str]) -> set[str]:
    """ContentNote ids (= ContentDocument ids) that the ContentDocumentLink rows ``envs`` name
    (:data:`NOTE_DOCUMENT_COLUMN`, resolved through ``note_ids``, the ledger's latest writes) of notes this
    run created, on which no attempt of this run wrote a link: none of those rows' keys can exist in
    Salesforce, so their existence is not asked (one GET per 500 notes: the large firm's 6,409 note links
    took 16).  A note is left out when any ledger or journal line of this run's ContentDocumentLink
    writes (any phase, any batch: finished batches, other tasks', this batch's earlier attempts) names
    one of its rows; an earlier run's note (the sample's, a re-run's) is never new.  Salesforce refuses a
    second link of one document to one record (``DUPLICATE_VALUE``) whatever is asked."""
    import pyarrow.compute as pc

    from clio2sf.ledger import ledger_files, parse_ledger_lines

    note_of = {e.source_system_id: str(e.row[NOTE_DOCUMENT_COLUMN]) for e in envs
               if e.row.get(NOTE_DOCUMENT_COLUMN) is not None}
    if not note_of:
        return set()
    t = ledger_index.by_source_ids(mroot, "ContentNote", set(note_of.values()))
    t = t.filter(pc.and_(pc.equal(t["run_id"], run_id), pc.equal(t["created"], True)))
    created = {norm_id(i) for i in t["sf_id"].to_pylist()}
    ids = {str(k).casefold(): v for k, v in note_ids.items()}
    new = {note: ids[note.casefold()] for note in set(note_of.values())
           if note.casefold() in ids and norm_id(ids[note.casefold()]) in created}
    if new:
        for f in ledger_files(mroot, run_id=run_id):
            if f.parent.name != "ContentDocumentLink":
                continue
            try:
                with f.open("rb") as fh:
                    text = fh.read().decode("utf-8")
            except FileNotFoundError:  # a journal cleared while we listed: another batch's (rows are one batch's)
                continue
            for line in parse_ledger_lines(text, where=str(f)):
                note = note_of.get(str(line.get("source_system_id")))
                if note is not None:
                    new.pop(note, None)
    return set(new.values())


#: Successful writes of an object in the ledger up to which its before-images (or, for a natural-key
#: object, its existing keys) are first read through REST GETs over every record of it that has an
#: external id (:func:`clio2sf.load.lookup_records` ``few``: 2,000 records a page, at most as many GETs
#: as a query job's least calls): the sample's records before the full load's first task of that object.
#: Writes, not records: the sample's deferred pass writes some records twice.  Only what a look-up costs
#: depends on it, never what it finds.
FEW_WRITTEN = QUERY_JOB_CALLS * REST_QUERY_PAGE


def load_batch(
    client: Any,
    transformed_path: Any | Sequence[Any],
    mroot: Any,
    *,
    migration_id: str,
    run_id: str,
    phase: str = "full_load",
    mode: str = "auto",
    load_order: Sequence[str] | None = None,
    deferred: bool = False,
    note_ids: Mapping[str, str] | None = None,
    window_root: Any = None,
    clear_fields: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    share_ids: bool = False,
    count_deferred: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Load one transformed batch file, or a group of them (a list, see :func:`group_batches`: loaded as
    one batch named :func:`group_name`), or a :class:`RowSlice` of one, write its ledger and load
    rejects; return counts and paths.

    With ``load_order`` (``spec.load_order``), lookups to an object loaded at the same step or later
    (self-references, Account → Case custom lookups) are left out; run the same batch again with
    ``deferred=True`` after every object is loaded to set them (only on records that exist, so it
    never creates).  ContentVersion rows upload the staged bytes under ``mroot``; ContentNote rows
    are idempotent by the ledger (read here); ContentDocumentLink rows of notes resolve through the
    ledger's ContentNote ids (``note_ids`` overrides the ledger read).

    ``window_root`` (a delta window's folder) is where the batch's blob paths are relative to; the
    ledger stays under ``mroot``.  ``clear_fields``: mapped plain
    fields a row lacks are sent as null (the value was cleared in Clio), where the org lets them be:
    a mapping Clio object -> its owned fields (:func:`owned_fields`), each file's rows cleared with its
    own Clio object's (a group may span Clio objects: :func:`group_batches`), or one list of fields
    for a batch of one Clio object (a group spanning several is refused: ``ValueError``).
    ``share_ids``: an upsert batch writes the ids Salesforce answered to :func:`run_ids_path`, and a
    natural-key batch reads its parents' ids from there, looking up in Salesforce only the ones missing
    (every task of a run passes it, or none: see "Salesforce ids within a run" in docs/architecture.md).
    ``count_deferred``: the first pass writes, per file (or row slice), how many rows it left to the
    deferred pass (:func:`deferred_mark`), so the deferred pass starts no task for a file with none.
    """
    wroot = mroot if window_root is None else window_root
    paths = list(transformed_path) if isinstance(transformed_path, list | tuple) else [transformed_path]
    sobject = paths[0].parent.name
    if any(p.parent.name != sobject for p in paths):
        raise ValueError(f"{group_name(paths)}: a load group mixes Salesforce objects")
    batch = group_name(paths)
    sources = [clio_object_of(p) for p in paths]
    if clear_fields is not None and not isinstance(clear_fields, Mapping) and len(set(sources)) > 1:
        raise ValueError(f"{batch}: one list of cleared fields for a group of several Clio objects "
                         f"({', '.join(dict.fromkeys(sources))}); give them per Clio object")
    parts = [[Envelope.from_dict(e) for e in read_part(p)] for p in paths]
    envs = [e for part in parts for e in part]
    if deferred:
        phase = f"{phase}_deferred"  # its own ledger/rejects files: never overwrites the first pass
    images = None
    left = [0] * len(paths)  # rows of each part the deferred pass has to set
    sizes = [len(part) for part in parts]  # rows of each part in ``envs`` (sent by the first pass)
    if load_order is not None and sobject not in SPECIAL_LOADERS:
        cols = deferred_columns(client, envs, load_order)
        splits = [split_deferred(part, cols) for part in parts]  # row by row: as one split of them all
        first, second = [e for f, _ in splits for e in f], [e for _, s in splits for e in s]
        left = [len(s) for _, s in splits]
        sizes = [len(f) for f, _ in splits]  # the first pass's rows of each part
        if deferred:
            # one look-up says which records exist and holds their before-images (for rollback), so the
            # load below does not look them up again
            found = capture_before_images(client, second)
            envs = [e for e in second if str(e.external_id).casefold() in found]
            images = before_images_of(found, envs)
        else:
            envs = first
    elif deferred:
        envs = []
    del parts
    if count_deferred and not deferred:
        for path, n in zip(paths, left, strict=True):
            staging.write_json(deferred_mark(mroot, run_id, path), {"rows": n})
    result: LoadResult
    journal = BatchJournal(mroot, migration_id, run_id, phase, sobject, batch)
    links = bool(envs) and "delta" in phase and not deferred and envs[0].external_id_field is None \
        and sobject not in SPECIAL_LOADERS
    previous = None
    if links:  # the links these records had before this window (to replace the ones that changed)
        previous = ledger_links(mroot, sobject, envs)
    relations_before = None
    if envs and sobject == "Contact" and "delta" in phase and not deferred and RELATION in (load_order or ()):
        # with an earlier attempt's (journalled): one that died after its upsert saw them before Salesforce moved
        # the people (the relations it made then are not among them)
        seen = journal.remember("relation_before", relations_of(client, envs))
        relations_before = {i for v in seen.values() for i in (v or {}).get("ids", ())}
    if not envs:
        result = LoadResult([])
    elif sobject == "ContentVersion":
        result = load_content_versions(client, envs, wroot, journal=journal, update_existing="delta" in phase,
                                       sleep=sleep)
    elif sobject == "ContentNote":
        result = load_content_notes(client, envs, ledger_sf_ids(mroot, "ContentNote", (e.source_system_id for e in envs)),
                                    journal=journal,
                                    update_existing="delta" in phase, sleep=sleep)
    else:
        new_notes: set[str] = set()
        if note_ids is None and sobject == "ContentDocumentLink":
            note_ids = ledger_sf_ids(mroot, "ContentNote", {str(e.row[NOTE_DOCUMENT_COLUMN]) for e in envs
                                                            if e.row.get(NOTE_DOCUMENT_COLUMN) is not None})
            if "delta" not in phase and not deferred:
                new_notes = new_note_documents(mroot, run_id, envs, note_ids)
        # Before-images (for rollback) cost a query per 200 rows: take them only when rows may
        # already exist: a delta, or records an earlier run of this migration wrote.
        known = ledger_sf_ids(mroot, sobject, (e.source_system_id for e in envs)) if "delta" not in phase else {}
        capture = "delta" in phase or any(e.source_system_id in known for e in envs)
        # few records of the object written so far (a sample's): the before-images, or the natural keys
        # that exist, are REST GETs over every record with an external id, not a query job (exact either
        # way: see load.lookup_records); ``few`` is how many writes the ledger holds
        few: int | bool = False
        written = 0
        if capture or envs[0].external_id_field is None:
            # counted on past FEW_WRITTEN: whether a look-up's scan of every record of the object could
            # pay (load._bulk_lookup: not past SCAN_MAX_RATIO records a row)
            written = ledger_index.count_ok(mroot, sobject, stop_above=max(FEW_WRITTEN, SCAN_MAX_RATIO * len(envs)))
            few = written if written <= FEW_WRITTEN else False
        settle = None
        if capture and "delta" in phase:
            # journalled before the first write: a retry after a death past the upsert (or of a batch that
            # completed) keeps what was there before the window, not what the earlier attempt wrote
            earlier = LedgerWriter(mroot, migration_id, run_id, phase, sobject, batch).path
            settle = functools.partial(earliest_images, journal=journal, earlier=lambda: earlier_before_images(earlier))
        if clear_fields and not deferred:
            owners = [o for o, n in zip(sources, sizes, strict=True) for _ in range(n)] \
                if isinstance(clear_fields, Mapping) else None
            envs, nulled = with_cleared_fields(client, envs, clear_fields, owners)
            if nulled:
                log.info("%s %s: %d cleared field value(s) sent as null", sobject, batch, nulled)
        result = load_rows(client, envs, mode=mode, note_ids=note_ids, sleep=sleep,  # type: ignore[arg-type]
                           capture_before=capture, before_images=images, few_existing=few, written=written,
                           journal=journal, settle_before=settle,
                           new_anchors=new_notes,
                           known_ids=run_known_ids(mroot, run_id) if share_ids else None)
        if share_ids and not deferred and envs[0].external_id_field:
            _share_ids(mroot, run_id, phase, sobject, batch, envs, result)
    adopt_created(result, journal, lambda ids: ledger_index.sf_ids_written_by_others(
        mroot, sobject, ids, exclude=(run_id, phase, batch)))
    replaced = delete_stale_links(client, sobject, stale_links(previous, envs, result)) if previous is not None else []
    demoted: list[dict[str, Any]] = []
    rel_journal = None
    if relations_before is not None:
        # the people's indirect relations Clio no longer has (the one Salesforce kept when a person's Account
        # changed, ours to a company Clio dropped); and the direct ones Salesforce made for a new Account
        # (ledgered as created: a rollback deletes them). The deletes are journalled as they go (a batch that dies
        # before its ledger file: rollback re-creates them); what earlier attempts did is kept (its journal, its
        # ledger file: a retry finds those relations gone, or Salesforce's new one among the "before")
        rel_journal = BatchJournal(mroot, migration_id, run_id, phase, RELATION, f"{batch}-demoted")
        earlier = {**earlier_lines(LedgerWriter(mroot, migration_id, run_id, phase, RELATION, f"{batch}-demoted").path),
                   **rel_journal.earlier_deletes}
        stale_relations, made = moved_relations(client, paths, result, relations_before)
        now = delete_stale_links(client, RELATION, stale_relations, journal=rel_journal) + made
        again = {norm_id(line["sf_id"]) for line in now}
        demoted = [line for k, line in earlier.items() if k not in again] + now
    rows = len(envs)
    del envs  # sent: from here on only their outcomes are written (the rows were most of a task's memory)
    # the relations' first: a death between the two leaves the Contacts' journal, whose rollback still finds the
    # relation Salesforce made (clio2sf.rollback.restore_op), and their ledger file, not a journal without it
    if demoted:  # under the relation's object, a batch name of their own (the ACR step writes ``batch``)
        with LedgerWriter(mroot, migration_id, run_id, phase, RELATION, f"{batch}-demoted") as rel_ledger:
            for line in demoted:
                rel_ledger.record(**line)
    if rel_journal is not None:
        rel_journal.clear()
    with LedgerWriter(mroot, migration_id, run_id, phase, sobject, batch) as ledger:
        for line in replaced:  # first: a row written again under the same source id stays its last write
            ledger.record(**line)
        for o in result.outcomes:
            ledger.record(**ledger_kwargs(o, result.before.get(o.source_system_id)))
    journal.clear()  # the batch's ledger file now says all its journal did
    rphase = "load_deferred" if deferred else "load"
    failures = [reject_line(o, rphase, sobject) for o in result.outcomes if not o.success]
    # next to the transformed batch (<root>/transformed/<sobject>/<file>): the full load's rejects under
    # the migration root, a sample's under sample/, a delta window's under delta/<window>/
    rejects_root = paths[0].parent.parent.parent
    rejects_path = write_rejects(rejects_root, rphase, sobject, batch, failures) if failures else None
    return {
        "sobject": sobject,
        "batch": batch,
        "rows": rows,
        "created": result.created,
        "updated": result.updated,
        "skipped": result.skipped,
        "failed": result.failed,
        "rejects_by_rule": dict(Counter(r["rule"] for r in failures)),
        "replaced": sum(1 for line in replaced if line["status"] == "ok"),
        "demoted_deleted": sum(1 for line in demoted if line["status"] == "ok" and line["operation"] == "delete"),
        "rejects_path": str(rejects_path) if rejects_path is not None else None,
        "ledger_path": str(ledger.path),
    }
