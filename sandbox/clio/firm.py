"""The seeded law firm: deterministic by seed, sized by preset, with optional dirty data.

Faker fills small pools of names and words once; records then draw from the pools with a
seeded ``random.Random`` so that even the xl preset (about a million records) generates quickly.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

from faker import Faker

from sandbox.clio import blobs
from sandbox.clio.config import PRESETS
from sandbox.clio.firm_books import add_books, add_group_rates, add_reference, group_members
from sandbox.clio.firm_extras import add_extras
from sandbox.clio.store import FIRM_TZ, Store, etag_of, iso
from sandbox.common.roster import staff

END_TS = datetime(2025, 12, 1, tzinfo=FIRM_TZ).timestamp()
START_TS = END_TS - 6 * 365 * 86400

PRACTICE_AREAS = (
    ("Litigation", "LIT", "civil_litigation"),
    ("Corporate", "CORP", "business_formation_and_compliance"),
    ("Real Estate", "RE", "real_estate"),
    ("Family Law", "FAM", "family"),
    ("Personal Injury", "PI", "personal_injury"),
    ("Estate Planning", "EST", "wills_and_estates"),
    ("Employment", "EMP", "employment_and_labor"),
    ("Immigration", "IMM", "immigration"),
)
STAGES = ("Intake", "Investigation", "Negotiation", "Trial Preparation", "Closing")
ROLES = ("Opposing Counsel", "Attorney", "Witness", "Expert", "Opposing Party", "Judge", "Adjuster", "Spouse")
ACTIVITY_DESCRIPTIONS = (
    ("Drafting", "hourly"), ("Court Appearance", "hourly"), ("Client Meeting", "hourly"),
    ("Research", "hourly"), ("Phone Call", "hourly"), ("Document Review", "hourly"),
    ("Will Package", "flat"), ("Incorporation Package", "flat"),
)
EXPENSE_CATEGORIES = (
    ("Filing Fees", 0, "hard_cost"), ("Courier", 25, "hard_cost"), ("Photocopies", 1, "soft_cost"),
    ("Mileage", 1, "soft_cost"), ("Expert Witness Fees", 0, "hard_cost"), ("Travel", 0, "unassociated"),
)
TASK_TYPES = ("Filing", "Follow-up", "Court Deadline", "Review", "Discovery")
BILL_STATES = ("draft", "awaiting_approval", "awaiting_payment", "paid", "void", "deleted")
DOC_KINDS = ("pdf", "docx", "txt", "html", "png")
RRULES = (
    "FREQ=WEEKLY;INTERVAL=1;BYDAY=MO",
    "FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=15",
    "FREQ=DAILY;INTERVAL=1;COUNT=10",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;UNTIL=20261231T000000Z",
)
CF_DEFS = {
    "Matter": (
        ("Court", "text_line"), ("Case Summary", "text_area"), ("Claim Amount", "currency"),
        ("Statute Date", "date"), ("Hearing Time", "time"), ("Jury Trial", "checkbox"),
        ("Opposing Party Email", "email"), ("Referral Source", "picklist"), ("Related Matter", "matter"),
        ("Referring Contact", "contact"), ("Docket URL", "url"), ("Damages Estimate", "numeric"),
    ),
    "Contact": (
        ("Preferred Language", "picklist"), ("Client Since", "date"), ("Background", "text_area"),
        ("LinkedIn", "url"), ("VIP", "checkbox"), ("Credit Limit", "currency"),
        ("Employee Count", "numeric"), ("Referral Email", "email"), ("Spouse", "contact"),
        ("Primary Matter", "matter"), ("Tax ID", "text_line"), ("Best Call Time", "time"),
    ),
}
PICKLISTS = {
    "Referral Source": ("Web", "Referral", "Advertising", "Existing Client", "Bar Association"),
    "Preferred Language": ("English", "Spanish", "French", "Mandarin"),
}
DEFECTS = (
    "invalid_email", "duplicate_contact", "missing_name", "overlong_string", "unicode_emoji",
    "malformed_date", "orphan_reference", "unknown_picklist_value", "malformed_rrule", "zero_byte_document",
)


def counts_for(preset: str | None = None, matters: int | None = None) -> int:
    """Number of matters for a preset or an explicit count."""
    if matters is not None:
        return matters
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    return PRESETS[preset]


class FirmBuilder:
    """Builds every collection into memory-light lists and writes them to the store."""

    END_TS = END_TS

    def __init__(self, seed: int, n_matters: int, dirty_rate: float = 0.0) -> None:
        self.seed = seed
        self.n = n_matters
        self.dirty_rate = dirty_rate
        self.rng = random.Random(seed)
        self.drng = random.Random(seed + 7919)
        self.brng = random.Random(seed * 7 + 3)  # the books and extras (firm_books, firm_extras)
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.first = [fake.first_name() for _ in range(400)]
        self.last = [fake.last_name() for _ in range(600)]
        self.companies = [fake.company() for _ in range(300)]
        self.streets = [fake.street_address() for _ in range(300)]
        self.cities = [(fake.city(), fake.state_abbr(), fake.postcode()) for _ in range(150)]
        self.sentences = [fake.sentence(nb_words=10) for _ in range(300)]
        self.words = [fake.word() for _ in range(200)]
        self.data: dict[str, list[dict]] = defaultdict(list)
        self.dirty: list[dict] = []
        self.seq: dict[str, int] = defaultdict(int)

    # --- helpers ----------------------------------------------------------------------------
    def nid(self, key: str, base: int = 1) -> int:
        self.seq[key] += 1
        return base + self.seq[key] - 1

    def times(self, after: float = START_TS) -> tuple[float, float]:
        created = self.rng.uniform(after, END_TS - 86400)
        updated = min(END_TS, created + self.rng.uniform(0, 200 * 86400))
        return int(created), int(updated)

    def add(self, kind: str, rec: dict, created: float | None = None, updated: float | None = None) -> dict:
        if created is None:
            created, updated = self.times()
        rec["created_at"], rec["updated_at"] = iso(created), iso(updated or created)
        rec["_created_ts"], rec["_updated_ts"] = created, updated or created
        self.data[kind].append(rec)
        return rec

    def sentence(self) -> str:
        return self.rng.choice(self.sentences)

    def dirt(self, defect: str, kind: str, rec: dict, field: str) -> bool:
        """Decide whether to inject ``defect`` into ``rec``; record it when so."""
        if self.dirty_rate <= 0 or self.drng.random() >= self.dirty_rate:
            return False
        self.dirty.append({"defect": defect, "object": kind, "id": rec["id"], "field": field})
        return True

    @staticmethod
    def ref(rec: dict, *keys: str) -> dict:
        return {"id": rec["id"], "etag": rec.get("etag")} | {k: rec.get(k) for k in keys}

    def day(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, FIRM_TZ).date().isoformat()

    # --- build ------------------------------------------------------------------------------
    def build(self) -> None:
        self.users()
        add_reference(self, START_TS - 86400 * 20)
        self.reference()
        self.contacts()
        self.matters()
        add_group_rates(self)
        self.custom_field_values()
        self.relationships()
        self.activities_and_bills()
        add_books(self)
        self.documents()
        self.calendar()
        self.tasks_notes_comms()
        self.configuration()
        add_extras(self)
        for kind in self.data:
            for rec in self.data[kind]:
                rec["etag"] = etag_of(rec)

    def users(self) -> None:
        self.staff = staff(self.seed)
        for m in self.staff:
            self.add("users", {
                "id": m.clio_id, "name": m.name, "first_name": m.first_name, "last_name": m.last_name,
                "email": m.email, "enabled": m.clio_enabled, "rate": m.rate,
                "subscription_type": "Attorney" if m.role == "Attorney" else "NonAttorney",
                "roles": ["admin"] if m.role == "Admin" else (["billing"] if m.role == "Attorney" else []),
                "initials": m.first_name[0] + m.last_name[0], "time_zone": "Eastern Time (US & Canada)",
                "account_owner": m.clio_id == 1001, "phone_number": f"555-01{m.clio_id % 100:02d}",
                "account": {"id": 1, "name": "Harlow & Vance LLP", "state": "active"},
            }, START_TS - 86400 * 30, START_TS)
        self.user_recs = self.data["users"]
        self.attorneys = [u for u, m in zip(self.user_recs, self.staff, strict=True) if m.role == "Attorney"]

    def reference(self) -> None:
        t0 = START_TS - 86400 * 20
        for i, (name, code, cat) in enumerate(PRACTICE_AREAS):
            pa = self.add("practice_areas", {"id": i + 1, "name": name, "code": code, "category": cat}, t0, t0)
            for j, st in enumerate(STAGES):
                self.add("matter_stages", {
                    "id": 101 + i * len(STAGES) + j, "name": st, "order": j + 1,
                    "practice_area_id": str(pa["id"]),
                }, t0, t0)
        for parent, defs in CF_DEFS.items():
            for name, ftype in defs:
                cid = self.nid("cf", 201)
                opts = [
                    {"id": self.nid("opt", 3001), "etag": f'"opt{cid}{k}"', "option": o, "deleted_at": None}
                    for k, o in enumerate(PICKLISTS.get(name, ()))
                ]
                if opts:
                    opts.append({"id": self.nid("opt", 3001), "etag": f'"opt{cid}x"', "option": "Retired Option",
                                 "deleted_at": iso(t0 + 86400)})
                self.add("custom_fields", {
                    "id": cid, "name": name, "parent_type": parent, "field_type": ftype, "displayed": True,
                    "required": name in ("Court", "Tax ID"), "deleted": False, "display_order": cid - 200,
                    "picklist_options": opts,
                }, t0, t0)
        self.add("custom_fields", {
            "id": self.nid("cf", 201), "name": "Legacy Matter Code", "parent_type": "Matter",
            "field_type": "text_line", "displayed": False, "required": False, "deleted": True,
            "display_order": 99, "picklist_options": [],
        }, t0, t0 + 86400)
        for name, kind in ACTIVITY_DESCRIPTIONS:
            amount = self.rng.choice((250.0, 300.0, 1500.0)) if kind == "flat" else None
            rate_type = "FlatRate" if kind == "flat" else self.rng.choice(("User", "Custom"))
            if rate_type == "Custom":
                amount = 275.0
            self.add("activity_descriptions", {
                "id": self.nid("ad", 401), "name": name, "default": name == "Drafting",
                "rate": {"amount": amount, "non_billable_amount": 0.0, "type": rate_type,
                         "hierarchy": "Activity" if amount else "Default"},
                "category_type": kind,
            }, t0, t0)
        for name, rate, entry_type in EXPENSE_CATEGORIES:
            self.add("expense_categories", {"id": self.nid("ec", 501), "name": name, "rate": rate,
                                            "entry_type": entry_type}, t0, t0)
        for name, typ, default in (("Operating Account", "Operating", True), ("IOLTA Trust", "Trust", True),
                                   ("Escrow Trust", "Trust", False)):
            self.add("bank_accounts", {
                "id": self.nid("ba", 601), "type": typ, "name": name, "institution": "First Harbor Bank",
                "currency": "USD", "balance": 0.0, "default_account": default, "holder": "Harlow & Vance LLP",
                "account_number": f"****{self.rng.randint(1000, 9999)}", "transit_number": "021000021",
                "swift": None, "general_ledger_number": None,
            }, t0, t0)
        for name in TASK_TYPES:
            self.add("task_types", {"id": self.nid("tt", 701), "name": name, "deleted_at": None}, t0, t0)
        self.data["task_types"][-1]["deleted_at"] = iso(t0 + 86400 * 100)
        self.add("calendars", {"id": 800, "name": "Firm Calendar", "type": "AccountCalendar", "permission": "owner",
                               "color": "#367B9C", "visible": True, "source": "web"}, t0, t0)
        for u in self.user_recs:
            self.add("calendars", {"id": u["id"] - 1001 + 801, "name": u["name"], "type": "UserCalendar",
                                   "permission": "owner", "color": "#83D17F", "visible": True, "source": "web"}, t0, t0)
        self.ads = self.data["activity_descriptions"]
        self.ecs = self.data["expense_categories"]

    def person_name(self) -> tuple[str, str]:
        return self.rng.choice(self.first), self.rng.choice(self.last)

    def _contact_nested(self, rec: dict, email_local: str, domain: str) -> None:
        r = self.rng
        emails = [{"id": self.nid("email", 70001), "name": "Work", "address": f"{email_local}@{domain}",
                   "primary": True}]
        if r.random() < 0.3:
            emails.append({"id": self.nid("email", 70001), "name": "Home",
                           "address": f"{email_local}{r.randint(1, 99)}@mail.example", "primary": False})
        phones = [{"id": self.nid("phone", 80001), "name": r.choice(("Work", "Personal")),
                   "number": f"({r.randint(200, 989)}) 555-{r.randint(1000, 9999)}", "primary": True}]
        if r.random() < 0.25:
            phones.append({"id": self.nid("phone", 80001), "name": "Other",
                           "number": f"+1 {r.randint(200, 989)}-555-{r.randint(1000, 9999)}", "primary": False})
        city, prov, zipc = r.choice(self.cities)
        addrs = [{"id": self.nid("addr", 90001), "name": r.choice(("Work", "Home", "Billing")),
                  "street": r.choice(self.streets), "city": city, "province": prov, "postal_code": zipc,
                  "country": "US", "primary": True}]
        for coll in (emails, phones, addrs):
            for item in coll:
                item["etag"] = f'"n{item["id"]}"'
        rec.update({
            "email_addresses": emails, "phone_numbers": phones, "addresses": addrs,
            "primary_email_address": emails[0]["address"],
            "secondary_email_address": emails[1]["address"] if len(emails) > 1 else None,
            "primary_phone_number": phones[0]["number"],
            "secondary_phone_number": phones[1]["number"] if len(phones) > 1 else None,
        })

    def contacts(self) -> None:
        r = self.rng
        n_companies = max(4, int(self.n * 0.8))
        n_people = max(8, int(self.n * 1.8))
        for _ in range(n_companies):
            cname = r.choice(self.companies) + r.choice(("", " Holdings", " Group", " Partners"))
            rec = {"id": self.nid("contact", 20001), "type": "Company", "name": cname, "first_name": None,
                   "middle_name": None, "last_name": None, "prefix": None, "title": None, "date_of_birth": None,
                   "initials": "".join(w[0] for w in cname.split()[:2]), "is_client": False,
                   "is_co_counsel": False, "clio_connect_email": None, "company": None, "related_contacts": []}
            domain = "".join(ch for ch in cname.lower() if ch.isalnum())[:20] + ".example"
            self._contact_nested(rec, r.choice(("info", "legal", "office")), domain)
            self.add("contacts", rec)
        self.company_recs = list(self.data["contacts"])
        for i in range(n_people):
            first, last = self.person_name()
            rec = {"id": self.nid("contact", 20001), "type": "Person", "name": f"{first} {last}",
                   "first_name": first, "middle_name": r.choice((None, None, "A.", "J.", "Lee")),
                   "last_name": last, "prefix": r.choice((None, "Mr.", "Ms.", "Dr.")),
                   "title": r.choice((None, "CEO", "CFO", "Counsel", "Manager")),
                   "date_of_birth": date(r.randint(1940, 2003), r.randint(1, 12), r.randint(1, 28)).isoformat(),
                   "initials": first[0] + last[0], "is_client": False, "is_co_counsel": False,
                   "clio_connect_email": None, "company": None, "related_contacts": []}
            company = r.choice(self.company_recs) if r.random() < 0.45 else None
            if company:
                rec["company"] = {"id": company["id"], "etag": None, "name": company["name"]}
            n_rel = 3 if i == 0 else (r.choice((1, 2)) if r.random() < 0.15 else 0)
            for c in r.sample(self.company_recs, min(n_rel, len(self.company_recs))):
                rec["related_contacts"].append({"id": c["id"], "etag": None, "name": c["name"], "type": "Company"})
            self._contact_nested(rec, f"{first}.{last}".lower().replace("'", ""), "mail.example")
            if self.dirt("invalid_email", "contacts", rec, "email_addresses"):
                rec["email_addresses"][0]["address"] = rec["primary_email_address"] = f"{first.lower()}@@{last.lower()}"
            if self.dirt("missing_name", "contacts", rec, "last_name"):
                rec.update(first_name=None, last_name=None, name="")
            if self.dirt("overlong_string", "contacts", rec, "title"):
                rec["title"] = ("Senior Vice President of " + " and ".join(self.words)) [:400]
            if self.dirt("unicode_emoji", "contacts", rec, "name"):
                rec.update(first_name="Zoë 🚀", last_name="Ångström-Núñez 李", name="Zoë 🚀 Ångström-Núñez 李")
            if self.dirt("malformed_date", "contacts", rec, "date_of_birth"):
                rec["date_of_birth"] = "1985-02-30"
            self.add("contacts", rec)
            if self.dirt("duplicate_contact", "contacts", rec, "name"):
                dup = json.loads(json.dumps(rec))
                dup["id"] = self.nid("contact", 20001)
                self.add("contacts", dup)
                self.dirty[-1]["duplicate_of"] = rec["id"]
                self.dirty[-1]["id"] = dup["id"]
        self.people = [c for c in self.data["contacts"] if c["type"] == "Person"]
        self.contact_by_id = {c["id"]: c for c in self.data["contacts"]}

    def matters(self) -> None:
        r = self.rng
        clients = r.sample(self.data["contacts"], min(len(self.data["contacts"]), max(3, int(self.n * 0.7))))
        for c in clients:
            c["is_client"] = True
        self.clients = clients
        pas = self.data["practice_areas"]
        stages = self.data["matter_stages"]
        for k in range(self.n):
            mid = self.nid("matter", 5001)
            client = r.choice(clients)
            pa = pas[k % len(pas)]
            created, updated = self.times()
            status = ("Open", "Pending", "Closed")[k % 3] if k < 9 else r.choice(("Open", "Open", "Pending", "Closed"))
            method = ("hourly", "flat", "contingency")[k % 3] if k < 9 else r.choice(
                ("hourly", "hourly", "hourly", "flat", "contingency"))
            open_d = self.day(created)
            close_d = self.day(min(END_TS, created + r.uniform(30, 700) * 86400)) if status == "Closed" else None
            pend_d = open_d if status == "Pending" else None
            stage = stages[(pa["id"] - 1) * len(STAGES) + r.randrange(len(STAGES))]
            resp, orig = r.choice(self.attorneys), r.choice(self.attorneys)
            custom_rate = None
            if method == "flat":
                ad = r.choice(self.ads)
                custom_rate = {"type": "FlatRate", "on_invoice": False, "rates": [
                    {"id": self.nid("mrate", 1), "rate": float(r.choice((1500, 2500, 5000))), "award": None,
                     "note": None, "date": None, "activity_description": {"id": ad["id"], "name": ad["name"]}}]}
            elif method == "contingency":
                custom_rate = {"type": "ContingencyFee", "on_invoice": True, "rates": [
                    {"id": self.nid("mrate", 1), "rate": r.choice((25.0, 33.33, 40.0)), "award": None,
                     "note": "Contingency per engagement letter", "date": None}]}
            elif r.random() < 0.3:
                u = r.choice(self.attorneys)
                custom_rate = {"type": "HourlyRate", "on_invoice": False, "rates": [
                    {"id": self.nid("mrate", 1), "rate": u["rate"] - 50.0, "award": None, "note": None,
                     "date": None, "user": {"id": u["id"], "name": u["name"]}}]}
            last = client.get("last_name") or client["name"].split(" ")[0] or "Client"
            rec = {
                "id": mid, "number": k + 1, "display_number": f"{k + 1:05d}-{last}",
                "custom_number": None,
                "description": f"{client['name'] or 'Unknown'} - {pa['name']} {r.choice(self.words).title()}",
                "status": status, "open_date": open_d, "pending_date": pend_d, "close_date": close_d,
                "billable": method != "contingency" or r.random() < 0.5, "billing_method": method,
                "client_reference": f"REF-{r.randint(10000, 99999)}" if r.random() < 0.4 else None,
                "location": r.choice(self.cities)[0], "client_id": client["id"],
                "client": {"id": client["id"], "etag": None, "name": client["name"]},
                "practice_area": self.ref(pa, "name", "code", "category"),
                "matter_stage": self.ref(stage, "name"),
                "responsible_attorney": self.ref(resp, "name", "email"),
                "originating_attorney": self.ref(orig, "name", "email"),
                "custom_rate": custom_rate, "shared": False, "has_tasks": True,
                "last_activity_date": self.day(updated), "matter_stage_updated_at": iso(updated),
            }
            if self.dirt("overlong_string", "matters", rec, "description"):
                rec["description"] = (rec["description"] + " — " + " ".join(self.sentences[:20]))[:1200]
            if self.dirt("malformed_date", "matters", rec, "close_date"):
                rec["close_date"] = "2023-13-45"
            self.add("matters", rec, created, updated)
        self.matter_recs = self.data["matters"]
        # Client-level activity rates for some clients: the "client" level of the hierarchy.
        for c in clients[: max(1, len(clients) // 5)]:
            u = r.choice(self.attorneys)
            self.add("activity_rates", {
                "id": self.nid("arate", 1), "rate": u["rate"] - 25.0, "flat_rate": False, "contact_id": c["id"],
                "co_counsel_contact_id": None, "user": self.ref(u, "name"), "group": None,
            })

    def custom_field_values(self) -> None:
        r = self.rng
        cfs = [cf for cf in self.data["custom_fields"] if not cf["deleted"]]
        for parent, recs in (("Matter", self.matter_recs), ("Contact", self.data["contacts"])):
            defs = [cf for cf in cfs if cf["parent_type"] == parent]
            for rec in recs:
                vals = []
                for cf in r.sample(defs, r.randint(2, 6)):
                    vals.append(self._cf_value(cf, rec, parent))
                rec["custom_field_values"] = vals

    def _cf_value(self, cf: dict, rec: dict, parent: str) -> dict:
        r = self.rng
        ft = cf["field_type"]
        option = None
        value: str
        if ft == "picklist":
            live = [o for o in cf["picklist_options"] if not o["deleted_at"]]
            option = r.choice(live)
            value = option["option"]
            if self.dirt("unknown_picklist_value", parent.lower() + "s", rec, f"custom_field_values:{cf['name']}"):
                option = {"id": 999000 + cf["id"], "etag": None, "option": "Legacy Option (unmapped)"}
                value = option["option"]
            option = {"id": option["id"], "etag": option.get("etag"), "option": option["option"]}
        elif ft == "checkbox":
            value = r.choice(("true", "false"))
        elif ft == "currency":
            value = f"{r.randint(1000, 500000)}.00"
        elif ft == "numeric":
            value = str(r.randint(1, 5000))
        elif ft == "date":
            value = date(r.randint(2018, 2026), r.randint(1, 12), r.randint(1, 28)).isoformat()
        elif ft == "time":
            value = f"{r.randint(8, 17):02d}:{r.choice(('00', '15', '30', '45'))}:00"
        elif ft == "email":
            value = f"{r.choice(self.first).lower()}@opposing.example"
        elif ft == "url":
            value = f"https://courts.example/docket/{r.randint(1000, 99999)}"
        elif ft == "matter":
            value = str(r.choice(self.matter_recs)["id"])
        elif ft == "contact":
            value = str(r.choice(self.people)["id"])
        elif ft == "text_area":
            value = self.sentence() + "\n" + self.sentence()
        else:
            value = f"{r.choice(self.cities)[0]} Superior Court"
        return {"id": f"{ft}-{self.nid('cfv:' + ft)}", "etag": None, "field_name": cf["name"], "field_type": ft,
                "value": value, "custom_field": {"id": cf["id"], "etag": cf.get("etag")}, "picklist_option": option}

    def relationships(self) -> None:
        r = self.rng
        for m in self.matter_recs:
            chosen = r.sample(self.people, min(len(self.people), r.randint(1, 3)))
            for i, c in enumerate(chosen):
                roles = [r.choice(ROLES)]
                if i == 0 and r.random() < 0.2:
                    roles.append(r.choice([x for x in ROLES if x != roles[0]]))
                for role in roles:
                    self.add("relationships", {
                        "id": self.nid("rel", 1), "description": role, "matter": self.ref(m, "display_number"),
                        "contact": self.ref(c, "name", "type"),
                    }, m["_created_ts"], m["_updated_ts"])

    def _rate_for(self, m: dict, user: dict, ad: dict) -> tuple[float, bool]:
        cr = m.get("custom_rate")
        if cr and cr["type"] == "FlatRate":
            return cr["rates"][0]["rate"], True
        if ad["rate"]["type"] == "FlatRate":
            return ad["rate"]["amount"], True
        if cr and cr["type"] == "HourlyRate" and cr["rates"][0].get("user", {}).get("id") == user["id"]:
            return cr["rates"][0]["rate"], False
        client_rates = [ar["rate"] for ar in self.client_rates.get(m["client"]["id"], ())
                        if (ar.get("user") or {}).get("id") == user["id"]
                        or (ar.get("group") and user["id"] in group_members(self, ar["group"]["id"]))]
        if client_rates:  # several group rates: the highest wins
            return max(client_rates), False
        if ad["rate"]["type"] == "Custom":
            return ad["rate"]["amount"], False
        return user["rate"], False

    def activities_and_bills(self) -> None:
        r = self.rng
        self.client_rates: dict[int, list[dict]] = defaultdict(list)
        for ar in self.data["activity_rates"]:
            self.client_rates[ar["contact_id"]].append(ar)
        vendors = self.company_recs
        bill_no = 1000
        for m in self.matter_recs:
            acts = []
            for _ in range(r.randint(4, 12)):
                user = r.choice(self.user_recs)
                created, updated = self.times(m["_created_ts"])
                is_time = r.random() < 0.75
                rec = {"id": self.nid("act", 100001), "date": self.day(created), "matter": self.ref(m, "display_number"),
                       "user": self.ref(user, "name", "email"), "note": self.sentence(), "reference": None,
                       "tax_setting": "no_tax", "billed": False, "on_bill": False, "bill": None, "vendor": None,
                       "no_charge": False, "quantity_redacted": False}
                if is_time:
                    ad = r.choice(self.ads)
                    secs = r.choice((6, 12, 18, 30, 42, 60, 90, 120, 210)) * 60
                    price, flat = self._rate_for(m, user, ad)
                    non_billable = r.random() < 0.15 or not m["billable"]
                    hours = secs / 3600
                    total = price if flat else round(price * hours, 2)
                    rec.update(type="TimeEntry", quantity=float(secs), rounded_quantity=float(secs),
                               quantity_in_hours=round(hours, 4), rounded_quantity_in_hours=round(hours, 4),
                               price=price, flat_rate=flat, non_billable=non_billable,
                               total=0.0 if non_billable else total,
                               non_billable_total=total if non_billable else 0.0,
                               activity_description=self.ref(ad, "name"), expense_category=None)
                else:
                    ec = r.choice(self.ecs)
                    typ = r.choice(("ExpenseEntry", "ExpenseEntry", "HardCostEntry", "SoftCostEntry"))
                    qty = float(r.randint(1, 5))
                    price = float(ec["rate"] or r.choice((35, 120, 450, 1200)))
                    non_billable = r.random() < 0.1
                    rec.update(type=typ, quantity=qty, rounded_quantity=qty, quantity_in_hours=None,
                               rounded_quantity_in_hours=None, price=price, flat_rate=False,
                               non_billable=non_billable, total=0.0 if non_billable else qty * price,
                               non_billable_total=qty * price if non_billable else 0.0,
                               activity_description=None, expense_category=self.ref(ec, "name"))
                    if typ == "HardCostEntry":
                        v = r.choice(vendors)
                        rec["vendor"] = self.ref(v, "name")
                        rec["reference"] = f"CHQ-{r.randint(1000, 9999)}"
                if self.dirt("orphan_reference", "activities", rec, "matter"):
                    rec["matter"] = {"id": 99_000_000 + rec["id"], "etag": None, "display_number": "99999-Missing"}
                acts.append(self.add("activities", rec, created, updated))
            billable = [a for a in acts if not a["non_billable"]]
            if billable and r.random() < 0.7:
                bill_no += 1
                self._bill(m, billable[: max(1, len(billable) * 2 // 3)], bill_no)

    def _bill(self, m: dict, acts: list[dict], number: int) -> None:
        r = self.rng
        state = BILL_STATES[number % len(BILL_STATES)]
        issued = max(a["_created_ts"] for a in acts) + 86400 * 3
        issued = min(issued, END_TS - 86400)
        total = round(sum(a["total"] for a in acts), 2)
        partial = state == "awaiting_payment" and r.random() < 0.3  # paid and balance: firm_books
        bill = {
            "id": self.nid("bill", 1), "number": str(number), "type": "MatterBill", "kind": "revenue_kind",
            "state": state, "subject": f"Services for {m['display_number']}", "memo": None,
            "issued_at": self.day(issued), "due_at": self.day(issued + 30 * 86400),
            "start_at": min(a["date"] for a in acts), "end_at": max(a["date"] for a in acts),
            "paid_at": iso(issued + 20 * 86400) if state == "paid" else None,
            "last_sent_at": iso(issued + 3600) if state in ("awaiting_payment", "paid") else None,
            "total": total, "due": total, "balance": total, "paid": 0.0, "sub_total": total,
            "tax_sum": 0.0, "secondary_tax_sum": 0.0, "total_tax": 0.0, "tax_rate": 0.0, "secondary_tax_rate": 0.0,
            "services_sub_total": round(sum(a["total"] for a in acts if a["type"] == "TimeEntry"), 2),
            "services_tax": 0.0, "services_secondary_tax": 0.0, "taxable_sub_total": 0, "secondary_taxable_sub_total": 0,
            "services_taxable_sub_total": 0, "services_secondary_taxable_sub_total": 0, "purchase_order": None,
            "discount_services_only": "false", "can_update": state in ("draft", "awaiting_approval"), "shared": False,
            "available_state_transitions": None, "_partial": partial,
            "client": {"id": m["client"]["id"], "etag": None, "name": m["client"]["name"]},
            "user": {"id": m["responsible_attorney"]["id"]}, "group": {"id": 1}, "bill_theme": {"id": 1},
            "destination_account": {"id": self.data["bank_accounts"][0]["id"]},
            "discount": {"rate": 0.0, "type": "percentage", "note": None, "early_payment_rate": 0,
                         "early_payment_period": 0},
            "matters": [self.ref(m, "display_number")], "currency": {"id": 1, "etag": None, "code": "USD", "sign": "$"},
        }
        self.add("bills", bill, issued, min(END_TS, issued + 86400 * 21))
        live = state not in ("void", "deleted")
        for a in acts:
            if live:
                a["on_bill"] = True
                a["billed"] = state in ("awaiting_payment", "paid")
                a["bill"] = self.ref(bill, "number")
            is_time = a["type"] == "TimeEntry"
            self.add("line_items", {
                "id": self.nid("li", 1), "type": "ActivityLineItem", "kind": "Service" if is_time else "Expense",
                "description": (a["activity_description"] or a["expense_category"])["name"], "note": a["note"],
                "date": a["date"], "quantity": a["quantity_in_hours"] if is_time else a["quantity"],
                "price": a["price"], "sub_total": a["total"], "tax": 0.0, "total": a["total"],
                "bill": self.ref(bill, "number"), "matter": self.ref(m, "display_number"),
                "activity": {"id": a["id"], "etag": None, "type": a["type"]},
            }, bill["_created_ts"], bill["_updated_ts"])

    def documents(self) -> None:
        r = self.rng
        root = self.add("folders", {"id": 1, "type": "Folder", "name": "Root", "root": True, "locked": False,
                                    "deleted_at": None, "parent": None, "matter": None, "contact": None},
                        START_TS, START_TS)
        folders = {}
        for m in self.matter_recs:
            f = self.add("folders", {"id": self.nid("folder", 2), "type": "Folder", "name": m["display_number"],
                                     "root": False, "locked": False, "deleted_at": None,
                                     "parent": {"id": 1, "etag": None, "name": "Root", "type": "Folder"},
                                     "matter": self.ref(m, "display_number"), "contact": None},
                         m["_created_ts"], m["_created_ts"])
            folders[m["id"]] = f
        n_docs = max(10, int(self.n * 1.5))
        for k in range(n_docs):
            on_matter = r.random() < 0.8
            m = r.choice(self.matter_recs)
            c = r.choice(self.people)
            kind = DOC_KINDS[k % len(DOC_KINDS)]
            ext, ctype = blobs.KINDS[kind]
            did = self.nid("doc", 1)
            base = r.choice(self.words).title() + " " + r.choice(("Agreement", "Memo", "Letter", "Exhibit", "Scan"))
            created, updated = self.times(m["_created_ts"] if on_matter else START_TS)
            n_versions = r.choice((1, 1, 1, 2, 3))
            versions = []
            for v in range(1, n_versions + 1):
                size = int(min(2_000_000, max(1200, r.lognormvariate(9.5, 1.3)))) if self.n >= 100 else r.randint(1200, 60000)
                vts = created + (v - 1) * 86400
                versions.append({"id": self.nid("docv", 1), "uuid": str(uuid.UUID(int=r.getrandbits(128))),
                                 "version_number": v, "filename": f"{base.replace(' ', '_')}_v{v}.{ext}",
                                 "size": size, "content_type": ctype, "received_at": iso(vts),
                                 "fully_uploaded": True, "etag": None, "_kind": kind,
                                 "_ref_doc": (did - 1 if kind == "html" and did > 1 and r.random() < 0.5 else None)})
            latest = versions[-1]
            rec = {"id": did, "type": "Document", "name": base, "filename": latest["filename"], "size": latest["size"],
                   "content_type": ctype, "received_at": latest["received_at"], "deleted_at": None, "locked": False,
                   "matter": self.ref(m, "display_number") if on_matter else None,
                   "contact": None if on_matter else self.ref(c, "name"),
                   "parent": ({"id": folders[m["id"]]["id"], "etag": None, "name": m["display_number"]} if on_matter
                              else {"id": 1, "etag": None, "name": "Root"}),
                   "latest_document_version": {k: v for k, v in latest.items() if not k.startswith("_")},
                   "_versions": versions}
            if self.dirt("zero_byte_document", "documents", rec, "size"):
                latest["size"] = rec["size"] = rec["latest_document_version"]["size"] = 0
            self.add("documents", rec, created, max(updated, created + (n_versions - 1) * 86400))
        del root

    def calendar(self) -> None:
        r = self.rng
        for m in self.matter_recs:
            for _ in range(r.choice((0, 1, 1, 2))):
                owner = r.choice(self.user_recs)
                created, updated = self.times(m["_created_ts"])
                start = created + r.uniform(1, 60) * 86400
                all_day = r.random() < 0.2
                if all_day:
                    d = datetime.fromtimestamp(start, FIRM_TZ).replace(hour=0, minute=0, second=0)
                    s_at, e_at = d.isoformat(), (d + timedelta(days=1)).isoformat()
                else:
                    s_at, e_at = iso(start), iso(start + r.choice((30, 60, 90, 120)) * 60)
                cid = self.nid("cal", 1)
                attendees = [{"id": owner["id"] - 1001 + 801, "etag": None, "type": "Calendar", "name": owner["name"],
                              "email": owner["email"], "enabled": True}]
                for c in r.sample(self.people, r.randint(0, 2)):
                    attendees.append({"id": c["id"], "etag": None, "type": "Contact", "name": c["name"],
                                      "email": c["primary_email_address"], "enabled": True})
                rec = {"id": str(cid), "summary": r.choice(("Hearing", "Deposition", "Client meeting", "Filing deadline",
                                                      "Mediation")) + f" - {m['display_number']}",
                       "description": self.sentence(), "location": r.choice((None, "Courtroom 4B", "Main office",
                                                                            "Zoom")),
                       "start_at": s_at, "end_at": e_at, "all_day": all_day,
                       "start_at_time_zone": "America/New_York",
                       "recurrence_rule": r.choice(RRULES) if r.random() < 0.25 else None,
                       "parent_calendar_entry_id": None, "court_rule": False, "permission": "owner",
                       "calendar_owner_id": owner["id"] - 1001 + 801,
                       "calendar_owner": {"id": owner["id"] - 1001 + 801, "etag": None, "name": owner["name"],
                                          "type": "UserCalendar"},
                       "attendees": attendees, "matter": self.ref(m, "display_number")}
                if self.dirt("malformed_rrule", "calendar_entries", rec, "recurrence_rule"):
                    rec["recurrence_rule"] = "FREQ=FORTNIGHTLY;BYDAY=XX;INTERVAL=-1"
                self.add("calendar_entries", rec, created, updated)

    def tasks_notes_comms(self) -> None:
        r = self.rng
        tts = self.data["task_types"]
        for m in self.matter_recs:
            for _ in range(r.randint(0, 3)):
                created, updated = self.times(m["_created_ts"])
                status = r.choice(("pending", "in_progress", "in_review", "complete"))
                assignee = r.choice(self.user_recs)
                assigner = r.choice(self.attorneys)
                tt = r.choice(tts)
                self.add("tasks", {
                    "id": self.nid("task", 1), "name": r.choice(("File motion", "Call client", "Review contract",
                                                               "Prepare exhibits", "Send engagement letter")),
                    "description": self.sentence(), "status": status,
                    "priority": r.choice(("High", "Normal", "Normal", "Low")),
                    "due_at": self.day(created + r.uniform(1, 45) * 86400),
                    "completed_at": iso(updated) if status == "complete" else None,
                    "permission": r.choice(("public", "public", "private")), "notify_completion": False,
                    "statute_of_limitations": False, "time_estimated": None,
                    "assignee": {"id": assignee["id"], "etag": None, "type": "User", "name": assignee["name"]},
                    "assigner": self.ref(assigner, "name"), "matter": self.ref(m, "display_number"),
                    "task_type": self.ref(tt, "name"),
                }, created, updated)
            for _ in range(r.randint(0, 2)):
                created, updated = self.times(m["_created_ts"])
                author = r.choice(self.user_recs)
                self.add("notes", {"id": self.nid("note", 1), "type": "Matter", "subject": r.choice(
                    ("Strategy", "Call summary", "Court update", "Research notes")), "detail": self.sentence(),
                    "date": self.day(created), "matter": self.ref(m, "display_number"), "contact": None,
                    "author": self.ref(author, "name", "email"), "time_entries_count": 0}, created, updated)
            for _ in range(r.randint(0, 2)):
                created, updated = self.times(m["_created_ts"])
                user = r.choice(self.user_recs)
                client = self.contact_by_id[m["client"]["id"]]
                email = r.random() < 0.6
                me = {"id": user["id"], "etag": None, "type": "User", "name": user["name"]}
                them = {"id": client["id"], "etag": None, "type": client["type"], "name": client["name"]}
                inbound = r.random() < 0.5
                self.add("communications", {
                    "id": self.nid("comm", 1), "type": "EmailCommunication" if email else "PhoneCommunication",
                    "subject": ("Re: " if inbound else "") + r.choice(("Settlement offer", "Documents needed",
                                                                     "Hearing date", "Invoice question")),
                    "body": self.sentence() + "\n\n" + self.sentence(), "date": self.day(created),
                    "received_at": iso(created), "user": self.ref(user, "name", "email"),
                    "matter": self.ref(m, "display_number"), "senders": [them if inbound else me],
                    "receivers": [me if inbound else them], "time_entries_count": 0,
                }, created, updated)
        for c in self.people[: max(3, len(self.people) // 3)]:
            created, updated = self.times()
            author = r.choice(self.user_recs)
            self.add("notes", {"id": self.nid("note", 1), "type": "Contact", "subject": "Contact note",
                               "detail": self.sentence(), "date": self.day(created), "matter": None,
                               "contact": self.ref(c, "name"), "author": self.ref(author, "name", "email"),
                               "time_entries_count": 0}, created, updated)

    def configuration(self) -> None:
        t0 = START_TS + 86400
        for pa in self.data["practice_areas"][:4]:
            tl = self.add("task_template_lists", {"id": self.nid("ttl", 1), "name": f"{pa['name']} intake",
                                                  "description": f"Standard {pa['name'].lower()} intake checklist",
                                                  "practice_area": self.ref(pa, "name")}, t0, t0)
            for name in ("Conflict check", "Engagement letter", "Open file"):
                self.add("task_templates", {"id": self.nid("ttpl", 1), "name": name, "description": self.sentence(),
                                            "priority": "Normal", "task_template_list": self.ref(tl, "name")}, t0, t0)
        for i, name in enumerate(("Engagement Letter", "Retainer Agreement", "Closing Letter")):
            self.add("document_templates", {"id": i + 1, "filename": name.replace(" ", "_") + ".docx",
                                            "size": 24000 + i * 1000, "content_type": blobs.KINDS["docx"][1],
                                            "document_category": {"id": 1, "etag": None, "name": "Templates"}}, t0, t0)
        self.add("custom_actions", {"id": 1, "label": "Open in DMS", "target_url": "https://dms.example/open",
                                    "ui_reference": "matters/show"}, t0, t0)
        self.add("webhooks", {"id": 1, "url": "https://hooks.example/clio", "model": "matter",
                              "events": ["created", "updated", "deleted"], "status": "enabled",
                              "expires_at": iso(END_TS + 86400 * 20)}, t0, t0)


BILLING_SETTINGS = {
    "id": 1, "rounded_duration": 6.0, "rounding": 6, "use_decimal_rounding": True, "currency": "USD",
    "currency_sign": "$", "tax_rate": 0.0, "tax_name": "Sales Tax", "apply_tax_by_default": False,
    "time_on_flat_rate_contingency_matters_is_non_billable": True, "use_secondary_tax": False,
    "secondary_tax_rate": 0.0, "secondary_tax_rule": "Post", "secondary_tax_name": "Secondary Tax",
    "notify_after_bill_created": False, "use_utbms_codes": False,
}


def seed_firm(store: Store, data_dir: Path, seed: int, n_matters: int, dirty_rate: float = 0.0,
              progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Generate the firm into ``store`` and write ``dirty.json``; return counts per kind."""
    b = FirmBuilder(seed, n_matters, dirty_rate)
    b.build()
    counts = {}
    for kind, recs in b.data.items():
        counts[kind] = store.insert_many(kind, recs)
        if progress:
            progress(f"{kind}: {counts[kind]}")
    settings = dict(BILLING_SETTINGS, created_at=iso(START_TS), updated_at=iso(START_TS))
    settings["etag"] = etag_of(settings)
    store.set_meta("settings_billing", json.dumps(settings))
    store.set_meta("dirty", json.dumps(b.dirty))
    (data_dir / "dirty.json").write_text(json.dumps(b.dirty, indent=1))
    return counts
