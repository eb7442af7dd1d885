"""Staging reports in the Airflow UI: a read-only FastAPI app behind Airflow's own login.

Mounted by ``plugins/clio2sf_reports_plugin.py`` at ``/clio2sf`` on the API server:

* ``/clio2sf/`` every migration under the staging roots (the ``clio2sf_staging_root`` Variable and
  each declared ``staging_root`` in ``include/migrations/``);
* ``/clio2sf/<firm>/<migration>/`` its reports (mapping spec, user report, sample diff,
  reconciliations, delta conflicts, rollback plans, rejects) and the migration summary;
* ``/clio2sf/<firm>/<migration>/summary`` the firm-facing migration summary (printable);
* ``/clio2sf/<firm>/<migration>/diff`` the sample diff, filterable: ``view`` (``differences``, the
  default: every difference, unexplained first; ``unexplained``; ``all``), ``object``, ``field`` and
  ``page`` (300 rows a page), rendered from ``sample/diff.csv``;
* ``/clio2sf/<firm>/<migration>/reconciliation`` a full load's reconciliation (``run``: its run id, default
  the latest), exceptions only unless ``view=all``, rendered from ``reports/<run>/reconciliation.json``;
* ``/clio2sf/<firm>/<migration>/files/<path>`` one report file, served as stored.

Every route needs an Airflow session (the UI's cookie or a Bearer token) of a user who may read
DAGs; a browser without one is sent to Airflow's login page. Only report file types are served
(html, md, csv, json, yaml, txt), never raw or transformed record batches, ledgers, blobs or the
webhook folder (its secrets).
Files are read through ``ObjectStoragePath``, so ``file://`` and ``s3://`` roots both work.
Every response forbids scripts and remote content (Content-Security-Policy): report values come from
client data and are escaped, and the pages need no script.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from clio2sf import diff, reports
from clio2sf.migrations import load_declarations

log = logging.getLogger(__name__)

PREFIX = "/clio2sf"
SERVED = {".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8",
          ".csv": "text/csv; charset=utf-8", ".json": "application/json", ".yaml": "text/plain; charset=utf-8",
          ".txt": "text/plain; charset=utf-8"}
#: Folders that hold client records or secrets-adjacent state, never served.
HIDDEN = {"raw", "transformed", "ledger", "blobs", "raw_ok", "raw_new", "since", "ids", "_manifest", "loaded",
          "webhooks", "secrets", "events", "seen", "journal"}
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
#: A report file's path segments may also hold a run id's ``:`` and ``+`` (``reports/manual__2026-12-03T04:27:22+00:00/``).
_FILE_SEGMENT = re.compile(r"^[A-Za-z0-9_.:+-]+$")
MAX_LISTED = 400
MAX_BYTES = 50 * 1024 * 1024
#: No script, no remote content: the pages are static tables (style inline, images inline only).
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
                    "X-Content-Type-Options": "nosniff"}


class _LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


async def require_reader(request: Request) -> Any:
    """The Airflow user of this request, who must be allowed to read DAGs (401/403 otherwise)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user

    try:
        user = await get_user(request, None, _bearer(request))
    except HTTPException as exc:
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            raise _LoginRequired(str(request.url)) from exc
        raise
    if not get_auth_manager().is_authorized_dag(method="GET", user=user):
        raise HTTPException(status_code=403, detail="you may not read DAGs, so not their reports either")
    return user


def _bearer(request: Request) -> Any:
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None


def staging_roots() -> list[str]:
    """Every staging root to browse: the Variable (or env) and the declared roots, de-duplicated."""
    roots: list[str] = []
    url = os.environ.get("AIRFLOW_VAR_CLIO2SF_STAGING_ROOT") or os.environ.get("CLIO2SF_STAGING_ROOT")
    if not url:
        try:
            from airflow.models.variable import Variable

            url = Variable.get("clio2sf_staging_root", default_var=None)
        except Exception as exc:  # no metadata DB here: declared roots only
            log.warning("cannot read the clio2sf_staging_root Variable: %s", type(exc).__name__)
    if url:
        roots.append(url)
    roots += [m.staging_root for m in load_declarations() if m.staging_root]
    return list(dict.fromkeys(roots))


