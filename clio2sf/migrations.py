"""Per-migration declarations: one YAML file per migration under ``include/migrations/``.

A migration is declared once, and the DAGs resolve everything else from it::

    # include/migrations/harlow_vance-m1.yaml
    firm: harlow_vance                  # include/mappings/firms/<firm>.yaml
    migration_id: m1
    clio_conn_id: clio_harlow_vance     # optional; default clio_<firm> if it exists, else clio_default
    salesforce_conn_id: salesforce_harlow_vance   # optional; same rule with salesforce_<firm>
    staging_root: s3://aws_default@bucket/clio2sf # optional; default the clio2sf_staging_root Variable
    clio_pool: clio_api_harlow_vance    # optional; default clio_api_<firm> if that pool exists, else clio_api
    salesforce_pool: salesforce_api_harlow_vance  # optional; same rule with salesforce_api_<firm>
    cutover:                            # optional: a scheduled delta DAG for this migration
      schedule: "0 * * * *"             # cron; one delta window per interval
      timezone: UTC
      start: 2026-12-01T00:00:00Z       # first window (required with a schedule)
      end: 2026-12-03T00:00:00Z         # optional: no window after this
      active: true                      # false: no DAG is generated

``mig_06_delta__<firm>__<migration>`` is generated for each declaration with an active cutover;
its runs carry this migration's firm and id, so a scheduled window never falls back to defaults.

**Pools per firm.** Every task of a migration run that the DAGs put in a shared pool (``clio_api``,
``salesforce_api``) runs in its firm's pool instead (:func:`pool_candidates`; the cluster policy
``clio2sf_airflow.pools`` applies it when the scheduler creates the task instance), so one firm's
tasks cannot take every slot another firm waits for.

Pure logic (no Airflow import): the DAG files and the plugin call :func:`load_declarations` /
:func:`find`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "include" / "migrations"
#: Environment variable naming another declarations directory.
DIR_ENV = "CLIO2SF_MIGRATIONS_DIR"
DEFAULT_CLIO_CONN = "clio_default"
DEFAULT_SALESFORCE_CONN = "salesforce_default"
DEFAULT_CLIO_POOL = "clio_api"
DEFAULT_SALESFORCE_POOL = "salesforce_api"
#: The pools the DAG files name; a migration's tasks are moved from them to its firm's pools.
SHARED_POOLS = (DEFAULT_CLIO_POOL, DEFAULT_SALESFORCE_POOL)

_SEGMENT = re.compile(r"^[a-z0-9_]+$")
_MIGRATION = re.compile(r"^[A-Za-z0-9_.-]+$")
_CONN = re.compile(r"^[A-Za-z0-9_.-]+$")
_KEYS = {"firm", "migration_id", "clio_conn_id", "salesforce_conn_id", "staging_root", "clio_pool",
         "salesforce_pool", "cutover", "description"}
_CUTOVER_KEYS = {"schedule", "timezone", "start", "end", "active"}


class DeclarationError(ValueError):
    """A migration declaration is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Cutover:
    schedule: str
    start: datetime
    timezone: str = "UTC"
    end: datetime | None = None
    active: bool = True


@dataclass(frozen=True)
class Migration:
    firm: str
    migration_id: str
    clio_conn_id: str | None = None
    salesforce_conn_id: str | None = None
    staging_root: str | None = None
    clio_pool: str | None = None
    salesforce_pool: str | None = None
    cutover: Cutover | None = None
    source: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return f"{self.firm}__{self.migration_id}"

    @property
    def delta_dag_id(self) -> str:
        return f"mig_06_delta__{re.sub(r'[^A-Za-z0-9_]', '_', self.key)}"

    def clio_conn_candidates(self) -> list[str]:
        """Connection ids to try in order: the declared one, else ``clio_<firm>`` then ``clio_default``."""
        return conn_candidates("clio", self.firm, self.clio_conn_id)

    def salesforce_conn_candidates(self) -> list[str]:
        return conn_candidates("salesforce", self.firm, self.salesforce_conn_id)

    def pool_candidates(self, shared: str) -> list[str]:
        """Pools for a task the DAG puts in ``shared`` (``clio_api`` or ``salesforce_api``), best first."""
        declared = {DEFAULT_CLIO_POOL: self.clio_pool, DEFAULT_SALESFORCE_POOL: self.salesforce_pool}[shared]
        return pool_candidates(shared, self.firm, declared)


def conn_candidates(system: str, firm: str, declared: str | None = None) -> list[str]:
    """``[declared]`` when declared (no fallback: a typo must fail), else ``[<system>_<firm>, <system>_default]``."""
    if declared:
        return [declared]
    return [f"{system}_{firm}", f"{system}_default"]


def pool_candidates(shared: str, firm: str, declared: str | None = None) -> list[str]:
    """``[declared]`` when declared (used even if missing: a typo must show), else ``[<shared>_<firm>, <shared>]``.

    The first that exists is the task's pool (:func:`choose_pool`): a firm gets its own pools by
    creating ``clio_api_<firm>`` and ``salesforce_api_<firm>`` (``scripts/import_settings`` does it for
    every firm config), and a firm without them shares the ``shared`` pool.
    """
    if declared:
        return [declared]
    return [f"{shared}_{firm}", shared]


