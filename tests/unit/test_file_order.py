"""`make test`'s file queue (--dist loadfile, tests/conftest.py): the longest files are handed out first."""

from __future__ import annotations

import pytest

from tests import conftest


class _Config:
    def __init__(self, dist: str) -> None:
        self.values = {"dist": dist, "tx": ["2*popen"]}
        self.option = type("Option", (), {"loadscopereorder": True})()  # xdist's default

    def getvalue(self, name: str):
        return self.values[name]


class _Node:
    def __init__(self, name: str) -> None:
        self.gateway = type("Gateway", (), {"id": name})()
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent.extend(indexes)

    def shutdown(self) -> None:
        self.shutting_down = True


def test_the_longest_files_go_first_then_xdists_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "LONG_FILES", {"tests/b_long.py": 900, "tests/c_longer.py": 1800})
    collection = ([f"tests/a_many.py::t{i}" for i in range(9)] + ["tests/b_long.py::t0", "tests/b_long.py::t1"]
                  + [f"tests/c_longer.py::t{i}" for i in range(3)] + [f"tests/d_few.py::t{i}" for i in range(5)])
    sched = conftest.pytest_xdist_make_scheduler(_Config("loadfile"), None)
    nodes = [_Node("gw0"), _Node("gw1")]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, collection)
    sched.schedule()
    first = [collection[node.sent[0]].split("::")[0] for node in nodes]
    assert first == ["tests/c_longer.py", "tests/b_long.py"]
    # the rest stay in xdist's order (most tests first): b_long's 2 tests leave room for one more file
    assert [list(sched.assigned_work[node]) for node in nodes] == [["tests/c_longer.py"],
                                                                   ["tests/b_long.py", "tests/a_many.py"]]
    assert list(sched.workqueue) == ["tests/d_few.py"]


def test_other_dist_modes_keep_xdists_scheduler() -> None:
    assert conftest.pytest_xdist_make_scheduler(_Config("load"), None) is None
