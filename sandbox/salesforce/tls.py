"""The sandbox's local CA (trustme), kept per data dir so client bundles stay valid across restarts."""

from __future__ import annotations

from pathlib import Path

import certifi
import trustme


def ensure_ca(data_dir: Path) -> trustme.CA:
    cert, key = data_dir / "ca.pem", data_dir / "ca-key.pem"
    if cert.exists() and key.exists():
        ca = trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
    else:
        ca = trustme.CA(organization_name="clio2sf Salesforce sandbox")
        ca.cert_pem.write_to_path(str(cert))
        ca.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
    bundle = data_dir / "ca-bundle.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + cert.read_bytes())
    return ca


def server_cert(data_dir: Path, ca: trustme.CA, host: str) -> tuple[str, str]:
    """Write the server certificate and key; return their paths."""
    names = sorted({"127.0.0.1", "localhost", host})
    leaf = ca.issue_cert(*names)
    cert_path, key_path = data_dir / "server.pem", data_dir / "server-key.pem"
    cert_path.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_path))
    key_path.chmod(0o600)
    return str(cert_path), str(key_path)
