"""Run the Clio sandbox from tests, benchmarks and scripts.

    with run_clio_sandbox(tmp_path, preset="tiny", rate_limit=None) as clio:
        token = clio.access_token()
        requests.get(f"{clio.base_url}/api/v4/matters.json", headers={"Authorization": f"Bearer {token}"})
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from sandbox.clio.server import credentials, open_store, prepare

ROOT = Path(__file__).resolve().parents[2]

_FLAGS = {"token_ttl": "--token-ttl", "dirty_rate": "--dirty-rate", "fault_5xx": "--fault-5xx",
          "fault_429_storm": "--fault-429-storm", "latency_ms": "--latency-ms", "drop_rate": "--drop-rate",
          "revoke_after": "--revoke-after", "offpeak_limit": "--offpeak-limit", "peak_hours": "--peak-hours",
          "tz": "--tz", "matters": "--matters"}


@dataclass
class ClioSandbox:
    """A running sandbox: where it is, its OAuth client, and admin helpers."""

    base_url: str
    data_dir: Path
    client_id: str
    client_secret: str
    refresh_token: str
    redirect_uri: str
    process: subprocess.Popen | None = None

    def access_token(self) -> str:
        """A fresh access token from the pre-authorised refresh token."""
        r = requests.post(f"{self.base_url}/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": self.refresh_token,
            "client_id": self.client_id, "client_secret": self.client_secret}, timeout=10)
        r.raise_for_status()
        return r.json()["access_token"]

    def admin(self, method: str, path: str, body: dict | None = None) -> object:
        """Call ``/_admin/<path>`` (never rate limited nor logged) and return its JSON."""
        r = requests.request(method, f"{self.base_url}/_admin/{path.lstrip('/')}", json=body, timeout=30)
        if r.status_code >= 400:
            raise RuntimeError(f"admin {method} {path} failed: {r.status_code} {r.text}")
        return r.json()

    def request_log(self, since: int = 0) -> list[dict]:
        return self.admin("GET", f"requests?since={since}")["requests"]

    def counts(self, objects: Iterable | None = None) -> dict[str, int]:
        """Records per stored collection; with ``objects`` (anything with ``name``, ``endpoint`` and
        ``params``, e.g. the migration's catalog entries): what paging each with its params returns."""
        if objects is None:
            return self.admin("GET", "counts")
        return self.admin("POST", "counts", {o.name: {"path": o.endpoint, "params": dict(o.params)} for o in objects})

    def dirty(self) -> list[dict]:
        return self.admin("GET", "dirty")

    def set_knobs(self, **knobs: object) -> dict:
        return self.admin("POST", "knobs", knobs)

    def reset_limits(self) -> None:
        self.admin("POST", "reset_limits")

    def revoke(self, token: str | None = None) -> int:
        return self.admin("POST", "revoke", {"token": token})["revoked"]

    def mutate(self, obj: str, op: str, id: int | str | None = None, data: dict | None = None) -> dict:
        """Create, update, delete (trash, where Clio has one) or purge (remove for good) a record
        (``obj`` is the endpoint name, e.g. ``contacts``)."""
        return self.admin("POST", "mutate", {"object": obj, "op": op, "id": id, "data": data or {}})


@contextmanager
def run_clio_sandbox(data_dir: Path | str, *, seed: int = 42, preset: str = "tiny", rate_limit: int | None = None,
                     window: float = 60.0, host: str = "127.0.0.1", startup_timeout: float = 600.0,
                     **knobs: object) -> Iterator[ClioSandbox]:
    """Seed ``data_dir`` if needed, start the server on a free port, yield a ClioSandbox, stop it."""
    data_dir = Path(data_dir)
    dirty_rate = float(knobs.get("dirty_rate", 0.0) or 0.0)
    store = prepare(data_dir, seed, preset, knobs.get("matters"), dirty_rate)  # type: ignore[arg-type]
    creds = credentials(store)
    store.conn.close()
    ready = data_dir / f".ready-{os.getpid()}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "sandbox.clio", "serve", "--data-dir", str(data_dir), "--seed", str(seed),
           "--preset", preset, "--host", host, "--port", "0", "--window", str(window), "--ready-file", str(ready)]
    cmd += ["--no-rate-limit"] if rate_limit is None else ["--rate-limit", str(rate_limit)]
    for key, value in knobs.items():
        if key not in _FLAGS:
            raise TypeError(f"run_clio_sandbox: unknown knob {key!r}; known: {sorted(_FLAGS)}")
        if value is not None:
            cmd += [_FLAGS[key], str(value)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + startup_timeout
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"Clio sandbox exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                raise TimeoutError("Clio sandbox did not start in time")
            time.sleep(0.05)
        port = json.loads(ready.read_text())["port"]
        yield ClioSandbox(base_url=f"http://{host}:{port}", data_dir=data_dir, process=proc, **creds)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ready.unlink(missing_ok=True)


__all__ = ["ClioSandbox", "open_store", "run_clio_sandbox"]
