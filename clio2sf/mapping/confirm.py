"""Confirmation of a mapping: who approved which content hash, and when.

The store is a YAML file (``firms/<firm>.confirmations.yaml`` or one in the staging area)::

    confirmations:
      - hash: 3f2a...
        by: jane.admin@firm.example
        at: "2026-11-28T09:00:00+00:00"
      - hash: 3f2a...                 # a rejection revokes every earlier approval of that hash
        by: lead@firm.example
        at: "2026-11-28T10:00:00+00:00"
        decision: rejected
        reason: "trust balances do not match"

The latest entry for a hash decides: an approval after a rejection approves it again.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from clio2sf import staging
from clio2sf.mapping.spec import DEFAULT_MAPPINGS_DIR, MappingSpec


class UnconfirmedMappingError(RuntimeError):
    """Writing to Salesforce was refused: the mapping (this exact hash) was never confirmed."""


def default_store(firm: str | None, mappings_dir: Path | str = DEFAULT_MAPPINGS_DIR) -> Path:
    """The confirmations file next to the firm config."""
    return Path(mappings_dir) / "firms" / f"{firm or 'default'}.confirmations.yaml"


def _as_path(store: Any) -> Any:
    """Strings become local paths; path-like objects (ObjectStoragePath, UPath) pass through."""
    return Path(store) if isinstance(store, str) else store


def read_confirmations(store: Any) -> list[dict]:
    """All confirmations in ``store`` (empty when the file does not exist)."""
    path = _as_path(store)
    if not path.exists():
        return []
    with path.open("r", encoding="utf-8") as fh:
        data = yaml.safe_load(fh.read()) or {}
    items = data.get("confirmations") or []
    if not isinstance(items, list):
        raise ValueError(f"{path}: 'confirmations' must be a list")
    return items


def confirm(spec: MappingSpec, by: str, at: datetime | str | None, store: Any) -> dict:
    """Record that ``by`` confirmed ``spec.content_hash`` at ``at`` (now if None); returns the entry."""
    return _append(spec, by, at, store, {})


def reject(spec: MappingSpec, by: str, reason: str | None, at: datetime | str | None, store: Any) -> dict:
    """Record that ``by`` rejected ``spec.content_hash``: earlier approvals of that hash no longer count."""
    return _append(spec, by, at, store, {"decision": REJECTED, "reason": (reason or "").strip() or "no reason given"})


REJECTED = "rejected"


def _append(spec: MappingSpec, by: str, at: datetime | str | None, store: Any, extra: dict) -> dict:
    if not by or not by.strip():
        raise ValueError("confirm: 'by' (who confirms) is required")
    if at is None:
        at = datetime.now(UTC)
    at_s = at.isoformat() if isinstance(at, datetime) else str(at)
    entry = {"hash": spec.content_hash, "by": by, "at": at_s, "firm": spec.firm, **extra}
    path = _as_path(store)
    items = read_confirmations(path) + [entry]
    text = yaml.safe_dump({"confirmations": items}, sort_keys=False, allow_unicode=True)
    if isinstance(path, Path):
        staging.ensure_dir(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".confirm-", suffix=".yaml")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    else:  # UPath/ObjectStoragePath: atomic and owner-only on a local disk; a whole-object write elsewhere
        staging.write_bytes_atomic(path, text.encode("utf-8"))
    return entry


def decision_for(spec: MappingSpec, store: Any) -> dict | None:
    """The latest entry (approval or rejection) for this exact spec hash, or None."""
    matches = [c for c in read_confirmations(store) if c.get("hash") == spec.content_hash]
    return matches[-1] if matches else None


def confirmation_for(spec: MappingSpec, store: Any) -> dict | None:
    """The standing approval of this exact spec hash (None if never approved or rejected since)."""
    latest = decision_for(spec, store)
    return None if latest is None or latest.get("decision") == REJECTED else latest


def require_confirmed(spec: MappingSpec, store: Any) -> dict:
    """Return the confirmation of ``spec``; raise UnconfirmedMappingError if none matches its hash."""
    latest = decision_for(spec, store)
    if latest is not None and latest.get("decision") == REJECTED:
        raise UnconfirmedMappingError(
            f"hash {spec.content_hash[:12]} of firm {spec.firm or 'default'!r} was rejected by {latest.get('by')} "
            f"at {latest.get('at')}: {latest.get('reason')}; fix what was rejected and approve it again"
        )
    if latest is not None:
        return latest
    previous = read_confirmations(store)
    if previous:
        last = previous[-1]
        raise UnconfirmedMappingError(
            f"mapping for firm {spec.firm or 'default'!r} changed since it was confirmed: current hash "
            f"{spec.content_hash[:12]}, last confirmed {str(last.get('hash'))[:12]} by {last.get('by')} "
            f"at {last.get('at')}; review the mapping spec and confirm it again"
        )
    raise UnconfirmedMappingError(
        f"mapping for firm {spec.firm or 'default'!r} (hash {spec.content_hash[:12]}) has not been "
        f"confirmed; review the mapping spec and confirm it before loading into Salesforce"
    )
