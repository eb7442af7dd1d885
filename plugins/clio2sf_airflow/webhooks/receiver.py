"""The Clio webhook receiver: a FastAPI app mounted in the Airflow api-server by a plugin.

``POST <api-server>/clio2sf/webhooks/<firm>/<migration_id>/<model>``:

* a handshake (``X-Hook-Secret``, no signature) is answered 200 with the same header only when
  the secret is one the migration registered for that model (``webhooks/secrets/<model>.json``);
  anything else gets 401, and the migration activates the webhook itself
  (``PUT /webhooks/{id}/activate``), so a handshake that races the registration is harmless;
* a delivery must carry ``X-Hook-Signature``, the hex HMAC-SHA256 of the raw body with a
  registered secret (checked in constant time); unsigned or wrongly signed requests get 401 and
  are logged without their body;
* an accepted delivery keeps only its ids (:func:`clio2sf.webhook_events.store_delivery`, one
  small file in the migration's staging area, never the metadata DB); a retried or duplicated
  body is stored once. The answer is quick (200) so Clio never times out and disables the hook.

``GET .../health`` answers ``{"ok": true}`` (for load balancers and tests). Airflow's own
authentication does not apply to plugin apps: the signature is this app's authentication.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from clio2sf import webhook_events as ev

log = logging.getLogger("clio2sf.webhooks")

STAGING_VARIABLE = "clio2sf_staging_root"

app = FastAPI(title="clio2sf Clio webhook receiver", docs_url=None, redoc_url=None, openapi_url=None)


def staging_url() -> str:
    """The staging root: env (``AIRFLOW_VAR_CLIO2SF_STAGING_ROOT``, ``CLIO2SF_STAGING_ROOT``) or the Variable."""
    url = os.environ.get("AIRFLOW_VAR_CLIO2SF_STAGING_ROOT") or os.environ.get("CLIO2SF_STAGING_ROOT")
    if not url:
        try:  # the api-server reads the metadata DB directly (no task SDK here)
            from airflow.models.variable import Variable

            url = Variable.get(STAGING_VARIABLE, default_var=None)
        except Exception:  # noqa: BLE001 - any failure means "not configured"
            url = None
    if not url:
        raise RuntimeError(f"set the Airflow Variable {STAGING_VARIABLE} (or CLIO2SF_STAGING_ROOT)")
    return url


def migration_root(firm: str, migration_id: str) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(staging_url()) / ev.safe_name(firm, "firm") / ev.safe_name(migration_id, "migration id")


def _refuse(status: int, why: str, firm: str, migration_id: str, model: str, size: int) -> Response:
    log.warning("refused Clio webhook request for %s/%s/%s: %s (%d bytes, body not logged)",
                firm, migration_id, model, why, size)
    return JSONResponse({"error": why}, status_code=status)


@app.get("/health")
async def health() -> dict:
    return {"ok": True}


@app.post("/{firm}/{migration_id}/{model}")
async def receive(firm: str, migration_id: str, model: str, request: Request) -> Response:
    body = await request.body()
    if model not in ev.ALL_MODELS:
        return _refuse(404, "unknown model", firm, migration_id, model[:40], len(body))
    try:
        root = migration_root(firm, migration_id)
    except ValueError:
        return _refuse(404, "unknown migration", firm[:40], migration_id[:40], model, len(body))
    secrets = ev.read_secrets(root, model)
    if not secrets:
        return _refuse(401, "no webhook registered for this model", firm, migration_id, model, len(body))
    signature = request.headers.get("x-hook-signature")
    offered = request.headers.get("x-hook-secret")
    if offered is not None and signature is None:
        if not ev.secret_matches(secrets, offered):
            return _refuse(401, "handshake secret does not match a registered webhook", firm, migration_id, model,
                           len(body))
        log.info("Clio webhook handshake accepted for %s/%s/%s", firm, migration_id, model)
        return Response(status_code=200, headers={"X-Hook-Secret": offered})
    if not ev.verify(secrets, body, signature):
        return _refuse(401, "missing or invalid X-Hook-Signature", firm, migration_id, model, len(body))
    try:
        ids = ev.parse_delivery(body, model)
    except ev.DeliveryError as exc:
        return _refuse(400, f"signed but not a webhook payload: {exc}", firm, migration_id, model, len(body))
    result = ev.store_delivery(root, model, body, ids)
    log.info("Clio webhook %s %s id %s for %s/%s%s", model, ids["event"], ids["id"], firm, migration_id,
             " (duplicate, not stored again)" if result["duplicate"] else "")
    return JSONResponse({"ok": True, "duplicate": result["duplicate"]})
