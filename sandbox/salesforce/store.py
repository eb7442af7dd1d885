"""SQLite persistence: records as JSON per row, plus an index of key and lookup values.

Writes are applied by one writer thread, so a Bulk job's next chunk is validated (Python, holding
the GIL) while SQLite writes the previous one (C, GIL released: each statement takes its whole
batch as one JSON array through ``json_each``). Until a batch commits, its records and key changes
are kept in memory, and the reads DML needs (:meth:`Store.fetch`, :meth:`Store.fetch_meta`,
:meth:`Store.lookup_keys`) merge them, so every caller sees its own writes at once. Every other
read waits for pending writes first (:meth:`Store.flush`).

The key index is one clustered b-tree (``WITHOUT ROWID``); entries are removed by their full key
(the caller knows the old value), so no second index by id is needed.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS records (
    sobject TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, is_deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (id, sobject));
CREATE INDEX IF NOT EXISTS records_obj ON records (sobject, is_deleted);
CREATE TABLE IF NOT EXISTS keys (sobject TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (sobject, field, value, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schema_items (id TEXT PRIMARY KEY, kind TEXT, full_name TEXT, data TEXT);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, kind TEXT, data TEXT);
"""
CHUNK = 900

try:  # msgspec comes with Airflow; it encodes a record ~7x faster than json (same JSON values)
    import msgspec

    _ENC = msgspec.json.Encoder()
    _DEC = msgspec.json.Decoder()
except ImportError:  # pragma: no cover - the json module alone gives the same results, slower
    _ENC = _DEC = None

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def encode(d: dict) -> str:
    """A record as compact JSON text.

    Numbers are finite here (``values.convert`` rejects NaN and out-of-range values), so msgspec and
    json write the same text; json is the fallback for what msgspec refuses.
    """
    if _ENC is not None:
        try:
            return _ENC.encode(d).decode()
        except (TypeError, ValueError, UnicodeError, OverflowError):
            pass
    return _dumps(d)


def decode(text: str) -> dict:
    if _DEC is not None:
        try:
            return _DEC.decode(text)
        except (msgspec.DecodeError, ValueError):
            pass
    return json.loads(text)


def _json_array(items: list[tuple]) -> str:
    """``items`` as one JSON array text (records inside keep their :func:`encode` form)."""
    if _ENC is not None:
        try:
            return _ENC.encode(items).decode()
        except (TypeError, ValueError, UnicodeError, OverflowError):
            pass
    return "[" + ",".join("[" + ",".join(encode(v) if isinstance(v, dict) else _dumps(v) for v in t) + "]"
                          for t in items) + "]"


class _Pending:
    """One write batch between :meth:`Store.write` and its commit, readable in the meantime."""

    def __init__(self, inserts: list[tuple[str, str, dict]], updates: list[tuple[str, str, dict]],
                 keys_add: list[tuple[str, str, str, str]], keys_drop: list[tuple[str, str, str, str]]):
        self.recs: dict[tuple[str, str], dict] = {(s, i): d for s, i, d in inserts}
        self.recs.update({(s, i): d for s, i, d in updates})
        self._by_id: dict[str, str] | None = None
        self._keys_add = keys_add
        self._added: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.dropped = set(keys_drop)
        self.deletes = any(d.get("IsDeleted") for _s, _i, d in updates)
        self.params = (_json_array([(s, i, bool(d.get("IsDeleted")), d) for s, i, d in inserts]),
                       _json_array([(s, i, bool(d.get("IsDeleted")), d) for (s, i), d in
                                    {(s, i): d for s, i, d in updates}.items()]),
                       _json_array(keys_drop), _json_array(keys_add))
        self.done = threading.Event()

    def added(self, sobject: str, field: str) -> dict[str, list[str]]:
        """value -> ids this batch adds to the key index for one field (built on first use)."""
        got = self._added.get((sobject, field))
        if got is None:
            got = self._added[(sobject, field)] = {}
            for s, f, v, i in self._keys_add:
                if f == field and s == sobject:
                    got.setdefault(v, []).append(i)
        return got

    def record(self, sobject: str | None, rid: str) -> tuple[str, dict] | None:
        if sobject is not None:
            d = self.recs.get((sobject, rid))
            return None if d is None else (sobject, d)
        if self._by_id is None:
            self._by_id = {}
            for s, i in self.recs:
                self._by_id.setdefault(i, s)
        s = self._by_id.get(rid)
        return None if s is None else (s, self.recs[(s, rid)])


