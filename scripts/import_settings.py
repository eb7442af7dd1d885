"""Import airflow_settings.yaml (Astro format) into a plain Airflow metadata DB.

``airflow standalone`` does not read the Astro file, so this converts it into the JSON that
``airflow connections|pools|variables import`` take, expanding ``${VARS}`` from the
environment first (secrets live in env vars, never in the file).

Pools per firm: for every firm config (``include/mappings/firms/<firm>.yaml``, or the
``CLIO2SF_MAPPINGS_DIR`` deployment's) and every declared migration's firm, ``clio_api_<firm>`` and
``salesforce_api_<firm>`` are created with the shared pools' slots, and every pool a declaration
names (``clio_pool``, ``salesforce_pool``), so a declared pool never leaves its tasks waiting.
The pools-per-firm policy (``clio2sf_airflow.pools``) puts each firm's tasks in them.
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

from clio2sf.mapping.spec import DEFAULT_MAPPINGS_DIR, MAPPINGS_DIR_ENV
from clio2sf.migrations import SHARED_POOLS, Migration, load_declarations

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


def firm_configs(mappings_dir: Path | None = None) -> list[str]:
    """The firms with a config: ``firms/<firm>.yaml`` of the mappings directory."""
    folder = Path(mappings_dir or os.environ.get(MAPPINGS_DIR_ENV) or DEFAULT_MAPPINGS_DIR) / "firms"
    return sorted(p.stem for p in folder.glob("*.yaml"))


def add_firm_pools(pools: dict, declarations: list[Migration], firms: list[str]) -> dict:
    """Add each firm's own pools and each declared pool missing from ``pools`` (the shared pools' slots)."""
    out = dict(pools)
    default_slots = {"clio_api": 2, "salesforce_api": 4}
    wanted: dict[str, tuple[str, str]] = {}
    for mig in [Migration(firm=f, migration_id="-") for f in firms] + list(declarations):
        for shared in SHARED_POOLS:
            where = f"declared in {mig.source}" if mig.source else f"firm config firms/{mig.firm}.yaml"
            for name in mig.pool_candidates(shared)[:1]:
                wanted.setdefault(name, (shared, f"{shared} tasks of firm {mig.firm} ({where})"))
    for name, (shared, description) in wanted.items():
        if name not in out:
            slots = (pools.get(shared) or {}).get("slots", default_slots[shared])
            out[name] = {"slots": slots, "include_deferred": False, "description": description}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", default=str(ROOT / "airflow_settings.yaml"))
    parser.add_argument("--dry-run", action="store_true", help="print the pools and variables only")
    args = parser.parse_args(argv)
    settings = expand(yaml.safe_load(Path(args.file).read_text()), dict(os.environ))
    conns, pools, variables = convert(settings)
    pools = add_firm_pools(pools, load_declarations(), firm_configs())
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
