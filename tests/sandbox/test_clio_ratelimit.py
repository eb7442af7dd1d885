"""Rate limiting (pacing, hammering, concurrency, schedules) and fault knobs of the Clio sandbox."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from sandbox.clio.testing import ClioSandbox, run_clio_sandbox

pytestmark = pytest.mark.integration
LIMIT, WINDOW = 10, 1.0


@pytest.fixture(scope="module")
def clio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClioSandbox]:
    with run_clio_sandbox(tmp_path_factory.mktemp("clio-rl"), preset="tiny", rate_limit=LIMIT, window=WINDOW) as sb:
        yield sb


@pytest.fixture()
def session(clio: ClioSandbox) -> requests.Session:
    clio.set_knobs(rate_limit=LIMIT, limit_schedule=[], fault_5xx=0.0, fault_429_storm=None, drop_rate=0.0,
                   revoke_after=None, latency_ms=0.0)
    clio.reset_limits()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {clio.access_token()}"
    return s


def test_pacing_client_never_gets_429(clio: ClioSandbox, session: requests.Session) -> None:
    statuses = []
    for _ in range(3 * LIMIT + 5):
        r = session.get(f"{clio.base_url}/api/v4/users.json")
        statuses.append(r.status_code)
        assert int(r.headers["X-RateLimit-Limit"]) == LIMIT
        if int(r.headers["X-RateLimit-Remaining"]) == 0:
            time.sleep(max(0.0, int(r.headers["X-RateLimit-Reset"]) - time.time()) + 0.01)
    assert statuses == [200] * len(statuses)


def test_hammering_client_gets_429_with_retry_after(clio: ClioSandbox, session: requests.Session) -> None:
    rs = [session.get(f"{clio.base_url}/api/v4/matters.json") for _ in range(LIMIT + 5)]
    codes = [r.status_code for r in rs]
    assert codes[:LIMIT] == [200] * LIMIT and 429 in codes[LIMIT:]
    limited = next(r for r in rs if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.json()["error"]["type"] == "RateLimited"
    # Another token has its own budget.
    other = requests.get(f"{clio.base_url}/api/v4/matters.json",
                         headers={"Authorization": f"Bearer {clio.access_token()}"})
    assert other.status_code == 200


def test_concurrent_clients_never_exceed_the_limit(clio: ClioSandbox, session: requests.Session) -> None:
    start = len(clio.request_log())
    token = session.headers["Authorization"]
    stop = time.time() + 2.5

    def hammer() -> None:
        s = requests.Session()
        s.headers["Authorization"] = token
        while time.time() < stop:
            s.get(f"{clio.base_url}/api/v4/users.json")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = [e for e in clio.request_log(start) if e["path"] == "/api/v4/users.json"]
    per_window = Counter(e["window"] for e in log if e["status"] == 200)
    assert any(e["status"] == 429 for e in log)
    assert len(per_window) >= 2 and max(per_window.values()) == LIMIT
    windows = sorted(per_window)
    assert all(b - a >= WINDOW - 1e-6 for a, b in zip(windows, windows[1:], strict=False))


def test_announced_limit_follows_the_schedule(clio: ClioSandbox, session: requests.Session) -> None:
    switch = time.time() + 0.6
    clio.set_knobs(limit_schedule=[[switch, 4]])
    assert session.get(f"{clio.base_url}/api/v4/users.json").headers["X-RateLimit-Limit"] == str(LIMIT)
    time.sleep(max(0.0, switch - time.time()) + 0.05)
    clio.reset_limits()
    rs = [session.get(f"{clio.base_url}/api/v4/users.json") for _ in range(5)]
    assert {r.headers["X-RateLimit-Limit"] for r in rs} == {"4"}
    assert [r.status_code for r in rs] == [200] * 4 + [429]


def test_fault_knobs(clio: ClioSandbox, session: requests.Session) -> None:
    url = f"{clio.base_url}/api/v4/users.json"
    clio.set_knobs(rate_limit=None, fault_429_storm="10:3")
    codes = [session.get(url).status_code for _ in range(20)]
    assert codes.count(429) == 6 and codes.count(200) == 14
    clio.set_knobs(fault_429_storm=None, fault_5xx=0.5)
    codes = [session.get(url).status_code for _ in range(40)]
    assert 5 < codes.count(503) < 35 and set(codes) == {200, 503}
    clio.set_knobs(fault_5xx=0.0, drop_rate=1.0)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, headers=session.headers, params={"fields": "id,name,email", "limit": 200}).json()
    clio.set_knobs(drop_rate=0.0, latency_ms=200)
    t0 = time.time()
    assert session.get(url).status_code == 200 and time.time() - t0 >= 0.2
    clio.set_knobs(latency_ms=0, revoke_after=3)
    fresh = {"Authorization": f"Bearer {clio.access_token()}"}
    codes = [requests.get(url, headers=fresh).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 401]


def test_5xx_faults_are_deterministic_by_seed(tmp_path) -> None:
    runs = []
    for i in range(2):
        with run_clio_sandbox(tmp_path / str(i), preset="tiny", seed=5, rate_limit=None, fault_5xx=0.3) as sb:
            h = {"Authorization": f"Bearer {sb.access_token()}"}
            runs.append([requests.get(f"{sb.base_url}/api/v4/users.json", headers=h).status_code
                         for _ in range(25)])
    assert runs[0] == runs[1] and 503 in runs[0] and 200 in runs[0]
