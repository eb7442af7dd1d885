"""Clio user id -> Salesforce user id, with a fallback owner and a record of who used it."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

_SF_USER_ID = re.compile(r"^005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")


class UserMap:
    """Resolve OwnerId values.

    ``UserMap({1001: "005..."}, fallback="005...")``; ``resolve(clio_user_id, source_id)``
    returns the mapped id or the fallback, and remembers which records fell back
    (``fallback_records``, ``fallback_counts``) for the user report.

    ``unmatched`` names Clio users whose entry in ``mapping`` is only the fallback owner (the user
    map document lists every Clio user, matched or not): ``get`` returns None for them, so they are
    never taken for a real Salesforce user (team members, attendees), and ``resolve`` records the
    fallback.  ``calendars`` maps a Clio calendar id to the Clio user whose calendar it is (Clio
    entries name their *calendar*, ``calendar_owner``, not a user; a user's calendar is its
    ``default_calendar_id``).
    """

    def __init__(self, mapping: Mapping[int | str, str], fallback: str | None, *,
                 unmatched: Iterable[int | str] = (), calendars: Mapping[int | str, int | str] | None = None) -> None:
        self._map: dict[int, str] = {}
        for clio_id, sf_id in mapping.items():
            if not isinstance(sf_id, str) or not _SF_USER_ID.match(sf_id):
                raise ValueError(f"user map: Clio user {clio_id}: {sf_id!r} is not a Salesforce user id")
            self._map[int(clio_id)] = sf_id
        if fallback is not None and not _SF_USER_ID.match(fallback):
            raise ValueError(f"user map: fallback owner {fallback!r} is not a Salesforce user id")
        self.fallback = fallback
        self.unmatched: frozenset[int] = frozenset(int(u) for u in unmatched)
        self.calendars: dict[int, int] = {int(c): int(u) for c, u in (calendars or {}).items()}
        self.fallback_records: list[str] = []
        self.fallback_counts: Counter[int | None] = Counter()

    def __contains__(self, clio_user_id: object) -> bool:
        return clio_user_id in self._map

    def __len__(self) -> int:
        return len(self._map)

    def get(self, clio_user_id: int | None) -> str | None:
        """The matched Salesforce id, or None (unknown or unmatched user; no fallback, nothing recorded)."""
        if clio_user_id is None or clio_user_id in self.unmatched:
            return None
        return self._map.get(clio_user_id)

    def calendar_user(self, calendar_id: int | str | None) -> int | None:
        """The Clio user whose calendar ``calendar_id`` is, or None (a firm or shared calendar, or unknown)."""
        if calendar_id is None:
            return None
        try:
            return self.calendars.get(int(calendar_id))
        except (TypeError, ValueError):
            return None

    def resolve(self, clio_user_id: int | None, source_system_id: str | None = None) -> str | None:
        """The matched id, else the fallback (recorded against ``source_system_id``)."""
        sf_id = self.get(clio_user_id)
        if sf_id is not None:
            return sf_id
        self.fallback_counts[clio_user_id] += 1
        if source_system_id is not None:
            self.fallback_records.append(source_system_id)
        return self.fallback

    @classmethod
    def from_json(cls, doc: Mapping[str, object], fallback: str | None = None) -> UserMap:
        """Build from ``{"users": {"1001": "005..."}, "fallback_owner": "005...", "status": {"1001":
        "matched"}, "calendars": {"801": 1001}}`` (user_map.json; users without ``matched`` status are
        unmatched)."""
        users = doc.get("users") or {}
        if not isinstance(users, Mapping):
            raise ValueError("user map: 'users' must be an object of clio id -> salesforce id")
        fb = doc.get("fallback_owner", fallback)
        status = doc.get("status") or {}
        calendars = doc.get("calendars") or {}
        if not isinstance(status, Mapping) or not isinstance(calendars, Mapping):
            raise ValueError("user map: 'status' and 'calendars' must be objects keyed by clio id")
        unmatched = [int(k) for k, v in status.items() if v != "matched"]
        return cls({int(k): v for k, v in users.items()}, fb if isinstance(fb, str) else fallback,
                   unmatched=unmatched, calendars=calendars)