_WRITE_SQL = (
    "INSERT INTO records (sobject, id, data, is_deleted) SELECT value->>0, value->>1, value->'$[3]', value->>2 "
    "FROM json_each(?)",
    "UPDATE records SET data = j.value->'$[3]', is_deleted = j.value->>2 "
    "FROM json_each(?) AS j WHERE records.sobject = j.value->>0 AND records.id = j.value->>1",
    "DELETE FROM keys WHERE (sobject, field, value, id) IN "
    "(SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?))",
    "INSERT OR IGNORE INTO keys (sobject, field, value, id) "
    "SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)",
)


class Store:
    """Records and keys in SQLite: one connection for the writer thread, one for reads.

    ``lock`` is the org's re-entrant lock (the server is multi-threaded); the store itself only
    orders writes (one queue) and makes readers wait for, or merge, what is not yet committed.
    """

    def __init__(self, path: Path):
        self.db = self._connect(path)
        self.db.executescript(SCHEMA)
        self.db.execute("DROP INDEX IF EXISTS keys_id")  # data dirs made before the clustered key index
        self.rdb = self._connect(path)
        self.path = path
        self._readers: list[sqlite3.Connection] = []  # idle connections for snapshot scans
        self._readers_lock = threading.Lock()
        self.lock = threading.RLock()
        self._q: queue.Queue[tuple[Callable[[sqlite3.Connection], None], threading.Event, _Pending | None]] = \
            queue.Queue()
        self._pending: list[_Pending] = []
        self._last = threading.Event()
        self._last.set()
        self._error: BaseException | None = None
        self._submit_lock = threading.Lock()
        threading.Thread(target=self._writer, name="sf-store-writer", daemon=True).start()
        atexit.register(lambda: self._last.wait(60))  # a stopping server commits what it acknowledged

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # An emulator's data must survive a crashed process (WAL does), not a power cut: skipping the
        # fsyncs makes commits and checkpoints several times cheaper for Bulk-sized batches.
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-200000")
        return db

    # -- the writer ---------------------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            op, done, pending = self._q.get()
            db = self.db
            try:
                if self._error is None:
                    db.execute("BEGIN")
                    try:
                        op(db)
                        db.execute("COMMIT")
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
            except BaseException as e:  # noqa: BLE001 - kept and raised to the next caller
                log.exception("sandbox store write failed; the org refuses further work")
                self._error = e
            finally:
                if pending is not None:
                    self._pending.remove(pending)
                done.set()

    def _submit(self, op: Callable[[sqlite3.Connection], None], pending: _Pending | None = None) -> None:
        self._check()
        done = pending.done if pending is not None else threading.Event()
        with self._submit_lock:  # queue order and ``_last`` must agree for flush()
            if pending is not None:
                self._pending.append(pending)
            self._last = done
            self._q.put((op, done, pending))

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"sandbox store write failed earlier: {self._error!r}")

    def flush(self) -> None:
        """Wait until every submitted write is committed."""
        self._last.wait()
        self._check()

    def _overlay(self) -> list[_Pending]:
        return list(self._pending)

    # -- meta ---------------------------------------------------------------------------------
    def meta_get(self, key: str, default: str | None = None) -> str | None:
        self.flush()
        row = self.rdb.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def meta_set(self, key: str, value: str) -> None:
        self._submit(lambda db: db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value)))

    # -- records ------------------------------------------------------------------------------
    def fetch(self, sobject: str | None, ids: Iterable[str]) -> dict[str, tuple[str, dict, bool]]:
        """id -> (sobject, data, is_deleted) for the ids that exist."""
        over = self._overlay()
        ids = list(dict.fromkeys(ids))
        out: dict[str, tuple[str, dict, bool]] = {}
        for i in range(0, len(ids), CHUNK):
            part = ids[i : i + CHUNK]
            marks = ",".join("?" * len(part))
            if sobject:
                rows = self.rdb.execute(
                    f"SELECT sobject, id, data, is_deleted FROM records WHERE sobject=? AND id IN ({marks})",
                    (sobject, *part))
            else:
                rows = self.rdb.execute(
                    f"SELECT sobject, id, data, is_deleted FROM records WHERE id IN ({marks})", part)
            for s, rid, data, deleted in rows:
                out[rid] = (s, decode(data), bool(deleted))
        for p in over:
            for rid in ids:
                hit = p.record(sobject, rid)
                if hit is not None:
                    out[rid] = (hit[0], hit[1], bool(hit[1].get("IsDeleted")))
        return out

    def fetch_meta(self, ids: Iterable[str]) -> dict[str, tuple[str, dict, bool]]:
        """Like fetch, but only the fields lookup checks need (type, deleted, IsActive, SobjectType)."""
        over = self._overlay()
        ids = list(ids)
        out: dict[str, tuple[str, dict, bool]] = {}
        for i in range(0, len(ids), CHUNK):
            part = ids[i : i + CHUNK]
            marks = ",".join("?" * len(part))
            for s, rid, active, stype, deleted in self.rdb.execute(
                f"SELECT sobject, id, json_extract(data, '$.IsActive'), json_extract(data, '$.SobjectType'), "
                f"is_deleted FROM records WHERE id IN ({marks})", part):
                out[rid] = (s, {"IsActive": bool(active), "SobjectType": stype}, bool(deleted))
        for p in over:
            for rid in ids:
                hit = p.record(None, rid)
                if hit is not None:
                    d = hit[1]
                    out[rid] = (hit[0], {"IsActive": bool(d.get("IsActive")), "SobjectType": d.get("SobjectType")},
                                bool(d.get("IsDeleted")))
        return out

    def lookup_keys(self, sobject: str, field: str, values: Iterable[str]) -> dict[str, list[str]]:
        """value -> ids of live records having that value in the key index."""
        over = self._overlay()
        values = list(dict.fromkeys(values))
        out: dict[str, list[str]] = {}
        for i in range(0, len(values), CHUNK):
            part = values[i : i + CHUNK]
            marks = ",".join("?" * len(part))
            for value, rid in self.rdb.execute(
                f"SELECT k.value, k.id FROM keys k JOIN records r ON r.id=k.id AND r.sobject=k.sobject "
                f"WHERE k.sobject=? AND k.field=? AND k.value IN ({marks}) AND r.is_deleted=0",
                (sobject, field, *part),
            ):
                out.setdefault(value, []).append(rid)
        return self._merge_keys(out, over, sobject, field, values) if over else out

    @staticmethod
    def _merge_keys(out: dict[str, list[str]], over: list[_Pending], sobject: str, field: str,
                    values: list[str]) -> dict[str, list[str]]:
        """Apply pending key changes and deletions, in write order, to a committed lookup."""
        for p in over:
            added = p.added(sobject, field)
            if not (p.dropped or p.deletes):
                # Only additions: touch just the values this batch added.
                for v in added.keys() & set(values):
                    ids_ = out.setdefault(v, [])
                    ids_ += [i for i in added[v] if i not in ids_]
                continue
            for v in values:
                ids_ = out.get(v, [])
                kept = [i for i in ids_ if (sobject, field, v, i) not in p.dropped]
                for i in added.get(v, ()):
                    if i not in kept:
                        kept.append(i)
                kept = [i for i in kept if not (p.recs.get((sobject, i)) or {}).get("IsDeleted")]
                if kept:
                    out[v] = kept
                else:
                    out.pop(v, None)
        return out

    def keys_any(self, sobject: str, field: str, values: list[str]) -> dict[str, list[str]]:
        """value -> ids having that value in the key index, deleted records included (queryAll)."""
        self.flush()
        out: dict[str, list[str]] = {}
        for i in range(0, len(values), CHUNK):
            part = values[i:i + CHUNK]
            for v, rid in self.rdb.execute(
                    f"SELECT value, id FROM keys WHERE sobject=? AND field=? AND value IN ({','.join('?' * len(part))})",
                    (sobject, field, *part)):
                out.setdefault(v, []).append(rid)
        return out

    def scan(self, sobject: str, *, include_deleted: bool, ids: list[str] | None = None) -> Iterator[dict]:
        """The records of ``sobject`` (only ``ids``, when given), in insertion order for a whole table.

        A whole-table scan reads a snapshot: the call itself waits for every submitted write, then pins
        the table as it is at that moment (a read transaction on a connection of its own, see
        :meth:`_snapshot`); the rows are read and decoded as the iterator is consumed.  Call it holding
        ``lock`` and consume it after releasing the lock: the result is exactly what a read of the whole
        table under the lock would give (same rows, same order), while other requests and writes go on.
        Reading ``ids`` goes through :meth:`fetch` (pending writes merged) as the iterator is consumed.
        """
        if ids is not None:
            return self._scan_ids(sobject, include_deleted, ids)
        self.flush()
        sql = "SELECT data FROM records WHERE sobject=?" + ("" if include_deleted else " AND is_deleted=0")
        sql += " ORDER BY rowid"
        rows = self._snapshot(sql, (sobject,))
        next(rows)  # the snapshot is pinned now, not when the caller starts reading
        return rows

    def _scan_ids(self, sobject: str, include_deleted: bool, ids: list[str]) -> Iterator[dict]:
        for _, data, deleted in self.fetch(sobject, ids).values():
            if include_deleted or not deleted:
                yield data

    def _snapshot(self, sql: str, params: tuple) -> Iterator[dict | None]:
        """Rows of ``sql`` (one JSON ``data`` column), decoded, from a snapshot pinned at the first ``next``.

        Why a snapshot rather than chunks: with WAL, a read transaction sees the database as of its
        first read for as long as it lasts, while the writer thread keeps committing. Pinning it costs
        one small read (done by the first ``next``, which yields None, under the caller's lock); the
        whole-table read then runs outside the lock. Reading in chunks with the lock released between
        them would let a write land between two chunks (a record moved, changed or deleted half-way),
        so a result would no longer be one consistent state of the table. The connection is a pooled
        one of its own: a transaction on ``rdb`` would freeze every other reader's view too.
        """
        db = self._take_reader()
        try:
            db.execute("BEGIN")
            try:
                db.execute("SELECT 1 FROM records LIMIT 1").fetchall()  # the first read starts the snapshot
                yield None
                cur = db.execute(sql, params)
                try:
                    for (data,) in cur:
                        yield decode(data)
                finally:
                    cur.close()  # a reader that stopped early: the statement ends before the transaction
            finally:
                db.execute("COMMIT")
        finally:
            self._give_back(db)

    def _take_reader(self) -> sqlite3.Connection:
        with self._readers_lock:
            if self._readers:
                return self._readers.pop()
        return self._connect(self.path)

    def _give_back(self, db: sqlite3.Connection) -> None:
        with self._readers_lock:
            self._readers.append(db)

    def count(self, sobject: str) -> int:
        self.flush()
        return self.rdb.execute("SELECT COUNT(*) FROM records WHERE sobject=? AND is_deleted=0",
                                (sobject,)).fetchone()[0]

    def counts(self) -> dict[str, int]:
        self.flush()
        return dict(self.rdb.execute(
            "SELECT sobject, COUNT(*) FROM records WHERE is_deleted=0 GROUP BY sobject").fetchall())

    def total_rows(self) -> int:
        self.flush()
        return self.rdb.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def write(self, inserts: list[tuple[str, str, dict]], updates: list[tuple[str, str, dict]],
              keys_add: list[tuple[str, str, str, str]], keys_drop: list[tuple[str, str, str, str]]) -> None:
        """Submit one batch, applied atomically. Tuples: (sobject, id, data); keys (sobject, field, value, id).

        Returns once the batch is readable through fetch/lookup_keys; at most one batch waits to commit,
        so a caller never runs more than one batch ahead of the disk.
        """
        if not (inserts or updates or keys_add or keys_drop):
            return
        for p in self._overlay():
            p.done.wait()
        pending = _Pending(inserts, updates, keys_add, keys_drop)

        def op(db: sqlite3.Connection) -> None:
            for sql, param in zip(_WRITE_SQL, pending.params, strict=True):
                if param != "[]":
                    db.execute(sql, (param,))

        self._submit(op, pending)

    def hard_delete(self, pairs: list[tuple[str, str]], keys: list[tuple[str, str, str, str]]) -> None:
        """Remove records (sobject, id) and their key entries (sobject, field, value, id)."""
        def op(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM records WHERE sobject=? AND id=?", pairs)
            db.executemany("DELETE FROM keys WHERE sobject=? AND field=? AND value=? AND id=?", keys)

        self._submit(op)
        self.flush()

    # -- schema items and jobs ------------------------------------------------------------------
    def schema_items(self) -> list[tuple[str, str, str, dict]]:
        self.flush()
        return [(i, k, n, json.loads(d)) for i, k, n, d in
                self.rdb.execute("SELECT id, kind, full_name, data FROM schema_items ORDER BY rowid")]

    def add_schema_item(self, item_id: str, kind: str, full_name: str, data: dict) -> None:
        row = (item_id, kind, full_name, json.dumps(data))
        self._submit(lambda db: db.execute("INSERT INTO schema_items VALUES (?,?,?,?)", row))

    def save_job(self, job_id: str, kind: str, data: dict) -> None:
        row = (job_id, kind, json.dumps(data))
        self._submit(lambda db: db.execute("INSERT OR REPLACE INTO jobs VALUES (?,?,?)", row))

    def load_job(self, job_id: str) -> dict | None:
        self.flush()
        row = self.rdb.execute("SELECT data FROM jobs WHERE id=?", (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def list_jobs(self, kind: str) -> list[dict]:
        self.flush()
        return [json.loads(d) for (d,) in self.rdb.execute("SELECT data FROM jobs WHERE kind=? ORDER BY rowid", (kind,))]
