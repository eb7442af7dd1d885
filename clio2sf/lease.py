"""One writer per migration: a lease file ``<migration root>/lease.json`` naming the run that writes.

Discover (its staged describes and mapping document, and the schema plan it may apply), the
extraction of the record objects, the user resolution, the sample, the full load, a delta window and
a rollback (not a dry run) each write the migration's staging files, and the last four Salesforce, its ledger and its watermarks. Two of them at once would interleave writes (a delta
updating what a rollback is deleting, two extractions of one object), so every writing task *holds*
the lease first:

* free, or held by this same run: taken (re-taken by a retried or cleared task of that run);
* held by another run that is still active (queued or running): refused, naming that run, its
  phase and since when;
* held by a run that is no longer active (failed, succeeded, deleted): stale, taken over (the
  takeover is logged). Only when that is known: the Airflow side raises, and the task is retried,
  when it cannot read the holder run's state. Clearing tasks of that old run later makes it hold the lease again, so it
  waits for the new holder.

Each writing phase releases it once its writes are done (the full load in ``reconcile``, a delta window
in ``commit_watermarks``, the sample in ``diff_sample``, discover in ``apply_schema``). ``is_active(holder)`` is supplied by the caller
(the Airflow side asks the API server for the holder run's state).

Documents are the exception: their extraction goes on beside the user resolution, the sample and
the full load (which uploads each committed document batch as it arrives), so it does not hold this
lease but one of its own, ``documents_lease.json`` (:data:`DOCUMENTS_LEASE`, the same rules), which
keeps two extractions of one migration from downloading into the same ``raw/documents/`` at once.

Taking it is a write followed by a read-back (the same on a local disk and on object storage):
two runs starting within milliseconds could both pass the check; the read-back makes the loser
fail unless both writes land before either reads. The phase DAGs run several migrations at once
(``max_active_runs`` above 1); the lease keeps the writers of one migration apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from clio2sf import staging
from clio2sf.ledger import utc_now_iso

LEASE_FILE = "lease.json"
#: The documents extraction's own lease: it runs beside the other phases, never beside itself.
DOCUMENTS_LEASE = "documents_lease.json"


class LeaseHeld(RuntimeError):
    """Another active run writes this migration; the message names it."""


def lease_path(root: Any, name: str = LEASE_FILE) -> Any:
    return root / name


def read_lease(root: Any, name: str = LEASE_FILE) -> dict[str, Any] | None:
    path = lease_path(root, name)
    if not path.exists():
        return None
    with path.open("rb") as fh:
        try:
            return json.loads(fh.read())
        except json.JSONDecodeError:
            return None


def hold(root: Any, *, dag_id: str, run_id: str, phase: str, is_active: Callable[[str, str], bool],
         log: Callable[[str], None] = lambda m: None, name: str = LEASE_FILE) -> dict[str, Any]:
    """Take or keep the migration's lease ``name`` for ``dag_id``/``run_id``; raise :class:`LeaseHeld` if
    another run writes."""
    current = read_lease(root, name)
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
    staging.write_json(lease_path(root, name), mine)
    back = read_lease(root, name)
    if not back or (back.get("dag_id"), back.get("run_id")) != (dag_id, run_id):
        raise LeaseHeld(f"migration {root.name!r}: {back and back.get('dag_id')} / {back and back.get('run_id')} "
                        "took the lease at the same moment.\nOnce that run has finished, clear this task with Downstream "
                        "(Clear → Downstream).")
    return mine


def release(root: Any, *, dag_id: str, run_id: str, name: str = LEASE_FILE) -> bool:
    """Release the lease ``name`` if this run holds it; True when released."""
    current = read_lease(root, name)
    if not current or (current.get("dag_id"), current.get("run_id")) != (dag_id, run_id):
        return False
    lease_path(root, name).unlink()
    return True
