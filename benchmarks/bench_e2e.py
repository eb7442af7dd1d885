"""End to end: the demo firm's wall time per phase, read from ``.demo/timings.json`` if the demo wrote it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import ROOT, Figure

TIMINGS = ROOT / ".demo" / "timings.json"


def run(path: Path = TIMINGS) -> list[Figure]:
    if not path.exists():
        return [Figure("end_to_end", "demo firm wall time", "all phases", None, "s",
                       note=f"not measured: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
                            "does not exist (run `make demo` first)")]
    timings = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(timings, dict) or not all(isinstance(v, int | float) for v in timings.values()):
        raise ValueError(f"{path}: expected {{phase: seconds}}")
    total = sum(timings.values())
    figs = [Figure("end_to_end", "demo firm wall time", phase, round(sec, 1), "s",
                   detail={"share": round(sec / total, 3) if total else None}) for phase, sec in timings.items()]
    figs.append(Figure("end_to_end", "demo firm wall time", "total", round(total, 1), "s"))
    return figs
