"""The design card: pure logic never imports Airflow, DAG code never imports the sandboxes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_pure_logic_has_no_airflow_or_sandbox_import():
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & {"airflow", "sandbox"})
        for p in (ROOT / "clio2sf").rglob("*.py")
        if _imports(p) & {"airflow", "sandbox"}
    }
    assert offenders == {}


def test_clio_sandbox_never_imports_the_migration():
    """Its fields, filters and endpoints come from the official spec, never from our catalog."""
    files = list((ROOT / "sandbox" / "clio").rglob("*.py"))
    assert files and [str(p) for p in files if "clio2sf" in _imports(p)] == []


def test_dag_and_plugin_code_never_imports_sandboxes():
    files = list((ROOT / "dags").rglob("*.py")) + list((ROOT / "plugins").rglob("*.py"))
    assert files, "dags/ and plugins/ should hold code"
    assert [str(p) for p in files if "sandbox" in _imports(p)] == []


def test_design_card_layout_exists():
    for name in ("dags", "plugins/clio2sf_airflow", "include/mappings", "tests", "Dockerfile",
                 "requirements.txt", "airflow_settings.yaml", "README.md"):
        assert (ROOT / name).exists(), name


def test_requirements_are_pinned():
    for req in ("requirements.txt", "requirements-sandbox.txt", "requirements-dev.txt"):
        for line in (ROOT / req).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert "==" in line, f"{req}: {line} is not pinned"


def test_dockerfile_copies_only_existing_paths():
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
            for src in sources:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_compose_file_parses_and_has_the_airflow_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    assert {"postgres", "scheduler", "dag-processor", "triggerer", "api-server"} <= set(compose["services"])
    assert "postgresql" in compose["x-airflow-common"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme.split("\n## ")[0]
    assert ci.strip().splitlines()[-1] == "make test"


def test_airflow_loads_only_the_plugin_files_not_the_package_module_by_module():
    """Airflow imports every .py file it finds in the plugins folder, in every task process: the package
    is ignored there (plugins/.airflowignore), so a task neither runs its modules twice nor imports
    FastAPI for the apps only the api-server serves (they are built on their first request)."""
    import sys

    from airflow.sdk._shared.module_loading import find_path_from_directory

    found = sorted(Path(p).name for p in find_path_from_directory(str(ROOT / "plugins"), ".airflowignore", "glob")
                   if p.endswith(".py"))
    assert found == ["clio2sf_reports_plugin.py", "clio2sf_webhooks_plugin.py"]
    sys.path.insert(0, str(ROOT / "plugins"))
    try:
        import clio2sf_reports_plugin
    finally:
        sys.path.remove(str(ROOT / "plugins"))
    from clio2sf_airflow import reports_app
    from clio2sf_airflow.lazy_app import LazyApp

    app = clio2sf_reports_plugin.Clio2sfReportsPlugin.fastapi_apps[0]
    assert isinstance(app["app"], LazyApp) and app["url_prefix"] == reports_app.PREFIX
