"""SQLite persistence: one row per record holding its full JSON, plus meta and tokens.

A record's ``kind`` is the list path that serves it (``matters``, ``utbms/codes``).  Keys starting
with ``_`` are the sandbox's own bookkeeping (timestamps, links used by filters) and are never
served: a response only carries what the spec's fields name.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

_decode = msgspec.json.decode

FIRM_TZ = ZoneInfo("America/New_York")
#: Kinds whose DELETE moves a record to the trash (``deleted_at``) instead of removing it.
TRASHABLE = frozenset({"documents", "folders"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
  kind TEXT NOT NULL, id INTEGER NOT NULL, subtype TEXT, matter_id INTEGER,
  created_ts REAL NOT NULL, updated_ts REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  data TEXT NOT NULL, PRIMARY KEY(kind, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rec_updated ON records(kind, updated_ts);
CREATE TABLE IF NOT EXISTS views(
  vkey TEXT NOT NULL, id INTEGER NOT NULL, gen INTEGER NOT NULL, json BLOB NOT NULL,
  PRIMARY KEY(vkey, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens(
  access_token TEXT PRIMARY KEY, expires_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
"""


def iso(ts: float) -> str:
    """Clio's timestamp format: seconds precision with the firm's local UTC offset."""
    return datetime.fromtimestamp(int(ts), FIRM_TZ).isoformat()