def choose_pool(candidates: list[str], existing: set[str] | frozenset[str]) -> str:
    """The first candidate pool that exists; the last one when none does (the scheduler then names it)."""
    for name in candidates:
        if name in existing:
            return name
    return candidates[-1]


def declarations_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def _when(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise DeclarationError(f"{where}: {value!r} is not an ISO date-time") from exc
    else:
        raise DeclarationError(f"{where}: expected an ISO date-time, got {type(value).__name__}")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse(doc: Any, source: str = "<declaration>") -> Migration:
    """Validate one declaration document; errors name ``source`` and the field."""
    if not isinstance(doc, dict):
        raise DeclarationError(f"{source}: a migration declaration must be a mapping")
    unknown = set(doc) - _KEYS
    if unknown:
        raise DeclarationError(f"{source}: unknown field(s) {sorted(unknown)} (allowed: {sorted(_KEYS)})")
    firm, mid = doc.get("firm"), doc.get("migration_id")
    if not isinstance(firm, str) or not _SEGMENT.match(firm):
        raise DeclarationError(f"{source}: firm {firm!r} must match {_SEGMENT.pattern} (a firm config name)")
    if not isinstance(mid, str | int) or not _MIGRATION.match(str(mid)):
        raise DeclarationError(f"{source}: migration_id {mid!r} must match {_MIGRATION.pattern}")
    for key in ("clio_conn_id", "salesforce_conn_id", "clio_pool", "salesforce_pool"):
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or not _CONN.match(value)):
            raise DeclarationError(f"{source}: {key} {value!r} must match {_CONN.pattern}")
    root = doc.get("staging_root")
    if root is not None and (not isinstance(root, str) or "://" not in root):
        raise DeclarationError(f"{source}: staging_root {root!r} must be a URL (file:///... or s3://...)")
    cutover = None
    raw = doc.get("cutover")
    if raw is not None:
        if not isinstance(raw, dict):
            raise DeclarationError(f"{source}: cutover must be a mapping")
        unknown = set(raw) - _CUTOVER_KEYS
        if unknown:
            raise DeclarationError(f"{source}: cutover: unknown field(s) {sorted(unknown)}")
        schedule = raw.get("schedule")
        if not isinstance(schedule, str) or len(schedule.split()) != 5:
            raise DeclarationError(f"{source}: cutover.schedule {schedule!r} must be a 5-field cron expression")
        if "start" not in raw:
            raise DeclarationError(f"{source}: cutover.start is required (the first window)")
        start = _when(raw["start"], f"{source}: cutover.start")
        end = _when(raw["end"], f"{source}: cutover.end") if raw.get("end") is not None else None
        if end is not None and end <= start:
            raise DeclarationError(f"{source}: cutover.end must be after cutover.start")
        active = raw.get("active", True)
        if not isinstance(active, bool):
            raise DeclarationError(f"{source}: cutover.active must be true or false")
        cutover = Cutover(schedule=schedule, start=start, timezone=str(raw.get("timezone") or "UTC"),
                          end=end, active=active)
    return Migration(firm=firm, migration_id=str(mid), clio_conn_id=doc.get("clio_conn_id"),
                     salesforce_conn_id=doc.get("salesforce_conn_id"), staging_root=root,
                     clio_pool=doc.get("clio_pool"), salesforce_pool=doc.get("salesforce_pool"), cutover=cutover,
                     source=source)


def load_declarations(directory: Path | str | None = None) -> list[Migration]:
    """Every declaration in ``directory`` (default :func:`declarations_dir`), sorted by firm and id.

    Two files declaring the same firm and migration id are an error.
    """
    folder = Path(directory) if directory is not None else declarations_dir()
    if not folder.is_dir():
        return []
    found: dict[tuple[str, str], Migration] = {}
    for path in sorted(folder.glob("*.y*ml")):
        with path.open(encoding="utf-8") as fh:
            try:
                doc = yaml.safe_load(fh)
            except yaml.YAMLError as exc:
                raise DeclarationError(f"{path.name}: not valid YAML: {exc}") from exc
        mig = parse(doc, path.name)
        key = (mig.firm, mig.migration_id)
        if key in found:
            raise DeclarationError(f"{path.name}: migration {key} is already declared in {found[key].source}")
        found[key] = mig
    return [found[k] for k in sorted(found)]


def find(firm: str, migration_id: str, directory: Path | str | None = None) -> Migration | None:
    """The declaration of ``firm``/``migration_id``, or None (undeclared migrations use the defaults)."""
    for mig in load_declarations(directory):
        if mig.firm == firm and mig.migration_id == migration_id:
            return mig
    return None


def scheduled(directory: Path | str | None = None) -> list[Migration]:
    """Declarations with an active cutover: one scheduled delta DAG each."""
    return [m for m in load_declarations(directory) if m.cutover is not None and m.cutover.active]
