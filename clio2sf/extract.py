"""Resumable extraction of one Clio collection into raw staging batches.

The loop is pure: it talks to Clio only through two callables, so it runs the same under
Airflow (``ClioHook.get_page`` / ``ClioHook.download_document``), in tests and in scripts::

    from clio2sf import catalog, staging
    from clio2sf.extract import extract_object

    mroot = staging.migration_root(ObjectStoragePath(root_url), firm, migration_id)
    summary = extract_object(catalog.get("contacts"), hook.get_page, mroot,
                             download=hook.download_document,
                             request_count=lambda: hook.requests_made)
    # summary: {"object", "records", "batches", "pages", "requests", "complete", "manifest"}

Resume contract: after each batch the batch file is written (replacing any uncommitted file of
that number), then its manifest entry (the current ``_manifest/part-NNNNN.json`` segment and
``_manifest.json``, see :class:`clio2sf.staging.ManifestWriter`: memory and work per batch stay
flat however many batches an object has), then ``_progress.json`` with the ``next`` cursor URL.
A killed or retried run reads ``_progress.json`` and continues from the last committed cursor,
rewriting the batch that was in flight: no duplicate, no gap.  A finished object is not
re-fetched.  Cursor URLs (``meta.paging.next``) are followed exactly as Clio returns them.

Document bytes (``download``) are streamed to ``blobs/documents/<doc id>/<version id>`` and the
envelope gets ``blob = {"path", "sha256", "size"}`` (size 0 is a valid, recorded blob).  A document
with more than one version also gets ``versions``: its earlier versions, oldest first (listed with
``documents/{id}/versions``), each ``{"data": <version record>, "blob": {...}}`` with its own bytes.

Logs carry counts, rate and ETA only, never record bodies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from clio2sf import staging
from clio2sf.catalog import ClioObject
from clio2sf.progress import DEFAULT_EVERY, Progress, eta

log = logging.getLogger(__name__)

Fetch = Callable[[str, Mapping[str, Any] | None], tuple[dict[str, Any], Mapping[str, str]]]
Download = Callable[[Any, Any], Iterable[bytes]]

DEFAULT_LIMIT = 200

#: Staged object name -> Clio kind used in ``source_system_id`` where plain singularisation fails.
_KIND_OVERRIDES = {"matter_notes": "note", "contact_notes": "note"}


class ExtractError(RuntimeError):
    """Extraction cannot go on (bad response shape, inconsistent resume state)."""


def source_kind(name: str) -> str:
    """Return the singular kind of a staged object (``calendar_entries`` -> ``calendar_entry``)."""
    if name in _KIND_OVERRIDES:
        return _KIND_OVERRIDES[name]
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s"):
        return name[:-1]
    return name


def _now_iso(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(obj_name: str, record: Mapping[str, Any], extracted_at: str) -> dict[str, Any]:
    """Wrap one record as returned by Clio into the raw envelope (docs/architecture.md)."""
    if not isinstance(record, Mapping) or record.get("id") in (None, ""):
        raise ExtractError(f"{obj_name}: a record has no 'id' field; cannot stage it")
    clio_id = record["id"]
    return {
        "object": obj_name,
        "source_system_id": f"{source_kind(obj_name)}-{clio_id}",
        "clio_id": clio_id,
        "original_create_date": record.get("created_at"),
        "extracted_at": extracted_at,
        "data": dict(record),
    }


def first_request(
    obj: ClioObject, *, updated_since: str | None = None, limit: int = DEFAULT_LIMIT
) -> tuple[str, dict[str, Any]]:
    """Return the path and query of the first page of a cursor-paged listing."""
    params: dict[str, Any] = {"limit": limit, "fields": obj.fields}
    params.update(obj.list_params)
    if updated_since:
        if not obj.incremental:
            raise ExtractError(f"{obj.name}: endpoint {obj.endpoint!r} does not accept updated_since")
        params["updated_since"] = updated_since
    return obj.endpoint, params


#: Download answers that mean "this document is gone", not "try again": the hook's ``ClioBadRequest``
#: carries the status in ``.status``.
GONE_STATUSES = (404, 410)


#: What is read of each older version of a document (``GET documents/{id}/versions``).
VERSION_FIELDS = "id,uuid,version_number,filename,size,content_type,received_at,fully_uploaded"


def _attach_blob(
    env: dict[str, Any], mroot: Any, download: Download,
    list_versions: Callable[[Any], list[Mapping[str, Any]]] | None = None,
) -> None:
    data = env["data"]
    version = data.get("latest_document_version") or {}
    version_id = version.get("id") if isinstance(version, Mapping) else None
    if version_id is None:
        # No uploaded version: nothing to download; recorded so the loader can report it.
        env["blob"] = None
        return
    path = staging.blob_path(mroot, data["id"], version_id)
    try:
        info = staging.write_blob(path, download(data["id"], version_id))
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status not in GONE_STATUSES:
            raise
        # Listed by Clio but gone when downloaded (deleted meanwhile): this document only is
        # recorded without bytes; the transform rejects it with this reason, the extract goes on.
        env["blob"] = None
        env["blob_error"] = f"Clio answered HTTP {status} to the download of version {version_id}"
        log.warning("%s: download answered HTTP %s; recorded without bytes (rejected at transform)",
                    env["source_system_id"], status)
        return
    env["blob"] = {"path": staging.blob_relpath(data["id"], version_id), **info}
    declared = version.get("size")
    if isinstance(declared, int) and declared != info["size"]:
        log.warning("%s: downloaded %d bytes but Clio declares size %d", env["source_system_id"], info["size"], declared)
    if list_versions is not None and isinstance(version.get("version_number"), int) and version["version_number"] > 1:
        _attach_older_versions(env, mroot, download, list_versions, version_id)


def _attach_older_versions(env: dict[str, Any], mroot: Any, download: Download,
                           list_versions: Callable[[Any], list[Mapping[str, Any]]], latest_id: Any) -> None:
    """``env["versions"]``: every earlier version of the document, oldest first, each with its own blob
    (``{"data": <Clio version record>, "blob": {...} | None}``); a version gone on download keeps
    ``blob: None`` and ``blob_error``."""
    data = env["data"]
    older = sorted((v for v in list_versions(data["id"]) if v.get("id") != latest_id and v.get("id") is not None),
                   key=lambda v: (v.get("version_number") or 0, v["id"]))
    out = []
    for v in older:
        item: dict[str, Any] = {"data": dict(v)}
        path = staging.blob_path(mroot, data["id"], v["id"])
        try:
            info = staging.write_blob(path, download(data["id"], v["id"]))
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status not in GONE_STATUSES:
                raise
            item["blob"] = None
            item["blob_error"] = f"Clio answered HTTP {status} to the download of version {v['id']}"
        else:
            item["blob"] = {"path": staging.blob_relpath(data["id"], v["id"]), **info}
        out.append(item)
    env["versions"] = out


attach_blob = _attach_blob  # public: the delta stages documents fetched by id the same way


def _drop_uncommitted(odir: Any, committed: int) -> None:
    """Delete batch files past the committed count (left by a killed run)."""
    for path in odir.glob("batch-*.jsonl.gz"):
        try:
            number = int(path.name[len("batch-") : -len(".jsonl.gz")])
        except ValueError:
            continue
        if number > committed:
            path.unlink()




def extract_object(
    obj: ClioObject,
    fetch: Fetch,
    mroot: Any,
    *,
    download: Download | None = None,
    updated_since: str | None = None,
    pages_per_batch: int = 1,
    limit: int = DEFAULT_LIMIT,
    total: int | None = None,
    request_count: Callable[[], int] | None = None,
    clock: Callable[[], float] = time.time,
    download_workers: int = 4,
    progress_every: float = DEFAULT_EVERY,
) -> dict[str, Any]:
    """Extract one catalog object into ``raw/<object>/``, resuming from ``_progress.json``.

    :param obj: the catalog entry.
    :param fetch: ``fetch(path_or_url, params) -> (body, headers)``; ``params`` is None when
        following a ``meta.paging.next`` URL.
    :param mroot: the migration root (any path-like, see :mod:`clio2sf.staging`).
    :param download: ``download(document_id, version_id) -> iterable of bytes``; required for
        ``documents``.
    :param updated_since: ISO timestamp for a delta extraction; must match a resumed run's.
    :param pages_per_batch: Clio pages per batch file.
    :param total: expected record count, for ETA logging only.
    :param download_workers: documents downloaded at once (``download`` must be thread-safe).
    :param progress_every: seconds between progress lines (records listed, documents downloaded)
        while pages and downloads keep arriving, besides the line at each batch commit.
    :param request_count: returns the caller's running HTTP request count (e.g. the hook's
        ``requests_made``); default counts fetch and download calls.
    :return: JSON-able summary for XCom.
    """
    if pages_per_batch < 1:
        raise ValueError(f"{obj.name}: pages_per_batch must be >= 1, got {pages_per_batch}")
    is_documents = obj.endpoint == "documents"
    if is_documents and download is None:
        raise ValueError(f"{obj.name}: a download callable is required to stage document bytes")

    odir = staging.raw_dir(mroot, obj.name)
    staging.ensure_dir(odir)
    progress = staging.read_json(odir / staging.PROGRESS)
    if progress is None:
        progress = {
            "object": obj.name,
            "updated_since": updated_since,
            "next": None,
            "started": False,
            "batches": 0,
            "records": 0,
            "pages": 0,
            "requests": 0,
            "complete": False,
        }
    elif progress.get("updated_since") != updated_since:
        raise ExtractError(
            f"{obj.name}: staged progress was made with updated_since="
            f"{progress.get('updated_since')!r}, not {updated_since!r}; use a new migration root"
        )
    def summary() -> dict[str, Any]:
        return {
            "object": obj.name,
            "records": progress["records"],
            "batches": progress["batches"],
            "pages": progress["pages"],
            "requests": progress["requests"],
            "complete": progress["complete"],
            "manifest": str(odir / staging.MANIFEST),
        }

    if progress["complete"]:
        log.info("%s: already complete (%d records in %d batches)", obj.name, progress["records"], progress["batches"])
        return summary()

    calls = 0

    def counting_fetch(url: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        body, _headers = fetch(url, params)
        if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
            raise ExtractError(f"{obj.name}: response for {url.split('?')[0]} has no 'data' list")
        return dict(body)

    count_lock = threading.Lock()

    def counting_download(doc_id: Any, version_id: Any) -> Iterable[bytes]:
        nonlocal calls
        with count_lock:
            calls += 1
        return download(doc_id, version_id)  # type: ignore[misc]

    def versions_of(doc_id: Any) -> list[Mapping[str, Any]]:
        """Every version of a document (one request; a document has far fewer than a page of versions)."""
        body = counting_fetch(f"{obj.endpoint}/{doc_id}/versions", {"fields": VERSION_FIELDS, "limit": 200})
        return [v for v in body["data"] if isinstance(v, Mapping)]

    def requests_so_far() -> int:
        return request_count() if request_count is not None else calls

    if progress["started"] and progress["next"] is None:
        raise ExtractError(f"{obj.name}: progress says started but has no cursor and is not complete")
    _drop_uncommitted(odir, progress["batches"])
    manifest = staging.ManifestWriter(odir, obj.name, progress["batches"])
    if progress["started"]:
        log.info("%s: resuming after batch %d (%d records)", obj.name, progress["batches"], progress["records"])

    t0 = clock()
    done_at_start = progress["records"]
    listed = Progress(obj.name, "records", total=total, done=progress["records"], every=progress_every, clock=clock,
                      log=log)
    cursor = progress["next"]
    finished = False
    while not finished:
        batch_no = progress["batches"] + 1
        started = _now_iso(clock)
        req0 = requests_so_far()
        envelopes: list[dict[str, Any]] = []
        pages = 0
        while pages < pages_per_batch:
            if cursor is None:
                path, params = first_request(obj, updated_since=updated_since, limit=limit)
                body = counting_fetch(path, params)
            else:
                body = counting_fetch(cursor, None)
            pages += 1
            extracted_at = _now_iso(clock)
            envelopes.extend(envelope(obj.name, rec, extracted_at) for rec in body["data"])
            paging = (body.get("meta") or {}).get("paging") or {}
            cursor = paging.get("next") or None
            if total is None and isinstance((body.get("meta") or {}).get("records"), int):
                total = body["meta"]["records"]
            listed.update(progress["records"] + len(envelopes), total=total)
            if cursor is None:
                finished = True
                break
        if is_documents:
            # Downloads overlap: each one's API call still takes a paced slot, but the bytes
            # (a signed storage URL, not rate limited), hashing and writing run side by side.
            fetched = Progress(f"{obj.name} batch {batch_no} downloads", "documents", total=len(envelopes),
                               every=progress_every, clock=clock, log=log)

            def attach(env: dict[str, Any], fetched: Progress = fetched) -> None:
                _attach_blob(env, mroot, counting_download, versions_of)
                fetched.update(add=1)

            with ThreadPoolExecutor(max_workers=download_workers) as pool:
                list(pool.map(attach, envelopes))
        if envelopes:
            entry = staging.write_jsonl_gz(odir / staging.batch_name(batch_no), envelopes)
            entry["pages"] = pages
            manifest.add(batch_no, entry)
            progress["batches"] = batch_no
        if envelopes or finished:
            manifest.write(progress["records"] + len(envelopes), finished)
        requests = requests_so_far() - req0
        staging.append_jsonl(
            odir / staging.BATCH_LOG,
            [{"batch": staging.batch_name(batch_no), "started": started, "finished": _now_iso(clock),
              "records": len(envelopes), "pages": pages, "requests": requests}],
        )
        progress.update(
            next=cursor,
            started=True,
            records=progress["records"] + len(envelopes),
            pages=progress["pages"] + pages,
            requests=progress["requests"] + requests,
            complete=finished,
        )
        staging.write_json(odir / staging.PROGRESS, progress)
        elapsed = max(clock() - t0, 1e-9)
        rate = (progress["records"] - done_at_start) / elapsed
        log.info(
            "%s: batch %d committed, %d/%s records, %.1f records/s, ETA %s",
            obj.name, progress["batches"], progress["records"], total if total else "?", rate,
            eta(progress["records"], total, rate),
        )
    return summary()


def read_records(mroot: Any, obj_name: str, decoder: Any = None) -> Iterable[dict[str, Any]]:
    """Yield every committed envelope of an object, batch by batch, in manifest order
    (``decoder``: see :func:`clio2sf.staging.read_jsonl_gz`)."""
    manifest = staging.read_manifest(mroot, obj_name)
    if manifest is None:
        raise ExtractError(f"{obj_name}: no _manifest.json under {staging.raw_dir(mroot, obj_name)}")
    for entry in manifest["batches"]:
        yield from staging.read_jsonl_gz(staging.raw_dir(mroot, obj_name) / entry["file"], decoder)
