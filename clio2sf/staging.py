"""Staging layout and file I/O under the staging root (see docs/architecture.md).

Every function takes a *path-like object*: ``pathlib.Path``, ``upath.UPath`` or Airflow's
``airflow.sdk.ObjectStoragePath`` (a UPath proxy).  Only ``/``, ``open()``, ``exists()``,
``mkdir()``, ``iterdir()``/``glob()`` and ``rename()`` are used, plus the ``fs``/``path`` pair of
UPath for deleting trees.

Writes are atomic where the storage allows it:

* local paths (``pathlib.Path`` or protocol ``file``/``local``): write a hidden temporary file next
  to the target, ``fsync``, then ``os.replace`` it over the target; files get mode 0o600 and
  directories 0o700, because staged records are privileged client data;
* object stores (s3, gcs, ...): the object is written in one ``open("wb")`` call, which the store
  publishes only when the upload completes, so readers never see half an object.

DAG-facing surface: :func:`migration_root`, :func:`raw_dir`, :func:`batch_path`,
:func:`blob_path`, :func:`write_jsonl_gz`, :func:`read_jsonl_gz`, :func:`write_json`,
:func:`read_json`, :func:`read_manifest`, :class:`ManifestWriter`, :func:`purge_older_than`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

import msgspec

FILE_MODE = 0o600
DIR_MODE = 0o700
PROGRESS = "_progress.json"
MANIFEST = "_manifest.json"
BATCH_LOG = "_batches.jsonl"
MANIFEST_SEGMENTS = "_manifest"
#: Batch entries per manifest segment file (see :class:`ManifestWriter`).
SEGMENT_BATCHES = 500
_LOCAL_PROTOCOLS = ("", "file", "local")


# --------------------------------------------------------------------------- layout


#: Names the layout uses directly under a migration root: never a firm or a migration id, so a
#: migration's own folders can never be taken for another firm's (nor purged as one).
RESERVED_NAMES = frozenset({
    "raw", "blobs", "transformed", "rejects", "ledger", "ledger_index", "reports", "approvals", "discover", "users",
    "delta", "sample", "ids", "since",
})
_NOT_RESERVED = "(?!(?:" + "|".join(sorted(RESERVED_NAMES)) + ")$)"
#: Firm config names: lower-case letters, digits and underscores (``firms/<firm>.yaml``).
FIRM_PATTERN = rf"^{_NOT_RESERVED}[a-z0-9][a-z0-9_]{{0,63}}$"
#: Migration ids: a letter or digit first, then letters, digits, ``_``, ``.``, ``-`` (so no ``.``,
#: ``..`` or separators).  Params (``dag_defaults``), the CLI and :func:`migration_root` all use it.
MIGRATION_ID_PATTERN = rf"^{_NOT_RESERVED}[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$"
_FIRM_RE = re.compile(FIRM_PATTERN)
_MIGRATION_ID_RE = re.compile(MIGRATION_ID_PATTERN)
_RULE = ("one path segment of at most 64 letters, digits, '_', '.' or '-' starting with a letter or "
         "digit (firms: lower-case, no '.'/'-'), and not a staging folder name: " + ", ".join(sorted(RESERVED_NAMES)))


def check_firm(firm: Any) -> str:
    """Return ``firm`` if it is a valid firm name; ValueError naming the rule otherwise."""
    if not isinstance(firm, str) or not _FIRM_RE.fullmatch(firm):
        raise ValueError(f"staging: firm {firm!r} is not a valid firm name ({_RULE})")
    return firm


def check_migration_id(migration_id: Any) -> str:
    """Return ``migration_id`` if valid (refuses ``.``, ``..``, separators, layout names)."""
    if (not isinstance(migration_id, str) or not _MIGRATION_ID_RE.fullmatch(migration_id)
            or migration_id.lower() in RESERVED_NAMES):
        raise ValueError(f"staging: migration_id {migration_id!r} is not a valid migration id ({_RULE})")
    return migration_id


def migration_root(root: Any, firm: str, migration_id: str) -> Any:
    """Return ``<root>/<firm>/<migration_id>``: the one checked way a firm and id become a path."""
    return root / check_firm(firm) / check_migration_id(migration_id)


def raw_dir(mroot: Any, obj: str) -> Any:
    """Return ``raw/<object>`` under a migration root."""
    return mroot / "raw" / obj


def batch_name(number: int) -> str:
    """Return ``batch-<NNNNN>.jsonl.gz`` for a 1-based batch number."""
    if number < 1:
        raise ValueError(f"staging: batch number must be >= 1, got {number}")
    return f"batch-{number:05d}.jsonl.gz"


def batch_path(mroot: Any, obj: str, number: int) -> Any:
    """Return the raw batch file path of one object."""
    return raw_dir(mroot, obj) / batch_name(number)


def blob_relpath(doc_id: int | str, version_id: int | str) -> str:
    """Return ``blobs/documents/<doc id>/<version id>`` (relative to the migration root)."""
    return f"blobs/documents/{doc_id}/{version_id}"


def blob_path(mroot: Any, doc_id: int | str, version_id: int | str) -> Any:
    """Return the path of one document version's bytes."""
    return mroot / "blobs" / "documents" / str(doc_id) / str(version_id)


