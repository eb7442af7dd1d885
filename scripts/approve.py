"""Approve a firm's mapping or its sample from the command line (the UI's Required Actions do the same).

    python -m scripts.approve mapping --firm harlow_vance --migration-id m1 --by jane@firm.example
    python -m scripts.approve sample  --firm harlow_vance --migration-id m1 --by jane@firm.example

It records who approved which mapping hash, and when, in ``<staging>/<firm>/<migration>/approvals/``
(the staging root is the migration's declared ``staging_root`` in ``include/migrations/``, else
``--staging-root``, ``CLIO2SF_STAGING_ROOT`` or ``AIRFLOW_VAR_CLIO2SF_STAGING_ROOT``).
A mapping can only be approved once discover wrote its mapping specification, a sample once its
diff report exists.
"""

from __future__ import annotations

import argparse
import os
import sys

from upath import UPath

from clio2sf import staging
from clio2sf.mapping.confirm import confirm
from clio2sf.mapping.spec import load_spec
from clio2sf.migrations import find


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["mapping", "sample"])
    parser.add_argument("--firm", required=True)
    parser.add_argument("--migration-id", required=True)
    parser.add_argument("--by", required=True, help="who approves (name or email)")
    parser.add_argument("--staging-root", default=os.environ.get("CLIO2SF_STAGING_ROOT")
                        or os.environ.get("AIRFLOW_VAR_CLIO2SF_STAGING_ROOT"))
    args = parser.parse_args(argv)
    declared = find(args.firm, args.migration_id)
    if declared is not None and declared.staging_root:
        args.staging_root = declared.staging_root
    if not args.staging_root:
        parser.error("set --staging-root or CLIO2SF_STAGING_ROOT")
    try:
        root = staging.migration_root(UPath(args.staging_root), args.firm, args.migration_id)
    except ValueError as exc:
        parser.error(str(exc))
    spec = load_spec(args.firm)
    if not (root / "discover" / "mapping_spec.html").exists():
        print(f"no discover output under {root / 'discover'}: run mig_01_discover for firm {args.firm}, "
              f"migration {args.migration_id} first", file=sys.stderr)
        return 2
    if args.kind == "sample" and not (root / "sample" / "diff.html").exists():
        print(f"no sample diff report under {root / 'sample'}: run mig_04_sample first", file=sys.stderr)
        return 2
    entry = confirm(spec, args.by, None, root / "approvals" / f"{args.kind}.yaml")
    print(f"{args.kind} approved: firm {args.firm}, hash {entry['hash'][:12]}, by {entry['by']} at {entry['at']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
