"""Import airflow_settings.yaml (Astro format) into a plain Airflow metadata DB.

``airflow standalone`` does not read the Astro file, so this converts it into the JSON that
``airflow connections|pools|variables import`` take, expanding ``${VARS}`` from the
environment first (secrets live in env vars, never in the file).  Every Clio pool a migration
declares (``clio_pool`` in ``include/migrations/*.yaml``) that the file does not list is created
too, with the ``clio_api`` pool's slots, so a declared pool never leaves its tasks waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from clio2sf.migrations import Migration, load_declarations

ROOT = Path(__file__).resolve().parent.parent
_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")


def expand(value, env: dict[str, str]):
    """Expand ``${NAME}`` in strings (recursively); an unset variable is an error naming it."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in env:
                raise KeyError(f"airflow_settings.yaml needs the environment variable {name}")
            return env[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, env) for v in value]
    return value


def convert(settings: dict) -> tuple[dict, dict, dict]:
    """Return (connections, pools, variables) in the shapes ``airflow ... import`` reads."""
    af = settings.get("airflow") or {}
    conns = {}
    for c in af.get("connections") or []:
        conns[c["conn_id"]] = {
            "conn_type": c["conn_type"],
            "host": c.get("conn_host") or None,
            "schema": c.get("conn_schema") or None,
            "login": c.get("conn_login") or None,
            "password": c.get("conn_password") or None,
            "port": int(c["conn_port"]) if c.get("conn_port") else None,
            "extra": json.dumps(c.get("conn_extra") or {}),
        }
    pools = {
        p["pool_name"]: {
            "slots": int(p["pool_slot"]),
            "description": p.get("pool_description", ""),
            "include_deferred": False,
        }
        for p in af.get("pools") or []
    }
    variables = {v["variable_name"]: str(v["variable_value"]) for v in af.get("variables") or []}
    return conns, pools, variables


def add_declared_pools(pools: dict, declarations: list[Migration]) -> dict:
    """Add each declaration's ``clio_pool`` missing from ``pools`` (the ``clio_api`` pool's slots)."""
    slots = (pools.get("clio_api") or {}).get("slots", 2)
    out = dict(pools)
    for mig in declarations:
        if mig.clio_pool not in out:
            out[mig.clio_pool] = {"slots": slots, "include_deferred": False,
                                  "description": f"Clio API tasks of firm {mig.firm} (declared in {mig.source})"}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", default=str(ROOT / "airflow_settings.yaml"))
    parser.add_argument("--dry-run", action="store_true", help="print the pools and variables only")
    args = parser.parse_args(argv)
    settings = expand(yaml.safe_load(Path(args.file).read_text()), dict(os.environ))
    conns, pools, variables = convert(settings)
    pools = add_declared_pools(pools, load_declarations())
    if args.dry_run:
        print(json.dumps({"connections": sorted(conns), "pools": pools, "variables": sorted(variables)}, indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for kind, data in (("connections", conns), ("pools", pools), ("variables", variables)):
            path = Path(tmp) / f"{kind}.json"
            path.write_text(json.dumps(data))
            os.chmod(path, 0o600)
            cmd = ["airflow", kind, "import", str(path)]
            if kind == "connections":
                cmd += ["--overwrite"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            print(f"imported {len(data)} {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
