"""Helpers every phase's task functions share: params, paths, the firm's spec and approvals."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import ObjectStoragePath, get_current_context
from airflow.sdk.exceptions import AirflowFailException

from clio2sf import lease, staging
from clio2sf.mapping.confirm import UnconfirmedMappingError, confirm, confirmation_for, require_confirmed
from clio2sf.mapping.spec import MappingSpec, SpecError, load_spec
from clio2sf_airflow.storage import migration_root

log = logging.getLogger(__name__)

#: What to do when a task fails for good: the same words in every error, the runbook and the DAG docs.
RESUME_ADVICE = (
    "To resume: fix the cause, then clear this task with Downstream (Airflow UI: Clear → Downstream, "
    "or POST /api/v2/dags/<dag>/clearTaskInstances with include_downstream); the rest of the run goes on "
    "from there, and rows already loaded are upserted by external id, never duplicated."
)


def params() -> dict[str, Any]:
    """The DAG run's params (firm, migration_id, phase options)."""
    return dict(get_current_context()["params"])


def run_id() -> str:
    return str(get_current_context()["run_id"])


def mroot(p: dict[str, Any] | None = None) -> ObjectStoragePath:
    p = p or params()
    return migration_root(p["firm"], p["migration_id"])


def firm_spec(firm: str) -> MappingSpec:
    """Load and validate the firm's merged mapping spec; a bad config fails the task for good."""
    try:
        return load_spec(firm)
    except (SpecError, FileNotFoundError, ValueError) as exc:
        raise AirflowFailException(f"firm config {firm!r}: {exc}") from exc


def approval_store(root: ObjectStoragePath, kind: str) -> ObjectStoragePath:
    """``<migration root>/approvals/<kind>.yaml``: who approved which mapping hash (or sample)."""
    return root / "approvals" / f"{kind}.yaml"


def require_mapping_confirmed(spec: MappingSpec, root: ObjectStoragePath) -> dict:
    """Refuse to move records under an unconfirmed or changed mapping."""
    try:
        return require_confirmed(spec, approval_store(root, "mapping"))
    except UnconfirmedMappingError as exc:
        raise AirflowFailException(
            f"{exc}. Approve it in the Airflow UI (mig_01_discover → approve_mapping) or with "
            f"`python -m scripts.approve mapping --firm {spec.firm} --migration-id <id> --by <you>`"
        ) from exc


def require_sample_approved(spec: MappingSpec, root: ObjectStoragePath) -> dict:
    """Refuse the full load without an approved sample for this same mapping hash."""
    try:
        return require_confirmed(spec, approval_store(root, "sample"))
    except UnconfirmedMappingError as exc:
        raise AirflowFailException(
            f"no approved sample for this mapping hash {spec.content_hash[:12]} (the sample's {exc}).\n"
            "Run mig_04_sample and approve its diff (UI: approve_sample, or "
            f"`python -m scripts.approve sample --firm {spec.firm} --migration-id <id> --by <you>`)"
        ) from exc


def require_records_extracted(root: ObjectStoragePath, p: dict[str, Any]) -> dict[str, Any]:
    """Refuse unless the extraction of the record objects is complete (``records_complete`` in
    ``raw/_extraction.json``, written by ``summarize_extraction``); documents may still be downloading."""
    extraction = staging.read_json(root / "raw" / "_extraction.json", default=None)
    if not extraction or not extraction.get("records_complete", extraction.get("complete")):
        state = "never finished" if not extraction else "is not complete (an object failed or was cut short)"
        raise AirflowFailException(
            f"firm {p['firm']!r}, migration {p['migration_id']!r}: the extraction of the record objects {state}: "
            "run mig_02_extract (or clear its failed extract_object task with Downstream) until "
            f"summarize_extraction succeeds, then run this phase again.\n{RESUME_ADVICE}"
        )
    return extraction


