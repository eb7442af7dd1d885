"""Preparing a data directory (seed, OAuth client, secrets) and running the server."""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from pathlib import Path

from sandbox.clio.config import CLIENT_ID, REDIRECT_URI, Knobs
from sandbox.clio.firm import counts_for, seed_firm
from sandbox.clio.store import Store

DB_NAME = "clio.sqlite3"
log = logging.getLogger("sandbox.clio")


def open_store(data_dir: Path) -> Store:
    data_dir.mkdir(parents=True, exist_ok=True)
    return Store(data_dir / DB_NAME)


def prepare(data_dir: Path, seed: int = 42, preset: str | None = "demo", matters: int | None = None,
            dirty_rate: float = 0.0) -> Store:
    """Seed ``data_dir`` once (a later call with other settings keeps the existing firm)."""
    store = open_store(data_dir)
    if store.meta("client_secret") is None:
        store.set_meta("client_secret", secrets.token_urlsafe(24))
        store.set_meta("refresh_token", secrets.token_urlsafe(32))
        store.set_meta("blob_secret", secrets.token_urlsafe(24))
        store.set_meta("redirect_uri", REDIRECT_URI)
    if store.meta("seeded") is None:
        n = counts_for(preset, matters)
        t0 = time.time()
        counts = seed_firm(store, data_dir, seed, n, dirty_rate)
        store.set_meta("seeded", json.dumps({"seed": seed, "preset": preset, "matters": n, "dirty_rate": dirty_rate,
                                             "records": sum(counts.values()), "seconds": round(time.time() - t0, 2)}))
    elif int(json.loads(store.meta("seeded"))["seed"]) != seed:
        print(f"note: {data_dir} already holds a firm seeded with "
              f"{json.loads(store.meta('seeded'))['seed']}; keeping it", file=sys.stderr)
    return store


def credentials(store: Store) -> dict:
    return {"client_id": CLIENT_ID, "client_secret": store.meta("client_secret"),
            "refresh_token": store.meta("refresh_token"), "redirect_uri": store.meta("redirect_uri")}


def serve(data_dir: Path, host: str, port: int, seed: int, knobs: Knobs, preset: str | None = "demo",
          matters: int | None = None, dirty_rate: float = 0.0, ready_file: Path | None = None) -> None:
    """Seed if needed and run uvicorn (httptools) until interrupted."""
    import uvicorn

    from sandbox.clio.app import Sandbox, create_app

    store = prepare(data_dir, seed, preset, matters, dirty_rate)
    seeded = json.loads(store.meta("seeded"))
    sb = Sandbox(data_dir, store, knobs, int(seeded["seed"]))
    app = create_app(sb)
    config = uvicorn.Config(app, host=host, port=port, http="httptools", loop="uvloop", log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    if ready_file is not None:
        _announce_when_started(server, ready_file)
    server.run()


def _announce_when_started(server, ready_file: Path) -> None:
    """Write the bound port to ``ready_file`` once uvicorn listens (port 0 picks a free one)."""
    original = server.startup

    async def startup(sockets=None):
        await original(sockets=sockets)
        port = server.servers[0].sockets[0].getsockname()[1]
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": port}))
        tmp.replace(ready_file)

    server.startup = startup
