"""The FastAPI application: OAuth, ``/api/v4`` with Clio's conventions, blobs and admin endpoints."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from clio2sf.catalog import CLIO_OBJECTS
from sandbox.clio import blobs
from sandbox.clio.config import CLIENT_ID, DEFAULT_VERSION, KNOWN_VERSIONS, Knobs
from sandbox.clio.fields import ENDPOINT_KIND, FieldError, compile_plan, project
from sandbox.clio.ratelimit import RateLimiter, limit_in_force
from sandbox.clio.store import VIEW_KEYS, Store, parse_ts
from sandbox.clio.writes import WriteError, Writer

MAX_LIMIT = {"users": 2000}
OFFSET_CAP = 10_000
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


def _encode_token(after: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"a": after}).encode()).decode().rstrip("=")


def _decode_token(tok: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))
        return int(json.loads(raw)["a"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ValueError("Invalid page_token") from exc


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

    def counts(self) -> dict[str, int]:
        """What an extractor paging each catalog endpoint with the catalog params receives."""
        out = {}
        for obj in CLIO_OBJECTS:
            out[obj.name] = self.store.count(ENDPOINT_KIND[obj.endpoint], obj.params.get("type"))
        return out


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

    @app.get("/_admin/dirty")
    async def admin_dirty() -> list:
        return json.loads(sb.store.meta("dirty") or "[]")

    @app.get("/_admin/knobs")
    async def get_knobs() -> dict:
        return sb.knobs.as_dict()

    @app.post("/_admin/knobs")
    async def set_knobs(request: Request) -> Response:
        try:
            sb.knobs.update(await request.json())
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(sb.knobs.as_dict())

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
            else:
                return JSONResponse({"error": f"op must be create, update or delete, got {op!r}"}, status_code=400)
        except WriteError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({k: v for k, v in rec.items() if not k.startswith("_")})

    # --- API ------------------------------------------------------------------------------------
    @app.api_route("/api/v4/{path:path}", methods=["GET", "POST", "PATCH", "DELETE"])
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
        except FieldError as exc:
            resp = clio_error(400, "ArgumentError", str(exc), headers)
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


def _quantity_hours(rows: list[dict], records: list[dict]) -> None:
    """Before 4.0.4 activity quantities were in hours."""
    for out, rec in zip(rows, records, strict=True):
        if rec.get("type") == "TimeEntry":
            if "quantity" in out:
                out["quantity"] = rec.get("quantity_in_hours")
            if "rounded_quantity" in out:
                out["rounded_quantity"] = rec.get("rounded_quantity_in_hours")


async def dispatch(sb: Sandbox, request: Request, path: str, method: str, version: str, headers: dict) -> Response:
    q = request.query_params
    parts = path.strip("/").split("/")
    old_quantity = tuple(int(x) for x in version.split(".")) < (4, 0, 4)
    if path == "users/who_am_i":
        rec = sb.store.get("users", 1001)
        return _json({"data": project(rec, compile_plan("users", q.get("fields")))}, headers)
    if path == "settings/billing":
        rec = json.loads(sb.store.meta("settings_billing") or "{}")
        return _json({"data": project(rec, compile_plan("settings/billing", q.get("fields")))}, headers)
    if len(parts) == 3 and parts[0] == "documents" and parts[2] in ("download", "versions"):
        return _document_sub(sb, request, int(parts[1]), parts[2], headers)
    endpoint = "/".join(parts)
    rid = None
    if len(parts) >= 2 and parts[-1].isdigit():
        endpoint, rid = "/".join(parts[:-1]), int(parts[-1])
    if endpoint not in ENDPOINT_KIND:
        return clio_error(404, "RecordNotFound", f"No route matches /api/v4/{path}", headers)
    kind = ENDPOINT_KIND[endpoint]
    if method in ("POST", "PATCH"):
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise WriteError(400, f"{endpoint}: request body is not JSON") from exc
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise WriteError(422, f"{endpoint}: body must be {{\"data\": {{...}}}}")
        plan = compile_plan(endpoint, q.get("fields"))
        if method == "POST" and rid is None:
            rec = sb.writer.create(endpoint, data)
            return _json({"data": project(rec, plan)}, headers, 201)
        if method == "PATCH" and rid is not None:
            rec = sb.writer.update(endpoint, rid, data, request.headers.get("if-match"))
            return _json({"data": project(rec, plan)}, headers | {"ETag": rec["etag"]})
        return clio_error(405, "MethodNotAllowed", f"{method} not allowed on {endpoint}", headers)
    if method == "DELETE":
        if rid is None:
            return clio_error(405, "MethodNotAllowed", f"DELETE needs a record id on {endpoint}", headers)
        sb.writer.delete(endpoint, rid)
        return Response(status_code=204, headers=headers)
    plan = compile_plan(endpoint, q.get("fields"))
    if rid is not None:
        rec = sb.store.get(kind, rid)
        if rec is None:
            return clio_error(404, "RecordNotFound", f"{endpoint} {rid} not found", headers)
        if request.headers.get("if-none-match") == rec.get("etag"):
            return Response(status_code=304, headers=headers | {"ETag": rec["etag"]})
        out = project(rec, plan)
        if kind == "activities" and old_quantity:
            _quantity_hours([out], [rec])
        return _json({"data": out}, headers | {"ETag": rec["etag"],
                                               "Last-Modified": formatdate(rec["_updated_ts"], usegmt=True)})
    return _index(sb, request, endpoint, kind, plan, headers, old_quantity)


def _index(sb: Sandbox, request: Request, endpoint: str, kind: str, plan, headers: dict,
           old_quantity: bool) -> Response:
    q = request.query_params
    try:
        limit = int(q.get("limit", MAX_LIMIT.get(endpoint, 200)))
    except ValueError:
        raise ValueError("limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT.get(endpoint, 200):
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT.get(endpoint, 200)}")
    subtype = q.get("type")
    if endpoint == "notes":
        if subtype not in ("Matter", "Contact"):
            raise ValueError("type is required for notes and must be Matter or Contact")
    order = q.get("order", "id(asc)")
    if "(" not in order or not order.endswith(("(asc)", "(desc)")):
        raise ValueError(f"Invalid order {order!r}")
    order_field, direction = order[:-1].split("(")
    offset = q.get("offset")
    cursor = order == "id(asc)" and offset is None
    kwargs: dict = {
        "subtype": subtype,
        "updated_since": parse_ts(q["updated_since"]) if "updated_since" in q else None,
        "created_since": parse_ts(q["created_since"]) if "created_since" in q else None,
        "ids": [int(x) for x in q.getlist("ids[]") + q.getlist("ids")] or None,
        "matter_id": int(q["matter_id"]) if q.get("matter_id") else None,
        "include_deleted": q.get("include_deleted") == "true",
    }
    view = None if old_quantity else VIEW_KEYS.get((endpoint, q.get("fields") or ""))
    kwargs["view"] = view
    if cursor:
        after = _decode_token(q["page_token"]) if "page_token" in q else 0
        rows = sb.store.page(kind, after_id=after, limit=limit, **kwargs)
    else:
        off = int(offset or 0)
        if off + limit > OFFSET_CAP:
            return clio_error(422, "ArgumentError", f"offset paging is limited to {OFFSET_CAP} records", headers)
        rows = sb.store.page(kind, limit=limit, offset=off, order_field=order_field,
                             descending=direction == "desc", **kwargs)
    more = len(rows) > limit
    rows = rows[:limit]
    meta: dict = {"paging": {}}
    if more:
        params = [(k, v) for k, v in q.multi_items() if k not in ("page_token", "offset")]
        if cursor:
            params.append(("page_token", _encode_token(rows[-1][0])))
        else:
            params.append(("offset", str(int(offset or 0) + limit)))
        meta["paging"]["next"] = str(request.url.replace(query=urlencode(params)))
    if view is not None:
        body = b'{"data":[' + b",".join([r[1] for r in rows]) + b'],"meta":' + _dumps(meta).encode() + b"}"
        return Response(body, media_type="application/json; charset=utf-8", headers=headers)
    records = [json.loads(r[1]) for r in rows]
    data = [project(r, plan) for r in records]
    if kind == "activities" and old_quantity:
        _quantity_hours(data, records)
    return _json({"data": data, "meta": meta}, headers)


def _document_sub(sb: Sandbox, request: Request, doc_id: int, what: str, headers: dict) -> Response:
    doc = sb.store.get("documents", doc_id)
    if doc is None:
        return clio_error(404, "RecordNotFound", f"documents {doc_id} not found", headers)
    versions = doc.get("_versions", [])
    if what == "versions":
        plan = compile_plan("document_versions", request.query_params.get("fields"))
        rows = [v | {"document_id": doc_id, "created_at": v["received_at"], "updated_at": v["received_at"],
                     "etag": v.get("etag") or f'"v{v["id"]}-{v["version_number"]}"'} for v in versions]
        return _json({"data": [project(v, plan) for v in rows], "meta": {"paging": {}}}, headers)
    vid = request.query_params.get("document_version_id")
    ver = next((v for v in versions if vid is None or str(v["id"]) == vid), None) if vid else versions[-1]
    if ver is None:
        return clio_error(400, "ArgumentError", f"documents {doc_id} has no version {vid}", headers)
    expires = int(time.time()) + 600
    sig = blobs.sign(sb.blob_secret, doc_id, ver["id"], expires)
    base = str(request.base_url).rstrip("/")
    loc = f"{base}/_blobs/{doc_id}/{ver['id']}?{urlencode({'expires': expires, 'signature': sig})}"
    return Response(status_code=303, headers=headers | {"Location": loc})
