"""An approval with teeth: Reject fails the phase, names who and why, and revokes that hash's approval."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

REASON = "reason"


def responder_name(responded_by: Any) -> str:
    """The responder's name from a HITL answer (``{"id": ..., "name": ...}``), as Airflow's auth knows them."""
    if isinstance(responded_by, dict):
        return str(responded_by.get("name") or responded_by.get("id") or "unknown")
    return str(responded_by or "unknown")


class MigrationApprovalOperator(ApprovalOperator):
    """``ApprovalOperator`` whose **Reject** fails the task (and so the run).

    On Reject it records the rejection (who, when, the ``reason`` typed in the form) in
    ``<migration>/approvals/<kind>.yaml``, which revokes any earlier approval of the same mapping
    hash, so a later phase refuses to start; then it fails with a message naming the responder
    and the reason. On Approve the downstream ``record_*_approval`` task stores the approval.

    :param kind: ``mapping`` or ``sample`` (the approvals file).
    """

    def __init__(self, *, kind: str, **kwargs: Any) -> None:
        kwargs.setdefault("params", {REASON: Param(None, type=["null", "string"], title="Reason (required to reject)",
                                                   description="Why you reject; recorded with your name")})
        super().__init__(**kwargs)
        self.kind = kind

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        answer = HITLOperator.execute_complete(self, context=context, event=event)
        chosen = answer["chosen_options"][0]
        self.hitl_summary_extra["approved"] = chosen == self.APPROVE
        if chosen == self.APPROVE:
            self.log.info("%s approved by %s", self.kind, responder_name(answer["responded_by_user"]))
            return answer
        who = responder_name(answer["responded_by_user"])
        reason = ((answer.get("params_input") or {}).get(REASON) or "").strip() or "no reason given"
        entry = _record_rejection(context, self.kind, who, reason, answer.get("responded_at"))
        raise AirflowFailException(
            f"{self.kind} rejected by {who} at {entry['at']}: {reason}\n"
            f"The approval of mapping hash {entry['hash'][:12]} is revoked: the next phase refuses to start. "
            f"Fix what was rejected and run this phase again for a new approval."
        )


def _record_rejection(context: Context, kind: str, who: str, reason: str, at: Any) -> dict[str, Any]:
    from clio2sf.mapping.confirm import reject
    from clio2sf_airflow.phases.common import approval_store, firm_spec, mroot

    p = dict(context["params"])
    return reject(firm_spec(p["firm"]), who, reason, at, approval_store(mroot(p), kind))
