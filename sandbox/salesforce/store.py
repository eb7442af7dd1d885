"""SQLite persistence: records as JSON per row, plus an index of key and lookup values."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS records (
    sobject TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, is_deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (id, sobject));
CREATE INDEX IF NOT EXISTS records_obj ON records (sobject, is_deleted);
CREATE TABLE IF NOT EXISTS keys (sobject TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS keys_value ON keys (sobject, field, value);
CREATE INDEX IF NOT EXISTS keys_id ON keys (id);
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
    """A record as compact JSON text (NaN/Infinity kept as json writes them; msgspec would write null)."""
    if _ENC is not None:
        floats = [v for v in d.values() if v.__class__ is float]
        if not floats or all(map(math.isfinite, floats)):
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


class Store:
    """One SQLite connection guarded by a re-entrant lock (the server is multi-threaded)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # An emulator's data must survive a crashed process (WAL does), not a power cut: skipping the
        # fsyncs makes commits and checkpoints several times cheaper for Bulk-sized batches.
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-200000")
        self.db.executescript(SCHEMA)
        self.lock = threading.RLock()

    # -- meta ---------------------------------------------------------------------------------
    def meta_get(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def meta_set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- records ------------------------------------------------------------------------------
    def fetch(self, sobject: str | None, ids: Iterable[str]) -> dict[str, tuple[str, dict, bool]]:
        """id -> (sobject, data, is_deleted) for the ids that exist."""
        ids = list(dict.fromkeys(ids))
        out: dict[str, tuple[str, dict, bool]] = {}
        for i in range(0, len(ids), CHUNK):
            part = ids[i : i + CHUNK]
            marks = ",".join("?" * len(part))
            if sobject:
                rows = self.db.execute(
                    f"SELECT sobject, id, data, is_deleted FROM records WHERE sobject=? AND id IN ({marks})",
                    (sobject, *part))
            else:
                rows = self.db.execute(
                    f"SELECT sobject, id, data, is_deleted FROM records WHERE id IN ({marks})", part)
            for s, rid, data, deleted in rows:
                out[rid] = (s, decode(data), bool(deleted))
        return out

    def fetch_meta(self, ids: Iterable[str]) -> dict[str, tuple[str, dict, bool]]:
        """Like fetch, but only the fields lookup checks need (type, deleted, IsActive, SobjectType)."""
        ids = list(ids)
        out: dict[str, tuple[str, dict, bool]] = {}
        for i in range(0, len(ids), CHUNK):
            part = ids[i : i + CHUNK]
            marks = ",".join("?" * len(part))
            for s, rid, active, stype, deleted in self.db.execute(
                f"SELECT sobject, id, json_extract(data, '$.IsActive'), json_extract(data, '$.SobjectType'), "
                f"is_deleted FROM records WHERE id IN ({marks})", part):
                out[rid] = (s, {"IsActive": bool(active), "SobjectType": stype}, bool(deleted))
        return out

    def lookup_keys(self, sobject: str, field: str, values: Iterable[str]) -> dict[str, list[str]]:
        """value -> ids having that value in the key index."""
        values = list(dict.fromkeys(values))
        out: dict[str, list[str]] = {}
        for i in range(0, len(values), CHUNK):
            part = values[i : i + CHUNK]
            marks = ",".join("?" * len(part))
            for value, rid in self.db.execute(
                f"SELECT k.value, k.id FROM keys k JOIN records r ON r.id=k.id AND r.sobject=k.sobject "
                f"WHERE k.sobject=? AND k.field=? AND k.value IN ({marks}) AND r.is_deleted=0",
                (sobject, field, *part),
            ):
                out.setdefault(value, []).append(rid)
        return out

    def scan(self, sobject: str, *, include_deleted: bool, ids: list[str] | None = None) -> Iterator[dict]:
        if ids is not None:
            for _, data, deleted in self.fetch(sobject, ids).values():
                if include_deleted or not deleted:
                    yield data
            return
        sql = "SELECT data FROM records WHERE sobject=?" + ("" if include_deleted else " AND is_deleted=0")
        sql += " ORDER BY rowid"
        for (data,) in self.db.execute(sql, (sobject,)).fetchall():
            yield decode(data)

    def count(self, sobject: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records WHERE sobject=? AND is_deleted=0",
                               (sobject,)).fetchone()[0]

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute(
            "SELECT sobject, COUNT(*) FROM records WHERE is_deleted=0 GROUP BY sobject").fetchall())

    def total_rows(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def write(self, inserts: list[tuple[str, str, dict]], updates: list[tuple[str, str, dict]],
              keys_add: list[tuple[str, str, str, str]], keys_drop: list[tuple[str, str]]) -> None:
        """Apply one batch atomically. Tuples: (sobject, id, data); keys (sobject, field, value, id)."""
        db = self.db
        db.execute("BEGIN")
        try:
            if inserts:
                db.executemany("INSERT INTO records (sobject, id, data, is_deleted) VALUES (?,?,?,?)",
                               [(s, i, encode(d), int(d.get("IsDeleted", False)))
                                for s, i, d in inserts])
            if updates:
                db.executemany("UPDATE records SET data=?, is_deleted=? WHERE sobject=? AND id=?",
                               [(encode(d), int(d.get("IsDeleted", False)), s, i)
                                for s, i, d in updates])
            if keys_drop:
                db.executemany("DELETE FROM keys WHERE id=? AND field=?", keys_drop)
            if keys_add:
                db.executemany("INSERT INTO keys VALUES (?,?,?,?)", keys_add)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def hard_delete(self, pairs: list[tuple[str, str]]) -> None:
        db = self.db
        db.execute("BEGIN")
        db.executemany("DELETE FROM records WHERE sobject=? AND id=?", pairs)
        db.executemany("DELETE FROM keys WHERE id=?", [(i,) for _, i in pairs])
        db.execute("COMMIT")

    # -- schema items and jobs ------------------------------------------------------------------
    def schema_items(self) -> list[tuple[str, str, str, dict]]:
        return [(i, k, n, json.loads(d)) for i, k, n, d in
                self.db.execute("SELECT id, kind, full_name, data FROM schema_items ORDER BY rowid")]

    def add_schema_item(self, item_id: str, kind: str, full_name: str, data: dict) -> None:
        self.db.execute("INSERT INTO schema_items VALUES (?,?,?,?)", (item_id, kind, full_name, json.dumps(data)))

    def save_job(self, job_id: str, kind: str, data: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO jobs VALUES (?,?,?)", (job_id, kind, json.dumps(data)))

    def load_job(self, job_id: str) -> dict | None:
        row = self.db.execute("SELECT data FROM jobs WHERE id=?", (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def list_jobs(self, kind: str) -> list[dict]:
        return [json.loads(d) for (d,) in self.db.execute("SELECT data FROM jobs WHERE kind=? ORDER BY rowid", (kind,))]
