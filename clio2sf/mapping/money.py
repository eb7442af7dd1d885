"""Transforms of the money trail and the personal-injury records.

Clio records which payment or credit paid which bill as *allocations* (the only payment history
its API exposes): one ``Clio_Payment__c`` row per allocation, a child of the bill
(``Clio_Billing__c``), with its kind (payment or credit memo), the bank accounts the money moved
between (a payment from trust has the trust account as source) and, for a voided allocation, when
it was voided.  The bill's lines (``line_items``: services and expenses as invoiced) and the trust
applied to it (``trust_line_items``) are children of the bill too.  Credit memos, interest charges and each client's outstanding balance land in their
own objects; damages and medical records of personal-injury matters hang off the matter.

Every object here is described by its spec block (fields and links); the handlers add what a spec
line cannot say.  ``handlers(generic)`` is called by :mod:`clio2sf.mapping.transform` with its
spec-driven handler factory, so this module never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

#: Clio object -> Salesforce objects its records become.
PRODUCES: dict[str, tuple[str, ...]] = {
    "allocations": ("Clio_Payment__c",),
    "credit_memos": ("Clio_Credit_Memo__c",),
    "interest_charges": ("Clio_Interest_Charge__c",),
    "line_items": ("Clio_Line_Item__c",),
    "trust_line_items": ("Clio_Trust_Line_Item__c",),
    "outstanding_client_balances": ("Clio_Client_Balance__c",),
    "damages": ("Clio_Damage__c",),
    "medical_records_details": ("Clio_Medical_Record__c",),
}
#: Staged objects each transform reads through its lookup (orphan checks, matter targets).
LOOKUP_NEEDS: dict[str, tuple[str, ...]] = {
    "allocations": ("matters", "contacts", "bills", "credit_memos"),
    "credit_memos": ("contacts",),
    "interest_charges": ("matters", "bills"),
    "line_items": ("matters", "bills"),
    "trust_line_items": ("matters", "contacts", "bills"),
    "outstanding_client_balances": ("contacts",),
    "damages": ("matters",),
    "medical_records_details": ("matters", "contacts"),
}
#: Salesforce objects in load order, after Clio_Billing__c and Ledger__c (their parents).
LOAD_ORDER: tuple[str, ...] = ("Clio_Credit_Memo__c", "Clio_Payment__c", "Clio_Interest_Charge__c",
                               "Clio_Line_Item__c", "Clio_Trust_Line_Item__c", "Clio_Client_Balance__c", "Clio_Damage__c", "Clio_Medical_Record__c")

Handler = Callable[..., Iterator[dict[str, Any]]]


def _credit_memo_ref(d: Mapping[str, Any]) -> str | None:
    parent = d.get("parent") or {}
    if parent.get("type") == "CreditMemo" and parent.get("id") is not None:
        return f"credit_memo-{parent['id']}"
    return None


def handlers(generic: Callable[[str], Handler], reject: Callable[..., Exception]) -> dict[str, Handler]:
    """The transform handlers of this module's Clio objects.

    :param generic: ``generic(spec key)``: the spec-driven handler (fields, matter and client links).
    :param reject: ``reject(field, rule, message)``: the exception that quarantines a record.
    """
    payment = generic("Clio_Payment__c")
    balance = generic("Clio_Client_Balance__c")

    def allocations(ctx, env, d, sid, issues, state) -> Iterator[dict[str, Any]]:
        if (d.get("bill") or {}).get("id") is None:
            raise reject("bill", "orphan_reference", f"{sid}: an allocation without a bill cannot be placed")
        memo = _credit_memo_ref(d)
        if memo is not None:
            known, rec = ctx.lookup.record("credit_memos", int(memo.split("-", 1)[1]))
            if known and rec is None:
                raise reject("parent", "orphan_reference", f"{sid}: parent {memo} was not extracted")
        for res in payment(ctx, env, d, sid, issues, state):
            if memo is not None:
                res["row"]["Clio_Credit_Memo__r.Clio_Id__c"] = memo
            yield res

    def client_balances(ctx, env, d, sid, issues, state) -> Iterator[dict[str, Any]]:
        for res in balance(ctx, env, d, sid, issues, state):
            bills = [b for b in d.get("outstanding_bills") or () if isinstance(b, Mapping)]
            res["row"]["Clio_Outstanding_Bills__c"] = len(bills)
            numbers = ", ".join(str(b.get("number") or b.get("id")) for b in bills)
            res["row"]["Clio_Outstanding_Bill_Numbers__c"] = numbers[:255] or None
            yield res

    return {
        "allocations": allocations,
        "credit_memos": generic("Clio_Credit_Memo__c"),
        "interest_charges": generic("Clio_Interest_Charge__c"),
        "line_items": generic("Clio_Line_Item__c"),
        "trust_line_items": generic("Clio_Trust_Line_Item__c"),
        "outstanding_client_balances": client_balances,
        "damages": generic("Clio_Damage__c"),
        "medical_records_details": generic("Clio_Medical_Record__c"),
    }
