"""Screenshots of the report pages for docs/screenshots, taken in headless Chromium.

``python -m scripts.screenshots [--staging .demo/staging] [--firm harlow_vance] [--migration demo]``
after ``make demo``: serves the reports app (``plugins/clio2sf_airflow/reports_app.py``, the very
pages the API server mounts at ``/clio2sf``) on 127.0.0.1 for the length of the run, opens the
migration summary, the sample diff and the latest reconciliation in Chromium (the driver of the
scheduler test's browser check, ``tests/scheduler/browser.py``) and writes PNGs.

Airflow's login is not in the loop here (a fixed local reader, loopback only, stopped at the end):
that the pages sit behind the login is what ``tests/scheduler`` checks against a real api-server.
Prints each page's size in bytes.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import requests

from scripts.runner import ROOT


class _DocsReader:
    def get_name(self) -> str:
        return "docs screenshots (local)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Screenshots stop at this height (CSS pixels): the top of a long page is what the docs show.
MAX_HEIGHT = 1800


def _screenshot(browser: Any, path: Path) -> Path:
    height = min(int(browser.eval("document.documentElement.scrollHeight")), MAX_HEIGHT)
    data = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1})["data"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--staging", default=str(ROOT / ".demo" / "staging"))
    parser.add_argument("--firm", default="harlow_vance")
    parser.add_argument("--migration", default="demo")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    os.environ["AIRFLOW_VAR_CLIO2SF_STAGING_ROOT"] = f"file://{Path(args.staging).resolve()}"

    import uvicorn

    from clio2sf_airflow import reports_app
    from tests.scheduler.browser import Chromium

    app = reports_app.create_app()
    app.dependency_overrides[reports_app.require_reader] = lambda: _DocsReader()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the reports app did not start")
        time.sleep(0.2)
    mig = f"{base}/{args.firm}/{args.migration}"
    listing = requests.get(f"{mig}/", timeout=60).text
    pages = {"migration_summary.png": f"{mig}/summary", "sample_diff.png": f"{mig}/diff",
             "migration_reports.png": f"{mig}/"}
    marker = "/files/reports/"
    recs = [part.split("'", 1)[0] for part in listing.split(marker)[1:] if "/reconciliation.html" in part.split("'")[0]]
    if recs:
        pages["reconciliation.png"] = f"{mig}{marker}{sorted(recs, key=lambda r: r.split('__', 1)[-1])[-1]}"
    browser = Chromium()
    try:
        for name, url in pages.items():
            size = len(requests.get(url, timeout=120).content)
            browser.open(url)
            path = _screenshot(browser, Path(args.out) / name)
            print(f"{name}: {url.removeprefix(base)} ({size:,} bytes of HTML) -> {path}")
    finally:
        browser.close()
        server.should_exit = True
        thread.join(timeout=30)


if __name__ == "__main__":
    main()