def _path(url: str) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def migration_root(firm: str, migration_id: str) -> Any:
    """The first staging root that holds ``<firm>/<migration_id>``; 404 otherwise."""
    for seg in (firm, migration_id):
        if not _SEGMENT.match(seg) or seg in (".", ".."):
            raise HTTPException(status_code=404, detail="no such migration")
    declared = [m.staging_root for m in load_declarations()
                if m.firm == firm and m.migration_id == migration_id and m.staging_root]
    for url in declared + staging_roots():
        root = _path(url) / firm / migration_id
        if root.exists():
            return root
    raise HTTPException(status_code=404, detail=f"no staged migration {firm}/{migration_id}")


def report_files(root: Any) -> list[str]:
    """Relative paths of the report files under a migration root (bounded, hidden folders skipped)."""
    out: list[str] = []

    def walk(folder: Any, rel: str) -> None:
        for child in sorted(folder.iterdir(), key=lambda p: p.name):
            if len(out) >= MAX_LISTED:
                return
            name = child.name
            if name.startswith(".") or name in HIDDEN:
                continue
            if child.is_dir():
                walk(child, f"{rel}{name}/")
            elif os.path.splitext(name)[1] in SERVED and not name.startswith("_"):
                out.append(f"{rel}{name}")

    walk(root, "")
    return out


def _firm_name(firm: str) -> str | None:
    try:
        import yaml

        from clio2sf.mapping.spec import DEFAULT_MAPPINGS_DIR

        with (DEFAULT_MAPPINGS_DIR / "firms" / f"{firm}.yaml").open(encoding="utf-8") as fh:
            return (yaml.safe_load(fh) or {}).get("firm")
    except OSError:
        return None


