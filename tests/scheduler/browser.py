"""Headless Chromium driven over the DevTools protocol (no extra Python dependency: ``websockets``).

Only what the report check needs: open a page (optionally with Airflow's session cookie), read where
it ended up and its text, take a PNG screenshot. ``make browser`` installs the Debian ``chromium``.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    def __init__(self) -> None:
        if CHROMIUM is None:
            raise RuntimeError("chromium is not installed: run `make browser` (apt-get install chromium)")
        self.profile = Path(tempfile.mkdtemp(prefix="clio2sf-chromium-"))
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "--window-size=1280,1600",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start")
            time.sleep(0.2)
        self.port = int(port_file.read_text().split()[0])
        target = requests.put(f"http://127.0.0.1:{self.port}/json/new?about:blank", timeout=30).json()
        from websockets.sync.client import connect

        self.ws = connect(target["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        self._ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Network.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=120))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.send("Network.setCookie", url=url, name=name, value=value, path="/")

    def open(self, url: str, settle: str = "document.readyState === 'complete'", timeout: float = 60) -> str:
        """Navigate and wait until ``settle`` is true; return the final URL."""
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                if self.eval(settle):
                    break
            except RuntimeError:
                continue
        return self.eval("location.href")

    def eval(self, expression: str) -> Any:
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
