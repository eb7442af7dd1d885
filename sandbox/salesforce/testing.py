"""Start the sandbox for tests and scripts: ``with run_sf_sandbox(tmp_path) as sf: ...``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from sandbox.common.roster import INTEGRATION_USER
from sandbox.salesforce.app import CONSUMER_KEY

ROOT = Path(__file__).resolve().parents[2]
KNOB_FLAGS = {"session_ttl", "api_daily_limit", "data_storage_mb", "file_storage_mb", "audit_fields",
              "lock_row_rate", "fault_503_rate", "fail_bulk_jobs", "session_expire_every", "bulk_max_upload_mb"}


class SandboxHandle:
    """A running sandbox: URLs, credentials and helpers."""

    def __init__(self, data_dir: Path, instance_url: str, proc: subprocess.Popen):
        self.data_dir = data_dir
        self.instance_url = instance_url
        self.port = int(instance_url.rsplit(":", 1)[1])
        self.proc = proc
        creds = json.loads(subprocess.run(
            [sys.executable, "-m", "sandbox.salesforce", "credentials", "--data-dir", str(data_dir)],
            cwd=ROOT, check=True, capture_output=True, text=True).stdout)
        self.consumer_key = CONSUMER_KEY
        self.consumer_secret: str = creds["consumer_secret"]
        self.username: str = INTEGRATION_USER["username"]
        self.password: str = creds["password"]
        self.ca = str(data_dir / "ca.pem")
        self.ca_bundle = str(data_dir / "ca-bundle.pem")
        self.domain = f"127.0.0.1:{self.port}/services/oauth2/token?"

    def session(self) -> requests.Session:
        s = requests.Session()
        s.verify = self.ca
        s.trust_env = False
        return s

    def connection_json(self) -> str:
        """The AIRFLOW_CONN_SALESFORCE_DEFAULT value (client-credentials flow via the domain trick)."""
        return json.dumps({"conn_type": "salesforce", "extra": {
            "consumer_key": self.consumer_key, "consumer_secret": self.consumer_secret, "domain": self.domain}})

    def sf(self, **kwargs: Any):
        from simple_salesforce import Salesforce

        return Salesforce(consumer_key=self.consumer_key, consumer_secret=self.consumer_secret,
                          domain=self.domain, session=self.session(), **kwargs)

    def admin(self, what: str, payload: dict | None = None) -> Any:
        s = self.session()
        url = f"{self.instance_url}/_admin/{what}"
        r = s.post(url, json=payload or {}) if payload is not None or what in ("expire-sessions",) else s.get(url)
        r.raise_for_status()
        return r.json()

    def knobs(self, **changes: Any) -> dict:
        return self.admin("knobs", changes)

    def counts(self) -> dict[str, int]:
        return self.admin("counts")

    def expire_sessions(self) -> None:
        self.admin("expire-sessions")

    def request_log(self) -> dict:
        return self.admin("requests")


@contextlib.contextmanager
def run_sf_sandbox(data_dir: str | Path, *, seed: int = 42, **knobs: Any) -> Iterator[SandboxHandle]:
    """Run the sandbox in a subprocess on a free port; stop it on exit."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "server.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "sandbox.salesforce", "serve", "--port", "0", "--data-dir", str(data_dir),
           "--seed", str(seed)]
    for k, v in knobs.items():
        if k not in KNOB_FLAGS:
            raise TypeError(f"unknown sandbox knob {k!r}")
        if k == "audit_fields" and isinstance(v, bool):
            v = "on" if v else "off"
        cmd += ["--" + k.replace("_", "-"), str(v)]
    log = (data_dir / "server.log").open("ab")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        info = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"sandbox exited early; see {data_dir / 'server.log'}")
            p = data_dir / "server.json"
            if p.exists():
                info = json.loads(p.read_text())
                try:
                    s = requests.Session()
                    s.trust_env = False
                    if s.get(info["instance_url"] + "/_admin/health", verify=str(data_dir / "ca.pem"), timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        else:
            raise RuntimeError("sandbox did not become ready in 30 s")
        yield SandboxHandle(data_dir, info["instance_url"], proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
