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
KNOB_FLAGS = {"session_ttl", "api_daily_limit", "data_storage_mb", "file_storage_mb", "audit_fields", "hard_delete",
              "bulk_daily_batches", "lock_row_rate", "fault_503_rate", "fail_bulk_jobs", "session_expire_every",
              "bulk_max_upload_mb"}
ON_OFF = {"audit_fields", "hard_delete"}
#: Data dirs of every sandbox started in this process (tests check their request logs for 500s).
STARTED: list[Path] = []


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

    def faults(self) -> dict[str, int]:
        """Faults the sandbox injected so far, by kind (its own log, not the client's)."""
        return self.admin("faults")

    def grant(self, fields: list[str] = (), objects: list[str] = (), name: str = "Sandbox_Test_Access") -> str:
        """Grant the integration user read/edit on ``fields`` ("Contact.Clio_Id__c") and full access to
        ``objects`` through a permission set, with the real API (as an admin would); returns its Id."""
        sf = self.sf()
        found = sf.query(f"SELECT Id FROM PermissionSet WHERE Name = '{name}'")["records"]
        ps = found[0]["Id"] if found else sf.PermissionSet.create({"Name": name, "Label": name.replace("_", " ")})["id"]
        have = {r["Field"] for r in sf.query_all(f"SELECT Field FROM FieldPermissions WHERE ParentId = '{ps}'")["records"]}
        for full in fields:
            if full not in have:
                sf.FieldPermissions.create({"ParentId": ps, "SobjectType": full.split(".")[0], "Field": full,
                                            "PermissionsRead": True, "PermissionsEdit": True})
        for obj in objects:
            sf.ObjectPermissions.create({"ParentId": ps, "SobjectType": obj, "PermissionsRead": True,
                                         "PermissionsCreate": True, "PermissionsEdit": True, "PermissionsDelete": True})
        me = self.user_id(sf)
        if not sf.query(f"SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = '{me}' "
                        f"AND PermissionSetId = '{ps}'")["records"]:
            sf.PermissionSetAssignment.create({"AssigneeId": me, "PermissionSetId": ps})
        return ps

    def external_ids(self, *objects: str, name: str = "Clio_Id__c") -> None:
        """Create a unique external-id Text(80) field on each object through Tooling and grant it."""
        sf = self.sf()
        for obj in objects:
            sf.toolingexecute("sobjects/CustomField", method="POST", data={
                "FullName": f"{obj}.{name}",
                "Metadata": {"label": "Clio Id", "type": "Text", "length": 80, "externalId": True, "unique": True}})
        self.grant([f"{obj}.{name}" for obj in objects])

    def user_id(self, sf: Any = None) -> str:
        """The integration user's Id (``/services/oauth2/userinfo``)."""
        sf = sf or self.sf()
        r = self.session().get(f"{self.instance_url}/services/oauth2/userinfo",
                               headers={"Authorization": f"Bearer {sf.session_id}"})
        r.raise_for_status()
        return r.json()["user_id"]

    def internal_errors(self) -> list[dict]:
        """Requests the sandbox answered with 500 (its own failures), from its request log file."""
        return internal_errors(self.data_dir)


def internal_errors(data_dir: Path) -> list[dict]:
    """500 answers in ``data_dir/requests.jsonl`` (a real org's 500 is its bug; so is the sandbox's)."""
    p = Path(data_dir) / "requests.jsonl"
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("status") == 500:
            out.append(entry)
    return out


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
        if k in ON_OFF and isinstance(v, bool):
            v = "on" if v else "off"
        cmd += ["--" + k.replace("_", "-"), str(v)]
    log = (data_dir / "server.log").open("ab")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    STARTED.append(data_dir)
    try:
        deadline = time.monotonic() + 30
        info = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"sandbox exited early; see {data_dir / 'server.log'}")
            p = data_dir / "server.json"
            if p.exists():
                try:
                    info = json.loads(p.read_text())
                except json.JSONDecodeError:  # renamed into place whole; a partial read is retried all the same
                    time.sleep(0.1)
                    continue
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
