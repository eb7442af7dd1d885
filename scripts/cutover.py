"""Simulate activity in Clio during the cutover window (for the demo and the delta tests)."""

from __future__ import annotations

from typing import Any


def change_firm(clio) -> dict[str, Any]:
    """Update, add and delete a few records through the Clio sandbox's admin API; return their ids."""
    def first_ids(obj: str, n: int, **filters: str) -> list[int]:
        import requests

        token = clio.access_token()
        r = requests.get(f"{clio.base_url}/api/v4/{obj}.json", params={"fields": "id", "limit": n, **filters},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
        r.raise_for_status()
        return [row["id"] for row in r.json()["data"]]

    contacts = first_ids("contacts", 3, type="Person")
    matters = first_ids("matters", 2)
    tasks = first_ids("tasks", 2)
    updated = [
        clio.mutate("contacts", "update", contacts[0], {"title": "Managing Partner"}),
        clio.mutate("matters", "update", matters[0], {"description": "Renamed during cutover"}),
    ]
    created = [
        clio.mutate("tasks", "create", None, {"name": "Cutover follow-up", "description": "Call the client",
                                              "status": "pending", "priority": "High",
                                              "matter": {"id": matters[1]}}),
    ]
    deleted = [clio.mutate("tasks", "delete", tasks[0])]
    return {
        "updated": {"contacts": [contacts[0]], "matters": [matters[0]]},
        "created": {"tasks": [c.get("id") for c in created]},
        "deleted": {"tasks": [tasks[0]]},
        "raw": {"updated": updated, "created": created, "deleted": deleted},
    }
