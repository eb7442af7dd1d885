"""The append-only run ledger: one JSONL file per (run, phase, sobject, batch).

Object stores cannot append, so a :class:`LedgerWriter` buffers its lines and writes
``ledger/<run_id>/<phase>/<sobject>/<batch>.jsonl`` once, on :meth:`LedgerWriter.close`.
A retried batch overwrites its own file; parallel tasks never share a file.

Rollback lines are written with ``phase="rollback"`` under the *rolled-back* run's id
(see :mod:`clio2sf.rollback`).

While a batch loads, a :class:`BatchJournal` writes ``<batch>.journal-NNNNN.jsonl`` files next to it,
one per Salesforce write call: ``intent`` lines *before* the call (what is about to be written, and
the marker a look-up can find it by) and the call's ``ok`` lines right *after* it.  A worker killed
mid-batch therefore leaves on record every record it created (rollback reads them like any ledger
line), and the batch's next attempt knows which records an earlier attempt may have created.  What an
attempt saw *before* its first write call (:meth:`BatchJournal.remember`: a delta batch's before-images,
the relations a Contact batch's people had) is journalled too, as ``intent`` lines of their own
operation, so the next attempt starts from what was there before the batch, not from what the dead
attempt left.  The journal files are removed once the batch's ledger file is written.  A batch that died and
was not run again has only its journal: a rollback reads it with its before-images (:func:`file_lines`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clio2sf import ledger_index, staging
from clio2sf.reports import json_default

if TYPE_CHECKING:  # imported where a frame is built: most tasks parse a DAG file that imports this
    import pandas as pd  # module and never build one (pandas was ~60% of mig_05_full_load's import)

STATUSES = ("ok", "failed", "skipped", "intent")
COLUMNS = (
    "migration_id", "run_id", "phase", "object", "batch", "source_system_id", "sf_id",
    "operation", "created", "before", "file_ids", "status", "error", "at",
)


def utc_now_iso() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _segment(name: str, value: Any) -> str:
    text = str(value)
    if not text or "/" in text or "\\" in text or text in (".", ".."):
        raise ValueError(f"ledger {name} {text!r} is not a valid path segment")
    return text


def _iso(value: str | datetime | None) -> str:
    if value is None:
        return utc_now_iso()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


class LedgerWriter:
    """Collects the ledger lines of one batch and writes them in one go.

    ``root`` is the migration root (``<firm>/<migration_id>/``), any pathlib-like object.
    Used as a context manager the file is written even when the block raises: the
    Salesforce writes that did happen must be on record for rollback.
    """

    def __init__(self, root: Any, migration_id: str, run_id: str, phase: str, sobject: str,
                 batch: str, *, clock: Callable[[], str] = utc_now_iso) -> None:
        self.root = root
        self.migration_id = str(migration_id)
        self.run_id = _segment("run_id", run_id)
        self.phase = _segment("phase", phase)
        self.sobject = _segment("sobject", sobject)
        self.batch = _segment("batch", batch)
        self._clock = clock
        self._lines: list[bytes] = []  # encoded, so the file is one join
        # what the look-up index holds (clio2sf.ledger_index.COLUMNS), as tuples: a batch's dict per line
        # cost ~600 bytes a row of a load task's peak
        self._ok: list[tuple[Any, ...]] = []
        self._closed_path: Any = None

    @property
    def path(self) -> Any:
        """Where :meth:`close` writes."""
        return self.root / "ledger" / self.run_id / self.phase / self.sobject / f"{self.batch}.jsonl"

    @property
    def index_path(self) -> Any:
        """The file's look-up twin (:mod:`clio2sf.ledger_index`), written right after it."""
        return ledger_index.index_path(self.root, self.run_id, self.phase, self.sobject, self.batch)

    def __len__(self) -> int:
        return len(self._lines)

    def record(self, *, source_system_id: str, sf_id: str | None, operation: str, created: bool,
               before: dict[str, Any] | None = None, file_ids: Iterable[str] = (),
               status: str = "ok", error: str | None = None,
               at: str | datetime | None = None) -> None:
        """Add one line (one Salesforce write, or a failed/skipped attempt)."""
        if self._closed_path is not None:
            raise RuntimeError(f"ledger {self.path} is already closed")
        if not source_system_id or not isinstance(source_system_id, str):
            raise ValueError(f"ledger {self.sobject}/{self.batch}: source_system_id must be a non-empty string")
        if status not in STATUSES:
            raise ValueError(f"ledger {self.sobject}/{self.batch}: {source_system_id}: status "
                             f"{status!r} not in {STATUSES}")
        if not operation or not isinstance(operation, str):
            raise ValueError(f"ledger {self.sobject}/{self.batch}: {source_system_id}: operation missing")
        if status == "ok" and not sf_id:
            raise ValueError(f"ledger {self.sobject}/{self.batch}: {source_system_id}: a successful "
                             "write needs sf_id")
        if before is not None and not isinstance(before, dict):
            raise ValueError(f"ledger {self.sobject}/{self.batch}: {source_system_id}: before must be a dict")
        line = {
            "migration_id": self.migration_id, "run_id": self.run_id, "phase": self.phase,
            "object": self.sobject, "batch": self.batch, "source_system_id": source_system_id,
            "sf_id": sf_id, "operation": operation, "created": bool(created), "before": before,
            "file_ids": [str(f) for f in file_ids], "status": status, "error": error,
            "at": _iso(at) if at is not None else self._clock(),
        }
        self._lines.append((json.dumps(line, default=json_default, sort_keys=False) + "\n").encode("utf-8"))
        if status == "ok":
            self._ok.append(tuple(line[c] for c in ledger_index.COLUMNS))

    def close(self) -> Any:
        """Write the file (once; later calls return the same path) and return its path."""
        if self._closed_path is not None:
            return self._closed_path
        target = self.path
        data = b"".join(self._lines)
        staging.write_bytes_atomic(target, data)  # owner-only: before-images hold client data
        del data
        # after the ledger file (the source of truth): a look-up reads a file without its twin directly
        ledger_index.write_index(self.index_path, ({"status": "ok", **dict(zip(ledger_index.COLUMNS, t, strict=True))}
                                                   for t in self._ok))
        self._closed_path = target
        return target

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- reading