# --------------------------------------------------------------------------- primitives


def is_local(path: Any) -> bool:
    """Tell whether ``path`` lives on the local filesystem."""
    return getattr(path, "protocol", "") in _LOCAL_PROTOCOLS


def _os_path(path: Any) -> str:
    """Return the OS path of a local path-like (UPath keeps it in ``.path``)."""
    return path.path if hasattr(path, "protocol") else os.fspath(path)


def as_local(path: Any) -> Any:
    """``path`` as a plain :class:`pathlib.Path` when it is on the local filesystem (an
    ``ObjectStoragePath`` of ``file://``), else ``path`` itself: the same file, the same bytes read and
    written by this module, without the object-store layer (whose first file access in a process
    imports every installed provider's filesystem, the S3 one with boto3: ~0.5 CPU-s a task)."""
    return Path(_os_path(path)) if is_local(path) else path


def ensure_dir(path: Any) -> None:
    """Create ``path`` and its parents; owner-only on local filesystems."""
    if not is_local(path):
        # Object stores have no real directories; mkdir is a no-op or creates a bucket.
        path.mkdir(parents=True, exist_ok=True)
        return
    missing = []
    cur = path
    while not cur.exists():
        missing.append(cur)
        if cur.parent == cur:
            break
        cur = cur.parent
    path.mkdir(parents=True, exist_ok=True)
    for made in missing:
        os.chmod(_os_path(made), DIR_MODE)


