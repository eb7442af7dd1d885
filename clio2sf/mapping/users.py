"""Clio user id -> Salesforce user id, with a fallback owner and a record of who used it."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

_SF_USER_ID = re.compile(r"^005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")


class UserMap:
    """Resolve OwnerId values.

    ``UserMap({1001: "005..."}, fallback="005...")``; ``resolve(clio_user_id, source_id)``
    returns the mapped id or the fallback, and remembers which records fell back
    (``fallback_records``, ``fallback_counts``) for the user report.
    """

    def __init__(self, mapping: Mapping[int | str, str], fallback: str | None) -> None:
        self._map: dict[int, str] = {}
        for clio_id, sf_id in mapping.items():
            if not isinstance(sf_id, str) or not _SF_USER_ID.match(sf_id):
                raise ValueError(f"user map: Clio user {clio_id}: {sf_id!r} is not a Salesforce user id")
            self._map[int(clio_id)] = sf_id
        if fallback is not None and not _SF_USER_ID.match(fallback):
            raise ValueError(f"user map: fallback owner {fallback!r} is not a Salesforce user id")
        self.fallback = fallback
        self.fallback_records: list[str] = []
        self.fallback_counts: Counter[int | None] = Counter()

    def __contains__(self, clio_user_id: object) -> bool:
        return clio_user_id in self._map

    def __len__(self) -> int:
        return len(self._map)

    def get(self, clio_user_id: int | None) -> str | None:
        """The mapped Salesforce id, or None (no fallback, nothing recorded)."""
        return self._map.get(clio_user_id) if clio_user_id is not None else None

    def resolve(self, clio_user_id: int | None, source_system_id: str | None = None) -> str | None:
        """The mapped id, else the fallback (recorded against ``source_system_id``)."""
        if clio_user_id is not None:
            sf_id = self._map.get(clio_user_id)
            if sf_id is not None:
                return sf_id
        self.fallback_counts[clio_user_id] += 1
        if source_system_id is not None:
            self.fallback_records.append(source_system_id)
        return self.fallback

    @classmethod
    def from_json(cls, doc: Mapping[str, object], fallback: str | None = None) -> UserMap:
        """Build from ``{"users": {"1001": "005..."}, "fallback_owner": "005..."}`` (user_map.json)."""
        users = doc.get("users") or {}
        if not isinstance(users, Mapping):
            raise ValueError("user map: 'users' must be an object of clio id -> salesforce id")
        fb = doc.get("fallback_owner", fallback)
        return cls({int(k): v for k, v in users.items()}, fb if isinstance(fb, str) else fallback)
