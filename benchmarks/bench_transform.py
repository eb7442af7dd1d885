"""Transform throughput per object, single core: ``python -m benchmarks.bench_transform [size]``.

Replicates the hand-made fixtures (tests/unit/mapping/fixtures) to ``size`` records per object
with fresh ids and times ``transform_object`` end to end (records/s, rows/s).  One process on
one core, so records/s is records/s per core.  ``figures(size)`` returns the runner's rows; the
target (≥ 20,000 records/s) applies to ``HIGH_VOLUME`` objects, the largest in a firm.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clio2sf.mapping.spec import load_spec  # noqa: E402
from clio2sf.mapping.transform import transform_object  # noqa: E402
from clio2sf.mapping.users import UserMap  # noqa: E402

FIXTURES = ROOT / "tests" / "unit" / "mapping" / "fixtures"
OBJECTS = ["contacts", "matters", "relationships", "bills", "bank_transactions", "activities", "tasks",
           "communications", "calendar_entries", "documents", "matter_notes"]


#: The objects with the most records per matter (docs/clio-sandbox.md: ~8 activities, ~2.6 contacts,
#: ~2 relationships per matter, plus tasks and bank transactions).
HIGH_VOLUME = ("activities", "contacts", "relationships", "tasks", "bank_transactions")
TARGET = 20_000


def _stream(name: str, size: int) -> Iterator[dict]:
    base = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    if name == "calendar_entries":  # one-off events only; series expansion is measured per occurrence
        base = [e for e in base if not e["data"].get("recurrence_rule")]
    for i in range(size):
        env = copy.deepcopy(base[i % len(base)])
        new_id = 100000 + i
        env["data"]["id"] = str(new_id) if name == "calendar_entries" else new_id
        env["clio_id"] = new_id
        env["source_system_id"] = env["source_system_id"].rsplit("-", 1)[0] + f"-{new_id}"
        yield env


def main(size: int = 20000, objects: list[str] | None = None) -> list[dict]:
    spec = load_spec("harlow_vance")
    users = UserMap({1001: "005000000000001AAA", 1002: "005000000000002AAA"}, "005000000000009AAA")
    horizon = datetime(2025, 1, 1, tzinfo=UTC)
    results = []
    print(f"{'object':<20}{'records':>9}{'rows':>9}{'rejects':>9}{'records/s':>12}{'rows/s':>12}")
    for name in objects or OBJECTS:
        items = list(_stream(name, size))  # built up front so only the transform is timed
        rows = rejects = 0
        t0 = time.perf_counter()
        for res in transform_object(name, items, spec, users, horizon=horizon):
            if "rule" in res:
                rejects += 1
            else:
                rows += 1
        dt = time.perf_counter() - t0
        results.append({"object": name, "records": size, "rows": rows, "rejects": rejects,
                        "records_per_s": size / dt, "rows_per_s": rows / dt})
        print(f"{name:<20}{size:>9}{rows:>9}{rejects:>9}{size / dt:>12,.0f}{rows / dt:>12,.0f}")
    return results


def figures(size: int) -> list:
    """The runner's rows: records/s per core per object; profile the slowest high-volume miss."""
    from benchmarks.common import Figure, at_least, top_functions

    out = []
    for r in main(size):
        high = r["object"] in HIGH_VOLUME
        met = at_least(r["records_per_s"], TARGET) if high else None
        out.append(Figure("transform_throughput", "records/s per core", r["object"], round(r["records_per_s"]),
                          "records/s", f"≥ {TARGET:,}" if high else "", met,
                          detail={k: (round(v) if isinstance(v, float) else v) for k, v in r.items()}))
    for f in out:
        if f.met is False:
            f.detail["profile"] = top_functions(lambda name=f.subject: main(min(size, 5000), [name]))
    return out


if __name__ == "__main__":
    out = main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "transform.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
