"""A throwaway PostgreSQL server for tests: its own cluster in a temp dir, TCP on loopback, a free port.

The deployment's shared state (the ``clio2sf_state`` connection, :class:`clio2sf.sharedstate.SqlStore`)
lives in PostgreSQL, so the tests that show it across hosts run against a real server, reached over
TCP with a password as a second host would reach it.  The server binaries come from Debian's
``postgresql`` package (``make postgres``, which ``make test`` runs); as root the server runs as the
``postgres`` user that package creates (PostgreSQL refuses to run as root).

Nothing here skips: a machine without the binaries fails the tests that need them, naming what is
missing, so a gap never hides as a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATABASE = "clio2sf_test"
USER = "clio2sf"

MISSING = ("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` package "
           "(`make postgres`, which `make test` runs) or set CLIO2SF_TEST_PG_BINDIR to their directory")


class PostgresUnavailable(RuntimeError):
    """The server could not be set up; the message names what is missing."""


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str
    database: str
    data_dir: Path

    @property
    def url(self) -> str:
        """The SQLAlchemy URL (psycopg2), as ``state_store_url`` builds it for a postgres connection."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def connection(self) -> dict[str, object]:
        """The Airflow connection (``AIRFLOW_CONN_*`` JSON fields) of this database, conn type postgres."""
        return {"conn_type": "postgres", "host": self.host, "port": self.port, "login": self.user,
                "password": self.password, "schema": self.database}


def bindir(debian: Path = Path("/usr/lib/postgresql")) -> Path:
    """Where initdb and pg_ctl are: $CLIO2SF_TEST_PG_BINDIR, else Debian's newest /usr/lib/postgresql/N/bin, else PATH."""
    if os.environ.get("CLIO2SF_TEST_PG_BINDIR"):
        found = Path(os.environ["CLIO2SF_TEST_PG_BINDIR"])
        if (found / "initdb").exists() and (found / "pg_ctl").exists():
            return found
        raise PostgresUnavailable(f"CLIO2SF_TEST_PG_BINDIR={found} has no initdb and pg_ctl")
    newest = sorted(debian.glob("*/bin/initdb"),
                    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if newest and (newest[-1].parent / "pg_ctl").exists():
        return newest[-1].parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    raise PostgresUnavailable(MISSING)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def run_postgres() -> Iterator[PgServer]:
    """Start a cluster in a fresh temp dir on a free loopback port; yield its database; stop and remove it."""
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover - requirements.txt pins psycopg2-binary
        raise PostgresUnavailable("psycopg2 is not installed: `make venv` (requirements.txt pins psycopg2-binary)") from exc
    bins = bindir()
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:  # PostgreSQL will not run as root: as the package's postgres user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailable("running as root and there is no `postgres` user to run the server as "
                                      "(Debian's postgresql package creates it: `make postgres`)") from exc
        run_as = ["runuser", "-u", "postgres", "--"]
    # /tmp, not pytest's tmp dir: the postgres user must reach the cluster's directory.
    root = Path(tempfile.mkdtemp(prefix="clio2sf-pg-"))
    password = secrets.token_urlsafe(16)
    server: PgServer | None = None
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        pwfile = root / "pw"
        pwfile.write_text(password + "\n")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        pwfile.chmod(0o600)
        data = root / "data"
        # Password (SCRAM) over TCP, as another host connects; the superuser is the test's user.
        _run([*run_as, str(bins / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
              "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync"], "initdb")
        pwfile.unlink()
        for attempt in range(3):
            port = _free_port()
            opts = (f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off -c synchronous_commit=off "
                    "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=60")
            started = subprocess.run([*run_as, str(bins / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"),
                                      "-o", opts, "-w", "-t", "120", "start"], capture_output=True, text=True)
            if started.returncode == 0:
                break
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            if attempt == 2 or not re.search(r"could not bind|Address already in use", log):
                raise PostgresUnavailable(f"pg_ctl start failed ({started.returncode}): {started.stderr[-1500:]}\n"
                                          f"{log[-1500:]}")
        server = PgServer("127.0.0.1", port, USER, password, DATABASE, data)
        conn = psycopg2.connect(host=server.host, port=port, user=USER, password=password, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            conn.close()
        yield server
    finally:
        if (root / "data" / "postmaster.pid").exists():
            subprocess.run([*run_as, str(bins / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w",
                            "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