def parse_ts(value: str) -> float:
    """Parse an ISO-8601 timestamp or date (naive means UTC); ValueError when malformed."""
    dt = datetime.fromisoformat(value.strip().replace(" ", "+"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def etag_of(record: dict) -> str:
    body = json.dumps({k: v for k, v in record.items() if k != "etag"}, sort_keys=True, default=str)
    return '"' + hashlib.md5(body.encode(), usedforsecurity=False).hexdigest() + '"'


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _row(kind: str, rec: dict) -> tuple:
    matter = rec.get("matter")
    return (
        kind,
        int(rec["id"]),
        rec.get("type") if isinstance(rec.get("type"), str) else None,
        matter.get("id") if isinstance(matter, dict) and isinstance(matter.get("id"), int) else None,
        rec["_created_ts"],
        rec["_updated_ts"],
        1 if kind in TRASHABLE and rec.get("deleted_at") else 0,
        _dump(rec),
    )


class Store:
    """Thread-safe access to the sandbox database (one connection, one lock).

    Two caches make repeated reads cheap without changing what they return: decoded records
    looked up as nested references (an LRU), and projected records per selection (``views``,
    filled as pages are served).  Both are keyed by ``generation``, which every write bumps.
    """

    REF_CACHE = 20_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA mmap_size=4294967296")
        self.conn.executescript(_SCHEMA)
        self.lock = threading.RLock()
        #: Bumped on every write: response caches keyed by it never serve a stale page.
        self.generation = 0
        self.conn.execute("DELETE FROM views")  # a cache of this process only
        self._refs: OrderedDict[tuple[str, int], dict | None] = OrderedDict()
        self._refs_gen = 0

    # --- meta -------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES(?,?)", (key, value))

    # --- bulk load --------------------------------------------------------------------------
    def insert_many(self, kind: str, records: Iterable[dict]) -> int:
        n = 0
        with self.lock:
            self.conn.execute("BEGIN")
            batch: list[tuple] = []
            for rec in records:
                batch.append(_row(kind, rec))
                if len(batch) >= 5000:
                    self.conn.executemany("INSERT INTO records VALUES(?,?,?,?,?,?,?,?)", batch)
                    n += len(batch)
                    batch.clear()
            if batch:
                self.conn.executemany("INSERT INTO records VALUES(?,?,?,?,?,?,?,?)", batch)
                n += len(batch)
            self.conn.execute("COMMIT")
        return n

    # --- reads ------------------------------------------------------------------------------
    def scan(
        self,
        kind: str,
        *,
        after_id: int | None = None,
        subtype: str | None = None,
        updated_since: float | None = None,
        created_since: float | None = None,
        created_before: float | None = None,
        ids: list[int] | None = None,
        include_deleted: bool = False,
        order_field: str | None = None,
        descending: bool = False,
        chunk: int = 500,
    ) -> Iterator[dict]:
        """Matching records in order, decoded, fetched ``chunk`` rows at a time."""
        sql, args = self._select("data", kind, after_id=after_id, subtype=subtype, updated_since=updated_since,
                                 created_since=created_since, created_before=created_before, ids=ids,
                                 include_deleted=include_deleted, order_field=order_field, descending=descending)
        cur = self.conn.execute(sql, args)
        while True:
            rows = cur.fetchmany(chunk)
            if not rows:
                return
            for (data,) in rows:
                yield _decode(data)

    @staticmethod
    def _select(column: str, kind: str, *, after_id: int | None = None, subtype: str | None = None,
                updated_since: float | None = None, created_since: float | None = None,
                created_before: float | None = None, ids: list[int] | None = None, include_deleted: bool = False,
                order_field: str | None = None, descending: bool = False) -> tuple[str, list]:
        sql = [f"SELECT {column} FROM records WHERE kind=?"]
        args: list = [kind]
        if after_id is not None:
            sql.append("AND id>?")
            args.append(after_id)
        if subtype is not None:
            sql.append("AND subtype=?")
            args.append(subtype)
        if updated_since is not None:
            sql.append("AND updated_ts>?")
            args.append(updated_since)
        if created_since is not None:
            sql.append("AND created_ts>?")
            args.append(created_since)
        if created_before is not None:
            sql.append("AND created_ts<?")
            args.append(created_before)
        if ids is not None:
            ids = [i for i in ids if -(2**63) <= i < 2**63]
            sql.append(f"AND id IN ({','.join('?' * len(ids))})" if ids else "AND 0")
            args.extend(ids)
        if not include_deleted:
            sql.append("AND deleted=0")
        direction = "DESC" if descending else "ASC"
        if order_field and order_field != "id":
            sql.append(f"ORDER BY json_extract(data, ?) {direction}, id {direction}")
            args.append("$." + order_field)
        else:
            sql.append(f"ORDER BY id {direction}")
        return " ".join(sql), args

    def scan_ids(self, kind: str, **kwargs: object) -> list[int]:
        """Like :meth:`scan` but only the ids (no filter predicates apply)."""
        limit = int(kwargs.pop("limit"))  # type: ignore[call-overload]
        offset = int(kwargs.pop("offset", 0) or 0)  # type: ignore[call-overload]
        sql, args = self._select("id", kind, **kwargs)  # type: ignore[arg-type]
        return [r[0] for r in self.conn.execute(sql + " LIMIT ? OFFSET ?", (*args, limit, offset))]

    def get(self, kind: str, rid: int) -> dict | None:
        if not -(2**63) <= rid < 2**63:
            return None
        row = self.conn.execute("SELECT data FROM records WHERE kind=? AND id=?", (kind, rid)).fetchone()
        return _decode(row[0]) if row else None

    def get_many(self, kind: str, ids: list[int]) -> dict[int, dict]:
        out: dict[int, dict] = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            sql = f"SELECT id, data FROM records WHERE kind=? AND id IN ({','.join('?' * len(part))})"
            out.update((rid, _decode(data)) for rid, data in self.conn.execute(sql, (kind, *part)))
        return out

    def get_ref(self, kind: str, rid: int) -> dict | None:
        """A record looked up as a nested reference: cached, never to be mutated by the caller."""
        if self._refs_gen != self.generation:
            self._refs.clear()
            self._refs_gen = self.generation
        key = (kind, rid)
        if key in self._refs:
            self._refs.move_to_end(key)
            return self._refs[key]
        rec = self._refs[key] = self.get(kind, rid)
        if len(self._refs) > self.REF_CACHE:
            self._refs.popitem(last=False)
        return rec

    # --- the projection cache ------------------------------------------------------------
    def cached_views(self, vkey: str, ids: list[int]) -> dict[int, bytes]:
        if not ids:
            return {}
        lo, hi = min(ids), max(ids)
        rows = self.conn.execute("SELECT id, json FROM views WHERE vkey=? AND gen=? AND id BETWEEN ? AND ?",
                                 (vkey, self.generation, lo, hi)).fetchall()
        return dict(rows)

    def put_views(self, vkey: str, rows: list[tuple[int, bytes]]) -> None:
        with self.lock:
            self.conn.executemany("INSERT OR REPLACE INTO views VALUES(?,?,?,?)",
                                  [(vkey, rid, self.generation, data) for rid, data in rows])

    def count(self, kind: str, predicate: Callable[[dict], bool] | None = None, subtype: str | None = None,
              include_deleted: bool = False) -> int:
        if predicate is None:
            sql = "SELECT COUNT(*) FROM records WHERE kind=?" + (" AND subtype=?" if subtype else "")
            sql += "" if include_deleted else " AND deleted=0"
            return self.conn.execute(sql, (kind, subtype) if subtype else (kind,)).fetchone()[0]
        return sum(1 for r in self.scan(kind, subtype=subtype, include_deleted=include_deleted) if predicate(r))

    def kinds(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT kind FROM records ORDER BY kind")]

    def iter_kind(self, kind: str) -> Iterator[dict]:
        yield from self.scan(kind, include_deleted=True)

    def max_id(self, kind: str) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(id),0) FROM records WHERE kind=?", (kind,)).fetchone()[0]

    # --- writes -----------------------------------------------------------------------------
    def save(self, kind: str, rec: dict) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO records VALUES(?,?,?,?,?,?,?,?)", _row(kind, rec))
            self._bump()

    def delete(self, kind: str, rid: int) -> bool:
        with self.lock:
            cur = self.conn.execute("DELETE FROM records WHERE kind=? AND id=?", (kind, rid))
            self._bump()
        return cur.rowcount > 0

    def _bump(self) -> None:
        self.generation += 1
        self.conn.execute("DELETE FROM views")

    # --- tokens -----------------------------------------------------------------------------
    def add_token(self, token: str, expires_at: float) -> None:
        with self.lock:
            self.conn.execute("INSERT INTO tokens VALUES(?,?,0)", (token, expires_at))

    def token_valid(self, token: str, now: float) -> bool:
        row = self.conn.execute(
            "SELECT expires_at, revoked FROM tokens WHERE access_token=?", (token,)
        ).fetchone()
        return bool(row) and not row[1] and row[0] > now

    def revoke(self, token: str | None = None) -> int:
        with self.lock:
            if token is None:
                cur = self.conn.execute("UPDATE tokens SET revoked=1 WHERE revoked=0")
            else:
                cur = self.conn.execute("UPDATE tokens SET revoked=1 WHERE access_token=?", (token,))
        return cur.rowcount
