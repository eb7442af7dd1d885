"""One writer per migration: a lease file ``<migration root>/lease.json`` naming the run that writes.

The full load, a delta window and a rollback (not a dry run) each write to Salesforce and to the
migration's ledger and watermarks. Two of them at once would interleave writes (a delta updating
what a rollback is deleting), so every writing task *holds* the lease first:

* free, or held by this same run: taken (re-taken by a retried or cleared task of that run);
* held by another run that is still active (queued or running): refused, naming that run, its
  phase and since when;
* held by a run that is no longer active (failed, succeeded, deleted): stale, taken over (the
  takeover is logged). Clearing tasks of that old run later makes it hold the lease again, so it
  waits for the new holder.

The last task of each writing phase releases it. ``is_active(holder)`` is supplied by the caller
(the Airflow side asks the API server for the holder run's state).

Taking it is a write followed by a read-back (the same on a local disk and on object storage):
two runs starting within milliseconds could both pass the check; the read-back makes the loser
fail unless both writes land before either reads. Airflow's ``max_active_runs=1`` already keeps
two runs of one phase DAG apart; the lease keeps the three writing phases apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from clio2sf import staging
from clio2sf.ledger import utc_now_iso

LEASE_FILE = "lease.json"


class LeaseHeld(RuntimeError):
    """Another active run writes this migration; the message names it."""


def lease_path(root: Any) -> Any:
    return root / LEASE_FILE


def read_lease(root: Any) -> dict[str, Any] | None:
    path = lease_path(root)
    if not path.exists():
        return None
    with path.open("rb") as fh:
        try:
            return json.loads(fh.read())
        except json.JSONDecodeError:
            return None


def hold(root: Any, *, dag_id: str, run_id: str, phase: str, is_active: Callable[[str, str], bool],
         log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Take or keep the migration's lease for ``dag_id``/``run_id``; raise :class:`LeaseHeld` if another run writes."""
    current = read_lease(root)
    if current and (current.get("dag_id"), current.get("run_id")) != (dag_id, run_id):
        if is_active(current["dag_id"], current["run_id"]):
            raise LeaseHeld(
                f"migration {root.name!r} is being written by {current.get('phase')} run "
                f"{current['dag_id']} / {current['run_id']} (since {current.get('since')}): one writer at a time.\n"
                f"Wait for that run to finish (or mark it failed in the UI if it is stuck), then clear this task with "
                f"Downstream (Clear → Downstream)."
            )
        log(f"lease of {current['dag_id']} / {current['run_id']} ({current.get('phase')}) is stale "
            f"(that run is no longer active): taken over by {dag_id} / {run_id}")
    if current and (current.get("dag_id"), current.get("run_id")) == (dag_id, run_id):
        return current
    mine = {"dag_id": dag_id, "run_id": run_id, "phase": phase, "since": utc_now_iso()}
    staging.write_json(lease_path(root), mine)
    back = read_lease(root)
    if not back or (back.get("dag_id"), back.get("run_id")) != (dag_id, run_id):
        raise LeaseHeld(f"migration {root.name!r}: {back and back.get('dag_id')} / {back and back.get('run_id')} "
                        "took the lease at the same moment.\nOnce that run has finished, clear this task with Downstream "
                        "(Clear → Downstream).")
    return mine


def release(root: Any, *, dag_id: str, run_id: str) -> bool:
    """Release the lease if this run holds it; True when released."""
    current = read_lease(root)
    if not current or (current.get("dag_id"), current.get("run_id")) != (dag_id, run_id):
        return False
    lease_path(root).unlink()
    return True