def write_bytes_atomic(path: Any, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never half."""
    ensure_dir(path.parent)
    if not is_local(path):
        with path.open("wb") as fh:
            fh.write(data)
        return
    target = _os_path(path)
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp-{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class BlobWriter:
    """Stream bytes to ``path`` while computing sha256 and size; publish on :meth:`close`.

    Local: a temporary file renamed over the target.  Object stores: one streamed upload.
    """

    def __init__(self, path: Any) -> None:
        self.path = path
        self.sha256 = hashlib.sha256()
        self.size = 0
        ensure_dir(path.parent)
        if is_local(path):
            target = _os_path(path)
            self._tmp: str | None = os.path.join(
                os.path.dirname(target), f".{os.path.basename(target)}.tmp-{uuid.uuid4().hex}"
            )
            self._fh = os.fdopen(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb")
        else:
            self._tmp = None
            self._fh = path.open("wb")

    def write(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.size += len(chunk)
        self._fh.write(chunk)

    def close(self) -> None:
        """Publish the file."""
        if self._tmp is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self._tmp, _os_path(self.path))
        else:
            self._fh.close()

    def abort(self) -> None:
        """Drop a partial local file (an object-store upload that is not closed never appears)."""
        try:
            self._fh.close()
        finally:
            if self._tmp is not None and os.path.exists(self._tmp):
                os.unlink(self._tmp)


def write_blob(path: Any, chunks: Iterable[bytes]) -> dict[str, Any]:
    """Stream ``chunks`` to ``path``; return ``{"sha256", "size"}``.  Zero bytes is a valid blob."""
    writer = BlobWriter(path)
    try:
        for chunk in chunks:
            if chunk:
                writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return {"sha256": writer.sha256.hexdigest(), "size": writer.size}


# --------------------------------------------------------------------------- JSON / JSONL


try:  # zlib-ng's gzip module: the same files (RFC 1952), compressed ~2.5x and decompressed ~2x faster than zlib's
    from zlib_ng import gzip_ng as _gzip
except ImportError:  # without the package: the standard library's
    _gzip = gzip  # type: ignore[misc]

#: zlib level of staged JSONL files: the default (6) compresses about twice as fast as 9 for ~3% more bytes.
GZIP_LEVEL = 6
#: Encoded lines gathered before one compress call (one call per line cost more than the compression).
_CHUNK_BYTES = 1 << 20
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: msgspec (an Airflow dependency) parses a JSON line ~2x faster than json; anything it refuses
#: (NaN, Infinity, lone surrogates, numbers past a float) is parsed again by json, so the values
#: read are exactly json's.
_DECODER = msgspec.json.Decoder()
_FAST_ENCODER = msgspec.json.Encoder()


def encode_line(rec: Any, fast: Callable[[Any], bool] | None = None) -> bytes:
    """One JSON line (no newline) as :func:`encode_jsonl_gz` writes it; ``fast``: see there."""
    return _FAST_ENCODER.encode(rec) if fast is not None and fast(rec) else _ENCODER.encode(rec).encode()


def fast_encoder() -> Callable[[Any], bytes]:
    """The encoder :func:`encode_line` uses for a record its ``fast`` accepts (msgspec's), for a caller
    that has checked the record itself."""
    return _FAST_ENCODER.encode


def gzip_lines(lines: Iterable[bytes], level: int = GZIP_LEVEL) -> bytes:
    """Gzip-compress encoded lines (:func:`encode_line`), each followed by a newline, mtime 0: the
    bytes :func:`encode_jsonl_gz` gives for the same records."""
    buf = io.BytesIO()
    with _gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=level) as gz:
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= _CHUNK_BYTES:
                chunk.append(b"")
                gz.write(b"\n".join(chunk))
                chunk, size = [], 0
        if chunk:
            chunk.append(b"")
            gz.write(b"\n".join(chunk))
    return buf.getvalue()


class LinesGz:
    """:func:`gzip_lines` of lines that come a few at a time (append them to :attr:`lines`; :meth:`flush` now
    and then): the same bytes, each 1 MB of lines compressed once it is complete (:func:`gzip_lines` cuts its
    input at the same lines), so what waits for the file is its compressed part and less than 1 MB of lines
    (the calendar's Event lines of one raw batch are ~35 MB)."""

    def __init__(self, level: int = GZIP_LEVEL) -> None:
        self._buf = io.BytesIO()
        self._gz = _gzip.GzipFile(fileobj=self._buf, mode="wb", mtime=0, compresslevel=level)
        #: lines not compressed yet
        self.lines: list[bytes] = []
        self._done = 0

    def __len__(self) -> int:
        return self._done + len(self.lines)

    def flush(self) -> None:
        """Compress the complete chunks of :attr:`lines` (what :func:`gzip_lines` would write of them); keep the rest."""
        lines = self.lines
        ends = list(accumulate(map(len, lines)))
        n, a, base = len(lines), 0, 0
        while (j := bisect_left(ends, base + _CHUNK_BYTES, a)) < n:
            piece = lines[a:j + 1]
            piece.append(b"")
            self._gz.write(b"\n".join(piece))
            base, a = ends[j], j + 1
        del lines[:a]
        self._done += a

    def write(self, path: Any) -> dict[str, Any]:
        """Write the file as :func:`write_lines_gz` writes the same lines; return its manifest entry."""
        self.flush()
        count = len(self)
        if self.lines:
            self.lines.append(b"")
            self._gz.write(b"\n".join(self.lines))
            self._done, self.lines = count, []
        self._gz.close()
        return _write_gz(path, self._buf.getvalue(), count)


def encode_jsonl_gz(records: Iterable[dict[str, Any]], level: int = GZIP_LEVEL,
                    fast: Callable[[dict[str, Any]], bool] | None = None) -> tuple[bytes, int]:
    """Return gzip-compressed JSON lines (mtime 0, so equal records give equal bytes) and the count.

    ``fast``: records it accepts are written by msgspec (~3x faster than json, the same JSON text for
    strings, integers, booleans and null; the same value for a finite float, whose text may differ:
    msgspec writes ``1e16`` where json writes ``1e+16``); it must refuse a record holding NaN or an
    infinity, which msgspec would write as null (json writes ``NaN``, read back as NaN)."""
    count = 0

    def encoded() -> Iterator[bytes]:
        nonlocal count
        for rec in records:
            count += 1
            yield encode_line(rec, fast)

    data = gzip_lines(encoded(), level)
    return data, count


def write_jsonl_gz(path: Any, records: Iterable[dict[str, Any]], level: int = GZIP_LEVEL,
                   fast: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Write records as one gzip JSONL file, replacing any previous file of that name.

    Return ``{"file", "records", "bytes", "sha256"}`` for the manifest.  ``level``: zlib level
    (1: ~3x faster than 6 for ~25% more bytes, for files read once, such as the transform's output);
    ``fast``: see :func:`encode_jsonl_gz`.
    """
    data, count = encode_jsonl_gz(records, level, fast)
    return _write_gz(path, data, count)


def write_lines_gz(path: Any, lines: list[bytes], level: int = GZIP_LEVEL) -> dict[str, Any]:
    """:func:`write_jsonl_gz` of records already encoded (:func:`encode_line`): the same file."""
    return _write_gz(path, gzip_lines(lines, level), len(lines))


def _write_gz(path: Any, data: bytes, count: int) -> dict[str, Any]:
    write_bytes_atomic(path, data)
    return {
        "file": path.name,
        "records": count,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def read_jsonl_gz(path: Any, decoder: msgspec.json.Decoder | None = None,
                  rows: tuple[int, int] | None = None) -> Iterator[Any]:
    """Yield the records of a gzip JSONL file; a bad line raises naming the file and line.

    ``decoder``: a ``msgspec.json.Decoder`` of a type that keeps some fields only (msgspec skips the
    others, far faster than building them); a line it refuses is yielded as plain JSON (a dict).
    ``rows``: ``(start, stop)``, only lines ``start`` to ``stop - 1`` (0-based) are decoded and
    yielded (a slice of a large file: ``clio2sf.pipeline.RowSlice``); reading stops after ``stop``.

    The compressed file (one batch, a few MB) is read in one call: gzip reads its source 8 KB at a
    time, and each read of an ``ObjectStoragePath`` file costs far more than the decompression.
    It is decompressed 1 MB at a time (lines split per block, not read one by one)."""
    with path.open("rb") as raw:
        data = raw.read()
    decode = (decoder or _DECODER).decode
    start, stop = rows if rows is not None else (0, None)
    lineno = 0
    with _gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as gz:
        tail = b""
        while True:
            block = gz.read(_CHUNK_BYTES)
            lines = (tail + block).split(b"\n")
            tail = lines.pop() if block else b""
            for line in lines:
                lineno += 1
                if lineno <= start:
                    continue
                if stop is not None and lineno > stop:
                    return
                if not line or line.isspace():
                    continue
                try:
                    yield decode(line)
                except (msgspec.DecodeError, UnicodeDecodeError):
                    yield _plain_line(path, lineno, line) if decoder is not None else _json_line(path, lineno, line)
            if not block:
                break


def _plain_line(path: Any, lineno: int, line: bytes) -> Any:
    try:
        return _DECODER.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _json_line(path, lineno, line)


def _json_line(path: Any, lineno: int, line: bytes) -> Any:
    """Parse one line with json (what msgspec refused); a bad line raises naming the file and line."""
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ValueError(f"{path}: line {lineno} is not valid JSON ({why})") from None


def write_json(path: Any, obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically."""
    write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode())


def read_json(path: Any, default: Any = None) -> Any:
    """Read a JSON file, or return ``default`` when it does not exist."""
    if not path.exists():
        return default
    with path.open("rb") as fh:
        return json.loads(fh.read())


def append_jsonl(path: Any, records: Iterable[dict[str, Any]]) -> None:
    """Append JSON lines (object stores cannot append: the object is rewritten whole)."""
    lines = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
    if is_local(path):
        ensure_dir(path.parent)
        fd = os.open(_os_path(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        with os.fdopen(fd, "ab") as fh:
            fh.write(lines)
        return
    old = b""
    if path.exists():
        with path.open("rb") as fh:
            old = fh.read()
    write_bytes_atomic(path, old + lines)


def read_jsonl(path: Any) -> list[dict[str, Any]]:
    """Read a plain JSONL file ([] when missing)."""
    if not path.exists():
        return []
    with path.open("rb") as fh:
        return [json.loads(line) for line in fh.read().splitlines() if line.strip()]


def manifest_segment_name(number: int) -> str:
    """Return ``_manifest/part-<NNNNN>.json`` (relative to ``raw/<object>``) for a 1-based segment."""
    if number < 1:
        raise ValueError(f"staging: manifest segment number must be >= 1, got {number}")
    return f"{MANIFEST_SEGMENTS}/part-{number:05d}.json"


def read_manifest(mroot: Any, obj: str) -> dict[str, Any] | None:
    """Return ``raw/<object>/_manifest.json`` with every batch entry, or None when never extracted.

    Shape: ``{"object", "batches": [...], "records", "complete", ...}``.  A manifest written by
    :class:`ManifestWriter` while its object is still being extracted lists segment files instead
    of batches: they are read here, in order, up to the manifest's ``batch_count``.
    """
    odir = raw_dir(mroot, obj)
    doc = read_json(odir / MANIFEST)
    if doc is None or "batches" in doc:
        return doc
    batches: list[dict[str, Any]] = []
    for name in doc.get("segments", []):
        part = read_json(odir / name)
        if part is None:
            raise ValueError(f"{obj}: manifest segment {name} is missing under {odir}")
        batches.extend(part["batches"])
    count = doc.get("batch_count", len(batches))
    if len(batches) < count:
        raise ValueError(f"{obj}: manifest lists {count} batches but its segments hold {len(batches)}")
    return {**doc, "batches": batches[:count]}


class ManifestWriter:
    """Keep ``raw/<object>/_manifest.json`` with flat memory and flat work per batch.

    Batch entries go to segment files ``_manifest/part-NNNNN.json`` of at most ``segment_batches``
    entries; only the current segment is held and rewritten.  While the object is extracted,
    ``_manifest.json`` holds the totals, ``batch_count`` and the segment list; once it is complete
    it also gets the full ``batches`` list, streamed from the segments, so a reader of the plain
    file sees every batch.  ``committed`` is the batch count of ``_progress.json`` (the commit
    point): entries past it, left by a killed run, are dropped.  A manifest of the older form
    (every entry inline, no segments) is converted on resume.
    """

    def __init__(self, odir: Any, obj: str, committed: int, *, segment_batches: int | None = None) -> None:
        segment_batches = SEGMENT_BATCHES if segment_batches is None else segment_batches
        if segment_batches < 1:
            raise ValueError(f"staging: segment_batches must be >= 1, got {segment_batches}")
        self.odir, self.obj, self.size = odir, obj, segment_batches
        self.count = committed
        self.segment = committed // segment_batches + 1
        self.entries: list[dict[str, Any]] = []
        if committed == 0:
            return
        held = committed % segment_batches
        last_full = self.segment - 1 if held == 0 else self.segment
        if not (odir / manifest_segment_name(last_full)).exists():
            self._convert_inline()
        if held:
            part = read_json(odir / manifest_segment_name(self.segment)) or {"batches": []}
            if len(part["batches"]) < held:
                raise ValueError(f"{obj}: manifest segment {manifest_segment_name(self.segment)} holds "
                                 f"{len(part['batches'])} batches, progress needs {held}")
            self.entries = part["batches"][:held]

    def _convert_inline(self) -> None:
        doc = read_json(self.odir / MANIFEST) or {}
        inline = doc.get("batches")
        if "segments" in doc or inline is None or len(inline) < self.count:
            raise ValueError(f"{self.obj}: progress has {self.count} committed batches but "
                             f"{self.odir / MANIFEST} and its segments do not list them")
        for start in range(0, self.count, self.size):
            self._write_segment(start // self.size + 1, inline[start : min(start + self.size, self.count)])

    def _write_segment(self, number: int, entries: list[dict[str, Any]]) -> None:
        write_json(self.odir / manifest_segment_name(number),
                   {"object": self.obj, "segment": number, "first_batch": (number - 1) * self.size + 1,
                    "batches": entries})

    def add(self, batch_no: int, entry: dict[str, Any]) -> None:
        """Record the entry of batch ``batch_no`` (the next one) and rewrite the current segment."""
        if batch_no != self.count + 1:
            raise ValueError(f"{self.obj}: manifest expects batch {self.count + 1}, got {batch_no}")
        if len(self.entries) == self.size:
            self.segment += 1
            self.entries = []
        self.entries.append(entry)
        self.count = batch_no
        self._write_segment(self.segment, self.entries)

    def write(self, records: int, complete: bool) -> None:
        """Rewrite ``_manifest.json``: totals and segments, plus every batch once ``complete``."""
        segments = -(-self.count // self.size)
        doc = {"object": self.obj, "records": records, "complete": complete, "batch_count": self.count,
               "segment_batches": self.size,
               "segments": [manifest_segment_name(n) for n in range(1, segments + 1)]}
        if not complete:
            write_json(self.odir / MANIFEST, doc)
            return
        write_blob(self.odir / MANIFEST, self._stream_complete(doc, segments))

    def _stream_complete(self, doc: dict[str, Any], segments: int) -> Iterator[bytes]:
        yield json.dumps(doc, sort_keys=True, ensure_ascii=False)[:-1].encode() + b', "batches": ['
        first = True
        for number in range(1, segments + 1):
            if number == self.segment:
                entries = self.entries
            else:
                part = read_json(self.odir / manifest_segment_name(number))
                if part is None:
                    raise ValueError(f"{self.obj}: manifest segment {manifest_segment_name(number)} is missing")
                entries = part["batches"]
            for entry in entries:
                yield (b"" if first else b",\n") + json.dumps(entry, sort_keys=True, ensure_ascii=False).encode()
                first = False
        yield b"]}\n"


def read_progress(mroot: Any, obj: str) -> dict[str, Any] | None:
    """Return ``raw/<object>/_progress.json`` or None."""
    return read_json(raw_dir(mroot, obj) / PROGRESS)


# --------------------------------------------------------------------------- retention


def _newest_mtime(path: Any) -> float | None:
    newest = None
    for entry in path.rglob("*"):
        try:
            if entry.is_file():
                mtime = entry.stat().st_mtime
                newest = mtime if newest is None else max(newest, mtime)
        except FileNotFoundError:
            continue
    return newest


def _remove_tree(path: Any) -> None:
    if is_local(path):
        shutil.rmtree(_os_path(path))
    else:
        path.fs.rm(path.path, recursive=True)


def _is_name(check: Any, name: str) -> bool:
    try:
        check(name)
    except ValueError:
        return False
    return True


def purge_older_than(root: Any, days: float, *, now: float | None = None) -> list[str]:
    """Delete every ``<firm>/<migration_id>`` tree whose newest file is older than ``days``.

    A migration is kept while any file in it is recent, so an active migration is never cut in
    half.  Return the purged paths (as strings).
    """
    if days < 0:
        raise ValueError(f"purge_older_than: days must be >= 0, got {days}")
    cutoff = (time.time() if now is None else now) - days * 86400
    purged: list[str] = []
    if not root.exists():
        return purged
    for firm in sorted(root.iterdir(), key=str):
        if not firm.is_dir() or not _is_name(check_firm, firm.name):
            continue  # not a firm folder this bundle made: never purged as one
        for mig in sorted(firm.iterdir(), key=str):
            if not mig.is_dir() or not _is_name(check_migration_id, mig.name):
                continue
            newest = _newest_mtime(mig)
            if newest is None or newest < cutoff:
                _remove_tree(mig)
                purged.append(str(mig))
    return purged
