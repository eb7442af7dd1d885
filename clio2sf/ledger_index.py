"""Look-ups in the run ledger by object and key, without reading whole ledgers.

Every ledger file ``ledger/<run>/<phase>/<sobject>/<batch>.jsonl`` (journal files included) gets a
Parquet twin ``ledger_index/<sobject>/<run>/<phase>/<batch>.parquet`` holding only its successful
writes (``status == "ok"`` with an ``sf_id``) and only the columns look-ups need (:data:`COLUMNS`).
:class:`clio2sf.ledger.LedgerWriter` writes the twin right after the ledger file, and
:meth:`clio2sf.ledger.BatchJournal.clear` removes a journal's twin before the journal itself.

A look-up lists the object's ledger files (names only) and, file by file, reads the twin (or, for a
ledger file without one: written before the index existed, or by a worker killed between the two
writes, the JSONL itself), keeping only the rows whose key is asked for.  Memory is one file plus the
matches, whatever the ledger's size; the ledger files stay the source of truth (a twin without its
ledger file is ignored).  Works on any pathlib-like object (``ObjectStoragePath`` on s3:// too): a
task on another worker reads what this one wrote, nothing is handed over on local disk.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from clio2sf import staging

if TYPE_CHECKING:  # pyarrow is imported where a table is built: the DAG files import this module (through
    import pyarrow as pa  # clio2sf.ledger), and most of their tasks never read the index

DIR = "ledger_index"
COLUMNS = ("source_system_id", "sf_id", "at", "run_id", "phase", "batch", "operation", "created")


@cache
def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(c, pa.bool_() if c == "created" else pa.string()) for c in COLUMNS])


def index_path(root: Any, run_id: str, phase: str, sobject: str, batch: str) -> Any:
    return root / DIR / sobject / run_id / phase / f"{batch}.parquet"


def _utc(v: Any) -> str | None:
    """``at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC), so that text order is time order."""
    if v is None:
        return None
    try:
        d = datetime.fromisoformat(str(v))
    except ValueError:
        return str(v)
    d = d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ok_table(lines: Iterable[dict[str, Any]]) -> pa.Table:
    """The index rows of ledger lines: successful writes only, :data:`COLUMNS` only."""
    import pyarrow as pa

    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for line in lines:
        if line.get("status") != "ok" or not line.get("sf_id"):
            continue
        for c in COLUMNS:
            v = line.get(c)
            cols[c].append(bool(v) if c == "created" else _utc(v) if c == "at" else (None if v is None else str(v)))
    return pa.table(cols, schema=_schema())


def write_index(path: Any, lines: Iterable[dict[str, Any]]) -> None:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(ok_table(lines), buf, compression="zstd")
    staging.write_bytes_atomic(path, buf.getvalue())


def remove_index(path: Any) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _children(path: Any) -> list[Any]:
    try:
        return sorted(path.iterdir(), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _files(root: Any, sobject: str) -> Iterator[tuple[Any, Any]]:
    """(ledger file, its index twin or None) for every ledger file of ``sobject``, any run or phase."""
    for run_dir in _children(root / "ledger"):
        for phase_dir in _children(run_dir):
            ledger_dir = phase_dir / sobject
            files = [f for f in _children(ledger_dir) if f.name.endswith(".jsonl")]
            if not files:
                continue
            twins = {f.name: f for f in _children(root / DIR / sobject / run_dir.name / phase_dir.name)}
            for f in files:
                yield f, twins.get(f.name[: -len(".jsonl")] + ".parquet")


def _read(ledger_file: Any, twin: Any) -> pa.Table:
    import pyarrow.parquet as pq

    if twin is not None:
        try:
            with twin.open("rb") as fh:
                return pq.read_table(io.BytesIO(fh.read()))
        except FileNotFoundError:  # removed with its journal meanwhile: the JSONL below says the same
            pass
    try:
        with ledger_file.open("rb") as fh:
            text = fh.read().decode("utf-8")
    except FileNotFoundError:  # a journal cleared while we listed
        return ok_table(())
    return ok_table(json.loads(raw) for raw in text.splitlines() if raw.strip())


def ok_rows(root: Any, sobject: str, columns: Iterable[str]) -> Iterator[tuple[Any, ...]]:
    """The index rows of ``sobject`` (successful writes, any run, phase or journal) as tuples of ``columns``
    (of :data:`COLUMNS`, valued as :func:`ok_table` keeps them), in :func:`scan`'s order, read from the
    ledger files themselves a file at a time, without Arrow: importing pyarrow and reading a first Parquet
    file costs a process ~125 MB (the reconciliation's natural-key rows, read once per object)."""
    cols = list(columns)
    for ledger_file, _ in _files(root, sobject):
        try:
            fh = ledger_file.open("rb")
        except FileNotFoundError:  # a journal cleared while we listed
            continue
        with fh:
            for raw in _lines(fh):
                if not raw.strip():
                    continue
                line = json.loads(raw)
                if line.get("status") != "ok" or not line.get("sf_id"):
                    continue
                yield tuple(bool(v) if c == "created" else _utc(v) if c == "at" else (None if v is None else str(v))
                            for c in cols for v in (line.get(c),))


#: Bytes of a ledger file read at a time by :func:`ok_rows` (a load batch's file is up to ~7 MB: 20,000 rows).
LINE_BLOCK = 1 << 18


def _lines(fh: Any) -> Iterator[bytes]:
    """The lines of an open binary file, read :data:`LINE_BLOCK` bytes at a time (what is held is a block
    and a line, not the file: before, the whole file as bytes, as text and as a list of lines)."""
    tail = b""
    while block := fh.read(LINE_BLOCK):
        lines = (tail + block).split(b"\n")
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail


def scan(root: Any, sobject: str, keep: Callable[[pa.Table], Any]) -> pa.Table:
    """The index rows of ``sobject`` (successful writes, any run, phase or journal) for which
    ``keep(table)`` (a boolean mask) is true, in no particular order."""
    import pyarrow as pa

    parts = []
    for ledger_file, twin in _files(root, sobject):
        t = _read(ledger_file, twin)
        if t.num_rows:
            t = t.filter(keep(t))
            if t.num_rows:
                parts.append(t)
    return pa.concat_tables(parts) if parts else _schema().empty_table()


def count_ok(root: Any, sobject: str, stop_above: int | None = None) -> int:
    """How many successful writes of ``sobject`` the ledger holds (any run, phase or journal; a record
    written twice counts twice), from the twins' Parquet footers (a file without a twin: its lines).
    ``stop_above``: counting stops once past it (the caller only asks whether there are more)."""
    import pyarrow.parquet as pq

    n = 0
    for ledger_file, twin in _files(root, sobject):
        try:
            if twin is None:
                raise FileNotFoundError
            with twin.open("rb") as fh:
                n += pq.read_metadata(fh).num_rows  # the footer only: the file is seekable
        except FileNotFoundError:
            n += _read(ledger_file, None).num_rows
        if stop_above is not None and n > stop_above:
            break
    return n


def by_source_ids(root: Any, sobject: str, source_ids: Iterable[str]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.array(sorted({str(s) for s in source_ids}), pa.string())
    if not len(values):
        return _schema().empty_table()
    return scan(root, sobject, lambda t: pc.is_in(t["source_system_id"], value_set=values))


def latest(table: pa.Table) -> pa.Table:
    """The latest write per source id (``at``, ties in ledger order as :func:`clio2sf.ledger.last_write_by_record`)."""
    if not table.num_rows:
        return table
    keys = list(zip(*(table[c].to_pylist() for c in ("at", "run_id", "phase", "batch")), strict=True))
    rows = sorted(range(table.num_rows), key=keys.__getitem__)
    sids = table["source_system_id"].to_pylist()
    last: dict[str, int] = {}
    for i in rows:
        last[sids[i]] = i
    return table.take(sorted(last.values()))


def latest_sf_ids(root: Any, sobject: str, source_ids: Iterable[str]) -> dict[str, str]:
    """Source id → Salesforce id of the latest successful write of ``sobject`` (any run) for the asked ids."""
    t = latest(by_source_ids(root, sobject, source_ids))
    return dict(zip(t["source_system_id"].to_pylist(), t["sf_id"].to_pylist(), strict=True))


def sf_ids_written_by_others(root: Any, sobject: str, sf_ids: Iterable[str],
                             exclude: tuple[str, str, str]) -> set[str]:
    """Which of ``sf_ids`` (normalised 15-character ids) a successful ledger line of ``sobject`` names,
    except the lines of ``exclude`` = (run_id, phase, batch) and of that batch's journals."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from clio2sf.ledger import norm_id

    wanted = {norm_id(s) for s in sf_ids}
    if not wanted:
        return set()
    run_id, phase, batch = exclude
    values = pa.array(sorted({w[:15] for w in wanted}), pa.string())

    def keep(t: pa.Table) -> Any:
        ids = pc.utf8_slice_codeunits(t["sf_id"], 0, 15)
        mask = pc.is_in(ids, value_set=values)
        names = t["batch"]
        mine = pc.and_(pc.and_(pc.equal(t["run_id"], run_id), pc.equal(t["phase"], phase)),
                       pc.or_(pc.equal(names, batch), pc.starts_with(names, f"{batch}.journal-")))
        return pc.and_(mask, pc.invert(mine))

    return {norm_id(s) for s in scan(root, sobject, keep)["sf_id"].to_pylist()} & wanted


def sobjects(root: Any) -> list[str]:
    """Every sobject with a ledger file (any run or phase), by directory names only."""
    return sorted({obj.name for run_dir in _children(root / "ledger") for phase_dir in _children(run_dir)
                   for obj in _children(phase_dir) if any(f.name.endswith(".jsonl") for f in _children(obj))})


def _base_ids(ids: pa.ChunkedArray) -> Any:
    """``document-55@v2#matter-7`` → ``document-55`` (as :func:`clio2sf.verify.base_id`), column-wise."""
    import pyarrow.compute as pc

    return pc.replace_substring_regex(ids, pattern=r"[@#].*$", replacement="", max_replacements=1)


def latest_writes(root: Any, *, source_ids: Iterable[str] = (), primary_of: Iterable[str] = ()) -> dict[str, pa.Table]:
    """sobject → the latest successful write (:func:`latest`) of each source id that is either in
    ``source_ids`` or a primary row (no ``#``) of a Clio record in ``primary_of`` (``contact-9001``
    matches ``contact-9001`` and ``contact-9001@v2``), any object, any run or phase (rollback included,
    as :func:`clio2sf.ledger.last_write_by_record` of the whole ledger).  Objects without a match are
    left out.  Memory: one ledger file plus the matches."""
    import pyarrow as pa
    import pyarrow.compute as pc

    exact = pa.array(sorted({str(s) for s in source_ids}), pa.string())
    bases = pa.array(sorted({str(s) for s in primary_of}), pa.string())
    if not len(exact) and not len(bases):
        return {}

    def keep(t: pa.Table) -> Any:
        ids = t["source_system_id"]
        mask = pc.is_in(ids, value_set=exact)
        if len(bases):
            primary = pc.and_(pc.is_in(_base_ids(ids), value_set=bases), pc.invert(pc.match_substring(ids, "#")))
            mask = pc.or_(mask, primary)
        return mask

    out = {}
    for sobject in sobjects(root):
        t = latest(scan(root, sobject, keep))
        if t.num_rows:
            out[sobject] = t
    return out
