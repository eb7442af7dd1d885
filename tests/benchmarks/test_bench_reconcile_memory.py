"""``benchmarks.bench_reconcile_memory``: the synthetic firm's books are live (bills awaiting payment or
paid by allocations, half from trust; trust deposits and withdrawals on four matters in five, each
matter reporting its balance) and the reconciliation of a small one comes out exact, books included."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_reconcile_memory as bench

pytestmark = pytest.mark.unit


def test_the_synthetic_firm_has_live_bills_and_trust_entries_and_reconciles_exactly(tmp_path: Path) -> None:
    ready = bench.setup(tmp_path, 3_000)
    counts = bench._counts(3_000)
    live = sum(1 for i in range(1, counts["bills"] + 1) if bench._bill(i)[0] in ("awaiting_payment", "paid"))
    trust = sum(1 for m in range(1, counts["matters"] + 1) if bench._trust_balance(m, counts) is not None)
    assert live == 50 and trust == 96 and ready["objects"]["allocations"] == 25
    got = bench.measure(tmp_path)
    assert got["exact"], got
    assert got["books"] == (f"books: {live}/{live} bills tie out and agree, {trust}/{trust} matter trust ledgers "
                            "balance, 0/0 client balances agree")
