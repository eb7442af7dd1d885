"""User resolution: every Clio user gets a valid owner, and every mismatch is reported."""

from __future__ import annotations

import pytest

from clio2sf.user_resolution import (
    AMBIGUOUS,
    INACTIVE,
    MATCHED,
    UNMATCHED,
    FallbackOwnerError,
    report_csv,
    report_html,
    resolve_users,
    user_map_document,
)

pytestmark = pytest.mark.unit

SF = [
    {"Id": "005A", "Email": "a.lee@firm.example", "IsActive": True, "Username": "a.lee@firm.example.sb"},
    {"Id": "005B", "Email": "B.Ortiz@FIRM.EXAMPLE", "IsActive": True, "Username": "bo@firm.example.sb"},
    {"Id": "005C", "Email": "c.ng@firm.example", "IsActive": False, "Username": "cn@firm.example.sb"},
    {"Id": "005D1", "Email": "dup@firm.example", "IsActive": True, "Username": "d1@x.sb"},
    {"Id": "005D2", "Email": "dup@firm.example", "IsActive": True, "Username": "d2@x.sb"},
    {"Id": "005I", "Email": "integration@firm.example", "IsActive": True, "Username": "integration@firm.example.sb"},
]
CLIO = [
    {"id": 1, "name": "Ann Lee", "email": "a.lee@firm.example", "enabled": True},
    {"id": 2, "name": "Bo Ortiz", "email": "b.ortiz@firm.example", "enabled": True},
    {"id": 3, "name": "Cy Ng", "email": "c.ng@firm.example", "enabled": True},
    {"id": 4, "name": "Di Dup", "email": "dup@firm.example", "enabled": True},
    {"id": 5, "name": "Ed <script>", "email": "ed@elsewhere.example", "enabled": False},
    {"id": 6, "name": "No Mail", "email": None, "enabled": True},
]


def test_each_outcome_and_owner():
    res = {r.clio_user_id: r for r in resolve_users(CLIO, SF, "integration@firm.example.sb")}
    assert (res[1].status, res[1].owner_id) == (MATCHED, "005A")
    assert (res[2].status, res[2].owner_id) == (MATCHED, "005B")
    assert "differently cased" in res[2].note
    assert (res[3].status, res[3].owner_id, res[3].sf_user_id) == (INACTIVE, "005I", "005C")
    assert (res[4].status, res[4].owner_id) == (AMBIGUOUS, "005I")
    assert (res[5].status, res[5].owner_id) == (UNMATCHED, "005I")
    assert (res[6].status, res[6].owner_id) == (UNMATCHED, "005I")


def test_user_map_counts_and_owners():
    res = resolve_users(CLIO, SF, "005I")
    doc = user_map_document(res, "005I")
    assert doc["users"] == {"1": "005A", "2": "005B", "3": "005I", "4": "005I", "5": "005I", "6": "005I"}
    assert doc["counts"] == {MATCHED: 2, INACTIVE: 1, AMBIGUOUS: 1, UNMATCHED: 2}


@pytest.mark.parametrize(
    ("fallback", "message"),
    [("", "no fallback_owner"), ("ghost@nowhere", "not a Salesforce user"), ("c.ng@firm.example", "inactive")],
)
def test_bad_fallback_owner_is_named(fallback, message):
    with pytest.raises(FallbackOwnerError, match=message):
        resolve_users(CLIO, SF, fallback)


def test_reports_escape_and_list_every_user():
    res = resolve_users(CLIO, SF, "005I")
    html = report_html(res, "harlow_vance", "integration@firm.example.sb")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Needs a decision (4)" in html
    csv_text = report_csv(res)
    assert csv_text.count("\n") == len(CLIO) + 1


def test_user_map_names_unmatched_users_and_calendars():
    """Transforms must tell a matched user from one that only got the fallback owner, and find the user of a
    calendar (Clio calendar entries name calendars)."""
    from clio2sf.mapping.users import UserMap

    clio = [dict(u, default_calendar_id=800 + u["id"]) for u in CLIO]
    doc = user_map_document(resolve_users(clio, SF, "005I"), "005I")
    assert doc["calendars"] == {str(800 + u["id"]): u["id"] for u in CLIO}
    assert doc["status"]["1"] == MATCHED and doc["status"]["5"] == UNMATCHED
    sf = [dict(r, Id=r["Id"].ljust(15, "0")) for r in SF]
    doc = user_map_document(resolve_users(clio, sf, "005I".ljust(15, "0")), "005I".ljust(15, "0"))
    users = UserMap.from_json(doc)
    assert users.get(1) == "005A".ljust(15, "0") and users.get(5) is None and users.get(3) is None
    assert users.resolve(5, "task-1") == "005I".ljust(15, "0") and users.fallback_records == ["task-1"]
    assert users.calendar_user(801) == 1 and users.calendar_user(799) is None
