"""Shared pieces of the benchmarks: the figure row, the machine description, sandbox connections."""

from __future__ import annotations

import cProfile
import io
import json
import os
import platform
import pstats
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "plugins")):
    if _p not in sys.path:
        sys.path.insert(0, _p)


@dataclass
class Figure:
    """One measured figure: a table row with its target and whether it is met (None: no target)."""

    benchmark: str
    figure: str
    subject: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine()}


def keep_run(results: Path, label: str, figs: list[Figure], argv: list[str], **extra: Any) -> dict[str, Any]:
    """Keep a run's figures under ``label`` (e.g. before / after) in the ``results`` JSON (``{"runs": {label:
    {measured_at, machine, **extra, command, figures}}}``, kept across runs); returns the whole document."""
    from datetime import UTC, datetime

    doc = json.loads(results.read_text(encoding="utf-8")) if results.exists() else {"runs": {}}
    doc["runs"][label] = {"measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine(),
                          **extra, "command": argv, "figures": [f.as_dict() for f in figs]}
    results.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return doc


def write_results_doc(path: Path, figs: list[Figure], argv: list[str], render: Callable[[dict[str, Any]], None], *,
                      note: str = "", head: dict[str, Any] | None = None, tail: dict[str, Any] | None = None) -> None:
    """Write a bench's results JSON (``measured_at``, ``commit``, ``machine``, ``command``, ``note``, ``head``,
    ``figures``, ``tail``) to ``path`` and its Markdown page through ``render``."""
    from datetime import UTC, datetime

    from clio2sf import staging

    doc = {"measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": commit(), "machine": machine(),
           "command": argv, "note": note, **(head or {}), "figures": [f.as_dict() for f in figs], **(tail or {})}
    staging.write_json(path, doc)
    render(doc)


def met_text(met: bool | None) -> str:
    """A figure's goal cell: ``-`` (no goal), ``met`` or ``**not met**``."""
    return "-" if met is None else "met" if met else "**not met**"


def growth_figure(bench: str, subject: str, sizes: tuple[int, int], peaks: tuple[float, float], what: str,
                  flat: float) -> Figure:
    """The peak RSS growth from the smallest measured size to the largest (``peaks`` in MB), goal ``≤ flat``."""
    growth = peaks[1] / peaks[0]
    return Figure(bench, subject, f"{sizes[0]:,} → {sizes[1]:,} {what}".rstrip(), round(growth, 3), "ratio",
                  f"≤ {flat}", at_most(growth, flat))


def figures_page(path: Path, title: str, doc: dict[str, Any], module: str, setting: str, notes: list[str],
                 extra: list[tuple[str, Callable[[dict[str, Any]], Any]]] = (), after: str = "",
                 note: str | None = None) -> None:
    """Write a bench's Markdown page to ``path``: ``title``, the line saying when, where and how it was measured
    (``setting`` right after the commit, ``after`` right after the command, then ``note``: by default
    ``doc['note']``), the figures with the ``extra`` columns (header, cell of a figure), then ``notes``."""
    m = doc["machine"]
    note = doc.get("note") if note is None else note
    header = ["figure", "subject", "value", "unit", "target", "met", *(h for h, _ in extra)]
    lines = [f"# {title}", "",
             f"Measured {doc['measured_at']} on {m['cpu_count']} CPUs, Python {m['python']}, commit `{doc['commit']}`"
             f"{setting} Produced by `python -m {module} {' '.join(doc['command'])}`{after}."
             + (f" {note}" if note else ""), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for f in doc["figures"]:
        cells = [f["figure"], f["subject"], f["value"], f["unit"], f["target"] or "-", met_text(f["met"]),
                 *(cell(f) for _, cell in extra)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", *(f"- {n}" for n in notes)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def shown_args(argv: list[str]) -> list[str]:
    """The command line as a results page shows it: without ``--note`` and its sentence (kept apart)."""
    return [a for i, a in enumerate(argv) if a != "--note" and (i == 0 or argv[i - 1] != "--note")]


def ints(text: str) -> list[int]:
    """``"100000,1000000"`` as ``[100000, 1000000]``."""
    return [int(s) for s in text.split(",") if s]


def run_rows(doc: dict[str, Any], header: list[str],
             cells: Callable[[str, dict[str, Any], dict[str, Any]], list[Any]]) -> list[str]:
    """A Markdown table of the runs :func:`keep_run` kept: ``header``, then a line per figure of each run,
    ``cells(label, run, figure)``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, entry in doc["runs"].items():
        lines += ["| " + " | ".join(str(c) for c in cells(label, entry, f)) + " |" for f in entry["figures"]]
    return lines


def runs_page(path: Path, title: str, intro: str, doc: dict[str, Any], header: list[str],
              cells: Callable[[str, dict[str, Any], dict[str, Any]], list[Any]], notes: list[str],
              steps: list[str] = ()) -> None:
    """Write a bench's page of the runs :func:`keep_run` kept: ``title``, ``intro``, the :func:`run_rows`
    table, then ``steps`` (lines ``cells`` may append while the table is built) and ``notes`` as bullets."""
    table = run_rows(doc, header, cells)  # first: ``cells`` may fill ``steps``
    lines = [f"# {title}", "", intro, "", *table, "", *steps, *(f"- {n}" for n in notes), ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def print_figures(figs: list[Figure], label: str | None,
                  record: Callable[[str, list[Figure], list[str]], None]) -> None:
    """Print each figure as a JSON line; with ``label`` (``--record``), keep them under it."""
    for f in figs:
        print(json.dumps(f.as_dict()))
    if label:
        record(label, figs, sys.argv[1:])


def commit() -> str:
    """The git commit measured (``+dirty`` when tracked files differ from it), or ``unknown``."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def top_functions(fn: Callable[[], Any], limit: int = 8) -> list[str]:
    """Run ``fn`` under cProfile and return its top functions by cumulative time, as text lines."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    out = []
    for (filename, line, name), (_cc, _nc, tottime, cumtime, _callers) in sorted(
            stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:limit]:  # type: ignore[attr-defined]
        short = filename.replace(str(ROOT) + "/", "")
        out.append(f"{name} ({Path(short).name}:{line}) self {tottime:.2f}s cum {cumtime:.2f}s")
    return out


def clio_conn_json(clio: Any, rate_dir: Path) -> str:
    """The AIRFLOW_CONN_CLIO_DEFAULT value for a running Clio sandbox."""
    return json.dumps({"conn_type": "http", "host": clio.base_url, "login": clio.client_id,
                       "password": clio.client_secret,
                       "extra": {"refresh_token": clio.refresh_token, "rate_state_dir": str(rate_dir)}})


def use_salesforce(sb: Any) -> None:
    """Point ClioSalesforceHook (env connection) at a running Salesforce sandbox."""
    os.environ["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = sb.connection_json()
    os.environ["REQUESTS_CA_BUNDLE"] = sb.ca_bundle


def sf_api_calls(sb: Any) -> int:
    return int(sb.request_log()["total_api_calls"])
