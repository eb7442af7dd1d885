"""Progress lines: done/total, rate, ETA, at most and at least every `every` seconds while fed."""

from __future__ import annotations

import pytest

from clio2sf.progress import Progress

pytestmark = pytest.mark.unit


def test_lines_every_interval_with_rate_and_eta():
    now = [0.0]
    p = Progress("documents", "documents", total=100, every=30, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 10
        p.update(add=5)
    # fed every 10 s: a line at 30, 60 and 90 s
    assert p.lines == ["documents: 15/100 documents, 0.5 documents/s, ETA 0h02m50s",
                       "documents: 30/100 documents, 0.5 documents/s, ETA 0h02m20s",
                       "documents: 45/100 documents, 0.5 documents/s, ETA 0h01m50s"]
    p.finish()
    assert p.lines[-1].startswith("documents: 50/100")


def test_unknown_total_says_so():
    now = [0.0]
    p = Progress("matters", "records", every=1, clock=lambda: now[0])
    now[0] = 2
    p.update(400)
    assert p.lines == ["matters: 400/? records, 200.0 records/s, ETA -"]
