"""The HTTP layer: OAuth, REST, Tooling, Bulk 2.0, Bulk v1 and admin endpoints (Starlette)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import threading
import time
import traceback
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs, unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.salesforce import ids
from sandbox.salesforce.bulk import BulkJobs
from sandbox.salesforce.metadata import compound_address
from sandbox.salesforce.org import Org
from sandbox.salesforce.query import API, Runner, run_tooling
from sandbox.salesforce.soql import SoqlError
from sandbox.salesforce.values import FieldError

CONSUMER_KEY = "sf-sandbox-consumer-key"
PAGE = 2000
JSON_BLOB_LIMIT = int(37.5 * 1024 * 1024)
#: The API versions this org serves: its own (Winter '24, 59.0) down to 21.0; 7.0-20.0 were retired in
#: Summer '22 and answer 410, as do real orgs (versions above the org's own answer 404).
API_VERSION = 59.0
MIN_API_VERSION = 21.0
RELEASES = {59.0: "Winter '24", 58.0: "Summer '23", 57.0: "Spring '23", 56.0: "Winter '23", 55.0: "Summer '22"}


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            body["fields"] = self.fields
        return JSONResponse([body], status_code=self.status)


def _api_version(path: str) -> None:
    """404 above the org's version, 410 for a retired one, 404 for a malformed one."""
    if path.startswith("/services/async/"):
        ver = path.split("/services/async/", 1)[1].split("/", 1)[0]
    else:
        ver = path.split("/services/data/", 1)[1].split("/", 1)[0]
        if not ver:
            return  # the version list
        if not ver.startswith("v"):
            raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
        ver = ver[1:]
    number = float(ver) if "." in ver and ver.replace(".", "", 1).isdigit() else None
    if number is None or number > API_VERSION:
        raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
    if number < MIN_API_VERSION:
        raise HttpError(410, "UNSUPPORTED_API_VERSION",
                        f"The API version that was specified ({number:.1f}) is below the minimum supported "
                        f"({MIN_API_VERSION:.1f}). Change the version number and run the request again.")


def _from_field_error(e: FieldError, status: int = 400) -> HttpError:
    if e.code in ("NOT_FOUND",):
        status = 404
    return HttpError(status, e.code, e.message, e.fields)


@dataclass
class DropRule:
    """One ``drop_response`` rule: requests whose method matches and whose path contains ``fragment``."""

    method: str
    fragment: str
    hits: frozenset[int]
    seen: int = 0

    def hit(self, method: str, path: str) -> bool:
        if method.upper() != self.method or self.fragment not in path:
            return False
        self.seen += 1
        return self.seen in self.hits


def parse_drop_rules(text: str, knob: str = "drop_response") -> list[DropRule]:
    """``"POST /composite/sobjects#1,3; PATCH /jobs/ingest#2"`` → rules (``#n`` defaults to ``#1``)."""
    rules = []
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        head, _, nums = part.partition("#")
        method, _, fragment = head.strip().partition(" ")
        try:
            hits = frozenset(int(n) for n in (nums or "1").split(",") if n.strip())
        except ValueError:
            raise ValueError(f"{knob}: bad request numbers in {part!r}") from None
        if not method or not fragment.strip() or not hits or min(hits) < 1:
            raise ValueError(f"{knob}: {part!r} is not '<METHOD> <path fragment>#<n>[,<n>...]'")
        rules.append(DropRule(method.upper(), fragment.strip(), hits))
    return rules


class Sandbox:
    """Server state: the org, sessions, cursors, the request log."""

    def __init__(self, org: Org, host: str, port: int):
        self.org = org
        self.bulk = BulkJobs(org)
        self.bulk.on_internal_error = lambda job, e: self.record({
            "ts": time.time(), "method": "WORKER", "path": f"bulk job {job['id']}", "kind": "bulk_worker",
            "status": 500, "error": f"{type(e).__name__}: {e}", "api": False})
        self.instance_url = f"https://{host}:{port}"
        self.sessions: dict[str, tuple[str, float]] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.cursors: dict[str, tuple[Runner, list[dict], int, float]] = {}
        self.log_lock = threading.Lock()
        self.log: list[dict] = []
        self.log_file = (org.dir / "requests.jsonl").open("a", encoding="utf-8")
        self.rng_503 = random.Random(org.settings.seed * 31 + 3)
        self.consumer_secret = org.store.meta_get("consumer_secret")
        self.drop_rules: list[DropRule] = parse_drop_rules(org.settings.drop_response)
        self.limit_rules: list[DropRule] = parse_drop_rules(org.settings.limit_exceeded_on, "limit_exceeded_on")

    def drop_now(self, method: str, path: str) -> bool:
        """Count the request against the ``drop_response`` rules; True when its response is to be lost."""
        with self.log_lock:
            return any(rule.hit(method, path) for rule in self.drop_rules)

    def limit_now(self, method: str, path: str) -> bool:
        """Count the request against the ``limit_exceeded_on`` rules; True when it is to be refused."""
        with self.log_lock:
            return any(rule.hit(method, path) for rule in self.limit_rules)

    # -- sessions ------------------------------------------------------------------------------
    def issue(self, user_id: str, *, refresh: bool = False) -> dict:
        token = f"{self.org.org_id[:15]}!{secrets.token_urlsafe(48)}"
        self.sessions[token] = (user_id, time.time() + self.org.settings.session_ttl)
        issued = str(int(time.time() * 1000))
        ident = f"https://login.salesforce.com/id/{self.org.org_id}/{user_id}"
        sig = base64.b64encode(hmac.new(self.consumer_secret.encode(), (ident + issued).encode(),
                                        hashlib.sha256).digest()).decode()
        out = {"access_token": token, "instance_url": self.instance_url, "id": ident, "token_type": "Bearer",
               "issued_at": issued, "signature": sig, "scope": "api full refresh_token"}
        if refresh:
            rt = secrets.token_urlsafe(32)
            self.refresh_tokens[rt] = user_id
            out["refresh_token"] = rt
        return out

    def session_user(self, request: Request) -> str:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-sfdc-session", "")
        hit = self.sessions.get(token)
        if hit is None or hit[1] < time.time():
            self.sessions.pop(token, None)
            raise HttpError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return hit[0]

    def record(self, entry: dict) -> None:
        with self.log_lock:
            self.log.append(entry)
            self.log_file.write(json.dumps(entry) + "\n")
            self.log_file.flush()

    def limit_header(self) -> str:
        return f"api-usage={self.org.api_used}/{self.org.settings.api_daily_limit}"


