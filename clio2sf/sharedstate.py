"""Small JSON documents shared by every worker of a deployment, read-modified-written atomically.

The Clio rate budget and the cached access token of a grant (:mod:`clio2sf.ratebudget`) live in
one document per grant.  Every store offers one operation, :meth:`transaction`: it yields the
document (a plain ``dict``) with an exclusive lock held, and writes it back when the block ends
without an exception.

* :class:`MemoryStore` — one process (threads); unit tests.
* :class:`FileStore` — every process on **one host**: a JSON file per key under a directory,
  guarded by ``fcntl.flock``.  The default when nothing else is configured (LocalExecutor).
* :class:`SqlStore` — every process on **every host** that can reach one SQL database: a table
  ``clio2sf_shared_state (key, doc, updated_at)``, one row per key, locked with
  ``SELECT ... FOR UPDATE`` (PostgreSQL, MySQL) or ``BEGIN IMMEDIATE`` (SQLite, which serialises
  writers through its file lock: the processes of one host).  The tests run it on a real PostgreSQL
  server over TCP (``tests/integration/test_shared_state_postgres.py``).

No Airflow import: the plugin decides which store a hook uses (see ``ClioHook``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

TABLE = "clio2sf_shared_state"


class SharedStore(Protocol):
    """Atomic read-modify-write of one JSON document per key."""

    #: True when processes on other hosts see the same documents.
    cross_host: bool

    def transaction(self, key: str) -> contextlib.AbstractContextManager[dict[str, Any]]: ...


def _check_key(key: str) -> str:
    if not key or len(key) > 120 or any(c in key for c in "/\\") or key.startswith("."):
        raise ValueError(f"shared state key {key!r} must be a plain name (no path separators), at most 120 chars")
    return key


class MemoryStore:
    """Documents in this process only (threads share them)."""

    cross_host = False

    def __init__(self) -> None:
        self._docs: dict[str, str] = {}
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self, key: str) -> Iterator[dict[str, Any]]:
        _check_key(key)
        with self._lock:
            doc = json.loads(self._docs.get(key, "{}"))
            yield doc
            self._docs[key] = json.dumps(doc)


class FileStore:
    """``<dir>/<key>.json`` guarded by ``<dir>/<key>.lock`` (``flock``): every process on this host."""

    cross_host = False

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._thread_lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self, key: str) -> Iterator[dict[str, Any]]:
        _check_key(key)
        lock_path = os.path.join(self.directory, f"{key}.lock")
        path = os.path.join(self.directory, f"{key}.json")
        with self._thread_lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    with open(path) as fh:
                        doc = json.load(fh)
                except (FileNotFoundError, json.JSONDecodeError):
                    doc = {}
                if not isinstance(doc, dict):
                    doc = {}
                yield doc
                tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
                with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
                    json.dump(doc, fh)
                os.replace(tmp, path)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(url: str) -> Any:
    """One SQLAlchemy engine per URL and process; SQLite transactions start with BEGIN IMMEDIATE."""
    import sqlalchemy as sa

    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is not None:
            return engine
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                                      poolclass=sa.pool.NullPool)

            @sa.event.listens_for(engine, "connect")
            def _no_implicit_begin(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN
                # WAL: a reader never holds up a writer's commit (one host; the file must be local)
                dbapi_conn.execute("PRAGMA journal_mode=WAL")

            @sa.event.listens_for(engine, "begin")
            def _begin_immediate(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock before the read
        else:
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
        _ENGINES[url] = engine
        return engine


class SqlStore:
    """One row per key in ``clio2sf_shared_state``; the row is locked for the transaction.

    :param url: a SQLAlchemy URL (``postgresql+psycopg2://...``, ``mysql+pymysql://...``,
        ``sqlite:////path/state.sqlite``).  The table is created when missing.
    """

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = url
        self.cross_host = not url.startswith("sqlite")
        self.engine = _engine(url)
        self._meta = sa.MetaData()
        self.table = sa.Table(
            TABLE, self._meta,
            sa.Column("key", sa.String(120), primary_key=True),
            sa.Column("doc", sa.Text, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
        self._known: set[str] = set()
        self._create_table()

    def _create_table(self) -> None:
        import sqlalchemy as sa

        for attempt in range(3):
            try:
                self._meta.create_all(self.engine, checkfirst=True)
                return
            except sa.exc.DBAPIError:  # another process created it between check and create
                if attempt == 2:
                    raise
                time.sleep(0.1)

    def _ensure_row(self, key: str) -> None:
        import sqlalchemy as sa

        if key in self._known:
            return
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(self.table.c.key).where(self.table.c.key == key)).first()
        if found is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(self.table.insert().values(key=key, doc="{}", updated_at=time.time()))
            except sa.exc.IntegrityError:
                pass  # another worker inserted it first
        self._known.add(key)

    @contextlib.contextmanager
    def transaction(self, key: str) -> Iterator[dict[str, Any]]:
        import sqlalchemy as sa

        _check_key(key)
        self._ensure_row(key)
        t = self.table
        with self.engine.begin() as conn:
            raw = conn.execute(sa.select(t.c.doc).where(t.c.key == key).with_for_update()).scalar_one()
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {}
            if not isinstance(doc, dict):
                doc = {}
            yield doc
            conn.execute(t.update().where(t.c.key == key).values(doc=json.dumps(doc), updated_at=time.time()))
