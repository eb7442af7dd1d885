"""Transform throughput per object, single core: ``python -m benchmarks.bench_transform [size]``.

Replicates the hand-made fixtures (tests/unit/mapping/fixtures) to ``size`` records per object
with fresh ids and times ``transform_object`` end to end (records/s, rows/s).
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


def main(size: int = 20000) -> list[dict]:
    spec = load_spec("harlow_vance")
    users = UserMap({1001: "005000000000001AAA", 1002: "005000000000002AAA"}, "005000000000009AAA")
    horizon = datetime(2025, 1, 1, tzinfo=UTC)
    results = []
    print(f"{'object':<20}{'records':>9}{'rows':>9}{'rejects':>9}{'records/s':>12}{'rows/s':>12}")
    for name in OBJECTS:
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


if __name__ == "__main__":
    out = main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "transform.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
