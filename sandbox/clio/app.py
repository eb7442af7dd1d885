"""The FastAPI application: OAuth, ``/api/v4`` with Clio's conventions, blobs and admin endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from sandbox.clio import blobs, reads, webhooks
from sandbox.clio.config import CLIENT_ID, DEFAULT_VERSION, KNOWN_VERSIONS, Knobs
from sandbox.clio.fields import FieldError
from sandbox.clio.filters import ParamError
from sandbox.clio.ratelimit import RateLimiter, limit_in_force
from sandbox.clio.schema import model
from sandbox.clio.store import Store
from sandbox.clio.writes import WriteError, Writer

INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token provided is expired, revoked, malformed or invalid for other reasons.",
}
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def clio_error(status: int, type_: str, message: str, headers: dict | None = None) -> Response:
    """Clio's ``{"error": {"type", "message"}}`` envelope."""
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


def token_id(token: str) -> str:
    """A short non-reversible id for logs (tokens themselves are never logged)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass
class Sandbox:
    """Process-wide state shared by the handlers."""

    data_dir: Path
    store: Store
    knobs: Knobs
    seed: int
    limiter: RateLimiter = field(default_factory=RateLimiter)
    log: list[dict] = field(default_factory=list)
    codes: dict[str, float] = field(default_factory=dict)
    api_requests: int = 0
    token_requests: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.writer = Writer(self.store)
        self.fault_rng = random.Random(self.seed * 31 + 5)
        self.log_file = (self.data_dir / "requests.jsonl").open("a", buffering=1)
        self.client_secret = self.store.meta("client_secret") or ""
        self.refresh_token = self.store.meta("refresh_token") or ""
        self.redirect_uri = self.store.meta("redirect_uri") or ""
        self.blob_secret = self.store.meta("blob_secret") or ""
        self.webhooks = webhooks.Webhooks(self)

    def record(self, token: str | None, method: str, path: str, status: int, window: float | None) -> None:
        entry = {"time": round(time.time(), 6), "token": token_id(token) if token else None, "method": method,
                 "path": path, "status": status, "window": window}
        self.log.append(entry)
        self.log_file.write(json.dumps(entry) + "\n")

    def issue_token(self) -> dict:
        access = secrets.token_urlsafe(32)
        self.store.add_token(access, time.time() + self.knobs.token_ttl)
        return {"token_type": "bearer", "access_token": access, "refresh_token": self.refresh_token,
                "expires_in": int(self.knobs.token_ttl)}

    def counts(self, wanted: dict | None = None) -> dict[str, int]:
        """Records per stored collection, or per ``{name: {"path": ..., "params": {...}}}``: exactly what
        paging that path with those parameters returns."""
        if not wanted:
            return {kind: self.store.count(kind) for kind in self.store.kinds()}
        return {name: reads.count(self.store, w["path"], sorted((w.get("params") or {}).items()))
                for name, w in wanted.items()}

    def settings(self) -> dict:
        return json.loads(self.store.meta("settings_billing") or "{}")


def _rate_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": str(int(-(-reset // 1)))}


def create_app(sb: Sandbox) -> FastAPI:
    app = FastAPI(title="Clio Manage API v4 sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = sb

    # --- OAuth ----------------------------------------------------------------------------------
    @app.get("/oauth/authorize")
    async def authorize(request: Request) -> Response:
        q = request.query_params
        if q.get("response_type") != "code" or q.get("client_id") != CLIENT_ID:
            return JSONResponse({"error": "invalid_request", "error_description": "unknown client_id or response_type"},
                                status_code=400)
        if q.get("redirect_uri") != sb.redirect_uri:
            return JSONResponse({"error": "invalid_request", "error_description": "redirect_uri is not registered"},
                                status_code=400)
        code = secrets.token_urlsafe(16)
        sb.codes[code] = time.time() + 600
        params = {"code": code} | ({"state": q["state"]} if "state" in q else {})
        sb.record(None, "GET", "/oauth/authorize", 302, None)
        return RedirectResponse(f"{sb.redirect_uri}?{urlencode(params)}", status_code=302)

    @app.post("/oauth/token")
    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        status, body = 200, None
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != sb.client_secret:
            status, body = 401, {"error": "invalid_client", "error_description": "client authentication failed"}
        elif form.get("grant_type") == "authorization_code":
            exp = sb.codes.pop(form.get("code", ""), 0)
            if exp < time.time() or form.get("redirect_uri") != sb.redirect_uri:
                status, body = 400, {"error": "invalid_grant", "error_description": "code is invalid or expired"}
        elif form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") != sb.refresh_token:
                status, body = 400, {"error": "invalid_grant", "error_description": "refresh token is invalid"}
        else:
            status, body = 400, {"error": "unsupported_grant_type", "error_description": "use authorization_code "
                                 "or refresh_token"}
        if body is None:
            body = sb.issue_token()
        sb.record(None, "POST", "/oauth/token", status, None)
        return JSONResponse(body, status_code=status)

    @app.post("/oauth/deauthorize")
    async def deauthorize(request: Request) -> Response:
        tok = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        sb.store.revoke(tok)
        sb.record(tok, "POST", "/oauth/deauthorize", 200, None)
        return JSONResponse({})

    # --- signed blobs ---------------------------------------------------------------------------
    @app.get("/_blobs/{doc_id}/{version_id}")
    async def blob(doc_id: int, version_id: int, expires: int, signature: str) -> Response:
        if expires < time.time() or not blobs.verify(sb.blob_secret, doc_id, version_id, expires, signature):
            return Response(b"<Error><Code>AccessDenied</Code></Error>", status_code=403, media_type="application/xml")
        doc = sb.store.get("documents", doc_id)
        ver = next((v for v in (doc or {}).get("_versions", []) if v["id"] == version_id), None)
        if ver is None:
            return Response(status_code=404)
        data = blobs.generate(sb.seed, doc_id, ver["version_number"], ver["_kind"], ver["size"], ver.get("_ref_doc"))
        return Response(data, media_type=ver["content_type"],
                        headers={"Content-Disposition": f'attachment; filename="{ver["filename"]}"'})

    # --- admin ----------------------------------------------------------------------------------
    @app.get("/_admin/health")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/_admin/requests")
    async def admin_requests(since: int = 0) -> dict:
        return {"requests": sb.log[since:], "next": len(sb.log)}

    @app.get("/_admin/counts")
    async def admin_counts() -> dict:
        return sb.counts()

    @app.post("/_admin/counts")
    async def admin_counts_for(request: Request) -> Response:
        try:
            return JSONResponse(sb.counts(await request.json()))
        except (ValueError, LookupError, KeyError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/_admin/dirty")
    async def admin_dirty() -> list:
        return json.loads(sb.store.meta("dirty") or "[]")

    @app.get("/_admin/knobs")
    async def get_knobs() -> dict:
        return sb.knobs.as_dict()

    @app.post("/_admin/knobs")
    async def set_knobs(request: Request) -> Response:
        changes = await request.json()
        try:
            webhooks.parse_fault(changes.get("webhook_fault"))
            sb.knobs.update(changes)
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(sb.knobs.as_dict())

    @app.get("/_admin/webhook_deliveries")
    async def webhook_deliveries(since: int = 0) -> dict:
        """What happened to each webhook handshake and delivery attempt (and how many wait)."""
        return {"deliveries": sb.webhooks.deliveries[since:], "next": len(sb.webhooks.deliveries),
                "pending": sb.webhooks.pending()}

    @app.post("/_admin/reset_limits")
    async def reset_limits() -> dict:
        sb.limiter.reset()
        return {"ok": True}

    @app.post("/_admin/revoke")
    async def admin_revoke(request: Request) -> dict:
        body = await request.json() if await request.body() else {}
        return {"revoked": sb.store.revoke(body.get("token"))}

    @app.post("/_admin/mutate")
    async def admin_mutate(request: Request) -> Response:
        body = await request.json()
        endpoint, op = body.get("object"), body.get("op")
        try:
            if op == "create":
                rec = sb.writer.create(endpoint, body.get("data") or {})
            elif op == "update":
                rec = sb.writer.update(endpoint, int(body["id"]), body.get("data") or {})
            elif op == "delete":
                sb.writer.delete(endpoint, int(body["id"]))
                return JSONResponse({"deleted": body["id"]})
            elif op == "purge":  # gone for good (Clio's trash emptied): no webhook, reads answer 404
                sb.writer.purge(endpoint, int(body["id"]))
                return JSONResponse({"purged": body["id"]})
            else:
                return JSONResponse({"error": f"op must be create, update, delete or purge, got {op!r}"},
                                    status_code=400)
        except WriteError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({k: v for k, v in rec.items() if not k.startswith("_")})

    # --- API ------------------------------------------------------------------------------------
    @app.api_route("/api/v4/{path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def api(path: str, request: Request) -> Response:
        method = request.method
        log_path = "/api/v4/" + path
        auth = request.headers.get("authorization", "")
        tok = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        now = time.time()
        if not tok or not sb.store.token_valid(tok, now):
            sb.record(tok or None, method, log_path, 401, None)
            return JSONResponse(INVALID_TOKEN, status_code=401)
        k = sb.knobs
        limit = limit_in_force(k, now)
        headers: dict[str, str] = {}
        window = None
        if limit is not None:
            allowed, remaining, reset, window = sb.limiter.hit(tok, now, limit, k.window)
            headers = _rate_headers(limit, remaining, reset)
            if not allowed:
                retry = max(1, int(-(-(reset - now) // 1)))
                sb.record(tok, method, log_path, 429, window)
                return clio_error(429, "RateLimited", f"Rate limit exceeded. Retry in {retry} seconds.",
                                  headers | {"Retry-After": str(retry)})
        sb.api_requests += 1
        n_tok = sb.token_requests[tok] = sb.token_requests.get(tok, 0) + 1
        if k.revoke_after and n_tok >= k.revoke_after:
            sb.store.revoke(tok)
        if k.latency_ms:
            await asyncio.sleep(k.latency_ms / 1000)
        if k.fault_429_storm:
            every, length = (int(x) for x in k.fault_429_storm.split(":"))
            if sb.api_requests % every >= every - length:
                sb.record(tok, method, log_path, 429, window)
                return clio_error(429, "RateLimited", "Rate limit exceeded (storm).", headers | {"Retry-After": "1"})
        if k.fault_5xx and sb.fault_rng.random() < k.fault_5xx:
            sb.record(tok, method, log_path, 503, window)
            return clio_error(503, "ServiceUnavailable", "The service is temporarily unavailable.", headers)
        version = request.headers.get("x-api-version") or DEFAULT_VERSION
        if version not in KNOWN_VERSIONS:
            sb.record(tok, method, log_path, 410, window)
            return clio_error(410, "Gone", f"API version {version} is not supported.", headers)
        headers["X-API-VERSION"] = version
        try:
            resp = await dispatch(sb, request, path.removesuffix(".json"), method, version, headers)
        except (FieldError, ParamError) as exc:
            resp = clio_error(400, "ArgumentError", str(exc), headers)
        except reads.NotFound as exc:
            resp = clio_error(404, "RecordNotFound", str(exc), headers)
        except reads.OffsetCapExceeded as exc:
            resp = clio_error(422, "ArgumentError", str(exc), headers)
        except WriteError as exc:
            resp = clio_error(exc.status, "ValidationError" if exc.status == 422 else "RecordError", str(exc),
                              headers)
        except ValueError as exc:
            resp = clio_error(400, "ArgumentError", str(exc), headers)
        sb.record(tok, method, log_path, resp.status_code, window)
        if k.drop_rate and method == "GET" and resp.status_code == 200 and sb.fault_rng.random() < k.drop_rate:
            return _dropped(resp)
        return resp

    return app


def _dropped(resp: Response) -> Response:
    """Send half of the body and then break the connection (a page cut mid-transfer)."""
    body = bytes(resp.body)

    async def gen():
        yield body[: len(body) // 2]
        raise ConnectionResetError("sandbox fault: connection dropped mid-page")

    headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length",)}
    return StreamingResponse(gen(), status_code=200, headers=headers)


def _json(body: object, headers: dict, status: int = 200) -> Response:
    return Response(_dumps(body).encode(), status_code=status, media_type="application/json; charset=utf-8",
                    headers=headers)


async def dispatch(sb: Sandbox, request: Request, path: str, method: str, version: str, headers: dict) -> Response:
    parts = path.strip("/").split("/")
    old_quantity = tuple(int(x) for x in version.split(".")) < (4, 0, 4)
    params = list(request.query_params.multi_items())
    if method == "GET" and len(parts) == 3 and parts[0] == "documents" and parts[2] == "download":
        return _download(sb, request, reads.record_id(parts[1], "documents"), headers)
    if method == "GET":
        return _get(sb, request, "/".join(parts), params, old_quantity, headers)
    if parts[0] == "webhooks":
        return await webhooks.handle(sb.webhooks, request, parts, method, params, headers)
    endpoint, rid = "/".join(parts), None
    if len(parts) >= 2 and parts[-1].lstrip("-").isdigit():
        endpoint, rid = "/".join(parts[:-1]), reads.record_id(parts[-1], "/".join(parts[:-1]))
    if method not in model().write_methods.get(endpoint + ("/{id}" if rid is not None else ""), ()):
        allowed = model().write_methods.get(endpoint + ("/{id}" if rid is not None else ""))
        if allowed is None and endpoint not in model().operations:
            return clio_error(404, "RecordNotFound", f"No route matches {method} /api/v4/{path}", headers)
        return clio_error(405, "MethodNotAllowed", f"{method} is not allowed on /api/v4/{path}", headers)
    if method == "DELETE":
        sb.writer.delete(endpoint, rid)
        return Response(status_code=204, headers=headers)
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise WriteError(400, f"{endpoint}: request body is not JSON") from exc
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise WriteError(422, f"{endpoint}: body must be {{\"data\": {{...}}}}")
    op = model().operations.get(endpoint)
    if op is None:
        raise WriteError(404, f"unknown endpoint {endpoint!r}")
    if method == "POST":
        rec = sb.writer.create(endpoint, data)
    else:
        rec = sb.writer.update(endpoint, rid, data, if_match=request.headers.get("if-match"))
    body_out = reads.show_body(sb.store, op, rec, [(k, v) for k, v in params if k == "fields"], old_quantity)
    return _json(body_out, headers | {"ETag": rec["etag"]}, 201 if method == "POST" else 200)


def _get(sb: Sandbox, request: Request, path: str, params: list, old_quantity: bool, headers: dict) -> Response:
    match = model().match(path)
    if match is None:
        return clio_error(404, "RecordNotFound", f"No route matches /api/v4/{path}", headers)
    op, path_params = match
    if op.listing:
        base = str(request.url.replace(query=""))
        return Response(reads.list_page(sb.store, op, path_params, params, base, old_quantity),
                        media_type="application/json; charset=utf-8", headers=headers)
    if op.path == "timer":
        raise reads.NotFound("no timer is running")
    rec = reads.show_record(sb.store, op, path_params, sb.settings())
    reads.build_query(op, params)  # unknown or bad parameters are refused before any 304
    extra = {"ETag": rec["etag"], "Last-Modified": reads.last_modified(rec)} if rec.get("etag") else {}
    if op.not_modified and reads.not_modified(rec, request.headers):
        return Response(status_code=304, headers=headers | extra)
    return _json(reads.show_body(sb.store, op, rec, params, old_quantity), headers | extra)


def _download(sb: Sandbox, request: Request, doc_id: int, headers: dict) -> Response:
    doc = sb.store.get("documents", doc_id)
    if doc is None:
        return clio_error(404, "RecordNotFound", f"documents {doc_id} not found", headers)
    unknown = sorted(k for k in request.query_params if k != "document_version_id")
    if unknown:
        raise ParamError(f"Unknown parameter(s) for documents/{{id}}/download: {', '.join(unknown)}")
    versions = doc.get("_versions", [])
    vid = request.query_params.get("document_version_id")
    ver = next((v for v in versions if str(v["id"]) == vid), None) if vid else (versions[-1] if versions else None)
    if ver is None:
        return clio_error(400, "ArgumentError", f"documents {doc_id} has no version {vid}", headers)
    expires = int(time.time()) + 600
    sig = blobs.sign(sb.blob_secret, doc_id, ver["id"], expires)
    base = str(request.base_url).rstrip("/")
    loc = f"{base}/_blobs/{doc_id}/{ver['id']}?{urlencode({'expires': expires, 'signature': sig})}"
    return Response(status_code=303, headers=headers | {"Location": loc})
