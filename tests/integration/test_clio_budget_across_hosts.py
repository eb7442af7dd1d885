"""One Clio grant, two workers that share nothing but the network: one budget, one access token.

Each worker is its own process with its own temp dir, ``AIRFLOW_HOME``, ``CLIO2SF_RATE_DIR``,
``TMPDIR`` and staging root, as on two hosts.  What they share is what two hosts share, both over
TCP on loopback: the Clio sandbox, and the deployment's PostgreSQL (a throwaway server, the
``postgres`` fixture) named by each worker's ``clio2sf_state`` connection, as production does it.
No path on disk is shared.  The verdict comes from the sandbox's own request log, never from the
workers: every API request on one token, one token refresh, no 429, and no server window with
more requests than the limit; the database shows the one row the grant's budget and token lived in.

The control run gives each worker its own store (no ``clio2sf_state``), as the hook did before:
the log then shows two tokens, i.e. two budgets spending one grant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from clio2sf.sharedstate import TABLE
from sandbox.clio.testing import run_clio_sandbox

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LIMIT, WINDOW = 20, 2.0

WORKER = r"""
import json, sys
from pathlib import Path
from clio2sf import catalog, staging
from clio2sf.extract import extract_object
from clio2sf_airflow.hooks.clio import ClioHook

mroot = staging.migration_root(Path(sys.argv[1]), "acme", "m1")
hook = ClioHook()
out = []
for spec in sys.argv[2:]:
    name, limit = spec.split(":")
    obj = catalog.get(name)
    s = extract_object(obj, hook.get_page, mroot, limit=int(limit), request_count=lambda: hook.requests_made,
                       download=hook.download_document if obj.endpoint == "documents" else None)
    out.append({k: s[k] for k in ("object", "records", "requests", "complete")})
print("RESULT " + json.dumps({"objects": out, "requests_made": hook.requests_made,
                              "token_requests": hook.token_requests, "storage_downloads": hook.storage_downloads,
                              "store": type(hook.shared_store).__name__,
                              "cross_host": hook.shared_store.cross_host, "grant": hook.grant_key}), flush=True)
"""


def _run_workers(clio, tmp: Path, specs: list[list[str]], state_conn: dict | None) -> list[dict]:
    procs = []
    for i, spec in enumerate(specs):
        host = tmp / f"host{i}"
        for sub in ("airflow", "rate", "tmp", "staging"):
            (host / sub).mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "CLIO2SF_"))}
        env.update({
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
            "AIRFLOW_HOME": str(host / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{host / 'airflow' / 'airflow.db'}",
            "CLIO2SF_RATE_DIR": str(host / "rate"),
            "TMPDIR": str(host / "tmp"),
            "AIRFLOW_CONN_CLIO_DEFAULT": json.dumps({
                "conn_type": "http", "host": clio.base_url, "login": clio.client_id,
                "password": clio.client_secret, "extra": {"refresh_token": clio.refresh_token}}),
        })
        if state_conn is not None:
            env["AIRFLOW_CONN_CLIO2SF_STATE"] = json.dumps(state_conn)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(host / "staging"), *spec], cwd=host,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
        line = next(x for x in out.decode().splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line.removeprefix("RESULT ")))
    return results


@pytest.fixture(scope="module")
def clio(tmp_path_factory):
    with run_clio_sandbox(tmp_path_factory.mktemp("clio-grant"), preset="tiny", rate_limit=LIMIT,
                          window=WINDOW) as sb:
        yield sb


def test_two_hosts_one_grant_stay_within_the_limit(clio, postgres, tmp_path):
    start = len(clio.request_log())
    results = _run_workers(clio, tmp_path, [["contacts:2", "tasks:3"], ["documents:3", "matters:2"]],
                           state_conn=postgres.connection())
    log = clio.request_log(start)
    api = [e for e in log if e["path"].startswith("/api/v4/")]
    refreshes = [e for e in log if e["path"] == "/oauth/token"]
    per_window = Counter(e["window"] for e in api)
    statuses = Counter(e["status"] for e in api)
    print(f"\n{len(api)} API requests in {len(per_window)} windows of {WINDOW:g} s (limit {LIMIT}): "
          f"per window max {max(per_window.values())}, mean {len(api) / len(per_window):.1f}; "
          f"statuses {dict(statuses)}; token refreshes {len(refreshes)}; "
          f"storage downloads {sum(r['storage_downloads'] for r in results)}")
    assert {(r["store"], r["cross_host"]) for r in results} == {("SqlStore", True)}
    # the grant's budget and token lived in one row of the deployment's database
    grants = {r["grant"] for r in results}
    engine = sa.create_engine(postgres.url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT key, doc FROM {TABLE} WHERE key = ANY(:k)"),
                                {"k": sorted(grants)}).all()
    finally:
        engine.dispose()
    assert len(grants) == 1 and len(rows) == 1 and json.loads(rows[0].doc), rows
    assert all(o["complete"] for r in results for o in r["objects"])
    assert len(per_window) >= 4, "the run must span several windows to show anything"
    # one grant: one access token for both hosts, refreshed once
    assert len({e["token"] for e in api}) == 1 and len(refreshes) == 1
    assert sum(r["token_requests"] for r in results) == 1
    # never over the limit, never refused
    assert statuses[429] == 0, statuses
    assert max(per_window.values()) <= LIMIT, sorted(per_window.values())
    # what the workers report as requests is what Clio served (storage downloads are not requests)
    assert sum(r["requests_made"] for r in results) == len(api)
    assert sum(r["storage_downloads"] for r in results) > 0
    assert sum(o["requests"] for r in results for o in r["objects"]) == len(api)


def test_control_without_a_shared_store_two_budgets_spend_one_grant(clio, tmp_path):
    """The defect the test above would catch: each host with its own store refreshes its own token."""
    clio.reset_limits()
    start = len(clio.request_log())
    results = _run_workers(clio, tmp_path, [["matter_stages:4"], ["matter_stages:4"]], state_conn=None)
    log = clio.request_log(start)
    api = [e for e in log if e["path"].startswith("/api/v4/")]
    assert {r["store"] for r in results} == {"FileStore"}
    assert len({e["token"] for e in api}) == 2
    assert len([e for e in log if e["path"] == "/oauth/token"]) == 2
