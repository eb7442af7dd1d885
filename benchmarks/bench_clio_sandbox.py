"""Clio sandbox page throughput: requests/s for full 200-record catalog pages, limit off.

    python -m benchmarks.bench_clio_sandbox --data-dir /tmp/clio-large --preset large \
        --endpoints contacts,matters --client requests --clients 1 --requests 300 --repeat 3

The sandbox must not be what slows a benchmark: target >= 200 requests/s per endpoint.
The page URLs of each endpoint (catalog fields, ``limit=200``, cursor paging) are collected
once, then ``--requests`` GETs cycle through them, spread over ``--clients`` threads, each with
its own keep-alive connection.  Clients:

* ``requests``: a ``requests.Session`` (sends ``Accept-Encoding: gzip``) and ``r.json()``, as
  the extractor does;
* ``raw``: ``http.client`` reading the bytes, no parsing, no compression asked;
* ``raw-gzip``: the same, asking for gzip (bytes read, not inflated);
* ``server``: no socket at all: the ASGI app called in-process (handler time only).

Each figure is the median of ``--repeat`` runs (the machine may be busy).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from clio2sf.catalog import BY_NAME

TARGET = 200.0
PAGE = 200
CLIENTS = ("requests", "raw", "raw-gzip", "server")


def page_urls(base_url: str, token: str, name: str, max_pages: int = 60) -> list[str]:
    """Paths (with query) of the first ``max_pages`` cursor pages of catalog object ``name``."""
    obj = BY_NAME[name]
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    r = s.get(f"{base_url}/api/v4/{obj.endpoint}.json", params={**obj.list_params, "fields": obj.fields, "limit": PAGE},
              timeout=60)
    urls = [r.url]
    while len(urls) < max_pages:
        r.raise_for_status()
        nxt = r.json()["meta"]["paging"].get("next")
        if not nxt:
            break
        urls.append(nxt)
        r = s.get(nxt, timeout=60)
    return [_path(u) for u in urls]


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _requests_worker(base_url: str, token: str) -> Callable[[str], int]:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"

    def get(path: str) -> int:
        r = s.get(base_url + path, timeout=60)
        r.raise_for_status()
        if not r.json()["data"]:
            raise RuntimeError(f"GET {path.split('?')[0]} answered an empty page")
        return len(r.content)

    return get


def _raw_worker(base_url: str, token: str, gzip: bool) -> Callable[[str], int]:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip" if gzip else "identity"}

    def get(path: str) -> int:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path.split('?')[0]} answered {resp.status}")
        return len(body)

    return get


def _server_worker(app: Any, token: str) -> Callable[[str], int]:
    """Call the ASGI app directly: what the handler costs without any socket or HTTP parsing."""
    loop = asyncio.new_event_loop()
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode()),
               (b"accept-encoding", b"gzip, deflate")]

    async def call(path: str) -> int:
        p, _, q = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": p, "raw_path": p.encode(), "query_string": q.encode(), "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"GET {p} answered {sent[0]['status']}")
        return sum(len(m.get("body", b"")) for m in sent[1:])

    return lambda path: loop.run_until_complete(call(path))


def run_load(make_worker: Callable[[], Callable[[str], int]], urls: list[str], total: int,
             clients: int) -> tuple[float, float]:
    """Send ``total`` GETs cycling through ``urls`` from ``clients`` threads: (requests/s, bytes per response)."""
    workers = [make_worker() for _ in range(clients)]
    for w in workers:  # open the connections and warm up
        w(urls[0])
    share = [total // clients + (i < total % clients) for i in range(clients)]
    sizes: list[int] = []
    errors: list[BaseException] = []

    def loop(i: int) -> None:
        try:
            for j in range(share[i]):
                sizes.append(workers[i](urls[(i * 7 + j) % len(urls)]))
        except BaseException as exc:  # noqa: B036 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return total / elapsed, statistics.fmean(sizes)


def measure(clio: Any, endpoints: list[str], client: str, clients: int, total: int,
            repeat: int) -> list[dict[str, Any]]:
    """Median requests/s per endpoint (and each run's figure)."""
    token = clio.access_token()
    app = _in_process_app(clio.data_dir) if client == "server" else None
    rows = []
    for name in endpoints:
        urls = page_urls(clio.base_url, token, name)
        if client == "requests":
            make = lambda: _requests_worker(clio.base_url, token)  # noqa: E731
        elif client in ("raw", "raw-gzip"):
            make = lambda: _raw_worker(clio.base_url, token, client == "raw-gzip")  # noqa: E731
        else:
            make = lambda: _server_worker(app, token)  # noqa: E731
        runs = [run_load(make, urls, total, 1 if client == "server" else clients) for _ in range(repeat)]
        rate = statistics.median(r[0] for r in runs)
        rows.append({"endpoint": name, "client": client, "clients": clients, "pages": len(urls),
                     "bytes": round(runs[0][1]), "rps": round(rate, 1), "runs": [round(r[0], 1) for r in runs],
                     "met": rate >= TARGET})
    return rows


def _in_process_app(data_dir: Path) -> Any:
    from sandbox.clio.app import Sandbox, create_app
    from sandbox.clio.config import Knobs
    from sandbox.clio.server import open_store

    store = open_store(data_dir)
    import json

    seed = int(json.loads(store.meta("seeded") or "{}")["seed"])
    return create_app(Sandbox(data_dir, store, Knobs(rate_limit=None), seed))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from sandbox.clio.testing import run_clio_sandbox

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_clio_sandbox", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="sandbox data directory (seeded on first use)")
    p.add_argument("--preset", default="large")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--endpoints", default="activities,line_items,documents,matters,contacts")
    p.add_argument("--client", choices=CLIENTS + ("all",), default="requests")
    p.add_argument("--clients", type=int, default=1, help="parallel clients, one connection each")
    p.add_argument("--requests", type=int, default=300, help="GETs per run")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (the median is reported)")
    args = p.parse_args(argv)
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    unknown = [e for e in endpoints if e not in BY_NAME]
    if unknown:
        p.error(f"unknown catalog objects: {unknown}")
    clients = CLIENTS if args.client == "all" else (args.client,)
    rows: list[dict[str, Any]] = []
    with run_clio_sandbox(args.data_dir, seed=args.seed, preset=args.preset, rate_limit=None) as clio:
        for client in clients:
            rows += measure(clio, endpoints, client, args.clients, args.requests, args.repeat)
    print(f"{'endpoint':<12} {'client':<9} {'conns':>5} {'KiB/page':>8} {'req/s':>8}  runs")
    for r in rows:
        print(f"{r['endpoint']:<12} {r['client']:<9} {r['clients']:>5} {r['bytes'] / 1024:>8.0f} {r['rps']:>8.1f}  "
              f"{r['runs']}{'' if r['met'] else '  (< 200)'}")
    return rows


if __name__ == "__main__":
    main()
