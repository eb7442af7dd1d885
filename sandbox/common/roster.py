"""The seeded firm's staff, shared by the Clio and Salesforce sandboxes.

Both sandboxes derive their users from the same seed so that user resolution has
realistic work to do: most Clio users have a Salesforce user with the same email, some
differently cased, some inactive in Salesforce, some with no match at all, and some
disabled in Clio.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from faker import Faker

ROLES = ("Attorney",) * 5 + ("Paralegal",) * 3 + ("Admin",) * 2
FIRM_DOMAIN = "harlow-vance.example"


@dataclass(frozen=True)
class StaffMember:
    """One person on staff, as both systems see them.

    ``sf_match`` is one of ``exact``, ``case`` (email differs only in case),
    ``inactive`` (exists in Salesforce but IsActive is false) or ``none``.
    """

    clio_id: int
    first_name: str
    last_name: str
    email: str
    role: str
    clio_enabled: bool
    rate: float
    sf_match: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def sf_email(self) -> str | None:
        """The email Salesforce holds for this person, or None when absent."""
        if self.sf_match == "none":
            return None
        if self.sf_match == "case":
            local, _, domain = self.email.partition("@")
            return f"{local.capitalize()}@{domain.upper()}"
        return self.email

    def as_dict(self) -> dict:
        return asdict(self) | {"name": self.name, "sf_email": self.sf_email}


def staff(seed: int, count: int = 12) -> list[StaffMember]:
    """Return the firm's staff for ``seed``: deterministic, ids from 1001 upward."""
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    out: list[StaffMember] = []
    seen: set[str] = set()
    for i in range(count):
        first, last = fake.first_name(), fake.last_name()
        local = f"{first[0]}.{last}".lower().replace("'", "")
        while local in seen:
            local += str(rng.randint(1, 9))
        seen.add(local)
        role = ROLES[i % len(ROLES)]
        # First two are always exact attorneys so every firm has valid owners.
        if i < 2:
            match = "exact"
        else:
            match = rng.choices(("exact", "case", "inactive", "none"), (6, 2, 1, 1))[0]
        enabled = i < 2 or rng.random() > 0.1
        rate = {"Attorney": 350.0, "Paralegal": 150.0, "Admin": 90.0}[role] + 25 * rng.randint(0, 6)
        out.append(
            StaffMember(1001 + i, first, last, f"{local}@{FIRM_DOMAIN}", role, enabled, rate, match)
        )
    # Guarantee each kind of mismatch exists at least once for firms of 6+ people.
    if count >= 6:
        kinds = {m.sf_match for m in out}
        for idx, kind in zip((2, 3, 4), ("case", "inactive", "none"), strict=True):
            if kind not in kinds:
                m = out[idx]
                out[idx] = StaffMember(**{**asdict(m), "sf_match": kind})
    return out


#: Salesforce-side integration user present in every seeded org.
INTEGRATION_USER = {
    "first_name": "Migration",
    "last_name": "Integration",
    "email": f"integration@{FIRM_DOMAIN}",
    "username": f"integration@{FIRM_DOMAIN}.sandbox",
}
