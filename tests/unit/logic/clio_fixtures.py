"""Small, realistic staged Clio envelopes (architecture.md format) for the logic tests."""

from __future__ import annotations

import random
from typing import Any

PREFIX = {
    "contacts": "contact", "matters": "matter", "relationships": "relationship", "activities": "activity",
    "bills": "bill", "line_items": "line_item", "bank_transactions": "bank_transaction",
    "bank_accounts": "bank_account", "trust_line_items": "trust_line_item", "documents": "document",
    "calendar_entries": "calendar_entry", "tasks": "task", "matter_notes": "note", "contact_notes": "note",
    "communications": "communication", "users": "user",
}


def env(obj: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"object": obj, "source_system_id": f"{PREFIX[obj]}-{data['id']}", "clio_id": data["id"],
            "original_create_date": data.get("created_at", "2024-02-01T10:00:00-05:00"),
            "extracted_at": "2026-11-28T09:00:00Z", "data": data}


def small_firm() -> dict[str, list[dict[str, Any]]]:
    """Two clients (one person at a company), two matters, time/expense, a bill, trust money."""
    ts = "2024-02-01T10:00:00-05:00"
    return {
        "users": [env("users", {"id": 42, "name": "Ann Lawyer", "email": "ann@firm.example"})],
        "contacts": [
            env("contacts", {"id": 9000, "type": "Company", "name": "Acme LLC", "company": None,
                             "created_at": ts, "updated_at": ts}),
            env("contacts", {"id": 9001, "type": "Person", "name": "Jane Doe", "first_name": "Jane",
                             "last_name": "Doe", "company": {"id": 9000, "name": "Acme LLC"},
                             "primary_email_address": "jane@acme.example", "created_at": ts, "updated_at": ts}),
            env("contacts", {"id": 9002, "type": "Person", "name": "Bob Roe", "first_name": "Bob",
                             "last_name": "Roe", "company": None, "created_at": ts, "updated_at": ts}),
        ],
        "matters": [
            env("matters", {"id": 7, "display_number": "00007-Doe", "description": "Doe v. Smith",
                            "status": "Open", "open_date": "2024-02-01", "client": {"id": 9001, "name": "Jane Doe"},
                            "billable": True, "created_at": ts, "updated_at": ts}),
            env("matters", {"id": 8, "display_number": "00008-Roe", "description": "Roe estate",
                            "status": "Closed", "open_date": "2023-05-01", "client": {"id": 9002, "name": "Bob Roe"},
                            "billable": True, "created_at": ts, "updated_at": ts}),
        ],
        "relationships": [
            env("relationships", {"id": 70, "description": "Opposing Counsel", "matter": {"id": 7},
                                  "contact": {"id": 9002, "type": "Person"}}),
        ],
        "activities": [
            env("activities", {"id": 31, "type": "TimeEntry", "date": "2024-03-04", "quantity": 5400.0,
                               "quantity_in_hours": 1.5, "price": 300.0, "total": 450.0, "note": "Draft motion",
                               "matter": {"id": 7}, "user": {"id": 42}, "bill": {"id": 555}}),
            env("activities", {"id": 32, "type": "TimeEntry", "date": "2024-03-05", "quantity": 1800.0,
                               "quantity_in_hours": 0.5, "price": 300.0, "total": 150.0, "matter": {"id": 8},
                               "user": {"id": 42}, "bill": None}),
            env("activities", {"id": 33, "type": "ExpenseEntry", "date": "2024-03-06", "quantity": 1.0,
                               "price": 25.5, "total": 25.5, "matter": {"id": 7}, "user": {"id": 42},
                               "bill": {"id": 555}}),
        ],
        "bills": [
            env("bills", {"id": 555, "number": "INV-555", "state": "awaiting_payment", "total": 475.5,
                          "client": {"id": 9001}, "matters": [{"id": 7, "display_number": "00007-Doe"}]}),
        ],
        "bank_accounts": [
            env("bank_accounts", {"id": 1, "type": "Trust", "name": "IOLTA"}),
            env("bank_accounts", {"id": 2, "type": "Operating", "name": "Operating"}),
        ],
        "bank_transactions": [
            env("bank_transactions", {"id": 3, "bank_account_id": 1, "amount": 1000.0, "date": "2024-02-02",
                                      "client": {"id": 9001}, "matter": {"id": 7}}),
            env("bank_transactions", {"id": 4, "bank_account_id": 1, "amount": -250.25, "date": "2024-03-02",
                                      "client": {"id": 9001}, "matter": {"id": 7}}),
            env("bank_transactions", {"id": 5, "bank_account_id": 2, "amount": 475.5, "date": "2024-03-10",
                                      "client": {"id": 9001}, "matter": {"id": 7}, "bill": {"id": 555}}),
        ],
        "documents": [
            env("documents", {"id": 55, "name": "Complaint.pdf", "matter": {"id": 7}, "contact": None}),
        ],
        "tasks": [env("tasks", {"id": 12, "name": "File motion", "matter": {"id": 8}})],
    }