def _children(path: Any) -> list[Any]:
    try:
        return sorted(path.iterdir(), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def ledger_files(root: Any, run_id: str | None = None, phase: str | None = None) -> Iterator[Any]:
    """Ledger files under ``root`` (sorted), optionally for one run and/or phase."""
    base = root / "ledger"
    if not base.exists():
        return
    runs = [base / run_id] if run_id is not None else _children(base)
    for run_dir in runs:
        phases = [run_dir / phase] if phase is not None else _children(run_dir)
        for phase_dir in phases:
            for obj_dir in _children(phase_dir):
                for f in _children(obj_dir):
                    if f.name.endswith(".jsonl"):
                        yield f


def parse_ledger_lines(text: str, where: str = "ledger") -> list[dict[str, Any]]:
    """Parse JSONL ledger text; a bad line raises naming the file and line number."""
    out = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: line {n} is not valid JSON ({exc.msg})") from None
        missing = [c for c in ("run_id", "phase", "object", "source_system_id", "status") if c not in obj]
        if missing:
            raise ValueError(f"{where}: line {n} lacks {missing}")
        out.append(obj)
    return out


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame.from_records(records, columns=list(COLUMNS)) if records else pd.DataFrame(
        {c: pd.Series(dtype="object") for c in COLUMNS})
    df["created"] = df["created"].fillna(False).astype(bool)
    df["at"] = pd.to_datetime(df["at"], utc=True, format="ISO8601")
    return df


def _read(f: Any) -> list[dict[str, Any]]:
    with f.open("rb") as fh:
        return parse_ledger_lines(fh.read().decode("utf-8"), where=str(f))


#: A journal file's name: ``<batch>`` + this + ``NNNNN.jsonl`` (:class:`BatchJournal`).
JOURNAL = ".journal-"
#: The key of a Contact's before-image (as :func:`file_lines` completes a dead batch's journal) that holds the
#: Ids (15 characters) of the AccountContactRelations it had before the batch: not a field.
RELATIONS_BEFORE = "_relations_before"


def file_lines(root: Any, run_id: str | None = None, phase: str | None = None, *,
               journal_images: bool = False) -> Iterator[list[dict[str, Any]]]:
    """The lines of each file of :func:`ledger_files`, a file at a time.

    ``journal_images``: a batch's journal whose ledger file was never written (its task died and its retries ran
    out) is read a batch at a time, and its successful updates carry the before-image the batch journalled before
    its first write (:meth:`BatchJournal.remember`), as the batch's ledger line would have: a Contact's also the
    Ids of the AccountContactRelations it had (:data:`RELATIONS_BEFORE`). A batch with a ledger file keeps its
    journal's lines as they are: its ledger lines have the images (the ledger wins)."""
    for _folder, group in itertools.groupby(ledger_files(root, run_id, phase), key=lambda f: f.parent):
        files = list(group)
        if not journal_images:
            yield from (_read(f) for f in files)
            continue
        names = {f.name for f in files}
        dead: dict[str, list[Any]] = {}  # batch -> its journal files, when it has no ledger file
        for f in files:
            batch = f.name.split(JOURNAL, 1)[0] if JOURNAL in f.name else None
            if batch is not None and f"{batch}.jsonl" not in names:
                dead.setdefault(batch, []).append(f)
            else:
                yield _read(f)
        for batch_files in dead.values():
            lines = [line for f in batch_files for line in _read(f)]
            yield _with_images(lines)


def _with_images(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A dead batch's journal lines (:func:`file_lines`) with its before-images on its successful updates."""
    images: dict[str, Any] = {}
    relations: dict[str, list[str]] = {}
    for line in lines:
        if line.get("status") == "intent" and line.get("operation") == "before_image" \
                and isinstance(line.get("before"), dict):
            images.setdefault(norm_id(line.get("sf_id")), line["before"])
        elif line.get("status") == "intent" and line.get("operation") == "relation_before" \
                and isinstance(line.get("before"), dict) and line["before"].get("contact"):
            relations.setdefault(norm_id(line["before"]["contact"]), list(line["before"].get("ids") or ()))
    if not images:
        return lines
    out = []
    for line in lines:
        key = norm_id(line.get("sf_id"))
        if line.get("status") == "ok" and key in images and not line.get("created") \
                and line.get("operation") != "delete" and line.get("before") is None:
            before = dict(images[key])
            if line.get("object") == "Contact" and key in relations:
                before[RELATIONS_BEFORE] = relations[key]
            line = {**line, "before": before}
        out.append(line)
    return out


def read_ledger(root: Any, run_id: str | None = None, phase: str | None = None, *,
                journal_images: bool = False) -> pd.DataFrame:
    """All ledger lines (optionally of one run/phase) as a DataFrame with :data:`COLUMNS`.

    Files are read one by one and concatenated; ``at`` becomes a UTC timestamp. ``journal_images``: as
    :func:`file_lines` (what a rollback plans from).
    """
    frames = []
    for records in file_lines(root, run_id, phase, journal_images=journal_images):
        if records:
            frames.append(_frame(records))
    if not frames:
        return _frame([])
    import pandas as pd

    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["at", "run_id", "phase", "object", "batch"], kind="stable").reset_index(drop=True)


def iter_lines(root: Any, run_id: str | None = None, phase: str | None = None, *,
               journal_images: bool = False) -> Iterator[dict[str, Any]]:
    """The ledger lines of :func:`ledger_files` one file at a time (memory: one file, or a dead batch's journal:
    ``journal_images``, :func:`file_lines`), in file order; a bad line raises as in :func:`read_ledger`."""
    for lines in file_lines(root, run_id, phase, journal_images=journal_images):
        yield from lines


def lines_frame(lines: list[dict[str, Any]]) -> pd.DataFrame:
    """Some ledger lines (as :func:`iter_lines` yields them) as :func:`read_ledger` would hold them:
    its columns and types, in its order."""
    return _frame(lines).sort_values(["at", "run_id", "phase", "object", "batch"], kind="stable").reset_index(
        drop=True)


def _ok_writes(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df["sf_id"].notna()]


def created_ids(df: pd.DataFrame) -> dict[str, list[str]]:
    """sobject → Salesforce ids created (successfully), in ledger order, without repeats."""
    rows = _ok_writes(df)
    rows = rows[rows["created"] & (rows["phase"] != "rollback")]
    out: dict[str, list[str]] = {}
    for sobject, group in rows.groupby("object", sort=True):
        out[str(sobject)] = list(dict.fromkeys(group["sf_id"].astype(str)))
    return out


def updated_with_before(df: pd.DataFrame) -> pd.DataFrame:
    """Successful updates that carry a before-image, the earliest one per (object, sf_id).

    The earliest is the true original when a run touched a record twice.
    Columns: object, source_system_id, sf_id, before, at, run_id.
    """
    rows = _ok_writes(df)
    mask = (~rows["created"]) & rows["before"].map(lambda b: isinstance(b, dict)) & (rows["phase"] != "rollback")
    rows = rows[mask]
    rows = rows.sort_values("at", kind="stable").drop_duplicates(["object", "sf_id"], keep="first")
    return rows[["object", "source_system_id", "sf_id", "before", "at", "run_id"]].reset_index(drop=True)


def last_write_by_record(df: pd.DataFrame) -> pd.DataFrame:
    """Latest successful write per (object, source_system_id).

    Columns: object, source_system_id, sf_id, at, run_id, phase, operation. Used by delta
    conflict detection: Salesforce changes after ``at`` were not made by us.
    """
    rows = _ok_writes(df).sort_values("at", kind="stable")
    rows = rows.drop_duplicates(["object", "source_system_id"], keep="last")
    cols = ["object", "source_system_id", "sf_id", "at", "run_id", "phase", "operation"]
    return rows[cols].reset_index(drop=True)


# --------------------------------------------------------------------------- write journal


#: What a batch's attempt saw before its first write call (:meth:`BatchJournal.remember`): ``before_image``
#: (by Salesforce id, the record's fields as the batch found them, for rollback) and ``relation_before`` (by a
#: Contact's external id, the AccountContactRelations it had: the ones Salesforce made when it moved it are not).
SEEN = ("before_image", "relation_before")
#: The keyword arguments of :meth:`LedgerWriter.record` a journalled delete keeps (:meth:`BatchJournal.deleted`).
LINE_KWARGS = ("source_system_id", "sf_id", "operation", "created", "before", "status", "error")


class BatchJournal:
    """Durable intent and result lines of one batch's write calls (see the module docstring).

    :meth:`intend` before a write call, :meth:`done` after it; each writes a new small file at once
    (object stores cannot append).  :attr:`intended` holds the source ids of this attempt *and* of
    earlier attempts of the same run/phase/batch (read at construction); :attr:`created` the
    Salesforce ids earlier attempts and this one reported as created; :attr:`seen` what the earliest
    attempt saw before writing (:meth:`remember`); :attr:`earlier_deletes` the deletes earlier attempts
    journalled (:meth:`deleted`).
    """

    def __init__(self, root: Any, migration_id: str, run_id: str, phase: str, sobject: str, batch: str,
                 *, clock: Callable[[], str] = utc_now_iso) -> None:
        self._args = (root, migration_id, run_id, phase, sobject, batch)
        self._clock = clock
        probe = LedgerWriter(*self._args)
        self.dir = probe.path.parent
        self.prefix = f"{probe.batch}.journal-"
        self.intended: dict[str, str | None] = {}  # source id -> marker
        self.created: dict[str, str] = {}  # normalised sf id -> source id
        self.prior_intended: set[str] = set()
        self.seen: dict[str, dict[str, Any]] = {k: {} for k in SEEN}  # kind -> normalised sf id -> value
        self.earlier_deletes: dict[str, dict[str, Any]] = {}  # normalised sf id -> an earlier attempt's line
        self._seq = 0
        for f in self.files():
            self._seq = max(self._seq, int(f.name[len(self.prefix):-len(".jsonl")] or 0))
            with f.open("rb") as fh:
                for line in parse_ledger_lines(fh.read().decode("utf-8"), where=str(f)):
                    self._note(line)
        self.prior_intended = set(self.intended)

    def files(self) -> list[Any]:
        return [f for f in _children(self.dir) if f.name.startswith(self.prefix) and f.name.endswith(".jsonl")]

    def _note(self, line: Mapping[str, Any]) -> None:
        sid = str(line["source_system_id"])
        if line["status"] == "intent" and line.get("operation") in SEEN:  # not a write, nor meant to be one
            self.seen[line["operation"]].setdefault(norm_id(line.get("sf_id")), line.get("before"))
        elif line["status"] == "intent":
            self.intended[sid] = (line.get("before") or {}).get("marker")
        elif line["status"] == "ok" and line.get("created") and line.get("sf_id"):
            self.created[norm_id(line["sf_id"])] = sid
        elif line["status"] == "ok" and line.get("operation") == "delete" and isinstance(line.get("before"), dict):
            self.earlier_deletes[norm_id(line["sf_id"])] = {k: line.get(k) for k in LINE_KWARGS}

    def _write(self, fill: Callable[[LedgerWriter], None]) -> None:
        self._seq += 1
        w = LedgerWriter(*self._args[:5], f"{self._args[5]}.journal-{self._seq:05d}", clock=self._clock)
        fill(w)
        if len(w):
            w.close()

    def intend(self, items: Iterable[tuple[str, str | None]], operation: str = "insert") -> None:
        """Record (source id, marker) pairs about to be written, before the call goes out."""
        items = list(items)

        def fill(w: LedgerWriter) -> None:
            for sid, marker in items:
                w.record(source_system_id=sid, sf_id=None, operation=operation, created=False,
                         before={"marker": marker} if marker else None, status="intent")
                self.intended[sid] = marker

        self._write(fill)

    def remember(self, kind: str, values: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
        """Journal what this attempt saw before its first write call (``kind`` in :data:`SEEN`; an id -> a dict or
        None) unless an earlier attempt of the batch did; returns every attempt's, the earliest value of each id
        (what was there before the batch, when an earlier attempt died after writing)."""
        known = self.seen[kind]
        new = {norm_id(k): (dict(v) if v is not None else None) for k, v in values.items() if norm_id(k) not in known}

        def fill(w: LedgerWriter) -> None:
            for k, v in new.items():
                w.record(source_system_id=k, sf_id=k, operation=kind, created=False, before=v, status="intent")

        if new:
            self._write(fill)
            known.update(new)
        return known

    def deleted(self, lines: Iterable[Mapping[str, Any]]) -> None:
        """Journal the ledger lines (:meth:`LedgerWriter.record` keyword arguments) of the records a delete call
        removed, before-images and all: a rollback re-creates them when the batch dies before its ledger file; its
        next attempt finds them gone and puts these lines in its ledger file (:attr:`earlier_deletes`)."""
        ok = [dict(line) for line in lines if line.get("status") == "ok" and line.get("operation") == "delete"]

        def fill(w: LedgerWriter) -> None:
            for line in ok:
                w.record(**{k: line.get(k) for k in LINE_KWARGS})

        if ok:
            self._write(fill)

    def done(self, outcomes: Iterable[Any]) -> None:
        """Record the successful writes a call reported (``RowOutcome``-like: source_system_id, sf_id, ...)."""
        ok = [o for o in outcomes if getattr(o, "success", False) and getattr(o, "sf_id", None)]

        def fill(w: LedgerWriter) -> None:
            for o in ok:
                w.record(source_system_id=o.source_system_id, sf_id=o.sf_id, operation=o.operation,
                         created=bool(o.created), file_ids=tuple(o.file_ids or ()), status="ok")
                if o.created:
                    self.created[norm_id(o.sf_id)] = o.source_system_id

        if ok:
            self._write(fill)

    def clear(self) -> None:
        """Remove the journal files (after the batch's ledger file holds everything they said)."""
        for f in self.files():
            # the twin first: a ledger file without its twin is still read, a twin alone never
            ledger_index.remove_index(ledger_index.index_path(*self._args[:1], *self._args[2:5], f.name[: -len(".jsonl")]))
            f.unlink()


def norm_id(v: Any) -> str:
    """A Salesforce id in its 15-character form (18-character ids are case-safe copies)."""
    s = "" if v is None else str(v)
    return s[:15] if len(s) == 18 and s.isalnum() else s
