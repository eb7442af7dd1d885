"""Clio webhook deliveries in staging: signature check, what is kept of a delivery, and reading it back.

Layout under ``<migration root>/webhooks/``:

* ``subscriptions.json``: per model the registered webhook (id, url, events, fields, status,
  ``expires_at``), written by the migration (no secret in it);
* ``secrets/<model>.json``: ``{"secrets": [current, previous...]}``, the shared secrets that sign
  deliveries (a previous one stays valid while a renewal or rotation settles);
* ``events/<model>/<received ns>-<digest>.json``: one small file per accepted delivery, holding
  only ``id``, ``event``, ``webhook_id``, ``received_at`` and the body's digest: nothing else in a
  delivery is trusted or kept (the delta reads the records themselves from the API);
* ``seen/<model>/<digest>``: a marker per accepted body, so a retried or duplicated delivery is
  stored once;
* ``health/<model>.json``: the last accepted delivery (time, event), for the migration summary.

Pure logic, no Airflow: the receiver (an Airflow plugin app) and the delta both use it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from clio2sf import staging

#: Migrated Clio object (catalog name) → Clio webhook model. Objects missing here have no webhook.
OBJECT_MODELS: dict[str, str] = {
    "matters": "matter", "contacts": "contact", "activities": "activity", "bills": "bill",
    "calendar_entries": "calendar_entry", "communications": "communication", "tasks": "task",
    "documents": "document",
}
MODEL_OBJECTS = {m: o for o, m in OBJECT_MODELS.items()}
#: Every model Clio delivers (the spec's table), and the events each one has.
ALL_MODELS = ("matter", "activity", "bill", "calendar_entry", "communication", "contact", "task", "document",
              "folder", "clio_payments_payment")
MATTER_EVENTS = ("matter_opened", "matter_pended", "matter_closed")
WANTED_EVENTS = ("created", "updated", "deleted")
#: What the migration asks Clio to put in each delivery: ids and change markers only.
DELIVERY_FIELDS = "id,etag,updated_at"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def events_of(model: str) -> tuple[str, ...]:
    """The events Clio offers for ``model`` (payments have no ``deleted``)."""
    if model == "clio_payments_payment":
        return ("created", "updated")
    return WANTED_EVENTS + (MATTER_EVENTS if model == "matter" else ())


class DeliveryError(ValueError):
    """A signed delivery whose body is not a Clio webhook payload."""


def safe_name(value: str, what: str) -> str:
    """A path segment from a URL (firm, migration id): no traversal, no separators."""
    if not _NAME.match(value or "") or value in (".", ".."):
        raise ValueError(f"{what} {value!r} is not a valid name")
    return value


def webhooks_root(mroot: Any) -> Any:
    return mroot / "webhooks"


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secrets: Iterable[str], body: bytes, header: str | None) -> bool:
    """Constant-time check of ``X-Hook-Signature`` against every accepted secret."""
    if not header:
        return False
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(signature(secret, body), header.strip().lower())
    return ok


def secret_matches(secrets: Iterable[str], offered: str | None) -> bool:
    """Constant-time check of a handshake's ``X-Hook-Secret``."""
    ok = False
    for secret in secrets:
        ok |= bool(offered) and hmac.compare_digest(secret.encode(), (offered or "").encode())
    return ok


