"""The firm's books: groups, currencies, trust deposits, payments and their allocations, credit
memos, interest charges and the balances Clio derives from them.

Everything ties out the way Clio's ledger does, so a migration can be checked against it:

* per bill: ``paid`` (valid payment allocations) + ``credits_issued`` (credit memo allocations) +
  ``balance`` = ``total`` (which includes interest charges); a voided allocation counts for nothing;
* per matter: the trust bank transactions sum to the matter's Trust ``account_balances`` entry,
  and a trust balance never goes below zero (a payment from trust never exceeds the funds held);
* every payment from trust is a trust withdrawal, an operating deposit, a trust line item on the
  bill and an allocation whose ``source_bank_account`` is the trust account.

Draws come from the builder's second generator (``brng``), so adding to the books never changes
the contacts, matters or documents a seed produces.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from sandbox.clio.store import iso

if TYPE_CHECKING:
    from sandbox.clio.firm import FirmBuilder

CURRENCIES = (("USD", "$"), ("CAD", "$"), ("EUR", "€"), ("GBP", "£"))
PAYMENT_SOURCES = ("Check", "Credit Card", "EFT", "Wire")


def add_reference(b: FirmBuilder, t0: float) -> None:
    """Currencies, bill themes and groups (every user's own group, teams, the firm group)."""
    for i, (code, sign) in enumerate(CURRENCIES):
        b.add("currencies", {"id": i + 1, "code": code, "sign": sign}, t0, t0)
    for i, name in enumerate(("Default", "Modern")):
        b.add("bill_themes", {"id": i + 1, "account_id": 1, "default": i == 0, "name": name,
                              "config": '{"font":"Helvetica","logo":false}'}, t0, t0)
    users = b.user_recs
    firm = b.add("groups", {"id": 1, "name": "Harlow & Vance LLP", "type": "AccountGroup",
                            "client_connect_user": False, "users": [{"id": u["id"]} for u in users]}, t0, t0)
    teams = [("Litigation Team", [u for u in users if u["subscription_type"] == "Attorney"][:4]),
             ("Billing", [u for u in users if "billing" in u["roles"] or "admin" in u["roles"]])]
    for i, (name, members) in enumerate(teams):
        b.add("groups", {"id": 2 + i, "name": name, "type": "TeamGroup", "client_connect_user": False,
                         "users": [{"id": u["id"]} for u in members]}, t0, t0)
    for u in users:
        b.add("groups", {"id": 100 + u["id"] - 1000, "name": u["name"], "type": "UserGroup",
                         "client_connect_user": False, "users": [{"id": u["id"]}]}, t0, t0)
    b.groups = b.data["groups"]
    b.firm_group = firm
    for u in users:
        u["groups"] = [{"id": g["id"]} for g in b.groups if any(m["id"] == u["id"] for m in g["users"])]


def group_members(b: FirmBuilder, group_id: int) -> set[int]:
    return {m["id"] for g in b.groups if g["id"] == group_id for m in g["users"]}


def add_group_rates(b: FirmBuilder) -> None:
    """Client rates for a team (Clio applies the highest rate of the user's groups)."""
    team = b.groups[1]
    for c in b.clients[1::7][:3]:
        b.add("activity_rates", {"id": b.nid("arate", 1), "rate": 410.0, "flat_rate": False, "contact_id": c["id"],
                                 "co_counsel_contact_id": None, "user": None,
                                 "group": {"id": team["id"], "name": team["name"]}},
              c["_created_ts"], c["_updated_ts"])  # no draw: the rest of the firm stays what the seed made


class _Ledger:
    """Running trust funds per matter while payments are drawn."""

    def __init__(self) -> None:
        self.trust: dict[int, float] = defaultdict(float)
        self.first_deposit: dict[int, float] = {}


def add_books(b: FirmBuilder) -> None:
    """Trust deposits (the same draws as ever), then payments, credits and interest per bill."""
    r = b.rng
    trust_acc, op_acc = b.data["bank_accounts"][1], b.data["bank_accounts"][0]
    ledger = _Ledger()
    for m in b.matter_recs:
        if r.random() > 0.6:
            continue
        created, updated = b.times(m["_created_ts"])
        amount = float(r.choice((1000, 2500, 5000, 10000)))
        _deposit(b, m, trust_acc, amount, created, ledger, updated, r.choice(("Check", "Wire", "Credit Card")),
                 f"C{r.randint(10000, 99999)}")
    matters = {m["id"]: m for m in b.matter_recs}
    for bill in b.data["bills"]:
        _settle(b, bill, matters[bill["matters"][0]["id"]], ledger, trust_acc, op_acc)
    _balances(b)


def _deposit(b: FirmBuilder, m: dict, trust_acc: dict, amount: float, ts: float, ledger: _Ledger,
             updated: float | None = None, source: str = "Check", confirmation: str | None = None) -> None:
    b.add("bank_transactions", {
        "id": b.nid("btx", 1), "type": "BankTransaction", "transaction_type": "Deposit",
        "bank_account_id": trust_acc["id"], "date": b.day(ts), "amount": amount, "funds_in": amount,
        "funds_out": 0.0, "currency": "USD", "description": "Retainer deposit", "exchange_rate": 1.0,
        "source": source, "confirmation": confirmation, "client": _client(m), "matter": b.ref(m, "display_number"),
        "bill": None, "allocation": None, "clio_payments_transaction": False, "read_only_confirmation": False,
    }, ts, updated or ts)
    ledger.trust[m["id"]] += amount
    ledger.first_deposit.setdefault(m["id"], ts)


def _client(m: dict) -> dict:
    return {"id": m["client"]["id"], "etag": None, "name": m["client"]["name"]}


def _settle(b: FirmBuilder, bill: dict, m: dict, ledger: _Ledger, trust_acc: dict, op_acc: dict) -> None:
    r = b.brng
    total = bill["total"]
    # The first two bills awaiting or paid show every case even in the tiny firm: a credit, a payment
    # split between trust and operating, interest on what is left; a bounced cheque paid again.
    k = b.seq["settled"] if bill["state"] in ("awaiting_payment", "paid") else -1
    b.seq["settled"] += k >= 0
    bill.update(paid=0.0, credits_issued=0.0, balance=total, pending=0.0, interest=None,
                balances=[], matter_totals=[{"id": m["id"], "amount": total}])
    if bill["state"] not in ("awaiting_payment", "paid"):
        bill["balances"] = [{"id": m["id"], "amount": total, "type": "Matter", "interest_amount": 0.0, "due": total}]
        return
    issued = bill["_created_ts"]
    credit = round(total * r.choice((0.05, 0.1, 0.15)), 2) if r.random() < 0.2 or k == 0 else 0.0
    if bill["state"] == "paid":
        to_pay = round(total - credit, 2)
    else:
        to_pay = round((total - credit) / 2, 2) if bill.pop("_partial", False) or k in (0, 1) else 0.0
    bill.pop("_partial", None)
    if k == 0 and ledger.trust.get(m["id"], 0.0) <= 0 and to_pay:
        _deposit(b, m, trust_acc, round(to_pay / 2, 2), issued + 86400, ledger)
    if credit:
        _credit_memo(b, bill, m, credit, issued + 5 * 86400)
    pay_ts = min(issued + r.uniform(10, 25) * 86400, b.END_TS - 3600)
    if to_pay and (r.random() < 0.08 or k == 1):  # a bounced cheque: paid, voided, then paid again
        _payment(b, bill, m, to_pay, pay_ts - 3 * 86400, None, op_acc, voided_at=pay_ts - 86400)
    paid = 0.0
    held = ledger.trust.get(m["id"], 0.0)
    if to_pay and held > 0 and ledger.first_deposit.get(m["id"], pay_ts) < pay_ts and (r.random() < 0.8 or k == 0):
        from_trust = round(min(held, to_pay if k else to_pay / 2), 2)
        _payment(b, bill, m, from_trust, pay_ts, trust_acc, op_acc)
        ledger.trust[m["id"]] = round(held - from_trust, 2)
        paid += from_trust
    rest = round(to_pay - paid, 2)
    if rest > 0:
        _payment(b, bill, m, rest, pay_ts + 3600, None, op_acc)
        paid += rest
    interest = 0.0
    outstanding = round(total - credit - paid, 2)
    if bill["state"] == "awaiting_payment" and outstanding > 0 and (r.random() < 0.3 or k in (0, 1)):
        interest = round(outstanding * 0.015, 2)
        _interest_charge(b, bill, m, interest, issued + 31 * 86400)
    bill["total"] = bill["due"] = round(total + interest, 2)
    bill["paid"] = round(paid, 2)
    bill["credits_issued"] = credit
    bill["balance"] = round(bill["total"] - bill["paid"] - credit, 2) + 0.0
    bill["balances"] = [{"id": m["id"], "amount": bill["balance"], "type": "Matter", "interest_amount": interest,
                         "due": bill["balance"]}]
    bill["matter_totals"] = [{"id": m["id"], "amount": bill["total"]}]
    if interest:
        bill["interest"] = {"balance": outstanding, "period": 30, "rate": 1.5, "total": interest, "type": "simple"}
    if bill["state"] == "paid":
        bill["paid_at"] = iso(pay_ts + 3600)


def _allocation(b: FirmBuilder, bill: dict, m: dict, amount: float, ts: float, parent: dict, source: dict | None,
                dest: dict | None, description: str | None = None, voided_at: float | None = None) -> dict:
    return b.add("allocations", {
        "id": b.nid("alloc", 1), "date": b.day(ts), "amount": amount, "interest": False,
        "voided_at": iso(voided_at) if voided_at else None, "description": description,
        "has_online_payment": False, "destroyable": voided_at is None, "payment_type": None,
        "bill": b.ref(bill, "number"), "matter": b.ref(m, "display_number"), "contact": _client(m),
        "source_bank_account": b.ref(source, "name", "type") if source else None,
        "destination_bank_account": b.ref(dest, "name", "type") if dest else None, "parent": parent,
    }, ts, voided_at or ts)


def _payment(b: FirmBuilder, bill: dict, m: dict, amount: float, ts: float, trust_acc: dict | None, op_acc: dict,
             voided_at: float | None = None) -> None:
    """One payment of ``amount`` on ``bill``: from trust when ``trust_acc`` is given, else a client payment
    into operating; its allocation, bank transactions and (from trust) trust line item."""
    pid = b.nid("payment", 70001)
    parent = {"id": pid, "type": "Payment", "identifier": f"Payment {pid}", "secondary_identifier": bill["number"],
              "tertiary_identifier": None}
    alloc = _allocation(b, bill, m, amount, ts, parent, trust_acc, op_acc, voided_at=voided_at)
    link = {"id": alloc["id"], "etag": None}
    common = {"type": "BankTransaction", "currency": "USD", "exchange_rate": 1.0, "client": _client(m),
              "matter": b.ref(m, "display_number"), "bill": b.ref(bill, "number"), "allocation": link,
              "clio_payments_transaction": False, "read_only_confirmation": True, "confirmation": None}
    if trust_acc is not None:
        b.add("bank_transactions", common | {
            "id": b.nid("btx", 1), "transaction_type": "Withdrawal", "bank_account_id": trust_acc["id"],
            "date": b.day(ts), "amount": -amount, "funds_in": 0.0, "funds_out": amount,
            "description": f"Payment of bill {bill['number']} from trust", "source": "Trust transfer"}, ts, ts)
        b.add("trust_line_items", {"id": b.nid("tli", 1), "date": b.day(ts), "total": amount,
                                   "note": "Applied from trust", "bill": b.ref(bill, "number"),
                                   "matter": b.ref(m, "display_number"), "client": _client(m)}, ts, ts)
    source = "Trust transfer" if trust_acc is not None else b.brng.choice(PAYMENT_SOURCES)
    b.add("bank_transactions", common | {
        "id": b.nid("btx", 1), "transaction_type": "Deposit", "bank_account_id": op_acc["id"], "date": b.day(ts),
        "amount": amount, "funds_in": amount, "funds_out": 0.0, "source": source,
        "description": f"Payment of bill {bill['number']}"}, ts, ts)
    if voided_at is not None:
        b.add("bank_transactions", common | {
            "id": b.nid("btx", 1), "transaction_type": "Withdrawal", "bank_account_id": op_acc["id"],
            "date": b.day(voided_at), "amount": -amount, "funds_in": 0.0, "funds_out": amount, "source": source,
            "description": f"Returned payment on bill {bill['number']} (voided)"}, voided_at, voided_at)


def _credit_memo(b: FirmBuilder, bill: dict, m: dict, amount: float, ts: float) -> None:
    cid = b.nid("credit_memo", 1)
    description = b.brng.choice(("Courtesy discount", "Write-down of research time", "Billing error correction"))
    parent = {"id": cid, "type": "CreditMemo", "identifier": f"Credit memo {cid}",
              "secondary_identifier": bill["number"], "tertiary_identifier": None}
    alloc = _allocation(b, bill, m, amount, ts, parent, None, None, description)
    attorney = (m.get("responsible_attorney") or {}).get("id")
    b.add("credit_memos", {"id": cid, "date": b.day(ts), "amount": amount, "description": description,
                           "discount": description == "Courtesy discount", "voided_at": None,
                           "user": {"id": attorney} if attorney else None, "contact": _client(m),
                           "allocations": [{"id": alloc["id"]}]}, ts, ts)


def _interest_charge(b: FirmBuilder, bill: dict, m: dict, amount: float, ts: float) -> None:
    ts = min(ts, b.END_TS - 60)
    b.add("interest_charges", {"id": b.nid("interest", 1), "date": b.day(ts),
                               "description": "Interest on overdue balance (1.5% per 30 days)", "total": amount,
                               "bill": b.ref(bill, "number"), "matters": [b.ref(m, "display_number")],
                               "balances": [{"id": m["id"], "amount": amount, "type": "Matter",
                                             "interest_amount": amount, "due": amount}]}, ts, ts)


def _balances(b: FirmBuilder) -> None:
    """Running account balances on each transaction, account totals, matter and contact trust balances."""
    accounts = {a["id"]: a for a in b.data["bank_accounts"]}
    for a in accounts.values():
        a["balance"] = 0.0
    txs = sorted(b.data["bank_transactions"], key=lambda t: (t["date"], t["_created_ts"], t["id"]))
    by_matter: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    by_client: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for t in txs:
        acc = accounts[t["bank_account_id"]]
        acc["balance"] = round(acc["balance"] + t["amount"], 2)
        t["current_account_balance"] = acc["balance"]
        if acc["type"] == "Trust":
            by_matter[t["matter"]["id"]][acc["id"]] += t["amount"]
            by_client[t["client"]["id"]][acc["id"]] += t["amount"]
    for recs, sums in ((b.matter_recs, by_matter), (b.data["contacts"], by_client)):
        for rec in recs:
            rec["account_balances"] = [{"id": aid, "balance": round(v, 2), "type": "Trust",
                                        "name": accounts[aid]["name"]} for aid, v in sorted(sums[rec["id"]].items())]
    for a in accounts.values():
        a["bank_transactions_count"] = sum(1 for t in txs if t["bank_account_id"] == a["id"])
