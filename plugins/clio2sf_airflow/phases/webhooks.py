"""Clio webhook subscriptions of a migration: register, renew, rotate, remove, report health.

The receiver URL is the api-server's public address plus the plugin's prefix, e.g.
``https://airflow.firm.example/clio2sf/webhooks`` (param ``receiver_url`` or the Variable
``clio2sf_webhook_base_url``). One webhook per migrated model that Clio delivers, asking only for
``id,etag,updated_at`` and the ``created``/``updated``/``deleted`` events (what the model has).
Secrets go to ``webhooks/secrets/`` before activation (never to logs or XCom); the webhook is
activated with ``PUT /webhooks/{id}/activate`` whether or not the handshake already did it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowFailException

from clio2sf import staging
from clio2sf import webhook_events as ev
from clio2sf_airflow import migration
from clio2sf_airflow.hooks.clio import ClioBadRequest, ClioHook
from clio2sf_airflow.phases.common import mroot, params

log = logging.getLogger(__name__)
BASE_URL_VARIABLE = "clio2sf_webhook_base_url"
SHOW_FIELDS = "id,url,model,events,fields,status,expires_at"


def _base_url(p: dict[str, Any]) -> str:
    base = p.get("receiver_url") or Variable.get(BASE_URL_VARIABLE, default=None)
    if not base:
        raise AirflowFailException(
            f"set the receiver's public URL (param receiver_url or Variable {BASE_URL_VARIABLE}), "
            "e.g. https://airflow.firm.example/clio2sf/webhooks")
    return str(base)


def _models(root: Any) -> dict[str, str]:
    """Model → migrated object, for objects this migration staged."""
    return {m: o for o, m in ev.OBJECT_MODELS.items() if staging.read_manifest(root, o) is not None}


def _register(hook: ClioHook, root: Any, model: str, url: str, now: float) -> dict[str, Any]:
    events = [e for e in ev.WANTED_EVENTS if e in ev.events_of(model)]
    body, _ = hook.request("POST", "webhooks", params={"fields": SHOW_FIELDS + ",shared_secret"}, json={"data": {
        "url": url, "model": model, "fields": ev.DELIVERY_FIELDS, "events": events,
        "expires_at": ev.expiry_target(now)}})
    data = body["data"]
    secret = data.pop("shared_secret")
    ev.write_secrets(root, model, [secret, *ev.read_secrets(root, model)[:1]])  # keep one previous secret
    if data.get("status") != "enabled":
        body, _ = hook.request("PUT", f"webhooks/{data['id']}/activate", params={"fields": SHOW_FIELDS},
                               headers={"X-Hook-Secret": secret})
        data = body["data"]
    log.info("registered Clio webhook %s for %s (%s, expires %s)", data["id"], model, data["status"],
             data["expires_at"])
    return data


def _delete(hook: ClioHook, wid: Any) -> None:
    try:
        hook.request("DELETE", f"webhooks/{wid}")
    except ClioBadRequest as exc:
        if exc.status != 404:
            raise


def manage_subscriptions() -> dict[str, Any]:
    """``action`` ensure (register missing, renew expiring), rotate (new secrets), or remove."""
    p = params()
    root = mroot(p)
    action = p.get("action", "ensure")
    hook = migration.clio_hook(p)
    subs = ev.read_subscriptions(root)
    now = time.time()
    if action == "remove":
        for model, sub in sorted(subs["models"].items()):
            _delete(hook, sub["webhook_id"])
            ev.write_secrets(root, model, [])
            log.info("removed Clio webhook %s (%s)", sub["webhook_id"], model)
        doc = {"models": {}, "removed_at": ev.expiry_target(now, 0)}
        staging.write_json(ev.subscriptions_path(root), doc)
        return {"action": action, "removed": sorted(subs["models"]), "requests": hook.requests_made}
    base = _base_url(p)
    live = {w["id"]: w for page in hook.paginate("webhooks", SHOW_FIELDS) for w in page["data"]}
    models: dict[str, Any] = {}
    changed: dict[str, str] = {}
    for model, obj in sorted(_models(root).items()):
        url = ev.receiver_url(base, p["firm"], p["migration_id"], model)
        sub = subs["models"].get(model) or {}
        current = live.get(sub.get("webhook_id"))
        if current is None or current.get("url") != url or action == "rotate" or current.get("status") != "enabled":
            data = _register(hook, root, model, url, now)
            if current is not None:
                _delete(hook, current["id"])
            changed[model] = "registered" if current is None else f"replaced {current['id']}"
            current = {**data, "registered_at": ev.expiry_target(now, 0)}
        elif ev.needs_renewal(current.get("expires_at"), now, float(p.get("renew_within_hours") or 72)):
            body, _ = hook.request("PATCH", f"webhooks/{current['id']}", params={"fields": SHOW_FIELDS},
                                   json={"data": {"expires_at": ev.expiry_target(now)}})
            current = {**current, **body["data"]}
            changed[model] = "renewed"
        models[model] = {"webhook_id": current["id"], "url": url, "object": obj, "events": current.get("events"),
                         "fields": current.get("fields"), "status": current.get("status"),
                         "expires_at": current.get("expires_at"),
                         "registered_at": current.get("registered_at") or sub.get("registered_at")}
    doc = {"models": models, "updated_at": ev.expiry_target(now, 0),
           "registered_at": subs.get("registered_at") or ev.expiry_target(now, 0)}
    staging.write_json(ev.subscriptions_path(root), doc)
    health = ev.health(root, doc)
    staging.write_json(ev.webhooks_root(root) / "health.json", health)
    log.info("Clio webhooks: %s; %d Clio requests", changed or "all current", hook.requests_made)
    return {"action": action, "changed": changed, "health": health, "requests": hook.requests_made}