def create_app() -> FastAPI:
    app = FastAPI(title="clio2sf migration reports", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(_LoginRequired)
    async def _to_login(request: Request, exc: _LoginRequired) -> Response:
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(f"{get_auth_manager().get_url_login()}?next={quote(exc.next_url, safe='')}")

    @app.get("/", response_class=HTMLResponse)
    def index(user: Any = Depends(require_reader)) -> str:
        rows = []
        for url in staging_roots():
            base = _path(url)
            if not base.exists():
                continue
            for firm in sorted(base.iterdir(), key=lambda p: p.name):
                if not firm.is_dir() or not _SEGMENT.match(firm.name):
                    continue
                for mig in sorted(firm.iterdir(), key=lambda p: p.name):
                    if mig.is_dir() and _SEGMENT.match(mig.name):
                        link = f"{PREFIX}/{firm.name}/{mig.name}/"
                        rows.append(f"<tr><td>{reports.esc(firm.name)}</td><td><a href='{link}'>"
                                    f"{reports.esc(mig.name)}</a></td><td><a href='{link}summary'>summary</a></td>"
                                    f"<td class='muted'>{reports.esc(url)}</td></tr>")
        table = ("<table><thead><tr><th>Firm</th><th>Migration</th><th>Summary</th><th>Staging root</th></tr>"
                 f"</thead><tbody>{''.join(rows)}</tbody></table>") if rows else "<p>No staged migration yet.</p>"
        return reports.page("Migration reports", table, subtitle=f"signed in as {user.get_name()}")

    @app.get("/{firm}/{migration_id}/", response_class=HTMLResponse)
    def listing(firm: str, migration_id: str, user: Any = Depends(require_reader)) -> str:
        root = migration_root(firm, migration_id)
        files = report_files(root)
        items = "".join(f"<li><a href='{PREFIX}/{firm}/{migration_id}/files/{quote(f)}'>{reports.esc(f)}</a></li>"
                        for f in files)
        more = f"<p class='muted'>first {MAX_LISTED} files shown</p>" if len(files) >= MAX_LISTED else ""
        base = f"{PREFIX}/{firm}/{migration_id}"
        pages = [f"<li><a href='{base}/summary'><b>Migration summary</b></a> (for the firm, printable)</li>"]
        if "sample/diff.csv" in files:
            pages.append(f"<li><a href='{base}/diff'><b>Sample diff</b></a> (differences first, filter by object "
                         "and field)</li>")
        recs = sorted((f for f in files if f.startswith("reports/") and f.endswith("/reconciliation.html")),
                      key=lambda f: f.split("__", 1)[-1])
        if recs:
            pages.append(f"<li><a href='{base}/files/{quote(recs[-1])}'><b>Latest reconciliation</b></a> "
                         f"({reports.esc(recs[-1].split('/')[1])}; <a href='{base}/reconciliation'>exceptions only"
                         "</a>)</li>")
        body = f"<ul>{''.join(pages)}</ul><h2>Reports</h2><ul>{items}</ul>{more}"
        return reports.page(f"{firm} / {migration_id}", body, subtitle=f"signed in as {user.get_name()}")

    @app.get("/{firm}/{migration_id}/summary", response_class=HTMLResponse)
    def summary(firm: str, migration_id: str, user: Any = Depends(require_reader)) -> str:
        from clio2sf.migration_summary import summary_data, summary_html

        root = migration_root(firm, migration_id)
        return summary_html(summary_data(root, firm=firm, firm_name=_firm_name(firm), migration_id=migration_id))

    @app.get("/{firm}/{migration_id}/diff", response_class=HTMLResponse)
    def sample_diff(firm: str, migration_id: str, view: str = diff.DEFAULT_VIEW,
                    sobject: str | None = Query(None, alias="object", max_length=200),
                    field: str | None = Query(None, max_length=200), page: int = Query(1, ge=1, le=100_000),
                    user: Any = Depends(require_reader)) -> str:
        root = migration_root(firm, migration_id)
        path = root / "sample" / "diff.csv"
        if not path.exists():
            raise HTTPException(status_code=404, detail="no sample diff yet: run mig_04_sample")
        if path.stat().st_size > MAX_BYTES:
            raise HTTPException(status_code=413, detail=f"diff.csv larger than {MAX_BYTES} bytes: download it from staging")
        with path.open("r", encoding="utf-8", newline="") as fh:
            rows = diff.read_diff_csv(fh)
        summary = root / "sample" / "diff_summary.json"
        context = None
        if summary.exists():
            with summary.open("rb") as fh:
                context = json.loads(fh.read()).get("context")
        return diff.diff_html(rows, context=context, view=view, sobject=sobject or None, field=field or None,
                              page=page, view_url="diff", csv_href="files/sample/diff.csv")

    @app.get("/{firm}/{migration_id}/reconciliation", response_class=HTMLResponse)
    def reconciliation(firm: str, migration_id: str, run: str | None = Query(None, max_length=300),
                       view: str = "exceptions", user: Any = Depends(require_reader)) -> str:
        from clio2sf import books, reconcile

        root = migration_root(firm, migration_id)
        runs = sorted((d.name for d in (root / "reports").iterdir() if (d / "reconciliation.json").exists()),
                      key=lambda name: name.split("__", 1)[-1]) if (root / "reports").exists() else []
        if run is None and runs:
            run = runs[-1]
        if run not in runs:
            raise HTTPException(status_code=404, detail="no such reconciliation: run mig_05_full_load")
        with (root / "reports" / run / "reconciliation.json").open("rb") as fh:
            doc = json.loads(fh.read(MAX_BYTES + 1))
        only = view != "all"
        link = f"reconciliation?run={quote(run, safe='')}"
        views = ('<p class="filters noprint">Show: '
                 + (f'<b>exceptions only</b> <a href="{reports.esc(link)}&amp;view=all">everything</a>' if only else
                    f'<a href="{reports.esc(link)}">exceptions only</a> <b>everything</b>')
                 + f' · every row: <a href="files/reports/{quote(run, safe="")}/reconciliation.csv">reconciliation.csv'
                 f'</a>, <a href="files/reports/{quote(run, safe="")}/books.csv">books.csv</a></p>')
        names, currency = doc.get("names") or {}, doc.get("currency")
        files = f"files/reports/{quote(run, safe='')}/"
        extra = books.books_html(books.books_from_json(doc["books"]), labels=names, currency=currency,
                                 exceptions_only=only, files_href=files) if doc.get("books") else ""
        return reconcile.reconciliation_html(reconcile.reconciliation_from_json(doc), extra_html=extra,
                                             context=doc.get("context"), currency=currency, labels=names,
                                             exceptions_only=only, views_html=views, files_href=files)

    @app.get("/{firm}/{migration_id}/files/{rel:path}")
    def file(firm: str, migration_id: str, rel: str, user: Any = Depends(require_reader)) -> Response:
        parts = rel.split("/")
        if not parts or any(not _FILE_SEGMENT.match(p) or p in (".", "..") or p in HIDDEN for p in parts):
            raise HTTPException(status_code=404, detail="not a report file")
        ext = os.path.splitext(parts[-1])[1]
        if ext not in SERVED:
            raise HTTPException(status_code=404, detail="not a report file")
        path = migration_root(firm, migration_id)
        for p in parts:
            path = path / p
        if not path.exists() or path.is_dir():
            raise HTTPException(status_code=404, detail="no such report")
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise HTTPException(status_code=413, detail=f"report larger than {MAX_BYTES} bytes: download it from staging")
        return Response(content=data, media_type=SERVED[ext])

    return app
