"""Match Clio users to Salesforce users by normalised email, before anything is written.

Outcomes per Clio user: ``matched`` (one active Salesforce user), ``inactive`` (only an
inactive match), ``ambiguous`` (several active users share the email), ``unmatched``.
Everything but ``matched`` falls back to the firm's fallback owner, and the report says so,
so no record is ever loaded without a valid OwnerId.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from clio2sf import reports
from clio2sf.reports import esc
from clio2sf.reports import page as html_page
from clio2sf.reports import table as html_table

MATCHED, INACTIVE, AMBIGUOUS, UNMATCHED = "matched", "inactive", "ambiguous", "unmatched"


class FallbackOwnerError(ValueError):
    """The firm's fallback owner is missing, unknown or inactive in Salesforce."""


def normalise_email(email: str | None) -> str | None:
    """Return a comparison key: NFKC, trimmed, lower-cased; None for blanks and non-emails."""
    if not email:
        return None
    key = unicodedata.normalize("NFKC", email).strip().lower()
    return key if "@" in key else None


@dataclass(frozen=True)
class Resolution:
    """How one Clio user resolved."""

    clio_user_id: int
    clio_name: str
    clio_email: str | None
    clio_enabled: bool
    status: str
    sf_user_id: str | None
    owner_id: str
    note: str
    calendar_id: int | None = None


def resolve_fallback(sf_users: Iterable[Mapping[str, Any]], fallback_owner: str | None) -> str:
    """Return the Id of the fallback owner given as an Id, Username or Email; it must be active."""
    if not fallback_owner:
        raise FallbackOwnerError("the firm config has no fallback_owner: set one (a Salesforce username or email)")
    want = fallback_owner.strip()
    found = [
        row for row in sf_users
        if want in (row.get("Id"),) or want.lower() in {str(row.get("Username") or "").lower(), normalise_email(row.get("Email"))}
    ]
    if not found:
        raise FallbackOwnerError(f"fallback owner {fallback_owner!r} is not a Salesforce user: fix fallback_owner")
    active = [row for row in found if row.get("IsActive")]
    if not active:
        raise FallbackOwnerError(f"fallback owner {fallback_owner!r} is inactive in Salesforce: choose an active user")
    return active[0]["Id"]


def resolve_users(
    clio_users: Iterable[Mapping[str, Any]],
    sf_users: Iterable[Mapping[str, Any]],
    fallback_owner: str,
) -> list[Resolution]:
    """Resolve every Clio user record (Clio API shape) against Salesforce User rows.

    ``sf_users`` rows need ``Id``, ``Email``, ``IsActive`` and may carry ``Username``.
    ``fallback_owner`` is a Salesforce user Id, Username or Email; it must be an active user.
    """
    sf_users = list(sf_users)
    by_email: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in sf_users:
        key = normalise_email(row.get("Email"))
        if key:
            by_email[key].append(row)
    fb_id = resolve_fallback(sf_users, fallback_owner)

    out: list[Resolution] = []
    for user in clio_users:
        email = user.get("email")
        key = normalise_email(email)
        candidates = by_email.get(key, []) if key else []
        active = [c for c in candidates if c.get("IsActive")]
        if len(active) == 1:
            status, sf_id, owner = MATCHED, active[0]["Id"], active[0]["Id"]
            note = "matched by email" + ("" if active[0].get("Email") == email else " (differently cased)")
        elif len(active) > 1:
            status, sf_id, owner = AMBIGUOUS, None, fb_id
            note = f"{len(active)} active Salesforce users share this email; records go to the fallback owner"
        elif candidates:
            status, sf_id, owner = INACTIVE, candidates[0]["Id"], fb_id
            note = "the Salesforce user is inactive; activate it or keep the fallback owner"
        else:
            status, sf_id, owner = UNMATCHED, None, fb_id
            note = "no Salesforce user has this email; create one or keep the fallback owner"
        out.append(
            Resolution(
                clio_user_id=int(user["id"]),
                clio_name=str(user.get("name") or ""),
                clio_email=email,
                clio_enabled=bool(user.get("enabled", True)),
                status=status,
                sf_user_id=sf_id,
                owner_id=owner,
                note=note,
                calendar_id=_int_or_none(user.get("default_calendar_id")),
            )
        )
    return out


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def fallback_owner_id(resolutions: list[Resolution]) -> str | None:
    """The owner id given to users that did not match (None when every user matched)."""
    return next((r.owner_id for r in resolutions if r.status != MATCHED), None)


def user_map_document(resolutions: list[Resolution], fallback_owner_id: str) -> dict[str, Any]:
    """The staged ``user_map.json`` (read by ``clio2sf.mapping.users.UserMap.from_json``)."""
    return {
        "fallback_owner": fallback_owner_id,
        "users": {str(r.clio_user_id): r.owner_id for r in resolutions},
        "status": {str(r.clio_user_id): r.status for r in resolutions},
        # Clio calendar entries name a calendar (calendar_owner, attendees of type Calendar): a user's own
        # calendar is its default_calendar_id.  Firm and shared calendars have no user.
        "calendars": {str(r.calendar_id): r.clio_user_id for r in resolutions if r.calendar_id is not None},
        "counts": {s: sum(r.status == s for r in resolutions) for s in (MATCHED, INACTIVE, AMBIGUOUS, UNMATCHED)},
    }


def report_csv(resolutions: list[Resolution]) -> str:
    fields = list(Resolution.__dataclass_fields__)
    return reports.csv_text(fields, ([str(v) if isinstance(v := asdict(r)[f], bool) else v for f in fields]
                                     for r in resolutions))


def report_html(resolutions: list[Resolution], firm: str, fallback_owner: str) -> str:
    counts = {s: sum(r.status == s for r in resolutions) for s in (MATCHED, INACTIVE, AMBIGUOUS, UNMATCHED)}
    needs = [r for r in resolutions if r.status != MATCHED]
    summary = html_table(["Outcome", "Users"], [[k, v] for k, v in counts.items()])
    action = html_table(
        ["Clio user", "Email", "Enabled in Clio", "Outcome", "What happens"],
        [[r.clio_name, r.clio_email or "", "yes" if r.clio_enabled else "no", r.status, r.note] for r in needs],
    )
    every = html_table(
        ["Clio id", "Clio user", "Email", "Outcome", "Owner Id"],
        [[r.clio_user_id, r.clio_name, r.clio_email or "", r.status, r.owner_id] for r in resolutions],
    )
    body = (
        f"<p>Firm <b>{esc(firm)}</b>. Fallback owner: <b>{esc(fallback_owner)}</b>. "
        "Every record owned by a user below that is not <i>matched</i> goes to the fallback owner "
        "unless you fix the user in Salesforce and re-run this phase.</p>"
        f"<h2>Summary</h2>{summary}<h2>Needs a decision ({len(needs)})</h2>{action}<h2>All users</h2>{every}"
    )
    return html_page(f"User resolution: {firm}", body)
