"""A migration under test: both sandboxes, a staging root and a runner for the phase DAGs."""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from clio2sf import catalog, staging
from clio2sf.extract import read_records
from scripts.runner import ROOT, PhaseRun, airflow_env, run_dag

FIRM = "harlow_vance"


@dataclass
class Migration:
    """Everything a phase test needs; ``run(phase_dag_id, **params)`` runs a DAG and asserts success."""

    clio: object
    sf: object
    workdir: Path
    env: dict[str, str]
    migration_id: str = "it"
    runs: list[PhaseRun] = field(default_factory=list)

    @property
    def staging(self) -> Path:
        return self.workdir / "staging"

    @property
    def root(self) -> Path:
        return self.staging / FIRM / self.migration_id

    def run(self, dag_id: str, *, expect_ok: bool = True, tag: str = "", env: dict[str, str] | None = None,
            **conf) -> PhaseRun:
        """Run one phase DAG; ``env`` replaces the migration's environment for this run only."""
        run = run_dag(dag_id, {"firm": FIRM, "migration_id": self.migration_id, **conf},
                      self.env if env is None else env, self.workdir / "logs", tag=tag)
        self.runs.append(run)
        if expect_ok:
            assert run.ok, f"{dag_id} failed:\n{run.errors()}"
        return run

    def assert_extraction_matches_sandbox(self) -> None:
        """Every Clio object is staged complete, each record exactly once, as many as the sandbox holds."""
        expected = self.clio.counts(catalog.CLIO_OBJECTS)
        summary = self.json("raw/_extraction.json")
        assert summary["complete"]
        for name, info in summary["objects"].items():
            ids = [env["clio_id"] for env in read_records(self.root, name)]
            assert len(ids) == len(set(ids)) == expected[name] == info["records"], name

    def approve(self, kind: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "scripts.approve", kind, "--firm", FIRM, "--migration-id", self.migration_id,
             "--by", "tester@firm.example"],
            env=self.env, check=True, cwd=ROOT, capture_output=True,
        )

    def json(self, rel: str):
        return staging.read_json(self.root / rel)


def start_migration(stack: ExitStack, workdir: Path, base_env: dict[str, str], *, preset: str = "tiny",
                    window: float = 2.0, clio_knobs: dict | None = None, sf_knobs: dict | None = None) -> Migration:
    """Start both sandboxes (closed by ``stack``) and return a Migration wired to them."""
    from sandbox.clio.testing import run_clio_sandbox
    from sandbox.salesforce.testing import run_sf_sandbox

    clio = stack.enter_context(run_clio_sandbox(workdir / "clio", seed=42, preset=preset, rate_limit=50,
                                                window=window, **(clio_knobs or {})))
    sf = stack.enter_context(run_sf_sandbox(workdir / "salesforce", seed=42, **(sf_knobs or {})))
    (workdir / "staging").mkdir(parents=True, exist_ok=True)
    env = airflow_env(clio, sf, f"file://{workdir / 'staging'}", base=base_env, rate_dir=workdir / "rate")
    return Migration(clio, sf, workdir, env)