def synthetic_firm(n_clients: int = 300, seed: int = 1) -> dict[str, list[dict[str, Any]]]:
    """A bigger firm with every sampled object type and realistic parent links."""
    rnd = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in PREFIX}
    companies = list(range(100000, 100000 + n_clients // 5))
    for cid in companies:
        out["contacts"].append(env("contacts", {"id": cid, "type": "Company", "name": f"Co {cid}", "company": None}))
    people = list(range(200000, 200000 + n_clients))
    for pid in people:
        company = {"id": rnd.choice(companies)} if rnd.random() < 0.4 else None
        out["contacts"].append(env("contacts", {"id": pid, "type": "Person", "name": f"P {pid}", "company": company}))
    clients = companies + people
    matters = list(range(1, n_clients + 1))
    for m in matters:
        out["matters"].append(env("matters", {"id": m, "status": rnd.choice(["Open", "Closed", "Pending"]),
                                              "client": {"id": rnd.choice(clients)}}))
    rid = iter(range(1, 10**7))
    for m in matters:
        for _ in range(rnd.randint(0, 2)):
            out["relationships"].append(env("relationships", {"id": next(rid), "matter": {"id": m},
                                                              "contact": {"id": rnd.choice(people)}}))
        bill_id = 50000 + m
        out["bills"].append(env("bills", {"id": bill_id, "state": rnd.choice(["paid", "draft"]), "total": 100.0,
                                          "client": {"id": rnd.choice(clients)},
                                          "matters": [{"id": m}, {"id": rnd.choice(matters)}]}))
        for _ in range(rnd.randint(1, 6)):
            aid = next(rid)
            out["activities"].append(env("activities", {
                "id": aid, "type": rnd.choice(["TimeEntry", "ExpenseEntry"]), "total": 10.0, "matter": {"id": m},
                "vendor": {"id": rnd.choice(people)} if rnd.random() < 0.1 else None,
                "bill": {"id": bill_id} if rnd.random() < 0.5 else None}))
            if rnd.random() < 0.3:
                out["line_items"].append(env("line_items", {"id": next(rid), "bill": {"id": bill_id},
                                                            "matter": {"id": m}, "activity": {"id": aid}}))
        out["bank_transactions"].append(env("bank_transactions", {"id": next(rid), "amount": 5.0, "bank_account_id": 1,
                                                                  "matter": {"id": m}, "client": {"id": rnd.choice(clients)},
                                                                  "bill": {"id": bill_id}}))
        out["trust_line_items"].append(env("trust_line_items", {"id": next(rid), "bill": {"id": bill_id},
                                                                "matter": {"id": m}, "client": {"id": rnd.choice(clients)}}))
        out["documents"].append(env("documents", {"id": next(rid), "matter": {"id": m},
                                                  "contact": {"id": rnd.choice(people)} if rnd.random() < 0.2 else None}))
        series = next(rid)
        out["calendar_entries"].append(env("calendar_entries", {
            "id": series, "matter": {"id": m}, "parent_calendar_entry_id": None,
            "attendees": [{"id": rnd.choice(people), "type": "Contact"}, {"id": 42, "type": "User"}]}))
        out["calendar_entries"].append(env("calendar_entries", {"id": next(rid), "matter": None,
                                                                "parent_calendar_entry_id": series, "attendees": []}))
        out["tasks"].append(env("tasks", {"id": next(rid), "matter": {"id": m}}))
        out["matter_notes"].append(env("matter_notes", {"id": next(rid), "matter": {"id": m}}))
        out["contact_notes"].append(env("contact_notes", {"id": next(rid), "contact": {"id": rnd.choice(people)}}))
        out["communications"].append(env("communications", {
            "id": next(rid), "type": rnd.choice(["EmailCommunication", "PhoneCommunication"]), "matter": {"id": m},
            "senders": [{"id": 42, "type": "User"}], "receivers": [{"id": rnd.choice(people), "type": "Contact"}]}))
    out["users"].append(env("users", {"id": 42, "name": "Ann"}))
    return out