def _kind(path: str, method: str) -> str:
    p = path.split("/services/data/", 1)[-1]
    parts = p.split("/")[1:] if p.startswith("v") else p.split("/")
    head = parts[0] if parts else ""
    if path.startswith("/services/oauth2"):
        return "auth"
    if path.startswith("/services/async"):
        return "bulk1"
    if head == "jobs":
        return "bulk2_" + (parts[1] if len(parts) > 1 else "")
    if head == "sobjects":
        if len(parts) >= 3 and parts[-1] == "describe" or len(parts) == 1:
            return "describe"
        return f"sobject_{method.lower()}"
    return {"query": "query", "queryAll": "query", "composite": "composite", "tooling": "tooling",
            "limits": "limits"}.get(head, head or "root")


def build_app(sb: Sandbox) -> Starlette:
    org = sb.org

    async def token(request: Request) -> Response:
        body = await request.body()
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        form.update({k: v for k, v in request.query_params.items() if k == "grant_type" and "grant_type" not in form})
        status, payload = await run_in_threadpool(_token, sb, request, form)
        sb.record({"ts": time.time(), "method": "POST", "path": "/services/oauth2/token", "kind": "auth",
                   "status": status, "api": False})
        return JSONResponse(payload, status_code=status)

    async def api(request: Request) -> Response:
        started = time.time()
        path = request.url.path
        kind = _kind(path, request.method)
        body = await request.body()
        status = 500
        try:
            user = sb.session_user(request)
            _api_version(path)
            with org.lock:
                if org.api_used >= org.settings.api_daily_limit:
                    raise HttpError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                org.api_used += 1
                every = org.settings.session_expire_every
                if every and org.api_used % every == 0:
                    sb.sessions.clear()
                    org.count_fault("session_expired")
                if org.settings.fault_503_rate and sb.rng_503.random() < org.settings.fault_503_rate:
                    org.count_fault("API_TEMPORARILY_UNAVAILABLE")
                    raise HttpError(503, "API_TEMPORARILY_UNAVAILABLE",
                                    "The API is temporarily unavailable (sandbox fault injection)")
            if sb.limit_rules and sb.limit_now(request.method, path):
                org.count_fault("REQUEST_LIMIT_EXCEEDED")
                raise HttpError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            resp = await run_in_threadpool(_dispatch, sb, request, body, user)
            if sb.drop_rules and sb.drop_now(request.method, path):
                # the write is committed; the client never learns it (a gateway timed out)
                resp = Response("<html><body>504 Gateway Time-out</body></html>", status_code=504,
                                media_type="text/html")
        except HttpError as e:
            resp = e.response()
        except FieldError as e:
            resp = _from_field_error(e).response()
        except SoqlError as e:
            resp = HttpError(400, e.code, e.message).response()
        except Exception as e:  # noqa: BLE001 - a sandbox bug: answered as a real org would, and logged
            resp = _internal_error(sb, path, e)
        status = resp.status_code
        resp.headers["Sforce-Limit-Info"] = sb.limit_header()
        sb.record({"ts": started, "method": request.method, "path": path, "kind": kind, "status": status,
                   "ms": int((time.time() - started) * 1000), "api": True})
        return resp

    async def userinfo(request: Request) -> Response:
        try:
            user = sb.session_user(request)
            u = await run_in_threadpool(org.user, user)
            resp = JSONResponse({
                "sub": f"https://login.salesforce.com/id/{org.org_id}/{user}", "user_id": user,
                "organization_id": org.org_id, "preferred_username": u["Username"], "name": u["Name"],
                "email": u["Email"], "email_verified": True, "active": bool(u["IsActive"]),
                "user_type": "STANDARD", "language": "en_US", "zoneinfo": u.get("TimeZoneSidKey")})
        except HttpError as e:
            resp = e.response()
        sb.record({"ts": time.time(), "method": request.method, "path": request.url.path, "kind": "auth",
                   "status": resp.status_code, "api": False})
        return resp

    async def admin(request: Request) -> Response:
        what = request.path_params["rest"]
        body = await request.body()
        return await run_in_threadpool(_admin, sb, request.method, what, body)

    routes = [
        Route("/services/oauth2/token", token, methods=["POST"]),
        Route("/services/oauth2/userinfo", userinfo, methods=["GET", "POST"]),
        Route("/services/data/{rest:path}", api, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        Route("/services/async/{rest:path}", api, methods=["GET", "POST", "PUT"]),
        Route("/_admin/{rest:path}", admin, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes)


def _internal_error(sb: Sandbox, path: str, e: Exception) -> JSONResponse:
    """A real org's answer to its own failure: 500 UNKNOWN_EXCEPTION (the traceback goes to the server log)."""
    error_id = f"{secrets.randbelow(10**9):09d}-{secrets.randbelow(10**6):06d}"
    print(f"sandbox internal error {error_id} on {path}:\n{traceback.format_exc()}", flush=True)
    return JSONResponse([{"message": "An unexpected error occurred. Please include this ErrorId if you contact "
                                     f"support: {error_id} ({type(e).__name__})", "errorCode": "UNKNOWN_EXCEPTION"}],
                        status_code=500)


# -- auth ---------------------------------------------------------------------------------------

def _oauth_error(code: str, desc: str, status: int = 400) -> tuple[int, dict]:
    return status, {"error": code, "error_description": desc}


def _token(sb: Sandbox, request: Request, form: dict) -> tuple[int, dict]:
    org = sb.org
    grant = form.get("grant_type")
    cid, csecret = form.get("client_id"), form.get("client_secret")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            cid, _, csecret = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return _oauth_error("invalid_client", "invalid client credentials")
    with org.lock:
        users = {u["Username"].lower(): u for u in org.store.scan("User", include_deleted=False)}
    if grant == "client_credentials":
        if cid != CONSUMER_KEY:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if csecret != sb.consumer_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        return 200, sb.issue(org.integration_user_id)
    if grant == "password":
        if cid != CONSUMER_KEY or csecret != sb.consumer_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        u = users.get((form.get("username") or "").lower())
        pw = org.store.meta_get("integration_password")
        if u is None or u["Id"] != org.integration_user_id or form.get("password") not in (pw,):
            return _oauth_error("invalid_grant", "authentication failure")
        return 200, sb.issue(u["Id"], refresh=True)
    if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
        try:
            seg = form.get("assertion", "").split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
        except (IndexError, ValueError):
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != CONSUMER_KEY:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if float(claims.get("exp", 0)) < time.time():
            return _oauth_error("invalid_grant", "expired authorization code")
        u = users.get(str(claims.get("sub", "")).lower())
        if u is None or not u["IsActive"]:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        out = sb.issue(u["Id"])
        out.pop("refresh_token", None)
        return 200, out
    if grant == "refresh_token":
        user = sb.refresh_tokens.get(form.get("refresh_token", ""))
        if cid != CONSUMER_KEY or user is None:
            return _oauth_error("invalid_grant", "expired access/refresh token")
        return 200, sb.issue(user)
    return _oauth_error("unsupported_grant_type", "grant type not supported")


# -- admin --------------------------------------------------------------------------------------

def _admin(sb: Sandbox, method: str, what: str, body: bytes) -> Response:
    org = sb.org
    if what == "knobs":
        if method == "POST":
            try:
                changes = json.loads(body or b"{}")
            except ValueError:
                return JSONResponse({"error": "knobs: the body is not JSON"}, status_code=400)
            if not isinstance(changes, dict):
                return JSONResponse({"error": "knobs: send a JSON object"}, status_code=400)
            for k, v in changes.items():
                if not hasattr(org.settings, k):
                    return JSONResponse({"error": f"unknown knob {k}"}, status_code=400)
                kind = type(getattr(org.settings, k))
                setattr(org.settings, k, v.lower() in ("on", "true", "1") if kind is bool and isinstance(v, str)
                        else kind(v))
            org.sync_knobs()
            try:
                sb.drop_rules = parse_drop_rules(org.settings.drop_response)
            except ValueError as exc:
                org.settings.drop_response = ""
                sb.drop_rules = []
                return JSONResponse({"error": str(exc)}, status_code=400)
            if "limit_exceeded_on" in changes:  # counted again from when it is set
                try:
                    sb.limit_rules = parse_drop_rules(org.settings.limit_exceeded_on, "limit_exceeded_on")
                except ValueError as exc:
                    org.settings.limit_exceeded_on = ""
                    sb.limit_rules = []
                    return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(org.settings.as_dict())
    if what == "requests":
        with sb.log_lock:
            entries = list(sb.log)
        by_kind: dict[str, int] = {}
        for e in entries:
            if e["api"]:
                by_kind[e["kind"]] = by_kind.get(e["kind"], 0) + 1
        return JSONResponse({"total_api_calls": sum(by_kind.values()), "by_kind": by_kind, "requests": entries})
    if what == "faults":
        with org.fault_lock:
            return JSONResponse(dict(org.faults_injected))
    if what == "counts":
        with org.lock:
            return JSONResponse(org.store.counts())
    if what == "expire-sessions":
        sb.sessions.clear()
        return JSONResponse({"expired": True})
    if what == "health":
        return JSONResponse({"ok": True, "instance_url": sb.instance_url})
    return JSONResponse({"error": "not found"}, status_code=404)


# -- REST dispatch ------------------------------------------------------------------------------

_JSON_TOKENS = {list: "START_ARRAY", str: "VALUE_STRING", int: "VALUE_NUMBER_INT", float: "VALUE_NUMBER_FLOAT",
                bool: "VALUE_TRUE"}


def _json(body: bytes) -> Any:
    """The JSON body; an empty or unparsable one is a 400 ``JSON_PARSER_ERROR``, as on a real org."""
    if not body.strip():
        raise HttpError(400, "JSON_PARSER_ERROR", "The HTTP entity body is required, but this request has no entity body.")
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise HttpError(400, "JSON_PARSER_ERROR",
                        f"Unexpected character ('{e.doc[e.pos:e.pos + 1]}' (code {ord(e.doc[e.pos:e.pos + 1] or ' ')})): "
                        f"expected a valid value at [line:{e.lineno}, column:{e.colno}]") from None
    except ValueError:  # not UTF-8
        raise HttpError(400, "JSON_PARSER_ERROR", "Invalid UTF-8 start byte at [line:1, column:1]") from None


def _json_object(body: bytes, what: str = "SObject") -> dict:
    """A JSON body that must be an object (a record, a job, a payload)."""
    data = _json(body)
    if data is None:
        raise HttpError(400, "JSON_PARSER_ERROR", "The HTTP entity body is required, but this request has no entity body.")
    if not isinstance(data, dict):
        token = _JSON_TOKENS.get(type(data), "VALUE_NULL")
        raise HttpError(400, "JSON_PARSER_ERROR", f"Can not deserialize {what} out of {token} token at [line:1, column:1]")
    return data


def _obj(org: Org, name: str, user: str | None = None):
    obj = org.visible(name, user)
    if obj is None:
        raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
    return obj


def _dispatch(sb: Sandbox, request: Request, body: bytes, user: str) -> Response:
    path = request.url.path
    if path.startswith("/services/async/"):
        return _bulk_v1(sb, request, path.split("/services/async/", 1)[1].split("/")[1:], body)
    rest = path.split("/services/data/", 1)[1].strip("/")
    if not rest:
        versions = [MIN_API_VERSION + i for i in range(int(API_VERSION - MIN_API_VERSION) + 1)]
        return JSONResponse([{"label": RELEASES.get(v, f"API {v:.1f}"), "url": f"/services/data/v{v:.1f}",
                              "version": f"{v:.1f}"} for v in versions])
    parts = [unquote(p) for p in rest.split("/")]
    ver, parts = parts[0], parts[1:]
    if not ver.startswith("v"):
        raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
    m = request.method
    head = parts[0] if parts else ""
    params = request.query_params
    if head == "":
        return JSONResponse({k: f"/services/data/{ver}/{k}" for k in ("sobjects", "query", "queryAll", "limits",
                                                                     "tooling", "composite", "jobs")})
    if head == "sobjects":
        return _sobjects(sb, request, parts[1:], body, user)
    if head in ("query", "queryAll"):
        if len(parts) > 1:
            return _query_more(sb, parts[1])
        return _query(sb, params.get("q", ""), head == "queryAll", request, user)
    if head == "composite":
        return _composite(sb, m, parts[1:], body, user, params)
    if head == "limits":
        return _limits(sb, parts[1:], params, user)
    if head == "tooling":
        return _tooling(sb, m, parts[1:], body, params, user)
    if head == "jobs":
        return _bulk2(sb, m, parts[1:], body, user, params)
    raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")


def _nested_refs(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "attributes"}


def _single_result(res: dict) -> Response:
    if res["success"]:
        return JSONResponse({"id": res["id"], "success": True, "errors": []}, status_code=201)
    e = res["errors"][0]
    status = 404 if e["statusCode"] in ("NOT_FOUND",) else 400
    return JSONResponse([{"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}],
                        status_code=status)


def _multipart(request: Request, body: bytes) -> tuple[dict, bytes]:
    ctype = request.headers.get("content-type", "")
    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    entity, blob = None, None
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "entity_content":
            entity = _json_object(part.get_payload(decode=True) or b"")
        else:
            blob = part.get_payload(decode=True)
    if entity is None or blob is None:
        raise HttpError(400, "INVALID_MULTIPART_REQUEST", "Multipart request needs entity_content and a binary part")
    return entity, blob


def _sobjects(sb: Sandbox, request: Request, parts: list[str], body: bytes, user: str) -> Response:
    org = sb.org
    m = request.method
    if not parts:
        return JSONResponse(org.schema.describe_global(org.access(user)))
    obj = _obj(org, parts[0], user)
    if len(parts) == 1:
        if m == "GET":
            entry = next(e for e in org.schema.describe_global()["sobjects"] if e["name"] == obj.name)
            return JSONResponse({"objectDescribe": entry, "recentItems": []})
        if m == "POST":
            if request.headers.get("content-type", "").startswith("multipart/"):
                entity, blob = _multipart(request, body)
                field = "VersionData" if obj.name == "ContentVersion" else "Content" if obj.name == "ContentNote" else "Body"
                entity[field] = blob
                row = entity
            else:
                if len(body) > JSON_BLOB_LIMIT * 4 // 3 + 1024 * 1024 and obj.name == "ContentVersion":
                    raise HttpError(400, "JSON_PARSER_ERROR", "Maximum size of request reached. Maximum size of request is 52428800 bytes.")
                row = _json_object(body)
                vd = row.get("VersionData")
                if isinstance(vd, str) and len(vd) > JSON_BLOB_LIMIT:
                    raise HttpError(400, "STRING_TOO_LONG",
                                    "Version Data: data value too large: base64 body exceeds 37.5 MB; use multipart")
            return _single_result(org.write(obj.name, "insert", [_nested_refs(row)], user_id=user)[0])
        raise HttpError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{m}' not allowed. Allowed are HEAD,GET,POST")
    if parts[1] == "describe" and len(parts) == 2:
        return JSONResponse(org.describe(obj, user))
    if len(parts) == 2:
        rid = parts[1]
        if not ids.well_formed(rid) or rid[:3] != obj.key_prefix and not (obj.name == "ContentNote" and rid[:3] == "069"):
            raise HttpError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {rid}")
        rid = ids.normalize(rid)
        if m == "GET":
            with org.lock:
                got = org.store.fetch(obj.name, [rid]).get(rid)
            if got is None:
                raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
            if got[2]:
                raise HttpError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
            return JSONResponse(_render_record(org, obj, got[1], request.query_params.get("fields"), user))
        if m == "PATCH":
            row = _nested_refs(_json_object(body))
            row["Id"] = rid
            res = org.write(obj.name, "update", [row], user_id=user)[0]
            if res["success"]:
                return Response(status_code=204)
            e = res["errors"][0]
            status = 404 if e["statusCode"] in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY") and e["fields"] == ["Id"] else 400
            return JSONResponse([{"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}],
                                status_code=status)
        if m == "DELETE":
            res = org.delete([rid], user_id=user, sobject=obj.name)[0]
            if res["success"]:
                return Response(status_code=204)
            e = res["errors"][0]
            status = 404 if e["statusCode"] in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY") else 400
            return JSONResponse([{"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}],
                                status_code=status)
    if len(parts) == 3:
        f = obj.field(parts[1])
        if f is not None and not org.access(user).readable(obj, f):
            f = None  # hidden by field-level security
        if f is not None and (f["externalId"] or f["idLookup"]) and f["type"] != "id" or (f and f["name"] == "Id" and m == "PATCH"):
            return _by_external_id(sb, request, obj, f, parts[2], body, user)
        rid = ids.normalize(parts[1]) if ids.well_formed(parts[1]) else ""
        bf = obj.field(parts[2])
        if rid and bf and bf["type"] == "base64" and m == "GET":
            p = org.blob_path(rid)
            if not p.exists():
                raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
            return Response(p.read_bytes(), media_type="application/octetstream")
    raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")


def _render_record(org: Org, obj, rec: dict, fields: str | None, user: str | None = None) -> dict:
    acc = org.access(user)
    wanted = [obj.field(f.strip()) for f in fields.split(",")] if fields else list(obj.fields.values())
    out: dict[str, Any] = {"attributes": {"type": obj.name, "url": f"/services/data/{API}/sobjects/{obj.name}/{rec['Id']}"}}
    for f in wanted:
        if f is None or (acc is not None and not acc.readable(obj, f)):
            continue
        if f["type"] == "base64":
            out[f["name"]] = f"/services/data/{API}/sobjects/{obj.name}/{rec['Id']}/{f['name']}"
        elif f["type"] == "address":
            out[f["name"]] = compound_address(obj, f, rec)
        elif f["type"] != "location":
            out[f["name"]] = rec.get(f["name"])
    return out


def _by_external_id(sb: Sandbox, request: Request, obj, f: dict, value: str, body: bytes, user: str) -> Response:
    org = sb.org
    m = request.method
    if m == "GET":
        with org.lock:
            hits = org.store.lookup_keys(obj.name, f["name"], [org.key_value(f, value)]).get(org.key_value(f, value), [])
            recs = org.store.fetch(obj.name, hits)
        if not hits:
            raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
        if len(hits) > 1:
            return JSONResponse([f"/services/data/{API}/sobjects/{obj.name}/{h}" for h in hits], status_code=300)
        return JSONResponse(_render_record(org, obj, recs[hits[0]][1], request.query_params.get("fields"), user))
    if m == "PATCH":
        row = _nested_refs(_json_object(body))
        if f["name"] == "Id":
            row["Id"] = value if value.lower() != "null" else None
        else:
            if any(k.lower() == f["name"].lower() for k in row):
                raise HttpError(400, "INVALID_FIELD",
                                f"The value of the external ID field in the URL is specified in the body: {f['name']}")
            row[f["name"]] = value
        res = org.write(obj.name, "upsert", [row], user_id=user, ext_field=f["name"])[0]
        if not res["success"] and "_multiple" in res:
            return JSONResponse([f"/services/data/{API}/sobjects/{obj.name}/{h}" for h in res["_multiple"]],
                                status_code=300)
        if res["success"]:
            return JSONResponse({"id": res["id"], "success": True, "errors": [], "created": res["created"]},
                                status_code=201 if res["created"] else 200)
        return _single_result(res)
    raise HttpError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{m}' not allowed")


# -- query ----------------------------------------------------------------------------------------

def _page_size(request: Request) -> int:
    opt = request.headers.get("sforce-query-options", "")
    if "batchSize=" in opt:
        try:
            return max(200, min(2000, int(opt.split("batchSize=")[1].split(",")[0])))
        except ValueError:
            pass
    return PAGE


def _query(sb: Sandbox, soql: str, include_deleted: bool, request: Request, user: str) -> Response:
    runner = Runner(sb.org, soql, include_deleted=include_deleted, user_id=user)
    if runner.q.count is not None:
        n = runner.count_value()
        if runner.q.count == "":
            return JSONResponse({"totalSize": n, "done": True, "records": []})
        alias = runner.q.count_alias or "expr0"
        return JSONResponse({"totalSize": 1, "done": True,
                             "records": [{"attributes": {"type": "AggregateResult"}, alias: n}]})
    rows = runner.rows()
    return _page(sb, runner, rows, 0, _page_size(request))


#: A REST query cursor not read for this long is released (Salesforce: "QueryLocator objects expire
#: automatically after 15 minutes of inactivity"; since API 56.0 results stay for 2 days: the shorter
#: is the stricter).  A cursor whose last page was served is released at once.
CURSOR_IDLE_SECONDS = 15 * 60


def _page(sb: Sandbox, runner: Runner, rows: list[dict], start: int, size: int, loc: str | None = None) -> Response:
    """One page of a REST query's rows.  The cursor (``loc``) holds the rows until its last page is
    served or it goes idle, as a real org's server-side cursor; it never outlives them, so a paged-through
    query's rows are freed (before, every page opened a cursor of its own that held the whole result)."""
    part = rows[start:start + size]
    out: dict[str, Any] = {"totalSize": len(rows), "done": start + size >= len(rows),
                           "records": [runner.render(r) for r in part]}
    if out["done"]:
        if loc is not None:
            sb.cursors.pop(loc, None)
    else:
        if loc is None:
            _release_idle_cursors(sb)
            loc = sb.org.new_id("01g")
        sb.cursors[loc] = (runner, rows, size, time.monotonic())
        out["nextRecordsUrl"] = f"/services/data/{API}/query/{loc}-{start + size}"
    return JSONResponse(out)


def _release_idle_cursors(sb: Sandbox) -> None:
    now = time.monotonic()
    for loc, hit in list(sb.cursors.items()):
        if now - hit[3] > CURSOR_IDLE_SECONDS:
            sb.cursors.pop(loc, None)


def _query_more(sb: Sandbox, token: str) -> Response:
    loc, _, start = token.rpartition("-")
    hit = sb.cursors.get(loc)
    if hit is None or not start.isdigit():
        raise HttpError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    runner, rows, size, _ = hit
    return _page(sb, runner, rows, int(start), int(size), loc)


# -- composite ------------------------------------------------------------------------------------

#: What ``POST /composite`` takes (Salesforce): at most 25 subrequests, of which at most 5 sObject
#: Collections or queries.  The sandbox runs sObject Collections subrequests (POST and PATCH
#: ``/services/data/vXX.X/composite/sobjects``) with ``allOrNone`` false, in order; another kind of
#: subrequest is refused (400) rather than imitated.
COMPOSITE_MAX_SUBREQUESTS = 25
COMPOSITE_MAX_COLLECTIONS = 5


def _composite_request(sb: Sandbox, body: bytes, user: str) -> Response:
    payload = _json_object(body, "CompositeRequest")
    subs = payload.get("compositeRequest")
    if not isinstance(subs, list) or not subs or any(not isinstance(r, dict) for r in subs):
        raise HttpError(400, "JSON_PARSER_ERROR", "compositeRequest: a non-empty list of subrequests is required")
    if len(subs) > COMPOSITE_MAX_SUBREQUESTS:
        raise HttpError(400, "INVALID_BATCH_REQUEST",
                        f"Composite request can contain at most {COMPOSITE_MAX_SUBREQUESTS} subrequests")
    if payload.get("allOrNone", False) is not False:
        raise HttpError(400, "INVALID_BATCH_REQUEST", "the sandbox runs composite requests with allOrNone false only")
    collections = [r for r in subs if "/composite/sobjects" in str(r.get("url", ""))]
    if len(collections) > COMPOSITE_MAX_COLLECTIONS:
        raise HttpError(400, "INVALID_BATCH_REQUEST", f"Composite request can contain at most "
                        f"{COMPOSITE_MAX_COLLECTIONS} sObject Collections or query subrequests")
    refs = [r.get("referenceId") for r in subs]
    if any(not isinstance(x, str) or not x for x in refs) or len(set(refs)) != len(refs):
        raise HttpError(400, "INVALID_BATCH_REQUEST", "every subrequest needs its own referenceId")
    answers = []
    for r in subs:
        method, url = str(r.get("method", "")).upper(), str(r.get("url", ""))
        rest = url.split("/services/data/", 1)[1].strip("/").split("/") if "/services/data/" in url else []
        try:
            if len(rest) != 3 or not rest[0].startswith("v") or rest[1:] != ["composite", "sobjects"] \
                    or method not in ("POST", "PATCH"):
                raise HttpError(400, "INVALID_BATCH_REQUEST",
                                f"the sandbox does not run this composite subrequest: {method} {url}")
            resp = _composite(sb, method, ["sobjects"], json.dumps(r.get("body")).encode(), user, {})
            status, got = resp.status_code, json.loads(resp.body)
        except HttpError as e:
            status, got = e.status, json.loads(e.response().body)
        except FieldError as e:
            err = _from_field_error(e)
            status, got = err.status, json.loads(err.response().body)
        answers.append({"body": got, "httpHeaders": {}, "httpStatusCode": status, "referenceId": r["referenceId"]})
    return JSONResponse({"compositeResponse": answers})


def _composite(sb: Sandbox, m: str, parts: list[str], body: bytes, user: str, params) -> Response:
    org = sb.org
    if not parts and m == "POST":
        return _composite_request(sb, body, user)
    if not parts or parts[0] != "sobjects":
        raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
    if m == "DELETE":
        idlist = [i for i in params.get("ids", "").split(",") if i]
        if not idlist or len(idlist) > 200:
            raise HttpError(400, "INVALID_FIELD", "ids: between 1 and 200 ids are required")
        res = org.delete(idlist, user_id=user, all_or_none=params.get("allOrNone", "false").lower() == "true")
        return JSONResponse([_collection_item(r) for r in res])
    payload = _json_object(body, "SObjectCollection")
    records = payload.get("records", [])
    aon = payload.get("allOrNone", False)
    if not isinstance(records, list) or not isinstance(aon, bool):
        raise HttpError(400, "JSON_PARSER_ERROR", "Can not deserialize the collection: records must be a list and "
                        "allOrNone a boolean at [line:1, column:1]")
    if any(not isinstance(r, dict) for r in records):
        raise HttpError(400, "JSON_PARSER_ERROR", "Can not deserialize SObject out of a non-object value in records "
                        "at [line:1, column:1]")
    if not records or len(records) > 200:
        raise HttpError(400, "EXCEEDED_ID_LIMIT" if records else "INVALID_FIELD",
                        "Collections accept between 1 and 200 records")
    if len(parts) == 3 and m == "PATCH":
        obj = _obj(org, parts[1], user)
        res = org.write(obj.name, "upsert", [_nested_refs(r) for r in records], user_id=user, ext_field=parts[2],
                        all_or_none=aon)
        return JSONResponse([_collection_item(r, upsert=True) for r in res])
    op = "insert" if m == "POST" else "update" if m == "PATCH" else None
    if op is None:
        raise HttpError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{m}' not allowed")
    results: list[dict | None] = [None] * len(records)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        attrs = r.get("attributes")
        typ = attrs.get("type") if isinstance(attrs, dict) else None
        if not isinstance(typ, str) or org.visible(typ, user) is None:
            results[i] = {"success": False, "errors": [{"statusCode": "INVALID_TYPE",
                                                         "message": "sObject type is missing or invalid", "fields": []}]}
            continue
        groups.setdefault(org.schema.get(typ).name, []).append(i)
    if aon and any(r is not None for r in results):
        return JSONResponse([_collection_item(r) if r else _collection_item({"success": False, "errors": [{
            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all "
            "records were valid and the request was using AllOrNone header", "fields": []}]}) for r in results])
    for name, idxs in groups.items():
        rows = []
        for i in idxs:
            row = _nested_refs(records[i])
            if op == "update":
                row = {("Id" if k.lower() == "id" else k): v for k, v in row.items()}
            rows.append(row)
        res = org.write(name, op, rows, user_id=user, all_or_none=aon)
        for i, r in zip(idxs, res, strict=True):
            results[i] = r
    return JSONResponse([_collection_item(r) for r in results])


def _collection_item(r: dict, upsert: bool = False) -> dict:
    if r["success"]:
        out = {"id": r["id"], "success": True, "errors": []}
        if upsert:
            out["created"] = bool(r.get("created"))
        return out
    out = {"success": False, "errors": r["errors"]}
    if r.get("id"):
        out = {"id": r["id"], **out}
    return out


# -- limits ---------------------------------------------------------------------------------------

def _limits(sb: Sandbox, parts: list[str], params, user: str) -> Response:
    org = sb.org
    s = org.settings
    if parts and parts[0] == "recordCount":
        wanted = [x for x in params.get("sObjects", "").split(",") if x]
        with org.lock:
            counts = org.store.counts()
        names = wanted or sorted(counts)
        return JSONResponse({"sObjects": [{"count": counts.get(org.schema.get(n).name, 0), "name": org.schema.get(n).name}
                                          for n in names if org.schema.get(n)]})
    data_max, file_max = s.data_storage_mb, s.file_storage_mb
    data_used = org.data_storage_used() // (1024 * 1024)
    file_used = org.file_bytes // (1024 * 1024)
    return JSONResponse({
        "DailyApiRequests": {"Max": s.api_daily_limit, "Remaining": max(0, s.api_daily_limit - org.api_used)},
        "DailyBulkApiBatches": {"Max": s.bulk_daily_batches,
                                "Remaining": max(0, s.bulk_daily_batches - org.bulk_batches_used)},
        "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": max(0, 10000 - sum(
            1 for j in list(sb.bulk.jobs.values()) if j.get("jobType") == "V2Query"))},
        "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
        "DataStorageMB": {"Max": data_max, "Remaining": max(0, data_max - data_used)},
        "FileStorageMB": {"Max": file_max, "Remaining": max(0, file_max - file_used)},
        "SingleEmail": {"Max": 5000, "Remaining": 5000},
    })


# -- tooling --------------------------------------------------------------------------------------

def _tooling(sb: Sandbox, m: str, parts: list[str], body: bytes, params, user: str) -> Response:
    org = sb.org
    if parts and parts[0] == "query":
        soql = params.get("q", "")
        kind = soql.split(" FROM ", 1)[-1].split()[0] if " from " in soql.lower() else ""
        kind = next((k for k in ("CustomField", "CustomObject", "RecordType") if k.lower() == kind.lower()), None)
        if kind is None:
            raise HttpError(400, "INVALID_TYPE", "sObject type is not supported by the sandbox tooling API")
        if kind == "RecordType":
            rows = [dict(r) for r in org.record_types()]
        else:
            rows = org.schema_rows(kind)
        recs = run_tooling(rows, soql, kind)
        return JSONResponse({"size": len(recs), "totalSize": len(recs), "done": True, "queryLocator": None,
                             "entityTypeName": kind, "records": recs})
    if len(parts) == 2 and parts[0] == "sobjects" and m == "POST":
        payload = _json_object(body)
        full, md = payload.get("FullName"), payload.get("Metadata") or {}
        if not full:
            raise HttpError(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [FullName]", ["FullName"])
        if not isinstance(full, str) or not isinstance(md, dict):
            raise HttpError(400, "JSON_PARSER_ERROR", "Can not deserialize the Metadata: FullName must be a string "
                            "and Metadata an object at [line:1, column:1]")
        if not org.access(user).has("PermissionsCustomizeApplication"):
            raise HttpError(400, "INSUFFICIENT_ACCESS_OR_READONLY",
                            "insufficient access rights on object id: Customize Application is required")
        try:
            if parts[1] == "CustomObject":
                new_id = org.create_custom_object(full, md)
            elif parts[1] == "CustomField":
                new_id = org.create_custom_field(full, md)
            elif parts[1] == "RecordType":
                new_id = org.create_record_type(full, md)
            else:
                raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
        except FieldError as e:
            raise HttpError(400, e.code, e.message, e.fields) from None
        return JSONResponse({"id": new_id, "success": True, "errors": [], "warnings": [], "infos": []},
                            status_code=201)
    raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")


# -- Bulk 2.0 -------------------------------------------------------------------------------------

def _job(sb: Sandbox, jid: str, job_type: str) -> dict:
    job = sb.bulk.jobs.get(jid)
    if job is None or job.get("jobType") != job_type:
        raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
    return job


def _bulk2(sb: Sandbox, m: str, parts: list[str], body: bytes, user: str, params) -> Response:
    bulk = sb.bulk
    if not parts or parts[0] not in ("ingest", "query"):
        raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")
    kind = parts[0]
    jtype = "V2Ingest" if kind == "ingest" else "V2Query"
    if len(parts) == 1:
        if m == "POST":
            payload = _json_object(body, "JobInfo")
            try:
                job = bulk.create_ingest(payload, user) if kind == "ingest" else bulk.create_query(payload, user)
            except FieldError as e:
                raise HttpError(400, e.code, e.message) from None
            return JSONResponse(bulk.public(job))
        jobs = [bulk.public(j) for j in bulk.jobs.values() if j.get("jobType") == jtype]
        return JSONResponse({"done": True, "records": jobs, "nextRecordsUrl": None})
    job = _job(sb, parts[1], jtype)
    if len(parts) == 2:
        if m == "GET":
            return JSONResponse(bulk.public(job))
        if m == "PATCH":
            state = _json_object(body, "JobInfo").get("state")
            try:
                changed = bulk.set_state(job, state) if kind == "ingest" else bulk.set_query_state(job, state)
                return JSONResponse(bulk.public(changed))
            except FieldError as e:
                raise HttpError(400, "INVALIDJOBSTATE", e.message) from None
        if m == "DELETE":
            if job["state"] not in ("UploadComplete", "JobComplete", "Aborted", "Failed"):
                raise HttpError(400, "INVALIDJOBSTATE", "Job must be closed before deletion")
            bulk.jobs.pop(job["id"], None)
            return Response(status_code=204)
    sub = parts[2]
    if kind == "ingest" and sub == "batches" and m == "PUT":
        try:
            bulk.upload(job, body)
        except FieldError as e:
            raise HttpError(400, e.code, e.message) from None
        return Response(status_code=201)
    if kind == "ingest" and sub.lower() in ("successfulresults", "failedresults", "unprocessedrecords") and m == "GET":
        if sub.lower() != "unprocessedrecords" and job["state"] not in ("JobComplete", "Failed", "Aborted"):
            raise HttpError(400, "INVALIDJOBSTATE", "Job is not complete")
        return Response(bulk.result_file(job, sub), media_type="text/csv")
    if kind == "query" and sub == "results" and m == "GET":
        if job["state"] != "JobComplete":
            raise HttpError(400, "INVALIDJOBSTATE", f"Job is in {job['state']} state: results are available once "
                            "it is JobComplete")
        mr, loc = params.get("maxRecords"), params.get("locator")
        if mr is not None and not (mr.isdigit() and int(mr) > 0):
            raise HttpError(400, "INVALIDMAXRECORDS", f"maxRecords must be a positive integer: {mr}")
        try:
            text, n, nxt = bulk.query_page(job, loc, int(mr) if mr else None)
        except FieldError as e:
            raise HttpError(400, e.code, e.message) from None
        return Response(text, media_type="text/csv", headers={"Sforce-NumberOfRecords": str(n), "Sforce-Locator": nxt})
    raise HttpError(404, "NOT_FOUND", "The requested resource does not exist")


# -- Bulk v1 --------------------------------------------------------------------------------------

def _bulk_v1(sb: Sandbox, request: Request, parts: list[str], body: bytes) -> Response:
    bulk = sb.bulk
    m = request.method
    user = sb.session_user(request)

    def err(msg: str, code: str = "InvalidJob", status: int = 400) -> Response:
        return JSONResponse({"exceptionCode": code, "exceptionMessage": msg}, status_code=status)

    def body_json(expect: type) -> Any:
        try:
            data = _json(body)
        except HttpError as e:
            return err(e.message, "ClientInputError")
        if not isinstance(data, expect):
            return err(f"Expected a JSON {'array' if expect is list else 'object'}", "ClientInputError")
        return data

    if parts == ["job"] and m == "POST":
        info = body_json(dict)
        if isinstance(info, Response):
            return info
        try:
            job = bulk.v1_create(info, user)
        except FieldError as e:
            return err(e.message, e.code)
        return JSONResponse(bulk.public(job), status_code=201)
    if len(parts) < 2 or parts[0] != "job":
        return err("Unknown resource", "InvalidUrl", 404)
    job = bulk.jobs.get(parts[1])
    if job is None or job.get("jobType"):
        return err("Unable to find job", "InvalidJob", 400)
    if len(parts) == 2:
        if m == "POST":
            info = body_json(dict)
            if isinstance(info, Response):
                return info
            state = info.get("state")
            if state in ("Closed", "Aborted"):
                job["state"] = state
                bulk.save(job)
        return JSONResponse(bulk.public(job))
    if parts[2] == "batch":
        if len(parts) == 3 and m == "POST":
            records = body_json(list)
            if isinstance(records, Response):
                return records
            if len(records) > 10000:
                return err("Batch must be a JSON array of at most 10,000 records", "InvalidBatch")
            try:
                batch = bulk.v1_batch(job, records)
            except FieldError as e:
                return err(e.message, e.code)
            return JSONResponse(batch, status_code=201)
        if len(parts) == 3:
            return JSONResponse({"batchInfo": job["_batches"]})
        batch = next((b for b in job["_batches"] if b["id"] == parts[3]), None)
        if batch is None:
            return err("Unable to find batch", "InvalidBatch")
        if len(parts) == 4:
            return JSONResponse(batch)
        if parts[4] == "result":
            return JSONResponse(bulk.v1_result(job, batch["id"]))
    return err("Unknown resource", "InvalidUrl", 404)
