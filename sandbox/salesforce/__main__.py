"""Command line: ``python -m sandbox.salesforce serve|credentials``."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

from sandbox.salesforce.org import Org, Settings


def _settings(a: argparse.Namespace) -> Settings:
    return Settings(seed=a.seed, session_ttl=a.session_ttl, api_daily_limit=a.api_daily_limit,
                    data_storage_mb=a.data_storage_mb, file_storage_mb=a.file_storage_mb,
                    audit_fields=a.audit_fields == "on", hard_delete=a.hard_delete == "on",
                    bulk_daily_batches=a.bulk_daily_batches, lock_row_rate=a.lock_row_rate,
                    fault_503_rate=a.fault_503_rate, fail_bulk_jobs=a.fail_bulk_jobs,
                    session_expire_every=a.session_expire_every, bulk_max_upload_mb=a.bulk_max_upload_mb)


def serve(a: argparse.Namespace) -> None:
    import uvicorn

    from sandbox.salesforce.app import Sandbox, build_app
    from sandbox.salesforce.tls import ensure_ca, server_cert

    data_dir = Path(a.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ca = ensure_ca(data_dir)
    cert, key = server_cert(data_dir, ca, a.host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((a.host, a.port))
    port = sock.getsockname()[1]
    org = Org(data_dir, _settings(a))
    sb = Sandbox(org, a.host, port)
    # written whole, then renamed: a reader polling for it never sees half of it
    tmp = data_dir / "server.json.tmp"
    tmp.write_text(json.dumps({"instance_url": sb.instance_url, "port": port, "pid": os.getpid()}))
    os.replace(tmp, data_dir / "server.json")
    config = uvicorn.Config(build_app(sb), ssl_certfile=cert, ssl_keyfile=key, log_level="warning",
                            access_log=False, timeout_keep_alive=30,
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)

    try:
        server.run(sockets=[sock])
    finally:
        org.persist_counters()


def credentials(a: argparse.Namespace) -> None:
    from sandbox.common.roster import INTEGRATION_USER
    from sandbox.salesforce.app import CONSUMER_KEY

    data_dir = Path(a.data_dir).resolve()
    org = Org(data_dir, Settings(seed=a.seed))
    server = data_dir / "server.json"
    instance = json.loads(server.read_text())["instance_url"] if server.exists() else None
    print(json.dumps({"consumer_key": CONSUMER_KEY, "consumer_secret": org.store.meta_get("consumer_secret"),
                      "instance_url": instance, "ca_bundle": str(data_dir / "ca-bundle.pem"),
                      "ca": str(data_dir / "ca.pem"), "username": INTEGRATION_USER["username"],
                      "password": org.store.meta_get("integration_password")}, indent=2))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sandbox.salesforce")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the HTTPS org emulator")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8702)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--session-ttl", type=int, default=7200)
    s.add_argument("--api-daily-limit", type=int, default=1_000_000)
    s.add_argument("--data-storage-mb", type=int, default=1024)
    s.add_argument("--file-storage-mb", type=int, default=2048)
    s.add_argument("--audit-fields", choices=("on", "off"), default="off",
                   help="'Set Audit Fields upon Record Creation': org preference on and granted to the integration user")
    s.add_argument("--hard-delete", choices=("on", "off"), default="off",
                   help="'Bulk API Hard Delete' on the integration user's profile")
    s.add_argument("--bulk-daily-batches", type=int, default=15_000, help="DailyBulkApiBatches allowance")
    s.add_argument("--lock-row-rate", type=float, default=0.0)
    s.add_argument("--fault-503-rate", type=float, default=0.0)
    s.add_argument("--fail-bulk-jobs", type=int, default=0)
    s.add_argument("--session-expire-every", type=int, default=0,
                   help="invalidate every session after each N API calls (0 = never)")
    s.add_argument("--bulk-max-upload-mb", type=int, default=150)
    c = sub.add_parser("credentials", help="print the connected-app and integration-user credentials")
    c.add_argument("--data-dir", required=True)
    c.add_argument("--seed", type=int, default=42)
    a = p.parse_args(argv)
    {"serve": serve, "credentials": credentials}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
