"""SQLite persistence: one row per record holding its full JSON, plus meta and tokens."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from clio2sf.catalog import CLIO_OBJECTS
from sandbox.clio.fields import ENDPOINT_KIND, Plan, compile_plan, project

FIRM_TZ = ZoneInfo("America/New_York")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
  kind TEXT NOT NULL, id INTEGER NOT NULL, subtype TEXT, matter_id INTEGER,
  created_ts REAL NOT NULL, updated_ts REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  data TEXT NOT NULL, PRIMARY KEY(kind, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rec_updated ON records(kind, updated_ts);
CREATE TABLE IF NOT EXISTS views(
  kind TEXT NOT NULL, plan TEXT NOT NULL, id INTEGER NOT NULL, json TEXT NOT NULL,
  PRIMARY KEY(kind, plan, id)) WITHOUT ROWID;
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


def view_key(fields: str) -> str:
    return hashlib.md5(fields.encode(), usedforsecurity=False).hexdigest()[:12]


#: kind -> [(view key, plan)]: the catalog's selections, kept pre-projected so that the
#: extractor's pages are served by concatenating stored JSON.
VIEWS: dict[str, list[tuple[str, Plan]]] = {}
#: (endpoint, fields string) -> view key
VIEW_KEYS: dict[tuple[str, str], str] = {}
for _o in CLIO_OBJECTS:
    VIEWS.setdefault(ENDPOINT_KIND[_o.endpoint], []).append((view_key(_o.fields), compile_plan(_o.endpoint, _o.fields)))
    VIEW_KEYS[(_o.endpoint, _o.fields)] = view_key(_o.fields)


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _view_rows(kind: str, rec: dict) -> list[tuple]:
    rid = int(rec["id"])
    return [(kind, key, rid, _dump(project(rec, plan))) for key, plan in VIEWS.get(kind, ())]


def _row(kind: str, rec: dict) -> tuple:
    matter = rec.get("matter")
    return (
        kind,
        int(rec["id"]),
        rec.get("type"),
        matter.get("id") if isinstance(matter, dict) else None,
        rec["_created_ts"],
        rec["_updated_ts"],
        1 if kind in ("documents", "folders") and rec.get("deleted_at") else 0,
        _dump(rec),
    )


class Store:
    """Thread-safe access to the sandbox database (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        # Pages are read through the mapping instead of one read() call per 4 KiB page.
        self.conn.execute("PRAGMA mmap_size=4294967296")
        self.conn.executescript(_SCHEMA)
        self.lock = threading.RLock()

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
            views: list[tuple] = []
            for rec in records:
                batch.append(_row(kind, rec))
                views.extend(_view_rows(kind, rec))
                if len(batch) >= 5000:
                    n += self._flush(batch, views)
            if batch:
                n += self._flush(batch, views)
            self.conn.execute("COMMIT")
        return n

    def _flush(self, batch: list[tuple], views: list[tuple]) -> int:
        n = len(batch)
        self.conn.executemany("INSERT INTO records VALUES(?,?,?,?,?,?,?,?)", batch)
        self.conn.executemany("INSERT INTO views VALUES(?,?,?,?)", views)
        batch.clear()
        views.clear()
        return n

    # --- reads ------------------------------------------------------------------------------
    def page(
        self,
        kind: str,
        *,
        after_id: int = 0,
        limit: int = 200,
        subtype: str | None = None,
        updated_since: float | None = None,
        created_since: float | None = None,
        ids: list[int] | None = None,
        matter_id: int | None = None,
        include_deleted: bool = False,
        offset: int | None = None,
        order_field: str | None = None,
        descending: bool = False,
        view: str | None = None,
    ) -> list[tuple[int, str]] | list[tuple[int, bytes]]:
        """(id, raw JSON) of the matching records in order; ``limit + 1`` rows tell if more exist.

        With ``view`` the JSON is the stored pre-projected selection instead of the full record,
        as UTF-8 bytes ready to be joined into a response body.
        """
        sql = ["SELECT r.id, r.data FROM records r WHERE r.kind=?"]
        args: list = [kind]
        if offset is None and not descending:
            sql.append("AND r.id>?")
            args.append(after_id)
        if subtype is not None:
            sql.append("AND r.subtype=?")
            args.append(subtype)
        if updated_since is not None:
            sql.append("AND r.updated_ts>?")
            args.append(updated_since)
        if created_since is not None:
            sql.append("AND r.created_ts>?")
            args.append(created_since)
        if ids:
            sql.append(f"AND r.id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        if matter_id is not None:
            sql.append("AND r.matter_id=?")
            args.append(matter_id)
        if not include_deleted:
            sql.append("AND r.deleted=0")
        direction = "DESC" if descending else "ASC"
        if order_field and order_field != "id":
            sql.append(f"ORDER BY json_extract(r.data, ?) {direction}, r.id {direction}")
            args.append(f"$.{order_field}")
        else:
            sql.append(f"ORDER BY r.id {direction}")
        sql.append("LIMIT ? OFFSET ?")
        args.extend([limit + 1, offset or 0])
        if view is None:
            return self.conn.execute(" ".join(sql), args).fetchall()
        sql[0] = "SELECT r.id FROM records r WHERE r.kind=?"
        page_ids = [row[0] for row in self.conn.execute(" ".join(sql), args)]
        return self._view_json(kind, view, page_ids)

    def _view_json(self, kind: str, view: str, ids: list[int]) -> list[tuple[int, bytes]]:
        """(id, pre-projected JSON) for ``ids``, in their order.

        Ids of a page are nearly always a dense range, read by one range scan; joining the two
        tables row by row (a B-tree seek per record) cost three times as much.
        """
        if not ids:
            return []
        lo, hi = min(ids), max(ids)
        if hi - lo < 2 * len(ids):
            rows = self.conn.execute("SELECT id, CAST(json AS BLOB) FROM views WHERE kind=? AND plan=? AND id BETWEEN ? AND ?",
                                     (kind, view, lo, hi)).fetchall()
        else:
            rows = self.conn.execute(f"SELECT id, CAST(json AS BLOB) FROM views WHERE kind=? AND plan=? AND id IN "
                                     f"({','.join('?' * len(ids))})", (kind, view, *ids)).fetchall()
        by_id = dict(rows)
        return [(i, by_id[i]) for i in ids if i in by_id]

    def get(self, kind: str, rid: int) -> dict | None:
        row = self.conn.execute("SELECT data FROM records WHERE kind=? AND id=?", (kind, rid)).fetchone()
        return json.loads(row[0]) if row else None

    def count(self, kind: str, subtype: str | None = None, include_deleted: bool = False) -> int:
        sql = "SELECT COUNT(*) FROM records WHERE kind=?"
        args: list = [kind]
        if subtype is not None:
            sql += " AND subtype=?"
            args.append(subtype)
        if not include_deleted:
            sql += " AND deleted=0"
        return self.conn.execute(sql, args).fetchone()[0]

    def iter_kind(self, kind: str) -> Iterator[dict]:
        for (data,) in self.conn.execute("SELECT data FROM records WHERE kind=? ORDER BY id", (kind,)):
            yield json.loads(data)

    def max_id(self, kind: str) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(id),0) FROM records WHERE kind=?", (kind,)).fetchone()[0]

    # --- writes -----------------------------------------------------------------------------
    def save(self, kind: str, rec: dict) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO records VALUES(?,?,?,?,?,?,?,?)", _row(kind, rec))
            self.conn.executemany("INSERT OR REPLACE INTO views VALUES(?,?,?,?)", _view_rows(kind, rec))

    def delete(self, kind: str, rid: int) -> bool:
        with self.lock:
            cur = self.conn.execute("DELETE FROM records WHERE kind=? AND id=?", (kind, rid))
            self.conn.execute("DELETE FROM views WHERE kind=? AND id=?", (kind, rid))
        return cur.rowcount > 0

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