def record_hitl_approval(kind: str, approval_task_id: str) -> dict[str, Any]:
    """Store the HITL answer of ``approval_task_id`` as a confirmation of the current spec hash.

    When the approval step produced no answer (``airflow dags test`` marks HITL steps successful
    without one), nothing is recorded: the operator confirms later in the UI or with
    ``scripts.approve``, and the next phase checks.
    """
    context = get_current_context()
    p = dict(context["params"])
    spec = firm_spec(p["firm"])
    root = mroot(p)
    answer = context["ti"].xcom_pull(task_ids=approval_task_id)
    store = approval_store(root, kind)
    if answer and "Approve" in (answer.get("chosen_options") or []):
        by = answer.get("responded_by_user") or {}
        who = by.get("name") or by.get("id") if isinstance(by, dict) else str(by)
        entry = confirm(spec, who or "unknown", answer.get("responded_at"), store)
        log.info("%s approval recorded for hash %s by %s", kind, spec.content_hash[:12], entry["by"])
        return {"kind": kind, "hash": spec.content_hash, "recorded": True}
    existing = confirmation_for(spec, store)
    log.info(
        "no %s approval answer in this run; existing confirmation for hash %s: %s",
        kind,
        spec.content_hash[:12],
        "yes" if existing else "none (approve before the next phase)",
    )
    return {"kind": kind, "hash": spec.content_hash, "recorded": False, "already_confirmed": bool(existing)}


class LeaseCheckFailed(RuntimeError):
    """The state of the run holding the lease could not be read: the task is retried, never let in."""


#: DAG run states after which a run writes no more: only such a holder's lease is taken over.
FINISHED_STATES = ("success", "failed")


def _status_code(exc: Exception) -> int | None:
    """The HTTP status of a failed API call: in the error a task receives from its supervisor
    (``AirflowRuntimeError``), or on the response itself (``airflow dags test`` asks in-process)."""
    detail = getattr(getattr(exc, "error", None), "detail", None)
    if isinstance(detail, dict) and isinstance(detail.get("status_code"), int):
        return detail["status_code"]
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _run_active(dag_id: str, other_run_id: str) -> bool:
    """Whether that DAG run may still write (asked through the Task SDK).

    False only when the run is known finished (``success``/``failed``) or known gone (the API answers
    404: the run was deleted). Any other state counts as still writing (refused, naming it); an error
    reading it raises :class:`LeaseCheckFailed` (a retryable failure naming the holder run): a passing API
    error never lets a second writer in."""
    try:
        state = get_current_context()["ti"].get_dagrun_state(dag_id=dag_id, run_id=other_run_id)
    except Exception as exc:
        if _status_code(exc) == 404:
            log.warning("the run %s / %s holding the lease no longer exists: its lease is stale", dag_id, other_run_id)
            return False
        raise LeaseCheckFailed(
            f"the migration's lease is held by run {dag_id} / {other_run_id}, and its state could not be read "
            f"({type(exc).__name__}: {exc}): the check could not be made, so this run does not take the lease.\n"
            "The task is retried; if it keeps failing, check the API server, or wait for that run to finish and "
            "clear this task with Downstream (Clear → Downstream)."
        ) from exc
    name = str(state).lower().rsplit(".", 1)[-1]
    if name in FINISHED_STATES:
        return False
    if name not in ("queued", "running"):
        log.warning("run %s / %s is in state %r: treating it as still writing", dag_id, other_run_id, name)
    return True


def hold_lease(phase: str, *, name: str = lease.LEASE_FILE) -> dict[str, Any]:
    """Take (or keep) the migration's one-writer lease for this run; fail naming the run that holds it.

    ``name``: :data:`clio2sf.lease.DOCUMENTS_LEASE` for the documents extraction, which runs beside
    the other phases under a lease of its own."""
    context = get_current_context()
    try:
        return lease.hold(mroot(), dag_id=context["dag"].dag_id, run_id=run_id(), phase=phase,
                          is_active=_run_active, log=log.warning, name=name)
    except lease.LeaseHeld as exc:
        raise AirflowFailException(str(exc)) from exc


def hold_lease_on_extracted_records(phase: str, root: ObjectStoragePath, p: dict[str, Any]) -> dict[str, Any]:
    """Hold the writer lease, then refuse (releasing it) unless the record objects' extraction is complete.

    Checked under the lease: no extraction of this migration can be rewriting ``raw/`` meanwhile."""
    hold_lease(phase)
    try:
        return require_records_extracted(root, p)
    except AirflowFailException:
        release_lease()
        raise


def release_lease(*, name: str = lease.LEASE_FILE) -> bool:
    """Release the lease if this run holds it (the last task of a writing phase)."""
    context = get_current_context()
    released = lease.release(mroot(), dag_id=context["dag"].dag_id, run_id=run_id(), name=name)
    if released:
        log.info("released the migration's %s", "writer lease" if name == lease.LEASE_FILE else name)
    return released


def as_path(url: str) -> ObjectStoragePath:
    return ObjectStoragePath(url)
