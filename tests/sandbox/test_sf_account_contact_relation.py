"""A contact's primary Account is its direct AccountContactRelation, kept in step with ``Contact.AccountId``.

Salesforce Help, "Considerations for Relating a Contact to Multiple Accounts": the account in the contact's
Account Name is its primary account, a direct relationship; every other related account is indirect; "to
remove a direct relationship between a contact and an account, change the contact's primary account or
delete the contact". "Validation Rules for Account Contact Relationships": a direct relation is created with a
contact that has an account, and modified when the contact gets a new primary account; by default (Account
Settings) the previous primary account is kept as an indirect relationship. Clearing ``AccountId`` is not
documented: the sandbox removes the direct relation (a private contact cannot be related to an account).
"""

from __future__ import annotations

import pytest

from sandbox.salesforce.org import Org, Settings
from sandbox.salesforce.query import Runner

pytestmark = pytest.mark.unit


def _ins(org: Org, sobject: str, rows: list[dict]) -> list[str]:
    res = org.write(sobject, "insert", rows, user_id=None)
    assert all(r["success"] for r in res), res
    return [r["id"] for r in res]


def _upd(org: Org, sobject: str, rows: list[dict]) -> None:
    res = org.write(sobject, "update", rows, user_id=None)
    assert all(r["success"] for r in res), res


def _rels(org: Org, contact: str, *, deleted: bool = False) -> dict[str, tuple[str, bool]]:
    """AccountId -> (Id, IsDirect) of the contact's relations (live ones unless ``deleted``)."""
    rows = Runner(org, f"SELECT Id, AccountId, IsDirect, IsDeleted FROM AccountContactRelation WHERE ContactId = "
                       f"'{contact}'", include_deleted=deleted).rows()
    return {r["AccountId"]: (r["Id"], r["IsDirect"]) for r in rows if r["IsDeleted"] == deleted}


@pytest.fixture
def org(tmp_path) -> Org:
    return Org(tmp_path, Settings(seed=5))


def test_a_new_primary_account_becomes_the_direct_relation_and_the_old_one_stays_indirect(org) -> None:
    a, b, c = _ins(org, "Account", [{"Name": "A"}, {"Name": "B"}, {"Name": "C"}])
    ann, = _ins(org, "Contact", [{"LastName": "Ann", "AccountId": a}])
    [(direct_a, is_direct)] = _rels(org, ann).values()
    assert is_direct
    indirect_c, = _ins(org, "AccountContactRelation", [{"AccountId": c, "ContactId": ann}])

    _upd(org, "Contact", [{"Id": ann, "AccountId": b}])  # Old code: still one direct relation, to A; none to B
    rels = _rels(org, ann)
    assert rels[a] == (direct_a, False)  # the same record, now indirect
    assert rels[b][1] is True and rels[c] == (indirect_c, False)
    assert len(rels) == 3

    _upd(org, "Contact", [{"Id": ann, "AccountId": c}])  # to an account it is already related to: promoted
    rels = _rels(org, ann)
    assert rels[c] == (indirect_c, True) and not rels[a][1] and not rels[b][1] and len(rels) == 3
    # never two relations to one account, whatever the order of changes
    _upd(org, "Contact", [{"Id": ann, "AccountId": a}])
    rels = _rels(org, ann)
    assert rels[a] == (direct_a, True) and [rels[x][1] for x in (b, c)] == [False, False] and len(rels) == 3


def test_setting_an_account_on_a_private_contact_makes_its_direct_relation_and_clearing_it_removes_it(org) -> None:
    a, = _ins(org, "Account", [{"Name": "A"}])
    bob, = _ins(org, "Contact", [{"LastName": "Bob"}])
    assert _rels(org, bob) == {}
    _upd(org, "Contact", [{"Id": bob, "LastName": "Bobby"}])  # an update that leaves AccountId alone: nothing
    assert _rels(org, bob) == {}
    _upd(org, "Contact", [{"Id": bob, "AccountId": a}])  # Old code: no relation at all
    [(direct, is_direct)] = _rels(org, bob).values()
    assert is_direct
    _upd(org, "Contact", [{"Id": bob, "AccountId": None}])  # Old code: the direct relation stayed
    assert _rels(org, bob) == {}
    assert _rels(org, bob, deleted=True) == {a: (direct, True)}
    _upd(org, "Contact", [{"Id": bob, "AccountId": a}])  # back: a new direct relation, one only
    [(again, is_direct)] = _rels(org, bob).values()
    assert is_direct and again != direct


def test_a_direct_relation_cannot_be_deleted_by_itself_but_goes_with_its_contact(org) -> None:
    """Help: "to remove a direct relationship between a contact and an account, change the contact's primary
    account or delete the contact". Old code: the direct relation was deleted, the contact left with an
    AccountId and no relation to it."""
    a, b = _ins(org, "Account", [{"Name": "A"}, {"Name": "B"}])
    ann, = _ins(org, "Contact", [{"LastName": "Ann", "AccountId": a}])
    indirect, = _ins(org, "AccountContactRelation", [{"AccountId": b, "ContactId": ann}])
    direct = _rels(org, ann)[a][0]
    res = org.delete([direct, indirect], user_id=org.integration_user_id)
    assert res[0]["success"] is False and res[0]["errors"][0]["statusCode"] == "DELETE_FAILED"
    assert res[1] == {"id": indirect, "success": True, "errors": []}
    assert _rels(org, ann) == {a: (direct, True)}
    assert org.delete([ann], user_id=org.integration_user_id)[0]["success"]
    assert _rels(org, ann) == {} and _rels(org, ann, deleted=True)[a] == (direct, True)
