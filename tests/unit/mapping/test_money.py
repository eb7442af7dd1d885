"""The money trail's transforms: allocations, credit memos, interest, client balances, PI records."""

from __future__ import annotations

import pytest

from tests.unit.mapping.conftest import by_sid, lookup_all, run

pytestmark = pytest.mark.unit


def env(obj: str, kind: str, data: dict) -> dict:
    return {"object": obj, "source_system_id": f"{kind}-{data['id']}", "clio_id": data["id"],
            "original_create_date": "2024-01-02T10:00:00-05:00", "data": {"created_at": "2024-01-02T10:00:00-05:00",
                                                                           **data}}


def lookup() -> dict:
    return lookup_all() | {"credit_memos": {31: {}}}


def test_allocations_become_payments_on_the_bill(spec, users) -> None:
    items = [
        env("allocations", "allocation", {
            "id": 1, "date": "2024-02-01", "amount": 600.0, "interest": False, "voided_at": None,
            "bill": {"id": 555, "number": "1042"}, "matter": {"id": 7}, "contact": {"id": 9001, "type": "Person"},
            "source_bank_account": {"id": 602, "name": "IOLTA Trust", "type": "Trust"},
            "destination_bank_account": {"id": 601, "name": "Operating", "type": "Operating"},
            "parent": {"id": 70001, "type": "Payment", "identifier": "Payment 70001"}}),
        env("allocations", "allocation", {
            "id": 2, "date": "2024-02-03", "amount": 50.0, "voided_at": None, "description": "Courtesy discount",
            "bill": {"id": 555, "number": "1042"}, "matter": {"id": 7}, "contact": {"id": 9001, "type": "Person"},
            "parent": {"id": 31, "type": "CreditMemo", "identifier": "Credit memo 31"}}),
        env("allocations", "allocation", {
            "id": 3, "date": "2024-02-05", "amount": 10.0, "voided_at": "2024-02-06T09:00:00-05:00",
            "bill": {"id": 555}, "matter": {"id": 7}, "contact": {"id": 9001}, "parent": {"id": 70002, "type": "Payment"}}),
    ]
    rows, rejects = run("allocations", spec, users, lookup=lookup(), items=items)
    assert rejects == []
    r = by_sid(rows)
    pay = r["allocation-1"]["row"]
    assert r["allocation-1"]["sobject"] == "Clio_Payment__c"
    assert pay["Clio_Billing__r.Clio_Id__c"] == "bill-555" and pay["Clio_Kind__c"] == "Payment"
    assert pay["Clio_Amount__c"] == 600.0 and pay["Clio_Source_Account_Type__c"] == "Trust"
    assert pay["Case__r.Clio_Id__c"] == "matter-7" and pay["Contact__r.Clio_Id__c"] == "contact-9001"
    assert pay["Name"] == "Payment 70001 on invoice 1042"
    memo = r["allocation-2"]["row"]
    assert memo["Clio_Kind__c"] == "Credit Memo" and memo["Clio_Credit_Memo__r.Clio_Id__c"] == "credit_memo-31"
    assert r["allocation-3"]["row"]["Clio_Voided_At__c"]  # kept, marked voided: nothing is dropped


@pytest.mark.parametrize("change, rule", [
    ({"bill": None}, "orphan_reference"),
    ({"bill": {"id": 999}}, "orphan_reference"),
    ({"parent": {"id": 77, "type": "CreditMemo"}}, "orphan_reference"),  # its credit memo was not extracted
    ({"parent": {"id": 1, "type": "Refund"}}, "unknown_value"),
])
def test_an_allocation_that_cannot_be_placed_is_quarantined(spec, users, change, rule) -> None:
    data = {"id": 9, "date": "2024-02-01", "amount": 5.0, "bill": {"id": 555}, "matter": {"id": 7},
            "contact": {"id": 9001}, "parent": {"id": 1, "type": "Payment"}} | change
    rows, rejects = run("allocations", spec, users, lookup=lookup(), items=[env("allocations", "allocation", data)])
    assert rows == [] and [x["rule"] for x in rejects if x.get("repair") is None] == [rule]


def test_credit_memos_interest_balances_and_pi_records(spec, users) -> None:
    cases = [
        ("credit_memos", "credit_memo", {"id": 31, "date": "2024-02-03", "amount": 50.0, "discount": True,
                                         "user": {"id": 1001, "name": "Ann"}, "contact": {"id": 9000, "type": "Company"}},
         "Clio_Credit_Memo__c", {"Clio_Amount__c": 50.0, "Account__r.Clio_Id__c": "contact-9000"}),
        ("interest_charges", "interest_charge", {"id": 4, "date": "2024-03-01", "total": 12.5, "bill": {"id": 555},
                                                 "matters": [{"id": 7}]},
         "Clio_Interest_Charge__c", {"Clio_Amount__c": 12.5, "Clio_Billing__r.Clio_Id__c": "bill-555",
                                     "Case__r.Clio_Id__c": "matter-7"}),
        ("outstanding_client_balances", "outstanding_client_balance",
         {"id": 9001, "total_outstanding_balance": 265.0, "contact": {"id": 9001, "name": "Jane Q Doe"},
          "outstanding_bills": [{"id": 555, "number": "1042"}, {"id": 556, "number": "1043"}]},
         "Clio_Client_Balance__c", {"Clio_Total_Outstanding__c": 265.0, "Contact__r.Clio_Id__c": "contact-9001",
                                    "Clio_Outstanding_Bills__c": 2, "Clio_Outstanding_Bill_Numbers__c": "1042, 1043"}),
        ("damages", "damage", {"id": 5, "amount": 9000.0, "damage_type": "special", "description": "Lost wages",
                               "matter": {"id": 7}},
         "Clio_Damage__c", {"Clio_Damage_Type__c": "Special", "Name": "Lost wages", "Case__r.Clio_Id__c": "matter-7"}),
        ("medical_records_details", "medical_records_detail",
         {"id": 6, "description": "Physical therapy", "medical_provider": {"id": 9000, "name": "Acme Clinic"},
          "treatment_start_date": "2024-01-05T00:00:00-05:00", "matter": {"id": 7},
          "medical_bills": [{"id": 61, "name": "Invoice", "amount": 300.0}]},
         "Clio_Medical_Record__c", {"Clio_Provider__c": "Acme Clinic", "Case__r.Clio_Id__c": "matter-7"}),
    ]
    for name, kind, data, sobject, expect in cases:
        rows, rejects = run(name, spec, users, lookup=lookup(), items=[env(name, kind, data)])
        assert [x for x in rejects if x.get("repair") is None] == [], name
        (row,) = rows
        assert row["sobject"] == sobject and row["row"]["Clio_Id__c"] == f"{kind}-{data['id']}"
        assert {k: row["row"].get(k) for k in expect} == expect, name
