"""DAG integrity checks shared by the tests (kept separate so a test can run them on a bad folder)."""

from __future__ import annotations

import ast
import socket
from contextlib import contextmanager
from pathlib import Path
from unittest import mock


class NetworkAtParseTime(RuntimeError):
    """Raised when DAG parsing tries to open a network connection."""


@contextmanager
def no_network():
    """Fail any socket connect while the block runs."""

    def refuse(*args, **kwargs):
        raise NetworkAtParseTime(f"DAG code opened a connection at parse time: {args[1:]!r}")

    with mock.patch.object(socket.socket, "connect", refuse), mock.patch.object(
        socket, "create_connection", refuse
    ):
        yield


def load_dagbag(folder: Path):
    """Parse every DAG file in ``folder`` with networking disabled."""
    from airflow.dag_processing.dagbag import DagBag

    with no_network():
        return DagBag(dag_folder=str(folder))


def problems(folder: Path) -> list[str]:
    """Return every integrity problem in ``folder`` (empty when all is well)."""
    bag = load_dagbag(folder)
    found = [f"import error in {path}: {err.strip().splitlines()[-1]}" for path, err in bag.import_errors.items()]
    for dag_id, dag in bag.dags.items():
        if not dag.tags:
            found.append(f"{dag_id}: no tags")
        if not (dag.doc_md or "").strip():
            found.append(f"{dag_id}: no doc_md")
        retries = (dag.default_args or {}).get("retries", 0)
        if retries < 2:
            found.append(f"{dag_id}: default_args retries {retries} < 2")
        for task in dag.tasks:
            if task.retries < 2:
                found.append(f"{dag_id}.{task.task_id}: retries {task.retries} < 2")
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in {
                "dag",
                "DAG",
            }:
                if not any(k.arg == "schedule" for k in node.keywords):
                    found.append(f"{path.name}: DAG without an explicit schedule")
    return found
