"""``benchmarks.bench_load_task_memory``: its staged files are what the transform writes for recurring calendar
entries (every relation names an event of the Event file, no natural key twice), the full load's grouping
slices them without losing or repeating a row, and its page renders from its record."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_load_task_memory as bench
from clio2sf import pipeline, staging

pytestmark = pytest.mark.unit


def test_the_staged_calendar_is_loadable_and_slices_whole(tmp_path: Path) -> None:
    bench.stage(tmp_path, 1_000, tag="t-")
    events = list(staging.read_jsonl_gz(tmp_path / "transformed" / "Event" / bench.FILE))
    relations = list(staging.read_jsonl_gz(tmp_path / "transformed" / "EventRelation" / bench.FILE))
    assert len(events) == len(relations) == 1_000
    ids = {e["row"]["Clio_Id__c"] for e in events}
    assert len(ids) == 1_000 and all(e["source_system_id"] == e["row"]["Clio_Id__c"] for e in events)
    keys = {(r["row"]["Event.Clio_Id__c"], r["row"]["Contact:Relation.Clio_Id__c"]) for r in relations}
    assert len(keys) == 1_000 and {k[0] for k in keys} <= ids  # two contacts per event, never the same one twice
    assert {int(k[1].split("-")[1]) for k in keys} <= set(range(bench.CONTACTS))

    for sobject in bench.SOBJECTS:
        path = tmp_path / "transformed" / sobject / bench.FILE
        groups = pipeline.group_batches([path], sobject, max_rows=300)
        assert len(groups) > 1 and all(isinstance(g[0], pipeline.RowSlice) for g in groups)
        rows = [e["source_system_id"] for g in groups for e in pipeline.read_part(g[0])]
        assert sorted(rows) == sorted(e["source_system_id"] for e in (events if sobject == "Event" else relations))


def test_the_page_renders_from_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    fig = bench.Figure("load_task_memory", "peak RSS of a load_batch task, Event", "40,000 rows in one file, 2 task(s)",
                       300.5, "MB", "< 500", True, detail={"rows_per_task": [20_000, 20_000], "seconds": 30.0})
    bench.render({"measured_at": "2026-12-03T14:00:00Z", "commit": "abc", "command": ["--sizes", "40000"],
                  "machine": {"cpu_count": 2, "python": "3.11.7"}, "note": "A note.",
                  "bounds": {"min_rows": 20_000, "max_rows": 20_000, "max_bytes": 24 * 2**20},
                  "figures": [fig.as_dict()]})
    page = (tmp_path / "load_task_memory.md").read_text(encoding="utf-8")
    assert "| peak RSS of a load_batch task, Event | 40,000 rows in one file, 2 task(s) | 300.5 | MB | < 500 | met " \
           "| 20,000, 20,000 | 30.0 |" in page
    assert "A note." in page and "at most 20,000 rows and 24 MB" in page
