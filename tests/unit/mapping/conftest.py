from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clio2sf.mapping.spec import load_spec
from clio2sf.mapping.transform import split, transform_object
from clio2sf.mapping.users import UserMap

FIXTURES = Path(__file__).parent / "fixtures"
DESCRIBES = Path(__file__).resolve().parents[3] / "sandbox" / "salesforce" / "describes"
ANN, BO, FALLBACK = "005000000000001AAA", "005000000000002AAA", "005000000000009AAA"
HORIZON = datetime(2025, 1, 1, tzinfo=UTC)


def envelopes(name: str) -> list[dict]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def lookup_all() -> dict[str, dict]:
    names = ["contacts", "matters", "calendar_entries", "activity_rates", "bills"]
    return {n: {e["data"]["id"]: e["data"] for e in envelopes(n)} for n in names}


@pytest.fixture(scope="session")
def spec():
    return load_spec("harlow_vance")


@pytest.fixture
def users():
    # Ann and Bo's own calendars are 801 and 802 (their default_calendar_id); Clio entries name calendars.
    return UserMap({1001: ANN, 1002: BO}, FALLBACK, calendars={801: 1001, 802: 1002})


@pytest.fixture(scope="session")
def describes() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for path in sorted(DESCRIBES.glob("*.json")):
        name = path.name.split(".")[0]
        if name not in ("Global", "Organization"):
            out.setdefault(name, json.loads(path.read_text(encoding="utf-8")))
    return out


def run(name: str, spec, users, lookup=None, items=None):
    return split(transform_object(name, items if items is not None else envelopes(name), spec, users,
                                  lookup=lookup if lookup is not None else lookup_all(), horizon=HORIZON))


def by_sid(rows: list[dict]) -> dict[str, dict]:
    return {r["source_system_id"]: r for r in rows}