def parse_delivery(body: bytes, model: str) -> dict[str, Any]:
    """The ids of a delivery: ``{"id", "event", "webhook_id"}``; anything else is dropped."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DeliveryError("body is not JSON") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    meta = doc.get("meta") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or not isinstance(meta, dict):
        raise DeliveryError("body lacks data/meta")
    rid = data.get("id")
    if isinstance(rid, str) and rid.isdigit():
        rid = int(rid)
    if not isinstance(rid, int) or isinstance(rid, bool) or rid <= 0:
        raise DeliveryError("data.id is not a positive integer")
    event = meta.get("event")
    if event not in events_of(model):
        raise DeliveryError(f"meta.event {event!r} is not an event of {model}")
    wid = meta.get("webhook_id")
    return {"id": rid, "event": event, "webhook_id": wid if isinstance(wid, int) else None}


def read_secrets(mroot: Any, model: str) -> list[str]:
    doc = staging.read_json(webhooks_root(mroot) / "secrets" / f"{model}.json") or {}
    return [s for s in doc.get("secrets") or [] if isinstance(s, str) and s]


def write_secrets(mroot: Any, model: str, secrets: list[str]) -> None:
    staging.write_json(webhooks_root(mroot) / "secrets" / f"{model}.json", {"secrets": secrets})


def store_delivery(mroot: Any, model: str, body: bytes, ids: Mapping[str, Any],
                   clock=time.time) -> dict[str, Any]:
    """Append one accepted delivery (ids only); a body already stored is not stored twice."""
    digest = hashlib.sha256(body).hexdigest()
    root = webhooks_root(mroot)
    marker = root / "seen" / model / digest
    now = clock()
    at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if marker.exists():
        return {"stored": False, "duplicate": True, "digest": digest[:16]}
    name = f"{int(now * 1e9):020d}-{digest[:16]}.json"
    staging.write_json(root / "events" / model / name, {**ids, "received_at": at, "digest": digest})
    staging.write_bytes_atomic(marker, b"")
    staging.write_json(root / "health" / f"{model}.json",
                       {"last_delivery_at": at, "last_event": ids.get("event"), "webhook_id": ids.get("webhook_id")})
    return {"stored": True, "duplicate": False, "digest": digest[:16], "file": name}


def pending_events(mroot: Any, model: str) -> list[tuple[str, dict[str, Any]]]:
    """The stored deliveries of ``model`` not yet consumed by a committed window, oldest first."""
    folder = webhooks_root(mroot) / "events" / model
    try:
        files = sorted((p for p in folder.iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for path in files:
        doc = staging.read_json(path)
        if isinstance(doc, dict):
            out.append((path.name, doc))
    return out


def consume(mroot: Any, model: str, names: Iterable[str]) -> int:
    """Remove the event files a committed window consumed (their content is in the window's folder)."""
    folder = webhooks_root(mroot) / "events" / model
    n = 0
    for name in names:
        path = folder / name
        if path.exists():
            path.unlink()
            n += 1
    return n


def health(mroot: Any, subscriptions: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
    """Per model: status, expiry (and hours left), last delivery; the migration summary shows it."""
    now = time.time() if now is None else now
    out = {}
    for model, sub in sorted((subscriptions.get("models") or {}).items()):
        h = staging.read_json(webhooks_root(mroot) / "health" / f"{model}.json") or {}
        exp = sub.get("expires_at")
        left = None
        if exp:
            left = round((datetime.fromisoformat(str(exp).replace("Z", "+00:00")).timestamp() - now) / 3600, 1)
        out[model] = {"webhook_id": sub.get("webhook_id"), "status": sub.get("status"), "expires_at": exp,
                      "hours_left": left, "last_delivery_at": h.get("last_delivery_at"),
                      "last_event": h.get("last_event"), "pending_events": len(pending_events(mroot, model))}
    return out


# ------------------------------------------------------------------ subscriptions (decisions only)

#: Clio's longest allowed lifetime is 31 days; ask for a little less so clocks never make it 31+.
MAX_LIFETIME_HOURS = 31 * 24 - 1
DEFAULT_RENEW_WITHIN_HOURS = 72


def subscriptions_path(mroot: Any) -> Any:
    return webhooks_root(mroot) / "subscriptions.json"


def read_subscriptions(mroot: Any) -> dict[str, Any]:
    """``{"models": {model: {...}}, ...}``; empty models when the migration uses no webhooks."""
    doc = staging.read_json(subscriptions_path(mroot)) or {}
    doc.setdefault("models", {})
    return doc


def receiver_url(base: str, firm: str, migration_id: str, model: str) -> str:
    """Where Clio delivers ``model``'s events for this migration (``https`` only, as Clio requires)."""
    base = base.rstrip("/")
    if not base.lower().startswith("https://"):
        raise ValueError(f"webhook receiver URL {base!r} must be https (Clio refuses any other scheme)")
    return f"{base}/{safe_name(firm, 'firm')}/{safe_name(migration_id, 'migration id')}/{model}"


def expiry_target(now: float, hours: float = MAX_LIFETIME_HOURS) -> str:
    return datetime.fromtimestamp(int(now + hours * 3600), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def needs_renewal(expires_at: str | None, now: float, within_hours: float = DEFAULT_RENEW_WITHIN_HOURS) -> bool:
    """Renew when the webhook expires within ``within_hours`` (or its expiry is unknown)."""
    if not expires_at:
        return True
    exp = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00")).timestamp()
    return exp - now < within_hours * 3600


def usable_models(subscriptions: Mapping[str, Any], now: float) -> dict[str, set[str]]:
    """Model → events it can be trusted to deliver now: enabled and not expired."""
    out = {}
    for model, sub in (subscriptions.get("models") or {}).items():
        exp = sub.get("expires_at")
        alive = exp is not None and datetime.fromisoformat(str(exp).replace("Z", "+00:00")).timestamp() > now
        if sub.get("status") == "enabled" and alive:
            out[model] = set(sub.get("events") or ())
    return out
