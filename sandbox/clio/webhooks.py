"""Clio webhooks: the ``/webhooks`` endpoints and the deliveries, as the official spec describes them.

Ground truth: the "Webhooks" section of clio-cli==1.0.5's ``openapi.yaml`` and
``/work/shared/reference/clio-api-v4.md`` §5.18.

* ``POST /webhooks.json`` needs ``url`` (``https`` only, else 422), ``model`` (the string identifier
  or its id 1-10) and ``fields`` (at most 1000 characters, validated like any ``fields``);
  ``events`` must be valid for the model (``clio_payments_payment`` has no ``deleted``; the
  ``matter_*`` events are matters' only). ``expires_at`` defaults to 3 days after creation and may
  be at most 31 days ahead (PATCH it to extend). A new webhook is ``pending`` with a fresh
  ``shared_secret``.
* Right after creation (and whenever the URL changes) a handshake POST carries the secret in
  ``X-Hook-Secret``; a 200 echoing the same header enables the webhook. Otherwise the app calls
  ``PUT /webhooks/{id}/activate`` with the header (the spec's "delayed" option).
* Every create/update/delete on a watched model sends ``{"data": {<fields>}, "meta": {"event",
  "webhook_id"}}`` (a deletion: ``{id, etag}``) signed with ``X-Hook-Signature`` = hex HMAC-SHA256
  of the raw body keyed with the shared secret. ``updated`` fires only when a watched field changed,
  except the first delivery for a record. Matters also fire ``matter_opened/pended/closed``.
* 2xx, 3xx and 410 are success (410 suspends the webhook); anything else (or no answer) is retried
  up to ``webhook_max_retries`` times, waiting ``webhook_retry_base`` seconds doubled each time
  (compressed time; Clio's own delays are longer). Expired or suspended webhooks deliver nothing.

Fault knob ``webhook_fault`` (deterministic, by count over first attempts of deliveries):
``"drop:N"`` never sends every Nth delivery, ``"dup:N"`` sends every Nth one twice; both may be
given, comma separated. The deliveries log (``GET /_admin/webhook_deliveries``) says what happened
to each one. Webhooks seeded with the firm (a pre-existing integration, receiver elsewhere) are
listed but never delivered: only webhooks registered through this API send requests.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from sandbox.clio import reads
from sandbox.clio.fields import FieldError, compile_plan
from sandbox.clio.schema import model
from sandbox.clio.store import iso, parse_ts
from sandbox.clio.writes import WriteError

log = logging.getLogger("sandbox.clio.webhooks")

#: The spec's "Supported Models" table: string identifier -> id.
MODEL_IDS = {"matter": 1, "activity": 2, "bill": 3, "calendar_entry": 4, "communication": 5, "contact": 6,
             "task": 7, "document": 8, "folder": 9, "clio_payments_payment": 10}
#: Model -> the stored kind whose writes it watches.
MODEL_KINDS = {"matter": "matters", "activity": "activities", "bill": "bills", "calendar_entry": "calendar_entries",
               "communication": "communications", "contact": "contacts", "task": "tasks", "document": "documents",
               "folder": "folders", "clio_payments_payment": "clio_payments/payments"}
KIND_MODELS = {k: m for m, k in MODEL_KINDS.items()}
BASE_EVENTS = ("created", "updated", "deleted")
MATTER_EVENTS = {"Open": "matter_opened", "Pending": "matter_pended", "Closed": "matter_closed"}
MAX_FIELDS = 1000
DEFAULT_TTL = 3 * 86400
MAX_TTL = 31 * 86400
SCHEMA = "Webhook"


def events_for(model_name: str) -> tuple[str, ...]:
    if model_name == "clio_payments_payment":
        return ("created", "updated")
    if model_name == "matter":
        return (*BASE_EVENTS, *MATTER_EVENTS.values())
    return BASE_EVENTS


def sign(secret: str, body: bytes) -> str:
    """``X-Hook-Signature``: hex HMAC-SHA256 of the raw body keyed with the shared secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse_fault(spec: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        kind, _, n = part.partition(":")
        if kind not in ("drop", "dup") or not n.isdigit() or int(n) < 1:
            raise ValueError(f"webhook_fault: expected 'drop:N' and/or 'dup:N' (N >= 1), got {part!r}")
        out[kind] = int(n)
    return out


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    webhook_id: int = field(compare=False)
    kind: str = field(compare=False)  # handshake | delivery
    body: bytes = field(compare=False, default=b"")
    event: str = field(compare=False, default="")
    record_id: Any = field(compare=False, default=None)
    attempt: int = field(compare=False, default=0)
    number: int = field(compare=False, default=0)


class Webhooks:
    """Registration, handshake and delivery of the sandbox's webhooks (one delivery thread)."""

    def __init__(self, sb: Any) -> None:
        self.sb = sb
        self.store = sb.store
        self.knobs = sb.knobs
        self.deliveries: list[dict] = []
        self._queue: list[_Job] = []
        self._seq = 0
        self._count = 0
        self._seen: set[tuple[int, str]] = set()
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="clio-webhooks", daemon=True)
        self._thread.start()
        sb.writer.listeners.append(self.on_change)

    # ------------------------------------------------------------------ registration

    def _validate(self, data: dict, current: dict | None) -> dict:
        out: dict = {}
        unknown = sorted(set(data) - {"url", "fields", "model", "events", "expires_at"})
        if unknown:
            raise WriteError(422, f"webhooks: unknown or read-only field(s) {unknown}")
        if current is None:
            missing = [k for k in ("url", "model", "fields") if data.get(k) in (None, "")]
            if missing:
                raise WriteError(422, f"webhooks: {', '.join(missing)} can't be blank")
        if "model" in data:
            m = data["model"]
            if isinstance(m, int) or (isinstance(m, str) and m.isdigit()):
                m = next((k for k, v in MODEL_IDS.items() if v == int(m)), None)
            if m not in MODEL_IDS:
                raise WriteError(422, f"webhooks: model {data['model']!r} is not one of {sorted(MODEL_IDS)} or 1-10")
            out["model"] = m
        mdl = out.get("model") or (current or {}).get("model")
        if "url" in data:
            url = data["url"]
            if not isinstance(url, str) or not url.lower().startswith("https://"):
                raise WriteError(422, "webhooks: url must use the https scheme")
            out["url"] = url
        if "fields" in data:
            flds = data["fields"]
            if not isinstance(flds, str) or len(flds) > MAX_FIELDS:
                raise WriteError(422, f"webhooks: fields must be a string of at most {MAX_FIELDS} characters")
            try:
                compile_plan(model().operations[MODEL_KINDS[mdl]].schema, flds)
            except (FieldError, KeyError) as exc:
                raise WriteError(422, f"webhooks: fields: {exc}") from None
            out["fields"] = flds
        if "events" in data or current is None:
            events = data.get("events") or list(events_for(mdl))
            allowed = events_for(mdl)
            if not isinstance(events, list) or any(e not in allowed for e in events):
                raise WriteError(422, f"webhooks: events for {mdl} must be among {list(allowed)}, got {events!r}")
            out["events"] = list(dict.fromkeys(events))
        now = time.time()
        if "expires_at" in data or current is None:
            raw = data.get("expires_at")
            try:
                exp = parse_ts(raw) if raw else now + DEFAULT_TTL
            except (ValueError, AttributeError):
                raise WriteError(422, f"webhooks: expires_at {raw!r} is not an ISO-8601 timestamp") from None
            if exp <= now:
                raise WriteError(422, "webhooks: expires_at must be in the future")
            if exp > now + MAX_TTL + 1:
                raise WriteError(422, "webhooks: expires_at can be at most 31 days from now")
            out["expires_at"] = _iso_utc(exp)
            out["_expires_ts"] = exp
        return out

    def create(self, data: dict) -> dict:
        values = self._validate(data, None)
        with self.store.lock:
            wid = max(self.store.max_id("webhooks"), int(self.store.meta("seq:webhooks") or 0)) + 1
            self.store.set_meta("seq:webhooks", str(wid))  # ids are never reused, even after a DELETE
            now = time.time()
            users = self.store.scan_ids("users", limit=1)
            user = self.store.get_ref("users", users[0]) if users else None
            rec = {"id": wid, "_created_ts": now, "_updated_ts": now, "created_at": iso(now), "updated_at": iso(now),
                   "status": "pending", "shared_secret": secrets.token_hex(32), "user": user,
                   "_registered": True, **values}
            rec["etag"] = _etag(rec)
            self.store.save("webhooks", rec)
        self._enqueue(_Job(time.time(), 0, wid, "handshake"))
        return rec

    def update(self, wid: int, data: dict) -> dict:
        with self.store.lock:
            rec = self._get(wid)
            values = self._validate(data, rec)
            url_changed = "url" in values and values["url"] != rec.get("url")
            rec.update(values)
            if url_changed:
                rec["status"] = "pending"
            now = max(time.time(), rec["_updated_ts"] + 1e-3)
            rec["_updated_ts"], rec["updated_at"] = now, iso(now)
            rec["etag"] = _etag(rec)
            self.store.save("webhooks", rec)
        if url_changed:
            self._enqueue(_Job(time.time(), 0, wid, "handshake"))
        return rec

    def delete(self, wid: int) -> None:
        self._get(wid)
        self.store.delete("webhooks", wid)

    def activate(self, wid: int, secret: str | None) -> dict:
        with self.store.lock:
            rec = self._get(wid)
            if not secret or not hmac.compare_digest(secret, rec.get("shared_secret") or ""):
                raise WriteError(403, f"webhooks {wid}: X-Hook-Secret does not match")
            rec["status"] = "enabled"
            rec["etag"] = _etag(rec)
            self.store.save("webhooks", rec)
        return rec

    def _get(self, wid: int) -> dict:
        rec = self.store.get("webhooks", wid)
        if rec is None:
            raise reads.NotFound(f"webhooks {wid} not found")
        return rec

    def body(self, rec: dict, params: list[tuple[str, str]]) -> dict:
        return reads.show_body(self.store, model().operations["webhooks"], rec, params, False)

    # ------------------------------------------------------------------ events

    def on_change(self, kind: str, event: str, before: dict | None, after: dict) -> None:
        """Called by the writer after each create/update/delete of a record."""
        mdl = KIND_MODELS.get(kind)
        if mdl is None:
            return
        now = time.time()
        for hook in self.store.iter_kind("webhooks"):
            if (hook.get("model") != mdl or hook.get("status") != "enabled" or not hook.get("_registered")
                    or float(hook.get("_expires_ts") or 0) <= now):
                continue
            events = set(hook.get("events") or ())
            fired = []
            if event == "deleted" and "deleted" in events:
                fired.append(("deleted", {"id": after["id"], "etag": after.get("etag")}))
            elif event in ("created", "updated"):
                payload = self._project(kind, after, hook["fields"])
                if event == "created" and "created" in events:
                    fired.append(("created", payload))
                if event == "updated" and "updated" in events:
                    first = (hook["id"], str(after["id"])) not in self._seen
                    if first or payload != self._project(kind, before or {}, hook["fields"]):
                        fired.append(("updated", payload))
                if mdl == "matter" and (before or {}).get("status") != after.get("status"):
                    name = MATTER_EVENTS.get(str(after.get("status")))
                    if name in events:
                        fired.append((name, payload))
            for name, data in fired:
                self._seen.add((hook["id"], str(after["id"])))
                body = json.dumps({"data": data, "meta": {"event": name, "webhook_id": hook["id"]}},
                                  separators=(",", ":")).encode()
                with self._cv:
                    self._count += 1
                    number = self._count
                self._enqueue(_Job(now, 0, hook["id"], "delivery", body, name, after["id"], 0, number))

    def _project(self, kind: str, rec: dict, flds: str) -> dict:
        if not rec:
            return {}
        op = model().operations[kind]
        return reads.show_body(self.store, op, copy.deepcopy(rec), [("fields", flds)], False)["data"]

    # ------------------------------------------------------------------ delivery thread

    def _enqueue(self, job: _Job) -> None:
        with self._cv:
            self._seq += 1
            job.seq = self._seq
            heapq.heappush(self._queue, job)
            self._cv.notify()

    def pending(self) -> int:
        with self._cv:
            return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue or self._queue[0].due > time.time():
                    self._cv.wait(None if not self._queue else max(0.0, self._queue[0].due - time.time()))
                job = heapq.heappop(self._queue)
            try:
                self._handle(job)
            except Exception:  # the thread must survive any bad job
                log.exception("webhook job failed")

    def _post(self, url: str, body: bytes, headers: dict) -> tuple[int | None, Any]:
        verify = self.knobs.webhook_ca_bundle or True
        try:
            r = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers},
                              timeout=self.knobs.webhook_timeout, verify=verify, allow_redirects=False)
            return r.status_code, r.headers
        except requests.RequestException as exc:
            log.info("webhook POST to %s failed: %s", url.split("?")[0], type(exc).__name__)
            return None, {}

    def _handle(self, job: _Job) -> None:
        hook = self.store.get("webhooks", job.webhook_id)
        entry = {"webhook_id": job.webhook_id, "kind": job.kind, "event": job.event, "id": job.record_id,
                 "attempt": job.attempt, "number": job.number, "time": round(time.time(), 3)}
        if hook is None:
            self.deliveries.append(entry | {"outcome": "webhook deleted"})
            return
        if job.kind == "handshake":
            secret = hook["shared_secret"]
            status, headers = self._post(hook["url"], json.dumps({"webhook_id": hook["id"]}).encode(),
                                         {"X-Hook-Secret": secret})
            ok = status == 200 and hmac.compare_digest(headers.get("X-Hook-Secret", ""), secret)
            if ok:
                self.activate(hook["id"], secret)
            self.deliveries.append(entry | {"status": status, "outcome": "enabled" if ok else "still pending"})
            return
        if float(hook.get("_expires_ts") or 0) <= time.time() or hook.get("status") != "enabled":
            self.deliveries.append(entry | {"outcome": "not sent: webhook " + (
                "expired" if hook.get("status") == "enabled" else str(hook.get("status")))})
            return
        fault = parse_fault(self.knobs.webhook_fault)
        if job.attempt == 0 and fault.get("drop") and job.number % fault["drop"] == 0:
            self.deliveries.append(entry | {"outcome": "dropped (fault knob)"})
            return
        sig = {"X-Hook-Signature": sign(hook["shared_secret"], job.body)}
        status, _ = self._post(hook["url"], job.body, sig)
        ok = status is not None and (200 <= status < 400 or status == 410)
        if status == 410:
            with self.store.lock:
                hook["status"] = "suspended"
                self.store.save("webhooks", hook)
        if ok:
            self.deliveries.append(entry | {"status": status, "outcome": "delivered"})
            if job.attempt == 0 and fault.get("dup") and job.number % fault["dup"] == 0:
                status2, _ = self._post(hook["url"], job.body, sig)
                self.deliveries.append(entry | {"status": status2, "outcome": "duplicate (fault knob)"})
            return
        if job.attempt >= self.knobs.webhook_max_retries:
            self.deliveries.append(entry | {"status": status, "outcome": "failed, no retries left"})
            return
        delay = self.knobs.webhook_retry_base * 2 ** job.attempt
        self.deliveries.append(entry | {"status": status, "outcome": f"failed, retry in {delay:g} s"})
        self._enqueue(_Job(time.time() + delay, 0, job.webhook_id, "delivery", job.body, job.event, job.record_id,
                           job.attempt + 1, job.number))


