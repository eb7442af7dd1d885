"""The rest of a working firm: document categories, custom field sets, calendar event types and
reminders, comments, conversations, personal-injury damages and medical records, UTBMS codes, log
entries, text snippets, task calendars, and the fields that tie them to matters, users and documents.

Runs after the core firm is built; draws come from the builder's ``brng``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sandbox.clio.store import iso

if TYPE_CHECKING:
    from sandbox.clio.firm import FirmBuilder

CATEGORIES = ("Templates", "Correspondence", "Pleadings", "Contracts", "Evidence", "Medical Records", "Invoices")
EVENT_TYPES = (("Court Date", "#FFA5A4"), ("Deadline", "#C75300"), ("Client Meeting", "#83D17F"),
               ("Deposition", "#009CEC"), ("Consultation", "#367B9C"))
CF_SETS = {
    "Matter": (("Litigation Details", ("Court", "Case Summary", "Statute Date", "Hearing Time", "Jury Trial",
                                       "Docket URL")),
               ("Intake", ("Claim Amount", "Referral Source", "Referring Contact", "Related Matter",
                           "Damages Estimate", "Opposing Party Email"))),
    "Contact": (("Profile", ("Preferred Language", "Client Since", "Background", "LinkedIn", "VIP")),
                ("Business", ("Credit Limit", "Employee Count", "Tax ID", "Best Call Time", "Referral Email",
                              "Spouse", "Primary Matter"))),
}
UTBMS = (
    (1, "ABA Litigation Code Set", (("L110", "Fact Investigation/Development", "UtbmsTask"),
                                    ("L120", "Analysis/Strategy", "UtbmsTask"), ("L210", "Pleadings", "UtbmsTask"),
                                    ("A101", "Plan and prepare for", "UtbmsActivity"),
                                    ("A102", "Research", "UtbmsActivity"), ("A103", "Draft/revise", "UtbmsActivity"))),
    (2, "ABA Expense Code Set", (("E101", "Copying", "UtbmsExpense"), ("E105", "Telephone", "UtbmsExpense"),
                                 ("E110", "Out-of-town travel", "UtbmsExpense"))),
)
PI_DAMAGES = (("special", "Past medical expenses"), ("special", "Lost wages"), ("general", "Pain and suffering"),
              ("other", "Property damage to vehicle"))
CAL_COLORS = ("#658CDA", "#DA6666", "#49B050", "#E7804C", "#8C66DA")
CAL_LIGHT = ("#5DA5C7", "#F95957", "#209412", "#FF7715", "#DE649D")


def add_extras(b: FirmBuilder) -> None:
    t0 = b.END_TS - 6 * 365 * 86400 - 86400 * 20  # with the other configuration records
    _users(b)
    _categories(b, t0)
    _custom_field_sets(b, t0)
    _utbms(b, t0)
    _matters(b)
    _calendar(b, t0)
    _reminders(b)
    _comments(b)
    _conversations(b)
    _personal_injury(b)
    _log_entries(b)
    _misc(b, t0)


def _users(b: FirmBuilder) -> None:
    for u in b.user_recs:
        uid = u["id"]
        u.update(clio_connect=False, court_rules_default_attendee=False, default_calendar_id=uid - 1001 + 801,
                 job_title={"id": 1 if u["subscription_type"] == "Attorney" else 2,
                            "name": "Attorney" if u["subscription_type"] == "Attorney" else "Staff",
                            "initials": "ATT" if u["subscription_type"] == "Attorney" else "STF"},
                 default_activity_description={"id": b.ads[0]["id"]},
                 notification_methods=[
                     {"id": uid * 10 + 1, "type": "Email", "email_address": u["email"], "is_default_email_address": True,
                      "created_at": u["created_at"], "updated_at": u["created_at"]},
                     {"id": uid * 10 + 2, "type": "Popup", "email_address": None, "is_default_email_address": False,
                      "created_at": u["created_at"], "updated_at": u["created_at"]}])
    for c in b.data["calendars"]:
        owner = next((u for u in b.user_recs if u["id"] - 1001 + 801 == c["id"]), None)
        c["_owner"] = {"id": owner["id"]} if owner else None
        c["creator"] = {"id": (owner or b.user_recs[0])["id"]}


def _categories(b: FirmBuilder, t0: float) -> None:
    r = b.brng
    for i, name in enumerate(CATEGORIES):
        b.add("document_categories", {"id": i + 1, "name": name}, t0, t0)
    cats = b.data["document_categories"]
    for d in b.data["documents"]:
        d["document_category"] = {"id": r.choice(cats[1:])["id"]} if r.random() < 0.75 else None
        d["creator"] = {"id": r.choice(b.user_recs)["id"], "type": "ManageUser"}
        d["external_properties"] = []
        d["latest_document_version"]["creator"] = d["creator"]
    for d in b.data["documents"][::9]:
        d["external_properties"] = [{"id": d["id"], "name": "dms_id", "value": f"DMS-{d['id']:06d}",
                                     "created_at": d["created_at"], "updated_at": d["created_at"]}]


def _custom_field_sets(b: FirmBuilder, t0: float) -> None:
    by_name = {(cf["parent_type"], cf["name"]): cf for cf in b.data["custom_fields"]}
    sid = 0
    sets: dict[str, list[dict]] = {}
    for parent, defs in CF_SETS.items():
        for name, fields in defs:
            sid += 1
            rec = b.add("custom_field_sets", {
                "id": sid, "name": name, "parent_type": parent, "displayed": True,
                "custom_fields": [{"id": by_name[(parent, f)]["id"]} for f in fields if (parent, f) in by_name]},
                t0, t0)
            sets.setdefault(parent, []).append(rec)
    for parent, recs in (("Matter", b.matter_recs), ("Contact", b.data["contacts"])):
        for rec in recs:
            rec["custom_field_set_associations"] = [
                {"id": s["id"], "display_order": i + 1, "created_at": rec["created_at"], "updated_at": rec["created_at"]}
                for i, s in enumerate(sets[parent])]


def _utbms(b: FirmBuilder, t0: float) -> None:
    cid = 0
    for set_id, name, codes in UTBMS:
        b.add("utbms/sets", {"id": set_id, "name": name, "enabled": set_id == 1}, t0, t0)
        for code, label, typ in codes:
            cid += 1
            b.add("utbms/codes", {"id": cid, "name": label, "code": code, "description": f"{code} {label}",
                                  "type": typ, "utbms_set_id": set_id}, t0, t0)


def _matters(b: FirmBuilder) -> None:
    folders = {(f.get("matter") or {}).get("id"): f for f in b.data["folders"] if f.get("matter")}
    trust = {t["matter"]["id"] for t in b.data["bank_transactions"] if t["transaction_type"] == "Deposit"
             and t["bank_account_id"] == b.data["bank_accounts"][1]["id"]}
    rels: dict[int, list[dict]] = {}
    for rel in b.data["relationships"]:
        rels.setdefault(rel["matter"]["id"], []).append({"id": rel["id"], "description": rel["description"]})
    for m in b.matter_recs:
        f = folders.get(m["id"])
        m["folder"] = {"id": f["id"]} if f else None
        m["group"] = {"id": 1}
        m["user"] = {"id": m["responsible_attorney"]["id"]}
        m["maildrop_address"] = f"matter-{m['id']}@maildrop.example"
        m["evergreen_retainer"] = ({"id": m["id"], "minimum_threshold": 1000.0, "created_at": m["created_at"],
                                    "updated_at": m["created_at"]} if m["id"] in trust and m["id"] % 3 == 0 else None)
        m["matter_budget"] = ({"id": m["id"], "budget": 25000.0, "include_expenses": True,
                               "notification_threshold": 80, "notify_users": True,
                               "created_at": m["created_at"], "updated_at": m["created_at"]}
                              if m["billing_method"] == "hourly" and m["id"] % 4 == 0 else None)
        m["relationships"] = rels.get(m["id"], [])


def _calendar(b: FirmBuilder, t0: float) -> None:
    r = b.brng
    for i, (name, color) in enumerate(EVENT_TYPES):
        b.add("calendar_entry_event_types", {"id": i + 1, "name": name, "color": color}, t0, t0)
    types = b.data["calendar_entry_event_types"]
    for e in b.data["calendar_entries"]:
        e["calendar_entry_event_type"] = {"id": r.choice(types)["id"]} if r.random() < 0.7 else None
        e["calendars"] = [{"id": e["calendar_owner_id"]}]
        e["time_entries_count"] = 0
    for u in b.user_recs[:5]:
        b.add("task_calendars", {"id": u["id"], "name": u["name"], "visible": True,
                                 "color": CAL_COLORS[u["id"] % 5], "light_color": CAL_LIGHT[u["id"] % 5]}, t0, t0)


def _reminders(b: FirmBuilder) -> None:
    r = b.brng
    users = {u["id"]: u for u in b.user_recs}
    for e in b.data["calendar_entries"]:
        e["reminders"] = []
        if r.random() >= 0.5:
            continue
        owner = users[e["calendar_owner_id"] - 801 + 1001]
        minutes = r.choice((15, 30, 60, 1440))
        start = e["_created_ts"] + 86400
        rec = _reminder(b, owner, minutes, {"id": int(e["id"]), "type": "CalendarEntry", "identifier": e["summary"],
                                            "secondary_identifier": None, "tertiary_identifier": None},
                        e["_created_ts"], start - minutes * 60, r.random() < 0.5)
        e["reminders"] = [{"id": rec["id"]}]
    for t in b.data["tasks"]:
        t["reminders"] = []
        t["time_entries_count"] = 0
        if r.random() >= 0.3:
            continue
        user = users.get(t["assignee"]["id"]) or b.user_recs[0]
        rec = _reminder(b, user, 1440, {"id": t["id"], "type": "Task", "identifier": t["name"],
                                        "secondary_identifier": None, "tertiary_identifier": None},
                        t["_created_ts"], t["_created_ts"] + 86400, True)
        t["reminders"] = [{"id": rec["id"]}]


def _reminder(b: FirmBuilder, user: dict, minutes: int, subject: dict, created: float, due: float,
              email: bool) -> dict:
    method = user["notification_methods"][0 if email else 1]
    delivered = due < b.END_TS
    return b.add("reminders", {
        "id": b.nid("reminder", 1), "duration": minutes, "state": "delivered" if delivered else "scheduled",
        "next_delivery_at": None if delivered else iso(due), "notification_method": dict(method),
        "subject": subject, "_user": {"id": user["id"]}}, created, min(max(created, due), b.END_TS))


def _comments(b: FirmBuilder) -> None:
    r = b.brng
    for d in b.data["documents"]:
        if r.random() >= 0.2:
            continue
        v = d["latest_document_version"]
        ts = d["_created_ts"] + 3600
        b.add("comments", {"id": b.nid("comment", 1), "message": r.choice(b.sentences),
                           "creator": {"id": r.choice(b.user_recs)["id"]},
                           "document_version": {k: v.get(k) for k in ("id", "uuid", "version_number", "filename",
                                                                       "size", "content_type", "received_at",
                                                                       "fully_uploaded")},
                           "_item": {"id": d["id"]}}, ts, ts)


def _conversations(b: FirmBuilder) -> None:
    r = b.brng
    for m in b.matter_recs:
        if r.random() >= 0.25:
            continue
        created = m["_created_ts"] + 2 * 86400
        cid = b.nid("conversation", 1)
        me = r.choice(b.user_recs)
        client = {"id": m["client"]["id"], "type": "Contact"}
        messages = []
        for k in range(r.randint(1, 4)):
            ts = created + k * 7200
            inbound = k % 2 == 1
            messages.append(b.add("conversation_messages", {
                "id": b.nid("conv_msg", 1), "date": b.day(ts), "body": r.choice(b.sentences),
                "sender": client if inbound else {"id": me["id"], "type": "User"},
                "receivers": [{"id": me["id"], "type": "User"} if inbound else client],
                "conversation": {"id": cid}, "document": None}, ts, ts))
        last = messages[-1]
        b.add("conversations", {
            "id": cid, "subject": r.choice(("Documents for your case", "Next steps", "Invoice question",
                                            "Hearing preparation")),
            "archived": False, "read_only": False, "current_user_is_member": True, "message_count": len(messages),
            "time_entries_count": 0, "read": r.random() < 0.7, "matter": b.ref(m, "display_number"),
            "first_message": {"id": messages[0]["id"]}, "last_message": {"id": last["id"]},
            "messages": [{"id": x["id"]} for x in messages], "documents": [],
            "memberships": [{"id": cid * 10 + 1, "read": True, "archived": False, "member": {"id": me["id"]},
                             "created_at": messages[0]["created_at"], "updated_at": last["updated_at"]}],
            "_contact_ids": [m["client"]["id"]]}, created, last["_created_ts"])


def _personal_injury(b: FirmBuilder) -> None:
    r = b.brng
    providers = [c for c in b.company_recs][:6]
    for m in b.matter_recs:
        if m["practice_area"]["name"] != "Personal Injury":
            continue
        ts = m["_created_ts"] + 86400
        for damage_type, description in r.sample(PI_DAMAGES, r.randint(1, 3)):
            b.add("damages", {"id": b.nid("damage", 1), "amount": float(r.randint(20, 900) * 100),
                              "damage_type": damage_type, "description": description,
                              "matter": b.ref(m, "display_number")}, ts, ts)
        for _ in range(r.randint(1, 2)):
            start = ts + r.randint(1, 60) * 86400
            end = start + r.randint(30, 300) * 86400
            rid = b.nid("medrec", 1)
            bills = [{"id": rid * 10 + k, "name": f"Invoice {rid}-{k}", "amount": float(r.randint(3, 60) * 100),
                      "adjustment": float(r.randint(0, 5) * 50), "bill_date": b.day(start + k * 86400 * 14),
                      "bill_received_date": b.day(start + k * 86400 * 14 + 7 * 86400), "damage_type": "special",
                      "document_id": None, "created_at": iso(ts), "updated_at": iso(ts)} for k in range(r.randint(1, 3))]
            records = [{"id": rid * 10 + k, "document_id": None, "start_date": iso(start), "end_date": iso(end),
                        "created_at": iso(ts), "updated_at": iso(ts)} for k in range(r.randint(1, 2))]
            b.add("medical_records_details", {
                "id": rid, "description": r.choice(("Emergency room", "Physical therapy", "Orthopedic surgeon",
                                                    "Chiropractor")),
                "in_treatment": end > b.END_TS, "treatment_start_date": iso(start),
                "treatment_end_date": iso(min(end, b.END_TS)),
                "records_status": r.choice(("requested", "received", "certified")),
                "bills_status": r.choice(("not_yet_requested", "requested", "received")),
                "records_request_date": iso(start + 7 * 86400), "records_follow_up_date": iso(start + 21 * 86400),
                "bills_request_date": iso(start + 7 * 86400), "bills_follow_up_date": None,
                "matter": b.ref(m, "display_number"), "medical_provider": b.ref(r.choice(providers), "name"),
                "medical_bills": bills, "medical_records": records}, ts, ts)


def _log_entries(b: FirmBuilder) -> None:
    r = b.brng
    for m in b.matter_recs[: max(5, len(b.matter_recs) // 4)]:
        ts = min(m["_updated_ts"] + 3600, b.END_TS)
        b.add("log_entries", {"id": b.nid("log", 1), "type": "MatterLogEntry", "accessed_at": iso(ts),
                              "item": {"id": m["id"], "type": "Matter", "identifier": m["display_number"],
                                       "secondary_identifier": None, "tertiary_identifier": None},
                              "user": {"id": r.choice(b.user_recs)["id"]}}, ts, ts)
    for c in b.clients[:5]:
        ts = min(c["_updated_ts"] + 3600, b.END_TS)
        b.add("log_entries", {"id": b.nid("log", 1), "type": "ContactLogEntry", "accessed_at": iso(ts),
                              "item": {"id": c["id"], "type": "Contact", "identifier": c["name"],
                                       "secondary_identifier": None, "tertiary_identifier": None},
                              "user": {"id": r.choice(b.user_recs)["id"]}}, ts, ts)


def _misc(b: FirmBuilder, t0: float) -> None:
    for i, (phrase, snippet) in enumerate((("ptc", "Please find attached the documents you requested."),
                                           ("thx", "Thank you for your instructions."),
                                           ("sol", "The statute of limitations runs on"))):
        b.add("settings/text_snippets", {"id": i + 1, "phrase": phrase, "snippet": snippet, "whole_word": True},
              t0, t0)
    lists = b.data["task_template_lists"]
    for tl in lists:
        tl["_template_count"] = sum(1 for t in b.data["task_templates"]
                                    if t["task_template_list"]["id"] == tl["id"])
        tl["creator"] = {"id": b.user_recs[0]["id"]}
    for d in b.data["documents"]:
        for v in d["_versions"]:
            v.setdefault("uuid", str(uuid.UUID(int=b.brng.getrandbits(128))))