def _iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat()


def _etag(rec: dict) -> str:
    body = json.dumps({k: v for k, v in rec.items() if k != "etag"}, sort_keys=True, default=str)
    return '"' + hashlib.md5(body.encode(), usedforsecurity=False).hexdigest() + '"'


async def handle(hooks: Webhooks, request: Any, parts: list[str], method: str, params: list, headers: dict) -> Any:
    """``/webhooks.json`` writes, ``/webhooks/{id}.json`` PATCH/DELETE and ``PUT /webhooks/{id}/activate``."""
    from fastapi.responses import Response

    from sandbox.clio.app import _json

    field_params = [(k, v) for k, v in params if k == "fields"]
    if len(parts) == 3 and parts[2] == "activate":
        if method != "PUT":
            raise WriteError(405, f"{method} is not allowed on /api/v4/webhooks/{{id}}/activate")
        rec = hooks.activate(reads.record_id(parts[1], "webhooks"), request.headers.get("x-hook-secret"))
        return _json(hooks.body(rec, field_params), headers)
    if len(parts) == 1 and method == "POST":
        rec = hooks.create(await _data(request))
        return _json(hooks.body(rec, field_params), headers | {"ETag": rec["etag"]}, 201)
    if len(parts) == 2 and method in ("PATCH", "DELETE"):
        wid = reads.record_id(parts[1], "webhooks")
        if method == "DELETE":
            hooks.delete(wid)
            return Response(status_code=204, headers=headers)
        rec = hooks.update(wid, await _data(request))
        return _json(hooks.body(rec, field_params), headers | {"ETag": rec["etag"]})
    raise WriteError(405, f"{method} is not allowed on /api/v4/{'/'.join(parts)}")


async def _data(request: Any) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        raise WriteError(400, "webhooks: request body is not JSON") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise WriteError(422, 'webhooks: body must be {"data": {...}}')
    return data
